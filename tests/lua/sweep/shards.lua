-- random search with ranges; run whole or with --shard i/N: fvl shards.lua <store> [--shard i/N]
local fvl = fvl or require "fvl"
fvl.sweep{
  name = "shards", store = arg[1], workers = 2, strategy = "random", samples = 7, seed = 42,
  metric = "loss", mode = "min", quiet = true,
  space = { lr = fvl.sweep.loguniform(1e-4, 1e-1), m = { 0.2, 0.35, 0.5 }, depth = fvl.sweep.int(2, 5),
            schedule = { const = function() return 1 end, cosine = function(t) return math.cos(t) end } },
  trial = function(cfg, report, info)
    return { loss = cfg.lr * cfg.depth + cfg.m * cfg.schedule(0), seed = info.seed, r = math.random() }
  end,
}
