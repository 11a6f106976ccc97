-- two sweeps in one script; workers of the second must not run the first: fvl two.lua <dir>
local fvl = fvl or require "fvl"
local log = arg[1] .. "/calls.txt"
local function note(s) local f = assert(io.open(log, "a")); f:write(s, "\n"); f:close() end
fvl.sweep{ name = "first", store = arg[1] .. "/first.sqlite", quiet = true, space = { x = { 1, 2 } },
           trial = function(cfg) note("first " .. cfg.x); return { y = cfg.x } end }
fvl.sweep{ name = "second", store = arg[1] .. "/second.sqlite", quiet = true, space = { x = { 3, 4 } },
           trial = function(cfg) note("second " .. cfg.x); return { y = cfg.x } end }
