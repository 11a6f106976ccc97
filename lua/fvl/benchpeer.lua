-- fvl.benchpeer — what the benches that name a peer share (scripts/bench/lenetpp.lua,
-- backbones.lua): the peer is a Python script beside the bench (Debian python3-torch, a
-- benchmark-only dependency), run in the same invocation with the same thread count; it prints
-- one "RESULT field..." line per measurement, everything else it prints is passed through.
-- Internal to the benches (not part of the documented API):
--   here() -> the directory of the running script (where its peer .py lives)
--   available() -> true, or false and a one-line reason (with the apt-get line)
--   run(script, args, threads, on_result) -> number of RESULT lines: runs
--     `OMP_NUM_THREADS=threads python3 <here>/script args`; on_result(fields) gets the
--     whitespace-separated fields after "RESULT" of each result line, other lines are printed.
local M = {}

M.python = "/usr/bin/python3"

function M.here()
  return (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
end

function M.available()
  local probe = io.popen(M.python .. " -c 'import torch' 2>&1")
  local err = probe:read("a")
  probe:close()
  if err == "" then return true end
  return false, "PyTorch not available (" .. err:gsub("\n.*", "") .. "): apt-get install -y python3-torch for the ratio"
end

function M.run(script, args, threads, on_result)
  local p = io.popen(string.format("OMP_NUM_THREADS=%d %s %s/%s %s 2>&1", threads, M.python, M.here(), script, args))
  local n = 0
  for line in p:lines() do
    local rest = line:match("^RESULT (.*)$")
    if rest then
      local f = {}
      for w in rest:gmatch("%S+") do f[#f + 1] = w end
      n = n + 1
      on_result(f)
    else
      print(line)
    end
  end
  p:close()
  return n
end

return M
