-- Stop requests (fvl.sys.catch_stop / stop_signal / release_stop, engine/sys.c): a caught signal
-- sets a flag instead of ending the process, the first one caught is kept, a repeated SIGTERM
-- changes nothing, release puts the disposition back; bad arguments are clear errors.
-- (scripts/train_face.lua's use of it: tests/cli/train_face.sh and dist_train_face.sh.)
local fvl = fvl or require "fvl"
local sys = fvl.sys
local pid = sys.getpid()

-- a signal sent to ourselves is delivered before kill() returns to a single-threaded process,
-- but other threads may exist: wait on the flag (bounded) rather than assume
local function wait_flag()
  for _ = 1, 500 do
    if sys.stop_signal() then return sys.stop_signal() end
    sys.sleep(0.002)
  end
end

describe("stop requests", function()
  it("records the first caught signal and keeps the process alive", function()
    expect_eq(sys.stop_signal(), nil, "nothing caught yet")
    sys.catch_stop { "TERM", "SIGUSR2", 10 }
    sys.kill(pid, "USR2")
    local name, num = wait_flag()
    expect_eq(name, "SIGUSR2")
    expect_eq(num, 12)
    sys.kill(pid, "TERM")      -- a later one (and a repeated SIGTERM) changes nothing
    sys.kill(pid, "TERM")
    sys.sleep(0.05)
    expect_eq((sys.stop_signal()), "SIGUSR2", "the first one is kept")
    sys.release_stop()
    expect_eq(sys.stop_signal(), nil, "release forgets the request")
  end)
  it("release puts the disposition back (an ignored signal stays ignored)", function()
    -- after release, SIGUSR2 would end the process again: check through a child instead
    local exe = sys.exe()
    local code = "fvl.sys.catch_stop{'TERM'}; fvl.sys.release_stop(); fvl.sys.kill(fvl.sys.getpid(), 'TERM'); fvl.sys.sleep(5)"
    local child = sys.spawn(exe, { exe, "-e", code })
    local done, status, sig
    for _ = 1, 1000 do
      done, status, sig = sys.poll(child)
      if done then break end
      sys.sleep(0.01)
    end
    expect_true(done, "the child ended")
    expect_eq(sig, "SIGTERM", "the child was ended by SIGTERM after release")
  end)
  it("names signals", function()
    expect_eq(sys.signal_name(15), "SIGTERM")
    expect_eq(sys.signal_name(2), "SIGINT")
    expect_eq(sys.signal_name(40), "signal 40")
  end)
  it("refuses what cannot be caught and unknown names", function()
    expect_error(function() sys.catch_stop { "KILL" } end, "sys.catch_stop: signals[1] = SIGKILL cannot be caught")
    expect_error(function() sys.catch_stop { "TERM", "STOP" } end, "sys.catch_stop: signals[2] = SIGSTOP cannot be caught")
    expect_error(function() sys.catch_stop { "TREM" } end, "sys.catch_stop: signal 'TREM' is not one of")
    expect_error(function() sys.catch_stop "TERM" end, "table expected")
    expect_error(function() sys.signal_name(99) end, "sys.signal_name")
    expect_eq(sys.stop_signal(), nil, "a refused list catches nothing before the bad entry either")
  end)
end)
