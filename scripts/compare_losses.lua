-- compare_losses.lua — the main experiment: every seed loss head trained with one recipe, over
-- several seeds,
--   (a) on Fashion-MNIST with a 4-D embedding (--fm-dim 2: the features drawn on the unit circle):
--       closed-set accuracy, collapse diagnostics and the boundary pictures;
--   (b) on synthetic_faces, open set (by default many identities with few samples each, the regime
--       of face data sets): 10-fold verification accuracy, TAR@FAR and EER on unseen identities.
-- Every (head, seed) pair is one task, run in its own single-threaded worker process (--jobs of
-- them at once), so the numbers do not depend on --jobs. The table is the mean ± std over seeds.
-- Usage: fvl scripts/compare_losses.lua [--quick|--full] [--seeds N] [--out DIR] ... (--help)
-- Writes DIR/results.csv (one row per head and seed), summary.csv (one row per head and metric),
-- results.json, settings.json, table.txt, the pictures and, per task, DIR/tasks/<head>-s<seed>/
-- (embeddings .npy, labels .npy, ROC points .csv, result.json, worker.log).
local fvl = fvl or require "fvl"
local json = fvl.json
local cli = require "fvl.cli"

local HEAD_KEYS = { "softmax", "sphereface", "cosface", "arcface", "mv_arc", "curricularface", "circle",
                    "center", "discface", "npcface" }

-- ------------------------------------------------------------------ options
local parser = cli.parser("fvl scripts/compare_losses.lua",
  "The main experiment: every loss head trained with one recipe over several seeds, on Fashion-MNIST " ..
  "(4-D embedding, closed set: accuracy, collapse diagnostics, pictures) and synthetic_faces (open set, " ..
  "unseen identities: 10-fold accuracy, TAR@FAR, EER). Writes DIR/results.csv, summary.csv, " ..
  "results.json, settings.json, table.txt, the pictures and DIR/tasks/<head>-s<seed>/.")
parser:mutex(parser:flag("--quick", "smoke test: one seed, a few hundred steps (not for conclusions)"),
             parser:flag("--full", "LeNet++ for the 2-D part, more identities and steps (hours)"))
parser:option("--out", "run directory", "runs/compare")
parser:option("--seed", "first seed (seeds are seed, seed+1, ...)", "1"):convert(cli.integer("seed"))
parser:option("--seeds", "number of seeds (default 3; 1 with --quick)"):convert(cli.integer("seeds", 1))
parser:option("--jobs", "worker processes at once (default: the number of cores)"):convert(cli.integer("jobs", 1))
parser:option("--threads", "threads of each worker", "1"):convert(cli.integer("threads", 1))
parser:option("--heads", "heads to run, comma separated: " .. table.concat(HEAD_KEYS, ","))
  :convert(cli.list("heads", HEAD_KEYS))
parser:option("--fm-steps", "Fashion-MNIST training steps (0 skips that part)"):convert(cli.integer("fm-steps", 0))
parser:option("--syn-steps", "synthetic_faces training steps (0 skips that part)"):convert(cli.integer("syn-steps", 0))
parser:option("--identities", "synthetic training identities"):convert(cli.integer("identities", 2))
parser:option("--per-identity", "synthetic samples per training identity"):convert(cli.integer("per-identity", 2))
parser:option("--inputs", "input preprocessing: standard (zero mean, unit variance per channel, " ..
              "from the training split) or raw", "standard"):choices { "standard", "raw" }
parser:option("--bn", "normalisation layer on the embedding: insightface (BatchNorm1d, scale fixed at 1, " ..
              "shift learned), noaffine (BatchNorm1d without scale and shift), feature (BatchNorm1d with " ..
              "learned scale and shift), all (feature, and BatchNorm1d after every hidden layer) or none",
              "noaffine"):choices { "insightface", "noaffine", "feature", "all", "none" }
parser:option("--syn-bn", "the same for the 64-D synthetic part; default feature (learned scale and shift): " ..
              "without a learned scale Softmax and Center lose there (docs/experiments.md)", "feature")
  :choices { "insightface", "noaffine", "feature", "all", "none" }
parser:option("--syn-bn-scale", "with --syn-bn insightface: the BatchNorm's fixed scale γ (default 1); the ablation " ..
              "of docs/experiments.md fixes it at 1..8 against the learned one"):convert(cli.number("syn-bn-scale", 0))
parser:option("--lr", "peak learning rate", "0.1"):convert(cli.number("lr", 0))
parser:option("--scale", "the scale s of every normalised head in the 64-D synthetic part (SphereFace excepted)", "32")
  :convert(cli.number("scale", 0))
parser:option("--fm-dim", "embedding dimension of the Fashion-MNIST part: 4, the smallest in which no head lost a " ..
              "class (docs/experiments.md); 2 draws the features on the unit circle (features.png), where the " ..
              "papers' margins collapse most heads", "4")
  :convert(cli.integer("fm-dim", 2))
parser:option("--fm-scale", "the scale s of every normalised head in the 2-D Fashion-MNIST part", "16")
  :convert(cli.number("fm-scale", 0))
parser:option("--fm-margin", "factor on every head's decision margin in the 2-D part (SphereFace's " ..
              "multiplicative m excepted; Circle's margin is 1 - 2m)", "1"):convert(cli.number("fm-margin", 0))
parser:option("--circle-gamma", "Circle's γ in both parts (default: 4·s of the part, the paper's 256 at s = 64)")
  :convert(cli.number("circle-gamma", 0))
parser:option("--warmup", "fraction of the steps with a linear LR warm-up", "0.05"):convert(cli.number("warmup", 0))
parser:option("--margin-warmup", "fraction of the steps over which every additive margin grows linearly from 0 " ..
              "to its value, in both parts (0: the full margin from the first step; 0.3 keeps ArcFace and NPCFace " ..
              "from merging two Fashion-MNIST classes in 4-D, docs/experiments.md step 5)", "0.3")
  :convert(cli.number("margin-warmup", 0))
parser:option("--circle-m", "Circle's relaxation m at margin factor 1 (the paper's 0.25; its decision margin is 1 − 2m)",
              "0.25"):convert(cli.number("circle-m", 0))
parser:option("--head-lr", "the head's learning rate as a multiple of the backbone's", "1"):convert(cli.number("head-lr", 0))
parser:option("--head-wd", "weight decay of the head's class centres W (the backbone keeps 5e-4)", "5e-4")
  :convert(cli.number("head-wd", 0))
parser:flag("--collect", "run nothing: rebuild the tables and pictures of --out from the tasks already finished there")
parser:option("--task", "internal: run one task head:seed and write its result"):hidden(true)
local opt = parser:parse(arg or {})

