-- fvl.loss.sharded — model-parallel heads and Partial FC for every head built on fvl.F.
--
--   fvl.loss.arcface{dim = 512, classes = 2000000, sharded = true}      -- under mpirun -np N
--   fvl.loss.cosface{dim = 512, classes = 100000, partial_fc = 0.1}     -- also in one process
--
-- sharded = true: rank r keeps classes part(C, r, N) (contiguous, ⌊C/N⌋ + [r < C mod N] rows) of
-- W and of every per-class tensor (bias, centres, per-class ξ). A step all-gathers the ranks'
-- embeddings (tracked: the backward reduce-scatters dX) and labels, runs the head's own forward
-- on the gathered batch with fvl.F replaced by sharded primitives (the B×C work on this rank's
-- columns; row max / Σexp / target cosine / hard-negative sums all-reduced), and returns the
-- loss of the whole gathered batch, identical on every rank. W's gradient and its optimiser
-- state never leave the rank.
--
-- partial_fc = rate: every step keeps every class of this rank's slice that is a label of the
-- gathered batch, plus random other classes up to ⌊rate·C_local⌋, drawn from a generator seeded
-- per rank; the GEMMs run on the sampled rows only (a K×D copy, head._pfc.weight), whose
-- gradient the optimisers write back row-sparsely (fvl.optim: rows not sampled are untouched,
-- momentum included). head(x, y, {sample = int32 tensor}) uses a given sorted sample of
-- 1-based class ids instead.
local fvl = require "fvl.core"
local util = require "fvl.util"
local dist = require "fvl.dist"

local fail = util.fail
local M = {}

-- per-class tensors (besides weight) that a sharded head slices: name → predicate(self)
local PER_CLASS = {
  bias = function() return true end,
  centers = function() return true end,
  xi = function(self) return self.per_class_xi end,
}

-- options the constructors do not see: returns the spec (or nil) and the options without them
function M.split_opts(name, o)
  if type(o) ~= "table" or (o.sharded == nil and o.partial_fc == nil and o.shard_chunk == nil) then return nil, o end
  local rest = {}
  for k, v in pairs(o) do
    if k ~= "sharded" and k ~= "partial_fc" and k ~= "shard_chunk" then rest[k] = v end
  end
  local spec = { sharded = util.boolean(name, "sharded", o.sharded, false) }
  if o.shard_chunk ~= nil then
    local c = o.shard_chunk
    if math.type(c) ~= "integer" or c < 0 then
      fail(string.format("%s: shard_chunk = %s (expected a count of gathered rows >= 1, or 0 for the whole " ..
                         "batch at once)", name, tostring(c)))
    end
    if not o.sharded and not o.partial_fc then
      fail(string.format("%s: shard_chunk is an option of sharded heads (give sharded = true or partial_fc)", name))
    end
    spec.chunk = c
  end
  if o.partial_fc ~= nil then
    local r = o.partial_fc
    if type(r) ~= "number" or r ~= r or r <= 0 or r > 1 then
      fail(string.format("%s: partial_fc = %s (expected a sampling rate in (0, 1])", name, tostring(r)))
    end
    spec.rate = r
  end
  if not spec.sharded and not spec.rate then return nil, rest end
  return spec, rest
end

-- fvl.loss.<name>{...}: the constructor as is, or with sharded / partial_fc handled here
function M.construct(name, ctor, o)
  local spec, rest = M.split_opts(name, o)
  if not spec then return ctor(rest) end
  local base = require "fvl.loss.base"
  base.pending_shard = spec
  local ok, head = pcall(ctor, rest)
  base.pending_shard = nil
  if not ok then error(head, 0) end
  return M.finish(head, spec)
end

-- the slice this process keeps of C classes: first (1-based), count, rank, size
local function slice_of(spec, C)
  local rank, size = 0, 1
  if spec.sharded then rank, size = dist.rank(), dist.size() end
  if C < size then
    fail(string.format("%s: classes = %d but the world has %d ranks (every rank needs at least one class)",
                       spec.name, C, size))
  end
  local first, n = dist.part(C, rank, size)
  return first, n, rank, size
