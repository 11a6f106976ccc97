-- fvl.ijb — the IJB-B / IJB-C 1:1 template verification protocol (insightface's ijb_11),
-- installed into fvl.eval (docs/ijb.md):
--
--   local r = fvl.eval.ijb(net, "IJB_release/IJBC", {progress = true})
--   print(r.line)   --> IJBC: TAR@FAR=1e-6 ... 1e-4 95.31 % ... (469375 images, 23124 templates, ...)
--   fvl.eval.ijb("img_feats.npy", "IJB_release/IJBB", {split_flip = true})   -- features made elsewhere
--
-- The directory holds meta/<p>_face_tid_mid.txt ("image template media" per face),
-- meta/<p>_name_5pts_score.txt ("image x1 y1 ... x5 y5 score": five landmarks in OpenCV's 0-based
-- pixel coordinates and the detector's score), meta/<p>_template_pair_label.txt ("t1 t2 label",
-- label 1 for a genuine pair) and loose_crop/<image>, with p = ijbb or ijbc.
-- Image feature = model(aligned) + model(mirrored aligned), raw outputs summed (flip test);
-- kept unnormalised (norm_score, insightface's N1) and times the detector score (detector_score,
-- D1): insightface's defaults, both on; false gives the plain variants. Template = Σ over its
-- media of the mean of that media's image features, L2-normalised; pair score = cosine of the two templates. TAR at each FAR is read at the ROC
-- point (scikit-learn's corners) whose FAR is nearest the target, the higher TAR on a tie.
local fvl = require "fvl.core"
local util = require "fvl.util"

local M = {}
local fail = util.fail
M.fars = { 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1 }

local align = require "fvl.align"
local column, each_line = align._column, align._each_line   -- chunked tensors, non-blank lines

local function int_field(path, n, what, s)
  local v = math.tointeger(tonumber(s))
  if not v then fail(string.format("ijb: %s line %d: %s = '%s' is not an integer", path, n, what, tostring(s))) end
  return v
end

-- meta/<p>_face_tid_mid.txt -> names, template ids, media ids (Lua lists)
local function read_tid_mid(path)
  local names, tids, mids = {}, {}, {}
  each_line(path, function(line, n)
    local a, b, c, rest = line:match("^%s*(%S+)%s+(%S+)%s+(%S+)%s*(.-)%s*$")
    if not a or rest ~= "" then
      fail(string.format("ijb: %s line %d = '%s', expected 'image template media'", path, n, line:sub(1, 80)))
    end
    names[#names + 1] = a
    tids[#tids + 1] = int_field(path, n, "template", b)
    mids[#mids + 1] = int_field(path, n, "media", c)
  end)
  return names, tids, mids
end

-- meta/<p>_name_5pts_score.txt (fvl.data.read_landmarks, score required), checked row by row
-- against names -> N×10 landmarks, N scores
local function read_5pts(path, names)
  local r, err = align.read_landmarks(path, { score = true })
  if not r then fail("ijb: " .. err) end
  for row = 1, math.max(#r.names, #names) do
    if r.names[row] ~= names[row] then
      if not r.names[row] or not names[row] then
        fail(string.format("ijb: %s lists %d faces, the face_tid_mid file %d", path, #r.names, #names))
      end
      fail(string.format("ijb: %s line %d names '%s' but face %d of the face_tid_mid file is '%s' (the two "
                         .. "files list the faces in one order)", path, r.lines[row], r.names[row], row, names[row]))
    end
  end
  return r.landmarks, r.scores
end

-- meta/<p>_template_pair_label.txt -> the pairs' template rows a, b (1-based rows of the sorted
-- template ids: row_of[id]) and labels (int32 0/1); an id without faces is an error at its line
local function read_pairs(path, row_of, tid_path)
  local a, b, lab = column("int32"), column("int32"), column("int32")
  each_line(path, function(line, n)
    local x, y, c = line:match("^%s*(%-?%d+)%s+(%-?%d+)%s+(%-?%d+)%s*$")
    if not x then
      fail(string.format("ijb: %s line %d = '%s', expected 't1 t2 label' (integers)", path, n, line:sub(1, 80)))
    end
    c = tonumber(c)
    if c ~= 0 and c ~= 1 then
      fail(string.format("ijb: %s line %d: label = %d (expected 1 genuine, 0 impostor)", path, n, c))
    end
    local ra, rb = row_of[tonumber(x)], row_of[tonumber(y)]
    if not ra or not rb then
      fail(string.format("ijb: %s line %d: template %s has no face in %s", path, n, ra and y or x, tid_path))
    end
    a.push(ra); b.push(rb); lab.push(c)
  end)
  return a.tensor(), b.tensor(), lab.tensor()
end

-- the distinct template ids in increasing order (as numpy.unique) and id -> row
local function template_rows(tids)
  local ids, row_of = {}, {}
  for _, t in ipairs(tids) do
    if not row_of[t] then row_of[t] = true; ids[#ids + 1] = t end
  end
  table.sort(ids)
  for k, t in ipairs(ids) do row_of[t] = k end
  return ids, row_of
end

local function exists(p)
  local f = io.open(p, "rb")
  if f then f:close() end
  return f ~= nil
end

-- the file prefix: given, or the one of ijbb / ijbc whose files meta/ holds
local function detect_prefix(root, prefix)
  if prefix ~= nil then
    if type(prefix) ~= "string" or not prefix:match("^[%w_]+$") then
      fail("ijb_meta: prefix must be a file-name prefix such as 'ijbb' or 'ijbc', got " .. tostring(prefix))
    end
    return prefix
  end
  local found = {}
  for _, p in ipairs({ "ijbb", "ijbc" }) do
    if exists(string.format("%s/meta/%s_face_tid_mid.txt", root, p)) then found[#found + 1] = p end
  end
  if #found ~= 1 then
    fail(string.format("ijb_meta: %s/meta holds %s (expected the files of one of ijbb, ijbc; or give prefix =)",
                       root, #found == 0 and "no ijbb_/ijbc_face_tid_mid.txt" or "both ijbb_ and ijbc_ files"))
  end
  return found[1]
end

--- fvl.eval.ijb_meta(root [, opts]) -> meta | nil, message: the lists of an IJB-B / IJB-C
--- directory in insightface's layout (meta/ and loose_crop/): meta.names (image file names),
--- templates and medias (int32, one per image), landmarks (N×10: x1, y1, ..., x5, y5 in OpenCV's
--- 0-based pixel coordinates), scores (the detector's), template_ids (the distinct template ids,
--- increasing), pairs = {a =, b =, label =} (int32: each pair's two templates as 1-based
--- positions in template_ids, and 1 genuine / 0 impostor), prefix, root. opts: prefix ("ijbb" | "ijbc"; default: the one meta/ holds). The faces of
--- *_face_tid_mid.txt and *_name_5pts_score.txt must agree line by line. A missing or malformed
--- file is nil, message naming the file and line.
function M.ijb_meta(root, opts)
  local fn = "ijb_meta"
  if type(root) ~= "string" then fail(fn .. ": root must be the IJB directory (string), got " .. type(root)) end
  opts = util.check_opts(fn, opts, { "prefix" })
  local ok, meta = pcall(function()
    local prefix = detect_prefix(root, opts.prefix)
    local function file(what) return string.format("%s/meta/%s_%s.txt", root, prefix, what) end
    local names, tids, mids = read_tid_mid(file("face_tid_mid"))
    if #names == 0 then fail("ijb: " .. file("face_tid_mid") .. " lists no faces") end
    local lm, scores = read_5pts(file("name_5pts_score"), names)
    local ids, row_of = template_rows(tids)
    local a, b, label = read_pairs(file("template_pair_label"), row_of, file("face_tid_mid"))
    if a:numel() == 0 then fail("ijb: " .. file("template_pair_label") .. " lists no pairs") end
    return { root = root, prefix = prefix, names = names, templates = fvl.tensor(tids, "int32"),
             medias = fvl.tensor(mids, "int32"), landmarks = lm, scores = scores, template_ids = ids,
             pairs = { a = a, b = b, label = label }, n = #names }
  end)
  if not ok then
    if type(meta) == "string" and meta:match("^ijb") then return nil, meta end
    error(meta, 0)
  end
  return meta
end

--- fvl.eval.ijb_templates(features, templates, medias [, opts]) -> template features, template ids:
--- insightface's pooling. features: N×D image features (raw, flip-summed); templates, medias:
--- N ids each (int32 tensors or lists). Each image feature is L2-normalised unless norm_score
--- (false; insightface's N1) and multiplied by its detector score with scores = N values
--- (insightface's D1); a template is the sum over its media of the mean of that media's
--- features, then L2-normalised. Returns T×D (templates in increasing id order) and the T ids
--- (a Lua list). Errors: counts that differ.
function M.ijb_templates(features, templates, medias, opts)
  local fn = "ijb_templates"
  opts = util.check_opts(fn, opts, { "norm_score", "scores" })
  if not util.is_tensor(features) or features:dim() ~= 2 then
    fail(string.format("%s: features must be N×D, got %s", fn, util.is_tensor(features) and util.shape_str(features) or type(features)))
  end
  local N = features:size(1)
  local tl = util.is_tensor(templates) and templates:totable() or templates
  local ml = util.is_tensor(medias) and medias:totable() or medias
  if type(tl) ~= "table" or type(ml) ~= "table" or #tl ~= N or #ml ~= N then
    fail(string.format("%s: %d features need %d template ids and %d media ids, got %s and %s", fn, N, N, N,
                       type(tl) == "table" and #tl or type(tl), type(ml) == "table" and #ml or type(ml)))
  end
  local f = features:float()
  if not util.boolean(fn, "norm_score", opts.norm_score, false) then f = f:normalize(2) end
  if opts.scores ~= nil then
    local s = opts.scores
    if not util.is_tensor(s) then s = fvl.tensor(s) end
    if s:numel() ~= N then fail(string.format("%s: scores has %d values for %d features", fn, s:numel(), N)) end
    f = f * s:float():reshape(N, 1)
  end
  -- groups = distinct (template, media); templates in increasing id order, as numpy.unique
  for i = 1, N do
    if math.type(tl[i]) ~= "integer" or math.type(ml[i]) ~= "integer" then
      fail(string.format("%s: templates[%d], medias[%d] = %s, %s (expected integer ids)", fn, i, i, tostring(tl[i]), tostring(ml[i])))
    end
  end
  local ids, row_of = template_rows(tl)
  local group, gid, gcount, gtemplate = {}, {}, {}, {}
  for i = 1, N do
    local key = tl[i] .. ":" .. ml[i]
    local g = group[key]
    if not g then
      g = #gcount + 1
      group[key], gcount[g], gtemplate[g] = g, 0, row_of[tl[i]]
    end
    gid[i], gcount[g] = g, gcount[g] + 1
  end
  local G, D = #gcount, f:size(2)
  local media = fvl.zeros(G, D):index_add(1, fvl.tensor(gid, "int32"), f)
  media = media / fvl.tensor(gcount):reshape(G, 1)
  local tmpl = fvl.zeros(#ids, D):index_add(1, fvl.tensor(gtemplate, "int32"), media)
  return tmpl:normalize(2), ids
end

--- fvl.eval.ijb_scores(template_features, template_ids, meta) -> scores: the cosine of each pair
--- of meta.pairs (P float32 values, in the pairs file's order), from fvl.eval.ijb_templates'
--- output for meta's faces. Errors: templates other than meta's.
function M.ijb_scores(tf, ids, meta)
  local fn = "ijb_scores"
  if not util.is_tensor(tf) or tf:dim() ~= 2 then fail(fn .. ": template_features must be T×D") end
  if type(meta) ~= "table" or type(meta.pairs) ~= "table" then fail(fn .. ": meta must be fvl.eval.ijb_meta's result") end
  local want = meta.template_ids
  local same = type(ids) == "table" and #ids == #want and tf:size(1) == #want
  for k = 1, same and #want or 0 do if ids[k] ~= want[k] then same = false; break end end
  if not same then
    fail(string.format("%s: %d template features for ids other than meta's %d templates (pool meta's faces: "
                       .. "fvl.eval.ijb_templates(features, meta.templates, meta.medias))", fn, tf:size(1), #want))
  end
  local a, b = meta.pairs.a, meta.pairs.b
  local P = a:numel()
  local out = fvl.zeros(P)
  local step = 16384
  for s = 1, P, step do   -- blocks of pairs, their temporaries freed at once (15.7 M pairs for IJB-C)
    local n = math.min(step, P - s + 1)
    local x = tf:index(1, a:narrow(1, s, n))
    local y = tf:index(1, b:narrow(1, s, n))
    local xy = x * y
    out:narrow(1, s, n):copy(xy:sum(2):reshape(n))
    x:free(); y:free(); xy:free()
  end
  return out
end

--- fvl.eval.ijb_tar(scores, labels [, fars]) -> r: TAR at each FAR of fars (default 1e-6 ... 1e-1)
--- as insightface's ijb_11 reads it: the point of the ROC (scikit-learn's roc_curve with its
--- corners only) whose FAR is nearest the target, the higher TAR on a tie. r.tar_at_far[f],
--- r.far_at[f] (the FAR of the point used), r.roc = {far =, tar =, threshold =}, r.auc
--- (trapezoid), n_genuine, n_impostor. labels: 1 genuine, 0 impostor.
function M.ijb_tar(scores, labels, fars)
  local fn = "ijb_tar"
  fars = fars or M.fars
  if type(fars) ~= "table" then fail(fn .. ": fars must be a list of rates in (0, 1)") end
  local far, tar, thr = require("fvl.eval").roc(scores, labels, { drop_intermediate = true })
  local r = { tar_at_far = {}, far_at = {}, roc = { far = far, tar = tar, threshold = thr } }
  local n = far:numel()
  local pos = fvl.arange(1, n)   -- tensor ops: a 15-million-pair ROC never becomes a Lua table
  for _, f in ipairs(fars) do
    util.number(fn, "far", f, nil, 0, 1)
    local d = (far - f):abs()
    local nearest = d:le(d:min():item()):float() * pos   -- the last of the nearest points: the higher TAR
    local i = math.tointeger(nearest:max():item())
    r.tar_at_far[f], r.far_at[f] = tar:get(i), far:get(i)
  end
  r.auc = n < 2 and 0 or ((far:narrow(1, 2, n - 1) - far:narrow(1, 1, n - 1))
                          * (tar:narrow(1, 2, n - 1) + tar:narrow(1, 1, n - 1))):sum():item() / 2
  local g = (util.is_tensor(labels) and labels or fvl.tensor(labels, "int32")):sum():item()
  r.n_genuine, r.n_impostor = g, (util.is_tensor(labels) and labels:numel() or #labels) - g
  return r
end

local function run_model(model, x)
  if type(model) == "function" then return model(x) end
  return model:forward(x)
end

-- the next batch of aligned faces (B×C×S×S, (pixel − 127.5)/127.5) of images i..i+B−1
local function aligned_batch(meta, i, B, o)
  local data = require "fvl.data"
  local x = fvl.zeros(B, 3, o.size, o.size)
  for k = 0, B - 1 do
    local name = meta.names[i + k]
    local path = string.format("%s/loose_crop/%s", meta.root, name)
    local f = io.open(path, "rb")
    if not f then fail(string.format("ijb: image %s (face %d of the face list) cannot be read", path, i + k)) end
    local bytes = f:read("a")
    f:close()
    local ok, img = pcall(data.decode_image, bytes, { bgr = o.bgr })
    if not ok then fail(string.format("ijb: %s (face %d): %s", path, i + k, img)) end
    local face = data.align_face(img, meta.landmarks[i + k], { origin = 0, size = o.size })
    x:select(1, k + 1):copy(face)
  end
  return (x - 127.5) / 127.5
end

--- fvl.eval.ijb_features(model, meta [, opts]) -> N×D: the raw image features of the protocol:
--- each loose_crop image decoded (RGB unless bgr), aligned with its 5 landmarks onto the ArcFace
--- template (fvl.data.align_face, size×size), scaled to (pixel − 127.5)/127.5, through model
--- (an fvl.nn module, run in evaluation mode without gradients, or a function images -> B×D);
--- with flip the mirrored crop too, the raw outputs summed. opts: batch (64), flip (true), size
--- (the model's input_size, else 112), bgr (false), progress (false: true draws a bar with
--- images/s and ETA on stderr). Errors: an unreadable image (named with its face number).
function M.ijb_features(model, meta, opts)
  local fn = "ijb_features"
  opts = util.check_opts(fn, opts, { "batch", "flip", "size", "bgr", "progress" })
  if type(model) ~= "function" and not (type(model) == "table" and model.forward) then
    fail(fn .. ": model must be an fvl.nn module or a function images -> embeddings, got " .. type(model))
  end
  if type(meta) ~= "table" or not meta.names then fail(fn .. ": meta must be fvl.eval.ijb_meta's result") end
  local insize = type(model) == "table" and math.tointeger(model.input_size) or nil
  local o = { batch = util.integer(fn, "batch", opts.batch, 64, 1), flip = util.boolean(fn, "flip", opts.flip, true),
              size = util.integer(fn, "size", opts.size, insize or 112, 1), bgr = util.boolean(fn, "bgr", opts.bgr, false) }
  local bar = util.boolean(fn, "progress", opts.progress, false)
      and require("fvl.progress").new { total = meta.n, title = meta.prefix .. " (IJB features)", unit = "img" } or nil
  local was_training = type(model) == "table" and model.training
  if was_training and model.evaluate then model:evaluate() end
  local feats
  local ok, err = pcall(fvl.no_grad, function()
    local rev = {}
    for c = o.size, 1, -1 do rev[#rev + 1] = c end
    rev = fvl.tensor(rev, "int32")
    for i = 1, meta.n, o.batch do
      local B = math.min(o.batch, meta.n - i + 1)
      local x = aligned_batch(meta, i, B, o)
      local e = run_model(model, x)
      if not util.is_tensor(e) or e:dim() ~= 2 or e:size(1) ~= B then
        fail(string.format("%s: the model must return B×D embeddings, got %s for a batch of %d", fn,
                           util.is_tensor(e) and util.shape_str(e) or type(e), B))
      end
      e = e:detach()
      if o.flip then e = e + run_model(model, x:index(4, rev)):detach() end
      feats = feats or fvl.zeros(meta.n, e:size(2))
      feats:narrow(1, i, B):copy(e)
      if bar then bar:update(B) end
    end
  end)
  if bar then bar:close() end
  if was_training and model.train then model:train(true) end
  if not ok then error(err, 0) end
  return feats
end

-- precomputed image features: an N×D tensor or a .npy file, rows in the face list's order
local function given_features(fn, src, meta, split)
  if type(src) == "string" then
    local t, err = fvl.load(src)
    if not t then fail(string.format("%s: features file %s: %s", fn, src, tostring(err))) end
    if not util.is_tensor(t) then fail(string.format("%s: %s holds several arrays, expected one N×D array (.npy)", fn, src)) end
    src = t
  end
  if src:dim() ~= 2 or src:size(1) ~= meta.n then
    fail(string.format("%s: features are %s, expected %d×D (one row per face of the face list)", fn,
                       util.shape_str(src), meta.n))
  end
  src = src:float()
  if split then   -- insightface's saved img_feats: [embedding | embedding of the mirror]
    local D = src:size(2)
    if D % 2 ~= 0 then fail(string.format("%s: split_flip needs an even feature size, got %d", fn, D)) end
    src = src:narrow(2, 1, D // 2) + src:narrow(2, D // 2 + 1, D // 2)
  end
  return src
end

--- fvl.eval.ijb(source, root [, opts]) -> r: the IJB-B / IJB-C 1:1 verification protocol.
--- source: a model (fvl.nn module or function images -> B×D; images aligned and embedded by
--- fvl.eval.ijb_features) or precomputed raw features (an N×D tensor or a .npy path, rows in the
--- face list's order). root: the IJB directory (insightface's layout, fvl.eval.ijb_meta) or
--- ijb_meta's result. opts: prefix, detector_score (true, insightface's default D1: image
--- features times the detector score; false: D0), norm_score (true, insightface's default N1:
--- image features kept unnormalised before pooling; false: N0, each normalised first),
--- split_flip (false; true: given features are [embedding | mirror's embedding] halves, summed
--- first), fars ({1e-6, ..., 1e-1}), name, and ijb_features' batch, flip, size, bgr, progress.
--- Returns r.tar_at_far[f] (fvl.eval.ijb_tar), far_at, roc, auc, n_genuine, n_impostor, scores
--- (P pair cosines), labels, features (N×D raw image features), templates (T×D), n_images,
--- n_templates, n_pairs, name, line (one line for logs). tostring(r) is r.line.
function M.ijb(source, root, opts)
  local fn = "ijb"
  opts = util.check_opts(fn, opts, { "prefix", "detector_score", "norm_score", "split_flip", "fars", "name",
                                     "batch", "flip", "size", "bgr", "progress" })
  local meta = root
  if type(root) == "string" then
    local m, err = M.ijb_meta(root, { prefix = opts.prefix })
    if not m then fail(err) end
    meta = m
  elseif type(root) ~= "table" or not root.pairs then
    fail(fn .. ": root must be the IJB directory or fvl.eval.ijb_meta's result, got " .. type(root))
  end
  local d1 = util.boolean(fn, "detector_score", opts.detector_score, true)   -- insightface's defaults
  local n1 = util.boolean(fn, "norm_score", opts.norm_score, true)
  local feats
  if util.is_tensor(source) or type(source) == "string" then
    for _, k in ipairs({ "batch", "flip", "size", "bgr", "progress" }) do
      if opts[k] ~= nil then fail(string.format("%s: %s is for a model; the features are given", fn, k)) end
    end
    feats = given_features(fn, source, meta, util.boolean(fn, "split_flip", opts.split_flip, false))
  else
    if opts.split_flip ~= nil then fail(fn .. ": split_flip is for given features, not a model") end
    feats = M.ijb_features(source, meta, { batch = opts.batch, flip = opts.flip, size = opts.size, bgr = opts.bgr,
                                           progress = opts.progress })
  end
  local tf, ids = M.ijb_templates(feats, meta.templates, meta.medias,
                                  { norm_score = n1, scores = d1 and meta.scores or nil })
  local scores = M.ijb_scores(tf, ids, meta)
  local r = M.ijb_tar(scores, meta.pairs.label, opts.fars)
  r.scores, r.labels, r.features, r.templates, r.template_ids = scores, meta.pairs.label, feats, tf, ids
  r.n_images, r.n_templates, r.n_pairs = meta.n, #ids, scores:numel()
  r.name = opts.name or meta.prefix:upper()
  r.detector_score, r.norm_score = d1, n1
  local parts = {}
  for _, f in ipairs(opts.fars or M.fars) do
    parts[#parts + 1] = string.format("%s %.2f", require("fvl.eval").fmt_far(f), 100 * r.tar_at_far[f])
  end
  r.line = string.format("%s: TAR (%%) at FAR %s  AUC %.4f  (%d images, %d templates, %d pairs: %d genuine, "
                         .. "%d impostor; D%d N%d)", r.name, table.concat(parts, ", "), r.auc, r.n_images,
                         r.n_templates, r.n_pairs, r.n_genuine, r.n_impostor, d1 and 1 or 0, n1 and 1 or 0)
  return setmetatable(r, { __tostring = function(x) return x.line end, __name = "fvl.eval.ijb_result" })
end

function M.install(eval)
  for _, k in ipairs({ "ijb", "ijb_meta", "ijb_features", "ijb_templates", "ijb_scores", "ijb_tar" }) do
    eval[k] = M[k]
  end
  return eval
end

return M
