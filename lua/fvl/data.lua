-- fvl.data — data sets and the batch loader (docs/data.md).
--
--   fvl.data.fashion_mnist{split="train"|"test", path=DIR, limit=N}
--       -> {images = N×1×28×28 float32 in [0,1], labels = N int32 1..10, classes = {...}, x = images}
--          | nil, message   (missing files name the Debian package dataset-fashion-mnist)
--   fvl.data.mnist{split=, path=DIR}   (same layout; digits, no Debian package: path required)
--   fvl.data.idx(path, {dtype="float32"|"int32", scale=1, shift=0}) -> tensor | nil, message
--   fvl.data.npy{features="f.npy", labels="l.npy", base="auto"|0|1} -> {x=, labels=, classes=}
--   fvl.data.synthetic_faces{identities=, per_identity=, test_identities=, ...}
--     (image = "rgb", size = 56: RGB face images for the face backbones)
--       -> {train = {x=, labels=, true_labels=, classes=}, test = {x=, labels=, classes=}, info = {...}}
--   fvl.data.loader(ds, {batch=128, shuffle=true, seed=1, drop_last=false, flip=false, crop=0})
--       -> loader; `for batch in loader do ... end` gives {x=, y=, index=} (index 1-based rows)
local fvl = require "fvl.core"
local util = require "fvl.util"

local data = {}

local fail = function(msg) error(msg, 0) end