local heads_wanted
if opt.heads then
  heads_wanted = {}
  for _, h in ipairs(opt.heads) do heads_wanted[h] = true end
end
if opt.syn_bn_scale and opt.syn_bn ~= "insightface" then
  parser:error("syn-bn-scale: needs --syn-bn insightface (the fixed-scale BatchNorm), got --syn-bn " .. opt.syn_bn)
end
if opt.syn_bn_scale and opt.syn_bn_scale <= 0 then
  parser:error("syn-bn-scale: expected a number > 0, got '" .. tostring(opt.syn_bn_scale) .. "'")
end
if opt.lr <= 0 then parser:error("lr: expected a number > 0, got '" .. tostring(opt.lr) .. "'") end

-- Budgets per mode. The same recipe for every head: SGD(momentum 0.9, wd 5e-4), cosine LR
-- with a 5% warm-up, batch 256, the same backbone, inputs and normalisation layers.
local MODES = {
  quick   = { seeds = 1, pairs = 6000, fm_steps = 150, fm_train = 20000, fm_backbone = "mlp", syn_steps = 200,
              syn = { identities = 300, per_identity = 8, test_identities = 100, test_per_identity = 10 } },
  default = { seeds = 3, pairs = 20000, fm_steps = 2000, fm_train = 60000, fm_backbone = "mlp", syn_steps = 1000,
              syn = { identities = 3000, per_identity = 8, test_identities = 200, test_per_identity = 12 } },
  full    = { seeds = 3, pairs = 60000, fm_steps = 2000, fm_train = 60000, fm_backbone = "lenetpp", syn_steps = 6000,
              syn = { identities = 10000, per_identity = 10, test_identities = 500, test_per_identity = 20 } },
}
local mode = opt.quick and "quick" or opt.full and "full" or "default"
local M = MODES[mode]
M.fm_steps = opt.fm_steps or M.fm_steps
M.syn_steps = opt.syn_steps or M.syn_steps
M.syn.identities = opt.identities or M.syn.identities
M.syn.per_identity = opt.per_identity or M.syn.per_identity
local NSEEDS = opt.seeds or M.seeds
for _, k in ipairs { "scale", "fm_scale", "head_lr", "circle_gamma", "fm_margin" } do
  if opt[k] and opt[k] <= 0 then
    parser:error(k:gsub("_", "-") .. ": expected a number > 0, got '" .. tostring(opt[k]) .. "'")
  end
end
for _, k in ipairs { "warmup", "margin_warmup" } do
  if opt[k] > 1 or (k == "warmup" and opt[k] >= 1) then
    parser:error(k:gsub("_", "-") .. ": expected a fraction in 0..1, got '" .. tostring(opt[k]) .. "'")
  end
end
-- one scale per part for every normalised head: s depends on the embedding's dimension and the
-- number of classes (docs/experiments.md: 16 for ten classes on the 2-D circle, 32 in 64-D)
local S, FM_S = opt.scale, opt.fm_scale
local function circle_gamma(s) return opt.circle_gamma or 4 * s end
local SETTINGS = {
  mode = mode, seed = opt.seed, seeds = NSEEDS, scale = S, fm_scale = FM_S, circle_gamma = opt.circle_gamma or "4s",
  fm_margin = opt.fm_margin,
  batch = 256, lr = opt.lr, momentum = 0.9, head_lr = opt.head_lr, head_weight_decay = opt.head_wd,
  weight_decay = 5e-4, warmup = opt.warmup, margin_warmup = opt.margin_warmup, circle_m = opt.circle_m, inputs = opt.inputs, bn = opt.bn, syn_bn = opt.syn_bn, syn_bn_scale = opt.syn_bn_scale, threads_per_task = opt.threads,
  fashion_mnist = { steps = M.fm_steps, train = M.fm_train, backbone = M.fm_backbone, dim = opt.fm_dim },
  synthetic = { steps = M.syn_steps, dim = 64, data = M.syn, pairs = M.pairs, folds = 10 },
  diagnostics = { angle = 5, recall = 0.02, cluster = 3, confusion = 0.15, every = 100 },
  version = fvl.version,
}

