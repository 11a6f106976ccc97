-- Run under mpirun (tests/cli/dist_collectives.sh) and plainly: fvl.dist's collectives on tensors.
local dist = fvl.dist
local r, N = dist.rank(), dist.size()
local function eq(a, b, what)
  local ta, tb = a:totable(), b:totable()
  local fa, fb = {}, {}
  local function flat(t, out) for _, v in ipairs(t) do if type(v) == "table" then flat(v, out) else out[#out + 1] = v end end end
  flat(ta, fa); flat(tb, fb)
  assert(#fa == #fb, what .. ": sizes differ")
  for i = 1, #fa do
    if math.abs(fa[i] - fb[i]) > 1e-6 then error(string.format("rank %d: %s[%d] = %s, expected %s", r, what, i, fa[i], fb[i])) end
  end
end
-- allreduce sum/max/min, float and int, in place
local t = fvl.tensor({ r + 1, -(r + 1), 2 })
assert(dist.allreduce(t, "sum") == t)
eq(t, fvl.tensor({ N * (N + 1) / 2, -N * (N + 1) / 2, 2 * N }), "allreduce sum")
local m = fvl.tensor({ r, -r }, "int32")
dist.allreduce(m, "max"); eq(m, fvl.tensor({ N - 1, 0 }), "allreduce max int32")
local mn = fvl.tensor({ r + 0.5 }); dist.allreduce(mn, "min"); eq(mn, fvl.tensor({ 0.5 }), "allreduce min")
-- a non-contiguous view is reduced in place too
local big = fvl.ones(3, 4)
dist.allreduce(big:t(), "sum"); eq(big, fvl.full({ 3, 4 }, N), "allreduce of a transposed view")
-- broadcast from the last rank
local b = fvl.tensor({ r, r, r }); dist.broadcast(b, N - 1); eq(b, fvl.tensor({ N - 1, N - 1, N - 1 }), "broadcast")
-- allgather: rank-ordered rows; tracked: its backward is the reduce-scatter of the gradient
local x = fvl.tensor({ { r, 10 * r } }):detach(); x:requires_grad()
local g = dist.allgather(x)
local want = {}
for k = 0, N - 1 do want[#want + 1] = { k, 10 * k } end
eq(g, fvl.tensor(want), "allgather")
local w = fvl.arange(1, 2 * N):reshape(N, 2)   -- the same weights on every rank
;(g * w):sum():backward()
eq(x.grad, w:narrow(1, r + 1, 1) * N, "allgather backward")
-- reduce_scatter: block r of the sum
local rs = dist.reduce_scatter(fvl.arange(1, 2 * N):reshape(2 * N, 1))
eq(rs, fvl.tensor({ { (2 * r + 1) * N }, { (2 * r + 2) * N } }), "reduce_scatter")
-- sum (identity backward) and copy (summing backward)
local p = fvl.tensor({ 1.0 }):detach(); p:requires_grad()
local s = dist.sum(p * (r + 1)); eq(s, fvl.tensor({ N * (N + 1) / 2 }), "sum")
s:backward(); eq(p.grad, fvl.tensor({ r + 1 }), "sum backward")
local q = fvl.tensor({ 2.0 }):detach(); q:requires_grad()
;(dist.copy(q) * (r + 1)):sum():backward(); eq(q.grad, fvl.tensor({ N * (N + 1) / 2 }), "copy backward")
-- copy_rows: the identity, gradient summed over the ranks in this rank's block of rows, zero elsewhere
local v = fvl.ones(2 * N, 1):detach(); v:requires_grad()
local cv = dist.copy_rows(v); eq(cv, fvl.ones(2 * N, 1), "copy_rows")
;(cv * fvl.arange(1, 2 * N):reshape(2 * N, 1) * (r + 1)):sum():backward()
local wantg = {}
for k = 1, 2 * N do wantg[k] = { (k - 1) // 2 == r and k * N * (N + 1) / 2 or 0 } end
eq(v.grad, fvl.tensor(wantg), "copy_rows backward")
-- parts of C classes: contiguous, sizes differ by at most one, cover 1..C
local first, n = dist.part(11)
local tot = fvl.tensor({ n }); dist.allreduce(tot); eq(tot, fvl.tensor({ 11 }), "part sizes")
assert(first == r * (11 // N) + math.min(r, 11 % N) + 1, "part first")
-- data-parallel helpers: broadcast_parameters and bucketed allreduce_grads
local a = fvl.full({ 2, 3 }, r + 1):detach(); a:requires_grad()
local c = fvl.full({ 5 }, r + 1):detach(); c:requires_grad()
dist.broadcast_parameters({ a, c }, 0)
eq(a, fvl.ones(2, 3), "broadcast_parameters")
a.grad = fvl.full({ 2, 3 }, r + 1); c.grad = fvl.full({ 5 }, 2 * (r + 1))
dist.allreduce_grads({ a, c }, { bucket_mb = 0.00002 })   -- 5 floats: one tensor per bucket
eq(a.grad, fvl.full({ 2, 3 }, (N + 1) / 2), "allreduce_grads mean")
eq(c.grad, fvl.full({ 5 }, N + 1), "allreduce_grads mean (second bucket)")
dist.allreduce_grads({ a, c }, { op = "sum" })
eq(a.grad, fvl.full({ 2, 3 }, N * (N + 1) / 2), "allreduce_grads sum")
-- a sharded loader: every rank the same number of full batches, disjoint rows, together
-- ⌊n/N⌋·N rows of the epoch's order
do
  local n = 23
  local ds = { x = fvl.arange(1, n):reshape(n, 1), labels = fvl.arange(1, n):int() }
  local L = fvl.data.loader(ds, { batch = 2, shuffle = true, seed = 5, shard = true })
  local rows = {}
  for b in L do
    assert(b.x:size(1) == 2, "full batches only")
    for _, v in ipairs(b.index:totable()) do rows[#rows + 1] = v end
  end
  local per = (n // N) // 2 * 2
  assert(#rows == per and #L == per // 2, string.format("rank %d: %d rows in %d batches", r, #rows, #L))
  local mark = fvl.zeros(n)
  for _, v in ipairs(rows) do mark:set(v, mark:get(v) + 1) end
  dist.allreduce(mark, "sum")
  assert(mark:max():item() <= 1 and math.floor(mark:sum():item() + 0.5) == per * N, "disjoint shards")
end
-- errors name the function and what came
local ok, err = pcall(dist.allreduce, t, "prod")
assert(not ok and err:find("fvl.dist.allreduce: op = 'prod'"), tostring(err))
ok, err = pcall(dist.broadcast, t, N)
assert(not ok and err:find("root = " .. N .. " is outside 0.." .. (N - 1)), tostring(err))
if N > 1 then   -- shapes must agree: checked before any data moves
  ok, err = pcall(dist.reduce_scatter, fvl.zeros(2 * N + 1))
  assert(not ok and err:find("multiple of the world size"), tostring(err))
  ok, err = pcall(dist.allgather, fvl.zeros(r + 1))
  assert(not ok and err:find("every rank must pass the same shape"), tostring(err))
end
dist.barrier()
if r == 0 then print("collectives ok on " .. N .. " ranks") end
-- finalize: every rank leaves the MPI world (a world of one: nothing happens); a collective after
-- it is an error naming finalize, and the process then exits as it likes (0 here) without an abort
dist.finalize()
dist.finalize()   -- twice is harmless
ok, err = pcall(dist.allreduce, fvl.ones(2))
if dist.size() > 1 then
  assert(not ok and tostring(err):find("the MPI world was finalised", 1, true), tostring(err))
else
  assert(ok, tostring(err))
end
