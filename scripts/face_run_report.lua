-- Writes the README's "Training a face backbone" figures from train_face.lua run directories.
--
--   fvl scripts/face_run_report.lua --run-dir runs/synthetic_mbf_seeds --train [--seeds 1,2,3]
--                                   [--config scripts/configs/synthetic_mbf.lua] [--set k=v ...]
--   fvl scripts/face_run_report.lua --run-dir runs/a_seeds,runs/b_seeds [--readme README.md]
--                                   [--figure docs/img/face_run_verification.png] [--export docs/runs]
--   fvl scripts/face_run_report.lua --runs runs/a,runs/b [--readme README.md]
--
-- --run-dir DIR (or a comma list: one experiment each, e.g. one per margin head) takes the runs
-- DIR/seed<N> for the seeds of --seeds; with --train it first trains each seed of each DIR that has
-- no summary.json yet (fvl scripts/train_face.lua --config C --out DIR/seed<N> --set seed=N [--set
-- ...] [--steps N], one after the other; a run halted or interrupted is continued with --resume), so
-- one command makes the run directory and the figure from it. Without --train the runs must be there
-- (a directory of copied metrics.jsonl + summary.json, such as docs/runs/synthetic_mbf_seeds, is
-- enough). --runs names the run directories of one experiment instead.
--
-- It reads each run's summary.json and metrics.jsonl (and the head's margin and scale from the run's
-- checkpoint header, or summary.json's head_options) and prints a Markdown block: per experiment
-- the final verification accuracy (10-fold, flip test) as mean ± std over the seeds with min–max;
-- at every verification step each experiment's accuracy, AUC and EER as mean ± std (min–max) over
-- the seeds; the final losses, wall times and memory of a training step. With --readme the block
-- replaces the lines between "<!-- face-run:begin -->" and "<!-- face-run:end -->" of that file
-- (written atomically). --figure draws each experiment's accuracy over training (mean over the
-- seeds, dotted min and max; its data in a .csv beside it). --export DIR copies each run's
-- metrics.jsonl, summary.json (with head_options filled in), curves and train.log into
-- DIR/<experiment>/seed<N>/, the small record that README points at.
local cli = require "fvl.cli"
local parser = cli.parser("fvl scripts/face_run_report.lua",
  "Writes the README's \"Training a face backbone\" figures from train_face.lua run directories.")
parser:option("--runs", "run directories, comma separated"):convert(cli.list("runs"))
parser:option("--run-dir", "directory holding one run per seed, seed<N>/ (or a comma list of such directories)")
parser:option("--seeds", "seeds (with --run-dir)", "1,2,3"):convert(cli.list("seeds"))
parser:flag("--train", "train the seeds of --run-dir that are not finished (train_face.lua)")
parser:option("--config", "config for --train", "scripts/configs/synthetic_mbf.lua")
parser:option("--set", "extra key=value for train_face.lua (repeatable)"):count("*")
parser:option("--steps", "total steps for train_face.lua"):convert(cli.integer("steps", 1))
parser:option("--readme", "README file whose face-run block is replaced")
parser:option("--figure", "draw the experiments' verification accuracy over training into this picture")
parser:option("--export", "copy the runs' logs, summaries and curves into this directory")
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

-- the experiments: {name =, dirs = {run directories, one per seed}}
local experiments = {}
if args.run_dir then
  for _, s in ipairs(args.seeds) do
    if not math.tointeger(tonumber(s)) then die(string.format("seeds: expected integers, got '%s'", s)) end
  end
  for root in args.run_dir:gmatch("[^,]+") do
    local e = { root = root, name = root:match("([^/]+)/*$"), dirs = {} }
    for i, s in ipairs(args.seeds) do e.dirs[i] = root .. "/seed" .. s end
    experiments[#experiments + 1] = e
  end
else
  experiments[1] = { name = "runs", dirs = args.runs }
end

-- ------------------------------------------------------------------ training the missing seeds
if args.train then
  local exe = fvl.sys.exe()
  local script = (arg[0] or "scripts/face_run_report.lua"):gsub("face_run_report%.lua$", "train_face.lua")
  for _, e in ipairs(experiments) do
    fvl.sys.mkdirs(e.root)
    for i, s in ipairs(args.seeds) do
      local dir = e.dirs[i]
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
end

-- ------------------------------------------------------------------ reading the runs
-- the head's configuration numbers (margin, scale, ...) of a run: summary.json's head_options, else
-- the scalars of the run's checkpoint header (the head's number fields), without the sizes
local function head_options(dir, summary)
  if type(summary.head_options) == "table" then return summary.head_options end
  local f = io.open(dir .. "/checkpoint/checkpoint.json", "r")
  if not f then return nil end
  local h = json.decode(f:read("a"))
  f:close()
  local o = {}
  for k, v in pairs(h and h.head and h.head.scalars or {}) do
    if k ~= "classes" and k ~= "dim" then o[k] = v end
  end
  return o
