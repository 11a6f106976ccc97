-- Run under mpirun (tests/cli/dist_np*.sh): every seed head sharded over the ranks against the
-- same head in one process on the gathered batch, for several SGD steps: loss, dX, the gathered
-- W gradient, the other parameters' gradients, the centres after each step and the heads' state
-- must agree to 1e-5. Also Partial FC: rate 1 equals the full head, rate < 1 keeps every
-- positive. Prints "ok N checks" on rank 0; any mismatch raises (and aborts the job).
local dist = fvl.dist
local sharded = require "fvl.loss.sharded"
local rank, N = dist.rank(), dist.size()
local C, D, B, STEPS = 11, 16, 4, 3
local TOL = 1e-5
local checks = 0

local function close(a, b, what)
  a, b = a:detach():contiguous(), b:detach():contiguous()
  if a:numel() ~= b:numel() then error(string.format("%s: %d vs %d values", what, a:numel(), b:numel())) end
  local diff = (a:reshape(a:numel()) - b:reshape(b:numel())):abs()
  local scale = b:reshape(b:numel()):abs():clamp(1, math.huge)
  local worst = (diff / scale):max():item()
  if not (worst <= TOL) then
    error(string.format("rank %d: %s differs by %.3g (relative to max(1, |ref|))", rank, what, worst))
  end
  checks = checks + 1
end
local function close_num(a, b, what) close(fvl.tensor({ a }), fvl.tensor({ b }), what) end

local HEADS = {
  { "softmax", {} }, { "center", { lambda = 0.1 } }, { "normface", { s = 16 } },
  { "sphereface", { feature_scale = "norm" } }, { "sphereface", { feature_scale = "s", s = 8 } },
  { "cosface", { s = 16 } }, { "am_softmax", {} }, { "arcface", { s = 16 } },
  { "arcface", { s = 16, easy_margin = true, grad = "detached" } }, { "combined", { s = 16 } },
  { "mv_softmax", { s = 16 } }, { "mv_softmax", { s = 16, kind = "arc", adaptive = false } },
  { "curricularface", { s = 16 } }, { "circle", { gamma = 32 } },
  { "discface", { s = 16 } }, { "discface", { s = 16, per_class_xi = true, base = "arc" } },
  { "npcface", { s = 16 } }, { "npcface", { s = 16, hardness_grad = true, hardness_from = "reweighted" } },
  { "adacos", { dynamic = false } }, { "adacos", { dynamic = true } }, { "magface", { s = 16 } },
  { "adaface", { s = 16 } }, { "elasticface", { s = 16, kind = "arc", m = 0.4, std = 0.05 } },
  { "elasticface", { s = 16, kind = "cos", m = 0.35, std = 0.05, plus = true } },
  { "margin", { s = 16, target = function(c) return (c:acos() + 0.3):cos() end } },
  { "subcenter_arcface", { s = 16, K = 2 } }, { "subcenter_arcface", { s = 16, K = 3, easy_margin = true } },
}

local function with(o, extra)
  local t = { dim = D, classes = C }
  for k, v in pairs(o) do t[k] = v end
  for k, v in pairs(extra or {}) do t[k] = v end
  return t
end

-- centres far enough from 0 that the tiny-C cosines are not all near 0
local function start_weight(rows) fvl.manual_seed(42); return fvl.randn(rows, D) end

