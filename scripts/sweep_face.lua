-- sweep_face.lua — sweep scripts/train_face.lua's config keys (a margin, a scale, the learning rate,
-- the head) with fvl.sweep: every trial is one train_face.lua run in its own process.
--
--   fvl scripts/sweep_face.lua --grid head.m=0.3,0.4,0.5 [--grid head.s=32,64] [--config FILE]
--                              [--set key=value ...] [--steps N] [--workers 2] [--store runs/x.sqlite]
--                              [--metric acc|auc|eer]
--
-- Each trial runs `train_face.lua --config FILE --out <store>.runs/trial-<id> --set ... --set
-- <grid key>=<value>` (threads: the sweep's share per worker), reports every verification it logs
-- (metrics.jsonl: step, acc, auc, eer of the first val pack — synthetic_val.bin for the synthetic
-- data) and returns the last one with the final loss. Run it again to resume (finished trials are
-- kept; a trial's run directory holds its checkpoints, logs and model.npz). Prints the leaderboard
-- and writes <store>.csv and the plots (fvl.sweep.plot). docs/sweeps.md ("Sweeping train_face.lua").
fvl = fvl or require "fvl"   -- also from a stock lua5.4 (LUA_CPATH reaching fvl.so)
local cli = require "fvl.cli"
local parser = cli.parser("fvl scripts/sweep_face.lua",
  "Sweep scripts/train_face.lua's config keys (a margin, a scale, the learning rate, the head) with fvl.sweep.")
parser:option("--grid", "a swept key and its values: key=v1,v2,... (repeatable; the grid is their product)"):count("+")
parser:option("--config", "train_face.lua's config file", "scripts/configs/synthetic_mbf.lua")
parser:option("--set", "a fixed override for every trial: key=value (repeatable)"):count("*")
parser:option("--steps", "training steps of every trial"):convert(cli.integer("steps", 1))
parser:option("--workers", "trials run at once", "2"):convert(cli.integer("workers", 1))
parser:option("--store", "the sweep's store (SQLite file or postgresql://...)", "runs/sweep_face.sqlite")
parser:option("--metric", "the verification metric that ranks the trials", "acc"):choices { "acc", "auc", "eer" }
local opt = parser:parse(arg or {})

-- the grid: key -> list of values (numbers where they read as numbers); nil, message for a bad --grid
local function read_grid()
  local space = {}
  for _, g in ipairs(opt.grid) do
    local key, vals = g:match("^%s*([%w_%.]+)%s*=%s*(.-)%s*$")
    if not key or vals == "" then return nil, string.format("--grid '%s': expected key=v1,v2,...", g) end
    if space[key] then return nil, string.format("--grid %s given twice", key) end
    local list = {}
    for v in (vals .. ","):gmatch("%s*([^,]-)%s*,") do list[#list + 1] = math.tointeger(tonumber(v)) or tonumber(v) or v end
    space[key] = list
  end
  return space
end
local space, grid_err = read_grid()
if not space then error("sweep_face.lua: " .. grid_err, 0) end   -- a user's mistake: one line
local here = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
local TRAIN = here .. "/train_face.lua"
local runs_dir = (opt.store:match("^postgresql:") and "runs/sweep_face" or opt.store:gsub("%.sqlite$", "")) .. ".runs"

-- this program and its options as it was started (fvl, or lua5.4 -l fvl), then train_face.lua
local function command(cfg, info, out)
  local argv = {}
  local lo = 0
  while arg[lo - 1] do lo = lo - 1 end
  for i = lo, -1 do argv[#argv + 1] = arg[i] end
  if #argv == 0 then argv[1] = "fvl" end
  for _, a in ipairs({ TRAIN, "--config", opt.config, "--out", out, "--set", "threads=" .. info.threads }) do argv[#argv + 1] = a end
  for _, s in ipairs(opt.set) do argv[#argv + 1] = "--set"; argv[#argv + 1] = s end
  if opt.steps then argv[#argv + 1] = "--steps"; argv[#argv + 1] = tostring(opt.steps) end
  local keys = {}
  for k in pairs(space) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do argv[#argv + 1] = "--set"; argv[#argv + 1] = k .. "=" .. tostring(cfg[k]) end
  return argv
end

-- the verification records of a run's metrics.jsonl for its first pack, from position `seen` on
local function val_records(out, seen)
  local recs = fvl.log.read(out .. "/metrics.jsonl") or {}
  local list, pack = {}, nil
  for _, r in ipairs(recs) do
    if r.kind == "val" then
      pack = pack or r.pack
      if r.pack == pack then list[#list + 1] = r end
    end
  end
  local new = {}
  for i = seen + 1, #list do new[#new + 1] = list[i] end
  return new, #list
end

local function trial(cfg, report, info)
  local out = string.format("%s/trial-%d", runs_dir, info.id)
  fvl.sys.mkdirs(out)
  local log = out .. "/train_face.log"
  local argv = command(cfg, info, out)
  local pid = fvl.sys.spawn(fvl.sys.exe(), argv, nil, log)
  local seen, last, code, sig = 0, nil, nil, nil
  local ok, err = pcall(function()
    while true do
      local done
      done, code, sig = fvl.sys.poll(pid)
      local new
      new, seen = val_records(out, seen)
      for _, r in ipairs(new) do
        last = r
        report { step = r.step, acc = r.acc, auc = r.auc, eer = r.eer }
      end
      if done then return end
      fvl.sys.sleep(0.2)
    end
  end)
  if not ok then   -- stopped (pruned, Ctrl-C, an error): the training goes with the trial
    pcall(fvl.sys.kill, pid, "KILL")
    error(err, 0)
  end
  if code ~= 0 then
    local f = io.open(log, "rb")
    local text = f and f:read("a") or ""
    if f then f:close() end
    error(string.format("train_face.lua ended with %s (log %s):\n%s", sig and ("signal " .. tostring(sig)) or ("status " .. tostring(code)),
                        log, text:sub(-600)), 0)
  end
  if not last then error("train_face.lua logged no verification (verbose = 0?): " .. out, 0) end
  local f = io.open(out .. "/summary.json", "rb")
  local summary = f and fvl.json.decode(f:read("a")) or {}
  if f then f:close() end
  return { acc = last.acc, auc = last.auc, eer = last.eer, loss = summary.final_loss }
end

local results = fvl.sweep {
  name = "sweep_face", store = opt.store, space = space, trial = trial,
  metric = opt.metric, mode = opt.metric == "eer" and "min" or "max", workers = opt.workers, leaderboard = false,
}
if not fvl.sweep.is_worker() then
  local store = results.store
  fvl.sweep.leaderboard(store)
  local csv = (store:match("^postgresql:") and "runs/sweep_face" or store:gsub("%.sqlite$", "")) .. ".csv"
  assert(fvl.sweep.csv(store, csv))
  print("csv: " .. csv .. "; runs: " .. runs_dir .. "/trial-<id>")
  local files, msg = fvl.sweep.plot(store, { best = 4 })
  print(files and ("plots: " .. table.concat(files, ", ")) or ("plots skipped: " .. tostring(msg)))
end
