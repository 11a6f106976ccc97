-- Run under mpirun (tests/cli/dist_labels.sh) and plainly: a sharded head's step scans its labels
-- once, at any world size: the local check (before any collective, so a bad id is this rank's
-- error first). The gathered batch's labels are the all-gather of the ranks' checked values
-- (fvl.dist.allgather of fvl.Labels: checked again without a scan, the ranks' class bounds
-- compared), and the sharded primitives (AdaCos's B_avg, DiscFace's ξ and distances, Center's
-- distances and update) take checked values made in C. fvl._label_scans() counts the scans.
local dist = fvl.dist
local rank, N = dist.rank(), dist.size()
local C, D, B = 11, 8, 4
local checks = 0
local function expect(ok, fmt, ...)
  if not ok then error(string.format("rank %d: " .. fmt, rank, ...), 2) end
  checks = checks + 1
end
local function scans(fn)
  local before = fvl._label_scans()
  fn()
  return fvl._label_scans() - before
end

-- fvl.dist.allgather of checked labels: the gathered ids, a checked value, no scan
fvl.manual_seed(1)
local ys = fvl.randint(1, C, { N * B })
local yl = ys:narrow(1, rank * B + 1, B):contiguous()
local y = fvl._check_labels(yl, "test", B, C)
local yg
expect(scans(function() yg = dist.allgather(y) end) == 0, "allgather of checked labels scanned them")
expect(getmetatable(yg) == "fvl.Labels", "allgather of checked labels gave %s", tostring(yg))
expect(yg:numel() == N * B and yg:classes() == C, "gathered: %s", tostring(yg))
local got, want = yg:totable(), ys:totable()
for i = 1, N * B do expect(got[i] == want[i], "gathered label %d = %d, expected %d", i, got[i], want[i]) end
local ok, err = pcall(dist.allgather, y, { bogus = true })
expect(not ok and tostring(err):find("bogus", 1, true), "an unknown option: %s", tostring(err))
if N > 1 then   -- one rank checked against other classes: the same error on every rank, no hang
  local other = fvl._check_labels(yl, "test", B, rank == N - 1 and C + 1 or C)
  ok, err = pcall(dist.allgather, other)
  local msg = string.format("rank 0's labels were checked against 1..%d but rank %d's against 1..%d", C, N - 1, C + 1)
  expect(not ok and tostring(err):find(msg, 1, true), "bounds that differ: %s", tostring(err))
  ok, err = pcall(dist.allgather, rank == 0 and yl or y)   -- a tensor on one rank: an error on all
  expect(not ok, "a tensor on rank 0, checked labels elsewhere: no error")
end

