-- scripts/bench/dist_heads.lua — a sharded head (fvl.loss.arcface{sharded = true}, or --head NAME)
-- under mpirun on this machine: per-rank peak memory and step time (forward, backward, SGD momentum
-- step of the centres) for C classes, np ranks, with and without Partial FC, and the per-rank
-- memory extrapolated to cluster sizes.
--
--   fvl scripts/bench/dist_heads.lua                          -- C = 1,000,000 and 2,000,000, np = 1, 2, 4
--   fvl scripts/bench/dist_heads.lua --C 100000 --np 1,2 --pfc 0,0.1 --steps 3 --max-gb 8
--   fvl scripts/bench/dist_heads.lua --head npcface --C 100000   -- another head (default arcface)
--
-- D = 512, B = 256 per rank (the gathered batch is np·256 rows). Each configuration runs as one
-- `mpirun -np N` job (oversubscribed on this machine's cores, threads = cores / N per rank): the
-- step times show the work per rank, not a cluster's speed; the per-rank memory is the point.
-- Memory: the engine's peak bytes during the timed steps (fvl.mem) and the process's VmHWM, the
-- largest over the ranks. "model" is the per-rank formula the extrapolation uses:
--   3·(C/N)·D·4 bytes (W, W.grad, momentum; with Partial FC W.grad is the K sampled rows only)
--   + 2·R·K·4 (the cosine and gradient buffers, K = C/N or rate·C/N columns, R rows: the chunk
--     of gathered rows, by default B on several ranks (shard_chunk), N·B with --chunk 0)
--   + 4·(N·B)·D·4 (the gathered embeddings, their normalised copy and gradients)
-- A configuration whose model needs more than max_gb in all (default: 60% of MemAvailable) is
-- not run (the machine is shared): its line says so and shows the model only.
-- "ms/step" is the whole step (forward, backward, optimiser, between barriers), "head ms" the
-- forward and backward alone. Partial FC target: the head at C = 1,000,000, np = 1 within 1.3× of
-- its three sampled GEMMs ("ratio" = head ms / GEMM ms)
-- (B×D·D×K, B×K·K×D, K×B·B×D with K = 0.1·C, fvl.matmul, measured in the same run).
local fvl = fvl or require "fvl"

local cli = require "fvl.cli"
local util = require "fvl.util"
local parser = cli.parser("fvl scripts/bench/dist_heads.lua",
  "The sharded ArcFace head under mpirun: per-rank peak memory and step time, with and without Partial FC.")
parser:option("--C", "classes, comma separated (default 1000000,2000000)")
parser:option("--np", "ranks, comma separated (default 1,2,4)")
parser:option("--pfc", "Partial FC rates, comma separated (default 0,0.1)")
parser:option("--steps", "timed steps", "2"):convert(cli.integer("steps", 1))
parser:option("--warmup", "warm-up steps", "1"):convert(cli.integer("warmup", 0))
parser:option("--B", "batch per rank", "256"):convert(cli.integer("B", 1))
parser:option("--D", "embedding dimension", "512"):convert(cli.integer("D", 1))
parser:option("--max-gb", "skip configurations whose model needs more (default 60% of MemAvailable)")
  :convert(cli.number("max-gb", 0))
parser:option("--gemm", "0: skip the sampled-GEMM comparison", "1"):convert(cli.integer("gemm", 0, 1))
parser:option("--chunk", "shard_chunk of the heads: gathered rows per chunk, 0 = all at once (default: the head's, B on several ranks)")
  :convert(cli.integer("chunk", 0))
parser:option("--head", "the head (sharded = true)", "arcface")
  :choices { "arcface", "cosface", "curricularface", "npcface", "subcenter_arcface", "softmax", "center" }
parser:flag("--one", "one rank's run (used by the driver)")
local args = parser:parse(arg or {})
-- one rank's run gets single values
if args.one then
  args.C = tonumber(args.C)
  args.pfc = tonumber(args.pfc)
end
local B, D = args.B, args.D

local function list(v, default)
  if v == nil then return default end
  local out = {}
  for s in tostring(v):gmatch("[^,]+") do out[#out + 1] = tonumber(s) end
  return out
end


-- per-rank bytes of the model above (Sub-center ArcFace: G = 3 rows of W per class, and per chunk
-- the R × G·K cosines besides the R × K max and its gradient; Center: its C/N × D centres too)
local function model_bytes(C, N, rate, chunk, head)
  local G = head == "subcenter_arcface" and 3 or 1
  local Cl = math.ceil(C / N)
  local K = rate and rate > 0 and math.floor(rate * Cl) or Cl
  local grad_rows = (rate and rate > 0) and K or Cl
  if chunk == nil then chunk = N > 1 and B or 0 end
  local R = (chunk > 0 and chunk < N * B) and chunk or N * B
  local bufs = G > 1 and R * K * (G + 2) or 2 * R * K
  local extra = head == "center" and Cl * D * 4 or 0
  return (2 * Cl + grad_rows) * G * D * 4 + bufs * 4 + 4 * (N * B) * D * 4 + extra
end

-- ------------------------------------------------------------------ one rank of one configuration
if args.one then
  local dist = fvl.dist
  local C, rate = args.C, args.pfc and args.pfc > 0 and args.pfc or nil
  local rank, N = dist.rank(), dist.size()
  fvl.manual_seed(1)
  local head = fvl.loss[args.head] { dim = D, classes = C, sharded = true, partial_fc = rate, shard_chunk = args.chunk }
  local opt = fvl.optim.sgd(head, { lr = 0.1, momentum = 0.9, weight_decay = 5e-4 })
  fvl.manual_seed(100 + rank)
  local x = fvl.randn(B, D)
  x:requires_grad()
  local y = fvl.randint(C, { B })
  -- one step: the whole step (barrier to barrier) and the head alone (forward + backward)
  local function step()
    dist.barrier()
    local t0 = fvl.clock()
    opt:zero_grad()
    x.grad = nil
    local loss = head(x, y)
    loss:backward()
    local t1 = fvl.clock()
    opt:step()
    dist.barrier()
    return fvl.clock() - t0, t1 - t0
  end
  for _ = 1, args.warmup do step() end
  collectgarbage()
  fvl.mem(true)
  local best, besth = math.huge, math.huge
  for _ = 1, args.steps do
    local t, th = step()
    best, besth = math.min(best, t), math.min(besth, th)
  end
  local peak = fvl.mem().peak / 2 ^ 20
  -- the three GEMMs of the step's columns (sampled ones with Partial FC), one process only
  local gms = 0
  if N == 1 and args.gemm ~= 0 then
    local K = head._ws_cols or head.weight:size(1)
    local a, w, g = fvl.randn(B, D), fvl.randn(K, D), fvl.randn(B, K)
    gms = math.huge
    for _ = 1, args.steps do
      fvl.no_grad(function()
        local t0 = fvl.clock()
        local z = fvl.matmul(a, w:t())
        local dx = fvl.matmul(g, w)
        local dw = fvl.matmul(g:t(), a)
        gms = math.min(gms, fvl.clock() - t0)
        z:free(); dx:free(); dw:free()
      end)
    end
    a:free(); w:free(); g:free()
  end
  io.write(string.format("RESULT %d %d %.1f %.1f %.4f %.4f %.4f %d\n", rank, N, peak, util.vmhwm_mb(), best, gms, besth,
                         head.shard.chunked and 1 or 0))
  io.flush()
  return
end

-- ------------------------------------------------------------------ the driver
local function mem_available_gb()
  local fh = io.open("/proc/meminfo")
  if not fh then return 8 end
  local s = fh:read("a")
  fh:close()
  return (tonumber(s:match("MemAvailable:%s*(%d+)")) or 8e6) / 2 ^ 20
end
local max_gb = args.max_gb or 0.6 * mem_available_gb()
local Cs = list(args.C, { 1000000, 2000000 })
local NPs = list(args.np, { 1, 2, 4 })
local rates = list(args.pfc, { 0, 0.1 })
local exe = arg and arg[-1] or "fvl"
local script = arg and arg[0] or "scripts/bench/dist_heads.lua"
local cores = fvl.sys and fvl.sys.cpu_count and fvl.sys.cpu_count() or 2
local load = tonumber((fvl.util.loadavg()))

print(string.format("dist_heads.lua: " .. args.head .. " sharded, D=%d, B=%d per rank, SGD momentum; best of %d steps after %d " ..
                    "warm-up; %d cores%s; runs needing more than %.1f GB in all are skipped", D, B, args.steps,
                    args.warmup, cores, load and string.format(", load average %.1f at start", load) or "", max_gb))
print(string.format("%9s %3s %5s %9s %9s %10s %10s %10s %10s %8s %7s", "C", "np", "pfc", "ms/step", "head ms", "peak MB",
                    "VmHWM MB", "model MB", "GEMM ms", "ratio", "rows"))
local env = "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,vader " ..
            "OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_rmaps_base_oversubscribe=1 " ..
            "OMPI_MCA_hwloc_base_binding_policy=none"
-- the Partial FC runs first (a tenth of the work), then the full heads
local order = {}
for _, r in ipairs(rates) do if r > 0 then order[#order + 1] = r end end
for _, r in ipairs(rates) do if r == 0 then order[#order + 1] = r end end
for _, r in ipairs(order) do
  for _, C in ipairs(Cs) do
    for _, N in ipairs(NPs) do
      local model = model_bytes(C, N, r, args.chunk, args.head) / 2 ^ 20
      local tag = string.format("%9d %3d %5s", C, N, r > 0 and tostring(r) or "-")
      if model * N / 1024 > max_gb then
        print(string.format("%s %9s %9s %10s %10s %10.0f   skipped: needs ~%.1f GB in all here", tag, "-", "-", "-", "-", model,
                            model * N / 1024))
      else
        local threads = math.max(1, cores // N)
        local cmd = string.format("%s FVL_THREADS=%d mpirun --oversubscribe -np %d -x FVL_THREADS %s %s --one --C %d " ..
                                  "--pfc %s --B %d --D %d --steps %d --warmup %d --gemm %d --head %s%s 2>&1", env, threads, N, exe, script,
                                  C, r, B, D, args.steps, args.warmup, args.gemm, args.head, args.chunk and (" --chunk " .. args.chunk) or "")
        local p = io.popen(cmd)
        local out = p:read("a")
        p:close()
        local pk, hwm, ms, gms, hms, got, chunked = 0, 0, 0, 0, 0, 0, "whole"
        for _, _, mp, mh, t, g, th, ck in out:gmatch("RESULT (%d+) (%d+) (%S+) (%S+) (%S+) (%S+) (%S+) (%d)") do
          got = got + 1
          if ck == "1" then chunked = "chunks" end
          pk, hwm = math.max(pk, tonumber(mp)), math.max(hwm, tonumber(mh))
          ms, gms = math.max(ms, tonumber(t) * 1e3), math.max(gms, tonumber(g) * 1e3)
          hms = math.max(hms, tonumber(th) * 1e3)
        end
        if got == N then   -- ratio: the head (forward + backward) over its three GEMMs
          print(string.format("%s %9.0f %9.0f %10.0f %10.0f %10.0f %10s %8s %7s", tag, ms, hms, pk, hwm, model,
                              gms > 0 and string.format("%.0f", gms) or "-",
                              gms > 0 and string.format("%.2f", hms / gms) or "-", chunked))
        else
          print(string.format("%s failed: %s", tag, (out:gsub("\n", " ")):sub(1, 300)))
        end
      end
      io.stdout:flush()
    end
  end
end

-- per-rank memory of the head at cluster sizes (the model above; B = 256 per rank)
print("\nper-rank head memory (model, GB) at B=256 per rank, D=512: full softmax / Partial FC 0.1")
local clusterC = { 2000000, 5500000, 8000000, 10000000 }
local clusterN = { 8, 16, 32, 64 }
io.write(string.format("%10s", "C \\ ranks"))
for _, N in ipairs(clusterN) do io.write(string.format(" %15s", N)) end
io.write("\n")
for _, C in ipairs(clusterC) do
  io.write(string.format("%10d", C))
  for _, N in ipairs(clusterN) do
    io.write(string.format(" %7.2f / %5.2f", model_bytes(C, N, 0, nil, args.head) / 2 ^ 30,
                           model_bytes(C, N, 0.1, nil, args.head) / 2 ^ 30))
  end
  io.write("\n")
end
