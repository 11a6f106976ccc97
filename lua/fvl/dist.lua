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
M.finalize = C.finalize
M.allreduce, M.broadcast, M.allgather, M.reduce_scatter = C.allreduce, C.broadcast, C.allgather, C.reduce_scatter
-- tracked helpers for sharded computations: sum(t) = Σ_ranks t (gradient passed to every
-- rank's part unchanged); copy(t) = t (gradient summed over the ranks: a replicated parameter)
M.sum, M.copy = C.sum, C.copy
-- copy_rows(t) = t (first size N·k), gradient summed over the ranks and kept for this rank's
-- block of k rows only (one reduce-scatter): the column work of a sharded head on the gathered
-- embeddings, whose rows other than this rank's are not needed
M.copy_rows = C.copy_rows
-- rows first..first+n-1 of what fvl.randn(rows, cols) would draw (a rank's part of a seeded init)
M.randn_rows = C.randn_rows

-- the checked n, rank, size of part and shard_indices (rank in 0..size-1, size >= 1, n >= 0)
local function items_of(fn, n, rank, size)
  n = util.integer(fn, "n", n, nil, 0)
  size = util.integer(fn, "size", size, M.size(), 1)
  rank = util.integer(fn, "rank", rank, M.rank(), 0)
  if rank >= size then fail(string.format("%s: rank = %d is outside 0..%d (size %d)", fn, rank, size - 1, size)) end
  return n, rank, size
end

-- The contiguous part of n items that `rank` owns out of `size`: ⌊n/size⌋ + [rank < n mod size]
-- items. Returns the first item (1-based) and the count. rank/size default to this process.
function M.part(n, rank, size)
  n, rank, size = items_of("fvl.dist.part", n, rank, size)
  local q, r = n // size, n % size
  return rank * q + math.min(rank, r) + 1, q + (rank < r and 1 or 0)
end

-- params: tensors or modules (anything with :parameters()), flattened in order
local function flat_params(fn, params)
  local out, seen = {}, {}
  local function add(v)
    if util.is_tensor(v) then
      if not seen[v] then seen[v] = true; out[#out + 1] = v end
    elseif type(v) == "table" then
      local get = v.parameters   -- read once: an __index may answer differently each time
      local ps = type(get) == "function" and get(v) or v
      if type(ps) ~= "table" then fail(string.format("fvl.dist.%s: :parameters() gave %s, expected a list", fn, util.typename(ps))) end
      for _, p in ipairs(ps) do add(p) end
    else
      fail(string.format("fvl.dist.%s: params must be tensors or modules, got %s", fn, type(v)))
    end
  end
  add(params)
  return out
end
M.flat_params = flat_params
--- @doc fvl.dist.flat_params(params) -> {tensor, ...}
--- The tensors of params (tensors, modules, or nested lists of them) as one flat list, each tensor
--- once. Errors: anything else in the list.

-- Every rank starts from root's values: broadcast each parameter in place (and any extra
-- tensors a module keeps as state, e.g. BatchNorm running statistics, given in `buffers`).
function M.broadcast_parameters(params, root, buffers)
  root = root or 0
  if math.type(root) ~= "integer" then
    fail("broadcast_parameters: root must be an integer rank (0-based), got " .. util.typename(root))
  end
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

-- Data-parallel gradients all-reduced while the backward runs (as PyTorch's DDP):
--   local sync = dist.overlap_grads(net, {op = "sum", bucket_mb = 25})   -- once
--   loss:backward()      -- each bucket is launched (MPI_Iallreduce) once its gradients are final
--   sync:wait()          -- before opt:step(): the rest, then every .grad is the sum (or mean)
-- The buckets hold the parameters in reverse order (the last layers' gradients are final first),
-- are launched in bucket order on every rank, and the result is what allreduce_grads gives. A
-- parameter that is not in a backward's graph (unused this step) counts as final when the backward
-- starts (its gradient, zeros without one), so it never holds its bucket back (DDP's
-- find_unused_parameters). One synced backward per wait: a second backward before sync:wait() is
-- an error. Gradient accumulation over several backwards: run all but the last inside
-- sync:no_sync(fn) (their gradients only add up locally), then the last backward and sync:wait():
--   for k = 1, K - 1 do sync:no_sync(function() head(net(x[k]), y[k]):backward() end) end
--   head(net(x[K]), y[K]):backward(); sync:wait(); opt:step()
-- sync:close() removes it (one overlap at a time). In a world of one, wait does nothing. Leave a
-- sharded head's parameters out, as with allreduce_grads.
function M.overlap_grads(params, opts)
  opts = util.check_opts("fvl.dist.overlap_grads", opts, { "op", "bucket_mb" })
  local op = util.enum("fvl.dist.overlap_grads", "op", opts.op, { "mean", "sum" }, "mean")
  local elems = math.floor(util.number("fvl.dist.overlap_grads", "bucket_mb", opts.bucket_mb, 25, 0) * 262144)
  return C.overlap(flat_params("overlap_grads", params), math.max(elems, 1), op == "mean")
end

-- This rank's share of the items 1..n for data-parallel loading: items rank+1, rank+1+size, ...
-- (strided, so every rank gets ⌊n/size⌋ or one more). Returns a list of 1-based indices.
function M.shard_indices(n, rank, size)
  n, rank, size = items_of("fvl.dist.shard_indices", n, rank, size)
  local out = {}
  for i = rank + 1, n, size do out[#out + 1] = i end
  return out
end


-- ------------------------------------------------------------------ sharded checkpoints
-- save_checkpoint(dir, {net=, head=, opt=, step=, sched=, extra=}) on every rank (a collective):
--   dir/rank00000 ... dir/rank<N-1>   one complete fvl checkpoint per rank (fvl.save_checkpoint:
--                                     its head slice, its optimiser state, the replicated net)
--   dir/dist.json                     the header: world size, step, the head's class parts
-- The header is written last (by rank 0, atomically, after every rank finished), so a crash
-- leaves the previous header pointing at complete shards only if the shards themselves are
-- complete; each shard is itself crash-safe (generation directories).
local HEADER = "dist.json"
local FORMAT = "fvl-dist-checkpoint"
local function rank_dir(dir, r) return string.format("%s/rank%05d", dir, r) end

-- fvl.dist.save_checkpoint(dir, what) -> dir: called on every rank: each rank writes its shard (as
-- fvl.save_checkpoint, what = {net=, head=, opt=, step=, ...}) under dir/rankNNNNN, then rank 0 the
-- dist.json header naming the world size; barriers order the steps, so a crash leaves the previous
-- complete checkpoint. Errors: a missing dir or what.
function M.save_checkpoint(dir, what)
  local fn = "fvl.dist.save_checkpoint"
  if type(dir) ~= "string" or dir == "" then fail(fn .. ": dir must be a non-empty string") end
  if type(what) ~= "table" then fail(fn .. ": expected a table {net=, head=, opt=, step=, ...}") end
  local r, N = M.rank(), M.size()
  if r == 0 then fvl.sys.mkdirs(dir) end
  M.barrier()
  require("fvl.checkpoint").save_checkpoint(rank_dir(dir, r), what)
  -- the head's parts, gathered on rank 0
  local head = what.head
  local part = fvl.tensor({ { 0, 0, 0 } }, "int32")
  if type(head) == "table" and head.shard then
    part = fvl.tensor({ { head.shard.first, head.shard.n, head.shard.classes } }, "int32")
  end
  local parts = M.allgather(part):totable()
  M.barrier()   -- every shard is on disk
  if r == 0 then
    local h = { format = FORMAT, version = 1, world_size = N, step = what.step, time = os.time(), ranks = {} }
    if type(head) == "table" then
      h.head = { name = head.name, classes = head.classes, sharded = head.shard ~= nil and head.shard.sharded or false }
    end
    for k = 0, N - 1 do
      local row = parts[k + 1]
      h.ranks[k + 1] = { rank = k, dir = string.format("rank%05d", k), first = row[1], n = row[2] }
    end
    local ok, err = fvl.sys.write_atomic(dir .. "/" .. HEADER, require("fvl.json").encode(h, { indent = 1 }))
    if not ok then fail(fn .. ": " .. tostring(err)) end
  end
  M.barrier()
  return dir
end

local function read_header(fn, dir)
  if type(dir) ~= "string" or dir == "" then fail(string.format("%s: dir must be a non-empty string, got %s", fn, type(dir))) end
  local f = io.open(dir .. "/" .. HEADER, "rb")
  if not f then fail(string.format("%s: %s/%s not found (not a distributed checkpoint)", fn, dir, HEADER)) end
  local text = f:read("a")
  f:close()
  local ok, h = pcall(require("fvl.json").decode, text)
  if not ok or type(h) ~= "table" or h.format ~= FORMAT then
    fail(string.format("%s: %s/%s is not a %s header", fn, dir, HEADER, FORMAT))
  end
  return h
end
M.checkpoint_info = function(dir) return read_header("fvl.dist.checkpoint_info", dir) end
--- @doc fvl.dist.checkpoint_info(dir) -> header
--- The dist.json header of a sharded checkpoint (world size, step, ...) without loading tensors.
--- Errors: a directory without a valid header.

-- load_checkpoint(dir, {net=, head=, opt=, rng=}) on every rank: this rank's shard, restored in
-- place as fvl.load_checkpoint does. The world size must be the one that saved it.
function M.load_checkpoint(dir, into)
  local fn = "fvl.dist.load_checkpoint"
  local h = read_header(fn, dir)
  local r, N = M.rank(), M.size()
  if h.world_size ~= N then
    fail(string.format("%s: %s was saved by %d ranks but this job has %d: resume with mpirun -np %d, or make a " ..
                       "single-process checkpoint with fvl.dist.gather_checkpoint", fn, dir, h.world_size, N,
                       h.world_size))
  end
  local head = into and into.head
  local me = h.ranks[r + 1]
  if type(head) == "table" and head.shard and (me.first ~= head.shard.first or me.n ~= head.shard.n) then
    fail(string.format("%s: rank %d's shard holds classes %d..%d but the head's part is %d..%d", fn, r, me.first,
                       me.first + me.n - 1, head.shard.first, head.shard.first + head.shard.n - 1))
  end
  local ck, err = require("fvl.checkpoint").load_checkpoint(rank_dir(dir, r), into)
  if not ck then fail(err) end
  return ck
end

-- gather_checkpoint(dir, out) in one process: the shards of dir joined into one single-process
-- fvl checkpoint at out (the net and step of rank 0, the head's per-class tensors concatenated in
-- class order, its state numbers); optimiser state is not carried (the result is for evaluation,
-- export, or fine-tuning from fresh optimiser state). Returns out.
function M.gather_checkpoint(dir, out)
  local fn = "fvl.dist.gather_checkpoint"
  if type(out) ~= "string" or out == "" then fail(fn .. ": out must be a non-empty string") end
  local h = read_header(fn, dir)
  local cp = require "fvl.checkpoint"
  local cks = {}
  for k = 0, h.world_size - 1 do
    local ck, err = cp.load_checkpoint(rank_dir(dir, k), { rng = false })
    if not ck then fail(fn .. ": " .. tostring(err)) end
    cks[k + 1] = ck
  end
  local first = cks[1]
  local what = { step = first.step, extra = { gathered_from = dir, world_size = h.world_size } }
  if first.net then
    local state = first.net
    what.net = { state = function() return state end }
  end
  if first.head then
    local head = { name = first.head.name }
    for k, v in pairs(first.head.scalars) do head[k] = v end
    local C = h.head and h.head.classes
    for name in pairs(first.head.tensors) do
      -- rows per class: 1, or K for Sub-center ArcFace's weight (each rank keeps whole classes)
      local t1 = first.head.tensors[name]
      local g = (t1 and t1:dim() >= 1 and h.ranks[1].n > 0) and t1:size(1) // h.ranks[1].n or 1
      local parts, rows, per_class = {}, 0, g >= 1
      for k, ck in ipairs(cks) do
        local t = ck.head.tensors[name]
        local n = h.ranks[k].n
        if not t or t:dim() < 1 or t:size(1) ~= n * g then per_class = false end
        parts[k] = t
        rows = rows + (t and t:dim() >= 1 and t:size(1) or 0)
      end
      if per_class and h.head and h.head.sharded and C and rows == C * g then
        head[name] = fvl.cat(parts, 1)
      else
        head[name] = parts[1]      -- replicated (a shared ξ) or an unsharded head
      end
    end
    what.head = head
  end
  cp.save_checkpoint(out, what)
  return out
end

return M
