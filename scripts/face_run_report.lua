-- Writes the README's "Training a face backbone" figures from train_face.lua run directories.
--
--   fvl scripts/face_run_report.lua --runs runs/synthetic_mbf_seed1[,runs/..._seed2] [--readme README.md]
--
-- Reads each run's summary.json and metrics.jsonl and prints a Markdown block: the verification
-- accuracy (10-fold, flip test) ± its fold std, AUC and EER at every verification step, as the
-- mean over the runs (seeds) with the spread (min–max) when there are several, the final loss and
-- the wall time of the run. With --readme the block replaces the lines between
-- "<!-- face-run:begin -->" and "<!-- face-run:end -->" of that file (written atomically).
local cli = require "fvl.cli"
local parser = cli.parser("fvl scripts/face_run_report.lua",
  "Writes the README's \"Training a face backbone\" figures from train_face.lua run directories.")
parser:option("--runs", "run directories, comma separated"):convert(cli.list("runs")):args(1)
parser:option("--readme", "README file whose face-run block is replaced")
local args = parser:parse(arg or {})
local json = require "fvl.json"

local function read(path)
  local f = io.open(path, "r")
  if not f then error("face_run_report.lua: cannot read " .. path, 0) end
  local s = f:read("a")
  f:close()
  return s
end

local runs = {}
for _, dir in ipairs(args.runs) do
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
local steps = {}
for st in pairs(runs[1].val) do steps[#steps + 1] = st end
table.sort(steps)
local function stat(key, st, scale, digits)
  local xs = {}
  for _, r in ipairs(runs) do if r.val[st] then xs[#xs + 1] = r.val[st][key] * scale end end
  local m, lo, hi = 0, math.huge, -math.huge
  for _, x in ipairs(xs) do m, lo, hi = m + x, math.min(lo, x), math.max(hi, x) end
  m = m / #xs
  local f = "%." .. (digits or 2) .. "f"
  if #xs > 1 then return string.format(f .. " (" .. f .. "–" .. f .. ")", m, lo, hi), m end
  return string.format(f, m), m
end

local lines = {}
local function add(s) lines[#lines + 1] = s end
add(string.format("Default config `%s` (%s, head %s, %d identities at %d×%d, batch %d, %d steps); %d run%s (%s), "
                  .. "verification on the held-out identities' pairs with flip test, 10 folds:",
                  s0.config, s0.network, s0.head, s0.classes, s0.image_size, s0.image_size, s0.batch_size, s0.steps,
                  #runs, #runs > 1 and "s, mean (min–max) over seeds" or ", one seed: no spread over seeds yet",
                  (function() local t = {} for i, r in ipairs(runs) do t[i] = r.dir:match("[^/]+$") end return table.concat(t, ", ") end)()))
add("")
add("| step | accuracy % | fold std % | AUC | EER % |")
add("|---:|---:|---:|---:|---:|")
for _, st in ipairs(steps) do
  add(string.format("| %d | %s | %s | %s | %s |", st, (stat("acc", st, 100)), (stat("std", st, 100)), (stat("auc", st, 1, 4)),
                    (stat("eer", st, 100))))
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
  local b, e = text:find("<!%-%- face%-run:begin %-%->\n"), text:find("<!%-%- face%-run:end %-%->")
  if not b or not e then error("face_run_report.lua: " .. args.readme .. " has no face-run:begin/end markers", 0) end
  local _, bend = text:find("<!%-%- face%-run:begin %-%->\n")
  text = text:sub(1, bend) .. block .. "\n" .. text:sub(e)
  local ok, err = fvl.sys.write_atomic(args.readme, text)
  if not ok then error("face_run_report.lua: " .. tostring(err), 0) end
end