-- ---------------------------------------------------------------------------- Fashion-MNIST
data.FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
data.fashion_mnist_classes = { "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                               "Shirt", "Sneaker", "Bag", "Ankle boot" }

local FM_FILES = { train = { "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz" },
                   test = { "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz" } }

local function shape_str(t) return table.concat(t:shape(), "x") end

-- the IDX image set of fn (fashion_mnist or mnist); missing(files) says where the files come from
local function idx_set(fn, opts, missing)
  opts = util.check_opts(fn, opts, { "split", "path", "limit" })
  local split = util.enum(fn, "split", opts.split, { "train", "test" }, "train")
  local dir = opts.path
  if dir ~= nil and type(dir) ~= "string" then
    fail(fn .. ": path must be a directory name (string), got " .. type(dir))
  end
  dir = dir or os.getenv("FVL_FASHION_MNIST") or data.FASHION_MNIST_DIR
  local limit = opts.limit ~= nil and util.integer(fn, "limit", opts.limit, nil, 1) or nil
  local files = FM_FILES[split]
  local img_path, lab_path = dir .. "/" .. files[1], dir .. "/" .. files[2]
  -- IDX pixels are 0..255 (→ [0,1]); IDX labels are 0..9 on disk (→ 1..10 here)
  local images, msg, kind = fvl._idx_load(img_path, "float32", 1 / 255, 0)
  local labels
  if images then labels, msg, kind = fvl._idx_load(lab_path, "int32", 1, 1) end
  if not labels then
    if kind == "missing" then return nil, string.format("%s: %s. %s", fn, msg, missing(files)) end
    return nil, fn .. ": " .. msg
  end
  local n = images:size(1)
  if images:dim() ~= 3 or images:size(2) ~= 28 or images:size(3) ~= 28 then
    return nil, string.format("%s: '%s' holds %s images, expected N×28×28", fn, img_path,
                              shape_str(images))
  end
  if labels:dim() ~= 1 or labels:size(1) ~= n then
    return nil, string.format("%s: '%s' holds %s labels for %d images in '%s'", fn, lab_path,
                              shape_str(labels), n, img_path)
  end
  local lo, hi = labels:min():item(), labels:max():item()
  if lo < 1 or hi > 10 then
    return nil, string.format("%s: '%s' has labels %d..%d on disk, expected 0..9", fn, lab_path,
                              lo - 1, hi - 1)
  end
  if limit and limit < n then
    images, labels, n = images:narrow(1, 1, limit):contiguous(), labels:narrow(1, 1, limit):contiguous(), limit
  end
  images = images:reshape(n, 1, 28, 28)
  local classes = {}
  for i, c in ipairs(data.fashion_mnist_classes) do classes[i] = fn == "mnist" and tostring(i - 1) or c end
  return { images = images, x = images, labels = labels, classes = classes, split = split }
end

--- Fashion-MNIST from its IDX files: {images = N×1×28×28 float32 in [0,1], labels = N int32
--- 1..10, classes = names, x = images} | nil, message when the files are missing. opts: split ("train" | "test",
--- default "train"), path (the directory; default $FVL_FASHION_MNIST, else data.FASHION_MNIST_DIR),
--- limit (the first n examples).
function data.fashion_mnist(opts)
  return idx_set("fashion_mnist", opts, function(files)
    return string.format("Fashion-MNIST comes from the Debian package dataset-fashion-mnist (apt-get install "
      .. "dataset-fashion-mnist), installed in %s; or pass path=DIR holding %s and %s", data.FASHION_MNIST_DIR,
      files[1], files[2])
  end)
end

-- MNIST digits: the same IDX file names as Fashion-MNIST; Debian has no package for it, so
-- path= is required. Labels 1..10 stand for the digits 0..9 (classes[y] = "0".."9").
function data.mnist(opts)
  local fn = "mnist"
  opts = util.check_opts(fn, opts, { "split", "path", "limit" })
  if type(opts.path) ~= "string" then
    fail(fn .. ": path= must name the directory holding the MNIST IDX files (train-images-idx3-ubyte.gz, ...)")
  end
  return idx_set(fn, opts, function(files)
    return string.format("path=DIR must hold %s and %s (MNIST has no Debian package)", files[1], files[2])
  end)
end

-- any IDX file: fvl.data.idx(path, {dtype="float32"|"int32", scale=1, shift=0})
--   -> tensor of the file's shape (value * scale + shift; int32: value + shift) | nil, message
function data.idx(path, opts)
  local fn = "data.idx"
  if type(path) ~= "string" then fail(fn .. ": path must be a file name, got " .. type(path)) end
  opts = util.check_opts(fn, opts, { "dtype", "scale", "shift" })
  local dt = util.enum(fn, "dtype", opts.dtype, { "float32", "int32" }, "float32")
  local scale = util.number(fn, "scale", opts.scale, 1)
  local shift = util.number(fn, "shift", opts.shift, 0)
  if dt == "int32" and (scale ~= 1 or shift ~= math.floor(shift)) then
    fail(fn .. ": int32 output takes no scale and an integer shift")
  end
  local t, msg = fvl._idx_load(path, dt, scale, shift)
  if not t then return nil, fn .. ": " .. msg end
  return t
end

-- ---------------------------------------------------------------------------- .npy
--- A data set from .npy files: fvl.data.npy{features="f.npy", labels="l.npy", base="auto"|0|1}
--- -> {x=, labels=, classes=}. features: N×... of any NumPy dtype (read as float32); labels: N
--- integers, 0-based (base=0, shifted to 1-based) or 1-based (base=1); "auto" (default) decides
--- from the smallest label. Errors name the file and what is wrong.
function data.npy(opts)
  local fn = "data.npy"
  opts = util.check_opts(fn, opts, { "features", "labels", "base" })
  if type(opts.features) ~= "string" then
    fail(fn .. ": features must be a .npy file name, got " .. type(opts.features))
  end
  if opts.labels ~= nil and type(opts.labels) ~= "string" then
    fail(fn .. ": labels must be a .npy file name, got " .. type(opts.labels))
  end
  local base = opts.base == nil and "auto" or opts.base
  if base ~= "auto" and base ~= 0 and base ~= 1 then
    fail(fn .. ": base = " .. tostring(base) .. " (expected 0, 1 or \"auto\")")
  end
  local x, err = fvl.load(opts.features)
  if not x then return nil, fn .. ": features: " .. err end
  if x:dtype() == "int32" then x = x:float() end   -- |u1, <i8, ... features (fvl.load gives int32)
  if x:dim() < 1 or x:dtype() ~= "float32" then
    return nil, string.format("%s: features '%s' must hold float32 rows, got %s %s", fn,
                              opts.features, x:dtype(), shape_str(x))
  end
  local ds = { x = x, features = x }
  if opts.labels then
    local y, lerr = fvl.load(opts.labels)
    if not y then return nil, fn .. ": labels: " .. lerr end
    if y:dim() ~= 1 or y:size(1) ~= x:size(1) then
      return nil, string.format("%s: labels '%s' are %s, expected %d values (one per row of '%s', %s)",
                                fn, opts.labels, shape_str(y), x:size(1), opts.features, shape_str(x))
    end
    if y:dtype() ~= "int32" then
      local yi = y:int()
      if (yi:float() - y):abs():max():item() ~= 0 then
        return nil, string.format("%s: labels '%s' are float32 values that are not whole numbers", fn,
                                  opts.labels)
      end
      y = yi
    end
    local lo = y:numel() > 0 and y:min():item() or 1
    local b = base
    if b == "auto" then b = lo == 0 and 0 or 1 end
    if lo < b then
      return nil, string.format("%s: labels '%s' contain %d, below the %d-based range", fn,
                                opts.labels, lo, b)
    end
    -- the 0-based shift runs in float32, exact below 2^24 (16.7 M classes)
    if b == 0 and y:numel() > 0 and y:max():item() >= 16777215 then
      local big = 0
      for _, v in ipairs(y:totable()) do if v > big then big = v end end
      return nil, string.format("%s: labels '%s' contain %d (class ids must be below 16777215)", fn,
                                opts.labels, big)
    end
    if b == 0 then y = (y + 1):int() end
    ds.labels = y:contiguous()
    ds.classes = y:numel() > 0 and y:max():item() or 0
  end
  return ds
end

-- ---------------------------------------------------------------------------- synthetic faces
local SF_OPTS = { "identities", "per_identity", "test_identities", "test_per_identity", "dim",
                  "image", "out_dim", "h", "w", "hidden", "factors", "nuisance", "illumination",
                  "spread", "noise", "long_tail", "label_noise", "seed", "size" }

--- Seeded synthetic identity data for face-recognition experiments
--- -> {train = {x=, labels=, true_labels=, classes=}, test = {x=, labels=, classes=}, info = {...}}.
--- opts: identities, per_identity, test_identities, test_per_identity, dim, image ("vector" |
--- "map" | "rgb", default "vector"), out_dim, h, w, hidden, factors, nuisance, illumination,
--- spread, noise, long_tail, label_noise (0 <= p < 1), seed (1), size (rgb images, 56).
function data.synthetic_faces(opts)
  local fn = "synthetic_faces"
  opts = util.check_opts(fn, opts, SF_OPTS)
  local image = util.enum(fn, "image", opts.image, { "vector", "map", "rgb" }, "vector")
  local o = {}
  local ints = { identities = 2, per_identity = 2, test_identities = 0, test_per_identity = 2,
                 dim = 2, hidden = 1, factors = 0 }
  for k, lo in pairs(ints) do
    if opts[k] ~= nil then o[k] = util.integer(fn, k, opts[k], nil, lo) end
  end
  for _, k in ipairs { "nuisance", "illumination", "spread", "noise", "long_tail" } do
    if opts[k] ~= nil then o[k] = util.number(fn, k, opts[k], nil, 0) end
  end
  if opts.label_noise ~= nil then
    o.label_noise = util.number(fn, "label_noise", opts.label_noise, nil, 0)
    if o.label_noise >= 1 then fail(string.format("%s: label_noise = %g (expected 0 <= label_noise < 1)", fn, o.label_noise)) end
  end
  o.seed = util.integer(fn, "seed", opts.seed, 1)
  if image == "rgb" then
    -- RGB face images size×size in 0..255 (engine/data/synthetic_rgb.c): faces drawn from
    -- per-identity facial parameters under pose, expression, illumination and noise nuisances
    for _, k in ipairs { "out_dim", "h", "w", "dim", "hidden", "factors", "spread" } do
      if opts[k] ~= nil then fail(string.format("%s: %s is not used by image=\"rgb\" (use size)", fn, k)) end
    end
    o.rgb = util.integer(fn, "size", opts.size, 56, 8)
    if o.rgb > 1024 then fail(string.format("%s: size = %d (expected 8..1024)", fn, o.rgb)) end
    o.nuisance = o.nuisance or 1
    o.illumination = o.illumination or 1
    o.noise = o.noise or 0.3
  elseif opts.size ~= nil then
    fail(fn .. ": size is for image=\"rgb\"")
  elseif image == "vector" then
    if opts.h ~= nil or opts.w ~= nil then
      fail(fn .. ": h and w are for image=\"map\" (image is \"vector\"; use out_dim)")
    end
    o.out_dim = util.integer(fn, "out_dim", opts.out_dim, 128, 1)
  else
    if opts.out_dim ~= nil then fail(fn .. ": out_dim is for image=\"vector\" (image is \"map\"; use h, w)") end
    o.h = util.integer(fn, "h", opts.h, 28, 1)
    o.w = util.integer(fn, "w", opts.w, o.h, 1)
    o.out_dim = o.h * o.w
  end
  local xtr, ytr, ytrue, xte, yte, info = fvl._synthetic_faces(o)
  local K, T = info.identities, info.test_identities
  info.image = image
  info.train_size, info.test_size = xtr:size(1), xte:size(1)
  info.shape = table.move(xtr:shape(), 2, xtr:dim(), 1, {})
  if image == "map" then info.h, info.w, info.out_dim = o.h, o.w, nil end
  if image == "rgb" then
    info.size, info.out_dim, info.dim, info.factors, info.hidden, info.spread = o.rgb, nil, nil, nil, nil, nil
  end
  -- train samples per identity (the long tail), for class-balanced losses and samplers
  local n = ytrue:numel()
  info.counts = n > 0 and fvl.zeros(K):index_add(1, ytrue, fvl.ones(n)):int() or fvl.zeros({ K }, "int32")
  return { train = { x = xtr, labels = ytr, true_labels = ytrue, classes = K },
           test = { x = xte, labels = yte, classes = T }, info = info }
end

-- ---------------------------------------------------------------------------- loader
local Loader = {}
Loader.__index = Loader
Loader.__name = "fvl.data.loader"
util.register_class(Loader, "fvl.data.Loader")

local function dataset_parts(ds)
  if util.is_tensor(ds) then return ds, nil end
  if type(ds) ~= "table" then
    fail("loader: ds must be a data set table {x=, labels=} or a tensor, got " .. type(ds))
  end
  local x = ds.x or ds.images or ds.features
  if x == nil and type(ds.train) == "table" then
    -- a split pair such as synthetic_faces' result: the loader serves its train split
    return dataset_parts(ds.train)
  end
  if not util.is_tensor(x) then
    fail("loader: ds has no x (or images) tensor")
  end
  local y = ds.labels or ds.y
  if y ~= nil and not util.is_tensor(y) then
    fail("loader: ds.labels must be an int32 tensor, got " .. type(y))
  end
  if y ~= nil and (y:dim() ~= 1 or y:size(1) ~= x:size(1) or y:dtype() ~= "int32") then
    fail(string.format("loader: ds.labels must be %d int32 values (one per row of x, %s), got %s %s",
                       x:size(1), shape_str(x), y:dtype(), shape_str(y)))
  end
  return x, y
end

--- A mini-batch iterator over a data set ({x=, labels=} or an image set): `for batch in loader do
--- ... end` gives {x=, y=, index=} (index: 1-based rows).
--- opts: batch (128), shuffle (true), seed (1), drop_last (false), flip (false: random
--- horizontal flips), crop (0: random crop padding), epoch, shard (distributed: this rank's part).
function data.loader(ds, opts)
  -- an image data set (fvl.data.images{...}) has its own threaded loader
  if type(ds) == "table" and getmetatable(ds) == require("fvl.faces").ImageSet then return ds:loader(opts) end
  local fn = "loader"
  opts = util.check_opts(fn, opts, { "batch", "shuffle", "seed", "drop_last", "flip", "crop", "epoch", "shard" })
  local x, y = dataset_parts(ds)
  local self = setmetatable({}, Loader)
  -- gathered row by row in C: one contiguous copy now (a no-op when already contiguous),
  -- never one per batch
  self.x, self.y = x:contiguous(), y and y:contiguous()
  self.n = x:dim() > 0 and x:size(1) or 0
  self.batch = util.integer(fn, "batch", opts.batch, 128, 1)
  self.shuffle = util.boolean(fn, "shuffle", opts.shuffle, true)
  self.seed = util.integer(fn, "seed", opts.seed, 1)
  self.drop_last = util.boolean(fn, "drop_last", opts.drop_last, false)
  self.flip = util.boolean(fn, "flip", opts.flip, false)
  self.crop = util.integer(fn, "crop", opts.crop, 0, 0)
  self.epoch = util.integer(fn, "epoch", opts.epoch, 1, 1)
  -- shard = true (several processes, fvl.dist): the epoch's order, the same on every rank, dealt
  -- round-robin: ⌊n/N⌋ rows per rank, full batches only, so every rank takes as many batches of
  -- the same size (what a sharded head and allreduce_grads need); see docs/distributed.md
  self.shard = util.boolean(fn, "shard", opts.shard, false)
  if self.shard then
    local N = require("fvl.dist").size()
    self.rank, self.world, self.drop_last = require("fvl.dist").rank(), N, true
    self.n_share = self.n // N
  end
  if (self.flip or self.crop > 0) and x:dim() ~= 4 then
    fail(string.format("loader: flip and crop need images N×C×H×W, got x %s", shape_str(x)))
  end
  if self.crop > 0 and (self.crop >= x:size(3) or self.crop >= x:size(4)) then
    fail(string.format("loader: crop = %d (expected 0..%d for %dx%d images)", self.crop,
                       math.min(x:size(3), x:size(4)) - 1, x:size(3), x:size(4)))
  end
  self.pos = 0
  return self
end

-- batches per epoch
function Loader:__len()
  if self.shard then return self.n_share // self.batch end
  if self.drop_last then return self.n // self.batch end
  return (self.n + self.batch - 1) // self.batch
end

-- start the current epoch over (after a `break`), or jump to epoch e (resume)
function Loader:reset(e)
  if e ~= nil then self.epoch = util.integer("loader:reset", "epoch", e, nil, 1) end
  self.pos, self.perm = 0, nil
  return self
end

-- the next batch of the current epoch, or nil at its end (the loader then moves to the next
-- epoch, with a fresh shuffle, so `for batch in loader do` works once per epoch)
function Loader:next()
  local n, B = self.shard and self.n_share or self.n, self.batch
  local left = n - self.pos
  if left <= 0 or (self.drop_last and left < B) then
    self.epoch, self.pos, self.perm = self.epoch + 1, 0, nil
    return nil
  end
  if self.shard and not self.perm then   -- this rank's rows of the epoch's order
    local order = self.shuffle and fvl._loader_perm(self.n, self.seed, self.epoch) or fvl.arange(0, self.n - 1):int()
    local mine = order:narrow(1, 1, n * self.world):reshape(n, self.world):narrow(2, self.rank + 1, 1):reshape(n)
    -- the batch gatherer takes an order of all rows: this rank's first (only those are read)
    self.perm = n < self.n and fvl.cat({ mine, order:narrow(1, 1, self.n - n) }, 1):contiguous() or mine:contiguous()
  end
  if self.shuffle and not self.perm then self.perm = fvl._loader_perm(n, self.seed, self.epoch) end
  local b = math.min(B, left)
  local xb, yb, index = fvl._loader_batch(self.x, self.y, (self.shuffle or self.shard) and self.perm or nil, self.pos,
                                          b, self.flip, self.crop, self.seed, self.epoch)
  self.pos = self.pos + b
  return { x = xb, y = yb, index = index }
end

function Loader:__call() return self:next() end

function Loader:__tostring()
  return string.format("fvl.data.loader(%d rows, batch %d, %s, epoch %d)", self.n, self.batch,
                       self.shuffle and "shuffled" or "in order", self.epoch)
end

data.Loader = Loader
-- face data formats (RecordIO, image folders, .bin packs, LFW pairs, .npz): lua/fvl/faces.lua
require("fvl.faces").install(data)
require("fvl.align").install(data)   -- face alignment and resizing: lua/fvl/align.lua
return data
