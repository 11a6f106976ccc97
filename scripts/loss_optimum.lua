-- loss_optimum.lua — where a head's loss is lowest when the features are free: ten classes, a few
-- free feature vectors per class and free class centres in D dimensions ("unconstrained
-- features": no backbone, no data, no recipe), the head's loss minimised directly by projected
-- SGD on the unit sphere, from several random starts. Reports whether the minimum found is
-- collapsed (fvl.eval.diagnose: 3 or more centres within 5°, or a class recalled < 2%), the loss
-- it reached and, in 2-D, the loss of the ideal arrangement (centres 36° apart, every feature on
-- its own centre). A head whose free minimum is collapsed cannot be healed by a training recipe.
-- Usage: fvl scripts/loss_optimum.lua [--heads arcface,circle] [--dims 2,3] [--seeds 3]
--        [--file docs/experiments.md --section optimum]   (--help)
local fvl = fvl or require "fvl"
local cli = require "fvl.cli"

local HEADS = {   -- key, name, constructor, fixed options (the papers' margins are the defaults)
  { "softmax", "Softmax", "softmax" }, { "cosface", "CosFace", "cosface" }, { "arcface", "ArcFace", "arcface" },
  { "mv_arc", "MV-Arc-Softmax", "mv_softmax", { kind = "arc" } },
  { "curricularface", "CurricularFace", "curricularface" }, { "circle", "Circle", "circle" },
  { "discface", "DiscFace", "discface" }, { "npcface", "NPCFace", "npcface" },
}
local KEYS = {}
for i, h in ipairs(HEADS) do KEYS[i] = h[1] end

local parser = cli.parser("fvl scripts/loss_optimum.lua",
  "Where a head's loss is lowest when the features are free: ten classes, free features and centres " ..
  "in D dimensions, the loss minimised directly from several random starts; is the minimum collapsed?")
parser:option("--heads", "heads, comma separated: " .. table.concat(KEYS, ","), "cosface,arcface,circle")
  :convert(cli.list("heads", KEYS))
-- converter: a comma-separated list of numbers (integers >= lo with integer = true, else > 0)
local function numbers(name, integer, lo)
  return function(s)
    local out = {}
    for item in (s .. ","):gmatch("([^,]*),") do
      local v = tonumber(item)
      if integer then v = v and math.tointeger(v) end
      if not v or v ~= v or (integer and v < lo) or (not integer and v <= 0) then
        return nil, string.format("%s: expected %s, got '%s'", name, integer and "integers >= " .. lo or "numbers > 0", s)
      end
      out[#out + 1] = v
    end
    return out
  end
end
parser:option("--dims", "embedding dimensions, comma separated", "2,3"):convert(numbers("dims", true, 2))
parser:option("--seeds", "random starts per head and dimension", "3"):convert(cli.integer("seeds", 1))
parser:option("--per-class", "free features per class", "8"):convert(cli.integer("per-class", 1))
parser:option("--steps", "projected SGD steps", "3000"):convert(cli.integer("steps", 1))
parser:option("--lr", "learning rate (momentum 0.9)", "0.05"):convert(cli.number("lr", 0))
parser:option("--scale", "the scale s of the normalised heads", "16"):convert(cli.number("scale", 0))
parser:option("--circle-gamma", "Circle's γ, comma separated for several (default 4·s)"):convert(numbers("circle-gamma"))
parser:option("--circle-m", "Circle's m, comma separated for several", "0.25"):convert(numbers("circle-m"))
parser:option("--margin-warmup", "fraction of the steps over which every additive margin grows linearly from 0",
              "0"):convert(cli.number("margin-warmup", 0, 1))
parser:option("--file", "document to update (with --section)")
parser:option("--section", "marked section of --file to replace")
local opt = parser:parse(arg or {})
if (opt.file == nil) ~= (opt.section == nil) then parser:error("--file and --section go together") end

local C, n = 10, opt.per_class
local GAMMAS = opt.circle_gamma or { 4 * opt.scale }

-- h: a HEADS entry, with gamma and m for Circle
local function make(h, D)
  local o = { dim = D, classes = C }
  if h[1] == "circle" then o.gamma, o.m = h.gamma, h.m
  elseif h[1] ~= "softmax" then o.s = opt.scale end
  for k, v in pairs(h[4] or {}) do o[k] = v end
  return fvl.loss[h[3]](o)
end

local labels = {}
for i = 1, C * n do labels[i] = (i - 1) % C + 1 end
local Y = fvl.tensor(labels):int()

local function unit_rows(t) return t / t:norm(2, 2, true):clamp(1e-12, math.huge) end

-- the loss of features X (rows) under head h with centres W, without a graph
local function loss_at(head, W, X)
  return fvl.no_grad(function()
    head.weight:copy(W)
    return head(X, Y):item()
  end)
end

-- one random start: projected SGD on features and centres (both kept on the unit sphere, where the
-- normalised heads' losses live; Softmax's centres are left free)
local function minimise(h, D, seed)
  fvl.manual_seed(seed)
  local head = make(h, D)
  local X = unit_rows(fvl.randn(C * n, D)):contiguous():requires_grad(true)
  fvl.no_grad(function() head.weight:copy(unit_rows(fvl.randn(C, D))) end)
  local params = { X }
  for _, p in ipairs(head:parameters()) do params[#params + 1] = p end
  local optim = fvl.optim.sgd(params, { lr = opt.lr, momentum = 0.9 })
  -- the margins at full value; with --margin-warmup they grow from 0 (Circle's decision margin
  -- 1 − 2m grows, i.e. m falls from 1/2)
  local full, ramp = {}, math.floor(opt.steps * opt.margin_warmup)
  for _, k in ipairs { "m", "m0", "m1" } do full[k] = head[k] end
  local loss
  for step = 1, opt.steps do
    if ramp > 0 and step <= ramp + 1 then
      local r = math.min(1, step / ramp)
      for k, v in pairs(full) do head[k] = h[1] == "circle" and (1 - r * (1 - 2 * v)) / 2 or r * v end
    end
    optim:zero_grad()
    loss = head(X, Y)
    loss:backward()
    optim:step()
    fvl.no_grad(function()
      X:copy(unit_rows(X))
      if h[1] ~= "softmax" then head.weight:copy(unit_rows(head.weight)) end
    end)
  end
  local pred = fvl.no_grad(function() return head:predict(X) end)
  local d = fvl.eval.diagnose { emb = X:detach(), centres = head.weight:detach(), pred = pred, labels = Y,
                                classes = C, angle = 5, recall = 0.02, cluster = 3 }
  return head, d, fvl.no_grad(function() return head(X, Y):item() end), pred:eq(Y):float():mean():item()
end

-- the ideal 2-D arrangement: centres 36° apart, every feature on its own centre
local function ideal_loss(head)
  local W, X = {}, {}
  for k = 1, C do W[k] = { math.cos(math.rad(36 * (k - 1))), math.sin(math.rad(36 * (k - 1))) } end
  for i = 1, C * n do X[i] = W[labels[i]] end
  return loss_at(head, fvl.tensor(W), fvl.tensor(X))
end

-- the heads to run, in table order; Circle once per (γ, m) asked for
local function variants()
  local want, list = {}, {}
  for _, k in ipairs(opt.heads) do want[k] = true end
  for _, h in ipairs(HEADS) do
    if want[h[1]] and h[1] == "circle" then
      for _, g in ipairs(GAMMAS) do
        for _, m in ipairs(opt.circle_m) do
          list[#list + 1] = { h[1], string.format("Circle (γ %g, m %g)", g, m), h[3], h[4], gamma = g, m = m }
        end
      end
    elseif want[h[1]] then
      list[#list + 1] = h
    end
  end
  return list
end

-- one table row: head h in D dimensions over every random start
local function row(h, D)
  local coll, clusters, angles, accs, losses, ideal = 0, {}, {}, {}, {}, nil
  for seed = 1, opt.seeds do
    local head, d, loss, acc = minimise(h, D, seed)
    if d.collapsed then coll = coll + 1 end
    clusters[#clusters + 1] = tostring(d.largest_centre_cluster)
    angles[#angles + 1] = string.format("%.1f", d.min_centre_angle)
    accs[#accs + 1] = string.format("%.0f", 100 * acc)
    losses[#losses + 1] = string.format("%.3f", loss)
    if D == 2 then ideal = ideal_loss(head) end
    io.stderr:write(string.format("loss_optimum: %s D=%d seed %d: loss %.4f, %s\n", h[2], D, seed, loss,
                                  fvl.eval.collapse_text(d)))
  end
  return string.format("| %s | %d | %d/%d | %s | %s | %s | %s | %s |", h[2], D, coll, opt.seeds,
    table.concat(clusters, ", "), table.concat(angles, ", "), table.concat(accs, ", "), table.concat(losses, ", "),
    ideal and string.format("%.3f", ideal) or "–")
end

local rows = { "| head | D | collapsed | largest centre cluster | min centre angle ° | accuracy % | loss at the minimum found | loss of the ideal arrangement |",
               "|---|---:|---:|---:|---:|---:|---:|---:|" }
for _, h in ipairs(variants()) do
  for _, D in ipairs(opt.dims) do rows[#rows + 1] = row(h, D) end
end
local cmd, i = { "build/fvl scripts/loss_optimum.lua" }, 1
while i <= #arg do   -- the command, without where the table was written
  if arg[i] == "--file" or arg[i] == "--section" then i = i + 1 else cmd[#cmd + 1] = arg[i] end
  i = i + 1
end
rows[#rows + 1] = ""
rows[#rows + 1] = string.format("Per random start (seeds 1..%d; the cells list them in order): ten classes × %d free " ..
  "features, %d projected SGD steps (lr %g, momentum 0.9%s), s = %g, the other heads' margins as in their papers. " ..
  "Reproduce: `%s`.", opt.seeds, n, opt.steps, opt.lr,
  opt.margin_warmup > 0 and string.format(", margins from 0 over the first %g of the steps", opt.margin_warmup) or "",
  opt.scale, table.concat(cmd, " "))
local md = table.concat(rows, "\n")
print(md)
if opt.file then
  cli.write_section(opt.file, opt.section, md, "loss_optimum")
  io.stderr:write(string.format("loss_optimum: %s section %s written\n", opt.file, opt.section))
end
