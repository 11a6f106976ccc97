-- sweep_margins.lua — a real sweep on synthetic faces: ArcFace and CosFace, margin × margin
-- schedule (constant, linear warm-up, cosine ramp) × scale, with successive halving on the
-- verification accuracy of unseen identities: 36 trials of 4500 SGD steps (batch 128, 7 epochs
-- of 80,000 samples of 2,000 identities), halved at 1/9 and 1/3 of the way (36 → 12 → 4 trained
-- to the end, ≈ 9.3 full trainings, ~5 CPU-minutes); about 2.5 minutes with 2 workers on
-- 2 idle cores. --quick: a 15-second smoke run. (With fewer identities and longer training the
-- accuracy on unseen identities falls after its peak: the nets overfit the training identities.)
-- Then the --confirm (4) best configurations are trained again with seeds 1..--seeds (3): 12 more
-- full trainings in <store>_seeds.sqlite, printed as mean ± std over the seeds. Every finished
-- trial stores its collapse diagnostics as metrics (norm_mean, norm_std, mrl_x, mrl_centres,
-- min_centre_angle, min_recall on the training identities, collapsed = 0/1).
--
--   build/fvl scripts/sweep_margins.lua [--quick] [--workers N] [--store PATH|URL] [--steps N]
--                                       [--seeds N] [--confirm K]
--
-- Run it again to resume. Results: the leaderboard (printed), <store>.csv, and plots
-- <store>.<hyperparameter>.png / <store>.curves.png when fvl.plot.lines is available (runs/
-- sweep_margins.* for a PostgreSQL store). Several machines (a Slurm array): give every task the
-- same shared store, --store postgresql://user@host/db; successive halving refuses SQLite shards.
local fvl = fvl or require "fvl"

-- ------------------------------------------------------------------ command line
local cli = require "fvl.cli"
local parser = cli.parser("fvl scripts/sweep_margins.lua",
  "A real sweep on synthetic faces: ArcFace and CosFace, margin x margin schedule x scale, with " ..
  "successive halving on the verification accuracy of unseen identities. Run it again to resume.")
parser:flag("--quick", "a 15-second smoke run")
parser:option("--workers", "worker processes", "2"):convert(cli.integer("workers", 1))
parser:option("--store", "the sweep's store: a SQLite file (default runs/sweep_margins[_quick].sqlite) or postgresql://...")
parser:option("--steps", "steps of a full trial"):convert(cli.integer("steps", 9))
parser:option("--seeds", "seeds of the confirmation stage: the finalists trained again with seeds 1..N", "3")
  :convert(cli.integer("seeds", 1))
parser:option("--confirm", "finalists of the search trained again over --seeds (0: no confirmation)", "4")
  :convert(cli.integer("confirm", 0))
parser:option("--shard", "run shard i of N (i/N; also SLURM_ARRAY_TASK_ID/COUNT), read by fvl.sweep")
parser:option("--shards", "number of shards, read by fvl.sweep")
local opt = parser:parse(arg or {})

-- full trial length; halving decides at 1/9 and 1/3 of it (eta 3: 36 → 12 → 4 trials)
local STEPS = opt.steps or (opt.quick and 90 or 4500)
local EVAL_EVERY = STEPS // 9
-- harder than the defaults (wider identity clouds, more sensor noise), so margins matter
local DATA = opt.quick
  and { identities = 100, per_identity = 16, test_identities = 60, test_per_identity = 8, seed = 7,
        spread = 0.8, noise = 0.5 }
  or { identities = 2000, per_identity = 40, test_identities = 300, test_per_identity = 10, seed = 7,
       spread = 0.8, noise = 0.5 }
local DIM, HIDDEN, BATCH, LR = 64, opt.quick and 256 or 512, 128, 0.1
local store = opt.store or (opt.quick and "runs/sweep_margins_quick.sqlite" or "runs/sweep_margins.sqlite")

