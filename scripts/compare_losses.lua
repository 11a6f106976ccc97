-- compare_losses.lua — the main experiment: every seed loss head trained the same way,
--   (a) on Fashion-MNIST with a 2-D embedding: closed-set accuracy and the feature/boundary sheet;
--   (b) on synthetic_faces with unseen test identities: 10-fold verification accuracy,
--       TAR@FAR=1e-3 and EER.
-- Usage: fvl scripts/compare_losses.lua [--quick|--full] [--out DIR] [--seed N] [--heads a,b,..]
-- Writes DIR/results.csv, results.json, settings.json and the pictures; prints the table.
local fvl = fvl or require "fvl"
local json = fvl.json

-- ------------------------------------------------------------------ options
local cli = require "fvl.cli"
local HEAD_KEYS = { "softmax", "sphereface", "cosface", "arcface", "mv_arc", "curricularface", "circle", "center",
                    "discface", "npcface" }
local parser = cli.parser("fvl scripts/compare_losses.lua",
  "The main experiment: every seed loss head trained the same way, on Fashion-MNIST (2-D " ..
  "embedding: accuracy, feature and boundary pictures) and on synthetic faces with unseen test " ..
  "identities (10-fold verification accuracy, TAR@FAR=1e-3, EER). Writes DIR/results.csv, " ..
  "results.json, settings.json and the pictures; prints the table.")
parser:mutex(parser:flag("--quick", "a short run (minutes)"), parser:flag("--full", "the long run (LeNet++ backbone)"))
parser:option("--out", "output directory", "runs/compare")
parser:option("--seed", "random seed", "1"):convert(cli.integer("seed"))
parser:option("--heads", "heads to run, comma separated: " .. table.concat(HEAD_KEYS, ","))
  :convert(cli.list("heads", HEAD_KEYS))
parser:option("--fm-steps", "Fashion-MNIST training steps (0 skips that part)"):convert(cli.integer("fm-steps", 0))
parser:option("--syn-steps", "synthetic-faces training steps (0 skips that part)"):convert(cli.integer("syn-steps", 0))
parser:option("--identities", "synthetic training identities"):convert(cli.integer("identities", 2))
parser:option("--per-identity", "synthetic samples per training identity"):convert(cli.integer("per-identity", 2))
local o = parser:parse(arg or {})
local opt = { mode = o.quick and "quick" or o.full and "full" or "default", out = o.out, seed = o.seed,
              fm_steps = o.fm_steps, syn_steps = o.syn_steps, identities = o.identities,
              per_identity = o.per_identity }
if o.heads then
  opt.heads = {}
  for _, h in ipairs(o.heads) do opt.heads[h] = true end
end

-- Budgets per mode. The same recipe for every head: SGD(momentum 0.9, wd 5e-4), cosine LR
-- with a 5% warm-up, the same backbone, batches and seed.
local MODES = {
  quick   = { pairs = 6000, fm_steps = 150,  fm_train = 20000, fm_backbone = "mlp",     syn_steps = 200,
              syn = { identities = 200, per_identity = 20, test_identities = 100, test_per_identity = 10 } },
  default = { pairs = 20000, fm_steps = 2000, fm_train = 60000, fm_backbone = "mlp",     syn_steps = 1000,
              syn = { identities = 500, per_identity = 24, test_identities = 200, test_per_identity = 12 } },
  full    = { pairs = 60000, fm_steps = 2000, fm_train = 60000, fm_backbone = "lenetpp", syn_steps = 6000,
              syn = { identities = 2000, per_identity = 30, test_identities = 500, test_per_identity = 20 } },
}
local M = MODES[opt.mode]
M.fm_steps = opt.fm_steps or M.fm_steps
M.syn_steps = opt.syn_steps or M.syn_steps
M.syn.identities = opt.identities or M.syn.identities
M.syn.per_identity = opt.per_identity or M.syn.per_identity
local S = 32            -- one scale for every normalised head (AM-Softmax 30, MV-Softmax 32)
local SETTINGS = {
  mode = opt.mode, seed = opt.seed, scale = S, batch = 256, lr = 0.1, momentum = 0.9,
  weight_decay = 5e-4, warmup = 0.05, fashion_mnist = { steps = M.fm_steps, train = M.fm_train,
  backbone = M.fm_backbone, dim = 2 }, synthetic = { steps = M.syn_steps, dim = 64, data = M.syn,
  pairs = M.pairs, folds = 10 },
  threads = fvl.threads(), version = fvl.version,
}

