-- report_compare.lua — the Markdown table of a compare_losses run directory, written into a
-- marked section of a document (README.md, docs/experiments.md), so documented numbers are
-- always what the code produced.
--   fvl scripts/report_compare.lua RUN_DIR                      -- print the Markdown table
--   fvl scripts/report_compare.lua RUN_DIR --file README.md --section default
--       replaces the lines between "<!-- results:default -->" and "<!-- /results:default -->"
-- Cells are mean ± std over the run's seeds (min–max with --range); "collapsed" is the number
-- of seeds whose Fashion-MNIST embedding collapsed (fvl.eval.diagnose). Columns without any
-- value (a part the run skipped) are left out unless named in --columns.
local fvl = fvl or require "fvl"
local cli = require "fvl.cli"
local json = fvl.json

local parser = cli.parser("fvl scripts/report_compare.lua",
  "The Markdown table of a compare_losses run directory (mean ± std over seeds), printed or written " ..
  "into a marked section of a document.")
parser:argument("run_dir", "a directory written by scripts/compare_losses.lua; several: a recipe " ..
                "ablation table (one row per head and run, the recipe and the collapse diagnostics)"):args "+"
parser:option("--file", "document to update in place (with --section)")
parser:option("--section", "name of the marked section to replace")
parser:option("--columns", "comma-separated metric keys (default: accuracy, collapse and verification columns)")
parser:flag("--range", "spread as min–max instead of ± std")
parser:option("--heads", "only these heads (keys, comma separated), in the runs' order"):convert(cli.list("heads"))
parser:flag("--totals", "with several run directories: also one row per run (collapsed tasks, tasks that lost a " ..
            "class or fell below 50%, mean accuracy over its heads)")
local opt = parser:parse(arg or {})
if (opt.file == nil) ~= (opt.section == nil) then parser:error("--file and --section go together") end

local function read(path)
  local f, err = io.open(path, "r")
  if not f then error("report_compare: cannot read " .. tostring(err), 0) end
  local s = f:read("a")
  f:close()
  return s
end

local function load(dir)
  local R = json.decode(read(dir .. "/results.json"))
  if type(R) ~= "table" or type(R.summary) ~= "table" or type(R.metrics) ~= "table" then
    error("report_compare: " .. dir .. "/results.json is not a compare_losses result (no summary/metrics)", 0)
  end
  return R
