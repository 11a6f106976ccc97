-- fvl.faces — face data formats, installed into fvl.data (docs/data.md, "Face data"):
--
--   fvl.data.rec(path, {idx = path|false}) -> RecordIO reader | nil, message
--   fvl.data.rec_writer(path, {idx = path, property = {classes, h, w}}) -> writer | nil, message
--   fvl.data.unpack_record(bytes) -> header {flag, label, labels, id, id2}, image bytes
--   fvl.data.decode_image(bytes, {bgr = false, gray = false}) -> C×H×W float32 (0..255)
--   fvl.data.encode_image(img, {format = "jpeg"|"png", quality = 95}) -> bytes
--   fvl.data.images{rec = path | folder = dir | files = {...}, labels = ...} -> image data set
--   fvl.data.folder_to_rec(dir, rec_path, {...}) -> info   (insightface layout + property)
--   fvl.data.bin_pack(path) -> {images = n, pairs = n, issame = int32 tensor, ...} | nil, message
--   fvl.data.write_bin_pack(path, bins, issame) -> true | nil, message
--   fvl.data.lfw_pairs(pairs_txt, lfw_dir) -> {files = {...}, issame = int32 tensor, folds}
--   fvl.data.load_npz(path) / fvl.save(path, {name = tensor}) / fvl.load(path)
local fvl = require "fvl.core"
local util = require "fvl.util"

local M = {}
local fail = function(msg) error(msg, 0) end

local function exists(p)
  local f = io.open(p, "rb")
  if f then f:close() return true end
  return false
end
M.exists = exists

local function str_opt(fn, key, v)
  if v ~= nil and type(v) ~= "string" then fail(fn .. ": " .. key .. " must be a path (string), got " .. type(v)) end
  return v
end

-- ---------------------------------------------------------------------------- RecordIO
local function unpack_record(bytes, what)
  if type(bytes) ~= "string" then fail("unpack_record: expected the record bytes (string), got " .. type(bytes)) end
  return fvl._irheader(bytes, what)
