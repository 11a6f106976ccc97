-- 8 short trials that report every step: fvl slow.lua <store> <seconds per step> [lease seconds]
local fvl = fvl or require "fvl"
local dt = tonumber(arg[2]) or 0.1
fvl.sweep{
  name = "slow", store = arg[1], workers = 2, metric = "score", quiet = true, lease = tonumber(arg[3]),
  space = { a = { 1, 2, 3, 4 }, b = { 10, 20 } },
  trial = function(cfg, report, info)
    for step = 1, 5 do
      fvl.sys.sleep(dt)
      report{ step = step, score = cfg.a * cfg.b + step }
    end
    return { score = cfg.a * cfg.b, seed = info.seed }
  end,
}