end
local dirs = opt.run_dir
local R = load(dirs[1])
-- the heads of a run's summary that the table shows
local function shown(summary)
  if not opt.heads then return summary end
  local want, out = {}, {}
  for _, k in ipairs(opt.heads) do want[k] = true end
  for _, h in ipairs(summary) do if want[h.key] then out[#out + 1] = h end end
  return out
end
local metric = {}
for _, m in ipairs(R.metrics) do
  m.label = m.label:gsub("|x|", "‖x‖"):gsub("|", "/")   -- a table cell cannot hold "|"
  metric[m.key] = m
end

local cols = {}
if opt.columns then
  for k in opt.columns:gmatch("[^,]+") do
    if not metric[k] then
      local known = {}
      for _, m in ipairs(R.metrics) do known[#known + 1] = m.key end
      error("report_compare: unknown column '" .. k .. "' (expected " .. table.concat(known, ", ") .. ")", 0)
    end
    cols[#cols + 1] = k
  end
else
  local default = #dirs > 1 and { "fmnist_acc", "fmnist_collapsed", "fmnist_min_recall", "fmnist_norm_mean",
                                  "fmnist_mrl_x", "fmnist_min_centre_angle", "verif_acc", "tar_at_far_1e-3" }
                or { "fmnist_acc", "fmnist_collapsed", "verif_acc", "tar_at_far_1e-3", "tar_at_far_1e-2", "eer" }
  for _, k in ipairs(default) do
    for _, h in ipairs(R.summary) do
      if h[k] then cols[#cols + 1] = k; break end
    end
  end
end

local function cell(s, m)
  if not s then return "–" end
  if m.key:match("collapsed$") then return string.format("%d/%d", math.floor(s.mean * s.n + 0.5), s.n) end
  local f = m.percent and 100 or 1
  local fmt = "%." .. (m.digits or 3) .. "f"
  if s.n == 1 then return string.format(fmt, f * s.mean) end
  if opt.range then return string.format(fmt .. " (" .. fmt .. "–" .. fmt .. ")", f * s.mean, f * s.min, f * s.max) end
  return string.format(fmt .. " ± " .. fmt, f * s.mean, f * s.std)
end

local function fmt_cell(s, m)
  if not s then return "–" end
  if m.key:match("_norm_mean$") then
    return string.format("%.3g (%.3g–%.3g)", s.mean, s.min, s.max)
  end
  return nil
end

-- the run's command with every recipe option spelled out (values from its settings; a run made
-- before an option existed had the value given here), so it reproduces the run whatever the
-- script's defaults are now
local function full_command(S)
  local cmd = tostring(S.command)
  local given = {}
  for flag in cmd:gmatch("%s(%-%-[%w%-]+)") do given[flag] = true end
  local fm_s = S.fm_scale or S.scale
  local add = {
    { "--inputs", S.inputs }, { "--bn", S.bn }, { "--syn-bn", S.syn_bn or S.bn }, { "--lr", S.lr }, { "--warmup", S.warmup or 0.05 },
    { "--fm-scale", fm_s }, { "--fm-margin", S.fm_margin or 1 }, { "--scale", S.scale },
    { "--circle-gamma", S.circle_gamma ~= "4s" and (S.circle_gamma or 256) or nil },
    { "--head-lr", S.head_lr or 1 }, { "--head-wd", S.head_weight_decay or S.weight_decay },
    { "--margin-warmup", S.margin_warmup or 0 }, { "--fm-dim", S.fashion_mnist and S.fashion_mnist.dim or 2 }, { "--circle-m", S.circle_m ~= 0.25 and S.circle_m or nil },
    { "--syn-bn-scale", S.syn_bn_scale },
  }
  local extra = {}
  for _, a in ipairs(add) do
    if a[2] ~= nil and not given[a[1]] then
      extra[#extra + 1] = a[1] .. " " .. (type(a[2]) == "number" and string.format("%g", a[2]) or tostring(a[2]))
    end
  end
  if #extra == 0 then return cmd end
  local at = cmd:find(" %-%-out ")
  if at then return cmd:sub(1, at) .. table.concat(extra, " ") .. cmd:sub(at) end
  return cmd .. " " .. table.concat(extra, " ")
end

-- the options of this report that shape the table, as given ("--totals --heads a,b ")
local function table_options()
  local out = {}
  if opt.totals then out[#out + 1] = "--totals " end
  if opt.range then out[#out + 1] = "--range " end
  if opt.heads then out[#out + 1] = "--heads " .. table.concat(opt.heads, ",") .. " " end
  if opt.columns then out[#out + 1] = "--columns " .. opt.columns .. " " end
  return table.concat(out)
end

-- the recipe columns of an ablation table: the settings whose value differs between the runs
-- (s of the 2-D part always shown). Runs made before a setting existed had its old value: one s
-- for both parts, Circle's γ 256, 5% warm-up, the head trained like the backbone.
local RECIPE = {
  { "inputs", "inputs", function(S) return S.inputs end },
  { "bn", "BatchNorm", function(S) return S.bn end },
  { "syn_bn", "BatchNorm (64-D)", function(S) return S.syn_bn or S.bn end },
  { "syn_bn_scale", "γ (64-D)", function(S)
      local kind = S.syn_bn or S.bn
      if kind == "insightface" then return S.syn_bn_scale or 1 end
      return (kind == "feature" or kind == "all") and "learned" or "–"
    end },
  { "fm_dim", "D", function(S) return S.fashion_mnist and S.fashion_mnist.dim or 2 end },
  { "fm_scale", "s", function(S) return S.fm_scale or S.scale end, true },
  { "fm_margin", "margins ×", function(S) return S.fm_margin or 1 end },
  { "circle_gamma", "Circle γ", function(S)
      if S.circle_gamma == "4s" then return 4 * (S.fm_scale or S.scale) end
      return S.circle_gamma or 256
    end },
  { "circle_m", "Circle m", function(S) return S.circle_m or 0.25 end },
  { "fm_steps", "steps", function(S) return S.fashion_mnist and S.fashion_mnist.steps end },
  { "lr", "LR", function(S) return S.lr end },
  { "warmup", "warm-up", function(S) return S.warmup end },
  { "margin_warmup", "margin warm-up", function(S) return S.margin_warmup or 0 end },
  { "head_lr", "head LR ×", function(S) return S.head_lr or 1 end },
  { "head_weight_decay", "head decay", function(S) return S.head_weight_decay or S.weight_decay end },
}
-- the part a recipe setting belongs to (a part no run trained has no column)
local PART = { bn = "fm", fm_dim = "fm", fm_scale = "fm", fm_margin = "fm", fm_steps = "fm", syn_bn = "syn",
               syn_bn_scale = "syn" }
local function recipe_columns(runs_S)
  local rcols = {}
  local trained = {}
  for _, S in ipairs(runs_S) do
    if not S.fashion_mnist or (S.fashion_mnist.steps or 0) > 0 then trained.fm = true end
    if not S.synthetic or (S.synthetic.steps or 0) > 0 then trained.syn = true end
  end
  for _, r in ipairs(RECIPE) do
    local part = PART[r[1]]
    if not part or trained[part] then
      local first, varies = tostring(r[3](runs_S[1])), r[4] or false
      for i = 2, #runs_S do if tostring(r[3](runs_S[i])) ~= first then varies = true end end
      if varies then rcols[#rcols + 1] = r end
    end
  end
  return rcols
end
local function recipe_rule(r) return (r[1] == "inputs" or r[1]:match("bn$")) and "---" or "---:" end
local function recipe_value(r, S)
  local v = r[3](S)
  return string.format(type(v) == "number" and "%g" or "%s", v)
end

-- per run: how many of its (head, seed) tasks collapsed, how many lost a class entirely
-- (recall < 2%) or fell below 50% accuracy, and the mean accuracy over its heads
local function totals_rows(lines, rcols, runs_S)
  lines[#lines + 1] = ""
  local th, tr = {}, {}
  for _, r in ipairs(rcols) do th[#th + 1] = r[2]; tr[#tr + 1] = recipe_rule(r) end
  for _, x in ipairs { "tasks", "collapsed", "a class < 2% recall or acc < 50%", "mean FMNIST acc % over heads" } do
    th[#th + 1] = x; tr[#tr + 1] = "---:"
  end
  lines[#lines + 1] = "| " .. table.concat(th, " | ") .. " |"
  lines[#lines + 1] = "|" .. table.concat(tr, "|") .. "|"
  for di, dir in ipairs(dirs) do
    local Rd, Sd = load(dir), runs_S[di]
    local n, coll, severe, accsum, nh = 0, 0, 0, 0, 0
    for _, r in ipairs(Rd.runs or {}) do
      if type(r.fmnist_acc) == "number" then
        n = n + 1
        if r.fmnist_collapsed == 1 then coll = coll + 1 end
        if (r.fmnist_min_recall or 1) < 0.02 or r.fmnist_acc < 0.5 then severe = severe + 1 end
      end
    end
    for _, h in ipairs(Rd.summary) do
      if h.fmnist_acc then accsum = accsum + h.fmnist_acc.mean; nh = nh + 1 end
    end
    local c = {}
    for _, r in ipairs(rcols) do c[#c + 1] = recipe_value(r, Sd) end
    c[#c + 1] = tostring(n)
    c[#c + 1] = string.format("%d/%d", coll, n)
    c[#c + 1] = string.format("%d/%d", severe, n)
    c[#c + 1] = nh > 0 and string.format("%.1f", 100 * accsum / nh) or "–"
    lines[#lines + 1] = "| " .. table.concat(c, " | ") .. " |"
  end
end

-- several run directories: one row per head and run, runs in the order given, the recipe
-- columns first (Circle's own settings only on Circle's rows)
local function ablation_table()
  local lines = {}
  local runs_S = {}
  for i, dir in ipairs(dirs) do runs_S[i] = load(dir).settings or {} end
  local rcols = recipe_columns(runs_S)
  local hdr, rule = {}, {}
  for _, r in ipairs(rcols) do hdr[#hdr + 1] = r[2]; rule[#rule + 1] = recipe_rule(r) end
  hdr[#hdr + 1], rule[#rule + 1] = "head", "---"
  local nr = #hdr
  for i, k in ipairs(cols) do hdr[i + nr] = metric[k].label; rule[i + nr] = "---:" end
  lines[#lines + 1] = "| " .. table.concat(hdr, " | ") .. " |"
  lines[#lines + 1] = "|" .. table.concat(rule, "|") .. "|"
  local cmds, seeds_seen = {}, nil
  for di, dir in ipairs(dirs) do
    local Rd = load(dir)
    local Sd = runs_S[di]
    for _, h in ipairs(shown(Rd.summary)) do
      local c = {}
      for _, r in ipairs(rcols) do
        c[#c + 1] = (r[1]:match("^circle_") and h.key ~= "circle") and "" or recipe_value(r, Sd)
      end
      c[#c + 1] = h.head
      for i, k in ipairs(cols) do c[i + nr] = fmt_cell(h[k], metric[k]) or cell(h[k], metric[k]) end
      lines[#lines + 1] = "| " .. table.concat(c, " | ") .. " |"
    end
    cmds[#cmds + 1] = "`" .. full_command(Sd) .. "`"
    seeds_seen = Sd.seed_list and table.concat(Sd.seed_list, ", ") or "?"
  end
  if opt.totals then totals_rows(lines, rcols, runs_S) end
  lines[#lines + 1] = ""
  lines[#lines + 1] = string.format("%s over seeds %s (collapsed: seeds flagged by fvl.eval.diagnose). Reproduce: %s; " ..
    "then `build/fvl scripts/report_compare.lua %s%s`.", opt.range and "Mean (min–max)" or "Mean ± std", seeds_seen,
    table.concat(cmds, "; "), table_options(), table.concat(dirs, " "))
  return table.concat(lines, "\n")
end

-- one run directory: one row per head, and the line that says how the run was made
local function head_table()
  local S = R.settings or {}
  local lines = {}
  local hdr, rule = { "head" }, { "---" }
  for i, k in ipairs(cols) do
    local m = metric[k]
    hdr[i + 1] = m.key:match("collapsed$") and "FMNIST collapsed" or m.label
    if m.key == "syn_collapsed" then hdr[i + 1] = "synthetic collapsed" end
    rule[i + 1] = "---:"
  end
  lines[#lines + 1] = "| " .. table.concat(hdr, " | ") .. " |"
  lines[#lines + 1] = "|" .. table.concat(rule, "|") .. "|"
  for _, h in ipairs(shown(R.summary)) do
    local c = { h.head }
    for i, k in ipairs(cols) do c[i + 1] = cell(h[k], metric[k]) end
    lines[#lines + 1] = "| " .. table.concat(c, " | ") .. " |"
  end
  local seeds = S.seed_list and table.concat(S.seed_list, ", ") or "?"
  local syn = S.synthetic and S.synthetic.data or {}
  local fm_dim = S.fashion_mnist and S.fashion_mnist.dim or 2
  lines[#lines + 1] = ""
  lines[#lines + 1] = string.format("%s over seeds %s; inputs %s, BatchNorm %s (%s-D) and %s (64-D), lr %s, s %s (%s-D) and %s (64-D), Circle γ = %s, the papers' margins × %s in %s-D%s; %s steps on Fashion-MNIST (%s), " ..
    "%s steps on synthetic_faces (%s train identities × %s, %s unseen × %s)%s. Reproduce: `%s` " ..
    "%s, then `build/fvl scripts/report_compare.lua %s`.",
    opt.range and "Mean (min–max)" or "Mean ± std", seeds, tostring(S.inputs), tostring(S.bn), tostring(fm_dim),
    tostring(S.syn_bn or S.bn), tostring(S.lr),
    tostring(S.fm_scale or S.scale), tostring(fm_dim), tostring(S.scale),
    S.circle_gamma == "4s" and "4·s" or tostring(S.circle_gamma or 256), tostring(S.fm_margin or 1), tostring(fm_dim),
    (S.margin_warmup or 0) > 0 and string.format(", grown from 0 over the first %g%% of the steps", 100 * S.margin_warmup) or "",
    tostring(S.fashion_mnist and S.fashion_mnist.steps), tostring(S.fashion_mnist and S.fashion_mnist.backbone),
    tostring(S.synthetic and S.synthetic.steps), tostring(syn.identities), tostring(syn.per_identity),
    tostring(syn.test_identities), tostring(syn.test_per_identity),
    (S.mode == "quick" and " — SMOKE TEST (--quick), not a result" or "") ..
    ((S.tasks_finished and S.tasks and S.tasks_finished < S.tasks)
     and string.format(" — only %d of %d tasks finished (collected with --collect)", S.tasks_finished, S.tasks) or ""),
    full_command(S),
    -- the run's own time; a run directory assembled with --collect from several runs has none
    type(S.seconds) == "number" and string.format("(%s s with %s jobs)", tostring(S.seconds), tostring(S.jobs))
      or "(assembled from several runs: no time)",
    table_options() .. dirs[1])
  return table.concat(lines, "\n")
end

local md = #dirs > 1 and ablation_table() or head_table()
if not opt.file then
  print(md)
  return
end
cli.write_section(opt.file, opt.section, md, "report_compare")
io.stderr:write(string.format("report_compare: %s section %s written from %s\n", opt.file, opt.section, table.concat(dirs, " ")))
