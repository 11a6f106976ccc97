-- CurricularFace written as your own margin: ArcFace target ("mm" fallback), hard negatives
-- (c_j > cos(θ_y + m)) re-weighted to c_j(t + c_j), t an EMA of the target cosines kept in ctx.state.
-- `fvl scripts/examples/margin_curricularface.lua` compares it with fvl.loss.curricularface.
local fvl = fvl or require "fvl"
local function curricularface(o)
  local m = o.m or 0.5
  local cm, sm, th = math.cos(m), math.sin(m), math.cos(math.pi - m)
  local function arc(c) return c * cm - (1 - c * c):clamp(0, 1):sqrt() * sm end
  return fvl.loss.margin{dim = o.dim, classes = o.classes, weight = o.weight, s = o.s or 64,
    name = "my_curricularface", state = {t = o.t or 0},
    target = function(c, ctx)
      if ctx.training then ctx.state.t = 0.01 * c:detach():mean():item() + 0.99 * ctx.state.t end
      return fvl.where(c:detach():gt(th), arc(c), c - m * sm)
    end,
    negative = function(c, ctx) return {kind = "quadratic", t = ctx.state.t, threshold = arc(c)} end}
end

if arg and arg[0] and arg[0]:match("margin_curricularface") and debug.getinfo(3) == nil then
  require("fvl.cli").parser("fvl scripts/examples/margin_curricularface.lua",
    "CurricularFace written as your own margin (fvl.loss.margin), compared with fvl.loss.curricularface; dofile() returns the constructor."):parse(arg)
  fvl.manual_seed(1)
  local W, x, y = fvl.randn(1000, 64), fvl.randn(256, 64), fvl.randint(1000, {256})
  local mine, ref = curricularface{weight = W}, fvl.loss.curricularface{weight = W}
  print(string.format("my_curricularface %.7f (t %.6f)   fvl.loss.curricularface %.7f (t %.6f)",
                      mine(x, y):item(), mine.state.t, ref(x, y):item(), ref.t))
end
return curricularface
