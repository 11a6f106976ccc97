-- helpers of the sweep specs: drivers run as separate processes (`fvl tests/lua/sweep/<script>
-- args...`), as a user runs them. local U = dofile(TEST_DIR .. "/lua/sweep/util.lua")("name")
local fvl = fvl or require "fvl"
local sys = fvl.sys

return function(name)
  local U = { scripts = TEST_DIR .. "/lua/sweep/", exe = sys.exe() }
  U.tmp = string.format("/tmp/fvl_%s.%d", name, sys.getpid())
  sys.mkdirs(U.tmp)
  function U.path(n) return U.tmp .. "/" .. n end
  -- starts `fvl script args...` (stdout/stderr to <tmp>/<log or script>.log); env: extra variables
  function U.start(script, args, env, log)
    local argv = { U.exe, U.scripts .. script }
    for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
    return sys.spawn(U.exe, argv, env, U.path((log or script) .. ".log"))
  end
  function U.wait(pid, limit)
    local t0 = sys.time()
    while sys.time() - t0 < (limit or 60) do
      local done, code, sig = sys.poll(pid)
      if done then return code, sig end
      sys.sleep(0.02)
    end
    sys.kill(pid, "KILL")
    error("process " .. pid .. " did not finish in time")
  end
  function U.log(script)
    local f = io.open(U.path(script .. ".log"))
    local s = f and f:read("a") or ""
    if f then f:close() end
    return s
  end
  -- runs to the end; raises with the log unless it exits 0 (or fails when expect_fail)
  function U.run(script, args, env, expect_fail)
    local code, sig = U.wait(U.start(script, args, env))
    if (code ~= 0) ~= (expect_fail == true) then
      error(string.format("%s exited with %s %s\n%s", script, tostring(code), tostring(sig), U.log(script)), 2)
    end
    return U.log(script)
  end
  function U.by_id(trials)
    local t = {}
    for _, x in ipairs(trials) do t[x.id] = x end
    return t
  end
  function U.cleanup() os.execute("rm -rf '" .. U.tmp .. "'") end
  return U
end