-- every seed head, with the options used (defaults of docs/losses.md except the shared scale)
local HEADS = {
  { key = "softmax",        name = "Softmax",        make = function(d, c) return fvl.loss.softmax{dim=d, classes=c} end },
  { key = "sphereface",     name = "SphereFace",     make = function(d, c) return fvl.loss.sphereface{dim=d, classes=c} end },
  { key = "cosface",        name = "CosFace",        make = function(d, c) return fvl.loss.cosface{dim=d, classes=c, s=S, m=0.35} end },
  { key = "arcface",        name = "ArcFace",        make = function(d, c) return fvl.loss.arcface{dim=d, classes=c, s=S, m=0.5} end },
  { key = "mv_arc",         name = "MV-Arc-Softmax", make = function(d, c) return fvl.loss.mv_softmax{dim=d, classes=c, s=S, m=0.5, kind="arc"} end },
  { key = "curricularface", name = "CurricularFace", make = function(d, c) return fvl.loss.curricularface{dim=d, classes=c, s=S, m=0.5} end },
  { key = "circle",         name = "Circle",         make = function(d, c) return fvl.loss.circle{dim=d, classes=c} end },
  { key = "center",         name = "Center",         make = function(d, c) return fvl.loss.center{dim=d, classes=c} end },
  { key = "discface",       name = "DiscFace",       make = function(d, c) return fvl.loss.discface{dim=d, classes=c, s=S} end },
  { key = "npcface",        name = "NPCFace",        make = function(d, c) return fvl.loss.npcface{dim=d, classes=c, s=S} end },
}

local function mkdir_p(dir) os.execute("mkdir -p '" .. dir:gsub("'", "'\\''") .. "'") end
local function write_atomic(path, text)
  local tmp = path .. ".tmp"
  local f = assert(io.open(tmp, "w"))
  f:write(text)
  f:close()
  assert(os.rename(tmp, path))
end

-- ------------------------------------------------------------------ training
local function backbone(kind, in_dim, dim)
  if kind == "lenetpp" then return fvl.nn.lenetpp{dim = dim} end
  if kind == "fm_mlp" then return fvl.nn.mlp{sizes = {in_dim, 256, 128, dim}} end
  return fvl.nn.mlp{sizes = {in_dim, 256, dim}}
end

