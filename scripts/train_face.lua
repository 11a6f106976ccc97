-- Train a face backbone with a margin head by insightface's recipe, from a config file.
--
--   fvl scripts/train_face.lua [--config scripts/configs/synthetic_mbf.lua] [--out runs/x]
--                              [--set key=value ...] [--steps N] [--resume]
--
-- The config is a Lua file returning a table (scripts/configs/*.lua, like insightface's
-- configs/*.py); keys it leaves out take the defaults below (insightface's configs/base.py where
-- they apply). Overrides: FVL_TRAIN_SET="key=value;key=value" in the environment, then every
-- --set key=value (dots reach into tables: --set head.m=0.4; values true/false/numbers/strings).
-- What it does:
--   data      synthetic (fvl.data.synthetic_faces RGB faces; the disjoint test identities are
--             written as pairs into <out>/synthetic_val.bin), rec (an insightface .rec), folder
--             (one directory per identity); images normalised to (x − 127.5)/127.5, flipped at
--             random (flip = true)
--   network   mobilefacenet | r18 | r34 | r50 | r100 | r200 (fvl.nn.mobilefacenet / iresnet)
--   head      any fvl.loss head: head = {kind = "arcface", s = 64, m = 0.5, ...}; margin_schedule
--             = {field = "m", kind = "linear", from = 0, to = 0.5, steps = 2000} drives a field
--   optimiser SGD (momentum, weight decay) or AdamW; learning rate polynomial decay (power 2) to
--             0 over the run after a linear warm-up; the backbone's gradient norm clipped (5)
--   every `verbose` steps: verification with flip test on each val pack (.bin), logged to
--             <out>/metrics.jsonl and <out>/verification.csv and drawn as <out>/verification_curve.png
--             and <out>/loss_curve.png (each with its data in a .csv beside it)
--   every `save_every` steps and at the end: <out>/checkpoint (--resume continues from it and
--             reproduces the uninterrupted run bit for bit); at the end <out>/model.npz
--             (fvl.nn.load) and <out>/summary.json
--   a progress bar with images/s and ETA; Ctrl-C saves a checkpoint of the last finished step;
--   halt_at = N stops with a checkpoint after step N (to split a run across jobs).
local cli = require "fvl.cli"
local parser = cli.parser("fvl scripts/train_face.lua",
  "Train a face backbone with a margin head by insightface's recipe, from a config file.")
parser:option("--config", "config file (a Lua table)", "scripts/configs/synthetic_mbf.lua")
parser:option("--out", "run directory (default: the config's output, else runs/<config name>)")
parser:option("--set", "override a config key: key=value (repeatable; dots for tables)"):count("*")
parser:option("--steps", "total steps (overrides the config's steps/epochs)"):convert(cli.integer("steps", 1))
parser:flag("--resume", "continue from <out>/checkpoint")
local args = parser:parse(arg or {})

local main   -- the script's body (below); a user's mistake ends as one line, anything else with its traceback
local PREFIX = "train_face.lua: "

local json = require "fvl.json"
local function die(msg) error(PREFIX .. msg, 0) end

function main()

-- ------------------------------------------------------------------ config
local DEFAULTS = {
  name = nil, output = nil, seed = 1, threads = 2,
  data = { kind = "synthetic", identities = 200, per_identity = 20, test_identities = 40, test_per_identity = 6,
           size = 56, pairs = 400, seed = 1, nuisance = 1, illumination = 1, noise = 0.3 },
  val = {},                 -- extra .bin packs: {"lfw.bin", "cfp_fp.bin"}
  flip = true,
  network = "mobilefacenet", embedding_size = 512, dropout = 0, scale = 1,
  head = { kind = "arcface", s = 64, m = 0.5 },
  margin_schedule = nil,
  optimizer = "sgd", lr = 0.1, momentum = 0.9, weight_decay = 5e-4,
  lr_power = 2, warmup_steps = 0, clip_grad = 5,
  batch_size = 128, epochs = nil, steps = 1000,
  verbose = 200, save_every = 500,
}

local function load_config(path)
  local chunk, err = loadfile(path, "t", setmetatable({}, { __index = _G }))
  if not chunk then die("cannot read the config " .. path .. ": " .. tostring(err)) end
  local ok, cfg = pcall(chunk)
  if not ok then die("config " .. path .. ": " .. tostring(cfg)) end
  if type(cfg) ~= "table" then die("config " .. path .. " must return a table, got " .. type(cfg)) end
  return cfg
end

local function merge(base, over)
  local out = {}
  for k, v in pairs(base) do out[k] = v end
  for k, v in pairs(over) do
    if type(v) == "table" and type(out[k]) == "table" and #v == 0 and next(v) ~= nil and k ~= "val" then
      out[k] = merge(out[k], v)
    else
      out[k] = v
    end
  end
  return out
end

local function parse_value(s)
  if s == "true" then return true elseif s == "false" then return false elseif s == "nil" then return nil end
  return math.tointeger(tonumber(s)) or tonumber(s) or s
end

local function apply_set(cfg, item, where)
  local key, val = item:match("^%s*([%w_%.]+)%s*=%s*(.-)%s*$")
  if not key then die(string.format("%s '%s': expected key=value", where, item)) end
  local t, parts = cfg, {}
  for p in key:gmatch("[^%.]+") do parts[#parts + 1] = p end
  for i = 1, #parts - 1 do
    if t[parts[i]] == nil then t[parts[i]] = {} end
    if type(t[parts[i]]) ~= "table" then die(string.format("%s '%s': %s is not a table", where, item, parts[i])) end
    t = t[parts[i]]
  end
  local leaf = parts[#parts]
  if t == cfg and DEFAULTS[leaf] == nil and cfg[leaf] == nil and leaf ~= "name" and leaf ~= "output"
      and leaf ~= "margin_schedule" and leaf ~= "epochs" and leaf ~= "halt_at" then
    die(string.format("%s '%s': unknown config key '%s'", where, item, leaf))
  end
  t[leaf] = parse_value(val)
end

local cfg = merge(DEFAULTS, load_config(args.config))
for item in (os.getenv("FVL_TRAIN_SET") or ""):gmatch("[^;]+") do apply_set(cfg, item, "FVL_TRAIN_SET") end
for _, item in ipairs(args.set or {}) do apply_set(cfg, item, "--set") end
if args.steps then cfg.steps, cfg.epochs = args.steps, nil end
cfg.name = cfg.name or args.config:match("([^/]+)%.lua$") or "run"
local out = args.out or cfg.output or ("runs/" .. cfg.name)

fvl.threads(cfg.threads)
fvl.manual_seed(cfg.seed)
os.execute("mkdir -p '" .. out:gsub("'", "'\\''") .. "'")

-- ------------------------------------------------------------------ data
local D = cfg.data
local train_next, classes, image_size, steps_per_epoch, set_position
local val_packs = {}
if D.kind == "synthetic" then
  local d = fvl.data.synthetic_faces { image = "rgb", size = D.size, identities = D.identities,
                                       per_identity = D.per_identity, test_identities = D.test_identities,
                                       test_per_identity = D.test_per_identity, seed = D.seed,
                                       nuisance = D.nuisance, illumination = D.illumination, noise = D.noise }
  classes, image_size = d.train.classes, D.size
  local x = (d.train.x - 127.5) / 127.5
  local loader = fvl.data.loader({ x = x, labels = d.train.labels },
                                 { batch = cfg.batch_size, shuffle = true, seed = cfg.seed, drop_last = true,
                                   flip = cfg.flip })
  steps_per_epoch = x:size(1) // cfg.batch_size
  train_next = function() return loader:next() or loader:next() end
  set_position = function(step)
    loader:reset(step // steps_per_epoch + 1)
    loader.pos = (step % steps_per_epoch) * cfg.batch_size
  end
  -- the held-out identities as a verification pack: half same-identity pairs, half different
  local packpath = out .. "/synthetic_val.bin"
  local f = io.open(packpath, "rb")
  if f then f:close() else
    local T, per = d.test.classes, D.test_per_identity
    local xt = d.test.x
    local bins, issame = {}, {}
    local function h(i) return fvl.sys.hash(D.seed + 7919, i) end
    for i = 1, D.pairs do
      local a, b
      if i % 2 == 1 then
        local t = h(4 * i) % T
        local j = h(4 * i + 1) % per
        local k = (j + 1 + h(4 * i + 2) % (per - 1)) % per
        a, b = t * per + j, t * per + k
      else
        local t = h(4 * i) % T
        local u = (t + 1 + h(4 * i + 1) % (T - 1)) % T
        a, b = t * per + h(4 * i + 2) % per, u * per + h(4 * i + 3) % per
      end
      bins[#bins + 1] = fvl.data.encode_image(xt:select(1, a + 1):contiguous(), { format = "png" })
      bins[#bins + 1] = fvl.data.encode_image(xt:select(1, b + 1):contiguous(), { format = "png" })
      issame[#issame + 1] = i % 2 == 1
    end
    local ok, err = fvl.data.write_bin_pack(packpath, bins, issame)
    if not ok then die(tostring(err)) end
  end
  val_packs[#val_packs + 1] = packpath
elseif D.kind == "rec" or D.kind == "folder" then
  local set, err = fvl.data.images { [D.kind] = D.path, size = D.size and { D.size, D.size } or nil }
  if not set then die(tostring(err)) end
  classes, image_size = set.classes, set.size[2]
  local loader = set:loader { batch = cfg.batch_size, shuffle = true, seed = cfg.seed, drop_last = true,
                              flip = cfg.flip }
  steps_per_epoch = set.n // cfg.batch_size
  train_next = function() return loader:next() or loader:next() end
  set_position = function(step)
    loader:reset(step // steps_per_epoch + 1)
    for _ = 1, step % steps_per_epoch do loader:next() end   -- the same batches as before
  end
else
  die(string.format("data.kind = '%s' (expected synthetic|rec|folder)", tostring(D.kind)))
end
for _, p in ipairs(cfg.val or {}) do val_packs[#val_packs + 1] = p end
if steps_per_epoch < 1 then die("fewer training images than one batch of " .. cfg.batch_size) end
local total = cfg.epochs and cfg.epochs * steps_per_epoch or cfg.steps

-- ------------------------------------------------------------------ network, head, optimiser
local net, head
local built, berr = pcall(function()
if cfg.network == "mobilefacenet" or cfg.network == "mbf" then
  net = fvl.nn.mobilefacenet { dim = cfg.embedding_size, scale = cfg.scale, input_size = image_size }
else
  local depth = tonumber(tostring(cfg.network):match("^r(%d+)$") or tostring(cfg.network):match("^iresnet(%d+)$"))
  if not depth then error(string.format("network = '%s' (expected mobilefacenet|r18|r34|r50|r100|r200)", tostring(cfg.network))) end
  net = fvl.nn.iresnet { depth = depth, dim = cfg.embedding_size, dropout = cfg.dropout, input_size = image_size }
end
local hopts = {}
for k, v in pairs(cfg.head) do if k ~= "kind" then hopts[k] = v end end
hopts.dim, hopts.classes = cfg.embedding_size, classes
if not fvl.loss[cfg.head.kind] then error(string.format("head.kind = '%s' is not an fvl.loss head", tostring(cfg.head.kind))) end
head = fvl.loss[cfg.head.kind](hopts)
end)
if not built then die(tostring(berr)) end
local opt
if cfg.optimizer == "sgd" then
  opt = fvl.optim.sgd({ net, head }, { lr = cfg.lr, momentum = cfg.momentum, weight_decay = cfg.weight_decay })
elseif cfg.optimizer == "adamw" then
  opt = fvl.optim.adamw({ net, head }, { lr = cfg.lr, weight_decay = cfg.weight_decay })
else
  die(string.format("optimizer = '%s' (expected sgd|adamw)", tostring(cfg.optimizer)))
end
local lr_at = fvl.schedule.polynomial { from = cfg.lr, to = 0, steps = total, power = cfg.lr_power,
                                        warmup = cfg.warmup_steps > 0 and cfg.warmup_steps or nil }
local margin_at, margin_field
if cfg.margin_schedule then
  local ms = {}
  for k, v in pairs(cfg.margin_schedule) do if k ~= "field" and k ~= "kind" then ms[k] = v end end
  margin_field = cfg.margin_schedule.field or "m"
  local kind = cfg.margin_schedule.kind or "linear"
  if not fvl.schedule[kind] then die("margin_schedule.kind = '" .. tostring(kind) .. "' is not an fvl.schedule") end
  margin_at = fvl.schedule[kind](ms)
end

-- ------------------------------------------------------------------ resume
local ckpath = out .. "/checkpoint"
local step = 0
if args.resume then
  local ck, err = fvl.load_checkpoint(ckpath, { net = net, head = head, opt = opt })
  if not ck then die("--resume: " .. tostring(err)) end
  step = ck.step
  print(string.format("resumed from %s at step %d", ckpath, step))
end
set_position(step)

local metrics = fvl.log.open(out .. "/metrics.jsonl", { run = cfg.name })
local csv_path = out .. "/verification.csv"
local val_records, loss_records = {}, {}
for _, r in ipairs(fvl.log.read(out .. "/metrics.jsonl") or {}) do
  if r.step and r.step <= step then
    if r.kind == "val" then val_records[#val_records + 1] = r elseif r.kind == "train" then loss_records[#loss_records + 1] = r end
  end
end

local function save(reason)
  fvl.save_checkpoint(ckpath, { net = net, head = head, opt = opt, step = step,
                                extra = { epoch = step // steps_per_epoch + 1, reason = reason, config = args.config } })
end

local function verify()
  net:evaluate()
  for _, p in ipairs(val_packs) do
    local pack, err = fvl.data.bin_pack(p)
    if not pack then die(tostring(err)) end
    local r = fvl.eval.bin_pack(net, pack, { flip = true, batch = 64, size = { image_size, image_size } })
    local rec = { kind = "val", step = step, pack = r.name, acc = r.accuracy, std = r.std, eer = r.eer,
                  auc = r.auc, val_1e3 = r.val_1e3, xnorm = r.xnorm }
    metrics:write(rec)
    val_records[#val_records + 1] = rec
    io.stderr:write(string.format("\n[step %d] %s\n", step, r.line))
    local f = io.open(csv_path, "r")
    local new = f == nil
    if f then f:close() end
    f = assert(io.open(csv_path, "a"))
    if new then f:write("step,pack,acc,std,eer,auc,val_1e3,xnorm\n") end
    f:write(string.format("%d,%s,%.6f,%.6f,%.6f,%.6f,%s,%.4f\n", step, r.name, r.accuracy, r.std, r.eer, r.auc,
                          r.val_1e3 and string.format("%.6f", r.val_1e3) or "", r.xnorm))
    f:close()
  end
  net:train()
  if #val_records > 0 then
    fvl.plot.history(val_records, { x = "step", y = { "acc", "auc" }, file = out .. "/verification_curve.png",
                                    title = cfg.name .. ": verification (flip test)" })
  end
  if #loss_records > 1 then
    fvl.plot.history(loss_records, { x = "step", y = { "loss" }, file = out .. "/loss_curve.png", title = cfg.name .. ": loss" })
  end
end

-- ------------------------------------------------------------------ training
print(string.format("%s: %s (%d parameters), head %s, %d classes, %d×%d images, batch %d, %d steps (%d per epoch), %s, %d threads",
                    cfg.name, net.name, net:num_parameters(), cfg.head.kind, classes, image_size, image_size,
                    cfg.batch_size, total, steps_per_epoch, cfg.optimizer, fvl.threads()))
local bar = fvl.progress.new { total = (total - step) * cfg.batch_size, title = cfg.name, unit = "img" }
local phase, last_loss, halted = "idle", 0 / 0, false
local ok, err = pcall(function()
  while step < total do
    local batch = train_next()
    opt.lr = lr_at(step)
    if margin_at then head[margin_field] = margin_at(step) end
    phase = "forward"
    opt:zero_grad()
    local loss = head(net(batch.x), batch.y)
    phase = "backward"
    loss:backward()
    phase = "update"
    local gnorm = fvl.optim.clip_grad_norm(net:parameters(), cfg.clip_grad)
    opt:step()
    step = step + 1
    phase = "idle"
    last_loss = loss:item()
    bar:update(cfg.batch_size, { loss = string.format("%.3f", last_loss), lr = string.format("%.4g", opt.lr) })
    if step % 10 == 0 or step == total then
      local rec = { kind = "train", step = step, loss = last_loss, lr = opt.lr, grad_norm = gnorm }
      if margin_at then rec[margin_field] = head[margin_field] end
      metrics:write(rec)
      loss_records[#loss_records + 1] = rec
    end
    if cfg.verbose > 0 and (step % cfg.verbose == 0 or step == total) then verify() end
    if cfg.save_every > 0 and step % cfg.save_every == 0 and step < total then save("periodic") end
    if cfg.halt_at and step >= cfg.halt_at and step < total then
      halted = true
      return
    end
  end
end)
if not ok then
  if tostring(err):find("interrupted", 1, true) then
    fvl.sys.abort_clear()
    bar:close()
    if phase == "update" then
      die(string.format("interrupted during the update of step %d: the parameters may be half-updated, so no "
                        .. "checkpoint was written (the last one in %s stands)", step + 1, ckpath))
    end
    save("interrupted")
    die(string.format("interrupted; checkpoint of step %d saved to %s (continue with --resume)", step, ckpath))
  end
  error(err, 0)
end
bar:close({ loss = string.format("%.3f", last_loss) })
if halted then
  save("halt")
  print(string.format("halted at step %d of %d (halt_at); checkpoint in %s, continue with --resume", step, total, ckpath))
  return
end
save("final")
fvl.nn.save(out .. "/model.npz", net, { meta = { input = { 3, image_size, image_size }, embedding = cfg.embedding_size,
                                                  config = args.config } })
local last = {}
for _, r in ipairs(val_records) do if r.step == step then last[r.pack] = { acc = r.acc, std = r.std, auc = r.auc, eer = r.eer } end end
local summary = { name = cfg.name, config = args.config, network = net.name, head = cfg.head.kind, steps = step,
                  batch_size = cfg.batch_size, classes = classes, image_size = image_size, final_loss = last_loss,
                  verification = last }
fvl.sys.write_atomic(out .. "/summary.json", json.encode(summary) .. "\n")
print(string.format("done: %d steps, final loss %.4f; run directory %s", step, last_loss, out))
end

local ok, err = xpcall(main, function(e)
  if type(e) == "string" and e:sub(1, #PREFIX) == PREFIX then return e end
  return debug.traceback(tostring(e), 2)
end)
if not ok then error(err, 0) end
