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
local argparse = require "argparse"
local json = fvl.json

local parser = argparse("report_compare.lua", "Markdown table of a compare_losses run directory.")
parser:argument("run_dir", "a directory written by scripts/compare_losses.lua")
parser:option("--file", "document to update in place (with --section)")
parser:option("--section", "name of the marked section to replace")
parser:option("--columns", "comma-separated metric keys (default: accuracy, collapse and verification columns)")
parser:flag("--range", "spread as min–max instead of ± std")
local opt = parser:parse(arg)
if (opt.file == nil) ~= (opt.section == nil) then parser:error("--file and --section go together") end

local function read(path)
  local f, err = io.open(path, "r")
  if not f then error("report_compare: cannot read " .. tostring(err), 0) end
  local s = f:read("a")
  f:close()
  return s
end

local R = json.decode(read(opt.run_dir .. "/results.json"))
if type(R) ~= "table" or type(R.summary) ~= "table" or type(R.metrics) ~= "table" then
  error("report_compare: " .. opt.run_dir .. "/results.json is not a compare_losses result (no summary/metrics)", 0)
end
local metric = {}
for _, m in ipairs(R.metrics) do metric[m.key] = m end

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
  for _, k in ipairs { "fmnist_acc", "fmnist_collapsed", "verif_acc", "tar_at_far_1e-3", "tar_at_far_1e-2", "eer" } do
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
for _, h in ipairs(R.summary) do
  local c = { h.head }
  for i, k in ipairs(cols) do c[i + 1] = cell(h[k], metric[k]) end
  lines[#lines + 1] = "| " .. table.concat(c, " | ") .. " |"
end
local seeds = S.seed_list and table.concat(S.seed_list, ", ") or "?"
local syn = S.synthetic and S.synthetic.data or {}
lines[#lines + 1] = ""
lines[#lines + 1] = string.format("%s over seeds %s; inputs %s, BatchNorm %s, lr %s; %s steps on Fashion-MNIST (%s), " ..
  "%s steps on synthetic_faces (%s train identities × %s, %s unseen × %s)%s. Reproduce: `%s` " ..
  "(%s s with %s jobs), then `build/fvl scripts/report_compare.lua %s`.",
  opt.range and "Mean (min–max)" or "Mean ± std", seeds, tostring(S.inputs), tostring(S.bn), tostring(S.lr),
  tostring(S.fashion_mnist and S.fashion_mnist.steps), tostring(S.fashion_mnist and S.fashion_mnist.backbone),
  tostring(S.synthetic and S.synthetic.steps), tostring(syn.identities), tostring(syn.per_identity),
  tostring(syn.test_identities), tostring(syn.test_per_identity),
  S.mode == "quick" and " — SMOKE TEST (--quick), not a result" or "",
  tostring(S.command), tostring(S.seconds), tostring(S.jobs), opt.run_dir)
local md = table.concat(lines, "\n")

if not opt.file then
  print(md)
  return
end
local doc = read(opt.file)
local open_tag = "<!-- results:" .. opt.section .. " -->"
local close_tag = "<!-- /results:" .. opt.section .. " -->"
local a, b = doc:find(open_tag, 1, true)
local c = doc:find(close_tag, 1, true)
if not a or not c or c < b then
  error(string.format("report_compare: %s has no section %s ... %s", opt.file, open_tag, close_tag), 0)
end
if doc:find(open_tag, b + 1, true) then
  error(string.format("report_compare: %s has section %s twice", opt.file, open_tag), 0)
end
local new = doc:sub(1, b) .. "\n" .. md .. "\n" .. doc:sub(c)
assert(fvl.sys.write_atomic(opt.file, new))
io.stderr:write(string.format("report_compare: %s section '%s' written from %s\n", opt.file, opt.section, opt.run_dir))
