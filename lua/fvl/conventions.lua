-- fvl.conventions — Torch7 indexing on tensors, installed when fvl loads:
--   x[i]        the i-th slice along the first dimension, a view sharing x's storage
--               (x:select(1, i)); for a 1-D tensor the number at i, as in Torch7
--   x[i][j]     so works for matrices (and deeper)
--   x[i] = v    fills (number) or copies (tensor) the slice; for a 1-D tensor sets element i
-- Indices are 1-based; out of range is an error naming the dimension's size. Field and method
-- names (x.grad, x:size()) are looked up as before.
--
-- Ops people reach for first, written with the engine's tensor ops (so autograd follows them):
--   x:softmax(dim), x:log_softmax(dim)        dim: default the last; max-shifted, stable
--   x:var([dim [, unbiased=true [, keepdim=false]]]), x:std(...)   no dim: over all elements
--   x:permute(d1, d2, ...)                     a view (a sequence of transposes)
--   x:cumsum(dim)                              blocks of 512 summed by matmul with a triangle
--   fvl.stack(list [, dim=1]), fvl.eye(n [, m])
--   fvl.FloatTensor(2, 3) / fvl.FloatTensor{1, 2}; fvl.IntTensor(...) the same in int32
--   x:norm([p=2 [, dim [, keepdim=false]]])    the p-norm in Torch7/PyTorch order: p > 0 or
--                                              math.huge (max |x|); no dim: over all elements;
--                                              keepdim only as an explicit boolean
--   x:sort([dim=last [, descending=false]])    -> values, indices (1-based int32); stable, NaN
--                                              largest; the values follow autograd (a gather)
--   x:topk(k [, dim=last [, largest=true]])    -> the k largest (smallest) values in order and
--                                              their 1-based int32 indices
--   x:argsort([dim=last [, descending=false]]) the indices alone (C)
local fvl = require "fvl.core"
local Tensor = {}   -- the tensor methods written here (found before the C methods)

local function check_dim(fn, t, dim)
  local n = t:dim()
  if n == 0 then fvl._raise(fn .. ": the tensor is 0-dimensional (expected at least 1 dim)") end
  if dim == nil then return n end
  if math.type(dim) ~= "integer" or dim < 1 or dim > n then
    fvl._raise(string.format("%s: dim = %s (expected 1..%d for a %d-D tensor)", fn, tostring(dim), n, n))
  end
  return dim
end

-- t:softmax([dim]) -> tensor: exp(t) / Σ exp(t) along dim (default the last), max-shifted (stable),
-- tracked. Errors: dim not in 1..t:dim().
function Tensor.softmax(t, dim)
  dim = check_dim("softmax", t, dim)
  local m = t:detach():max(dim):unsqueeze(dim)
  local e = (t - m):exp()
  return e / e:sum(dim, true)
end

-- t:log_softmax([dim]) -> tensor: t − log Σ exp(t) along dim (default the last), max-shifted,
-- tracked. Errors: dim not in 1..t:dim().
function Tensor.log_softmax(t, dim)
  dim = check_dim("log_softmax", t, dim)
  local z = t - t:detach():max(dim):unsqueeze(dim)
  return z - z:exp():sum(dim, true):log()
end

local function var(fn, t, dim, unbiased, keepdim)
  if unbiased == nil then unbiased = true end
  if dim == nil then
    local n = t:numel()
    local d = t - t:mean()
    return (d * d):sum() / (unbiased and math.max(n - 1, 1) or n)
  end
  dim = check_dim(fn, t, dim)
  local n = t:size(dim)
  local d = t - t:mean(dim, true)
  return (d * d):sum(dim, keepdim and true or false) / (unbiased and math.max(n - 1, 1) or n)
end
-- t:var([dim [, unbiased [, keepdim]]]) -> tensor: the variance along dim, or over every element
-- without dim (a 0-dimensional tensor); unbiased (default true) divides by n − 1, else n; keepdim
-- (false) keeps dim with size 1. Tracked.
function Tensor.var(t, dim, unbiased, keepdim) return var("var", t, dim, unbiased, keepdim) end
-- t:std([dim [, unbiased [, keepdim]]]) -> tensor: sqrt of t:var with the same arguments.
function Tensor.std(t, dim, unbiased, keepdim) return var("std", t, dim, unbiased, keepdim):sqrt() end

