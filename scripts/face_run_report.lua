-- Writes the README's "Training a face backbone" figures from train_face.lua run directories.
--
--   fvl scripts/face_run_report.lua --run-dir runs/synthetic_mbf_seeds --train [--seeds 1,2,3]
--                                   [--config scripts/configs/synthetic_mbf.lua] [--readme README.md]
--   fvl scripts/face_run_report.lua --runs runs/a,runs/b [--readme README.md]
--
-- --run-dir DIR takes the runs DIR/seed<N> for the seeds of --seeds; with --train it first trains
-- each seed that has no summary.json yet (fvl scripts/train_face.lua --config C --out DIR/seed<N>
-- --set seed=N [--set ...] [--steps N], one after the other; a run halted or interrupted is
-- continued with --resume), so one command makes the run directory and the figure from it.
-- Without --train the runs must be there (a directory of copied metrics.jsonl + summary.json, such
-- as docs/runs/synthetic_mbf_seeds, is enough). --runs names run directories instead.
--
-- It reads each run's summary.json and metrics.jsonl and prints a Markdown block: the final
-- verification accuracy (10-fold, flip test) as mean ± std over the seeds with min–max, and at
-- every verification step the accuracy, its 10-fold std (mean over seeds), AUC and EER as
-- mean ± std (min–max) over the seeds; the final losses and wall times. With --readme the block
-- replaces the lines between "<!-- face-run:begin -->" and "<!-- face-run:end -->" of that file
-- (written atomically).
local cli = require "fvl.cli"
local parser = cli.parser("fvl scripts/face_run_report.lua",
  "Writes the README's \"Training a face backbone\" figures from train_face.lua run directories.")
parser:option("--runs", "run directories, comma separated"):convert(cli.list("runs"))
parser:option("--run-dir", "directory holding one run per seed, seed<N>/")
parser:option("--seeds", "seeds (with --run-dir)", "1,2,3"):convert(cli.list("seeds"))
parser:flag("--train", "train the seeds of --run-dir that are not finished (train_face.lua)")
parser:option("--config", "config for --train", "scripts/configs/synthetic_mbf.lua")
parser:option("--set", "extra key=value for train_face.lua (repeatable)"):count("*")
parser:option("--steps", "total steps for train_face.lua"):convert(cli.integer("steps", 1))
parser:option("--readme", "README file whose face-run block is replaced")
local args = parser:parse(arg or {})
local json = require "fvl.json"
local function die(msg) error("face_run_report.lua: " .. msg, 0) end

if (args.runs == nil) == (args.run_dir == nil) then die("give exactly one of --runs and --run-dir") end
if args.train and not args.run_dir then die("--train needs --run-dir") end

local function read(path)
  local f = io.open(path, "r")
  if not f then die("cannot read " .. path) end
  local s = f:read("a")
  f:close()
  return s
end
local function exists(path)
  local f = io.open(path, "r")
  if f then f:close() end
  return f ~= nil
end

local dirs = args.runs or {}
if args.run_dir then
  for i, s in ipairs(args.seeds) do
    if not math.tointeger(tonumber(s)) then die(string.format("seeds: expected integers, got '%s'", s)) end
    dirs[i] = args.run_dir .. "/seed" .. s
  end
end

