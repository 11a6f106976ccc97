-- Run under mpirun -np 2 (tests/cli/dist_train_face.sh): ds:loader{shard = true} of a .rec deals
-- each epoch's order to the ranks: every rank the same number of full batches, their images
-- disjoint, together the first N·⌊n/N⌋ of the epoch's order (the same order on every rank).
-- usage: fvl tests/dist/images_shard.lua path/to/train.rec
local dist = fvl.dist
local rank, N = dist.rank(), dist.size()
local ds = assert(fvl.data.images{ rec = assert(arg[1]) })
local B = 4
local loader = ds:loader{ batch = B, seed = 3, shard = true, workers = 1 }
local share = ds.n // N
assert(#loader == share // B, string.format("rank %d: %d batches, expected %d", rank, #loader, share // B))
for epoch = 1, 2 do
  local mine = {}
  for b in loader do
    assert(b.x:size(1) == B, "a short batch")
    for _, i in ipairs(b.index:totable()) do mine[#mine + 1] = i end
  end
  local all = dist.allgather(fvl.tensor(mine, "int32")):totable()
  local seen, count = {}, 0
  for _, i in ipairs(all) do
    assert(not seen[i], string.format("epoch %d: image %d served to two ranks", epoch, i))
    seen[i], count = true, count + 1
  end
  assert(count == N * (share // B) * B, "images served " .. count)
  -- rank r holds positions r+1, r+1+N, ... of the epoch's order (1-based sample ids)
  local order = fvl._loader_perm(ds.n, 3, epoch):totable()
  for k, i in ipairs(mine) do
    assert(i == order[(k - 1) * N + rank + 1] + 1, string.format("epoch %d rank %d: position %d holds %d", epoch, rank, k, i))
  end
end
if rank == 0 then print(string.format("images shard: %d ranks, %d batches of %d each, disjoint", N, #loader, B)) end
