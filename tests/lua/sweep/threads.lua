-- records each trial's thread count: fvl threads.lua <store> <workers>
local fvl = fvl or require "fvl"
fvl.sweep{
  name = "threads", store = arg[1], workers = math.tointeger(tonumber(arg[2])) or 1, quiet = true,
  space = { x = { 1, 2 } },
  trial = function(cfg, report, info) return { threads = info.threads, engine = fvl.threads() } end,
}
