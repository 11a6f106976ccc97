-- fvl — the Lua face of FaceVerLoss. The C core (tensors, autograd, kernels) is
-- package.loaded["fvl.core"]; this file adds the Lua library on top and returns the same table.
local fvl = require "fvl.core"

-- submodules load on first use: fvl.loss, fvl.nn, fvl.optim, ...
local lazy = { loss = true, nn = true, optim = true, schedule = true, data = true, eval = true,
               plot = true, sweep = true, json = true, checkpoint = true, progress = true,
               util = true, F = false }
setmetatable(fvl, {
  __index = function(t, k)
    if lazy[k] then
      local m = require("fvl." .. k)
      rawset(t, k, m)
      return m
    end
  end,
})
return fvl