-- t:permute(d1, d2, ...) (or t:permute{d1, d2, ...}) -> tensor: a view with the dimensions in
-- that order (a sequence of transposes; tracked). Errors: not a permutation of 1..t:dim().
function Tensor.permute(t, ...)
  local p = { ... }
  if #p == 1 and type(p[1]) == "table" then p = p[1] end
  local n = t:dim()
  local seen, shown = {}, {}
  for i = 1, #p do shown[i] = tostring(p[i]) end
  local function bad() fvl._raise(string.format("permute: expected a permutation of 1..%d, got {%s}", n, table.concat(shown, ", "))) end
  for _, d in ipairs(p) do
    if math.type(d) ~= "integer" or d < 1 or d > n or seen[d] then bad() end
    seen[d] = true
  end
  if #p ~= n then bad() end
  local cur = {}
  for i = 1, n do cur[i] = i end
  for i = 1, n do
    local j = i
    while cur[j] ~= p[i] do j = j + 1 end
    if j ~= i then
      t = t:transpose(i, j)
      cur[i], cur[j] = cur[j], cur[i]
    end
  end
  return t
end

local CUMSUM_BLOCK = 512
local function triangle(n)
  local i = fvl.arange(1, n):view(n, 1)
  local j = fvl.arange(1, n):view(1, n)
  return fvl.where(i:le(j), 1, 0)   -- U[i][j] = 1 when i <= j: row · U = prefix sums
