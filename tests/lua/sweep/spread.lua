-- a grid over lr × seed whose metric is known exactly: fvl spread.lua <store>
local fvl = fvl or require "fvl"
fvl.sweep{
  name = "spread", store = arg[1], workers = 2, metric = "acc", quiet = true,
  space = { lr = { 0.1, 0.2 }, seed = { 1, 2, 3 } },
  trial = function(cfg) return { acc = cfg.lr + cfg.seed / 100, loss = 1 - cfg.lr } end,
}