end

local function read_runs(e)
  local runs = {}
  for _, dir in ipairs(e.dirs) do
    local summary = json.decode(read(dir .. "/summary.json"))
    if not summary then die(dir .. "/summary.json is not JSON") end
    local recs = fvl.log.read(dir .. "/metrics.jsonl") or {}
    local val, t0, t1 = {}, math.huge, -math.huge
    for _, r in ipairs(recs) do
      if r.time then t0, t1 = math.min(t0, r.time), math.max(t1, r.time) end
      if r.kind == "val" then val[r.step] = r end
    end
    summary.head_options = head_options(dir, summary)
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
  e.runs, e.steps, e.s0 = runs, steps, s0
  local o = s0.head_options or {}
  local parts = {}
  for _, k in ipairs { "s", "m", "m1", "m2", "m3", "t", "h" } do
    if type(o[k]) == "number" then parts[#parts + 1] = string.format("%s %g", k, o[k]) end
  end
  e.label = s0.head .. (#parts > 0 and (" (" .. table.concat(parts, ", ") .. ")") or "")
end
for _, e in ipairs(experiments) do read_runs(e) end
local E1 = experiments[1]
for _, e in ipairs(experiments) do
  local s, s0 = e.s0, E1.s0
  if s.network ~= s0.network or s.steps ~= s0.steps or s.batch_size ~= s0.batch_size or s.classes ~= s0.classes then
    die(string.format("%s (%s, %s steps) and %s (%s, %s steps) differ in more than the head", e.name, s.network,
                      s.steps, E1.name, s0.network, s0.steps))
  end
end

-- mean, sample std (n − 1), min, max of the runs' values of `key` at step `st`
local function moments(runs, key, st, scale)
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
local function stat(runs, key, st, scale, digits, short)
  local m, sd, lo, hi = moments(runs, key, st, scale)
  local f = "%." .. (digits or 2) .. "f"
  if not sd then return string.format(f, m) end
  if short then return string.format(f .. " ± " .. f, m, sd) end
  return string.format(f .. " ± " .. f .. " (" .. f .. "–" .. f .. ")", m, sd, lo, hi)
end

local lines = {}
local function add(s) lines[#lines + 1] = s end
local s0 = E1.s0
local nseeds = #E1.runs
local names = {}
for i, r in ipairs(E1.runs) do names[i] = r.dir:match("[^/]+$") end
add(string.format("Config `%s` (%s, %d identities at %d×%d, batch %d, %d steps), %s; %d run%s per head (%s), "
                  .. "verification on the held-out identities' pairs with flip test, 10 folds.",
                  s0.config, s0.network, s0.classes, s0.image_size, s0.image_size, s0.batch_size, s0.steps,
                  #experiments > 1 and "each margin head trained alike" or ("head " .. E1.label), nseeds,
                  nseeds > 1 and "s, one per training seed" or ", one seed: no spread over seeds yet",
                  table.concat(names, ", ")))
add("")
for _, e in ipairs(experiments) do
  local last = e.steps[#e.steps]
  if #e.runs > 1 and last then
    local m, sd, lo, hi = moments(e.runs, "acc", last, 100)
    local fm = moments(e.runs, "std", last, 100)
    add(string.format("- **%s: final accuracy %.2f ± %.2f %% over %d seeds (min–max %.2f–%.2f %%)**; AUC %s, EER %s %%; "
                      .. "mean 10-fold std within a run %.2f %%.", e.label, m, sd, #e.runs, lo, hi,
                      stat(e.runs, "auc", last, 1, 4), stat(e.runs, "eer", last, 100), fm))
  elseif last then
    add(string.format("- **%s: final accuracy %s %%** (one seed).", e.label, stat(e.runs, "acc", last, 100)))
  end
end
add("")
local head_row, rule = { "| step |" }, { "|---:|" }
for _, e in ipairs(experiments) do
  head_row[#head_row + 1] = string.format(" %s accuracy %% | AUC | EER %% |", e.s0.head)
  rule[#rule + 1] = "---:|---:|---:|"
end
add(table.concat(head_row))
add(table.concat(rule))
for _, st in ipairs(E1.steps) do
  local row = { string.format("| %d |", st) }
  for _, e in ipairs(experiments) do
    row[#row + 1] = string.format(" %s | %s | %s |", stat(e.runs, "acc", st, 100), stat(e.runs, "auc", st, 1, 3, true),
                                  stat(e.runs, "eer", st, 100, 1, true))
  end
  add(table.concat(row))
end
add("")
add(string.format("Mean ± std over the seeds (accuracy: with min–max).%s", #experiments > 1 and
                  " Same data, network, optimiser and schedule for every head; only the head differs." or ""))
add("")
for _, e in ipairs(experiments) do
  local walls, losses, mems = {}, {}, {}
  for i, r in ipairs(e.runs) do
    walls[i] = string.format("%.0f s", r.wall)
    losses[i] = string.format("%.3f", r.summary.final_loss)
    if r.summary.step_peak_mb then mems[#mems + 1] = string.format("%.0f MB", r.summary.step_peak_mb) end
    if r.summary.cpu_s then
      walls[i] = string.format("%s (%.0f CPU s, load %s at the end)", walls[i], r.summary.cpu_s, r.summary.load_avg or "?")
    end
  end
  add(string.format("- %s: final training loss %s; wall time %s on the 2-core machine shared with other jobs (an "
                    .. "upper bound)%s.", e.label, table.concat(losses, ", "), table.concat(walls, ", "),
                    #mems > 0 and ("; memory of a training step " .. table.concat(mems, ", ")) or ""))
end

-- ------------------------------------------------------------------ the picture
if args.figure then
  local series = {}
  for i, e in ipairs(experiments) do
    local xs, mean, lo, hi = {}, {}, {}, {}
    for _, st in ipairs(e.steps) do
      local m, _, a, b = moments(e.runs, "acc", st, 100)
      xs[#xs + 1], mean[#mean + 1], lo[#lo + 1], hi[#hi + 1] = st, m, a, b
    end
    series[#series + 1] = { x = xs, y = mean, label = e.label .. ", mean of " .. #e.runs, color = i, points = true }
    if #e.runs > 1 then
      series[#series + 1] = { x = xs, y = lo, label = "min / max", color = i, dash = "dotted" }
      series[#series + 1] = { x = xs, y = hi, color = i, dash = "dotted" }
    end
  end
  fvl.plot.lines { series = series, file = args.figure, xlabel = "training step", ylabel = "verification accuracy % (flip test)",
                   title = string.format("%s on synthetic faces: held-out identities over training (%d seeds)",
                                         s0.network, nseeds), legend = "bottom right", width = 900, height = 560 }
  add(string.format("\n![Verification accuracy on the held-out identities over training, mean and min–max over the "
                    .. "seeds, per margin head](%s)", args.figure))
end

-- ------------------------------------------------------------------ the record
if args.export then
  for _, e in ipairs(experiments) do
    for i, r in ipairs(e.runs) do
      local to = args.export .. "/" .. e.name .. "/" .. r.dir:match("([^/]+)/*$")
      fvl.sys.mkdirs(to)
      for _, f in ipairs { "metrics.jsonl", "verification.csv", "verification_curve.png", "verification_curve.csv",
                           "loss_curve.png", "loss_curve.csv", "train.log" } do
        local src = io.open(r.dir .. "/" .. f, "rb")
        if src then
          local bytes = src:read("a")
          src:close()
          local ok, err = fvl.sys.write_atomic(to .. "/" .. f, bytes)
          if not ok then die(tostring(err)) end
        end
      end
      local ok, err = fvl.sys.write_atomic(to .. "/summary.json", json.encode(r.summary) .. "\n")
      if not ok then die(tostring(err)) end
    end
  end
  add(string.format("\nEach run's metrics.jsonl, summary.json, train.log and curves are kept in `%s/`.", args.export))
end

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