-- every seed head, with the options used (defaults of docs/losses.md except the shared scale)
-- make(dim, classes, s, k): k scales the decision margin (1: the papers' margins); Circle's
-- decision margin between s_p and s_n is 1 - 2m, so k gives m = (1 - k(1 - 2·0.25)) / 2
-- margins(k): the head's margin options at factor k (nil: a head without an additive margin);
-- --margin-warmup sets them on the live head with k ramped from 0 to the part's factor
local function circle_margins(k)
  local delta = 1 - 2 * (opt.circle_m or 0.25)      -- decision margin 1 − 2m at k = 1
  return {m = (1 - k * delta) / 2}
end
local HEADS = {
  { key = "softmax",        name = "Softmax",        make = function(d, c) return fvl.loss.softmax{dim=d, classes=c} end },
  { key = "sphereface",     name = "SphereFace",     make = function(d, c) return fvl.loss.sphereface{dim=d, classes=c} end },
  { key = "cosface",        name = "CosFace",        ctor = "cosface",        margins = function(k) return {m = 0.35*k} end },
  { key = "arcface",        name = "ArcFace",        ctor = "arcface",        margins = function(k) return {m = 0.5*k} end },
  { key = "mv_arc",         name = "MV-Arc-Softmax", ctor = "mv_softmax",     margins = function(k) return {m = 0.5*k} end,
    extra = {kind = "arc"} },
  { key = "curricularface", name = "CurricularFace", ctor = "curricularface", margins = function(k) return {m = 0.5*k} end },
  { key = "circle",         name = "Circle",         ctor = "circle",         margins = circle_margins, circle = true },
  { key = "center",         name = "Center",         make = function(d, c) return fvl.loss.center{dim=d, classes=c} end },
  { key = "discface",       name = "DiscFace",       ctor = "discface",       margins = function(k) return {m = 0.35*k} end },
  { key = "npcface",        name = "NPCFace",        ctor = "npcface",        margins = function(k) return {m0 = 0.4*k, m1 = 0.2*k} end },
}
local HEAD_BY_KEY = {}
for _, h in ipairs(HEADS) do
  HEAD_BY_KEY[h.key] = h
  if h.ctor then
    h.make = function(d, c, s, k)
      local o = {dim = d, classes = c}
      if h.circle then o.gamma = circle_gamma(s) else o.s = s end
      for key, v in pairs(h.margins(k)) do o[key] = v end
      for key, v in pairs(h.extra or {}) do o[key] = v end
      return fvl.loss[h.ctor](o)
    end
  end
end

-- metrics of one task, in table order; every file uses these names (fractions in [0, 1])
local METRICS = {
  { key = "fmnist_acc",          part = "fm",  label = "FMNIST acc %",    pct = true, digits = 1 },
  { key = "fmnist_min_recall",   part = "fm",  label = "min class recall %", pct = true, digits = 1 },
  { key = "fmnist_collapsed",    part = "fm",  label = "collapsed" },
  { key = "fmnist_norm_mean",    part = "fm",  label = "‖x‖ mean", digits = 3 },
  { key = "fmnist_mrl_x",        part = "fm",  label = "MRL x̂", digits = 3 },
  { key = "fmnist_mrl_centres",  part = "fm",  label = "MRL centres", digits = 3 },
  { key = "fmnist_min_centre_angle", part = "fm", label = "min centre angle °", digits = 1 },
  { key = "fmnist_merged_pairs", part = "fm",  label = "merged pairs", digits = 1 },
  { key = "verif_acc",           part = "syn", label = "verif acc %",     pct = true, digits = 2 },
  { key = "verif_fold_std",      part = "syn", label = "fold std %",      pct = true, digits = 2 },
  { key = "tar_at_far_1e-3",     part = "syn", label = "TAR@FAR=1e-3 %",  pct = true, digits = 1 },
  { key = "tar_at_far_1e-2",     part = "syn", label = "TAR@FAR=1e-2 %",  pct = true, digits = 1 },
  { key = "eer",                 part = "syn", label = "EER %",           pct = true, digits = 2 },
  { key = "auc",                 part = "syn", label = "AUC", digits = 4 },
  { key = "syn_collapsed",       part = "syn", label = "collapsed (synthetic)" },
  { key = "syn_norm_mean",       part = "syn", label = "‖x‖ mean (synthetic)", digits = 3 },
  { key = "syn_mrl_x",           part = "syn", label = "MRL x̂ (synthetic)", digits = 3 },
  { key = "syn_min_centre_angle", part = "syn", label = "min centre angle ° (synthetic)", digits = 1 },
  { key = "syn_centre_norm",     part = "syn", label = "‖w‖ mean (synthetic)", digits = 3 },
  { key = "fmnist_seconds",      part = "fm",  label = "s (FMNIST)", digits = 1 },
  { key = "syn_seconds",         part = "syn", label = "s (synthetic)", digits = 1 },
}

local function mkdir_p(dir) fvl.sys.mkdirs(dir) end
local function write_atomic(path, text) assert(fvl.sys.write_atomic(path, text)) end
local function read_file(path)
  local f = io.open(path, "r")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end
local function task_dir(key, seed) return string.format("%s/tasks/%s-s%d", opt.out, key, seed) end

-- ------------------------------------------------------------------ one task: head × seed
local DG = SETTINGS.diagnostics

-- inputs: standardised per channel with the training split's statistics (or raw)
local function standardise(x, tx, per_feature)
  if opt.inputs == "raw" then return x, tx end
  return fvl.no_grad(function()
    local mean, sd
    if per_feature then
      mean = x:mean(1)
      sd = ((x * x):mean(1) - mean * mean):clamp(1e-12, math.huge):sqrt()
    else
      local m = x:mean():item()
      local v = math.max((x * x):mean():item() - m * m, 1e-12)
      mean, sd = m, math.sqrt(v)
    end
    return ((x - mean) / sd):contiguous(), ((tx - mean) / sd):contiguous()
  end)
end

-- the backbone and the normalisation layer `norm` (--bn, --syn-bn) on its embedding; `gamma`: the
-- fixed scale of the insightface form (1 unless --syn-bn-scale)
local function backbone(kind, sizes, norm, gamma)
  local net
  if kind == "lenetpp" then net = fvl.nn.lenetpp{dim = sizes[#sizes]}
  else net = fvl.nn.mlp{sizes = sizes, bn = norm == "all"} end
  if norm == "noaffine" then
    net:add(fvl.nn.BatchNorm1d(sizes[#sizes], {affine = false}))
  elseif norm ~= "none" then
    local bn = fvl.nn.BatchNorm1d(sizes[#sizes])
    net:add(bn)
    if norm == "insightface" then                                          -- γ stays fixed
      if gamma then bn.weight:fill(gamma) end
      net.frozen = {[bn.weight] = true}
    end
  end
  return net
end

-- backbone and head: two SGD optimisers (the head may have its own LR multiple and decay)
local function optimisers(net, head)
  local params = {}
  for _, p in ipairs(net:parameters()) do
    if not (net.frozen and net.frozen[p]) then params[#params + 1] = p end
  end
  local optim = fvl.optim.sgd(params, {lr = SETTINGS.lr, momentum = SETTINGS.momentum,
                                       weight_decay = SETTINGS.weight_decay})
  local hoptim = fvl.optim.sgd(head:parameters(), {lr = SETTINGS.lr * SETTINGS.head_lr,
                               momentum = SETTINGS.momentum, weight_decay = SETTINGS.head_weight_decay})
  return optim, hoptim
end

-- the batch diagnostics of one step: a trace entry, logged to stderr (the worker's log)
local function trace_step(h, seed, what, step, steps, loss, e, head, t0)
  local d = fvl.eval.diagnose{emb = e:detach(), centres = head.weight, angle = DG.angle, cluster = DG.cluster}
  io.stderr:write(string.format("%s seed %d %s: step %d/%d loss %.4f |x| %.3g MRL(x̂) %.3f MRL(w) %.3f min angle %.1f° (%.0f s)\n",
    h.name, seed, what, step, steps, loss, d.norm_mean, d.mrl_x, d.mrl_centres,
    d.min_centre_angle, fvl.clock() - t0))
  return {step = step, loss = loss, norm_mean = d.norm_mean, mrl_x = d.mrl_x,
          mrl_centres = d.mrl_centres, min_centre_angle = d.min_centre_angle}
end

-- trains net + head (task h, seed) for `steps` SGD steps on (x, y), the margins at factor k
-- (grown from 0 with --margin-warmup); returns the loss curve and the trace of batch diagnostics
-- (every DG.every steps)
local function train(h, seed, net, head, x, y, steps, what, on_step, k)
  local optim, hoptim = optimisers(net, head)
  local sched = fvl.schedule.cosine{from = SETTINGS.lr, to = 0, steps = steps,
                                    warmup = math.floor(steps * SETTINGS.warmup)}
  local curve, trace, step = {}, {}, 0
  local ramp_steps = math.floor(steps * SETTINGS.margin_warmup)
  net:train()
  if x:size(1) < SETTINGS.batch then
    error(string.format("compare_losses: the %s training set has %d samples, fewer than one batch of %d",
                        what, x:size(1), SETTINGS.batch), 0)
  end
  local loader = fvl.data.loader({x = x, labels = y}, {batch = SETTINGS.batch, shuffle = true,
                                 seed = seed, drop_last = true})
  local t0 = fvl.clock()
  while step < steps do
    for batch in loader do
      step = step + 1
      optim.lr = sched(step)
      if ramp_steps > 0 and h.margins and step <= ramp_steps + 1 then
        for key, v in pairs(h.margins(k * math.min(1, step / ramp_steps))) do head[key] = v end
      end
      hoptim.lr = optim.lr * SETTINGS.head_lr
      optim:zero_grad()
      hoptim:zero_grad()
      local e = net(batch.x)
      local loss = head(e, batch.y)
      loss:backward()
      optim:step()
      hoptim:step()
      if on_step then on_step(step) end
      if step % 10 == 0 or step == steps then curve[#curve + 1] = {step, loss:item()} end
      if step == 1 or step % DG.every == 0 or step == steps then
        trace[#trace + 1] = trace_step(h, seed, what, step, steps, loss:item(), e, head, t0)
      end
      if step >= steps then break end
    end
  end
  net:evaluate()
  return curve, trace
end

local function embed(net, x)
  return fvl.no_grad(function()
    local parts, n, B = {}, x:size(1), 2048
    for s = 1, n, B do parts[#parts + 1] = net(x:narrow(1, s, math.min(B, n - s + 1))) end
    return #parts == 1 and parts[1] or fvl.cat(parts, 1)
  end)
end

-- the head's margins and state for fvl.plot.boundaries (numbers, strings, booleans only)
local function boundary_spec(head)
  local spec = {}
  for _, k in ipairs { "name", "m", "m1", "m2", "m3", "t", "kind", "adaptive", "easy_margin", "fallback",
                       "base", "m0", "alpha", "lambda", "iter", "lambda_min", "gamma", "power" } do
    local v = head[k]
    local tv = type(v)
    if tv == "number" or tv == "string" or tv == "boolean" then spec[k] = v end
  end
  return spec
end

-- first seed: the 2-D test features over training, one frame every steps/20 steps
-- (features_<head>.gif); returns the animation and the per-step callback, or nothing
local function feature_animation(h, net, head, tx, ty)
  local anim = fvl.plot.training_animation{file = opt.out .. "/features_" .. h.key .. ".gif", steps = M.fm_steps, frames = 20}
  local function frame(step)
    net:evaluate()
    local nf = math.min(1500, tx:size(1))
    local e = embed(net, tx:narrow(1, 1, nf))
    net:train()
    return e, ty:narrow(1, 1, nf), {centres = head.weight:detach(), title = h.name .. ", step " .. step}
  end
  return anim, function(step) anim:step(step, function() return frame(step) end) end
end

-- the reason a seed was flagged, short enough for a picture's title
local function short_reason(d)
  if d.largest_centre_cluster >= DG.cluster then
    return string.format("%d centres within %g°", d.largest_centre_cluster, DG.angle)
  elseif (d.low_recall_classes or 0) > 0 then
    return string.format("%d class(es) recall < %g%%", d.low_recall_classes, 100 * DG.recall)
  end
  local m = {}
  for _, p in ipairs(d.merged or {}) do m[#m + 1] = string.format("%d+%d", p.a, p.b) end
  return "merged classes " .. table.concat(m, ", ")
end

-- the pairwise angles (degrees) between the class centres, as CSV (the matrix a heat map draws)
local function centre_angles_csv(w)
  local C = w:size(1)
  local cos = fvl.no_grad(function()
    local wn = fvl.normalize(w:detach(), 2)
    return wn:matmul(wn:t()):totable()
  end)
  local hdr = {"class"}
  for k = 1, C do hdr[k + 1] = tostring(k) end
  local lines = {table.concat(hdr, ",")}
  for a = 1, C do
    local row = {tostring(a)}
    for b = 1, C do
      row[b + 1] = string.format("%.3f", a == b and 0 or math.deg(math.acos(math.min(1, math.max(-1, cos[a][b])))))
    end
    lines[#lines + 1] = table.concat(row, ",")
  end
  return table.concat(lines, "\n") .. "\n"
end

-- the task's feature picture (a collapsed seed is titled COLLAPSED) and its warning
local function feature_picture(h, seed, dir, res, d, emb, ty, head, names)
  local nshow = math.min(3000, emb:size(1))
  local title = string.format("%s seed %d: acc %.1f%%", h.name, seed, 100 * res.fmnist_acc)
  if d.collapsed then
    title = string.format("COLLAPSED  %s s%d: %.1f%% (%s)", h.name, seed, 100 * res.fmnist_acc, short_reason(d))
  end
  if SETTINGS.fashion_mnist.dim == 2 then
    fvl.plot.features(emb:narrow(1, 1, nshow), ty:narrow(1, 1, nshow),
                      {centres = head.weight:detach(), file = dir .. "/features.png", names = names, title = title})
  end
  if d.collapsed then
    io.stderr:write(string.format("WARNING: %s seed %d collapsed on Fashion-MNIST: %s\n", h.name, seed,
                                  table.concat(d.reasons, "; ")))
  end
end

-- (a) Fashion-MNIST, closed set: accuracy, collapse diagnostics, embeddings and pictures into res
local function fmnist_part(h, seed, dir, res)
  local tr = assert(fvl.data.fashion_mnist{split = "train"})
  local te = assert(fvl.data.fashion_mnist{split = "test"})
  local n = math.min(M.fm_train, tr.images:size(1))
  local x, tx = tr.images:narrow(1, 1, n), te.images
  if M.fm_backbone ~= "lenetpp" then x, tx = x:reshape(n, 784), tx:reshape(tx:size(1), 784) end
  x, tx = standardise(x, tx, false)
  local y, ty = tr.labels:narrow(1, 1, n), te.labels
  fvl.manual_seed(seed)
  local FM_D = SETTINGS.fashion_mnist.dim
  local net = backbone(M.fm_backbone, {784, 256, 128, FM_D}, opt.bn)
  local head = h.make(FM_D, 10, FM_S, opt.fm_margin)
  local t0 = fvl.clock()
  local anim, on_step
  if seed == opt.seed and FM_D == 2 then anim, on_step = feature_animation(h, net, head, tx, ty) end
  local curve, trace = train(h, seed, net, head, x, y, M.fm_steps, "FMNIST", on_step, opt.fm_margin)
  if anim then anim:close() end
  local emb = embed(net, tx)
  local pred = fvl.no_grad(function() return head:predict(emb) end)
  local d = fvl.eval.diagnose{emb = emb, centres = head.weight, pred = pred, labels = ty, classes = 10,
                              angle = DG.angle, recall = DG.recall, cluster = DG.cluster, confusion = DG.confusion}
  res.fmnist_acc = pred:eq(ty):float():mean():item()
  res.fmnist_seconds = fvl.clock() - t0
  res.fmnist_min_recall, res.fmnist_collapsed = d.min_recall, d.collapsed and 1 or 0
  res.fmnist_norm_mean, res.fmnist_mrl_x = d.norm_mean, d.mrl_x
  res.fmnist_mrl_centres, res.fmnist_min_centre_angle = d.mrl_centres, d.min_centre_angle
  res.fmnist_recall, res.fmnist_merged_pairs, res.fmnist_merged = d.recall, d.merged_pairs, d.merged
  res.fmnist_flag = d.collapsed and short_reason(d) or nil
  res.fmnist_diagnosis = fvl.eval.collapse_text(d)
  res.fmnist_curve, res.fmnist_trace = curve, trace
  res.boundary = boundary_spec(head)
  fvl.save(dir .. "/fmnist_test_embeddings.npy", emb)
  fvl.save(dir .. "/fmnist_test_labels.npy", ty)
  fvl.save(dir .. "/fmnist_test_pred.npy", pred)
  fvl.save(dir .. "/fmnist_centres.npy", head.weight:detach())
  write_atomic(dir .. "/fmnist_centre_angles.csv", centre_angles_csv(head.weight))
  feature_picture(h, seed, dir, res, d, emb, ty, head, tr.classes)
end

-- (b) synthetic faces, open set on unseen identities: verification metrics, embeddings, ROC into res
local function synthetic_part(h, seed, dir, res)
  local so = {seed = seed}
  for k, v in pairs(M.syn) do so[k] = v end
  local syn = fvl.data.synthetic_faces(so)
  local x, tx = standardise(syn.train.x, syn.test.x, true)
  local classes = syn.info and syn.info.identities or M.syn.identities
  fvl.manual_seed(seed)
  local D = SETTINGS.synthetic.dim
  local net = backbone("mlp", {x:size(2), 256, D}, opt.syn_bn, opt.syn_bn_scale)
  local head = h.make(D, classes, S, 1)
  local t0 = fvl.clock()
  local curve, trace = train(h, seed, net, head, x, syn.train.labels, M.syn_steps, "synthetic", nil, 1)
  local temb = embed(net, tx)
  local scores, same = fvl.eval.pairs(temb, syn.test.labels, {n = M.pairs, seed = seed})
  local v = fvl.eval.verification(scores, same, {folds = SETTINGS.synthetic.folds})
  res.verif_acc, res.verif_fold_std, res.eer, res.auc = v.accuracy, v.std, v.eer, v.auc
  res["tar_at_far_1e-3"] = v.tar_at_far[1e-3]
  res["tar_at_far_1e-2"] = v.tar_at_far[1e-2]
  local d = fvl.eval.diagnose{emb = temb, centres = head.weight, angle = DG.angle, cluster = DG.cluster}
  res.syn_collapsed, res.syn_norm_mean, res.syn_mrl_x = d.collapsed and 1 or 0, d.norm_mean, d.mrl_x
  res.syn_min_centre_angle, res.syn_diagnosis = d.min_centre_angle, fvl.eval.collapse_text(d)
  -- the class centres' mean norm: with the embedding norm, the logit scale of an unnormalised head
  res.syn_centre_norm = fvl.no_grad(function() return head.weight:detach():norm(2, 2):mean():item() end)
  res.syn_curve, res.syn_trace = curve, trace
  res.syn_seconds = fvl.clock() - t0
  fvl.save(dir .. "/synthetic_test_embeddings.npy", temb)
  fvl.save(dir .. "/synthetic_test_labels.npy", syn.test.labels)
  local far, tar = v.roc.far, v.roc.tar
  if type(far) ~= "table" then far, tar = far:totable(), tar:totable() end
  local lines = {"far,tar"}
  for i = 1, #far do lines[#lines + 1] = string.format("%.9g,%.9g", far[i], tar[i]) end
  write_atomic(dir .. "/synthetic_roc.csv", table.concat(lines, "\n") .. "\n")
end

local function run_task(h, seed)
  local dir = task_dir(h.key, seed)
  mkdir_p(dir)
  fvl.threads(opt.threads)
  local res = {head = h.name, key = h.key, seed = seed}
  if M.fm_steps > 0 then fmnist_part(h, seed, dir, res) end
  if M.syn_steps > 0 then synthetic_part(h, seed, dir, res) end
  write_atomic(dir .. "/result.json", json.encode(res, {indent = 1}))
end

if opt.task then
  local key, seed = opt.task:match("^([%w_]+):(%-?%d+)$")
  local h = key and HEAD_BY_KEY[key]
  if not h then error("compare_losses: --task must be head:seed with a known head, got " .. opt.task, 0) end
  run_task(h, math.tointeger(seed))
  return
end

-- ------------------------------------------------------------------ parent: tasks in worker processes
local heads = {}
for _, h in ipairs(HEADS) do
  if not heads_wanted or heads_wanted[h.key] then heads[#heads + 1] = h end
end
local seeds = {}
for k = 1, NSEEDS do seeds[k] = opt.seed + k - 1 end
local jobs = opt.jobs or math.max(1, fvl.sys.cpu_count())
if mode == "quick" then
  io.stderr:write("compare_losses: --quick is a SMOKE TEST (" .. NSEEDS .. " seed, " .. M.fm_steps .. "+" ..
                  M.syn_steps .. " steps): its numbers are not results; run without --quick for the table.\n")
end
io.stderr:write(string.format("compare_losses: mode %s, %d head(s) × %d seed(s), %d job(s) of %d thread(s), output %s\n",
                              mode, #heads, #seeds, jobs, opt.threads, opt.out))
mkdir_p(opt.out .. "/tasks")

-- the command that reproduces this run
local cmd = {"build/fvl", "scripts/compare_losses.lua"}
for i = 1, #arg do
  local a = arg[i]
  if a ~= "--collect" then cmd[#cmd + 1] = a:match("^[%w%-_.,/=:]+$") and a or ("'" .. a:gsub("'", "'\\''") .. "'") end
end
SETTINGS.command = table.concat(cmd, " ")
SETTINGS.heads = {}
for i, h in ipairs(heads) do SETTINGS.heads[i] = h.key end
SETTINGS.seed_list = seeds

local tasks = {}
for _, h in ipairs(heads) do
  for _, s in ipairs(seeds) do tasks[#tasks + 1] = {h = h, seed = s, dir = task_dir(h.key, s)} end
end
local exe, script = fvl.sys.exe(), arg[0]
local wargs = {}
for i = 1, #arg do wargs[i] = arg[i] end
local pending, active, nactive, done, failed = 1, {}, 0, 0, {}
local t_start = fvl.clock()
if opt.collect then done, pending = #tasks, #tasks + 1 end   -- aggregate what is there
while done < #tasks do
  while nactive < jobs and pending <= #tasks do
    local t = tasks[pending]
    pending = pending + 1
    mkdir_p(t.dir)
    os.remove(t.dir .. "/result.json")   -- a task's result is never mixed with an older run's
    local argv = {exe, script}
    for _, a in ipairs(wargs) do argv[#argv + 1] = a end
    argv[#argv + 1] = "--task"
    argv[#argv + 1] = t.h.key .. ":" .. t.seed
    local env = {OMP_NUM_THREADS = tostring(opt.threads), OPENBLAS_NUM_THREADS = tostring(opt.threads)}
    local logf = io.open(t.dir .. "/worker.log", "w")
    if logf then logf:close() end
    local pid = fvl.sys.spawn(exe, argv, env, t.dir .. "/worker.log")
    active[pid] = t
    nactive = nactive + 1
  end
  fvl.sys.sleep(0.2)
  for pid, t in pairs(active) do
    local finished, code, sig = fvl.sys.poll(pid)
    if finished then
      active[pid] = nil
      nactive = nactive - 1
      done = done + 1
      if code ~= 0 or sig or not read_file(t.dir .. "/result.json") then
        failed[#failed + 1] = t
        io.stderr:write(string.format("compare_losses: %s seed %d FAILED (%s); see %s/worker.log\n", t.h.name,
                                      t.seed, sig or ("exit " .. tostring(code)), t.dir))
      else
        io.stderr:write(string.format("compare_losses: %d/%d done (%s seed %d) after %.0f s\n", done, #tasks,
                                      t.h.name, t.seed, fvl.clock() - t_start))
      end
    end
  end
end
SETTINGS.seconds = math.floor(fvl.clock() - t_start + 0.5)
SETTINGS.jobs = jobs
if opt.collect then   -- the run's own time and job count, not the collection's
  local old = read_file(opt.out .. "/settings.json")
  old = old and json.decode(old)
  if type(old) == "table" then SETTINGS.seconds, SETTINGS.jobs = old.seconds, old.jobs end
end

-- ------------------------------------------------------------------ aggregate (heads in table order, seeds ascending)
-- the Fashion-MNIST verdict of a finished task, again from its saved test embeddings, predictions
-- and centres with this version's fvl.eval.diagnose (a run directory collected with --collect then
-- follows the current rule, whatever version ran its tasks)
local function rediagnose(r, dir)
  local ok, emb = pcall(fvl.load, dir .. "/fmnist_test_embeddings.npy")
  if not ok or not io.open(dir .. "/fmnist_test_pred.npy") then return end
  local d = fvl.eval.diagnose{emb = emb, centres = fvl.load(dir .. "/fmnist_centres.npy"),
                              pred = fvl.load(dir .. "/fmnist_test_pred.npy"), labels = fvl.load(dir .. "/fmnist_test_labels.npy"),
                              classes = 10, angle = DG.angle, recall = DG.recall, cluster = DG.cluster, confusion = DG.confusion}
  r.fmnist_collapsed, r.fmnist_min_recall, r.fmnist_recall = d.collapsed and 1 or 0, d.min_recall, d.recall
  r.fmnist_merged_pairs, r.fmnist_merged, r.fmnist_min_centre_angle = d.merged_pairs, d.merged, d.min_centre_angle
  r.fmnist_diagnosis, r.fmnist_flag = fvl.eval.collapse_text(d), d.collapsed and short_reason(d) or nil
end

local runs, by_head = {}, {}
for _, t in ipairs(tasks) do
  local text = read_file(t.dir .. "/result.json")
  if text then
    local r = json.decode(text)
    rediagnose(r, t.dir)
    runs[#runs + 1] = r
    by_head[t.h.key] = by_head[t.h.key] or {}
    table.insert(by_head[t.h.key], r)
  end
end

local function stats(values)
  local n = #values
  if n == 0 then return nil end
  local sum, lo, hi = 0, math.huge, -math.huge
  for _, v in ipairs(values) do sum = sum + v; lo = math.min(lo, v); hi = math.max(hi, v) end
  local mean = sum / n
  local ss = 0
  for _, v in ipairs(values) do ss = ss + (v - mean) ^ 2 end
  return {n = n, mean = mean, std = n > 1 and math.sqrt(ss / (n - 1)) or 0, min = lo, max = hi}
end

local summary = {}
for _, h in ipairs(heads) do
  local rs = by_head[h.key] or {}
  summary[h.key] = {head = h.name}
  for _, m in ipairs(METRICS) do
    local vals = {}
    for _, r in ipairs(rs) do if type(r[m.key]) == "number" then vals[#vals + 1] = r[m.key] end end
    summary[h.key][m.key] = stats(vals)
  end
end

-- rounding: fractions to 6 decimals (1e-4 %), other figures to 4 significant digits
local function num(v, m)
  if v == nil then return "" end
  if m.key:match("collapsed$") and (v == 0 or v == 1) then return tostring(math.tointeger(v)) end
  if m.pct or m.key == "auc" then return string.format("%.6f", v) end
  return string.format("%.4g", v)
end

local csv_head = {"head", "seed"}
for _, m in ipairs(METRICS) do csv_head[#csv_head + 1] = m.key end
local csv = {table.concat(csv_head, ",")}
for _, r in ipairs(runs) do
  local row = {r.key, tostring(r.seed)}
  for _, m in ipairs(METRICS) do row[#row + 1] = num(r[m.key], m) end
  csv[#csv + 1] = table.concat(row, ",")
end
write_atomic(opt.out .. "/results.csv", table.concat(csv, "\n") .. "\n")

local scsv = {"head,metric,n,mean,std,min,max"}
for _, h in ipairs(heads) do
  for _, m in ipairs(METRICS) do
    local s = summary[h.key][m.key]
    if s then
      scsv[#scsv + 1] = table.concat({h.key, m.key, tostring(s.n), num(s.mean, {key = "", pct = m.pct or m.key == "auc"}),
        num(s.std, {key = "", pct = m.pct or m.key == "auc"}), num(s.min, m), num(s.max, m)}, ",")
    end
  end
end
write_atomic(opt.out .. "/summary.csv", table.concat(scsv, "\n") .. "\n")

-- the printed table: mean ± std over seeds; "collapsed" counts collapsed seeds
local function cell(key, m)
  local s = summary[key][m.key]
  if not s then return "-" end
  if m.key:match("collapsed$") then return string.format("%d/%d", math.floor(s.mean * s.n + 0.5), s.n) end
  local f = m.pct and 100 or 1
  local fmt = "%." .. m.digits .. "f"
  if s.n == 1 then return string.format(fmt, f * s.mean) end
  return string.format(fmt .. " ± " .. fmt, f * s.mean, f * s.std)
end
local TABLE_COLS = {"fmnist_acc", "fmnist_collapsed", "verif_acc", "tar_at_far_1e-3", "tar_at_far_1e-2", "eer"}
local MBY = {}
for _, m in ipairs(METRICS) do MBY[m.key] = m end
local widths = {16}
local hdr = {"head"}
for i, k in ipairs(TABLE_COLS) do hdr[i + 1] = MBY[k].label; widths[i + 1] = math.max(#MBY[k].label, 13) end
local lines = {}
local function add(cells)
  local out = {}
  for i, c in ipairs(cells) do out[i] = i == 1 and string.format("%-" .. widths[i] .. "s", c) or string.format("%" .. widths[i] .. "s", c) end
  lines[#lines + 1] = table.concat(out, "  ")
end
add(hdr)
for _, h in ipairs(heads) do
  local c = {h.name}
  for i, k in ipairs(TABLE_COLS) do c[i + 1] = cell(h.key, MBY[k]) end
  add(c)
end
SETTINGS.tasks_finished, SETTINGS.tasks = #runs, #tasks
local note = string.format("mean ± std over %d seed%s (%s), inputs %s, BatchNorm %s / %s (64-D), s %g (%d-D) / %g (64-D), " ..
                           "%d-D margins × %g%s%s", #seeds, #seeds == 1 and "" or "s",
                           table.concat(seeds, ","), opt.inputs, opt.bn, opt.syn_bn, FM_S, opt.fm_dim, S, opt.fm_dim, opt.fm_margin,
                           #runs < #tasks and string.format("; only %d of %d tasks finished", #runs, #tasks) or "",
                           mode == "quick" and "  -- SMOKE TEST (--quick), not a result" or "")
local table_text = table.concat(lines, "\n") .. "\n" .. note
print(table_text)
write_atomic(opt.out .. "/table.txt", table_text .. "\n")

local metric_list = {}
for i, m in ipairs(METRICS) do metric_list[i] = {key = m.key, label = m.label, percent = m.pct or false, digits = m.digits} end
local summary_list = {}
for i, h in ipairs(heads) do
  local e = {key = h.key, head = h.name}
  for _, m in ipairs(METRICS) do e[m.key] = summary[h.key][m.key] end
  summary_list[i] = e
end
local slim_runs = {}
for i, r in ipairs(runs) do
  local e = {}
  for k, v in pairs(r) do if not k:match("_curve$") and not k:match("_trace$") then e[k] = v end end
  slim_runs[i] = e
end
write_atomic(opt.out .. "/results.json", json.encode({settings = SETTINGS, metrics = metric_list,
                                                      summary = summary_list, runs = slim_runs}, {indent = 1}))
write_atomic(opt.out .. "/settings.json", json.encode(SETTINGS, {indent = 2}))

-- ------------------------------------------------------------------ pictures
-- what the pictures show, from the finished tasks: the feature panels of every seed; of each
-- head's first seed its boundary spec, loss curve, norm trace and ROC points
local function picture_data()
  local P = {panels = {}, bspecs = {}, rocs = {}, curves = {}, norms = {}}
  for _, h in ipairs(heads) do
    for _, r in ipairs(by_head[h.key] or {}) do
      local dir = task_dir(h.key, r.seed)
      if M.fm_steps > 0 and SETTINGS.fashion_mnist.dim == 2 then P.panels[#P.panels + 1] = dir .. "/features.png" end
    end
    local first = (by_head[h.key] or {})[1]
    if first then
      local dir = task_dir(h.key, first.seed)
      if first.boundary then P.bspecs[#P.bspecs + 1] = first.boundary end
      if first.fmnist_curve then
        local xs, ys = {}, {}
        for k, p in ipairs(first.fmnist_curve) do xs[k], ys[k] = p[1], p[2] end
        P.curves[#P.curves + 1] = {x = xs, y = ys, label = h.name}
        local nx, ny = {}, {}
        for k, p in ipairs(first.fmnist_trace) do nx[k], ny[k] = p.step, math.max(p.norm_mean, 1e-3) end
        P.norms[#P.norms + 1] = {x = nx, y = ny, label = h.name}
      end
      local roc = read_file(dir .. "/synthetic_roc.csv")
      if roc then
        local far, tar = {}, {}
        for a, b in roc:gmatch("\n([^,\n]+),([^,\n]+)") do far[#far + 1], tar[#tar + 1] = tonumber(a), tonumber(b) end
        P.rocs[#P.rocs + 1] = {label = string.format("%s (seed %d: TAR@1e-3 %.1f%%)", h.name, first.seed,
                                                     100 * (first["tar_at_far_1e-3"] or 0)), far = far, tar = tar}
      end
    end
  end
  return P
end

-- eigenvectors of the symmetric D×D matrix A (a Lua table of rows; overwritten) by Jacobi
-- rotations; returns the eigenvalues, largest first, and the eigenvectors as the matching columns
local function eigen_sym(A)
  local D = #A
  local V = {}
  for i = 1, D do V[i] = {} for j = 1, D do V[i][j] = i == j and 1 or 0 end end
  for _ = 1, 100 do
    local off = 0
    for i = 1, D do for j = i + 1, D do off = off + A[i][j] ^ 2 end end
    if off < 1e-24 then break end
    for p = 1, D - 1 do
      for q = p + 1, D do
        if A[p][q] ~= 0 then   -- the rotation in the (p, q) plane that zeroes A[p][q]
          local theta = (A[q][q] - A[p][p]) / (2 * A[p][q])
          local t = (theta >= 0 and 1 or -1) / (math.abs(theta) + math.sqrt(theta * theta + 1))
          local c = 1 / math.sqrt(t * t + 1)
          local sn = t * c
          for k = 1, D do
            A[k][p], A[k][q] = c * A[k][p] - sn * A[k][q], sn * A[k][p] + c * A[k][q]
          end
          for k = 1, D do
            A[p][k], A[q][k] = c * A[p][k] - sn * A[q][k], sn * A[p][k] + c * A[q][k]
          end
          for k = 1, D do
            V[k][p], V[k][q] = c * V[k][p] - sn * V[k][q], sn * V[k][p] + c * V[k][q]
          end
        end
      end
    end
  end
  local order = {}
  for i = 1, D do order[i] = i end
  table.sort(order, function(a, b) return A[a][a] > A[b][b] end)
  local vals, vecs = {}, {}
  for r = 1, D do vecs[r] = {} end
  for k, i in ipairs(order) do
    vals[k] = A[i][i]
    for r = 1, D do vecs[r][k] = V[r][i] end
  end
  return vals, vecs
end

-- the Fashion-MNIST features of a D-dimensional embedding (D >= 3) on the unit sphere: x/|x| and
-- the class centres projected onto the 3 directions that keep most of the normalised centres'
-- spread (the top eigenvectors of Σ ŵ ŵᵀ), drawn from two opposite sides (front and back
-- hemisphere). Per head the seed whose two closest centres are closest (the worst one); its
-- title says whether it was flagged and how many seeds were. Returns panels for fvl.plot.sheet.
local function sphere_panels()
  local panels = {}
  for _, h in ipairs(heads) do
    local rs, worst = by_head[h.key] or {}, nil
    for _, r in ipairs(rs) do
      if r.fmnist_min_centre_angle and (not worst or r.fmnist_min_centre_angle < worst.fmnist_min_centre_angle) then
        worst = r
      end
    end
    local dir = worst and task_dir(h.key, worst.seed)
    if worst and io.open(dir .. "/fmnist_test_embeddings.npy") then
      local nflag = 0
      for _, r in ipairs(rs) do if r.fmnist_collapsed == 1 then nflag = nflag + 1 end end
      local emb, w = fvl.load(dir .. "/fmnist_test_embeddings.npy"), fvl.load(dir .. "/fmnist_centres.npy")
      local y = fvl.load(dir .. "/fmnist_test_labels.npy")
      local n = math.min(3000, emb:size(1))
      local x3, c3, kept = fvl.no_grad(function()
        local wn = fvl.normalize(w, 2)
        local vals, vecs = eigen_sym(wn:t():matmul(wn):totable())
        local P = {}
        for r = 1, #vecs do P[r] = {vecs[r][1], vecs[r][2], vecs[r][3]} end
        P = fvl.tensor(P)
        local total = 0
        for _, v in ipairs(vals) do total = total + v end
        return fvl.normalize(emb:narrow(1, 1, n), 2):matmul(P):contiguous(), wn:matmul(P):contiguous(),
               (vals[1] + vals[2] + vals[3]) / total
      end)
      local head_line = string.format("%s s%d: %.1f%%, min ∠ %.1f°", h.name, worst.seed, 100 * worst.fmnist_acc,
                                      worst.fmnist_min_centre_angle)
      if worst.fmnist_collapsed == 1 then
        head_line = string.format("COLLAPSED %s s%d (%d/%d): %s", h.name, worst.seed, nflag, #rs,
                                  worst.fmnist_flag or "flagged")
      elseif nflag > 0 then
        head_line = head_line .. string.format(" (%d/%d flagged)", nflag, #rs)
      end
      for _, side in ipairs { {"front", 30}, {"back", 210} } do
        panels[#panels + 1] = fvl.plot.features(x3, y:narrow(1, 1, n), {
          centres = c3, classes = 10, names = fvl.data.fashion_mnist_classes, elev = 20, azim = side[2],
          title = string.format("%s; %s, proj. %.0f%%", head_line, side[1], 100 * kept)})
      end
    end
  end
  return panels
end

-- draws the run's pictures into opt.out; appends the names written to `written`
local function draw_pictures(P, written)
  if M.fm_steps > 0 and SETTINGS.fashion_mnist.dim >= 3 then
    local sp = sphere_panels()
    if #sp > 0 then
      fvl.plot.sheet(sp, {cols = 4, file = opt.out .. "/features_sphere.png", cell_width = 460, cell_height = 400,
                          title = string.format("Fashion-MNIST %d-D features x/|x| and centres on the sphere of the centres' " ..
                                                "3 main directions; worst seed per head", SETTINGS.fashion_mnist.dim)})
      written[#written + 1] = "features_sphere.png"
    end
  end
  if #P.panels > 0 then
    fvl.plot.sheet(P.panels, {cols = #seeds, file = opt.out .. "/features.png", cell_width = 480, cell_height = 384,
                              title = "Fashion-MNIST test features (2-D, unit circle) and class centres; rows: heads, columns: seeds"})
    written[#written + 1] = "features.png"
  end
  if #P.bspecs > 0 then
    fvl.plot.boundaries(P.bspecs, {file = opt.out .. "/boundaries.png", cols = 5,
                                   title = "Two-class decision boundaries of the trained heads (seed " .. seeds[1] .. ")"})
    written[#written + 1] = "boundaries.png"
    -- each boundary as the margin grows to the trained value: boundary_<head>.gif
    fvl.plot.boundary_animations(P.bspecs, {dir = opt.out})
    written[#written + 1] = "boundary_*.gif"
    if SETTINGS.fashion_mnist.dim == 2 then written[#written + 1] = "features_*.gif" end
  end
  if #P.rocs > 0 then
    fvl.plot.roc(P.rocs, {file = opt.out .. "/roc.png", title = "Unseen synthetic identities: ROC (first seed)"})
    written[#written + 1] = "roc.png"
  end
  if #P.curves > 0 then
    fvl.plot.lines{series = P.curves, xlabel = "step", ylabel = "training loss", ylog = true,
                   title = "Fashion-MNIST training loss (seed " .. seeds[1] .. ")", file = opt.out .. "/curves.png"}
    fvl.plot.lines{series = P.norms, xlabel = "step", ylabel = "mean |x| of the batch embeddings", ylog = true,
                   title = "Fashion-MNIST embedding norm during training (seed " .. seeds[1] .. ")", file = opt.out .. "/norms.png"}
    written[#written + 1] = "curves.png"
    written[#written + 1] = "norms.png"
  end
end

local written = {"results.csv", "summary.csv", "results.json", "settings.json", "table.txt"}
draw_pictures(picture_data(), written)
for _, r in ipairs(runs) do
  if r.fmnist_collapsed == 1 then
    io.stderr:write(string.format("WARNING: %s seed %d collapsed on Fashion-MNIST (%s)\n", r.head, r.seed, r.fmnist_diagnosis))
  end
  if r.syn_collapsed == 1 then
    io.stderr:write(string.format("WARNING: %s seed %d collapsed on synthetic_faces (%s)\n", r.head, r.seed, r.syn_diagnosis))
  end
end
io.stderr:write(string.format("compare_losses: wrote %s/{%s} and tasks/ in %d s\n", opt.out, table.concat(written, ","),
                              math.floor(fvl.clock() - t_start + 0.5)))
if #failed > 0 then
  error(string.format("compare_losses: %d task(s) failed (first: %s seed %d, log %s/worker.log)", #failed,
                      failed[1].h.name, failed[1].seed, failed[1].dir), 0)
end
