-- Minimal spec runner for the Lua API tests: `fvl tests/lua/run.lua tests/lua/x_spec.lua ...`
-- A spec file calls describe/it and the expect helpers below. The last line printed is
-- "N passed, N failed" and the exit code is non-zero when anything failed.
local passed, failed, failures = 0, 0, {}
local prefix = {}

function describe(name, fn)
  prefix[#prefix + 1] = name
  fn()
  prefix[#prefix] = nil
end

function it(name, fn)
  local full = table.concat(prefix, " ") .. " " .. name
  local ok, err = xpcall(fn, debug.traceback)
  if ok then
    passed = passed + 1
    io.write(".")
  else
    failed = failed + 1
    io.write("F")
    failures[#failures + 1] = full .. "\n    " .. tostring(err)
  end
  io.flush()
end

local function fmt(v)
  if type(v) == "string" then return string.format("%q", v) end
  return tostring(v)
end

function expect_eq(actual, expected, what)
  if actual ~= expected then
    error(string.format("%sexpected %s, got %s", what and (what .. ": ") or "", fmt(expected),
                        fmt(actual)), 2)
  end
end

function expect_true(v, what)
  if not v then error((what or "expected a true value") .. ", got " .. fmt(v), 2) end
end

-- |a - e| <= atol + rtol * |e|
function expect_near(actual, expected, rtol, atol, what)
  rtol, atol = rtol or 1e-6, atol or 0
  if type(actual) ~= "number" or actual ~= actual or
     math.abs(actual - expected) > atol + rtol * math.abs(expected) then
    error(string.format("%sexpected %.9g (rtol %g, atol %g), got %s", what and (what .. ": ") or "",
                        expected, rtol, atol, fmt(actual)), 2)
  end
end

-- fn must raise an error whose message contains `pattern` (plain text, not a Lua pattern)
function expect_error(fn, pattern)
  local ok, err = pcall(fn)
  if ok then error("expected an error" .. (pattern and (" containing '" .. pattern .. "'") or ""), 2) end
  err = tostring(err)
  if pattern and not err:find(pattern, 1, true) then
    error(string.format("expected an error containing %q, got %q", pattern, err), 2)
  end
  return err
end

-- a detached copy of t that requires grad (a fresh leaf for gradient comparisons)
function leaf(t) t = t:detach():clone(); t:requires_grad(); return t end

-- one training step of a loss head on the leaf x: { loss = value, x = x.grad, [i] = the i-th
-- parameter's gradient (a copy) }, the parameters' gradients cleared first
function head_step_grads(head, x, y)
  for _, p in ipairs(head:parameters()) do p.grad = nil end
  local loss = head(x, y)
  loss:backward()
  local out = { loss = loss:item(), x = x.grad }
  for i, p in ipairs(head:parameters()) do out[i] = p.grad and p.grad:clone() end
  return out
end

-- fn() with a global switch set (set(value) returns the previous setting, like fvl.F.fused / online),
-- restored afterwards even when fn raises; returns fn's results
function with_setting(set, value, fn)
  local prev = set(value)
  local ok, a, b, c = pcall(fn)
  set(prev)
  if not ok then error(a, 0) end
  return a, b, c
end

-- whole-tensor, scale-relative comparison: max |a − e| <= tol·(max |e| + floor) (floor 1e-6)
function expect_tensor_close(a, e, tol, what, floor)
  if a == nil or e == nil then error((what or "tensor") .. ": a tensor is missing", 2) end
  local at, et = a:reshape(a:numel()):totable(), e:reshape(e:numel()):totable()
  local worst, big = 0, 0
  for i = 1, #et do
    local d = math.abs(at[i] - et[i])
    if d ~= d then d = math.huge end
    worst = math.max(worst, d)
    big = math.max(big, math.abs(et[i]))
  end
  if not (worst <= tol * (big + (floor or 1e-6))) then
    error(string.format("%s: max diff %.3g (max |expected| %.3g)", what or "tensor", worst, big), 2)
  end
end

-- elementwise comparison of a tensor (or nested table) with a nested table of numbers
function expect_all_near(actual, expected, rtol, atol, what)
  if type(actual) == "userdata" then actual = actual:totable() end
  local function walk(a, e, path)
    if type(e) == "table" then
      if type(a) ~= "table" or #a ~= #e then
        error(string.format("%s%s: shape differs (%s vs %d)", what and (what .. " ") or "", path,
                            type(a) == "table" and #a or type(a), #e), 3)
      end
      for i = 1, #e do walk(a[i], e[i], path .. "[" .. i .. "]") end
    else
      if type(a) ~= "number" or a ~= a or math.abs(a - e) > (atol or 0) + (rtol or 1e-6) * math.abs(e) then
        error(string.format("%s%s: expected %.9g, got %s", what and (what .. " ") or "", path, e,
                            fmt(a)), 3)
      end
    end
  end
  walk(actual, expected, "")
end

-- ------------------------------------------------------------------ files, shared by the specs
function tmpdir()   -- a new empty directory
  local d = os.tmpname()
  os.remove(d)
  assert(os.execute("mkdir -p '" .. d .. "'"))
  return d
end
function rmdir(d) os.execute("rm -rf '" .. d .. "'") end
function write_file(path, bytes)
  local f = assert(io.open(path, "wb"))
  f:write(bytes)
  f:close()
end
function read_file(path)   -- raises when the file cannot be read
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end
function file_exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end
-- temporary file names: name(n) gives a fresh path (and, with beside, also marks beside(path),
-- e.g. the CSV written next to a figure); cleanup() removes them all
function temp_names(beside)
  local base = os.tmpname()
  os.remove(base)
  local made = {}
  local function name(n)
    local p = base .. "_" .. n
    made[#made + 1] = p
    if beside then made[#made + 1] = beside(p) end
    return p
  end
  local function cleanup() for _, p in ipairs(made) do os.remove(p) end end
  return name, cleanup
end

TEST_DIR = os.getenv("FVL_TEST_DIR") or "tests"

for _, file in ipairs(arg) do
  local chunk, err = loadfile(file)
  if not chunk then
    failed = failed + 1
    failures[#failures + 1] = file .. ": " .. err
  else
    local ok, e = xpcall(chunk, debug.traceback)
    if not ok then
      failed = failed + 1
      failures[#failures + 1] = file .. " (top level): " .. tostring(e)
    end
  end
end
io.write("\n")
for _, f in ipairs(failures) do io.write("FAIL ", f, "\n") end
io.write(string.format("%d passed, %d failed\n", passed, failed))
os.exit(failed == 0 and 0 or 1)
