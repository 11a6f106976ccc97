-- AdaFace written as your own margin: the feature norms (ctx.norm) set a per-sample mix of angular
-- and additive margin, normalised by EMA batch statistics kept in ctx.state.
-- `fvl scripts/examples/margin_adaface.lua` compares it with fvl.loss.adaface.
local fvl = fvl or require "fvl"
local function adaface(o)
  local m, h, a, eps = o.m or 0.4, o.h or 0.333, o.t_alpha or 0.01, 1e-3
  return fvl.loss.margin{dim = o.dim, classes = o.classes, weight = o.weight, s = o.s or 64, clamp = eps,
    name = "my_adaface", state = {mean = 20, std = 100},
    target = function(c, ctx)
      local n, st = ctx.norm:detach():clamp(1e-3, 100), ctx.state
      if ctx.training then
        local mu = n:mean():item()
        st.mean = a * mu + (1 - a) * st.mean
        st.std = a * math.sqrt(((n - mu) ^ 2):sum():item() / (ctx.B - 1)) + (1 - a) * st.std
      end
      local z = ((n - st.mean) * (h / (st.std + eps))):clamp(-1, 1)
      local th = c:clamp(-1 + eps, 1 - eps):acos() - z * m
      return fvl.where(th:detach():gt(eps) * th:detach():lt(math.pi - eps), th, th:detach():clamp(eps, math.pi - eps)):cos() - (z * m + m)
    end}
end

if arg and arg[0] and arg[0]:match("margin_adaface") and debug.getinfo(3) == nil then
  require("fvl.cli").parser("fvl scripts/examples/margin_adaface.lua",
    "AdaFace written as your own margin (fvl.loss.margin), compared with fvl.loss.adaface; dofile() returns the constructor."):parse(arg)
  fvl.manual_seed(1)
  local W, x, y = fvl.randn(1000, 64), fvl.randn(256, 64) * 3, fvl.randint(1000, {256})
  local mine, ref = adaface{weight = W}, fvl.loss.adaface{weight = W}
  print(string.format("my_adaface %.7f   fvl.loss.adaface %.7f", mine(x, y):item(), ref(x, y):item()))
end
return adaface