end
-- t:cumsum([dim]) -> tensor: running sums along dim (default the last), computed by blocks of 512
-- multiplied by a triangular matrix (tracked, GEMM speed). Errors: dim not in 1..t:dim().
function Tensor.cumsum(t, dim)
  dim = check_dim("cumsum", t, dim)
  local nd = t:dim()
  local x = dim == nd and t or t:transpose(dim, nd)
  local shape = x:shape()
  local n = shape[nd]
  local flat = x:contiguous():reshape(-1, n)
  local parts, offset = {}, nil
  for b0 = 1, n, CUMSUM_BLOCK do
    local len = math.min(CUMSUM_BLOCK, n - b0 + 1)
    local c = flat:narrow(2, b0, len):matmul(triangle(len))
    if offset then c = c + offset end
    parts[#parts + 1] = c
    offset = c:narrow(2, len, 1)
  end
  local out = (#parts == 1 and parts[1] or fvl.cat(parts, 2)):reshape(table.unpack(shape))
  return dim == nd and out or out:transpose(dim, nd)
end

-- fvl.stack(list [, dim]) -> tensor: the tensors of list (same shapes) joined along a new dimension
-- dim (default 1: {t1, t2} of shape {3} gives {2, 3}); tracked. Errors: an empty list; dim outside
-- 1..t:dim()+1; shapes that differ.
function fvl.stack(list, dim)
  if type(list) ~= "table" or #list == 0 then fvl._raise("stack: expected a non-empty list of tensors") end
  dim = dim or 1
  local u = {}
  for i, t in ipairs(list) do
    if not (type(t) == "userdata" and (getmetatable(t) or {}).__name == "fvl.Tensor") then
      fvl._raise(string.format("stack: list[%d] is a %s, expected a tensor", i, type(t)))
    end
    if math.type(dim) ~= "integer" or dim < 1 or dim > t:dim() + 1 then
      fvl._raise(string.format("stack: dim = %s (expected 1..%d)", tostring(dim), t:dim() + 1))
    end
    u[i] = t:unsqueeze(dim)
  end
  return fvl.cat(u, dim)
end

-- fvl.eye(n [, m]) -> tensor: the n×m identity (m default n), float32.
-- Errors: sizes that are not positive integers.
function fvl.eye(n, m)
  m = m or n
  if math.type(n) ~= "integer" or n < 1 or math.type(m) ~= "integer" or m < 1 then
    fvl._raise(string.format("eye: sizes must be positive integers, got %s, %s", tostring(n), tostring(m)))
  end
  return fvl.where(fvl.arange(1, n):view(n, 1):eq(fvl.arange(1, m):view(1, m)), 1, 0)
end

local c_norm   -- the engine's L2 norm (dim, keepdim), set below from the C methods

local function check_bool(fn, name, argn, v)
  if v ~= nil and type(v) ~= "boolean" then
    fvl._raise(string.format("%s: %s (argument %d) expected a boolean, got %s", fn, name, argn,
                        math.type(v) and tostring(v) or type(v)))
  end
  return v == true
end

local function check_dim_arg(fn, t, dim, argn)
  local n = t:dim()
  if dim == nil then return nil end
  if math.type(dim) ~= "integer" or dim < 1 or dim > math.max(n, 1) then
    fvl._raise(string.format("%s: dim (argument %d) expected an integer in 1..%d for a %d-D tensor, got %s",
                        fn, argn, math.max(n, 1), n, tostring(dim)))
  end
  return dim
end

-- The p-norm in Torch7/PyTorch argument order: p defaults to 2 (any p > 0; 1; math.huge is
-- max |x|); without dim over all elements, else along dim (1-based) with that dim dropped
-- unless keepdim is true. keepdim must be a boolean; a non-boolean keepdim, p <= 0 or a dim out
-- of range is an error naming the argument. Follows autograd. x:norm(2, 2) is the per-row L2
-- norm of a B×D matrix.
function Tensor:norm(p, dim, keepdim)
  local t = self
  if p == nil then p = 2 end
  if type(p) ~= "number" or not (p > 0) then
    fvl._raise(string.format("norm: p (argument 1) expected a positive number or math.huge, got %s",
                        type(p) == "number" and tostring(p) or type(p)))
  end
  dim = check_dim_arg("norm", t, dim, 2)
  keepdim = check_bool("norm", "keepdim", 3, keepdim)
  if dim and t:dim() == 0 then dim = nil end
  local out
  if p == 2 then
    out = dim and c_norm(t, dim, keepdim) or c_norm(t)
  elseif p == math.huge then
    out = dim and t:abs():max(dim, keepdim) or t:abs():max()
  elseif p == 1 then
    out = t:abs():sum(dim, keepdim)
  else
    out = t:abs():pow(p):sum(dim, keepdim):pow(1 / p)
  end
  if keepdim and not dim and t:dim() > 0 then
    local ones = {}
    for i = 1, t:dim() do ones[i] = 1 end
    out = out:reshape(table.unpack(ones))
  end
  return out
end

-- Sorts along dim (default the last): returns values (following autograd, a gather) and their
-- 1-based int32 positions along dim. Stable (equal values keep their order); NaN sorts as the
-- largest. t:argsort(dim, descending) returns the positions alone.
function Tensor:sort(dim, descending)
  local t = self
  dim = check_dim_arg("sort", t, dim, 1) or math.max(t:dim(), 1)
  descending = check_bool("sort", "descending", 2, descending)
  local idx = t:argsort(dim, descending)
  if t:dim() == 0 then return t:clone(), idx end
  return t:gather(dim, idx), idx
end

-- The k largest (largest = false: smallest) values along dim (default the last), in order, and
-- their 1-based int32 positions; k in 0..size(dim). Values follow autograd.
function Tensor:topk(k, dim, largest)
  local t = self
  dim = check_dim_arg("topk", t, dim, 2) or math.max(t:dim(), 1)
  if largest == nil then largest = true end
  largest = check_bool("topk", "largest", 3, largest)
  local n = t:dim() == 0 and 1 or t:size(dim)
  if math.type(k) ~= "integer" or k < 0 or k > n then
    fvl._raise(string.format("topk: k (argument 1) expected an integer in 0..%d (the size of dim %d), got %s",
                        n, dim, tostring(k)))
  end
  local idx = t:argsort(dim, largest)
  if t:dim() == 0 then return t:clone(), idx end
  idx = idx:narrow(dim, 1, k):contiguous()
  return t:gather(dim, idx), idx
end

local function typed(dtype, name)
  return function(a, ...)
    if type(a) == "table" then return fvl.tensor(a, dtype) end
    if a == nil then fvl._raise(name .. ": expected sizes or a table of values") end
    local z = fvl.zeros(a, ...)
    return dtype == "int32" and z:int() or z
  end
end
fvl.FloatTensor = typed("float32", "FloatTensor")
fvl.IntTensor = typed("int32", "IntTensor")
--- @doc fvl.IntTensor(size1, size2, ...) | fvl.IntTensor{values} -> tensor
--- As fvl.FloatTensor, int32 (labels, indices).
--- @doc fvl.FloatTensor(size1, size2, ...) | fvl.FloatTensor{values} -> tensor
--- Torch7-style constructors: zeros of the given sizes, or a tensor of the nested values; float32.
--- Errors: no argument.

local mt = getmetatable(fvl.zeros(1))
if mt and not rawget(mt, "__fvl_indexing") then
  local cindex, cnewindex = mt.__index, mt.__newindex
  rawset(mt, "__fvl_cnorm", type(cindex) == "table" and cindex.norm or cindex(fvl.zeros(1), "norm"))
  local mtype = math.type

  local function check(t, i, what)
    if t:dim() == 0 then fvl._raise(string.format("tensor[%d]%s: a 0-dimensional tensor has no index", i, what)) end
    local n = t:size(1)
    if i < 1 or i > n then
      fvl._raise(string.format("tensor[%d]%s: index out of range 1..%d (first dimension)", i, what, n))
    end
  end

  mt.__index = function(t, k)
    if mtype(k) == "integer" then
      check(t, k, "")
      if t:dim() == 1 then return t:get(k) end
      return t:select(1, k)
    end
    local f = Tensor[k]
    if f then return f end
    return cindex(t, k)
  end
  mt.__newindex = function(t, k, v)
    if mtype(k) == "integer" then
      check(t, k, " = v")
      if t:dim() == 1 then
        if type(v) ~= "number" then
          fvl._raise(string.format("tensor[%d] = v: a 1-D tensor's element takes a number, got %s", k, type(v)))
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
c_norm = mt and rawget(mt, "__fvl_cnorm")

-- the tensor methods written here (looked up before fvl.Tensor's C methods)
return Tensor
