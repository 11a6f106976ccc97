-- the sweep that scripts/bench/sweep.lua times: fvl sweep_trials.lua <store> <trials> <seconds per trial>
-- (a trial sleeps, then reports once: what is measured is the sweep's own cost around it)
local fvl = fvl or require "fvl"
local n, dt = math.tointeger(tonumber(arg[2])), tonumber(arg[3])
fvl.sweep{
  store = arg[1], workers = 1, quiet = true, leaderboard = false, logs = false, poll = 0.005,
  space = { i = (function() local t = {} for k = 1, n do t[k] = k end return t end)() },
  trial = function(cfg, report)
    if dt > 0 then fvl.sys.sleep(dt) end
    report{ step = 1, v = cfg.i }
    return { v = cfg.i }
  end,
}
