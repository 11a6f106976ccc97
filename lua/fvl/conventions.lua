-- fvl.conventions — Torch7 indexing on tensors, installed when fvl loads:
--   x[i]        the i-th slice along the first dimension, a view sharing x's storage
--               (x:select(1, i)); for a 1-D tensor the number at i, as in Torch7
--   x[i][j]     so works for matrices (and deeper)
--   x[i] = v    fills (number) or copies (tensor) the slice; for a 1-D tensor sets element i
-- Indices are 1-based; out of range is an error naming the dimension's size. Field and method
-- names (x.grad, x:size()) are looked up as before.
local fvl = require "fvl.core"

local mt = getmetatable(fvl.zeros(1))
if mt and not rawget(mt, "__fvl_indexing") then
  local cindex, cnewindex = mt.__index, mt.__newindex
  local mtype = math.type

  local function check(t, i, what)
    if t:dim() == 0 then error(string.format("tensor[%d]%s: a 0-dimensional tensor has no index", i, what), 3) end
    local n = t:size(1)
    if i < 1 or i > n then
      error(string.format("tensor[%d]%s: index out of range 1..%d (first dimension)", i, what, n), 3)
    end
  end

  mt.__index = function(t, k)
    if mtype(k) == "integer" then
      check(t, k, "")
      if t:dim() == 1 then return t:get(k) end
      return t:select(1, k)
    end
    return cindex(t, k)
  end
  mt.__newindex = function(t, k, v)
    if mtype(k) == "integer" then
      check(t, k, " = v")
      if t:dim() == 1 then
        if type(v) ~= "number" then
          error(string.format("tensor[%d] = v: a 1-D tensor's element takes a number, got %s", k, type(v)), 2)
        end
        t:set(k, v)
      elseif type(v) == "number" then
        t:select(1, k):fill(v)
      else
        t:select(1, k):copy(v)
      end
      return
    end
    return cnewindex(t, k, v)
  end
  rawset(mt, "__fvl_indexing", true)
end

return true