end

-- called by Head:setup: this rank's rows of the centres, as the unsharded head would have them
-- (the same seeded initialisation, or the rows of a given full weight). R rows of W: R = C·K for a
-- head with K rows per class (spec.group = K, set by its constructor: Sub-center ArcFace), whose
-- classes stay whole (rank r keeps the K rows of each of its classes).
function M.init_weight(self, spec, W, R, D)
  spec.name = self.name
  local K = spec.group or 1
  local C = R // K
  local first, n, rank, size = slice_of(spec, C)
  self.shard = { first = first, n = n, rank = rank, size = size, classes = C, sharded = spec.sharded,
                 rate = spec.rate, K = K, chunk = spec.chunk }
  local r0, rn = (first - 1) * K + 1, n * K
  local w
  if W then
    w = W:narrow(1, r0, rn):detach():clone():contiguous():detach()
  else   -- scaled in place: no second C/N×D transient
    w = dist.randn_rows(R, D, r0, rn)
    fvl.F.scale_(w, math.sqrt(2.0 / (R + D)))
  end
  w:requires_grad()
  return w
end

-- sharded = true for a head without centres whose loss pairs the rows of the batch (Circle's
-- pairwise form): the embeddings and labels are all-gathered, each rank computes the pairs of its
-- own rows (anchors) against every gathered row, and the loss is that of the whole gathered batch
-- (pairs across ranks included), identical on every rank. Partial FC has no classes to sample.
local function finish_pairwise(self, spec)
  if spec.rate then
    fail(string.format("%s: partial_fc samples class centres, and this head has none", self.name))
  end
  local rank, size = dist.rank(), dist.size()
  self.shard = { sharded = true, pairwise = true, rank = rank, size = size }
  local cls = getmetatable(self)
  self.forward = function(h, x, labels)
    local B, y = h:check_input(x, labels)
    -- the gradient of the gathered rows is reduce-scattered: every rank's share is its anchors' pairs
    local xg = dist.allgather(x)
    local yg = dist.allgather(y)   -- checked labels of the gathered batch (not scanned again)
    h:warn_no_pairs(yg, yg:numel())
    return cls.pairs_loss(h, xg, yg, rank * B + 1, B)
  end
  return self
end

-- after the constructor: slice the other per-class tensors; install the sharded forward
function M.finish(self, spec)
  if self.pairwise and spec.sharded ~= nil and not self.shard then return finish_pairwise(self, spec) end
  local sh = self.shard
  if not sh then
    fail(string.format("%s: %s works on class centres, and this head has none", self.name,
                       spec.sharded and "sharded = true" or "partial_fc"))
  end
  local C = sh.classes
  for k, pred in pairs(PER_CLASS) do
    local v = rawget(self, k)
    if util.is_tensor(v) and pred(self) and v:dim() >= 1 and v:size(1) == C then
      local part = v:narrow(1, sh.first, sh.n):detach():clone():contiguous():detach()
      if v.needs_grad then part:requires_grad() end
      self[k] = part
    end
  end
  if spec.rate then
    sh.num_sample = math.floor(spec.rate * sh.n)
    -- one draw from the global generator (the same on every rank), then a per-rank stream
    local base = fvl.randint(0, 2147483646, { 1 }):totable()[1]
    sh.seed = base * 1000003 + sh.rank
    sh.counter = 0
  end
  local cls = getmetatable(self)
  self.call_options = { "sample", table.unpack(cls.call_options) }   -- head(x, y, {sample = ...}) too
  self._inner_forward = cls.forward
  self.forward = M.forward
  self.gather_weight = M.gather_weight
  self.gather_weight_grad = M.gather_weight_grad
  self.raw_logits = M.raw_logits(cls.raw_logits)
  self.predict = M.predict
  return self
end