-- margin schedules: a factor in [0, 1] of the step, times the trial's margin m
local SCHEDULES = {
  constant = fvl.schedule.constant{ value = 1 },
  warmup = fvl.schedule.linear{ from = 0, to = 1, steps = math.max(1, STEPS * 3 // 10) },   -- 0 → 1 over 30%
  cosine = fvl.schedule.cosine{ from = 0, to = 1, steps = math.max(1, STEPS // 2) },        -- cosine ramp over 50%
}

-- ------------------------------------------------------------------ evaluation
-- verification on unseen identities: 6000 fixed pairs, 10-fold accuracy, TAR@FAR=1e-3, EER
local function verify(emb, labels)
  local scores, same = fvl.eval.pairs(emb, labels, { n = 6000, seed = 1 })
  local v = fvl.eval.verification(scores, same, { folds = 10 })
  return { acc = v.accuracy, tar = v.tar_at_far[1e-3], eer = v.eer }
end

-- collapse diagnostics of a trained net + head (stored as metrics): norm statistics and mean
-- resultant length of the unseen identities' embeddings, of the class centres, the smallest
-- centre angle, the lowest per-identity recall on the training set and the verdict (1 = collapsed)
local function diagnostics(net, head, train, test_emb)
  local d = fvl.eval.diagnose{ emb = test_emb, centres = head.weight }
  local pred = fvl.no_grad(function() return head:predict(net(train.x)) end)
  local r = fvl.eval.class_recall(pred, train.labels, head.weight:size(1))
  return { norm_mean = d.norm_mean, norm_std = d.norm_std, mrl_x = d.mrl_x, mrl_centres = d.mrl_centres,
           min_centre_angle = d.min_centre_angle, min_recall = r.min,
           collapsed = (d.collapsed or #r.low > 0) and 1 or 0 }
end

-- ------------------------------------------------------------------ one trial
local data
local function trial(cfg, report, info)
  data = data or fvl.data.synthetic_faces(DATA)
  local train, test = data.train, data.test
  local classes = data.info.identities
  if cfg.seed then fvl.manual_seed(cfg.seed) end   -- confirmation stage: the seed is in the space
  local order_seed = cfg.seed or info.seed
  local net = fvl.nn.mlp{ sizes = { train.x:size(2), HIDDEN, DIM } }
  local head = fvl.loss[cfg.head]{ dim = DIM, classes = classes, s = cfg.s, m = 0 }
  local optim = fvl.optim.sgd({ net, head }, { lr = LR, momentum = 0.9, weight_decay = 5e-4 })
  local lr = fvl.schedule.cosine{ from = LR, to = 0, steps = STEPS, warmup = STEPS // 20 }
  local step, epoch, last = 0, 0, nil
  net:train()
  while step < STEPS do
    epoch = epoch + 1
    for batch in fvl.data.loader({ x = train.x, labels = train.labels },
                                 { batch = BATCH, shuffle = true, seed = order_seed + epoch, drop_last = true }) do
      head.m = cfg.m * cfg.schedule(step)
      optim.lr = lr(step)
      optim:zero_grad()
      local loss = head(net(batch.x), batch.y)
      loss:backward()
      optim:step()
      step = step + 1
      last = loss:item()
      if last ~= last or last == math.huge then error(string.format("loss is %s at step %d", last, step)) end
      if step % EVAL_EVERY == 0 or step == STEPS then
        net:evaluate()
        local emb = fvl.no_grad(function() return net(test.x) end)
        local v = verify(emb, test.labels)
        local d = fvl.eval.embedding_stats(emb)
        net:train()
        report{ step = step, acc = v.acc, tar = v.tar, loss = last, norm_mean = d.norm_mean, mrl_x = d.mrl }
        if step == STEPS then
          net:evaluate()
          local out = diagnostics(net, head, train, emb)
          out.acc, out.tar, out.eer, out.loss = v.acc, v.tar, v.eer, last
          return out
        end
      end
      if step >= STEPS then break end
    end
  end
end

-- ------------------------------------------------------------------ the sweep
local results = fvl.sweep{
  name = "sweep_margins",
  store = store,
  space = {
    head = { "arcface", "cosface" },
    m = { 0.2, 0.35, 0.5 },
    schedule = SCHEDULES,       -- labelled by their keys: constant, cosine, warmup
    s = { 16, 32 },
  },
  trial = trial,
  strategy = "halving", metric = "acc", mode = "max",
  halving = { rungs = { EVAL_EVERY, 3 * EVAL_EVERY }, eta = 3 },
  workers = opt.workers,
  leaderboard = false,
}

if not fvl.sweep.is_worker() then
  local store = results.store   -- a shard writes its own store
  fvl.sweep.leaderboard(store, { top = 15 })
  local csv = fvl.sweep.is_shared_store(store) and "runs/sweep_margins.csv" or (store:gsub("%.sqlite$", "") .. ".csv")
  assert(fvl.sweep.csv(store, csv))
  print("csv: " .. csv)
  local files, msg = fvl.sweep.plot(store, { best = 4 })
  print(files and ("plots: " .. table.concat(files, ", ")) or ("plots skipped: " .. tostring(msg)))
  local done = 0
  for _, t in ipairs(results) do if t.status == "done" then done = done + 1 end end
  print(string.format("%d trials, %d trained to the end", #results, done))
end

-- ------------------------------------------------------------------ confirmation: finalists × seeds
-- The search ranks single trials (one seed each). Its `confirm` best finished configurations are
-- trained again from scratch with seeds 1..N (the seed sets the initialisation and the batch
-- order; the data set is fixed), and the seed spread of every metric is printed. The stage runs
-- once the search has finished all its trials, in the same script (workers re-run it too).
local confirm_store = (store:gsub("%.sqlite$", "")) .. "_seeds.sqlite"
local finished = #results > 0
for _, t in ipairs(results) do
  if t.status ~= "done" and t.status ~= "pruned" and t.status ~= "failed" then finished = false end
end
if opt.confirm > 0 and finished and not fvl.sweep.is_shared_store(store) and not (opt.shard or opt.shards) then
  local done = {}
  for _, t in ipairs(results) do
    if t.status == "done" and type(t.metrics) == "table" and type(t.metrics.acc) == "number" then done[#done + 1] = t end
  end
  table.sort(done, function(a, b) if a.metrics.acc ~= b.metrics.acc then return a.metrics.acc > b.metrics.acc end return a.id < b.id end)
  local finalists = {}
  for i = 1, math.min(opt.confirm, #done) do
    local c = done[i].config
    finalists[i] = string.format("%s m=%s s=%s %s", c.head, tostring(c.m), tostring(c.s), c.schedule)
  end
  local seeds = {}
  for k = 1, opt.seeds do seeds[k] = k end
  local by_label = {}
  for _, f in ipairs(finalists) do
    local head, m, sc, sched = f:match("^(%S+) m=(%S+) s=(%S+) (%S+)$")
    by_label[f] = { head = head, m = tonumber(m), s = tonumber(sc), schedule = SCHEDULES[sched] }
  end
  local confirmed = fvl.sweep{
    name = "sweep_margins_seeds", store = confirm_store,
    space = { config = finalists, seed = seeds },
    trial = function(cfg, report, info)
      local c = by_label[cfg.config]
      return trial({ head = c.head, m = c.m, s = c.s, schedule = c.schedule, seed = cfg.seed }, report, info)
    end,
    metric = "acc", mode = "max", workers = opt.workers, leaderboard = false,
  }
  if not fvl.sweep.is_worker() then
    -- one row per finalist: mean ± std over the seeds of every metric, collapsed seeds counted
    local cols = { { "acc", "max", "acc" }, { "tar", "max", "TAR@1e-3" }, { "eer", "min", "EER" },
                   { "min_recall", "max", "min recall" }, { "mrl_x", "min", "MRL x̂" },
                   { "mrl_centres", "min", "MRL ŵ" }, { "min_centre_angle", "max", "min angle °" },
                   { "norm_mean", "min", "‖x‖" } }
    local by = {}
    for _, c in ipairs(cols) do
      for _, g in ipairs(fvl.sweep.spread(confirmed.store, { metric = c[1], mode = c[2], print = false })) do
        by[g.key] = by[g.key] or {}
        by[g.key][c[1]] = g
      end
    end
    local hdr = { string.format("%-34s %2s", "finalist (search rank order)", "n") }
    for _, c in ipairs(cols) do hdr[#hdr + 1] = string.format("%17s", c[3]) end
    hdr[#hdr + 1] = " collapsed"
    print(string.format("\nfinalists trained again over seeds 1..%d (mean ± std; %s):", opt.seeds, confirm_store))
    print(table.concat(hdr, " "))
    for _, f in ipairs(finalists) do
      local g = by["config=" .. f] or {}
      local row = { string.format("%-34s %2d", f, g.acc and g.acc.n or 0) }
      for _, c in ipairs(cols) do
        local x = g[c[1]]
        row[#row + 1] = string.format("%17s", x and string.format("%.4g ± %.2g", x.mean, x.std) or "-")
      end
      local cg = nil
      for _, gg in ipairs(fvl.sweep.spread(confirmed.store, { metric = "collapsed", mode = "min", print = false })) do
        if gg.key == "config=" .. f then cg = gg end
      end
      row[#row + 1] = cg and string.format(" %d/%d", math.floor(cg.mean * cg.n + 0.5), cg.n) or " -"
      print(table.concat(row, " "))
    end
    assert(fvl.sweep.csv(confirmed.store, (confirm_store:gsub("%.sqlite$", "")) .. ".csv"))
  end
end
