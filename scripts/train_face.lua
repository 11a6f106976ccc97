-- Train a face backbone with a margin head by insightface's recipe, from a config file.
--
--   fvl scripts/train_face.lua [--config scripts/configs/synthetic_mbf.lua] [--out runs/x]
--                              [--set key=value ...] [--steps N] [--resume]
--
-- The config is a Lua file returning a table (scripts/configs/*.lua, like insightface's
-- configs/*.py); keys it leaves out take the defaults below (insightface's configs/base.py where
-- they apply). Overrides: FVL_TRAIN_SET="key=value;key=value" in the environment, then every
-- --set key=value (dots reach into tables: --set head.m=0.4; values true/false/numbers/strings, and
-- lists with commas: --set lr_steps=8000,12000 --set val=lfw,cfp_fp).
-- What it does:
--   data      synthetic (fvl.data.synthetic_faces RGB faces; the disjoint test identities are
--             written as pairs into <out>/synthetic_val.bin), rec (an insightface .rec), folder
--             (one directory per identity); images normalised to (x − 127.5)/127.5, flipped at
--             random (flip = true)
--   network   mobilefacenet | r18 | r34 | r50 | r100 | r200 (fvl.nn.mobilefacenet / iresnet)
--   head      any fvl.loss head: head = {kind = "arcface", s = 64, m = 0.5, ...}; margin_schedule
--             = {field = "m", kind = "linear", from = 0, to = 0.5, steps = 2000} drives a field (any
--             fvl.schedule kind with its options), a list of such tables drives several
--   optimiser SGD (momentum, weight decay) or AdamW; learning rate polynomial decay (power 2) to
--             0 over the run after a linear warm-up; the backbone's gradient norm clipped (5)
--   every `verbose` steps: verification with flip test on each val pack (.bin), logged to
--             <out>/metrics.jsonl and <out>/verification.csv and drawn as <out>/verification_curve.png
--             and <out>/loss_curve.png (each with its data in a .csv beside it)
--   every `save_every` steps and at the end: <out>/checkpoint (--resume continues from it and
--             reproduces the uninterrupted run bit for bit); at the end <out>/model.npz
--             (fvl.nn.load) and <out>/summary.json
--   the memory of a training step (the engine's tensor storage at the step's peak: mem_mb in the
--             train records, step_peak_mb and the process's peak RSS in summary.json)
--   a progress bar with images/s and ETA; Ctrl-C saves a checkpoint of the last finished step (the
--             optimiser update runs with Ctrl-C held; a press in the forward or backward rolls the
--             RNG and the head's state numbers back to the step's start);
--   preemption: SIGTERM (SLURM, a cancelled job), SIGUSR1 (what mpirun forwards to the ranks without
--             ending the job) and, under mpirun, SIGINT stop the run at the next step boundary (the
--             ranks agree on the step) with a checkpoint; the exit status is 128 + the signal's number
--             (143 SIGTERM, 130 SIGINT, 138 SIGUSR1, as a shell reports a process the signal ended)
--             and the last line says how to resume;
--   halt_at = N stops with a checkpoint after step N (to split a run across jobs).
--   under mpirun (several processes, fvl.dist): the head is sharded over the ranks (sample_rate < 1:
--             Partial FC), the data dealt to the ranks, the backbone's gradients all-reduced;
--             batch_size is per rank (as insightface's); rank 0 logs, verifies and writes the model;
--             checkpoints are one shard per rank (fvl.dist.save_checkpoint), resumed on as many ranks.
-- Every key is checked before any work (one line naming the key); --check stops there, after
-- opening the data and packs that exist and building the network and head, and prints the plan.
-- docs/training.md ("Training a face backbone") lists the data keys per kind.
fvl = fvl or require "fvl"   -- also from a stock lua5.4 (LUA_CPATH reaching fvl.so)
local cli = require "fvl.cli"
local parser = cli.parser("fvl scripts/train_face.lua",
  "Train a face backbone with a margin head by insightface's recipe, from a config file.")
parser:option("--config", "config file (a Lua table)", "scripts/configs/synthetic_mbf.lua")
parser:option("--out", "run directory (default: the config's output, else runs/<config name>)")
parser:option("--set", "override a config key: key=value (repeatable; dots for tables)"):count("*")
parser:option("--steps", "total steps (overrides the config's steps/epochs)"):convert(cli.integer("steps", 1))
parser:flag("--resume", "continue from <out>/checkpoint")
parser:flag("--check", "check the config (open the data and val packs when they are there, build the network and head), print the plan and exit")
local args = parser:parse(arg or {})

local PREFIX = "train_face.lua: "

local json = require "fvl.json"
local dist = fvl.dist     -- a world of one without a launcher; under mpirun: the ranks
local WORLD, RANK = 1, 0  -- set in main()
local function die(msg) error(PREFIX .. msg, 0) end   -- a user's mistake: one line (see the end of the file)

-- The script runs in phases, each a function below, in this order (main() at the end calls them):
--   config      resolve_config: the config file, FVL_TRAIN_SET and --set, every key checked
--   data        open_data, count_steps: the training loader and the val packs, the number of steps
--   model       build_model, build_optimiser, build_margins: network, head, optimiser, schedules
--   --check     print_plan, then stop
--   resume      resume: the checkpoint and the history logged before it
--   training    train: the loop (train_step, after_step), with verify and save; on_interrupt for Ctrl-C
--   summary     finish: the last checkpoint, the model and summary.json
-- From resume on, the run's state is one table R (see main()).

-- ------------------------------------------------------------------ config
local DEFAULTS = {
  name = nil, output = nil, seed = 1, threads = 0,   -- threads 0: as the program was started (-t, FVL_THREADS, the cores)
  data = { kind = "synthetic" },  -- synthetic: SYNTHETIC below; rec/folder: path (+ size, workers)
  val = {},                 -- extra .bin packs: {"lfw.bin", "cfp_fp.bin"}
  flip = true,
  network = "mobilefacenet", embedding_size = 512, dropout = 0, scale = 1,
  head = { kind = "arcface", s = 64, m = 0.5 },
  margin_schedule = nil,
  optimizer = "sgd", lr = 0.1, momentum = 0.9, weight_decay = 5e-4,
  lr_power = 2, warmup_steps = 0, clip_grad = 5,
  sample_rate = 1,          -- Partial FC (insightface's name): < 1 samples the head's classes each step
  batch_size = 128, epochs = nil, steps = 1000,
  verbose = 200, save_every = 500, log_every = 10,
}

-- the defaults of data.kind = "synthetic" (fvl.data.synthetic_faces{image = "rgb"})
local SYNTHETIC = { identities = 200, per_identity = 20, test_identities = 40, test_per_identity = 6,
                    size = 56, pairs = 400, seed = 1, nuisance = 1, illumination = 1, noise = 0.3 }
local DATA_KEYS = { synthetic = { kind = true }, rec = { kind = true, path = true, size = true, workers = true } }
for k in pairs(SYNTHETIC) do DATA_KEYS.synthetic[k] = true end
DATA_KEYS.folder = DATA_KEYS.rec
local OPTIONAL = { name = "string", output = "string", margin_schedule = "table", epochs = "number", halt_at = "number",
                   lr_steps = "table", lr_gamma = "number" }

-- insightface's arcface_torch config names that are spelled differently here: an unknown key with
-- one of these names gets the translation in its error (docs/training.md has the whole table)
local INSIGHTFACE = {
  num_epoch = "epochs", warmup_epoch = "warmup_steps (in steps: warmup_epoch × steps per epoch)",
  rec = "data = {kind = \"rec\", path = \".../train.rec\"} (a directory holding train.rec works too)",
  val_targets = "val = {\".../lfw.bin\", ...} (file names; a bare name such as \"lfw\" is looked up beside the .rec)",
  margin_list = "head = {kind = \"arcface\", s = 64, m = 0.5} (or kind = \"combined\" with m1, m2, m3)",
  frequent = "log_every", num_workers = "data.workers", num_classes = "nothing: the class count comes from the data",
  num_image = "nothing: the image count comes from the data", network_name = "network",
  resume = "the --resume flag", fp16 = "nothing: this CPU engine computes in float32",
  dali = "nothing: the .rec loader decodes in C threads (data.workers)",
  save_all_states = "nothing: checkpoints always hold the optimiser state",
  interclass_filtering_threshold = "nothing (not implemented)", loss = "head.kind",
  gradient_acc = "nothing (not implemented): raise batch_size", lr_step = "lr_steps", lr_steps_epoch = "lr_steps (in steps)",
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
    if type(v) == "table" and type(out[k]) == "table" and #v == 0 and next(v) ~= nil and k ~= "val"
        and not (v.kind ~= nil and v.kind ~= out[k].kind) then   -- another head or data kind: no default options
      out[k] = merge(out[k], v)
    else
      out[k] = v
    end
  end
  return out
end

local function parse_value(s)
  if s == "true" then return true elseif s == "false" then return false elseif s == "nil" then return nil end
  if s:find(",", 1, true) then   -- a list: --set lr_steps=100000,160000 --set val=lfw,cfp_fp,agedb_30
    local list = {}
    for item in (s .. ","):gmatch("%s*([^,]-)%s*,") do list[#list + 1] = parse_value(item) end
    return list
  end
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
  if t == cfg and DEFAULTS[leaf] == nil and cfg[leaf] == nil and not OPTIONAL[leaf] then
    die(string.format("%s '%s': unknown config key '%s'%s", where, item, leaf,
                      INSIGHTFACE[leaf] and (" (insightface's " .. leaf .. " is " .. INSIGHTFACE[leaf] .. " here)") or ""))
  end
  t[leaf] = parse_value(val)
end

local function exists(p) local f = io.open(p, "rb"); if f then f:close() end; return f ~= nil end
local function is_dir(p)
  local f = io.open(p, "rb")
  if not f then return false end
  local _, _, code = f:read(1)
  f:close()
  return code == 21   -- EISDIR
end

-- margin_schedule as a list: one table {field =, kind =, ...} or a list of them; none: {}
local function margin_schedules(cfg)
  return cfg.margin_schedule and (#cfg.margin_schedule > 0 and cfg.margin_schedule or { cfg.margin_schedule }) or {}
end

-- every key of the resolved config is checked here, before any work: a wrong name, type or
-- range is one line naming the key (the engine's own checks then never see a config mistake)
local function validate(cfg)
  local function bad(key, what, v)
    die(string.format("config: %s = %s (expected %s)", key, type(v) == "string" and ("'" .. v .. "'") or tostring(v), what))
  end
  for k, v in pairs(cfg) do
    if DEFAULTS[k] == nil and not OPTIONAL[k] then
      die(string.format("config: unknown config key '%s'%s", tostring(k),
                        INSIGHTFACE[k] and (" (insightface's " .. k .. " is " .. INSIGHTFACE[k] .. " here)") or ""))
    end
    local want = OPTIONAL[k] or type(DEFAULTS[k])
    if type(v) ~= want then bad(k, "a " .. want, v) end
  end
  local function int(key, v, lo) if math.type(v) ~= "integer" and not (type(v) == "number" and v == math.floor(v)) or v < lo then bad(key, "an integer >= " .. lo, v) end end
  local function num(key, v, lo, open) if type(v) ~= "number" or v ~= v or v < lo or (open and v == lo) then bad(key, string.format("a number %s %g", open and ">" or ">=", lo), v) end end
  int("seed", cfg.seed, 0); int("threads", cfg.threads, 0); int("embedding_size", cfg.embedding_size, 1)
  int("batch_size", cfg.batch_size, 1); int("steps", cfg.steps, 1); int("warmup_steps", cfg.warmup_steps, 0)
  int("verbose", cfg.verbose, 0); int("save_every", cfg.save_every, 0); int("log_every", cfg.log_every, 1)
  if cfg.epochs ~= nil then int("epochs", cfg.epochs, 1) end
  if cfg.halt_at ~= nil then int("halt_at", cfg.halt_at, 1) end
  num("lr", cfg.lr, 0, true); num("momentum", cfg.momentum, 0); num("weight_decay", cfg.weight_decay, 0)
  num("lr_power", cfg.lr_power, 0, true); num("clip_grad", cfg.clip_grad, 0, true); num("scale", cfg.scale, 0, true)
  if cfg.dropout < 0 or cfg.dropout >= 1 then bad("dropout", "a number in [0, 1)", cfg.dropout) end
  if not (cfg.sample_rate > 0 and cfg.sample_rate <= 1) then bad("sample_rate", "a number in (0, 1] (Partial FC; 1: off)", cfg.sample_rate) end
  if cfg.lr_steps ~= nil then
    local prev = 0
    for i, v in ipairs(cfg.lr_steps) do
      int("lr_steps[" .. i .. "]", v, prev + 1)
      prev = v
    end
    if #cfg.lr_steps == 0 then bad("lr_steps", "a list of increasing steps, e.g. {100000, 160000}", "{}") end
  end
  if cfg.lr_gamma ~= nil then num("lr_gamma", cfg.lr_gamma, 0, true) end
  if cfg.lr_gamma ~= nil and cfg.lr_steps == nil then bad("lr_gamma", "lr_steps beside it (lr_gamma is the step decay's factor)", cfg.lr_gamma) end
  if cfg.optimizer ~= "sgd" and cfg.optimizer ~= "adamw" then bad("optimizer", "sgd|adamw", cfg.optimizer) end
  local D = cfg.data
  if D.kind == "rec" and type(D.path) == "string" and is_dir(D.path) then   -- insightface's config.rec is the directory
    if not exists(D.path .. "/train.rec") then die(string.format("config: data.path = '%s' is a directory without train.rec", D.path)) end
    D.path = D.path .. "/train.rec"
  end
  for i, p in ipairs(cfg.val) do   -- insightface's val_targets: bare names beside the .rec
    if type(p) == "string" and not p:find("/", 1, true) and not p:match("%.bin$") and D.kind == "rec" and type(D.path) == "string" then
      cfg.val[i] = (D.path:match("^(.*)/[^/]*$") or ".") .. "/" .. p .. ".bin"
    end
  end
  if not DATA_KEYS[D.kind] then bad("data.kind", "synthetic|rec|folder", D.kind) end
  for k in pairs(D) do
    if not DATA_KEYS[D.kind][k] then die(string.format("config: unknown key data.%s for data.kind = '%s'", tostring(k), D.kind)) end
  end
  if D.kind == "synthetic" then
    for _, k in ipairs({ "identities", "per_identity", "test_identities", "test_per_identity", "size", "pairs" }) do
      int("data." .. k, D[k], (k == "per_identity" or k == "test_per_identity" or k == "test_identities") and 2 or 1)
    end
  else
    if type(D.path) ~= "string" then bad("data.path", "the " .. (D.kind == "rec" and ".rec file" or "image folder"), D.path) end
    if D.size ~= nil then int("data.size", D.size, 1) end
    if D.workers ~= nil then int("data.workers", D.workers, 0) end
  end
  for i, p in ipairs(cfg.val) do if type(p) ~= "string" then bad("val[" .. i .. "]", "a .bin file name", p) end end
  if type(cfg.head.kind) ~= "string" or type(fvl.loss[cfg.head.kind]) ~= "function" then
    bad("head.kind", "an fvl.loss head (arcface, cosface, ...)", cfg.head.kind)
  end
  local seen = {}
  for i, ms in ipairs(margin_schedules(cfg)) do
    local key = #cfg.margin_schedule > 0 and ("margin_schedule[" .. i .. "]") or "margin_schedule"
    if type(ms) ~= "table" then bad(key, "a table {field =, kind =, ...}", ms) end
    if ms.kind ~= nil and (type(ms.kind) ~= "string" or not fvl.schedule[ms.kind]) then
      bad(key .. ".kind", "an fvl.schedule (linear, cosine, ...)", ms.kind)
    end
    if ms.field ~= nil and type(ms.field) ~= "string" then bad(key .. ".field", "a head field name", ms.field) end
    local field = ms.field or "m"
    if seen[field] then bad(key .. ".field", "a field no other schedule drives", field) end
    seen[field] = true
  end
end

-- the config file, then FVL_TRAIN_SET, then --set, then --steps; checked; returns it and the run directory
local function resolve_config()
  local cfg = merge(DEFAULTS, load_config(args.config))
  for item in (os.getenv("FVL_TRAIN_SET") or ""):gmatch("[^;]+") do apply_set(cfg, item, "FVL_TRAIN_SET") end
  for _, item in ipairs(args.set or {}) do apply_set(cfg, item, "--set") end
  if args.steps then cfg.steps, cfg.epochs = args.steps, nil end
  if type(cfg.lr_steps) == "number" then cfg.lr_steps = { cfg.lr_steps } end   -- --set lr_steps=8000
  if type(cfg.val) == "string" then cfg.val = { cfg.val } end                  -- --set val=lfw
  if type(cfg.data) == "table" and (cfg.data.kind == nil or cfg.data.kind == "synthetic") then
    cfg.data.kind = "synthetic"
    for k, v in pairs(SYNTHETIC) do if cfg.data[k] == nil then cfg.data[k] = v end end
  end
  validate(cfg)
  cfg.name = cfg.name or args.config:match("([^/]+)%.lua$") or "run"
  return cfg, args.out or cfg.output or ("runs/" .. cfg.name)
end

-- ------------------------------------------------------------------ data
-- Each opener fills `data`: classes, image_size, steps_per_epoch, next() (the next training
-- batch, across epochs), set_position(step) (the loader where a run resumed at `step` was) and
-- val_packs (the .bin packs to verify on).
-- synthetic faces; the held-out identities become a verification pack <out>/synthetic_val.bin
-- (half same-identity pairs, half different), written once
local function open_synthetic(cfg, out, data)
  local D = cfg.data
  local d = fvl.data.synthetic_faces { image = "rgb", size = D.size, identities = D.identities,
                                       per_identity = D.per_identity, test_identities = D.test_identities,
                                       test_per_identity = D.test_per_identity, seed = D.seed,
                                       nuisance = D.nuisance, illumination = D.illumination, noise = D.noise }
  data.classes, data.image_size = d.train.classes, D.size
  local x = (d.train.x - 127.5) / 127.5
  local loader = fvl.data.loader({ x = x, labels = d.train.labels },
                                 { batch = cfg.batch_size, shuffle = true, seed = cfg.seed, drop_last = true,
                                   flip = cfg.flip, shard = WORLD > 1 })
  local steps_per_epoch = x:size(1) // WORLD // cfg.batch_size
  data.steps_per_epoch = steps_per_epoch
  data.next = function() return loader:next() or loader:next() end
  data.set_position = function(step)
    loader:reset(step // steps_per_epoch + 1)
    loader.pos = (step % steps_per_epoch) * cfg.batch_size
  end
  local packpath = out .. "/synthetic_val.bin"
  if RANK == 0 and not exists(packpath) then
    local ok, err = fvl.data.write_pairs_pack(packpath, d.test.x, d.test.labels, { pairs = D.pairs, seed = D.seed + 7919 })
    if not ok then die(tostring(err)) end
  end
  data.val_packs[#data.val_packs + 1] = packpath
end

-- an insightface .rec or an image folder (one directory per identity)
local function open_images(cfg, data)
  local D = cfg.data
  local set, err = fvl.data.images { [D.kind] = D.path, size = D.size and { D.size, D.size } or nil }
  if not set then die(tostring(err)) end
  data.classes, data.image_size = set.classes, set.size[2]
  local loader = set:loader { batch = cfg.batch_size, shuffle = true, seed = cfg.seed, drop_last = true,
                              flip = cfg.flip, workers = D.workers, shard = WORLD > 1 }
  local steps_per_epoch = set.n // WORLD // cfg.batch_size
  data.steps_per_epoch = steps_per_epoch
  data.next = function() return loader:next() or loader:next() end
  data.set_position = function(step)
    -- the same batches as before, the skipped ones not decoded (an MS1MV2 epoch is 45,000 batches)
    loader:reset(step // steps_per_epoch + 1, step % steps_per_epoch)
  end
end

-- the training data and the val packs; with --check, only what is cheap and there (the rest goes
-- into `notes`)
local function open_data(cfg, out, notes)
  local D = cfg.data
  local data = { val_packs = {} }
  if args.check and D.kind == "synthetic" then
    data.classes, data.image_size = D.identities, D.size
    data.steps_per_epoch = D.identities * D.per_identity // cfg.batch_size
  elseif args.check and not exists(D.path) then
    notes[#notes + 1] = string.format("data.path %s is not there: the data set was not opened", D.path)
    data.image_size = D.size or 112
  elseif D.kind == "synthetic" then
    open_synthetic(cfg, out, data)
  elseif D.kind == "rec" or D.kind == "folder" then
    open_images(cfg, data)
  else
    die(string.format("data.kind = '%s' (expected synthetic|rec|folder)", tostring(D.kind)))
  end
  for _, p in ipairs(cfg.val) do
    if exists(p) then
      local pack, err = fvl.data.bin_pack(p)
      if not pack then die(tostring(err)) end
      data.val_packs[#data.val_packs + 1] = p
    elseif args.check then
      notes[#notes + 1] = string.format("val pack %s is not there", p)
    else
      die(string.format("val pack %s: no such file", p))
    end
  end
  if data.steps_per_epoch and data.steps_per_epoch < 1 then
    die(string.format("fewer training images than one batch of %d%s", cfg.batch_size,
                      WORLD > 1 and string.format(" per rank (%d ranks)", WORLD) or ""))
  end
  return data
end

-- the run's length: epochs × steps per epoch, else steps; warm-up and halt_at must fall inside it
local function count_steps(cfg, data, notes)
  local total = cfg.epochs and data.steps_per_epoch and cfg.epochs * data.steps_per_epoch or cfg.steps
  if cfg.epochs and not data.steps_per_epoch then   -- --check without the data: the schedules are built for a stand-in length
    notes[#notes + 1] = string.format("epochs = %d: steps unknown without the data", cfg.epochs)
    total = math.max(total, cfg.warmup_steps + 1, cfg.halt_at or 1)
  end
  if cfg.warmup_steps >= total then die(string.format("config: warmup_steps = %d must be smaller than the %d training steps", cfg.warmup_steps, total)) end
  if cfg.halt_at and cfg.halt_at > total then die(string.format("config: halt_at = %d is after the last step %d", cfg.halt_at, total)) end
  return total
end

-- ------------------------------------------------------------------ network, head, optimiser
-- the backbone and the margin head (--check without the data builds the head with 2 classes)
local function build_model(cfg, data)
  local net, head
  local built, berr = pcall(function()
    if cfg.network == "mobilefacenet" or cfg.network == "mbf" then
      net = fvl.nn.mobilefacenet { dim = cfg.embedding_size, scale = cfg.scale, input_size = data.image_size }
    else
      local depth = tonumber(tostring(cfg.network):match("^r(%d+)$") or tostring(cfg.network):match("^iresnet(%d+)$"))
      if not depth then error(string.format("network = '%s' (expected mobilefacenet|r18|r34|r50|r100|r200)", tostring(cfg.network))) end
      net = fvl.nn.iresnet { depth = depth, dim = cfg.embedding_size, dropout = cfg.dropout, input_size = data.image_size }
    end
    local hopts = {}
    for k, v in pairs(cfg.head) do if k ~= "kind" then hopts[k] = v end end
    hopts.dim, hopts.classes = cfg.embedding_size, data.classes or 2
    if WORLD > 1 then
      if hopts.sharded == false then error("head.sharded = false: under mpirun this script shards the head over the ranks") end
      hopts.sharded = true
    end
    if cfg.sample_rate < 1 then
      if hopts.partial_fc ~= nil then error("head.partial_fc and sample_rate both set: say the rate once (sample_rate)") end
      hopts.partial_fc = cfg.sample_rate
    end
    if not fvl.loss[cfg.head.kind] then error(string.format("head.kind = '%s' is not an fvl.loss head", tostring(cfg.head.kind))) end
    head = fvl.loss[cfg.head.kind](hopts)
  end)
  if not built then die(tostring(berr)) end
  if WORLD > 1 then dist.broadcast_parameters(net, 0) end   -- one start on every rank
  return net, head
end

-- the optimiser over network and head, and the learning rate at a step (polynomial decay to 0
-- after the warm-up)
local function build_optimiser(cfg, net, head, total)
  local opt
  if cfg.optimizer == "sgd" then
    opt = fvl.optim.sgd({ net, head }, { lr = cfg.lr, momentum = cfg.momentum, weight_decay = cfg.weight_decay })
  elseif cfg.optimizer == "adamw" then
    opt = fvl.optim.adamw({ net, head }, { lr = cfg.lr, weight_decay = cfg.weight_decay })
  else
    die(string.format("optimizer = '%s' (expected sgd|adamw)", tostring(cfg.optimizer)))
  end
  local warmup = cfg.warmup_steps > 0 and cfg.warmup_steps or nil
  local lr_at
  if cfg.lr_steps then   -- step decay: × lr_gamma (0.1) at each of lr_steps (insightface's older recipes)
    for _, m in ipairs(cfg.lr_steps) do
      if m >= total then die(string.format("config: lr_steps has %d, not before the last step %d", m, total)) end
    end
    lr_at = fvl.schedule.multistep { from = cfg.lr, gamma = cfg.lr_gamma or 0.1, milestones = cfg.lr_steps, warmup = warmup }
  else
    lr_at = fvl.schedule.polynomial { from = cfg.lr, to = 0, steps = total, power = cfg.lr_power, warmup = warmup }
  end
  return opt, lr_at
end

-- margin schedules: {field = "m", kind = "linear", <the schedule's options>}, or a list of them
-- (one per head field: m, s, SphereFace's lambda, ...); returns a list of {field =, at = schedule}
local function build_margins(cfg, head)
  local margins = {}
  local ms_list = margin_schedules(cfg)
  for i, spec in ipairs(ms_list) do
    local key = #ms_list > 1 and ("margin_schedule[" .. i .. "]") or "margin_schedule"
    local ms = {}
    for k, v in pairs(spec) do if k ~= "field" and k ~= "kind" then ms[k] = v end end
    local field, kind = spec.field or "m", spec.kind or "linear"
    if type(head[field]) ~= "number" then
      die(string.format("%s.field = '%s': head %s has no number field %s", key, field, cfg.head.kind, field))
    end
    local okm, m = pcall(fvl.schedule[kind], ms)
    if not okm then die(key .. ": " .. tostring(m)) end
    margins[#margins + 1] = { field = field, at = m }
  end
  return margins
end

-- the learning-rate schedule in words
local function lr_text(cfg)
  if cfg.lr_steps then
    return string.format("× %g at steps %s", cfg.lr_gamma or 0.1, table.concat(cfg.lr_steps, ","))
  end
  return string.format("polynomial (power %g) to 0", cfg.lr_power)
end

-- --check: the plan, and what could not be checked
local function print_plan(cfg, data, net, total, notes)
  local D, classes, image_size, steps_per_epoch = cfg.data, data.classes, data.image_size, data.steps_per_epoch
  print(string.format("%s: config %s is valid", cfg.name, args.config))
  print(string.format("  data      %s%s: %s classes, %d×%d images, %s steps per epoch", D.kind,
                      D.path and (" " .. D.path) or "", classes and tostring(classes) or "?", image_size, image_size,
                      steps_per_epoch and tostring(steps_per_epoch) or "?"))
  print(string.format("  network   %s, %d parameters, embedding %d", net.name, net:num_parameters(), cfg.embedding_size))
  print(string.format("  head      %s%s%s%s", cfg.head.kind, classes and "" or " (built with 2 classes: the class count comes from the data)",
                      WORLD > 1 and string.format(", sharded over %d ranks", WORLD) or "",
                      cfg.sample_rate < 1 and string.format(", Partial FC sample_rate %g", cfg.sample_rate) or ""))
  print(string.format("  training  %s, lr %g %s, warm-up %d, clip %g, batch %d%s, %s, %d threads",
                      cfg.optimizer, cfg.lr, lr_text(cfg), cfg.warmup_steps, cfg.clip_grad, cfg.batch_size,
                      WORLD > 1 and string.format(" per rank × %d ranks", WORLD) or "",
                      (cfg.epochs and not steps_per_epoch) and (cfg.epochs .. " epochs") or (total .. " steps"), fvl.threads()))

  local val_packs = data.val_packs
  if D.kind == "synthetic" then table.insert(val_packs, 1, string.format("synthetic_val.bin (%d pairs of held-out identities)", D.pairs)) end
  print(string.format("  val       %s every %d steps", #val_packs > 0 and table.concat(val_packs, ", ") or "(none)", cfg.verbose))
  for _, n in ipairs(notes) do print("  note: " .. n) end
end

-- ------------------------------------------------------------------ resume, checkpoints, verification
-- --resume: the checkpoint's step, parameters and optimiser state; the loader where that step left
-- it; the metrics log opened for appending and its records up to the step read back (for the curves)
-- the logs cut back to the checkpoint's step: a run killed (kill -9, a lost node) after its last
-- checkpoint had logged steps that the resumed run logs again
local function truncate_logs(R)
  local function keep_lines(path, keep)
    local f = io.open(path, "rb")
    if not f then return end
    local text = f:read("a")
    f:close()
    local out, dropped = {}, 0
    for line in text:gmatch("[^\n]+") do
      if keep(line) then out[#out + 1] = line .. "\n" else dropped = dropped + 1 end
    end
    if dropped > 0 then
      local ok, err = fvl.sys.write_atomic(path, table.concat(out))
      if not ok then die(tostring(err)) end
    end
    return dropped
  end
  local dropped = keep_lines(R.out .. "/metrics.jsonl", function(line)
    local rec = json.decode(line)   -- a torn last line (nil) goes too
    return type(rec) == "table" and (type(rec.step) ~= "number" or rec.step <= R.step)
  end)
  keep_lines(R.out .. "/verification.csv", function(line)
    local st = tonumber(line:match("^(%d+),"))
    return st == nil and line:match("^step,") ~= nil or (st ~= nil and st <= R.step)
  end)
  if dropped and dropped > 0 then
    print(string.format("metrics.jsonl: dropped %d record(s) logged after step %d (the run stopped after its last checkpoint)",
                        dropped, R.step))
  end
end

local function resume(R)
  if args.resume then
    local ck, err
    if WORLD > 1 then
      local ok, e = pcall(dist.load_checkpoint, R.ckpath, { net = R.net, head = R.head, opt = R.opt })
      ck, err = ok and e or nil, not ok and e or nil
      if not ok and exists(R.ckpath .. "/checkpoint.json") then
        err = R.ckpath .. " is a checkpoint of one process: resume it without mpirun"
      end
    else
      ck, err = fvl.load_checkpoint(R.ckpath, { net = R.net, head = R.head, opt = R.opt })
      if not ck and exists(R.ckpath .. "/dist.json") then
        local h = dist.checkpoint_info(R.ckpath)
        err = string.format("%s was saved by %d ranks: resume with mpirun -np %d (or join it with fvl.dist.gather_checkpoint)",
                            R.ckpath, h.world_size, h.world_size)
      end
    end
    if not ck then die("--resume: " .. tostring(err)) end
    R.step = ck.step
    if RANK == 0 then print(string.format("resumed from %s at step %d", R.ckpath, R.step)) end
  end
  R.data.set_position(R.step)
  if RANK ~= 0 then return end   -- rank 0 logs, verifies and plots
  if args.resume then truncate_logs(R) end
  R.metrics = fvl.log.open(R.out .. "/metrics.jsonl", { run = R.cfg.name })
  R.val_records, R.loss_records = {}, {}
  for _, r in ipairs(fvl.log.read(R.out .. "/metrics.jsonl") or {}) do
    if r.step and r.step <= R.step then
      if r.kind == "val" then R.val_records[#R.val_records + 1] = r elseif r.kind == "train" then R.loss_records[#R.loss_records + 1] = r end
    end
  end
end

local function save(R, reason)
  local what = { net = R.net, head = R.head, opt = R.opt, step = R.step,
                 extra = { epoch = R.step // R.data.steps_per_epoch + 1, reason = reason, config = args.config } }
  if WORLD > 1 then dist.save_checkpoint(R.ckpath, what) else fvl.save_checkpoint(R.ckpath, what) end
end

-- one row of <out>/verification.csv (the header when the file is new)
local function append_verification_csv(path, step, r)
  local f = io.open(path, "r")
  local new = f == nil
  if f then f:close() end
  f = assert(io.open(path, "a"))
  if new then f:write("step,pack,acc,std,eer,auc,val_1e3,xnorm\n") end
  f:write(string.format("%d,%s,%.6f,%.6f,%.6f,%.6f,%s,%.4f\n", step, r.name, r.accuracy, r.std, r.eer, r.auc,
                        r.val_1e3 and string.format("%.6f", r.val_1e3.tar) or "", r.xnorm))
  f:close()
end

-- verification with flip test on every val pack: logged, appended to the CSV, the curves redrawn
local function verify(R)
  local net, image_size = R.net, R.data.image_size
  net:evaluate()
  for _, p in ipairs(R.data.val_packs) do
    local pack, err = fvl.data.bin_pack(p)
    if not pack then die(tostring(err)) end
    local r = fvl.eval.bin_pack(net, pack, { flip = true, batch = 64, size = { image_size, image_size },
                                             progress = true })
    local rec = { kind = "val", step = R.step, pack = r.name, acc = r.accuracy, std = r.std, eer = r.eer,
                  auc = r.auc, val_1e3 = r.val_1e3 and r.val_1e3.tar, val_1e3_std = r.val_1e3 and r.val_1e3.std,
                  xnorm = r.xnorm }
    R.metrics:write(rec)
    R.val_records[#R.val_records + 1] = rec
    io.stderr:write(string.format("\n[step %d] %s\n", R.step, r.line))
    append_verification_csv(R.out .. "/verification.csv", R.step, r)
  end
  net:train()
  if #R.val_records > 0 then
    fvl.plot.history(R.val_records, { x = "step", y = { "acc", "auc" }, file = R.out .. "/verification_curve.png",
                                      title = R.cfg.name .. ": verification (flip test)" })
  end
  if #R.loss_records > 1 then
    fvl.plot.history(R.loss_records, { x = "step", y = { "loss" }, file = R.out .. "/loss_curve.png", title = R.cfg.name .. ": loss" })
  end
end

-- ------------------------------------------------------------------ training
-- What a step changes besides the parameters and the optimiser: the engine RNG (dropout, ElasticFace's
-- margins), the network's buffers (BatchNorm's running statistics, updated in place by the training
-- forward) and the head's state numbers (CurricularFace's t, AdaFace's batch statistics, ...). A
-- Ctrl-C inside the forward or backward puts them back, so the checkpoint is the end of the last step.
local function snapshot(R)
  local st = { rng = fvl.rng_state(), head = {}, buffers = {} }
  for _, k in ipairs(R.head_state) do st.head[k] = R.head[k] end
  for i, b in ipairs(R.buffers) do st.buffers[i] = b[2]:clone() end
  return st
end

local function restore(R, st)
  fvl.set_rng_state(st.rng)
  for _, k in ipairs(R.head_state) do R.head[k] = st.head[k] end
  fvl.no_grad(function() for i, b in ipairs(R.buffers) do b[2]:copy(st.buffers[i]) end end)
end

-- one optimisation step (R.phase says where it is, for Ctrl-C); returns the loss and the gradient
-- norm before clipping. The memory of the step: the engine's tensor storage at its peak (everything
-- live: data, parameters, optimiser state, activations and gradients), the largest over the run kept.
local function train_step(R)
  local net, head, opt = R.net, R.head, R.opt
  R.before = snapshot(R)
  local batch = R.data.next()
  opt.lr = R.lr_at(R.step)
  for _, m in ipairs(R.margins) do head[m.field] = m.at(R.step) end
  R.phase = "forward"
  collectgarbage("collect")   -- the last step's tensors go now, not when the collector gets to them
  fvl.mem(true)
  opt:zero_grad()
  local loss = head(net(batch.x), batch.y)
  R.phase = "backward"
  loss:backward()
  -- the sharded head's loss is the mean over every rank's rows, so the ranks' gradients add up
  if WORLD > 1 then dist.allreduce_grads(net, { op = "sum" }) end
  R.phase = "update"
  -- the update runs with Ctrl-C held: a press lands after it, never half-way through
  local gnorm = fvl.sys.hold_interrupts(function()
    local g = fvl.optim.clip_grad_norm(net:parameters(), R.cfg.clip_grad)
    opt:step()
    R.step = R.step + 1
    R.phase = "idle"
    return g
  end)
  R.step_peak = fvl.mem().peak
  if R.step_peak > R.max_step_peak then R.max_step_peak = R.step_peak end
  return loss, gnorm
end

-- after a step: the progress bar, the train record every log_every steps, verification every
-- `verbose` steps, a periodic checkpoint; returns true where halt_at stops the run here
local function after_step(R, loss, gnorm)
  local cfg, step = R.cfg, R.step
  R.last_loss = loss:item()
  if RANK ~= 0 then   -- rank 0 logs and verifies; the others only take part in the checkpoints
    if cfg.save_every > 0 and step % cfg.save_every == 0 and step < R.total then save(R, "periodic") end
    return cfg.halt_at and step >= cfg.halt_at and step < R.total
  end
  R.bar:update(cfg.batch_size * WORLD, { loss = string.format("%.3f", R.last_loss), lr = string.format("%.4g", R.opt.lr) })
  if step % cfg.log_every == 0 or step == R.total then
    local rec = { kind = "train", step = step, loss = R.last_loss, lr = R.opt.lr, grad_norm = gnorm }
    for _, m in ipairs(R.margins) do rec[m.field] = R.head[m.field] end
    rec.mem_mb = R.step_peak / 2 ^ 20
    R.metrics:write(rec)
    R.loss_records[#R.loss_records + 1] = rec
  end
  if cfg.verbose > 0 and (step % cfg.verbose == 0 or step == R.total) then verify(R) end
  if cfg.save_every > 0 and step % cfg.save_every == 0 and step < R.total then save(R, "periodic") end
  return cfg.halt_at and step >= cfg.halt_at and step < R.total
end

-- an error out of the loop: Ctrl-C saves a checkpoint of the last finished step (the RNG, buffers
-- and head state rolled back to its end) and stops with one line; anything else goes on up
-- the command line that continues this run: this one with --resume
local function resume_command()
  local lo = 0
  while arg[lo - 1] do lo = lo - 1 end
  local words, has = {}, false
  for i = lo, #arg do
    local a = tostring(arg[i])
    has = has or (i > 0 and a == "--resume")
    words[#words + 1] = a:match("^[%w%-_./=,:@+]+$") and a or "'" .. a:gsub("'", "'\\''") .. "'"
  end
  if not has then words[#words + 1] = "--resume" end
  return (WORLD > 1 and string.format("mpirun -np %d ", WORLD) or "") .. table.concat(words, " ")
end

-- stopped by a signal (after a checkpoint of step R.step): one line on rank 0, then every rank exits with
-- 128 + the signal's number, as a shell reports a process the signal ended (under mpirun once the MPI
-- world is finalised, so the status is not an abort of the job)
local function stop_exit(R, signame, signum)
  if RANK == 0 then
    io.stdout:flush()
    io.stderr:write(string.format("%sstopped by %s at step %d of %d; checkpoint written to %s; resume with: %s\n",
                                  PREFIX, signame, R.step, R.total, R.ckpath, resume_command()))
  end
  if WORLD > 1 then dist.finalize() end
  io.stdout:flush(); io.stderr:flush()
  os.exit(128 + signum, true)
end

-- the stop signal at a step boundary: this rank's, under mpirun the ranks' largest (all-reduced every
-- step, one number), so every rank stops after the same step; nil, or its name and number
local function stop_requested(R)
  local _, n = fvl.sys.stop_signal()
  if WORLD > 1 then
    R.stop_buf = R.stop_buf or fvl.tensor({ 0 })
    R.stop_buf:fill(n or 0)
    dist.allreduce(R.stop_buf, "max")
    n = math.tointeger(R.stop_buf:item())
  end
  if n and n > 0 then return fvl.sys.signal_name(n), n end
end

local function on_interrupt(R, err)
  if tostring(err):find("interrupted", 1, true) then
    fvl.sys.abort_clear()
    if R.bar then R.bar:close() end
    if WORLD > 1 then   -- a second Ctrl-C: the ranks stop at different places, a collective save could wait forever
      die(string.format("interrupted at step %d (a second Ctrl-C stops at once, without a checkpoint): --resume "
                        .. "continues from the last one in %s", R.step, R.ckpath))
    end
    if R.phase == "update" then   -- only under an interpreter that does not hold interrupts
      die(string.format("interrupted during the update of step %d: the parameters may be half-updated, so no "
                        .. "checkpoint was written (the last one in %s stands)", R.step + 1, R.ckpath))
    end
    if R.phase ~= "idle" then restore(R, R.before) end
    R.net:train()   -- an interrupted verification leaves the network in evaluation mode
    save(R, "interrupted")
    stop_exit(R, "SIGINT (Ctrl-C)", 2)
  end
  error(err, 0)
end

-- the training loop from R.step to R.total (or halt_at: R.halted)
local function train(R)
  local cfg = R.cfg
  if RANK == 0 then
    print(string.format("%s: %s (%d parameters), head %s%s, %d classes, %d×%d images, batch %d%s, %d steps (%d per epoch), %s, %d threads",
                        cfg.name, R.net.name, R.net:num_parameters(), cfg.head.kind,
                        cfg.sample_rate < 1 and string.format(" (Partial FC %g)", cfg.sample_rate) or "",
                        R.data.classes, R.data.image_size, R.data.image_size, cfg.batch_size,
                        WORLD > 1 and string.format(" per rank × %d ranks (head sharded)", WORLD) or "",
                        R.total, R.data.steps_per_epoch, cfg.optimizer, fvl.threads()))
    R.bar = fvl.progress.new { total = (R.total - R.step) * cfg.batch_size * WORLD, title = cfg.name, unit = "img" }
  end
  R.phase, R.last_loss, R.halted = "idle", 0 / 0, false
  R.head_state = R.head.state_fields or { "t", "iter" }
  R.buffers = R.net:named_buffers()
  R.step_peak, R.max_step_peak = 0, 0
  -- a scheduler's stop (and, under mpirun, Ctrl-C: mpirun passes it on as SIGTERM, and a rank cannot
  -- stop in the middle of a collective) ends the run at the next step boundary with a checkpoint; in
  -- one process Ctrl-C stops at once (on_interrupt)
  fvl.sys.catch_stop(WORLD > 1 and { "TERM", "INT", "USR1" } or { "TERM", "USR1" })
  local ok, err = pcall(function()
    while R.step < R.total do
      R.stop_name, R.stop_num = stop_requested(R)
      if R.stop_name then return end
      local loss, gnorm = train_step(R)
      if after_step(R, loss, gnorm) then
        R.halted = true
        return
      end
    end
  end)
  fvl.sys.release_stop()
  if not ok then on_interrupt(R, err) end
  if R.bar then R.bar:close({ loss = string.format("%.3f", R.last_loss) }) end
  if R.stop_name then
    save(R, "stopped by " .. R.stop_name)
    stop_exit(R, R.stop_name, R.stop_num)
  end
end

-- ------------------------------------------------------------------ summary
-- halt_at: a checkpoint to continue from. Otherwise the final checkpoint, <out>/model.npz and
-- <out>/summary.json (the head's configuration as it ended, the last verification, memory, time)
local function finish(R)
  local cfg, net, head, step = R.cfg, R.net, R.head, R.step
  if R.halted then
    save(R, "halt")
    if RANK ~= 0 then return end
    print(string.format("halted at step %d of %d (halt_at); checkpoint in %s, continue with --resume", step, R.total, R.ckpath))
    return
  end
  save(R, "final")
  if RANK ~= 0 then return end
  fvl.nn.save(R.out .. "/model.npz", net, { meta = { input = { 3, R.data.image_size, R.data.image_size },
                                                      embedding = cfg.embedding_size, config = args.config } })
  local head_opts = {}   -- scheduled fields at their last value
  for k, v in pairs(cfg.head) do if k ~= "kind" then head_opts[k] = head[k] ~= nil and type(head[k]) ~= "table" and head[k] or v end end
  local last = {}
  for _, r in ipairs(R.val_records) do if r.step == step then last[r.pack] = { acc = r.acc, std = r.std, auc = r.auc, eer = r.eer } end end
  local summary = { name = cfg.name, config = args.config, network = net.name, head = cfg.head.kind, steps = step,
                    world_size = WORLD, sample_rate = cfg.sample_rate,
                    batch_size = cfg.batch_size, classes = R.data.classes, image_size = R.data.image_size,
                    final_loss = R.last_loss, verification = last, threads = fvl.threads(), head_options = head_opts,
                    step_peak_mb = R.max_step_peak > 0 and R.max_step_peak / 2 ^ 20 or nil,
                    peak_rss_mb = require("fvl.util").vmhwm_mb(), cpu_s = os.clock(),
                    load_avg = require("fvl.util").loadavg() }
  fvl.sys.write_atomic(R.out .. "/summary.json", json.encode(summary) .. "\n")
  print(string.format("done: %d steps, final loss %.4f; memory of a training step %s MB of tensors at its peak "
                      .. "(process peak RSS %.0f MB); run directory %s", step, R.last_loss,
                      summary.step_peak_mb and string.format("%.0f", summary.step_peak_mb) or "?", summary.peak_rss_mb, R.out))
end

-- ------------------------------------------------------------------ the script's body
local function main()
  WORLD, RANK = dist.size(), dist.rank()
  local cfg, out = resolve_config()
  if cfg.threads > 0 then fvl.threads(cfg.threads) end
  fvl.manual_seed(cfg.seed)
  if not args.check then fvl.sys.mkdirs(out) end
  if WORLD > 1 then dist.barrier() end
  local notes = {}   -- --check: what could not be checked
  local data = open_data(cfg, out, notes)
  local total = count_steps(cfg, data, notes)
  local net, head = build_model(cfg, data)
  local opt, lr_at = build_optimiser(cfg, net, head, total)
  local margins = build_margins(cfg, head)
  if args.check then return RANK == 0 and print_plan(cfg, data, net, total, notes) end
  -- the run's state: what the phases above built, the step, the logs (resume) and the loop's
  -- bookkeeping (train: bar, phase, before, last_loss, step_peak, max_step_peak, halted)
  local R = { cfg = cfg, out = out, ckpath = out .. "/checkpoint", data = data, total = total, net = net,
              head = head, opt = opt, lr_at = lr_at, margins = margins, step = 0 }
  resume(R)
  train(R)
  finish(R)
end

-- a user's mistake (die) ends as one line, anything else with its traceback
local ok, err = xpcall(main, function(e)
  if type(e) == "string" and e:sub(1, #PREFIX) == PREFIX then return e end
  return debug.traceback(tostring(e), 2)
end)
if not ok then error(err, 0) end
