-- fvl.eval — face verification and identification metrics (engine/eval.c).
--
--   local scores, same = fvl.eval.pairs(emb, labels, {n=6000, seed=1})
--   local r = fvl.eval.verification(scores, same, {folds=10})
--   print(fvl.eval.summary(r))  --> acc 97.52 ± 0.61 %  EER 2.95 %  AUC 0.9962  TAR@FAR=1e-3 93.10 %
--   r.accuracy r.std r.threshold r.eer r.auc r.tar_at_far[1e-3] r.roc.far r.roc.tar
--   fvl.eval.identification(gallery, gallery_labels, probes, probe_labels, {k=5})
--       --> {rank1=, rank5=, precision_at_1=, r_precision=, map_at_r=, n_queries=, n_dropped=}
--   fvl.eval.flip(emb, emb_of_mirrored_images)      -- flip test: normalize(a + b)
--   fvl.eval.flip_embed(net_fn, images)             -- runs net_fn on images and their mirror
--
-- Definitions (same as scikit-learn / insightface / pytorch-metric-learning):
--   scores are "higher = more alike" (cosine); for distances pass distance=true (pairs with
--   metric="l2" give d² of normalised embeddings).
--   ROC: one point per distinct score, (0,0) first; AUC by trapezoid; EER where FAR = 1 - TAR on
--   the piecewise-linear ROC. TAR@FAR=f = best TAR with FAR <= f, reported only for
--   f in 1e-1..1e-6 where #impostors >= 1/f (absent otherwise, never extrapolated; r.min_far =
--   1/#impostors says how far down the pairs reach).
--   r.val[f] = {tar=, std=, far=}: the LFW protocol's VAL@FAR — per fold, the threshold where the
--   training folds' FAR equals f (linear interpolation between the two bracketing training
--   scores), TAR and FAR measured on the held-out fold, mean ± std over folds; present only when
--   every fold has >= 1/f training impostors.
--   k-fold accuracy: contiguous folds (sklearn KFold without shuffle, like LFW's 10 folds); the
--   threshold maximises accuracy on the other k-1 folds over every distinct training score
--   (a pair is "same" when score >= threshold; the exact search replaces insightface's 0.01
--   grid on d² = 2 - 2cos); mean and population std over folds; r.threshold is the mean of
--   the fold thresholds. distance=true: scores are distances (lower = more alike, e.g. squared
--   L2 of normalised embeddings) and thresholds are reported as distances ("same" when d <= t).
--   Identification: cosine ranking (ties by gallery order); rank-k = a same-identity gallery item
--   among the k nearest; precision@1, R-precision, MAP@R as pytorch-metric-learning
--   (R = number of gallery items of the probe's identity). Probes whose identity is not in the
--   gallery are dropped (n_dropped). probes = nil: leave-one-out within the gallery.
local fvl = require "fvl.core"
local util = require "fvl.util"
local E = fvl._eval
local eval = {}

local fail = util.fail
local FARS = { 1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6 }
eval.fars = FARS

local function fmt_far(f) return (string.format("%.0e", util.number("fmt_far", "far", f)):gsub("e%-0", "e-")) end
eval.fmt_far = fmt_far
--- @doc fvl.eval.fmt_far(far) -> string
--- A false-accept rate as the result tables print it (1e-3 → "1e-3").

local function count(fn, key, v)
  if util.is_tensor(v) then
    if v:dim() ~= 1 then
      fail(string.format("%s: %s must be 1-D, got %s", fn, key, util.shape_str(v)))
    end
    return v:numel()
  elseif type(v) == "table" then
    return #v
  end
  fail(string.format("%s: %s must be a tensor or a list, got %s", fn, key, type(v)))
end

-- class ids must be integers >= 1 (checked here so the message names the argument)
local function check_labels(fn, key, v, upto)
  local list
  if util.is_tensor(v) then
    if v:dim() ~= 1 then fail(string.format("%s: %s must be 1-D, got %s", fn, key, util.shape_str(v))) end
    list = v:totable()
  elseif type(v) == "table" then
    list = v
  else
    fail(string.format("%s: %s must be a tensor or a list of class ids, got %s", fn, key, type(v)))
  end
  for i = 1, #list do
    local x = list[i]
    if type(x) ~= "number" or x ~= x or x < 1 or x ~= math.floor(x) or (upto and x > upto) then
      fail(string.format("%s: %s[%d] = %s is not a class id (expected an integer in 1..%s)", fn, key, i,
                         type(x) == "number" and string.format("%g", x) or type(x), upto or "∞"))
    end
  end
  return v
end
eval._check_labels = check_labels

local function as_scores(fn, v)
  if util.is_tensor(v) then
    if v:dim() ~= 1 then fail(string.format("%s: scores must be 1-D (N), got %s", fn, util.shape_str(v))) end
    return v
  end
  if type(v) ~= "table" then
    fail(string.format("%s: scores must be a tensor or a list of numbers, got %s", fn, type(v)))
  end
  for i = 1, #v do
    if type(v[i]) ~= "number" then
      fail(string.format("%s: scores[%d] must be a number, got %s", fn, i, type(v[i])))
    end
  end
  if #v == 0 then fail(fn .. ": scores: expected at least 1 pair, got 0") end
  return fvl.tensor(v)
end

local function check_emb(fn, key, v)
  if not util.is_tensor(v) then
    fail(string.format("%s: %s must be an N×D tensor of embeddings, got %s", fn, key, type(v)))
  end
  if v:dim() ~= 2 then
    fail(string.format("%s: %s must be N×D (one embedding per row), got %s", fn, key, util.shape_str(v)))
  end
  return v
end

-- results print as their one-line summary in the REPL (they stay plain tables)
local Result = { __name = "fvl.eval.result" }
Result.__tostring = function(r) return eval.summary(r) end

--- Seeded balanced pairs: n/2 genuine and n/2 impostor pairs, alternating, so that any
--- contiguous fold is balanced. Returns scores (cosine, float32) and same (int32 1/0); with
--- indices=true also the 1-based row indices a, b of each pair. metric="l2" gives the squared
--- L2 distance of the normalised embeddings instead (d² = 2 - 2cos; pass distance=true to
--- verification).
function eval.pairs(emb, labels, opts)
  local fn = "pairs"
  opts = util.check_opts(fn, opts, { "n", "seed", "indices", "metric" })
  local metric = util.enum(fn, "metric", opts.metric, { "cosine", "l2" }, "cosine")
  check_emb(fn, "emb", emb)
  local n = util.integer(fn, "n", opts.n, 6000, 2)
  local seed = util.integer(fn, "seed", opts.seed, 1, 0)
  local nl = count(fn, "labels", labels)
  if nl ~= emb:size(1) then
    fail(string.format("%s: emb has %d rows but labels has %d entries (expected one label per row)",
                       fn, emb:size(1), nl))
  end
  check_labels(fn, "labels", labels)
  local scores, same, a, b = E.pairs(emb, labels, n, seed)
  if metric == "l2" then scores = (scores * -2 + 2):clamp(0, 4) end
  if util.boolean(fn, "indices", opts.indices, false) then return scores, same, a, b end
  return scores, same
end

--- Verification metrics from pair scores (a float32 tensor or list, higher = more alike) and
--- same (int32 1/0 or booleans, one per pair). opts: folds (10, 2..64), far (list of FARs that
--- must be supported: an error says how many impostor pairs they need), drop_intermediate (true:
--- the returned ROC keeps only its corners, as sklearn's default; the metrics always use all
--- points), distance (false: scores are similarities; true: lower = more alike).
--- Returns r: accuracy, std (k-fold, threshold chosen on the other folds), threshold,
--- fold_accuracy, fold_threshold, eer, eer_threshold, auc, tar_at_far[f] (f in 1e-1..1e-6 that
--- the impostor count supports), val[f] = {tar=, std=, far=} (the LFW protocol's VAL@FAR),
--- roc = {far=, tar=, threshold=}, n, n_genuine, n_impostor, min_far; tostring(r) is
--- fvl.eval.summary(r). Errors: counts that differ, fewer pairs than folds, an unsupported far.
function eval.verification(scores, same, opts)
  local fn = "verification"
  opts = util.check_opts(fn, opts, { "folds", "far", "drop_intermediate", "distance" })
  local distance = util.boolean(fn, "distance", opts.distance, false)
  local folds = util.integer(fn, "folds", opts.folds, 10, 2)
  if folds > 64 then fail(string.format("%s: folds = %d (expected 2..64)", fn, folds)) end
  local drop = util.boolean(fn, "drop_intermediate", opts.drop_intermediate, true)
  scores = as_scores(fn, scores)
  local ns, nsame = scores:numel(), count(fn, "same", same)
  if ns ~= nsame then
    fail(string.format("%s: scores has %d entries but same has %d (expected one flag per pair)",
                       fn, ns, nsame))
  end
  if ns < folds then
    fail(string.format("%s: folds = %d needs at least %d pairs, got %d", fn, folds, folds, ns))
  end
  if distance then scores = -scores end
  local r = E.verification(scores, same, folds, drop)
  r.min_far = 1 / r.n_impostor   -- the smallest FAR these pairs can measure
  setmetatable(r, Result)
  if distance then   -- report thresholds on the caller's scale
    r.threshold, r.eer_threshold = -r.threshold, -r.eer_threshold
    for k, t in ipairs(r.fold_threshold) do r.fold_threshold[k] = -t end
    r.roc.threshold = -r.roc.threshold
    r.distance = true
  end
  if opts.far ~= nil then
    local want = type(opts.far) == "table" and opts.far or { opts.far }
    for _, f in ipairs(want) do
      if type(f) ~= "number" or f <= 0 or f >= 1 then
        fail(string.format("%s: far = %s (expected FARs in (0, 1))", fn, tostring(f)))
      end
      if r.n_impostor * f < 1 - 1e-9 then
        fail(string.format("%s: TAR at FAR = %s needs at least %d impostor pairs, got %d",
                           fn, fmt_far(f), math.ceil(1 / f - 1e-9), r.n_impostor))
      end
      if r.tar_at_far[f] == nil then
        -- a FAR outside 1e-1..1e-6: best TAR with FAR <= f on the full ROC
        local far, tar = E.roc(scores, same, false)
        far, tar = far:totable(), tar:totable()
        local best = 0
        for i = 1, #far do if far[i] <= f * (1 + 1e-6) and tar[i] > best then best = tar[i] end end
        r.tar_at_far[f] = best
      end
    end
  end
  return r
end

--- ROC only: far, tar, thresholds (float32 tensors; one point per distinct score, (0, 0) first
--- and thresholds[1] = +inf), as sklearn.metrics.roc_curve. opts: drop_intermediate (true: the
--- corners only). Errors: scores and same of different lengths.
function eval.roc(scores, same, opts)
  local fn = "roc"
  opts = util.check_opts(fn, opts, { "drop_intermediate" })
  scores = as_scores(fn, scores)
  local ns, nsame = scores:numel(), count(fn, "same", same)
  if ns ~= nsame then
    fail(string.format("%s: scores has %d entries but same has %d (expected one flag per pair)",
                       fn, ns, nsame))
  end
  return E.roc(scores, same, util.boolean(fn, "drop_intermediate", opts.drop_intermediate, true))
end

--- One call from embeddings (N×D float32) and their 1-based labels to a verification result:
--- fvl.eval.pairs then fvl.eval.verification. opts: n (6000 pairs), seed (1), metric ("cosine"
--- | "l2"), and verification's folds, far, drop_intermediate. Returns verification's result,
--- plus r.pairs = {scores=, same=, a=, b=} (a, b: the pairs' 1-based rows); print(r) gives the
--- one-line summary. Errors: as pairs and verification (rows and labels that disagree, ...).
function eval.verify(emb, labels, opts)
  local fn = "verify"
  opts = util.check_opts(fn, opts, { "n", "seed", "folds", "far", "drop_intermediate", "metric" })
  local scores, same, a, b = eval.pairs(emb, labels, { n = opts.n, seed = opts.seed, indices = true,
                                                       metric = opts.metric })
  local r = eval.verification(scores, same, { folds = opts.folds, far = opts.far,
                                              drop_intermediate = opts.drop_intermediate,
                                              distance = opts.metric == "l2" })
  r.pairs = { scores = scores, same = same, a = a, b = b }
  return r
end

--- Identification (closed set) and retrieval metrics. probes/probe_labels nil: every gallery
--- row is a query against the others (leave-one-out). opts: k (a rank or a list of ranks;
--- default {1, 5}, at most 16); each k gives r["rank" .. k] (also r.cmc[k]). Returns also
--- precision_at_1, r_precision, map_at_r (as pytorch-metric-learning), n_queries and n_dropped
--- (queries without another sample of their identity). nmi = true adds r.nmi and r.ami:
--- k-means of the query embeddings (the probes, or the gallery in leave-one-out) into as many
--- clusters as their distinct labels, scored against those labels (fvl.eval.clustering; all
--- queries, dropped ones included, as pytorch-metric-learning); kmeans = {seed=, n_init=, ...}
--- is passed to fvl.eval.kmeans. Errors: rows and labels that disagree, probes without
--- probe_labels, a leave-one-out gallery of fewer than 2 rows.
function eval.identification(gallery, gallery_labels, probes, probe_labels, opts)
  local fn = "identification"
  opts = util.check_opts(fn, opts, { "k", "nmi", "kmeans" })
  check_emb(fn, "gallery", gallery)
  local ks = opts.k == nil and { 1, 5 } or (type(opts.k) == "table" and opts.k or { opts.k })
  local seen, list = {}, {}
  for _, k in ipairs({ 1, table.unpack(ks) }) do
    k = util.integer(fn, "k", k, nil, 1)
    if not seen[k] then seen[k] = true; list[#list + 1] = k end
  end
  if #list > 16 then fail(fn .. ": k: at most 16 ranks") end
  local ng = count(fn, "gallery_labels", gallery_labels)
  if ng ~= gallery:size(1) then
    fail(string.format("%s: gallery has %d rows but gallery_labels has %d entries", fn,
                       gallery:size(1), ng))
  end
  check_labels(fn, "gallery_labels", gallery_labels)
  if probes ~= nil then
    check_emb(fn, "probes", probes)
    if probe_labels == nil then fail(fn .. ": probe_labels missing (one label per probe row)") end
    local np = count(fn, "probe_labels", probe_labels)
    if np ~= probes:size(1) then
      fail(string.format("%s: probes has %d rows but probe_labels has %d entries", fn,
                         probes:size(1), np))
    end
    check_labels(fn, "probe_labels", probe_labels)
  elseif probe_labels ~= nil then
    fail(fn .. ": probe_labels given without probes")
  elseif gallery:size(1) < 2 then
    fail(fn .. ": leave-one-out needs a gallery of at least 2 rows")
  end
  local r = E.identification(gallery, gallery_labels, probes, probe_labels, list)
  local out = { precision_at_1 = r.precision_at_1, r_precision = r.r_precision,
                map_at_r = r.map_at_r, n_queries = r.n_queries, n_dropped = r.n_dropped, cmc = {} }
  for k, v in pairs(r.rank) do
    out["rank" .. k] = v
    out.cmc[k] = v
  end
  if util.boolean(fn, "nmi", opts.nmi, false) then
    local c = eval.clustering(probes or gallery, probes and probe_labels or gallery_labels, opts.kmeans)
    out.nmi, out.ami = c.nmi, c.ami
  elseif opts.kmeans ~= nil then
    fail(fn .. ": kmeans options given without nmi = true")
  end
  return setmetatable(out, Result)
end

--- Flip test: normalize(emb + emb_flipped), row-wise (raw N×D embeddings of the images and of
--- their mirror images, summed before normalising, as insightface). Returns an N×D tensor.
--- Errors: not N×D float32 tensors.
function eval.flip(emb, emb_flipped)
  check_emb("flip", "emb", emb)
  check_emb("flip", "emb_flipped", emb_flipped)
  return E.flip(emb, emb_flipped)
end

--- Flip-augmented embeddings of images N×C×H×W: net_fn(images) and net_fn(mirrored images)
--- summed, then normalised. net_fn is any function (a module, a closure) returning N×D.
function eval.flip_embed(net_fn, images)
  local fn = "flip_embed"
  if not util.is_tensor(images) or images:dim() < 2 then
    fail(string.format("%s: images must be a tensor N×C×H×W, got %s", fn,
                       util.is_tensor(images) and util.shape_str(images) or type(images)))
  end
  local mt = getmetatable(net_fn)
  if type(net_fn) ~= "function" and not (type(mt) == "table" and mt.__call) then
    fail(string.format("%s: net_fn must be a function or a module (callable), got %s", fn, type(net_fn)))
  end
  local d = images:dim()
  local W = images:size(d)
  local rev = {}
  for i = 1, W do rev[i] = W + 1 - i end
  local mirrored = images:index(d, fvl.tensor(rev, "int32"))
  local a, b
  local function run()
    a = net_fn(images)
    b = net_fn(mirrored)
  end
  if fvl.no_grad then fvl.no_grad(run) else run() end
  return eval.flip(a, b)
end

--- Cosine similarity matrix of the rows of a (A×D) and b (B×D): an A×B float32 tensor, through
--- one sgemm on the normalised rows. Errors: not 2-D float32 tensors.
function eval.cosine(a, b)
  check_emb("cosine", "a", a)
  check_emb("cosine", "b", b)
  return E.cosine(a, b)
end

--- One line for logs and tables from a verification or identification result:
--- "acc 99.10 ± 0.30 %  EER 1.20 %  AUC 0.9990  TAR@FAR=1e-1 ...  rank-1 ...  MAP@R ..." (only the
--- fields r has). tostring(r) of such a result is this line.
function eval.summary(r)
  if type(r) ~= "table" then fail("summary: r must be a result table of fvl.eval.verification, got " .. type(r)) end
  local needs = { precision_at_1 = "map_at_r", nmi = "ami" }   -- printed together
  for _, k in ipairs { "accuracy", "std", "eer", "auc", "precision_at_1", "rank5", "map_at_r", "nmi", "ami" } do
    if r[k] ~= nil and type(r[k]) ~= "number" then
      fail(string.format("summary: r.%s must be a number, got %s", k, util.typename(r[k])))
    end
    if r[k] ~= nil and needs[k] and type(r[needs[k]]) ~= "number" then
      fail(string.format("summary: r.%s must be a number (r has %s), got %s", needs[k], k, util.typename(r[needs[k]])))
    end
  end
  if r.tar_at_far ~= nil and type(r.tar_at_far) ~= "table" then
    fail("summary: r.tar_at_far must be a table {[far] = tar}, got " .. util.typename(r.tar_at_far))
  end
  local parts = {}
  if r.accuracy then
    parts[#parts + 1] = r.std and string.format("acc %.2f ± %.2f %%", 100 * r.accuracy, 100 * r.std)
                        or string.format("acc %.2f %%", 100 * r.accuracy)
  end
  if r.eer then parts[#parts + 1] = string.format("EER %.2f %%", 100 * r.eer) end
  if r.auc then parts[#parts + 1] = string.format("AUC %.4f", r.auc) end
  if r.tar_at_far then
    for _, f in ipairs(FARS) do
      if r.tar_at_far[f] then
        parts[#parts + 1] = string.format("TAR@FAR=%s %.2f %%", fmt_far(f), 100 * r.tar_at_far[f])
      end
    end
  end
  if r.precision_at_1 then
    parts[#parts + 1] = string.format("rank-1 %.2f %%", 100 * r.precision_at_1)
    if r.rank5 then parts[#parts + 1] = string.format("rank-5 %.2f %%", 100 * r.rank5) end
    parts[#parts + 1] = string.format("MAP@R %.4f", r.map_at_r)
  end
  if r.nmi then parts[#parts + 1] = string.format("NMI %.4f  AMI %.4f", r.nmi, r.ami) end
  return table.concat(parts, "  ")
end

-- collapse diagnostics (lua/fvl/diagnostics.lua): embedding norms, mean resultant lengths,
-- centre angles, per-class recall, a collapse verdict
do
  local diag = require "fvl.diagnostics"
  eval.embedding_stats, eval.centre_stats, eval.class_recall = diag.embedding_stats, diag.centre_stats, diag.class_recall
  eval.diagnose, eval.collapse_text = diag.diagnose, diag.collapse_text
end
-- k-means, NMI / AMI (lua/fvl/cluster.lua)
for _, name in ipairs { "kmeans", "mutual_info", "nmi", "ami", "clustering" } do
  eval[name] = require("fvl.cluster")[name]
end
-- MegaFace feature files and rank-1 with distractors (lua/fvl/megaface.lua)
for name, f in pairs(require "fvl.megaface") do eval[name] = f end
--- insightface's protocol on a .bin verification pack (docs/data.md): every image through model
--- (an fvl.nn module, run in evaluation mode without gradients, or any function images -> B×D),
--- with flip the mirror image too, raw outputs summed then normalised; pair score = cosine.
--- pack: a path or an fvl.data.bin_pack. opts: flip (true), batch (64), size ({112, 112}),
--- bgr (false), channels (3), folds (10), name, progress (false; true: a bar with images/s and
--- ETA on stderr), resize (true: a pack whose images differ from size, which defaults to the
--- model's input_size, is resized bilinearly with a one-line note on stderr, r.note; false: an
--- error). Returns verification's result plus xnorm (mean
--- norm of the raw embeddings), val_1e3 (VAL@FAR=1e-3, nil when a fold's training part has
--- < 1,000 impostors), embeddings (2N×D), pairs, name, line (one line for logs). Errors: not a
--- model, an unreadable pack, fewer pairs than folds.
function eval.bin_pack(model, pack, opts) return require("fvl.verify_pack").bin_pack(model, pack, opts) end

-- the IJB-B / IJB-C 1:1 protocol: fvl.eval.ijb, ijb_meta, ijb_features, ijb_templates, ijb_scores, ijb_tar
require("fvl.ijb").install(eval)

return eval
