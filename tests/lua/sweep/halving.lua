local fvl = fvl or require "fvl"
-- successive halving over 9 trials, rungs at steps 2 and 4, eta 3:
--   fvl halving.lua <store> [seconds per step] [trials kept paused in memory] [lease seconds]
local dt = tonumber(arg[2]) or 0.01
local paused = math.tointeger(tonumber(arg[3] or ""))
fvl.sweep{
  name = "halving", store = arg[1], workers = 3, strategy = "halving", metric = "acc", quiet = true,
  lease = tonumber(arg[4] or ""),
  halving = { rungs = { 2, 4 }, eta = 3, paused = paused },
  space = { a = { 5, 1, 9, 3, 7, 2, 8, 4, 6 } },
  trial = function(cfg, report)
    for step = 1, 6 do
      fvl.sys.sleep(dt)
      report{ step = step, acc = cfg.a * step }
    end
    return { acc = cfg.a * 100 }
  end,
}