-- ------------------------------------------------------------------ training the missing seeds
if args.train then
  fvl.sys.mkdirs(args.run_dir)
  local exe = fvl.sys.exe()
  local script = (arg[0] or "scripts/face_run_report.lua"):gsub("face_run_report%.lua$", "train_face.lua")
  for i, s in ipairs(args.seeds) do
    local dir = dirs[i]
    if exists(dir .. "/summary.json") then
      io.stderr:write(string.format("face_run_report: seed %s already done (%s)\n", s, dir))
    else
      local argv = { exe, script, "--config", args.config, "--out", dir, "--set", "seed=" .. s }
      for _, kv in ipairs(args.set or {}) do argv[#argv + 1] = "--set"; argv[#argv + 1] = kv end
      if args.steps then argv[#argv + 1] = "--steps"; argv[#argv + 1] = tostring(args.steps) end
      if exists(dir .. "/checkpoint/checkpoint.json") then argv[#argv + 1] = "--resume" end
      fvl.sys.mkdirs(dir)
      io.stderr:write(string.format("face_run_report: training seed %s: %s\n", s, table.concat(argv, " ", 2)))
      local t0 = fvl.sys.time()
      local pid = fvl.sys.spawn(exe, argv, nil, dir .. "/train.log")
      local done, code, sig
      repeat
        fvl.sys.sleep(0.2)
        done, code, sig = fvl.sys.poll(pid)
      until done
      if code ~= 0 or sig or not exists(dir .. "/summary.json") then
        die(string.format("training seed %s failed (%s); see %s/train.log", s, sig or ("exit " .. tostring(code)), dir))
      end
      io.stderr:write(string.format("face_run_report: seed %s done in %.0f s\n", s, fvl.sys.time() - t0))
    end
  end
end

-- ------------------------------------------------------------------ reading the runs
local runs = {}
for _, dir in ipairs(dirs) do
  local summary = json.decode(read(dir .. "/summary.json"))
  local recs = fvl.log.read(dir .. "/metrics.jsonl") or {}
  local val, t0, t1 = {}, math.huge, -math.huge
  for _, r in ipairs(recs) do
    if r.time then t0, t1 = math.min(t0, r.time), math.max(t1, r.time) end
    if r.kind == "val" then val[r.step] = r end
  end
  runs[#runs + 1] = { dir = dir, summary = summary, val = val, wall = t1 - t0 }
end

local s0 = runs[1].summary
for _, r in ipairs(runs) do
  local s = r.summary
  if s.config ~= s0.config or s.steps ~= s0.steps or s.network ~= s0.network or s.head ~= s0.head then
    die(string.format("%s (%s, %s, %s steps) is not the same experiment as %s (%s, %s, %s steps)", r.dir, s.config,
                      s.head, s.steps, runs[1].dir, s0.config, s0.head, s0.steps))
  end
end
local steps = {}
for st in pairs(runs[1].val) do steps[#steps + 1] = st end
table.sort(steps)

-- mean, sample std (n − 1), min, max of the runs' values of `key` at step `st`
local function moments(key, st, scale)
  local xs = {}
  for _, r in ipairs(runs) do
    if not r.val[st] then die(string.format("%s has no verification at step %d", r.dir, st)) end
    xs[#xs + 1] = r.val[st][key] * scale
  end
  local m, lo, hi = 0, math.huge, -math.huge
  for _, x in ipairs(xs) do m, lo, hi = m + x, math.min(lo, x), math.max(hi, x) end
  m = m / #xs
  local ss = 0
  for _, x in ipairs(xs) do ss = ss + (x - m) ^ 2 end
  return m, #xs > 1 and math.sqrt(ss / (#xs - 1)) or nil, lo, hi
end
local function stat(key, st, scale, digits, plain)
  local m, sd, lo, hi = moments(key, st, scale)
  local f = "%." .. (digits or 2) .. "f"
  if not sd then return string.format(f, m) end
  if plain then return string.format(f, m) end
  return string.format(f .. " ± " .. f .. " (" .. f .. "–" .. f .. ")", m, sd, lo, hi)
end

local names = {}
for i, r in ipairs(runs) do names[i] = r.dir:match("[^/]+$") end
local lines = {}
local function add(s) lines[#lines + 1] = s end
local last = steps[#steps]
add(string.format("Default config `%s` (%s, head %s, %d identities at %d×%d, batch %d, %d steps); %d run%s (%s), "
                  .. "verification on the held-out identities' pairs with flip test, 10 folds.",
                  s0.config, s0.network, s0.head, s0.classes, s0.image_size, s0.image_size, s0.batch_size, s0.steps,
                  #runs, #runs > 1 and "s, one per training seed" or ", one seed: no spread over seeds yet",
                  table.concat(names, ", ")))
if #runs > 1 and last then
  local m, sd, lo, hi = moments("acc", last, 100)
  local fm = moments("std", last, 100)
  add(string.format("**Final accuracy %.2f ± %.2f %% over %d seeds (min–max %.2f–%.2f %%)**; mean 10-fold std within a run %.2f %%.",
                    m, sd, #runs, lo, hi, fm))
end
add("")
if #runs > 1 then
  add("| step | accuracy % (mean ± std over seeds, min–max) | 10-fold std % | AUC | EER % |")
else
  add("| step | accuracy % | fold std % | AUC | EER % |")
end
add("|---:|---:|---:|---:|---:|")
for _, st in ipairs(steps) do
  add(string.format("| %d | %s | %s | %s | %s |", st, stat("acc", st, 100), stat("std", st, 100, 2, true),
                    stat("auc", st, 1, 4), stat("eer", st, 100)))
end
add("")
local walls, losses = {}, {}
for i, r in ipairs(runs) do
  walls[i] = string.format("%.0f s", r.wall)
  losses[i] = string.format("%.3f", r.summary.final_loss)
end
add(string.format("Final training loss %s; wall time %s on a 2-core machine shared with other jobs (an upper "
                  .. "bound). Curves: `%s/verification_curve.png`, `loss_curve.png`.",
                  table.concat(losses, ", "), table.concat(walls, ", "), runs[1].dir))
local block = table.concat(lines, "\n")
print(block)

if args.readme then
  local text = read(args.readme)
  local _, bend = text:find("<!%-%- face%-run:begin %-%->\n")
  local e = text:find("<!%-%- face%-run:end %-%->")
  if not bend or not e or e < bend then die(args.readme .. " has no face-run:begin/end markers") end
  text = text:sub(1, bend) .. block .. "\n" .. text:sub(e)
  local ok, err = fvl.sys.write_atomic(args.readme, text)
  if not ok then die(tostring(err)) end
end
