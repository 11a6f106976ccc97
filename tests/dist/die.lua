-- Run under mpirun by tests/cli/dist_fail.sh: one rank dies (SIGKILL, or a Lua error) while the
-- others wait in collectives; the others must be stopped, not hang. arg[1] = "kill" | "error".
local dist = fvl.dist
local mode = arg[1] or "kill"
local t = fvl.ones(4)
dist.allreduce(t)
if dist.rank() == 1 then
  if mode == "kill" then os.execute("kill -KILL $PPID") end
  error("rank 1 fails on purpose")
end
for _ = 1, 100000 do dist.allreduce(t) end   -- would wait forever for rank 1
print("survived: rank " .. dist.rank())