local function compare(name, o, extra)
  local W0 = start_weight(C * (o.K or 1))
  fvl.manual_seed(7)
  local full = fvl.loss[name](with(o, { weight = W0 }))
  fvl.manual_seed(7)
  local sh = fvl.loss[name](with(o, with(extra, { weight = W0 })))
  local tag = name .. (extra and extra.partial_fc and (" pfc=" .. extra.partial_fc) or "")
  local of = fvl.optim.sgd(full, { lr = 0.05, momentum = 0.9, weight_decay = 5e-4 })
  local os_ = fvl.optim.sgd(sh, { lr = 0.05, momentum = 0.9, weight_decay = 5e-4 })
  for step = 1, STEPS do
    fvl.manual_seed(1000 + step)
    local xs = fvl.randn(N * B, D)
    local ys = fvl.randint(1, C, { N * B })
    local xf = xs:clone():detach(); xf:requires_grad()
    local xl = xs:narrow(1, rank * B + 1, B):clone():detach(); xl:requires_grad()
    local yl = ys:narrow(1, rank * B + 1, B):contiguous()
    of:zero_grad(); os_:zero_grad()
    fvl.manual_seed(2000 + step)   -- heads that draw (ElasticFace's margins) draw the same
    local lf = full(xf, ys)
    fvl.manual_seed(2000 + step)
    local ls = sh(xl, yl)
    close_num(ls:item(), lf:item(), tag .. " loss, step " .. step)
    lf:backward()
    ls:backward()
    close(xl.grad, xf.grad:narrow(1, rank * B + 1, B), tag .. " dX, step " .. step)
    close(sh:gather_weight_grad(), full.weight.grad, tag .. " dW, step " .. step)
    if full.bias then
      local bg = sh._pfc and sh._pfc.bias and fvl.zeros(sh.shard.n) or sh.bias.grad
      if sh._pfc and sh._pfc.bias then fvl.F.copy_rows(bg:reshape(sh.shard.n, 1), sh._pfc.rows, sh._pfc.bias.grad:reshape(sh._pfc.bias:numel(), 1)) end
      close(sharded.gather(sh, bg), full.bias.grad, tag .. " dbias, step " .. step)
    end
    if full.xi then
      local g = sh.per_class_xi and sharded.gather(sh, sh.xi.grad) or sh.xi.grad
      close(g, full.xi.grad, tag .. " dxi, step " .. step)
    end
    of:step(); os_:step()
    close(sh:gather_weight(), full.weight, tag .. " W after step " .. step)
    if full.centers then close(sharded.gather(sh, sh.centers), full.centers, tag .. " centres, step " .. step) end
    if full.t and type(full.t) == "number" then close_num(sh.t, full.t, tag .. " t, step " .. step) end
    if full.iter then close_num(sh.iter, full.iter, tag .. " iter, step " .. step) end
  end
  -- predictions: the best class over every rank's columns
  fvl.manual_seed(5)
  local xs = fvl.randn(N * B, D)
  local pf = full:predict(xs):totable()
  local ps = sh:predict(xs:narrow(1, rank * B + 1, B):contiguous()):totable()
  for i = 1, B do
    if pf[rank * B + i] ~= ps[i] then error(string.format("%s predict row %d: %d vs %d", tag, i, ps[i], pf[rank * B + i])) end
  end
  return sh
end

-- every head three ways: the default row chunks (this rank's B rows when the world has several
-- ranks), the gathered rows in chunks of 3 (uneven: 4, 8 or 12 rows) and all at once
-- (shard_chunk = 0); in chunks every head runs the chunked ops (its scores never held whole)
for _, h in ipairs(HEADS) do
  local sh = compare(h[1], h[2], { sharded = true })
  if N > 1 and not sh.shard.pairwise and sh.shard.chunked ~= true then
    error(h[1] .. ": the default row chunks did not run the chunked ops")
  end
  sh = compare(h[1], h[2], { sharded = true, shard_chunk = 3 })
  if not sh.shard.pairwise and sh.shard.chunked ~= true then
    error(h[1] .. ": shard_chunk = 3 did not run the chunked ops")
  end
  sh = compare(h[1], h[2], { sharded = true, shard_chunk = 0 })
  if sh.shard.chunked then error(h[1] .. ": shard_chunk = 0 ran in chunks") end
end
compare("arcface", { s = 16 }, { sharded = true, partial_fc = 1.0, shard_chunk = 3 })
-- Partial FC with rate 1 is the full head (sharded, and with a rate in a single process too)
for _, name in ipairs { "arcface", "cosface", "softmax", "curricularface", "npcface" } do
  compare(name, { s = name ~= "softmax" and 16 or nil }, { sharded = true, partial_fc = 1.0 })
end
compare("subcenter_arcface", { s = 16, K = 2 }, { sharded = true, partial_fc = 1.0 })
if N == 1 then compare("subcenter_arcface", { s = 16, K = 2 }, { partial_fc = 1.0 }) end   -- one process, a rate

-- rate < 1: every positive of the gathered batch is in the sample; K = max(⌊rate·n⌋, positives)
do
  local CL = 200
  fvl.manual_seed(3)
  local h = fvl.loss.arcface { dim = D, classes = CL, sharded = true, partial_fc = 0.1 }
  local sh = h.shard
  for step = 1, 5 do
    fvl.manual_seed(50 + step)
    local ys = fvl.randint(1, CL, { N * B })
    local x = fvl.randn(B, D)
    local yl = ys:narrow(1, rank * B + 1, B):contiguous()
    h(x, yl):backward()
    local rows = h._pfc.rows:totable()
    local inS = {}
    for _, r in ipairs(rows) do inS[r] = true end
    local npos, seen = 0, {}
    for _, c in ipairs(ys:totable()) do
      local r = c - sh.first + 1
      if r >= 1 and r <= sh.n then
        if not inS[r] then error(string.format("rank %d: positive class %d not sampled", rank, c)) end
        if not seen[r] then seen[r] = true; npos = npos + 1 end
      end
    end
    local want = math.max(math.floor(0.1 * sh.n), npos)
    if #rows ~= want then error(string.format("rank %d: %d sampled rows, expected %d", rank, #rows, want)) end
    -- only sampled rows carry a gradient
    local g = h:gather_weight_grad()
    checks = checks + 1
  end
  -- the samples differ between ranks' streams and between steps
end

-- data-parallel backbone + sharded head: after allreduce_grads(sum) every rank's backbone
-- gradient is the one-process gradient of the whole gathered batch; after an SGD step (the same
-- on every rank) the backbones agree with the one-process one
do
  local function build(extra)
    fvl.manual_seed(21)
    local net = fvl.nn.Linear(6, D)
    local head = fvl.loss.cosface(with({ s = 16 }, extra))
    return net, head, fvl.optim.sgd({ net, head }, { lr = 0.1, momentum = 0.9 })
  end
  local net1, head1, opt1 = build(nil)
  local netN, headN, optN = build({ sharded = true })
  dist.broadcast_parameters(netN)
  for step = 1, 2 do
    fvl.manual_seed(300 + step)
    local xs, ys = fvl.randn(N * B, 6), fvl.randint(1, C, { N * B })
    opt1:zero_grad(); optN:zero_grad()
    head1(net1(xs), ys):backward()
    headN(netN(xs:narrow(1, rank * B + 1, B):contiguous()), ys:narrow(1, rank * B + 1, B):contiguous()):backward()
    dist.allreduce_grads(netN, { op = "sum", bucket_mb = 0.001 })
    local p1, pN = net1:parameters(), netN:parameters()
    for i = 1, #p1 do close(pN[i].grad, p1[i].grad, "data-parallel backbone grad " .. i .. ", step " .. step) end
    opt1:step(); optN:step()
    for i = 1, #p1 do close(pN[i], p1[i], "data-parallel backbone param " .. i .. ", step " .. step) end
  end
end

-- the gradient all-reduce overlapped with the backward (dist.overlap_grads: buckets launched from
-- the autograd hook as their gradients become final, waited before the step) gives what
-- allreduce_grads gives after the backward, with several buckets and a parameter without a
-- gradient, over several SGD steps; and the one-process gradients
do
  local function build(extra)
    fvl.manual_seed(23)
    local net = fvl.nn.Sequential { fvl.nn.Linear(6, 12), fvl.nn.PReLU(12), fvl.nn.Linear(12, D) }
    local unused = fvl.zeros(3):detach(); unused:requires_grad()   -- no gradient from the graph
    local head = fvl.loss.arcface(with({ s = 16 }, extra))
    local params = { unused }   -- listed first: in the last bucket (the buckets run in reverse)
    for _, q in ipairs(net:parameters()) do params[#params + 1] = q end
    return net, head, params, fvl.optim.sgd({ net, head }, { lr = 0.1, momentum = 0.9 })
  end
  local net1, head1, p1, opt1 = build(nil)
  local netA, headA, pA, optA = build({ sharded = true })
  local netO, headO, pO, optO = build({ sharded = true })
  dist.broadcast_parameters(netA); dist.broadcast_parameters(netO)
  for _, op in ipairs { "sum", "mean" } do
    local sync = dist.overlap_grads(pO, { op = op, bucket_mb = 0.0002 })   -- ~52 floats a bucket
    if N > 1 and sync:buckets() < 3 then error("overlap: expected several buckets, got " .. sync:buckets()) end
    for step = 1, 2 do
      fvl.manual_seed(400 + step)
      local xs, ys = fvl.randn(N * B, 6), fvl.randint(1, C, { N * B })
      local xl, yl = xs:narrow(1, rank * B + 1, B):contiguous(), ys:narrow(1, rank * B + 1, B):contiguous()
      opt1:zero_grad(); optA:zero_grad(); optO:zero_grad()
      head1(net1(xs), ys):backward()
      headA(netA(xl), yl):backward()
      dist.allreduce_grads(pA, { op = op, bucket_mb = 0.0002 })
      headO(netO(xl), yl):backward()
      sync:wait()
      -- every bucket during the backward: the unused parameter's is launched without waiting for wait()
      local nb, early = sync:buckets()
      if N > 1 and early ~= nb then error(string.format("overlap: %d of %d buckets launched during the backward", early, nb)) end
      for i = 1, #pA do
        if not (N == 1 and i == 1) then   -- one process: nothing reduced, the unused one has no .grad
          close(pO[i].grad, pA[i].grad, string.format("overlapped grad %d (%s), step %d", i, op, step))
          if op == "sum" and i > 1 then close(pO[i].grad, p1[i].grad, "overlapped vs one process " .. i) end
        end
      end
      opt1:step(); optA:step(); optO:step()
    end
    sync:close()
  end
  -- gradient accumulation: two backwards per step, the first inside no_sync (gradients added up
  -- locally), the second synced; equal to allreduce_grads after both (the one-process net took
  -- other steps in the "mean" rounds above)
  local sync = dist.overlap_grads(pO, { op = "sum", bucket_mb = 0.0002 })
  for step = 1, 2 do
    fvl.manual_seed(500 + step)
    local xs, ys = fvl.randn(2 * N * B, 6), fvl.randint(1, C, { 2 * N * B })
    opt1:zero_grad(); optA:zero_grad(); optO:zero_grad()
    for k = 0, 1 do
      local function mine(t) return t:narrow(1, k * N * B + rank * B + 1, B):contiguous() end
      head1(net1(xs:narrow(1, k * N * B + 1, N * B)), ys:narrow(1, k * N * B + 1, N * B)):backward()
      headA(netA(mine(xs)), mine(ys)):backward()
      local function bw() headO(netO(mine(xs)), mine(ys)):backward() end
      if k == 0 then sync:no_sync(bw) else bw() end
    end
    dist.allreduce_grads(pA, { op = "sum", bucket_mb = 0.0002 })
    sync:wait()
    for i = 2, #pA do
      close(pO[i].grad, pA[i].grad, string.format("accumulated overlapped grad %d, step %d", i, step))
    end
    opt1:step(); optA:step(); optO:step()
  end
  -- misuse is an error on every rank, before the backward runs: a second synced backward before
  -- wait, and no_sync after a synced backward of the step
  fvl.manual_seed(600)
  local xs, ys = fvl.randn(N * B, 6), fvl.randint(1, C, { N * B })
  local xl, yl = xs:narrow(1, rank * B + 1, B):contiguous(), ys:narrow(1, rank * B + 1, B):contiguous()
  optO:zero_grad()
  headO(netO(xl), yl):backward()
  local ok, err = pcall(function() headO(netO(xl), yl):backward() end)
  if N > 1 and (ok or not tostring(err):find("second backward before the overlap's wait")) then
    error("overlap: a second backward: " .. tostring(err))
  end
  ok, err = pcall(sync.no_sync, sync, function() end)
  if N > 1 and (ok or not tostring(err):find("no_sync after a backward")) then error("overlap: late no_sync: " .. tostring(err)) end
  sync:wait()
  -- no_sync returns fn's results and passes its errors on
  local r1, r2 = sync:no_sync(function(a, b) return a + b, "two" end, 1, 2)
  if r1 ~= 3 or r2 ~= "two" then error("no_sync results: " .. tostring(r1) .. ", " .. tostring(r2)) end
  ok, err = pcall(sync.no_sync, sync, function() error("inner", 0) end)
  if ok or err ~= "inner" then error("no_sync error: " .. tostring(err)) end
  sync:close()
  local a = dist.overlap_grads(pO)
  ok, err = pcall(dist.overlap_grads, pO)
  a:close()
  if N > 1 and (ok or not tostring(err):find("another overlap")) then error("second overlap: " .. tostring(err)) end
  ok, err = pcall(a.wait, a)
  if ok or not tostring(err):find("closed") then error("wait after close: " .. tostring(err)) end
end

-- circle_pairwise: each rank's anchors against the whole gathered batch equal the one-process
-- loss of the gathered batch (pairs across ranks included); dX of this rank's rows
for _, o in ipairs { { m = 0.25, gamma = 32 }, { m = 0.4, gamma = 256 } } do
  local full = fvl.loss.circle_pairwise { dim = D, m = o.m, gamma = o.gamma }
  local sh = fvl.loss.circle_pairwise { dim = D, m = o.m, gamma = o.gamma, sharded = true }
  for step = 1, STEPS do
    fvl.manual_seed(700 + step)
    local xs = fvl.randn(N * B, D)
    local ys = fvl.randint(1, 3, { N * B })
    local xf = xs:clone():detach(); xf:requires_grad()
    local xl = xs:narrow(1, rank * B + 1, B):clone():detach(); xl:requires_grad()
    local lf, ls = full(xf, ys), sh(xl, ys:narrow(1, rank * B + 1, B):contiguous())
    close_num(ls:item(), lf:item(), "circle_pairwise loss, step " .. step)
    lf:backward(); ls:backward()
    close(xl.grad, xf.grad:narrow(1, rank * B + 1, B), "circle_pairwise dX, step " .. step)
  end
end
local ok, err = pcall(fvl.loss.circle_pairwise, { dim = D, partial_fc = 0.5 })
if ok or not tostring(err):find("has none") then error("circle_pairwise partial_fc: expected an error, got " .. tostring(err)) end
-- prune needs the whole head
ok, err = pcall(function()
  local h = fvl.loss.subcenter_arcface { dim = D, classes = C, K = 2, sharded = true }
  h:prune(fvl.randn(B, D), fvl.randint(1, C, { B }))
end)
if ok or not tostring(err):find("gather") then error("subcenter prune sharded: expected an error, got " .. tostring(err)) end

dist.barrier()
if rank == 0 then print(string.format("ok %d checks on %d ranks", checks, N)) end
