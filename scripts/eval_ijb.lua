-- scripts/eval_ijb.lua — IJB-B / IJB-C 1:1 verification (insightface's ijb_11 protocol) of a saved model.
--
--   fvl scripts/eval_ijb.lua IJB_DIR (--model MODEL.npz | --features FEATS.npy) [--prefix ijbc]
--                            [--batch 64] [--no-flip] [--bgr] [--no-detector-score] [--no-norm-score]
--                            [--split-flip] [--roc roc.png] [--json out.json] [--save-features f.npy]
--
-- IJB_DIR is insightface's layout: meta/<p>_face_tid_mid.txt, meta/<p>_name_5pts_score.txt,
-- meta/<p>_template_pair_label.txt and loose_crop/ (p = ijbb or ijbc, detected unless --prefix).
-- With --model (a file written by fvl.nn.save) every loose crop is aligned with its 5 landmarks to
-- the ArcFace template and embedded with the flip test (a progress bar with ETA on stderr);
-- --features takes the raw image features from a .npy instead (N×D, rows in the face list's
-- order; --split-flip: insightface's saved [embedding | mirror's embedding] halves). Prints TAR at
-- FAR = 1e-6 ... 1e-1 (the ROC point nearest each FAR, as insightface) and the AUC; --roc draws
-- the ROC (fvl.plot.roc). As insightface's evaluation, image features are weighted by the detector
-- score (D1) and pooled unnormalised (N1); --no-detector-score / --no-norm-score turn them off.
-- A bad argument or file: one line on stderr, exit status 1.
fvl = fvl or require "fvl"   -- also from a stock lua5.4 (LUA_CPATH reaching fvl.so)
local cli = require "fvl.cli"
local parser = cli.parser("fvl scripts/eval_ijb.lua",
                          "IJB-B / IJB-C 1:1 verification (insightface's ijb_11 protocol) of a saved model.")
parser:argument("dir", "the IJB directory (meta/ and loose_crop/)")
parser:option("--model", "model file written by fvl.nn.save")
parser:option("--features", "raw image features (.npy, N×D) instead of a model")
parser:option("--prefix", "file prefix of meta/ (default: the one present)"):choices({ "ijbb", "ijbc" })
parser:option("--batch", "images per forward pass", "64"):convert(cli.integer("batch", 1))
parser:flag("--no-flip", "embed the aligned crops only (no flip test)")
parser:flag("--bgr", "feed the channels in B, G, R order")
parser:flag("--no-detector-score", "D0: do not weight image features by the detector's score")
parser:flag("--no-norm-score", "N0: normalise each image feature before pooling")
parser:flag("--split-flip", "--features holds [embedding | mirror's embedding] halves (insightface's img_feats)")
parser:option("--roc", "draw the ROC to this image (.png/.svg/.pdf)")
parser:option("--json", "also write the results to this JSON file")
parser:option("--save-features", "write the raw image features to this .npy")
local a = parser:parse(arg or {})
local function die(msg) io.stderr:write("eval_ijb.lua: " .. tostring(msg):gsub("^eval_ijb.lua: ", "") .. "\n") os.exit(1) end
if (a.model == nil) == (a.features == nil) then die("give one of --model MODEL or --features FEATS.npy") end
if a.split_flip and not a.features then die("--split-flip is for --features") end

local meta, err = fvl.eval.ijb_meta(a.dir, { prefix = a.prefix })
if not meta then die(err) end
local d1, n1 = not a.no_detector_score, not a.no_norm_score
local source, opts = a.features, { detector_score = d1, norm_score = n1 }
if a.model then
  local net, m = fvl.nn.load(a.model)
  if not net then die(m) end
  source = net
  opts.batch, opts.flip, opts.bgr, opts.progress = a.batch, not a.no_flip, a.bgr, true
else
  opts.split_flip = a.split_flip
end
print(string.format("%s: %d images, %d pairs; %s, D%d N%d", a.dir, meta.n, meta.pairs.a:numel(),
                    a.model and ("model " .. a.model .. (a.no_flip and ", no flip" or ", flip test")) or ("features " .. a.features),
                    d1 and 1 or 0, n1 and 1 or 0))
local ok, r = pcall(fvl.eval.ijb, source, meta, opts)
if not ok then die(r) end
local head, row = {}, {}
for _, f in ipairs({ 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1 }) do
  head[#head + 1] = string.format("%8s", fvl.eval.fmt_far(f))
  row[#row + 1] = string.format("%8.2f", 100 * r.tar_at_far[f])
end
print(string.format("%-8s %s %8s", "TAR %", table.concat(head, " "), "AUC"))
print(string.format("%-8s %s %8.4f", r.name, table.concat(row, " "), r.auc))
print(string.format("%d templates, %d genuine and %d impostor pairs", r.n_templates, r.n_genuine, r.n_impostor))
if a.save_features then
  local okw, werr = fvl.save(a.save_features, r.features)
  if not okw then die(werr) end
end
if a.roc then
  local label = string.format("%s (TAR@FAR=1e-4 %.2f %%, AUC %.4f)", r.name, 100 * r.tar_at_far[1e-4], r.auc)
  local okp, perr = pcall(fvl.plot.roc, { { label = label, far = r.roc.far, tar = r.roc.tar } },
                          { file = a.roc, title = r.name .. " 1:1 verification (ROC)", xmin = math.max(1e-7, 0.1 / r.n_impostor) })
  if not okp then die(perr) end
end
if a.json then
  local tars = {}
  for f, v in pairs(r.tar_at_far) do tars[fvl.eval.fmt_far(f)] = v end
  local okw, werr = fvl.sys.write_atomic(a.json, fvl.json.encode({
    dir = a.dir, prefix = meta.prefix, model = a.model, features = a.features, flip = a.model and not a.no_flip or nil,
    detector_score = d1, norm_score = n1, tar_at_far = tars, auc = r.auc,
    images = r.n_images, templates = r.n_templates, genuine = r.n_genuine, impostor = r.n_impostor }) .. "\n")
  if not okw then die(werr) end
end
