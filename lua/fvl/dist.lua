-- fvl.dist — several processes as one training job (MPI), see docs/distributed.md.
--
--   mpirun -np 4 build/fvl train.lua        -- or: srun -n 4 build/fvl train.lua
--   fvl.dist.rank(), fvl.dist.size()        -- 0-based rank (as MPI), world size
--   fvl.dist.allreduce(t, "sum"|"max"|"min")  fvl.dist.broadcast(t, root)   -- in place
--   fvl.dist.allgather(t)  fvl.dist.reduce_scatter(t)                     -- new tensors, tracked
--
-- A process started without a launcher is a world of size 1 (MPI is not even initialised):
-- every call is then the identity, so a script runs unchanged either way.
local fvl = require "fvl.core"
local util = require "fvl.util"
local C = fvl.dist_core
local fail = util.fail

local M = {}
M.rank, M.size, M.active, M.barrier = C.rank, C.size, C.active, C.barrier
M.allreduce, M.broadcast, M.allgather, M.reduce_scatter = C.allreduce, C.broadcast, C.allgather, C.reduce_scatter
-- tracked helpers for sharded computations: sum(t) = Σ_ranks t (gradient passed to every
-- rank's part unchanged); copy(t) = t (gradient summed over the ranks: a replicated parameter)
M.sum, M.copy = C.sum, C.copy
-- rows first..first+n-1 of what fvl.randn(rows, cols) would draw (a rank's part of a seeded init)
M.randn_rows = C.randn_rows

-- The contiguous part of n items that `rank` owns out of `size`: ⌊n/size⌋ + [rank < n mod size]
-- items. Returns the first item (1-based) and the count. rank/size default to this process.
function M.part(n, rank, size)
  rank, size = rank or M.rank(), size or M.size()
  local q, r = n // size, n % size
  return rank * q + math.min(rank, r) + 1, q + (rank < r and 1 or 0)
end

-- params: tensors or modules (anything with :parameters()), flattened in order
local function flat_params(fn, params)
  local out, seen = {}, {}
  local function add(v)
    if util.is_tensor(v) then
      if not seen[v] then seen[v] = true; out[#out + 1] = v end
    elseif type(v) == "table" and type(v.parameters) == "function" then
      for _, p in ipairs(v:parameters()) do add(p) end
    elseif type(v) == "table" then
      for _, p in ipairs(v) do add(p) end
    else
      fail(string.format("fvl.dist.%s: params must be tensors or modules, got %s", fn, type(v)))
    end
  end
  add(params)
  return out
end
M.flat_params = flat_params

-- Every rank starts from root's values: broadcast each parameter in place (and any extra
-- tensors a module keeps as state, e.g. BatchNorm running statistics, given in `buffers`).
function M.broadcast_parameters(params, root, buffers)
  root = root or 0
  for _, p in ipairs(flat_params("broadcast_parameters", params)) do
    local d = p:detach()
    C.broadcast(d, root)
  end
  if buffers then
    for _, b in ipairs(flat_params("broadcast_parameters", buffers)) do C.broadcast(b, root) end
  end
end

-- Data-parallel gradients: each parameter's .grad summed (op = "sum") or averaged ("mean",
-- the default: every rank's loss is the mean over its own batch) over the ranks, in buckets of
-- about bucket_mb megabytes (one all-reduce per bucket, not per tensor). Parameters without a
-- gradient contribute zeros (every rank must call this with the same parameter list).
-- A sharded head's parameters are not data-parallel: leave them out (head:parameters() of a
-- sharded head is this rank's own slice).
function M.allreduce_grads(params, opts)
  opts = util.check_opts("fvl.dist.allreduce_grads", opts, { "op", "bucket_mb" })
  local op = util.enum("fvl.dist.allreduce_grads", "op", opts.op, { "mean", "sum" }, "mean")
  local bucket = math.floor(util.number("fvl.dist.allreduce_grads", "bucket_mb", opts.bucket_mb, 25, 0) * 262144)
  local list = flat_params("allreduce_grads", params)
  local N = M.size()
  if N == 1 then return end
  local i = 1
  while i <= #list do
    -- one bucket: parameters i..j, at least one
    local j, n = i, list[i]:numel()
    while j < #list and n + list[j + 1]:numel() <= math.max(bucket, 1) do
      j = j + 1
      n = n + list[j]:numel()
    end
    local buf = fvl.empty(n)
    local off = 1
    for k = i, j do
      local p, m = list[k], list[k]:numel()
      local dst = buf:narrow(1, off, m)
      if p.grad then dst:copy(p.grad:detach():reshape(m)) else dst:fill(0) end
      off = off + m
    end
    C.allreduce(buf, "sum")
    if op == "mean" then buf = buf * (1 / N) end
    off = 1
    for k = i, j do
      local p, m = list[k], list[k]:numel()
      p.grad = buf:narrow(1, off, m):reshape(table.unpack(p:shape())):clone()
      off = off + m
    end
    i = j + 1
  end
end

-- This rank's share of the items 1..n for data-parallel loading: items rank+1, rank+1+size, ...
-- (strided, so every rank gets ⌊n/size⌋ or one more). Returns a list of 1-based indices.
function M.shard_indices(n, rank, size)
  rank, size = rank or M.rank(), size or M.size()
  local out = {}
  for i = rank + 1, n, size do out[#out + 1] = i end
  return out
end

return M