-- ------------------------------------------------------------------ the sharded primitives
-- Every rank must build the same graph (the backward's collectives then pair up): row
-- selections below never depend on how many rows a rank owns (an empty selection is padded with
-- one row weighted 0). The gathered rows whose target this rank holds, made in C once a step: own
-- (their row numbers), their columns and slice rows as checked labels (no call scans them), w.
local function own_rows(ctx)
  if not ctx.own then
    ctx.own, ctx.own_cols, ctx.own_rows, ctx.own_w =
      fvl.F._own_rows(ctx.cols, ctx.rows, ctx.W:size(1) // ctx.K, ctx.n, ctx.name)
  end
  return ctx.own, ctx.own_cols, ctx.own_rows, ctx.own_w
end

-- The score matrix of a head in row chunks (ctx.chunk): S.cosine (and S.linear_logits) return this
-- stand-in for the N·B × C_local scores of x against this rank's centres, and S.group_max of it is
-- one more stand-in (the max over each class's K rows). S.margin_ce and S.hard_mean on a stand-in
-- run the chunked ops (F.chunked_margin_ce_shard / F.chunked_hard_mean_shard), S.target_cos the
-- rows' dot products, S.neg_lse its own chunks; anything else a head does with it (arithmetic, a
-- method) computes the whole matrix once, as without chunks.
local Lazy = {}
local function is_lazy(t) return getmetatable(t) == Lazy end
-- fields of a stand-in (rawget: its __index computes the matrix)
local function lz(P, k) return rawget(P, k) end
-- a stand-in for the scores described by src = {x, W, b, linear, K}
local function new_lazy(src, det)
  src.base = src
  setmetatable(src, Lazy)
  return det and setmetatable({ base = src, det = true }, Lazy) or src
end
-- the whole matrix of a stand-in's scores (tracked in what requires grad)
local function whole(b)
  local F = fvl.F
  if lz(b, "linear") then return F.linear_logits(lz(b, "x"), lz(b, "W"), lz(b, "b")) end
  local c = F.cosine(lz(b, "x"), lz(b, "W"))
  return lz(b, "K") > 1 and F.group_max(c, lz(b, "K")) or c
end
local function real(P)
  local b = lz(P, "base")
  if not lz(b, "t") then   -- tracked, even when first asked for under no_grad (a detached use)
    local was = fvl.grad_enabled()
    fvl.grad_enabled(true)
    local ok, t = pcall(whole, b)
    fvl.grad_enabled(was)
    if not ok then error(t, 0) end
    rawset(b, "t", t)
  end
  return lz(P, "det") and lz(b, "t"):detach() or lz(b, "t")
end
local function pending(v) return is_lazy(v) and not lz(lz(v, "base"), "t") end
-- the stand-in's x, W, bias (detached for a detached stand-in) and its description for the C ops
local function lazy_src(P, chunk)
  local b = lz(P, "base")
  local x, W, bias = lz(b, "x"), lz(b, "W"), lz(b, "b")
  if lz(P, "det") then x, W, bias = x:detach(), W:detach(), bias and bias:detach() end
  return x, W, { chunk = chunk, scores = lz(b, "linear") and "linear" or "cosine", groups = lz(b, "K"), bias = bias }
end
local function unlazy(v) return is_lazy(v) and real(v) or v end
Lazy.__index = function(P, k)
  if k == "detach" then return function() return setmetatable({ base = lz(P, "base"), det = true }, Lazy) end end
  return function(_, ...) local r = real(P); return r[k](r, ...) end
end
for _, mm in ipairs { "__add", "__sub", "__mul", "__div", "__pow", "__unm", "__lt", "__le", "__concat" } do
  Lazy[mm] = function(a, b) local r = unlazy(a); return getmetatable(r)[mm](r, unlazy(b)) end
end
Lazy.__len = function(P) return #real(P) end
Lazy.__tostring = function(P) return tostring(real(P)) end

-- the gathered embeddings enter this rank's column work through dist.copy_rows: its backward
-- reduce-scatters the ranks' parts of their gradient (each rank receives its own B rows, which is
-- all the allgather's backward keeps). Another tensor (a function of them) goes through
-- dist.copy (the whole gradient summed on every rank), which is right whatever it is.
local function cols_x(ctx, x)
  if x ~= ctx.xg then return dist.copy(x) end
  ctx.xc = ctx.xc or dist.copy_rows(x)
  return ctx.xc
end

-- column-local: the same on a slice; on a stand-in of cosines, one of their groups' max
local function lazy_max(cos, K)
  local b = lz(cos, "base")
  if lz(b, "linear") or lz(b, "K") ~= 1 then return nil end
  return new_lazy({ x = lz(b, "x"), W = lz(b, "W"), K = K }, lz(cos, "det"))
end

-- the target cosines from the rows' dot products (this rank's targets, summed over the ranks)
local function lazy_targets(ctx, P)
  local own, oc, _, w = own_rows(ctx)
  local x, W = lazy_src(P)
  local c = (fvl.normalize(x:index(1, own), 2) * fvl.normalize(W:index(1, oc), 2)):sum(2):clamp(-1, 1) * w
  -- into the gathered rows' places: a one-hot NB × #own matrix (sel[own[k]][k] = 1)
  local nb, k = x:size(1), own:numel()
  local sel = fvl.zeros(nb, k):index_add(1, own, fvl.eye(k))
  return dist.sum(sel:matmul(c:reshape(k, 1)):reshape(nb))
end

-- the primitives that make or take the score matrix: cosine, linear_logits, group_max(_ws),
-- margin_ce, target_cos, hard_mean (on a row-chunk stand-in: the chunked ops)
local function add_score_ops(S, ctx)
  local F = fvl.F
  function S.cosine(x, W, ws)
    if ctx.chunk and W == ctx.weight then return new_lazy { x = cols_x(ctx, x), W = ctx.W, K = 1 } end
    return F.cosine(cols_x(ctx, x), W == ctx.weight and ctx.W or W, ws)
  end
  function S.linear_logits(x, W, b, ws)
    if W == ctx.weight then
      if ctx.chunk then return new_lazy { x = cols_x(ctx, x), W = ctx.W, b = ctx.b, linear = true, K = 1 } end
      W, b = ctx.W, ctx.b
    end
    return F.linear_logits(cols_x(ctx, x), W, b, ws)
  end
  function S.group_max(cos, K, ...)
    if pending(cos) then
      local m = lazy_max(cos, K)
      if m then return m end
    end
    return F.group_max(unlazy(cos), K, ...)
  end
  function S.group_max_ws(cos, K, gws, prev)   -- no workspaces in row chunks: then no previous output
    if pending(cos) then
      local m = lazy_max(cos, K)
      if m then return m end
    end
    return F.group_max_ws(unlazy(cos), K, gws, gws and prev or nil)
  end
  function S.margin_ce(cos, y, spec, name)
    if pending(cos) then
      local x, W, src = lazy_src(cos, ctx.chunk)
      ctx.fused = true
      return F.chunked_margin_ce_shard(x, W, ctx.cols, spec, src, name, ctx.cap)
    end
    return F.margin_ce_shard(unlazy(cos), ctx.cols, spec, name, ctx.cap)
  end
  function S.target_cos(cos, y)
    if pending(cos) and not lz(lz(cos, "base"), "linear") and lz(lz(cos, "base"), "K") == 1 then
      return lazy_targets(ctx, cos)
    end
    return F.target_cos_shard(unlazy(cos), ctx.cols)
  end
  function S.hard_mean(cos, y, o)
    if pending(cos) then
      local x, W, src = lazy_src(cos, ctx.chunk)
      ctx.fused = true
      return F.chunked_hard_mean_shard(x, W, ctx.cols, o, src)
    end
    return F.hard_mean_shard(unlazy(cos), ctx.cols, o)
  end
end

-- rows r0..r0+m−1 of the gathered batch, their slice cosines c (m×C): log Σ_{j≠y} exp(s·c_ij)
-- without the target where this rank holds it, over all columns where another rank does
local function neg_lse_part(ctx, c, r0, m, s)
  local safe, own = fvl.F._target_mask(ctx.cols:narrow(1, r0, m), c:size(2), ctx.name)
  local a = fvl.F.neg_lse(c, safe, s)
  local b = (c * s):logsumexp(2):reshape(m)
  return fvl.where(own:gt(0), a, b)
end

-- log Σ_{j≠y} exp(s·c_ij) over every rank's columns (untracked); in row chunks, chunk by chunk
local function neg_lse(ctx, cos, s)
  local nb = ctx.cols:numel()
  local l
  fvl.no_grad(function()
    if pending(cos) then
      local x, W, src = lazy_src(cos)
      x, W = x:detach(), W:detach()
      local parts = {}
      for r0 = 1, nb, ctx.chunk do
        local m = math.min(ctx.chunk, nb - r0 + 1)
        local b = { x = x:narrow(1, r0, m), W = W, b = src.bias and src.bias:detach(),
                    linear = src.scores == "linear", K = src.groups }
        parts[#parts + 1] = neg_lse_part(ctx, whole(b), r0, m, s)
      end
      l = #parts == 1 and parts[1] or fvl.cat(parts, 1)
    else
      l = neg_lse_part(ctx, unlazy(cos):detach(), 1, nb, s)
    end
  end)
  local m = l:clone()
  dist.allreduce(m, "max")
  local e = (l - m):exp()
  dist.allreduce(e, "sum")
  return m + e:log()
end

-- the primitives that read per-class rows at the targets: gather_rows, disc_dist, center_dist,
-- center_update (each rank its own targets' rows)
local function add_target_ops(S, ctx)
  local F = fvl.F
  -- rows of a per-class tensor (W: the columns in use; others: this rank's slice) at the targets;
  -- rows whose target another rank holds are 0
  function S.gather_rows(T, y)
    local src = T == ctx.weight and ctx.W or T
    local safe, mask = F._target_mask(T == ctx.weight and ctx.cols or ctx.rows, src:size(1), ctx.name)
    return F.gather_rows(src, safe) * mask:reshape(mask:numel(), 1)
  end
  -- mean over the gathered rows of |x̂_i − ŵ_{y_i} − ξ_i|: each rank its own targets' rows
  function S.disc_dist(x, W, y, xi)
    local own, oc, _, w = own_rows(ctx)
    local nb = x:size(1)
    local xi_o
    if xi:dim() == 2 and xi:size(1) == nb then
      xi_o = xi:index(1, own)
    else
      xi_o = dist.copy(xi)   -- a shared ξ: its gradient is summed over the ranks
    end
    local d = F.disc_dist(cols_x(ctx, x):index(1, own), W == ctx.weight and ctx.W or W, oc, xi_o)
    return dist.sum(d * (w * own:numel() / nb))
  end
  function S.center_dist(x, cen, y)
    local own, _, orow, w = own_rows(ctx)
    return dist.sum(F.center_dist(cols_x(ctx, x):index(1, own), cen, orow) * w)
  end
  function S.center_update(cen, x, y, alpha)
    local own, _, orow, w = own_rows(ctx)
    if w > 0 then F.center_update(cen, x:index(1, own), orow, alpha) end
    return cen
  end
end

-- the fvl.F that a sharded head's forward sees (base.active): the sharded primitives, and an error
-- naming any other
local function make_F(ctx)
  local S = {}
  add_score_ops(S, ctx)
  function S.neg_lse(cos, y, s) return neg_lse(ctx, cos, s) end
  add_target_ops(S, ctx)
  return setmetatable(S, { __index = function(_, k)
    fail(string.format("%s: fvl.F.%s has no sharded version (sharded = true / partial_fc work on the heads " ..
                       "built from cosine, linear_logits, margin_ce, target_cos, hard_mean, gather_rows, " ..
                       "disc_dist, center_dist, center_update)", ctx.name, tostring(k)))
  end })
end

-- ------------------------------------------------------------------ one step
local function labels_of(self, x, labels)
  local name = self.name
  if not util.is_tensor(x) or x:dtype() ~= "float32" or x:dim() ~= 2 then
    fail(string.format("%s: x must be a B×D float32 tensor, got %s", name,
                       util.is_tensor(x) and (x:dtype() .. " " .. util.shape_str(x)) or type(x)))
  end
  local B = x:size(1)
  if B == 0 then fail(string.format("%s: empty batch (x is %s)", name, util.shape_str(x))) end
  if x:size(2) ~= self.dim then
    fail(string.format("%s: x is %s but the head expects %d×%d (dim = %d)", name, util.shape_str(x), B,
                       self.dim, self.dim))
  end
  -- the one label check (the binding's): 1..C, one per row; a checked value (fvl.Labels)
  return fvl._check_labels(labels, name, B, self.classes)
end

-- the sampled rows of this slice (a sorted int32 tensor of 1-based local rows), or nil for the
-- whole slice; positives: the slice's rows that are targets (Partial FC's draw, when it runs)
local function sample_rows(self, yg, given, positives)
  local sh = self.shard
  if given ~= nil then   -- checked against the gathered labels and converted in one pass in C (errors
    util.check_tensor(self.name, "sample", given, "int32")   -- name the head, 1-based; the same on every rank)
    return fvl.F._given_sample(given, yg, sh.first, sh.n, sh.classes, self.name)
  end
  if not positives then return nil end
  local rows = fvl.F.pfc_sample(positives, sh.num_sample, sh.seed, sh.counter)
  sh.counter = sh.counter + sh.n
  return rows
end

function M.forward(self, x, labels, call)
  local name = self.name
  local rest   -- the call options other than sample go to the head's own forward
  if call ~= nil then
    if type(call) ~= "table" then fail(string.format("%s: call options must be a table, got %s", name, type(call))) end
    for k, v in pairs(call) do
      if k ~= "sample" then rest = rest or {}; rest[k] = v end
    end
  end
  local sh = self.shard
  local y = labels_of(self, x, labels)
  local xg = sh.sharded and dist.allgather(x, { grad = "slice" }) or x
  local yg = y
  if sh.sharded and sh.size > 1 then   -- the ranks' checked labels, checked as the gathered batch:
    yg = dist.allgather(y)              -- every part against 1..C (fvl.dist compares the C), no scan
  end
  -- each gathered row's target in this slice (1-based local row, 0 = another rank), in C
  local pfc = sh.rate ~= nil and self.training and (call == nil or call.sample == nil)   -- a draw this step
  local rows, positives = fvl.F._slice_targets(yg, sh.first, sh.n, pfc)
  local ctx = { name = name, weight = self.weight, W = self.weight, b = self.bias, rows = rows, n = sh.n, K = sh.K,
                xg = sh.sharded and sh.size > 1 and xg or nil }
  local sample = sample_rows(self, yg, call and call.sample, positives)
  local cols = rows
  self._pfc = nil
  if sample then
    local idx   -- the sampled classes' rows of W (K rows per class)
    cols, idx = fvl.F._sample_cols(rows, sample, sh.K)
    local sub = self.weight:detach():index(1, idx):contiguous():detach()
    sub:requires_grad()
    ctx.W = sub
    self._pfc = { rows = idx, weight = sub }
    util.row_grads[self.weight] = { rows = idx, param = sub }
    if self.bias then
      local bsub = self.bias:detach():index(1, idx):contiguous():detach()
      bsub:requires_grad()
      ctx.b = bsub
      self._pfc.bias = bsub
      util.row_grads[self.bias] = { rows = idx, param = bsub, vector = true }
    end
  else
    util.row_grads[self.weight] = nil
    if self.bias then util.row_grads[self.bias] = nil end
  end
  -- Partial FC's loss is insightface's: −log max(p_y, 1e-30) per row (capped rows: no gradient)
  ctx.cap = sh.rate and -math.log(1e-30) or 0
  ctx.cols = cols
  self._ws_cols = ctx.W:size(1)
  -- row chunks of the gathered batch (shard_chunk; by default this rank's batch size B when the
  -- world has several ranks): only chunk × C_local cosines at a time, recomputed in the backward
  local chunk = sh.chunk
  if chunk == nil then chunk = sh.sharded and sh.size > 1 and x:size(1) or 0 end
  ctx.chunk = chunk > 0 and chunk < xg:size(1) and chunk or nil
  self._no_ws = ctx.chunk ~= nil
  local base = require "fvl.loss.base"
  local prev = base.active
  base.active = make_F(ctx)
  local ok, res = pcall(self._inner_forward, self, xg, yg, rest)
  base.active = prev
  sh.chunked = ctx.fused or false   -- this step ran in row chunks (the fused op)
  if not ok then error(res, 0) end
  return res
end

-- ------------------------------------------------------------------ whole-head views
-- rows of every rank's n_r×k tensor t stacked in rank order (C×k on every rank)
local function gather_parts(sh, t)
  if not sh.sharded or sh.size == 1 then return t:detach():clone() end
  local k = t:size(1) // sh.n   -- rows per class: K for Sub-center ArcFace's weight, else 1
  local q = (sh.classes // sh.size + (sh.classes % sh.size > 0 and 1 or 0)) * k   -- the largest part
  local shape = t:shape()
  shape[1] = q
  local pad = fvl.zeros(table.unpack(shape))
  pad:narrow(1, 1, sh.n * k):copy(t:detach())
  local all = dist.allgather(pad)
  local parts = {}
  for r = 0, sh.size - 1 do
    local _, n = dist.part(sh.classes, r, sh.size)
    parts[#parts + 1] = all:narrow(1, r * q + 1, n * k)
  end
  return fvl.cat(parts, 1):detach()
end

-- any per-class tensor of a sharded head (this rank's rows) as the whole-head tensor
function M.gather(self, t) return gather_parts(self.shard, t) end

-- full C×D centres on every rank (for export / evaluation; a collective: every rank calls it)
function M.gather_weight(self) return gather_parts(self.shard, self.weight) end

-- full C×D gradient of the centres (zeros where no gradient), after backward
function M.gather_weight_grad(self)
  local g = self.weight.grad
  local rg = self._pfc
  if rg and rg.weight.grad then
    g = fvl.zeros(self.weight:shape())
    fvl.F.copy_rows(g, rg.rows, rg.weight.grad:contiguous())
  end
  return gather_parts(self.shard, g or fvl.zeros(self.weight:shape()))
end

-- evaluation scores: this rank's columns of the unsharded head's scores
function M.raw_logits(inner)
  return function(self, x)
    return inner(self, x)
  end
end

-- predicted class ids (1-based, global) of each row of x: the best column over the ranks
function M.predict(self, x)
  local sh = self.shard
  local xg = sh.sharded and dist.allgather(x:detach()) or x
  local z = self:logits(xg)
  local mx = z:max(2):reshape(z:size(1))
  local arg = z:argmax(2):reshape(z:size(1))
  local gm = mx:clone()
  dist.allreduce(gm, "max")
  local cand = {}
  local ml, gl, al = mx:totable(), gm:totable(), arg:totable()
  for i = 1, #ml do cand[i] = ml[i] == gl[i] and (al[i] + sh.first - 1) or (sh.classes + 1) end
  local c = fvl.tensor(cand, "int32")
  dist.allreduce(c, "min")
  local B = x:size(1)
  if not sh.sharded then return c end
  return c:narrow(1, sh.rank * B + 1, B)
end

return M
