-- Run under mpirun by tests/cli/dist_checkpoint.sh. arg[1] = "save" | "resume" | "wrong_n", arg[2] = dir.
--   save:    a sharded ArcFace head + a small net trained 2 SGD steps, checkpointed (one shard per rank
--            + header), then 2 more steps; the final centres are written to dir/expected.npy
--   resume:  the same model built fresh, loaded from the checkpoint, 2 steps: equal to expected.npy;
--            then rank 0 gathers the shards into one checkpoint that a plain head loads
--   wrong_n: loading under another world size fails with a message naming both sizes
local dist = fvl.dist
local mode, dir = arg[1], arg[2]
local rank, N = dist.rank(), dist.size()
local C, D, B = 13, 8, 3

local function model()
  fvl.manual_seed(11)
  local net = fvl.nn.Linear(6, D)
  local head = fvl.loss.arcface { dim = D, classes = C, s = 16, sharded = true }
  local opt = fvl.optim.sgd({ net, head }, { lr = 0.1, momentum = 0.9 })
  dist.broadcast_parameters(net)
  return net, head, opt
end
local function step(net, head, opt, k)
  fvl.manual_seed(100 + k * 10 + rank)
  local x, y = fvl.randn(B, 6), fvl.randint(1, C, { B })
  opt:zero_grad()
  local loss = head(net(x), y)
  loss:backward()
  dist.allreduce_grads(net, { op = "sum" })
  opt:step()
  return loss:item()
end

if mode == "save" then
  local net, head, opt = model()
  for k = 1, 2 do step(net, head, opt, k) end
  dist.save_checkpoint(dir .. "/ck", { net = net, head = head, opt = opt, step = 2 })
  for k = 3, 4 do step(net, head, opt, k) end
  local W = head:gather_weight()
  if rank == 0 then fvl.save(dir .. "/expected.npy", W) end
  -- a head with K = 2 rows per class: every rank keeps whole classes; gathered in class order
  fvl.manual_seed(12)
  local sc = fvl.loss.subcenter_arcface { dim = D, classes = C, K = 2, sharded = true }
  dist.save_checkpoint(dir .. "/sc", { head = sc, step = 0 })
  local Wsc = sc:gather_weight()
  if rank == 0 then fvl.save(dir .. "/expected_sc.npy", Wsc) end
  dist.barrier()
  if rank == 0 then print("saved on " .. N .. " ranks") end
elseif mode == "resume" then
  local net, head, opt = model()
  local ck = dist.load_checkpoint(dir .. "/ck", { net = net, head = head, opt = opt })
  assert(ck.step == 2, "step " .. tostring(ck.step))
  for k = 3, 4 do step(net, head, opt, k) end
  local W = head:gather_weight()
  local want = fvl.load(dir .. "/expected.npy")
  local diff = (W - want):abs():max():item()
  if diff > 1e-6 then error(string.format("rank %d: resumed centres differ by %g", rank, diff)) end
  dist.barrier()
  if rank == 0 then
    dist.gather_checkpoint(dir .. "/ck", dir .. "/single")
    local plain = fvl.loss.arcface { dim = D, classes = C, s = 16 }
    local net1 = fvl.nn.Linear(6, D)
    fvl.load_checkpoint(dir .. "/single", { net = net1, head = plain })
    local info = dist.checkpoint_info(dir .. "/ck")
    assert(info.world_size == N and #info.ranks == N, "header")
    -- the gathered centres are the checkpoint's (step 2), not the resumed ones
    local ck0 = fvl.load_checkpoint(dir .. "/single", { rng = false })
    assert(plain.weight:size(1) == C and ck0.step == 2, "gathered head")
    dist.gather_checkpoint(dir .. "/sc", dir .. "/sc1")
    local sc = fvl.loss.subcenter_arcface { dim = D, classes = C, K = 2 }
    fvl.load_checkpoint(dir .. "/sc1", { head = sc })
    local d = (sc.weight - fvl.load(dir .. "/expected_sc.npy")):abs():max():item()
    assert(d == 0, "gathered sub-centres differ by " .. d)
    -- the one-process seeded sub-centres are the gathered ones
    fvl.manual_seed(12)
    local one = fvl.loss.subcenter_arcface { dim = D, classes = C, K = 2 }
    assert((one.weight - sc.weight):abs():max():item() == 0, "seeded sub-centres differ from one process")
    print("resumed on " .. N .. " ranks; gathered " .. C .. " classes")
  end
  dist.barrier()
elseif mode == "wrong_n" then
  local net, head, opt = model()
  local ok, err = pcall(dist.load_checkpoint, dir .. "/ck", { net = net, head = head, opt = opt })
  assert(not ok and tostring(err):find("saved by %d+ ranks but this job has " .. N), tostring(err))
  dist.barrier()
  if rank == 0 then print("refused on " .. N .. " ranks") end
end
