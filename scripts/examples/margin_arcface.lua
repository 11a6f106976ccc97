-- ArcFace written as your own margin: the target logit cos(θ + m) (with the "mm" fallback past
-- θ + m > π) as tensor ops on the B target cosines; fvl.loss.margin keeps the B×C work fused.
-- `fvl scripts/examples/margin_arcface.lua` compares it with fvl.loss.arcface; dofile() returns the constructor.
local fvl = fvl or require "fvl"
local function arcface(o)
  local m = o.m or 0.5
  local cm, sm, th = math.cos(m), math.sin(m), math.cos(math.pi - m)
  return fvl.loss.margin{dim = o.dim, classes = o.classes, weight = o.weight, s = o.s or 64, name = "my_arcface",
    target = function(c)
      local arc = c * cm - (1 - c * c):clamp(0, 1):sqrt() * sm    -- cos(θ + m)
      return fvl.where(c:detach():gt(th), arc, c - m * sm)        -- "mm" fallback where θ + m > π
    end}
end

if arg and arg[0] and arg[0]:match("margin_arcface") and debug.getinfo(3) == nil then
  require("fvl.cli").parser("fvl scripts/examples/margin_arcface.lua",
    "ArcFace written as your own margin (fvl.loss.margin), compared with fvl.loss.arcface; dofile() returns the constructor."):parse(arg)
  fvl.manual_seed(1)
  local W, x, y = fvl.randn(1000, 64), fvl.randn(256, 64), fvl.randint(1000, {256})
  local mine, ref = arcface{weight = W}, fvl.loss.arcface{weight = W}
  print(string.format("my_arcface %.7f   fvl.loss.arcface %.7f", mine(x, y):item(), ref(x, y):item()))
end
return arcface
