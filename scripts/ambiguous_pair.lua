-- ambiguous_pair.lua — does a head's loss pull the centres of two classes together when their
-- samples cannot be told apart? Two classes a and b whose samples lie on one direction x (each
-- sample once labelled a and once b: the limit of two classes the backbone cannot separate, like
-- Fashion-MNIST's pullover and coat); their centres w_a and w_b φ degrees apart. For each φ the
-- shared direction x is placed where the pair's mean loss is lowest (a grid over the plane of the
-- two centres; |x| = 1 for the unnormalised heads), and the table gives that loss minus the loss
-- at φ = 0. A head whose row falls as φ → 0 is better off merging the two classes: the merge
-- pressure the trained runs show (docs/experiments.md, "merged pairs"). Only the pair: no other
-- class, no backbone, no data.
-- Usage: fvl scripts/ambiguous_pair.lua [--heads arcface,cosface] [--scale 16] [--margin 1]
--        [--file docs/experiments.md --section pair]   (--help)
local fvl = fvl or require "fvl"
local cli = require "fvl.cli"

local HEADS = {   -- key, name, constructor, its margins at factor k (nil: no additive margin), fixed options
  { "softmax", "Softmax", "softmax" },
  { "sphereface", "SphereFace", "sphereface" },
  { "cosface", "CosFace", "cosface", function(k) return { m = 0.35 * k } end },
  { "arcface", "ArcFace", "arcface", function(k) return { m = 0.5 * k } end },
  { "mv_arc", "MV-Arc-Softmax", "mv_softmax", function(k) return { m = 0.5 * k } end, { kind = "arc" } },
  { "curricularface", "CurricularFace", "curricularface", function(k) return { m = 0.5 * k } end },
  { "discface", "DiscFace", "discface", function(k) return { m = 0.35 * k } end },
  { "npcface", "NPCFace", "npcface", function(k) return { m0 = 0.4 * k, m1 = 0.2 * k } end },
}
local KEYS = {}
for i, h in ipairs(HEADS) do KEYS[i] = h[1] end

local parser = cli.parser("fvl scripts/ambiguous_pair.lua",
  "The loss of two classes that share their samples against the angle between their centres: does the " ..
  "head pull the two centres together?")
parser:option("--heads", "heads, comma separated: " .. table.concat(KEYS, ","), table.concat(KEYS, ","))
  :convert(cli.list("heads", KEYS))
parser:option("--scale", "the scale s of the normalised heads", "16"):convert(cli.number("scale", 0))
parser:option("--margins", "factors on the papers' margins, comma separated", "1,0.5")
parser:option("--angles", "angles φ between the two centres in degrees, comma separated", "0,5,10,20,40,60")
parser:option("--file", "document to update (with --section)")
parser:option("--section", "marked section of --file to replace")
local opt = parser:parse(arg or {})
if (opt.file == nil) ~= (opt.section == nil) then parser:error("--file and --section go together") end
local function numbers(name, s, lo)
  local out = {}
  for item in (s .. ","):gmatch("([^,]*),") do
    local v = tonumber(item)
    if not v or v ~= v or v < lo then parser:error(string.format("%s: expected numbers >= %g, got '%s'", name, lo, s)) end
    out[#out + 1] = v
  end
  return out
end
local FACTORS, ANGLES = numbers("margins", opt.margins, 0), numbers("angles", opt.angles, 0)
for _, a in ipairs(ANGLES) do if a > 180 then parser:error("angles: expected degrees in 0..180, got " .. a) end end

local BY = {}
for _, h in ipairs(HEADS) do BY[h[1]] = h end

local function make(h, k)
  local o = { dim = 2, classes = 2 }
  if h[3] ~= "softmax" and h[3] ~= "sphereface" then o.s = opt.scale end
  for key, v in pairs(h[4] and h[4](k) or {}) do o[key] = v end
  for key, v in pairs(h[5] or {}) do o[key] = v end
  return fvl.loss[h[3]](o)
end

local function unit(deg) return { math.cos(math.rad(deg)), math.sin(math.rad(deg)) } end

-- the pair's lowest mean loss with the centres phi degrees apart (at ±phi/2), over the direction of
-- the shared sample x on a 0.25° grid from -phi/2 - 45° to phi/2 + 45° (the two labels: one
-- sample each, the same x)
local function pair_loss(head, phi)
  fvl.no_grad(function() head.weight:copy(fvl.tensor({ unit(-phi / 2), unit(phi / 2) })) end)
  local best = math.huge
  local labels = fvl.tensor({ 1, 2 }, "int32")
  for t = -phi / 2 - 45, phi / 2 + 45, 0.25 do
    local x = fvl.tensor({ unit(t), unit(t) })
    local l = fvl.no_grad(function() return head(x, labels):item() end)
    if l < best then best = l end
  end
  return best
end

local lines = {}
local hdr, rule = { "head", "margins ×" }, { "---", "---:" }
for _, a in ipairs(ANGLES) do hdr[#hdr + 1] = string.format("φ = %g°", a); rule[#rule + 1] = "---:" end
hdr[#hdr + 1], rule[#rule + 1] = "lowest at", "---:"
lines[1] = "| " .. table.concat(hdr, " | ") .. " |"
lines[2] = "|" .. table.concat(rule, "|") .. "|"
for _, key in ipairs(opt.heads) do
  local h = BY[key]
  for fi, k in ipairs(h[4] and FACTORS or { 1 }) do
    local row = { h[2], h[4] and string.format("%g", k) or "–" }
    local L = {}
    for i, a in ipairs(ANGLES) do L[i] = pair_loss(make(h, k), a) end
    local lo = 1
    for i = 2, #L do if L[i] < L[lo] - 1e-9 then lo = i end end
    for i = 1, #L do row[#row + 1] = string.format("%+.3f", L[i] - L[1]) end
    row[#row + 1] = string.format("%g°", ANGLES[lo])
    lines[#lines + 1] = "| " .. table.concat(row, " | ") .. " |"
    if fi == 0 then break end
  end
end
lines[#lines + 1] = ""
lines[#lines + 1] = string.format("The pair's lowest mean loss (over the direction of the shared sample) with the two centres φ apart, " ..
  "minus the loss at φ = %g°: negative = the centres prefer to be apart, positive = the head pulls them together. " ..
  "s = %g for the normalised heads, the papers' margins × the factor. Reproduce: `build/fvl scripts/ambiguous_pair.lua " ..
  "--heads %s --scale %g --margins %s --angles %s`.", ANGLES[1], opt.scale, table.concat(opt.heads, ","), opt.scale,
  opt.margins, opt.angles)
local md = table.concat(lines, "\n")
if opt.file then
  cli.write_section(opt.file, opt.section, md, "ambiguous_pair")
  io.stderr:write("ambiguous_pair: " .. opt.file .. " section " .. opt.section .. " written\n")
else
  print(md)
end