-- trains net + head for `steps` SGD steps on (x, y); returns the loss curve
local function train(net, head, x, y, steps, bar, label, on_step)
  local params = {}
  for _, p in ipairs(net:parameters()) do params[#params + 1] = p end
  for _, p in ipairs(head:parameters()) do params[#params + 1] = p end
  local optim = fvl.optim.sgd(params, {lr = SETTINGS.lr, momentum = SETTINGS.momentum,
                                       weight_decay = SETTINGS.weight_decay})
  local sched = fvl.schedule.cosine{from = SETTINGS.lr, to = 0, steps = steps,
                                    warmup = math.floor(steps * SETTINGS.warmup)}
  local curve, step = {}, 0
  net:train()
  local loader_seed = opt.seed
  while step < steps do
    for batch in fvl.data.loader({x = x, labels = y}, {batch = SETTINGS.batch, shuffle = true,
                                 seed = loader_seed, drop_last = true}) do
      step = step + 1
      optim.lr = sched(step)
      optim:zero_grad()
      local loss = head(net(batch.x), batch.y)
      loss:backward()
      optim:step()
      if on_step then on_step(step) end
      if step % 10 == 0 or step == steps then
        curve[#curve + 1] = {step, loss:item()}
        bar:update(10, {loss = string.format("%.3f", loss:item()), head = label})
      end
      if step >= steps then break end
    end
    loader_seed = loader_seed + 1
  end
  net:evaluate()
  return curve
end

local function embed(net, x)
  return fvl.no_grad(function()
    local parts, n, B = {}, x:size(1), 2048
    for s = 1, n, B do parts[#parts + 1] = net(x:narrow(1, s, math.min(B, n - s + 1))) end
    return #parts == 1 and parts[1] or fvl.cat(parts, 1)
  end)
end

-- ------------------------------------------------------------------ data
fvl.manual_seed(opt.seed)
io.stderr:write(string.format("compare_losses: mode %s, %d threads, output %s\n", opt.mode, fvl.threads(), opt.out))
local fm_train = assert(fvl.data.fashion_mnist{split = "train"})
local fm_test = assert(fvl.data.fashion_mnist{split = "test"})
local n_fm = math.min(M.fm_train, fm_train.images:size(1))
local fm_x = fm_train.images:narrow(1, 1, n_fm)
local fm_y = fm_train.labels:narrow(1, 1, n_fm)
local fm_tx, fm_ty = fm_test.images, fm_test.labels
if M.fm_backbone ~= "lenetpp" then
  fm_x = fm_x:reshape(n_fm, 784)
  fm_tx = fm_tx:reshape(fm_tx:size(1), 784)
end
local syn_opts = {seed = opt.seed}
for k, v in pairs(M.syn) do syn_opts[k] = v end
local syn = fvl.data.synthetic_faces(syn_opts)
local syn_in = syn.train.x:size(2)
local syn_classes = syn.info and syn.info.identities or M.syn.identities

local heads = {}
for _, h in ipairs(HEADS) do
  if not opt.heads or opt.heads[h.key] then heads[#heads + 1] = h end
end
local total = 0
for _ = 1, #heads do total = total + M.fm_steps + M.syn_steps end
local bar = fvl.progress{total = total, title = "training", unit = "steps"}

-- ------------------------------------------------------------------ run
mkdir_p(opt.out)
local rows, panels, rocs, curves, trained = {}, {}, {}, {}, {}
for _, h in ipairs(heads) do
  local row = {head = h.name, key = h.key}
  if M.fm_steps > 0 then
    -- (a) Fashion-MNIST, 2-D embedding
    fvl.manual_seed(opt.seed)
    local net = backbone(M.fm_backbone == "lenetpp" and "lenetpp" or "fm_mlp", 784, 2)
    local head = h.make(2, 10)
    local t0 = fvl.clock()
    -- the 2-D test features over training, one frame every steps/20 steps
    local anim = fvl.plot.training_animation{file = opt.out .. "/features_" .. h.key .. ".gif", steps = M.fm_steps, frames = 20}
    local function frame(step)
      net:evaluate()
      local n = math.min(1500, fm_tx:size(1))
      local emb = embed(net, fm_tx:narrow(1, 1, n))
      net:train()
      return emb, fm_ty:narrow(1, 1, n), {centres = head.weight:detach(), title = h.name .. ", step " .. step}
    end
    local curve = train(net, head, fm_x, fm_y, M.fm_steps, bar, h.name .. " (FMNIST)",
                        function(step) anim:step(step, function() return frame(step) end) end)
    anim:close()
    local emb = embed(net, fm_tx)
    local pred = fvl.no_grad(function() return head:predict(emb) end)
    row.fmnist_acc = pred:eq(fm_ty):mean():item()
    row.fmnist_seconds = fvl.clock() - t0
    local png = opt.out .. "/features_" .. h.key .. ".png"
    local nshow = math.min(3000, emb:size(1))
    fvl.plot.features(emb:narrow(1, 1, nshow), fm_ty:narrow(1, 1, nshow),
                      {centres = head.weight:detach(), file = png, names = fm_train.classes,
                       title = string.format("%s  (acc %.1f%%)", h.name, 100 * row.fmnist_acc)})
    panels[#panels + 1] = png
    trained[#trained + 1] = head
    curves[#curves + 1] = {label = h.name, curve = curve}
  end

  if M.syn_steps > 0 then
    -- (b) synthetic faces, unseen identities
    fvl.manual_seed(opt.seed)
    local net = backbone("mlp", syn_in, SETTINGS.synthetic.dim)
    local head = h.make(SETTINGS.synthetic.dim, syn_classes)
    local t0 = fvl.clock()
    train(net, head, syn.train.x, syn.train.labels, M.syn_steps, bar, h.name .. " (synthetic)")
    local temb = embed(net, syn.test.x)
    local ok, err = pcall(function()
      local scores, same = fvl.eval.pairs(temb, syn.test.labels, {n = M.pairs, seed = 1})
      local v = fvl.eval.verification(scores, same, {folds = 10})
      row.ver_acc, row.ver_std, row.eer = v.accuracy, v.std, v.eer
      row.tar_1e3 = v.tar_at_far[1e-3]
      row.tar_1e2 = v.tar_at_far[1e-2]
      rocs[#rocs + 1] = {label = h.name, result = v}
    end)
    if not ok then row.error = tostring(err) end
    row.syn_seconds = fvl.clock() - t0
  end
  rows[#rows + 1] = row
end
bar:close()

-- ------------------------------------------------------------------ outputs
local function pct(v) return v and string.format("%.2f", 100 * v) or "-" end
local header = {"head", "FMNIST acc %", "verif acc %", "± std", "TAR@FAR=1e-3 %", "TAR@FAR=1e-2 %", "EER %"}
local lines = {}
local function add(cells)
  lines[#lines + 1] = string.format("%-16s %13s %12s %7s %15s %15s %7s", table.unpack(cells))
end
add(header)
for _, r in ipairs(rows) do
  add({r.head, pct(r.fmnist_acc), pct(r.ver_acc), pct(r.ver_std), pct(r.tar_1e3), pct(r.tar_1e2), pct(r.eer)})
end
local table_text = table.concat(lines, "\n")
print(table_text)

local csv = {"head,fmnist_acc,verification_acc,verification_std,tar_at_far_1e-3,tar_at_far_1e-2,eer"}
for _, r in ipairs(rows) do
  local function n(v) return v and string.format("%.6f", v) or "" end
  csv[#csv + 1] = table.concat({r.head, n(r.fmnist_acc), n(r.ver_acc), n(r.ver_std), n(r.tar_1e3), n(r.tar_1e2), n(r.eer)}, ",")
end
write_atomic(opt.out .. "/results.csv", table.concat(csv, "\n") .. "\n")
write_atomic(opt.out .. "/results.json", json.encode({settings = SETTINGS, results = rows}, {indent = 2}))
write_atomic(opt.out .. "/settings.json", json.encode(SETTINGS, {indent = 2}))
write_atomic(opt.out .. "/table.txt", table_text .. "\n")

if #panels > 0 then
fvl.plot.sheet(panels, {cols = 5, file = opt.out .. "/features.png",
                        title = "Fashion-MNIST test features (2-D, unit circle) and class centres"})
end
if #rocs > 0 then
  fvl.plot.roc(rocs, {file = opt.out .. "/roc.png", title = "Unseen synthetic identities: ROC"})
end
local series = {}
for _, c in ipairs(curves) do
  local xs, ys = {}, {}
  for k, p in ipairs(c.curve) do xs[k], ys[k] = p[1], p[2] end
  series[#series + 1] = {x = xs, y = ys, label = c.label}
end
if #series > 0 then
fvl.plot.lines{series = series, xlabel = "step", ylabel = "training loss", ylog = true,
               title = "Fashion-MNIST training loss", file = opt.out .. "/curves.png"}
-- the two-class decision boundaries of the trained heads (their final m, s, t, λ)
fvl.plot.boundaries(trained, {file = opt.out .. "/boundaries.png", cols = 5,
                              title = "Two-class decision boundaries of the trained heads"})
-- each boundary as the margin grows to the trained value: boundary_<head>.gif
fvl.plot.boundary_animations(trained, {dir = opt.out})
end
io.stderr:write("compare_losses: wrote " .. opt.out .. "/{results.csv,results.json,settings.json,table.txt,features.png,boundaries.png,roc.png,curves.png,features_*.gif,boundary_*.gif}\n")
