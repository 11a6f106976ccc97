-- a sweep whose trials succeed, raise, go NaN, crash and hang: fvl mixed.lua <store>
local fvl = fvl or require "fvl"
fvl.sweep{
  name = "mixed", store = arg[1], workers = 2, metric = "acc", quiet = true, timeout = 2,
  space = { kind = { "ok", "raise", "nan", "abort", "bad", "fine", "hang" } },
  trial = function(cfg, report, info)
    report{ step = 1, acc = 0.5 }
    if cfg.kind == "raise" then error("lr too high for this batch") end
    if cfg.kind == "nan" then return { acc = 0 / 0 } end
    if cfg.kind == "abort" then fvl.sys.kill(fvl.sys.getpid(), "ABRT"); fvl.sys.sleep(5) end
    if cfg.kind == "bad" then return { acc = {} } end
    if cfg.kind == "hang" then fvl.sys.sleep(30) end
    return { acc = info.id / 10, seed = info.seed }
  end,
}
