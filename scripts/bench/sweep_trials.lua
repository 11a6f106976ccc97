-- the sweep that scripts/bench/sweep.lua times: fvl sweep_trials.lua <store> <trials> <seconds per trial>
-- (a trial sleeps, then reports once: what is measured is the sweep's own cost around it)
local fvl = fvl or require "fvl"
local cli = require "fvl.cli"
local parser = cli.parser("fvl scripts/bench/sweep_trials.lua",
  "The sweep that scripts/bench/sweep.lua times: trials that sleep, then report once.")
parser:argument("store", "the sweep's store")
parser:argument("trials", "number of trials"):convert(cli.integer("trials", 1))
parser:argument("seconds", "seconds per trial"):convert(cli.number("seconds", 0))
local o = parser:parse(arg or {})
local n, dt = o.trials, o.seconds
fvl.sweep{
  store = o.store, workers = 1, quiet = true, leaderboard = false, logs = false, poll = 0.005,
  space = { i = (function() local t = {} for k = 1, n do t[k] = k end return t end)() },
  trial = function(cfg, report)
    if dt > 0 then fvl.sys.sleep(dt) end
    report{ step = 1, v = cfg.i }
    return { v = cfg.i }
  end,
}
