-- MegaFace rank-1 with distractors and k-means: wall time, scores/s and GFLOP/s of
-- fvl.eval.megaface_rank1 (probes × distractors in sgemm blocks) and of fvl.eval.kmeans.
--
--   fvl scripts/bench/megaface.lua [--probes 3530] [--distractors 100000] [--dim 512] [--threads 2]
--                                  [--kmeans-n 10000] [--kmeans-k 100] [--kmeans-dim 128]
--
-- Synthetic features: 80 identities (FaceScrub's MegaFace subset has 80 people, ~3,530 images)
-- around random centres, distractors N(0, I). Printed: the wall time of one megaface_rank1 call
-- (rank-1, rank-10, TAR@FAR=1e-6 when #impostors >= 10^6), probe·distractor scores per second,
-- the sgemm's GFLOP/s (2·P·N·D flops over the whole call) and its fraction of the FMA peak
-- (threads × fvl._bench.fma_peak()), the engine's peak memory (fvl.mem: the distractor matrix
-- itself plus a few MB, never P × N), and the extrapolated time at 10^6 distractors; then one
-- k-means (k-means++ seeding + Lloyd to convergence) with its iterations and time. The machine
-- is shared: the load average is printed beside the figures.
local cli = require "fvl.cli"
local parser = cli.parser("fvl scripts/bench/megaface.lua",
  "MegaFace rank-1 with distractors and k-means: wall time, scores/s and GFLOP/s of fvl.eval.megaface_rank1 and fvl.eval.kmeans.")
parser:option("--probes", "probe images (80 identities)", "3530"):convert(cli.integer("probes", 2))
parser:option("--distractors", "distractor features", "100000"):convert(cli.integer("distractors", 1))
parser:option("--dim", "feature size", "512"):convert(cli.integer("dim", 1))
parser:option("--threads", "threads", "2"):convert(cli.integer("threads", 1))
parser:option("--kmeans-n", "k-means rows (0: skip)", "10000"):convert(cli.integer("kmeans-n", 0))
parser:option("--kmeans-k", "k-means clusters", "100"):convert(cli.integer("kmeans-k", 1))
parser:option("--kmeans-dim", "k-means feature size", "128"):convert(cli.integer("kmeans-dim", 1))
local opts = parser:parse(arg or {})
fvl.threads(opts.threads)

local function loadavg()
  local f = io.open("/proc/loadavg")
  local s = f and f:read("l") or "?"
  if f then f:close() end
  return s
end

fvl.manual_seed(1)
local P, N, D = opts.probes, opts.distractors, opts.dim
local labels = {}
for i = 1, P do labels[i] = (i - 1) % 80 + 1 end
local probes = fvl.randn(80, D):index(1, fvl.tensor(labels, "int32")) + fvl.randn(P, D) * 1.5
local distractors = fvl.randn(N, D)
fvl.mem(true)
local t0 = fvl.sys.time()
local r = fvl.eval.megaface_rank1(probes, labels, distractors, { k = { 10 } })
local dt = fvl.sys.time() - t0
local peak = fvl.mem().peak
local gflops = 2 * P * N * D / dt / 1e9
local fma = fvl._bench and fvl._bench.fma_peak and fvl._bench.fma_peak() or nil
print(string.format("megaface_rank1: %d probes × %d distractors × %d dims, %d threads, load %s", P, N, D,
                    fvl.threads(), loadavg()))
print(string.format("  %.2f s  %.3g scores/s  sgemm %.1f GFLOP/s%s  peak engine memory %.0f MB (distractors %.0f MB)",
                    dt, P * N / dt, gflops,
                    fma and string.format(" (%.0f %% of %d × %.1f GFLOP/s FMA peak)", 100 * gflops / (fma * fvl.threads()),
                                          fvl.threads(), fma) or "",
                    peak / 2^20, N * D * 4 / 2^20))
print(string.format("  rank-1 %.4f  rank-10 %.4f  over %d pairs%s;  at 10^6 distractors ≈ %.0f s", r.rank1, r.rank10,
                    r.n_pairs, r.tar_at_far[1e-6] and string.format("  TAR@FAR=1e-6 %.4f", r.tar_at_far[1e-6]) or "",
                    dt * 1e6 / N))
if opts.kmeans_n > 0 then
  local n, k, d = opts.kmeans_n, opts.kmeans_k, opts.kmeans_dim
  local lab = {}
  for i = 1, n do lab[i] = (i - 1) % k + 1 end
  local x = fvl.randn(k, d):index(1, fvl.tensor(lab, "int32")) * 0.5 + fvl.randn(n, d)
  local t1 = fvl.sys.time()
  local a, _, inertia, iters = fvl.eval.kmeans(x, k, { seed = 1 })
  local kt = fvl.sys.time() - t1
  print(string.format("kmeans: %d × %d into %d clusters, %d threads, load %s", n, d, k, fvl.threads(), loadavg()))
  print(string.format("  %.2f s  %d iterations  inertia %.6g  NMI vs the generating classes %.4f", kt, iters, inertia,
                      fvl.eval.nmi(lab, a)))
end