-- the target maps made in C equal the Lua lists they replace (the sharded heads' values are
-- unchanged, bit for bit): this rank's slice of the gathered labels, without and with a sample
local function same(a, b, what)
  expect(#a == #b, "%s: %d entries, expected %d", what, #a, #b)
  for i = 1, #b do expect(a[i] == b[i], "%s[%d] = %s, expected %s", what, i, tostring(a[i]), tostring(b[i])) end
end
local first, n = dist.part(C, rank, N)
local rows = fvl.F._slice_targets(yg, first, n)
local sample = fvl.tensor(n > 1 and { 1, n } or { 1 }, "int32")
for k, cols in ipairs { rows, (fvl.F._sample_cols(rows, sample, 1)) } do
  local c, r = cols:totable(), rows:totable()
  local ncols = k == 1 and n or sample:numel()
  local own, oc, orow = {}, {}, {}
  for i = 1, #c do
    if c[i] > 0 then own[#own + 1] = i; oc[#oc + 1] = c[i]; orow[#orow + 1] = r[i] end
  end
  local w = 1
  if #own == 0 then own, oc, orow, w = { 1 }, { 1 }, { 1 }, 0 end
  local o, ocl, orl, wl = fvl.F._own_rows(cols, rows, ncols, n, "test")
  same(o:totable(), own, "own")
  same(ocl:totable(), oc, "own columns")
  same(orl:totable(), orow, "own rows")
  expect(wl == w and getmetatable(ocl) == "fvl.Labels" and ocl:classes() == ncols and orl:classes() == n,
         "own_rows: w = %s, %s, %s", tostring(wl), tostring(ocl), tostring(orl))
  local safe, mask = fvl.F._target_mask(cols, ncols, "test")
  local sl, ml = {}, {}
  for i = 1, #c do sl[i], ml[i] = c[i] > 0 and c[i] or 1, c[i] > 0 and 1 or 0 end
  same(safe:totable(), sl, "safe columns")
  same(mask:totable(), ml, "mask")
end
local o, _, _, w0 = fvl.F._own_rows(fvl.zeros({ 3 }, "int32"), fvl.zeros({ 3 }, "int32"), 2, 2, "test")
same(o:totable(), { 1 }, "own of none")
expect(w0 == 0, "own of none: w = %s", tostring(w0))
ok, err = pcall(fvl.F._own_rows, fvl.tensor({ 3 }, "int32"), fvl.tensor({ 1 }, "int32"), 2, 2, "test")
expect(not ok and tostring(err):find("cols[1] = 3", 1, true), "a column past the bound: %s", tostring(err))
ok, err = pcall(fvl.F._own_rows, fvl.tensor({ 1 }, "int32"), fvl.tensor({ 0 }, "int32"), 2, 2, "test")
expect(not ok and tostring(err):find("a row for every column", 1, true), "a column without a row: %s", tostring(err))
ok, err = pcall(fvl.F._target_mask, fvl.tensor({ 0, -1 }, "int32"), 2, "test")
expect(not ok and tostring(err):find("cols[2] = -1", 1, true), "a negative column: %s", tostring(err))

-- one scan per training step of every sharded head that gathers labels, in row chunks (the
-- default with several ranks) and whole; a checked value: none
local HEADS = {
  { "arcface", { s = 16 } }, { "adacos", { dynamic = true } }, { "adacos", { dynamic = false } },
  { "discface", { s = 16 } }, { "discface", { s = 16, per_class_xi = true, base = "arc" } },
  { "center", { lambda = 0.1 } }, { "subcenter_arcface", { s = 16, K = 2 } }, { "npcface", { s = 16 } },
  { "arcface", { s = 16, partial_fc = 0.5 } }, { "cosface", { s = 16, partial_fc = 1.0 } },
}
for _, h in ipairs(HEADS) do
  for _, chunk in ipairs { false, 0 } do
    local o = { dim = D, classes = C, sharded = true, shard_chunk = chunk or nil }
    for k, v in pairs(h[2]) do o[k] = v end
    fvl.manual_seed(7)
    local head = fvl.loss[h[1]](o)
    local tag = h[1] .. (o.partial_fc and " partial_fc" or "") .. (chunk and " shard_chunk=0" or "")
    for step = 1, 2 do
      fvl.manual_seed(100 + step)
      local x = fvl.randn(B, D)
      x:requires_grad()
      local n = scans(function() head(x, yl):backward() end)
      expect(n == 1, "%s step %d: %d label scans (expected 1, the local check)", tag, step, n)
    end
    local x = fvl.randn(B, D)
    local n = scans(function() head(x, y) end)
    expect(n == 0, "%s: %d label scans of a checked value", tag, n)
  end
end
-- Partial FC with a given sample (head(x, y, {sample = ...})): checked against the gathered labels
-- and turned into this slice's rows in one pass in C (F._given_sample); classes of other ranks'
-- slices dropped here, the same as the Lua lists it replaced; a label left out is the same error on
-- every rank (checked against the whole gathered batch, before any other collective: no hang)
local inS, given = {}, {}
for _, c in ipairs(ys:totable()) do inS[c] = true end
for c = 1, C do if inS[c] or c % 3 == 0 then given[#given + 1] = c end end
local gs = fvl.tensor(given, "int32")
local want_rows = {}
for _, c in ipairs(given) do
  if c >= first and c < first + n then want_rows[#want_rows + 1] = c - first + 1 end
end
same(fvl.F._given_sample(gs, yg, first, n, C, "test"):totable(), want_rows, "given sample rows")
local pf = fvl.loss.arcface { dim = D, classes = C, sharded = true, partial_fc = 0.5, s = 16 }
for step = 1, 2 do
  local xs = fvl.randn(B, D)
  xs:requires_grad()
  local n1 = scans(function() pf(xs, yl, { sample = gs }):backward() end)
  expect(n1 == 1, "given sample step %d: %d label scans (expected 1)", step, n1)
  same(pf._pfc.rows:totable(), want_rows, "given sample: the head's sampled rows")
end
local y1 = ys:totable()[1]
local short = {}
for _, c in ipairs(given) do if c ~= y1 then short[#short + 1] = c end end
ok, err = pcall(pf, fvl.randn(B, D), yl, { sample = fvl.tensor(short, "int32") })
expect(not ok and tostring(err):find(string.format("arcface: the sample misses class %d, the label of gathered row 1 " ..
       "(every positive must be sampled)", y1), 1, true), "a label not sampled: %s", tostring(err))
ok, err = pcall(pf, fvl.randn(B, D), yl, { sample = fvl.tensor({ given[2], given[1] }, "int32") })
expect(not ok and tostring(err):find(string.format("arcface: sample[2] = %d (expected sorted, distinct class ids in 1..%d)",
       given[1], C), 1, true), "an unsorted sample: %s", tostring(err))

local cp = fvl.loss.circle_pairwise { dim = D, sharded = true }
local x = fvl.randn(B, D)
x:requires_grad()
local n = scans(function() cp(x, fvl.randint(1, 3, { B })):backward() end)
expect(n == 1, "circle_pairwise: %d label scans (expected 1)", n)

dist.barrier()
if rank == 0 then print(string.format("labels ok %d checks on %d ranks", checks, N)) end