end
M.unpack_record = function(bytes) return unpack_record(bytes) end   -- (the second argument is the readers')
--- @doc fvl.data.unpack_record(bytes) -> header, image
--- An MXNet record split into its header {flag =, label =, labels = {...} (when several), id =,
--- id2 =} and the image's encoded bytes. Errors: a malformed record header.

-- fvl.data.rec(path [, opts]) -> reader | nil, message: an MXNet RecordIO file (insightface's
-- train.rec). opts.idx: the index file (default path with .idx when it exists; false: none, the
-- file is scanned). reader:count() (or #reader), reader:read(i) the raw record i (1-based),
-- reader:record(i) -> header, image bytes (fvl.data.unpack_record), reader:key(i), reader:find(key),
-- reader:close(). Errors: a path that is not a string; unknown options. A file that is not RecordIO
-- is nil, message.
function M.rec(path, opts)
  local fn = "rec"
  if type(path) ~= "string" then fail(fn .. ": path must be a .rec file name, got " .. type(path)) end
  opts = util.check_opts(fn, opts, { "idx" })
  local idx = opts.idx
  if idx == nil then
    local guess = path:gsub("%.rec$", "") .. ".idx"
    idx = exists(guess) and guess or nil
  elseif idx == false then
    idx = nil
  elseif type(idx) ~= "string" then
    fail(fn .. ": idx must be a path or false, got " .. type(idx))
  end
  local r, err = fvl._rec_open(path, idx)
  if not r then return nil, err end
  local mt = getmetatable(r)
  if not mt.record then
    -- r:record(i) -> header, image bytes of the i-th record (1-based position)
    function mt.record(self, i)
      return unpack_record(self:read(i), string.format("%s record %d", path, self:key(i)))
    end
  end
  return r
end

local Writer = {}
Writer.__index = Writer
Writer.__name = "fvl.data.rec_writer"
util.register_class(Writer, "fvl.data.Writer")

-- fvl.data.rec_writer(path [, opts]) -> writer | nil, message: writes a RecordIO file (and its
-- .idx) that insightface's tools read. opts: idx (the index path, default beside), property
-- ({num_classes, h, w}: the "property" file written beside at close), quality (JPEG, 95).
-- writer:write{image =, label =, ...} / write_raw(bytes, key), then writer:close() commits.
function M.rec_writer(path, opts)
  local fn = "rec_writer"
  if type(path) ~= "string" then fail(fn .. ": path must be a .rec file name, got " .. type(path)) end
  opts = util.check_opts(fn, opts, { "idx", "property", "quality" })
  str_opt(fn, "idx", opts.idx)
  local prop = opts.property
  if prop ~= nil then
    if type(prop) ~= "table" or #prop ~= 3 then fail(fn .. ": property must be {num_classes, h, w}") end
    for i = 1, 3 do util.integer(fn, "property[" .. i .. "]", prop[i], nil, 1) end
  end
  local w, err = fvl._rec_writer(path, opts.idx)
  if not w then return nil, err end
  return setmetatable({ _w = w, path = path, count = 0, next_key = 0, property = prop,
                        quality = util.integer(fn, "quality", opts.quality, 95, 1) }, Writer)
end

-- w:write{image = bytes | C×H×W tensor (0..255, encoded as JPEG), label = number | {numbers},
--         key = next key, id = 0, id2 = 0}
function Writer:write(rec)
  local fn = "rec_writer:write"
  if type(rec) ~= "table" then fail(fn .. ": expected a table {image=, label=}, got " .. type(rec)) end
  util.check_opts(fn, rec, { "image", "label", "key", "id", "id2" })
  local img = rec.image
  if util.is_tensor(img) then img = M.encode_image(img, { quality = self.quality })
  elseif img == nil then img = ""
  elseif type(img) ~= "string" then fail(fn .. ": image must be encoded bytes or a tensor, got " .. type(img)) end
  local key = util.integer(fn, "key", rec.key, self.next_key, 0)
  local label, labels, flag = rec.label or 0, nil, 0
  if type(label) == "table" then
    labels, flag = label, #label
    for i = 1, flag do
      if type(label[i]) ~= "number" then fail(fn .. ": label[" .. i .. "] must be a number, got " .. type(label[i])) end
    end
    label = 0
  elseif type(label) ~= "number" then
    fail(fn .. ": label must be a number or a list of numbers, got " .. type(label))
  end
  self._w:_put(key, flag, label, labels, util.integer(fn, "id", rec.id, 0, 0),
               util.integer(fn, "id2", rec.id2, 0, 0), img)
  self.count, self.next_key = self.count + 1, key + 1
  return key
end

-- w:write_raw(bytes, key) — a record without an IRHeader
function Writer:write_raw(bytes, key)
  if type(bytes) ~= "string" then fail("rec_writer:write_raw: bytes must be a string, got " .. type(bytes)) end
  key = util.integer("rec_writer:write_raw", "key", key, self.next_key, 0)
  self._w:_put_raw(key, bytes)
  self.count, self.next_key = self.count + 1, key + 1
  return key
end

-- writer:close() -> true | nil, message: commits: fsync + rename of .rec and .idx (and writes the
-- property file "classes,h,w" beside them when the writer was given one); nothing appears before.
function Writer:close()
  local ok, err = self._w:_close(true)
  if not ok then return nil, err end
  if self.property then
    local dir = self.path:match("^(.*)/[^/]*$") or "."
    local p = self.property
    local ok2, err2 = fvl.sys.write_atomic(dir .. "/property", string.format("%d,%d,%d", p[1], p[2], p[3]))
    if not ok2 then return nil, err2 end
  end
  return true
end
-- writer:abort() -> true: drops the records written so far (no file appears).
function Writer:abort() return self._w:_close(false) end

-- ---------------------------------------------------------------------------- images
-- fvl.data.decode_image(bytes [, opts]) -> tensor: a JPEG or PNG image (a string of its bytes) as a
-- C×H×W float32 tensor of pixel values 0..255 (C = 3, RGB). opts: gray (false: one channel), bgr
-- (false: channels in BGR order, as OpenCV/insightface). Errors: bytes that are not an image.
function M.decode_image(bytes, opts)
  local fn = "decode_image"
  if type(bytes) ~= "string" then fail(fn .. ": expected encoded image bytes (string), got " .. type(bytes)) end
  opts = util.check_opts(fn, opts, { "bgr", "gray" })
  return fvl._decode_image(bytes, util.boolean(fn, "gray", opts.gray, false) and 1 or 3,
                           util.boolean(fn, "bgr", opts.bgr, false), fn)
end

-- fvl.data.encode_image(img [, opts]) -> bytes: a C×H×W tensor of values 0..255 (C = 1 or 3) encoded
-- as a string; opts: format = "jpeg"|"png" ("jpeg"), quality (95, 1..100).
-- Errors: img not a tensor; a quality outside 1..100.
function M.encode_image(img, opts)
  local fn = "encode_image"
  if not util.is_tensor(img) then fail(fn .. ": image must be a C×H×W tensor (0..255), got " .. type(img)) end
  opts = util.check_opts(fn, opts, { "format", "quality" })
  local format = util.enum(fn, "format", opts.format, { "jpeg", "png" }, "jpeg")
  local q = util.integer(fn, "quality", opts.quality, 95, 1)
  if q > 100 then fail(fn .. ": quality = " .. q .. " (expected 1..100)") end
  return fvl._encode_image(img:float(), format == "png" and -1 or q)
end

-- ---------------------------------------------------------------------------- image sets
local ImageSet = {}
ImageSet.__index = ImageSet
ImageSet.__name = "fvl.data.images"
util.register_class(ImageSet, "fvl.data.ImageSet")

local function image_size(set, n, fn)
  for i = 1, math.min(n, 1) do
    local ok, img = pcall(function() return fvl._decode_image(set:_bytes(i), 3, false, fn) end)
    if ok then return img:size(2), img:size(3) end
    fail(img)
  end
  return 0, 0
end

-- fvl.data.images{rec = "train.rec", idx = , property = , | folder = "faces/" | files = {...},
--                 labels = {...}, size = {h, w}, channels = 3, bgr = false}
-- size: every image is resized to h×w (bilinear, fvl.data.resize_image's numbers) where it has
-- another size; without it, the size comes from the property file or the first image and an
-- image of another size is an error.
function M.images(opts)
  local fn = "images"
  opts = util.check_opts(fn, opts, { "rec", "idx", "property", "folder", "files", "labels", "size",
                                     "channels", "bgr" })
  local nsrc = (opts.rec and 1 or 0) + (opts.folder and 1 or 0) + (opts.files and 1 or 0)
  if nsrc ~= 1 then fail(fn .. ": give exactly one of rec=, folder=, files=") end
  local set, err, prop_h, prop_w
  local self = setmetatable({}, ImageSet)
  if opts.rec then
    local path = str_opt(fn, "rec", opts.rec)
    local idx = opts.idx
    if idx == nil then
      local guess = path:gsub("%.rec$", "") .. ".idx"
      idx = exists(guess) and guess or nil
    elseif idx == false then idx = nil
    else str_opt(fn, "idx", idx) end
    local prop = opts.property
    if prop == nil then
      local guess = (path:match("^(.*)/[^/]*$") or ".") .. "/property"
      prop = exists(guess) and guess or nil
    elseif prop == false then prop = nil
    else str_opt(fn, "property", prop) end
    set, err = fvl._imgset_rec(path, idx, prop)
    if not set then return nil, err end
    self.source, self.property = path, prop
  elseif opts.folder then
    set, err = fvl._imgset_folder(str_opt(fn, "folder", opts.folder))
    if not set then return nil, err end
    self.source = opts.folder
  else
    if type(opts.files) ~= "table" then fail(fn .. ": files must be a list of paths") end
    local labels
    if opts.labels ~= nil then labels = fvl._check_labels_list(opts.labels, #opts.files, fn) end
    set = fvl._imgset_files(opts.files, labels)
    self.source = "files"
  end
  self._set = set
  local n, classes, H, W, first, last, kind = set:_info()
  self.n, self.classes, self.kind = n, classes, kind
  if first >= 0 then self.header = { first = first, last = last } end
  self.labels = set:_labels()
  self.class_names = set:_names()
  self.channels = util.integer(fn, "channels", opts.channels, 3, 1)
  if self.channels ~= 1 and self.channels ~= 3 then fail(fn .. ": channels = " .. self.channels .. " (expected 1 or 3)") end
  self.bgr = util.boolean(fn, "bgr", opts.bgr, false)
  if opts.size ~= nil then   -- a size asked for: images of another size are resized to it (bilinear)
    if type(opts.size) ~= "table" or #opts.size ~= 2 then fail(fn .. ": size must be {h, w}") end
    H, W = util.integer(fn, "size[1]", opts.size[1], nil, 1), util.integer(fn, "size[2]", opts.size[2], nil, 1)
    self.resize = true
  elseif H == 0 then
    H, W = image_size(set, n, fn)
  end
  self.size = { self.channels, H, W }
  return self
end

function ImageSet:__len() return self.n end
function ImageSet:__tostring()
  return string.format("fvl.data.images(%s: %d images, %d classes, %dx%dx%d, %s)", self.source,
                       self.n, self.classes, self.size[1], self.size[2], self.size[3],
                       self.bgr and "BGR" or "RGB")
end
-- set:bytes(i) -> string: the raw encoded bytes of sample i (1-based)
function ImageSet:bytes(i) return self._set:_bytes(i) end
-- set:file(i) -> path | nil: the file sample i was read from (nil for a RecordIO set)
function ImageSet:file(i) return self._set:_file(i) end
-- decoded image i: C×H×W float32 with pixel values 0..255 (no normalisation)
function ImageSet:image(i)
  return fvl._decode_image(self._set:_bytes(i), self.channels, self.bgr,
                           string.format("images: %s sample %d", self.source, i))
end

local function img_opts(self, o)
  return { C = self.size[1], H = self.size[2], W = self.size[3], bgr = self.bgr,
           flip = o.flip or false, pad = o.crop or 0, mean = o.mean or 127.5, std = o.std or 127.5,
           skip = o.skip or false, seed = o.seed or 1, resize = self.resize or false }
end

-- ds:batch(indices (1-based list or int32 tensor), {flip=, crop=, seed=, epoch=, mean=, std=})
--   -> x B×C×H×W normalised, y (1-based)
function ImageSet:batch(indices, opts)
  local fn = "images:batch"
  opts = util.check_opts(fn, opts, { "flip", "crop", "seed", "epoch", "mean", "std" })
  local order = fvl._check_index_list(indices, self.n, fn)
  local x, y = self._set:_batch(order, img_opts(self, opts), opts.epoch or 1, 0)
  return x, y
end

local Loader = {}
Loader.__index = Loader
Loader.__name = "fvl.data.images:loader"
util.register_class(Loader, "fvl.data.ImageLoader")

-- ds:loader{batch = 128, shuffle = true, seed = 1, epoch = 1, drop_last = false, flip = false,
--           crop = 0, mean = 127.5, std = 127.5, workers = 2, prefetch = 4, on_bad = "error"|"skip",
--           shard = false}
-- shard = true (several processes, fvl.dist): as fvl.data.loader's, the epoch's order (the same on
-- every rank) dealt round-robin, ⌊n/N⌋ images per rank, full batches only.
function ImageSet:loader(opts)
  local fn = "images:loader"
  opts = util.check_opts(fn, opts, { "batch", "shuffle", "seed", "epoch", "drop_last", "flip", "crop",
                                     "mean", "std", "workers", "prefetch", "on_bad", "quiet", "shard" })
  local l = setmetatable({ ds = self }, Loader)
  l.batch = util.integer(fn, "batch", opts.batch, 128, 1)
  l.shuffle = util.boolean(fn, "shuffle", opts.shuffle, true)
  l.seed = util.integer(fn, "seed", opts.seed, 1)
  l.epoch = util.integer(fn, "epoch", opts.epoch, 1, 1)
  l.drop_last = util.boolean(fn, "drop_last", opts.drop_last, false)
  l.workers = util.integer(fn, "workers", opts.workers, math.min(4, math.max(1, fvl.threads and fvl.threads() or 2)), 0)
  l.prefetch = util.integer(fn, "prefetch", opts.prefetch, 2 * math.max(1, l.workers), 1)
  l.on_bad = util.enum(fn, "on_bad", opts.on_bad, { "error", "skip" }, "error")
  l.quiet = util.boolean(fn, "quiet", opts.quiet, false)
  local crop = util.integer(fn, "crop", opts.crop, 0, 0)
  if crop >= self.size[2] or crop >= self.size[3] then
    fail(string.format("%s: crop = %d (expected 0..%d for %dx%d images)", fn, crop,
                       math.min(self.size[2], self.size[3]) - 1, self.size[3], self.size[2]))
  end
  local std = util.number(fn, "std", opts.std, 127.5)
  if std == 0 then fail(fn .. ": std = 0") end
  l.opts = img_opts(self, { flip = util.boolean(fn, "flip", opts.flip, false), crop = crop,
                            mean = util.number(fn, "mean", opts.mean, 127.5), std = std,
                            skip = l.on_bad == "skip", seed = l.seed })
  l.skipped, l.epoch_skipped = 0, 0
  l.shard = util.boolean(fn, "shard", opts.shard, false)
  if l.shard then
    local dist = require "fvl.dist"
    l.rank, l.world, l.drop_last = dist.rank(), dist.size(), true
    l.n_share = self.n // l.world
  end
  return l
end

function Loader:__len()
  local n = self.shard and self.n_share or self.ds.n
  if self.drop_last then return n // self.batch end
  return (n + self.batch - 1) // self.batch
end

function Loader:_start()
  local n = self.ds.n
  local order = self.shuffle and fvl._loader_perm(n, self.seed, self.epoch)
                or (n > 0 and fvl.arange(0, n - 1):int() or fvl.zeros({ 0 }, "int32"))
  if self.shard then   -- this rank's images of the epoch's order: rank + 1, rank + 1 + N, ...
    local k = self.n_share
    order = k == 0 and fvl.zeros({ 0 }, "int32")
            or order:narrow(1, 1, k * self.world):reshape(k, self.world):narrow(2, self.rank + 1, 1):reshape(k):contiguous()
  end
  self._c = self.ds._set:_loader(order, self.batch, self.drop_last, self.epoch, self.workers,
                                 self.prefetch, self.opts, self._first or 0)
  self._first = nil
  self.epoch_skipped = 0
end

-- loader:reset([e [, skip]]): restart the current epoch (or jump to epoch e), stopping the
-- workers; skip = k starts the epoch at its batch k + 1 without decoding the first k (resuming a
-- run mid-epoch: the batches, augmentation included, are those the uninterrupted epoch gives).
function Loader:reset(e, skip)
  if e ~= nil then self.epoch = util.integer("images:loader:reset", "epoch", e, nil, 1) end
  if self._c then self._c:_stop() end
  self._c = nil
  self._first = nil
  if skip ~= nil then
    local nb = #self
    self._first = util.integer("images:loader:reset", "skip", skip, nil, 0)
    if self._first > nb then
      fail(string.format("images:loader:reset: skip = %d but epoch %d has %d batches", self._first, self.epoch, nb))
    end
  end
  return self
end

-- loader:next() -> {x = B×3×H×W, y = B labels, index = the B images' indices in the set}, or nil at the
-- epoch's end (the workers stop and the loader moves to the next epoch, so `for b in loader do`
-- runs one epoch each time); a bad image is an error, or skipped and counted with on_bad = "skip".
function Loader:next()
  if not self._c then self:_start() end
  local ok, x, y, index = pcall(self._c._next, self._c)
  if not ok then
    self._c:_stop()
    self._c = nil
    error(x, 0)
  end
  if x == nil then
    self.epoch_skipped = self._c:_bad()
    self.skipped = self.skipped + self.epoch_skipped
    if self.epoch_skipped > 0 and not self.quiet then
      io.stderr:write(string.format("images: epoch %d skipped %d bad image(s) of %d (on_bad = \"skip\")\n",
                                    self.epoch, self.epoch_skipped, self.ds.n))
    end
    self._c:_stop()
    self._c = nil
    self.epoch = self.epoch + 1
    return nil
  end
  return { x = x, y = y, index = index }
end

function Loader:__call() return self:next() end
-- loader:close(): stop the decoding workers now (as reset() without arguments: the epoch starts
-- over at the next call)
function Loader:close() return self:reset() end
function Loader:__tostring()
  return string.format("fvl.data.images:loader(%d images, batch %d, %d workers, epoch %d)", self.ds.n,
                       self.batch, self.workers, self.epoch)
end

M.ImageSet, M.ImageLoader = ImageSet, Loader

-- ---------------------------------------------------------------------------- folder → .rec
-- fvl.data.folder_to_rec(dir, "out/train.rec", {property = true}) packs a folder of identity
-- folders into the insightface layout: record 0 = header [first identity record, end),
-- records 1..N = images (label = class id, 0-based on disk), then one record per identity with
-- its image range [first, end); plus out/property "classes,h,w". Image bytes are copied as is.
function M.folder_to_rec(dir, rec_path, opts)
  local fn = "folder_to_rec"
  opts = util.check_opts(fn, opts, { "property", "idx" })
  local ds, err = M.images{ folder = dir }
  if not ds then return nil, err end
  local n, C = ds.n, ds.classes
  local prop = util.boolean(fn, "property", opts.property, true)
  local w, err2 = M.rec_writer(rec_path, { idx = opts.idx,
                                           property = prop and { C, ds.size[2], ds.size[3] } or nil })
  if not w then return nil, err2 end
  local labels = ds.labels:totable()
  local first, last = {}, {}
  for i = 1, n do
    local c = labels[i]
    first[c] = first[c] or i
    last[c] = i + 1
  end
  local ok, e = pcall(function()
    w:write{ key = 0, label = { n + 1, n + 1 + C } }
    for i = 1, n do
      w:write{ key = i, label = labels[i] - 1, image = ds:bytes(i) }
    end
    for c = 1, C do
      w:write{ key = n + c, label = { first[c] or 0, last[c] or 0 } }
    end
  end)
  if not ok then w:abort() return nil, e end
  local okc, errc = w:close()
  if not okc then return nil, errc end
  return { images = n, classes = C, h = ds.size[2], w = ds.size[3], class_names = ds.class_names }
end

-- ---------------------------------------------------------------------------- .bin packs
local Pack = {}
Pack.__index = Pack
Pack.__name = "fvl.data.bin_pack"
util.register_class(Pack, "fvl.data.Pack")

-- fvl.data.bin_pack(path) -> {name=, path=, images=, pairs=, issame = int32 tensor 0/1} | nil, message
-- reads an insightface .bin verification pack (lfw.bin, cfp_fp.bin, agedb_30.bin...): a pickle
-- of 2N encoded images and N same/different flags; pair i is images 2i−1 and 2i. The images stay
-- encoded until pack:bytes(i) / pack:decode(first, count, opts). Returns nil, message for a
-- missing, damaged or unsupported file (the message names the offset); an error when path is
-- not a string.
function M.bin_pack(path)
  if type(path) ~= "string" then fail("bin_pack: path must be a .bin file name, got " .. type(path)) end
  local p, err = fvl._binpack(path)
  if not p then return nil, err end
  local n, pairs, issame = p:_info()
  local name = path:match("([^/]+)%.bin$") or path:match("([^/]+)$")
  return setmetatable({ _p = p, path = path, name = name, images = n, pairs = pairs, issame = issame }, Pack)
end
-- pack:bytes(i) -> string: the encoded bytes of image i (1-based) of a .bin verification pack.
function Pack:bytes(i) return self._p:_bytes(i) end
-- pack:decode(first, count [, opts]) -> count×C×H×W float32: images first..first+count−1
-- (1-based), decoded and normalised to (pixel − mean)/std. opts: flip (false: mirrored), bgr
-- (false), size ({112, 112}), resize (true when size is given: images of another size are
-- resized to it bilinearly; false: every image must have the size), mean (127.5), std (127.5),
-- channels (3). Errors: unknown keys, a range outside 1..images, an image that fails to decode.
function Pack:decode(first, count, opts)
  local fn = "bin_pack:decode"
  opts = util.check_opts(fn, opts, { "flip", "bgr", "size", "mean", "std", "channels", "resize" })
  local size = opts.size or { 112, 112 }
  return self._p:_images(first, count, opts.flip or false,
                         { C = opts.channels or 3, H = size[1], W = size[2], bgr = opts.bgr or false,
                           mean = opts.mean or 127.5, std = opts.std or 127.5,
                           resize = util.boolean(fn, "resize", opts.resize, opts.size ~= nil) })
end
function Pack:__tostring()
  return string.format("fvl.data.bin_pack(%s: %d pairs, %d same)", self.path, self.pairs,
                       self.issame:sum():item())
end
M.Pack, M.Writer = Pack, Writer

-- fvl.data.write_bin_pack(path, bins, issame): a pack that insightface's loaders and
-- fvl.data.bin_pack read: pickle protocol 3 of (list of bytes, list of bools), written
-- atomically. bins = 2N encoded images (strings), issame = N booleans (or 0/1).
function M.write_bin_pack(path, bins, issame)
  local fn = "write_bin_pack"
  if type(path) ~= "string" then fail(fn .. ": path must be a file name, got " .. type(path)) end
  if type(bins) ~= "table" then fail(fn .. ": bins must be a list of encoded images, got " .. type(bins)) end
  if util.is_tensor(issame) then issame = issame:totable() end
  if type(issame) ~= "table" then fail(fn .. ": issame must be a list of booleans, got " .. type(issame)) end
  if #bins ~= 2 * #issame then
    fail(string.format("%s: %d images for %d issame flags (expected 2 images per pair)", fn, #bins, #issame))
  end
  local out = { "\x80\x03]q\x00(" }
  for i, b in ipairs(bins) do
    if type(b) ~= "string" then fail(string.format("%s: bins[%d] is a %s, expected bytes", fn, i, type(b))) end
    out[#out + 1] = #b < 256 and ("C" .. string.char(#b)) or ("B" .. string.pack("<I4", #b))
    out[#out + 1] = b
  end
  out[#out + 1] = "e]q\x01("
  for i, v in ipairs(issame) do
    if v == true or v == 1 then out[#out + 1] = "\x88"
    elseif v == false or v == 0 then out[#out + 1] = "\x89"
    else fail(string.format("%s: issame[%d] = %s (expected a boolean or 0/1)", fn, i, tostring(v))) end
  end
  out[#out + 1] = "e\x86q\x02."
  return fvl.sys.write_atomic(path, table.concat(out))
end

-- fvl.data.write_pairs_pack(path, images, labels, {pairs = 600, seed = 1, format = "png", quality = 95})
-- draws verification pairs from labelled images (N×C×H×W, pixels 0..255; labels 1-based, any
-- order) and writes them as a .bin pack (write_bin_pack): odd pairs are two different images of
-- one identity, even pairs images of two different identities, each drawn by fvl.sys.hash(seed, ·)
-- (the same pack for the same arguments). Every identity needs at least 2 images, and there
-- must be at least 2 identities. Returns true or nil, message.
function M.write_pairs_pack(path, images, labels, opts)
  local fn = "write_pairs_pack"
  if type(path) ~= "string" then fail(fn .. ": path must be a file name, got " .. type(path)) end
  if not util.is_tensor(images) or images:dim() ~= 4 then fail(fn .. ": images must be an N×C×H×W tensor") end
  if not util.is_tensor(labels) or labels:dim() ~= 1 or labels:size(1) ~= images:size(1) then
    fail(string.format("%s: labels must be a vector of %d labels", fn, images:size(1)))
  end
  opts = util.check_opts(fn, opts, { "pairs", "seed", "format", "quality" })
  local npairs = util.integer(fn, "pairs", opts.pairs, 600, 1)
  local seed = util.integer(fn, "seed", opts.seed, 1)
  local format = util.enum(fn, "format", opts.format, { "png", "jpeg" }, "png")
  local quality = util.integer(fn, "quality", opts.quality, 95, 1)
  local members, ids = {}, {}
  for i, y in ipairs(labels:totable()) do
    if not members[y] then members[y] = {}; ids[#ids + 1] = y end
    table.insert(members[y], i)
  end
  table.sort(ids)
  local T = #ids
  if T < 2 then fail(string.format("%s: %d identit%s; different-identity pairs need at least 2", fn, T, T == 1 and "y" or "ies")) end
  for _, y in ipairs(ids) do
    if #members[y] < 2 then fail(string.format("%s: identity %d has 1 image; same-identity pairs need 2", fn, y)) end
  end
  local function h(i) return fvl.sys.hash(seed, i) end
  local function enc(i) return M.encode_image(images:select(1, i):contiguous(), { format = format, quality = quality }) end
  local bins, issame = {}, {}
  for i = 1, npairs do
    local t = h(4 * i) % T
    local mt = members[ids[t + 1]]
    local a, b
    if i % 2 == 1 then
      local j = h(4 * i + 1) % #mt
      local k = (j + 1 + h(4 * i + 2) % (#mt - 1)) % #mt
      a, b = mt[j + 1], mt[k + 1]
    else
      local u = (t + 1 + h(4 * i + 1) % (T - 1)) % T
      local mu = members[ids[u + 1]]
      a, b = mt[h(4 * i + 2) % #mt + 1], mu[h(4 * i + 3) % #mu + 1]
    end
    bins[#bins + 1], bins[#bins + 2] = enc(a), enc(b)
    issame[#issame + 1] = i % 2 == 1
  end
  return M.write_bin_pack(path, bins, issame)
end

-- ---------------------------------------------------------------------------- LFW pairs.txt
-- fvl.data.lfw_pairs("pairs.txt", "lfw/") -> {files = {2N paths}, issame = N int32 0/1,
--   folds = number of folds, per_fold = pairs of each kind per fold}
-- Format: a header "folds n", then per fold n lines "name i j" (same person) followed by n
-- lines "name1 i name2 j" (different); images are lfw/name/name_%04d.jpg.
function M.lfw_pairs(path, dir, opts)
  local fn = "lfw_pairs"
  if type(path) ~= "string" then fail(fn .. ": path must be the pairs.txt file name") end
  if type(dir) ~= "string" then fail(fn .. ": dir must be the LFW image directory") end
  opts = util.check_opts(fn, opts, { "ext", "check" })
  local ext = opts.ext or "jpg"
  local f, err = io.open(path, "r")
  if not f then return nil, fn .. ": " .. err end
  local lines = {}
  for line in f:lines() do
    line = line:gsub("\r$", "")
    if line:match("%S") then lines[#lines + 1] = line end
  end
  f:close()
  local folds, per = (lines[1] or ""):match("^%s*(%d+)%s+(%d+)%s*$")
  if not folds then
    return nil, string.format("%s: %s line 1 = '%s', expected the header 'folds pairs_per_fold' (e.g. '10 300')",
                              fn, path, lines[1] or "")
  end
  folds, per = tonumber(folds), tonumber(per)
  if #lines - 1 ~= folds * per * 2 then
    return nil, string.format("%s: %s has %d pair lines, the header '%d %d' announces %d", fn, path,
                              #lines - 1, folds, per, folds * per * 2)
  end
  local files, same = {}, {}
  local function img(name, k) return string.format("%s/%s/%s_%04d.%s", dir, name, name, k, ext) end
  for li = 2, #lines do
    local line = lines[li]
    local want_same = (li - 2) % (2 * per) < per
    local a, i, b, k
    if want_same then
      a, i, k = line:match("^%s*(%S+)%s+(%d+)%s+(%d+)%s*$")
      b = a
    else
      a, i, b, k = line:match("^%s*(%S+)%s+(%d+)%s+(%S+)%s+(%d+)%s*$")
    end
    if not a then
      return nil, string.format("%s: %s line %d = '%s', expected %s (each fold lists %d same-person "
                                .. "pairs, then %d different-person pairs)", fn, path, li, line,
                                want_same and "'name i j'" or "'name1 i name2 j'", per, per)
    end
    files[#files + 1] = img(a, tonumber(i))
    files[#files + 1] = img(b, tonumber(k))
    same[#same + 1] = want_same and 1 or 0
  end
  if opts.check ~= false then
    for _, p in ipairs(files) do
      if not exists(p) then return nil, string.format("%s: image '%s' (named by %s) does not exist", fn, p, path) end
    end
  end
  return { files = files, issame = fvl.tensor(same, "int32"), folds = folds, per_fold = per }
end

-- ---------------------------------------------------------------------------- .npy / .npz
-- fvl.data.load_npz(path) -> {name = tensor, ...} | nil, message: the arrays of a NumPy .npz
-- archive (every plain dtype, as float32 or int32 tensors); fvl.load does the same for .npz.
function M.load_npz(path)
  if type(path) ~= "string" then fail("load_npz: path must be a file name, got " .. type(path)) end
  return fvl._npz_read(path)
end

-- install: fvl.data.* and fvl.save / fvl.load that also know .npz and every NumPy dtype

function M.install(data)
  for _, k in ipairs({ "rec", "rec_writer", "unpack_record", "decode_image", "encode_image", "images",
                       "folder_to_rec", "bin_pack", "write_bin_pack", "write_pairs_pack", "lfw_pairs", "load_npz",
                       "ImageSet", "ImageLoader", "Pack", "Writer" }) do
    data[k] = M[k]
  end
  return data
end

function M.install_io()
  if not fvl._npy_save_1 then
    fvl._npy_save_1, fvl._npy_load_1 = fvl.save, fvl.load
    -- fvl.save(path, tensor) writes .npy; fvl.save(path, {name = tensor, ...}) writes .npz
    fvl.save = function(path, v)
      if type(path) ~= "string" then fail("save: path must be a file name (string expected, got " .. type(path) .. ")") end
      if type(v) == "table" and not util.is_tensor(v) then
        local names, ts = {}, {}
        for k in pairs(v) do
          if type(k) ~= "string" then fail("save: table keys must be array names (strings), got " .. type(k)) end
          names[#names + 1] = k
        end
        table.sort(names)
        for i, k in ipairs(names) do
          if not util.is_tensor(v[k]) then fail("save: value '" .. k .. "' is a " .. type(v[k]) .. ", expected a tensor") end
          ts[i] = v[k]
        end
        return fvl._npz_write(path, names, ts)
      end
      if not util.is_tensor(v) then fail("save: value must be a tensor or a table of named tensors, got " .. type(v)) end
      return fvl._npy_save_1(path, v)
    end
    -- fvl.load(path): .npy of any plain NumPy dtype (float32 / int32 result), .npz → {name = tensor}
    fvl.load = function(path)
      if type(path) ~= "string" then fail("load: path must be a file name (string expected, got " .. type(path) .. ")") end
      if path:match("%.npz$") then return fvl._npz_read(path) end
      return fvl._npy_read(path)
    end
  end
end

return M
