-- fvl — the Lua face of FaceVerLoss. The C core (tensors, autograd, kernels) is
-- package.loaded["fvl.core"]; this file adds the Lua library on top and returns the same table.
local fvl = require "fvl.core"

-- each module of the library, once loaded, has its classes' methods check their self
-- (fvl.util.register_class: "Linear:forward: self must be a Linear, got nil (call it with ':', ...)")
do
  local seal = require("fvl.util")._seal_classes
  for name, loader in pairs(package.preload) do
    if name:sub(1, 4) == "fvl." then
      package.preload[name] = function(...)
        local m = loader(...)
        seal()
        return m
      end
    end
  end
end

-- submodules load on first use: fvl.loss, fvl.nn, fvl.optim, ...
local lazy = { loss = true, nn = true, optim = true, schedule = true, data = true, eval = true,
               plot = true, sweep = true, json = true, checkpoint = true, progress = true,
               util = true, log = true, dist = true }
setmetatable(fvl, {
  __complete = lazy,   -- lets the REPL's tab completion offer submodules not loaded yet
  __index = function(t, k)
    if lazy[k] then
      local m = require("fvl." .. k)
      rawset(t, k, m)
      return m
    end
  end,
})

fvl.version = fvl.info().version
require "fvl.conventions"   -- x[i], x[i][j] (Torch7 indexing)

-- fvl.gradcheck(f, inputs, {eps=, atol=, rtol=}) -> ok, report
-- Central differences of the scalar f(table.unpack(inputs)) against backward(), for every input
-- that requires grad. float32-aware defaults: eps 1e-3, tolerance atol 1e-3 + rtol 1e-2.
function fvl.gradcheck(f, inputs, opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("gradcheck: opts must be a table, got " .. type(opts), 2) end
  for k in pairs(opts) do
    if k ~= "eps" and k ~= "atol" and k ~= "rtol" and k ~= "max_elements" then
      error("gradcheck: unknown option '" .. tostring(k) .. "' (expected one of: eps, atol, rtol, max_elements)", 2)
    end
  end
  if type(f) ~= "function" then error("gradcheck: f must be a function, got " .. type(f), 2) end
  if type(inputs) ~= "table" then error("gradcheck: inputs must be a list of tensors, got " .. type(inputs), 2) end
  local eps, atol, rtol = opts.eps or 1e-3, opts.atol or 1e-3, opts.rtol or 1e-2
  local maxel = opts.max_elements or 2000
  local function eval()
    local y = f(table.unpack(inputs))
    if type(y) ~= "userdata" or y:numel() ~= 1 then
      error("gradcheck: f must return a one-element tensor", 3)
    end
    return y
  end
  for _, x in ipairs(inputs) do x.grad = nil end
  eval():backward()
  local lines, ok = {}, true
  for i, x in ipairs(inputs) do
    if x.needs_grad then
      local g = x.grad and x.grad:contiguous():reshape(-1):totable() or {}
      local flat = x:reshape(-1)   -- shares storage with x (x is contiguous as a leaf)
      local n = math.min(x:numel(), maxel)
      local worst, wj, wa, wn = -math.huge, 0, 0, 0
      fvl.no_grad(function()
        for j = 1, n do
          local orig = flat:get(j)
          flat:set(j, orig + eps)
          local yp = eval():item()
          flat:set(j, orig - eps)
          local ym = eval():item()
          flat:set(j, orig)
          local num = (yp - ym) / (2 * eps)
          local ana = g[j] or 0
          local err = math.abs(num - ana) - (atol + rtol * math.abs(num))
          if err > worst then worst, wj, wa, wn = err, j, ana, num end
        end
      end)
      local bad = worst > 0 or worst ~= worst
      if bad then ok = false end
      lines[#lines + 1] = string.format("input %d (%s): %s, worst element %d: analytic %.6g, numeric %.6g",
        i, table.concat(x:shape(), "x"), bad and "MISMATCH" or "ok", wj, wa, wn)
    end
  end
  return ok, table.concat(lines, "\n")
end

-- fvl.save / fvl.load also read every plain NumPy dtype and .npz archives (lua/fvl/faces.lua)
require("fvl.faces").install_io()

return fvl
