#!/usr/bin/env bash
# The fvl program without a terminal: `arg`, script arguments, -e, -l, -v, -t/FVL_THREADS,
# exit codes, errors with tracebacks, stdin as a script.
# usage (from the repo root): bash tests/cli/program.sh /path/to/fvl builddir
set -u
FVL=${1:?usage: bash tests/cli/program.sh /path/to/fvl builddir}
case $FVL in /*) ;; *) FVL=$PWD/$FVL ;; esac
[ -x "$FVL" ] || { echo "FAIL: $FVL is not an executable"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
unset FVL_THREADS LUA_INIT LUA_INIT_5_4
export FVL_HISTORY=

fails=0
pass=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
ok() { pass=$((pass + 1)); }

# run EXPECTED_RC CMD... : runs with stdout in $tmp/out and stderr in $tmp/err
run() {
  local want=$1; shift
  "$@" >"$tmp/out" 2>"$tmp/err" </dev/null
  local rc=$?
  if [ "$rc" != "$want" ]; then
    fail "'$*' exited $rc, expected $want"
    echo "  stdout: $(head -c 600 "$tmp/out")"
    echo "  stderr: $(head -c 600 "$tmp/err")"
    return 1
  fi
  ok
}
out_is() {   # exact stdout
  local got; got=$(cat "$tmp/out")
  if [ "$got" == "$1" ]; then ok; else fail "$2: stdout was '$got', expected '$1'"; fi
}
out_has() {
  if grep -qF -- "$1" "$tmp/out"; then ok; else fail "$2: stdout lacks '$1' (got: $(head -c 400 "$tmp/out"))"; fi
}
err_lacks() {
  if grep -qF -- "$1" "$tmp/err"; then fail "$2: stderr has '$1' (got: $(head -c 400 "$tmp/err"))"; else ok; fi
}
err_has() {
  if grep -qF -- "$1" "$tmp/err"; then ok; else fail "$2: stderr lacks '$1' (got: $(head -c 400 "$tmp/err"))"; fi
}
err_empty() {
  if [ ! -s "$tmp/err" ]; then ok; else fail "$1: unexpected stderr: $(head -c 400 "$tmp/err")"; fi
}

# ---------------------------------------------------------------- script and arg
cat >"$tmp/args.lua" <<'EOF'
print("arg0=" .. arg[0], "n=" .. #arg, "a1=" .. tostring(arg[1]), "a2=" .. tostring(arg[2]))
print("dots=" .. select("#", ...), ...)
local i = -1
local neg = {}
while arg[i] do neg[#neg + 1] = i .. "=" .. arg[i]; i = i - 1 end
print("neg " .. table.concat(neg, " "))
EOF
run 0 "$FVL" "$tmp/args.lua" alpha "b c" && {
  out_has "arg0=$tmp/args.lua	n=2	a1=alpha	a2=b c" "script arg table"
  out_has "dots=2	alpha	b c" "script ... holds the arguments"
  out_has "neg -1=$FVL" "arg[-1] is the program"
  err_empty "script with args"
}
run 0 "$FVL" -t 1 -e "x=1" "$tmp/args.lua" z && {
  out_has "arg0=$tmp/args.lua	n=1	a1=z" "arg with options"
  out_has "neg -1=x=1 -2=-e -3=1 -4=-t -5=$FVL" "options go to negative arg indices"
}
run 0 "$FVL" -- "$tmp/args.lua" -x && out_has "n=1	a1=-x" "-- stops options; script args may start with -"

# the global fvl is there before anything runs, and is what require returns
run 0 "$FVL" -e 'print(type(fvl), fvl == require "fvl", package.loaded.fvl == fvl)' &&
  out_is "table	true	true" "fvl preloaded as a global"
echo 'print(type(fvl))' >"$tmp/g.lua"
run 0 "$FVL" "$tmp/g.lua" && out_is "table" "fvl global in scripts"

# ---------------------------------------------------------------- -e
run 0 "$FVL" -e 'print(1+1)' && out_is "2" "-e runs code"
run 0 "$FVL" -e 'x = 20' -e 'print(x + 1)' && out_is "21" "several -e run in order"
run 0 "$FVL" '-eprint("glued")' && out_is "glued" "-e with the code glued on"
run 0 "$FVL" -e 'y = 5' "$tmp/args.lua" && out_has "arg0=" "-e then a script"
run 1 "$FVL" -e 'error("bad thing")' && {
  err_has "fvl: (command line):1: bad thing" "-e error message"
  err_lacks "stack traceback" "-e error in one frame: no traceback"
}
run 1 env FVL_TRACEBACK=1 "$FVL" -e 'error("bad thing")' && err_has "stack traceback:" "FVL_TRACEBACK=1: full traceback"
run 1 "$FVL" -e 'x = = 1' && err_has "(command line):1:" "-e syntax error"
run 1 "$FVL" -e && err_has "'-e' needs an argument" "-e without code"

# ---------------------------------------------------------------- -l
mkdir -p "$tmp/lib/pkg"
echo 'return {answer = 42}' >"$tmp/lib/mymod.lua"
echo 'return {name = "sub"}' >"$tmp/lib/pkg/sub.lua"
echo 'error("module load failed here")' >"$tmp/lib/broken.lua"
export LUA_PATH="$tmp/lib/?.lua;;"
run 0 "$FVL" -l mymod -e 'print(mymod.answer)' && out_is "42" "-l mod sets global mod"
run 0 "$FVL" -l m=mymod -e 'print(m.answer, mymod)' && out_is "42	nil" "-l g=mod sets global g"
run 0 "$FVL" -l pkg.sub -e 'print(sub.name)' && out_is "sub" "-l a.b sets global b"
run 0 "$FVL" -lmymod -e 'print(mymod.answer)' && out_is "42" "-l glued"
run 1 "$FVL" -l nosuchmod_xyz && err_has "module 'nosuchmod_xyz' not found" "-l missing module"
run 1 "$FVL" -l broken && err_has "module load failed here" "-l module that fails"
run 0 "$FVL" -E -e 'print(package.path:find("'"$tmp"'", 1, true) == nil)' &&
  out_is "true" "-E ignores LUA_PATH"
unset LUA_PATH

# LUA_INIT runs first (code or @file), as in lua; -E skips it
run 0 env LUA_INIT='init_value = 5' "$FVL" -e 'print(init_value)' && out_is "5" "LUA_INIT code"
echo 'init_file = "from file"' >"$tmp/init.lua"
run 0 env LUA_INIT="@$tmp/init.lua" "$FVL" -e 'print(init_file)' && out_is "from file" "LUA_INIT=@file"
run 0 env LUA_INIT_5_4='v = 54' LUA_INIT='v = 0' "$FVL" -e 'print(v)' && out_is "54" "LUA_INIT_5_4 first"
run 0 env LUA_INIT='init_value = 5' "$FVL" -E -e 'print(init_value)' && out_is "nil" "-E skips LUA_INIT"
run 1 env LUA_INIT='error("init broke")' "$FVL" -e 'print(1)' && err_has "init broke" "a failing LUA_INIT"

# ---------------------------------------------------------------- -v and threads
run 0 "$FVL" -v && {
  out_has "FaceVerLoss " "-v names FaceVerLoss"
  out_has "Lua 5.4" "-v has the Lua version"
  out_has "OpenBLAS: " "-v has the OpenBLAS config"
  out_has "BLAS core: " "-v has the BLAS core"
  out_has "threads: " "-v has the threads"
  out_has "build: " "-v has the build type"
}
run 0 "$FVL" -t 3 -v && out_has "threads: 3 " "-t sets threads"
run 0 env FVL_THREADS=2 "$FVL" -v && out_has "threads: 2 " "FVL_THREADS sets threads"
run 0 env FVL_THREADS=2 "$FVL" -t 1 -v && out_has "threads: 1 " "-t wins over FVL_THREADS"
run 0 env FVL_THREADS=bogus "$FVL" -E -v && out_has "threads: " "-E ignores FVL_THREADS"
run 1 "$FVL" -t 0 -v && err_has "-t expects a thread count" "bad -t"
run 1 "$FVL" -t && err_has "'-t' needs an argument" "-t without a number"
run 1 env FVL_THREADS=many "$FVL" -v && err_has "FVL_THREADS expects a thread count 1..4096, got 'many'" "bad FVL_THREADS"
run 0 "$FVL" -t 2 -e 'if fvl.threads then print(fvl.threads()) else print(2) end' &&
  out_is "2" "fvl.threads() sees -t"
run 0 "$FVL" -v -e 'print("after v")' && out_has "after v" "-v then -e"

# ---------------------------------------------------------------- exit codes and errors
printf 'local x = 1\nlocal function inner() error("deep failure") end\ninner()\n' >"$tmp/fail.lua"
run 1 "$FVL" "$tmp/fail.lua" && {
  err_has "fvl: $tmp/fail.lua:2: deep failure" "script error message"
  err_has "stack traceback (your code" "script error: the script's frames"
  err_has "in local 'inner'" "traceback names the function"
  err_lacks "[C]" "no C frames unless FVL_TRACEBACK"
}
# a user's mistake in a call into fvl: the message and where, no internal frames
run 1 "$FVL" -e 'fvl.loss.arcface{dim = 4, classes = 3, bogus = 1}' && {
  err_has "unknown option 'bogus'" "bad option message"
  err_has "at (command line):1" "bad option: where in the user's code"
  err_lacks "lua/fvl/" "bad option: library frames hidden"
  err_lacks "stack traceback" "bad option: no traceback"
}
run 1 env FVL_TRACEBACK=1 "$FVL" -e 'fvl.loss.arcface{dim = 4, classes = 3, bogus = 1}' &&
  err_has "lua/fvl/" "FVL_TRACEBACK=1 shows the library's frames"
run 1 "$FVL" -e 'error("verify.lua: no such file x.bin", 0)' && {
  err_has "fvl: verify.lua: no such file x.bin" "error(msg, 0): the message"
  err_lacks "stack traceback" "error(msg, 0): no traceback"
}
echo 'os.exit(3)' >"$tmp/exit3.lua"
run 3 "$FVL" "$tmp/exit3.lua"
echo 'os.exit(true)' >"$tmp/exit0.lua"
run 0 "$FVL" "$tmp/exit0.lua"
run 1 "$FVL" "$tmp/does_not_exist.lua" && err_has "cannot open $tmp/does_not_exist.lua" "missing script"
printf 'x = = 2\n' >"$tmp/syntax.lua"
run 1 "$FVL" "$tmp/syntax.lua" && err_has "syntax.lua:1:" "syntax error in a script"
run 1 "$FVL" -e 'error({code = 1})' && err_has "(error object is a table value)" "non-string error"
run 1 "$FVL" -e 'error(setmetatable({}, {__tostring = function() return "custom err" end}))' &&
  err_has "custom err" "error object with __tostring"
run 1 "$FVL" -q && { err_has "unrecognized option '-q'" "bad option"; err_has "usage: fvl" "usage"; }
run 1 "$FVL" -ix && err_has "unrecognized option '-ix'" "bad option with extra letters"
run 0 "$FVL" "$tmp/g.lua" && err_empty "a good script writes nothing to stderr"

# ---------------------------------------------------------------- stdin
out=$(echo 'print("from stdin", ...)' | "$FVL" 2>&1); rc=$?
[ $rc == 0 ] && [ "$out" == "from stdin" ] && ok || fail "stdin as script without a terminal: rc=$rc out='$out'"
out=$(echo 'print("dash", ...)' | "$FVL" - p q 2>&1); rc=$?
[ $rc == 0 ] && [ "$out" == "dash	p	q" ] && ok || fail "'-' runs stdin with args: rc=$rc out='$out'"
out=$(echo 'error("stdin boom")' | "$FVL" 2>&1); rc=$?
[ $rc == 1 ] && [[ $out == *"stdin:1: stdin boom"* ]] && ok || fail "stdin script error: rc=$rc out='$out'"
out=$("$FVL" </dev/null 2>&1); rc=$?
[ $rc == 0 ] && [ -z "$out" ] && ok || fail "empty stdin: rc=$rc out='$out'"

# ---------------------------------------------------------------- Ctrl-C (SIGINT) stops a script
# cpu_ticks PID: the CPU time the process has used so far, in clock ticks (utime + stime)
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
# sigint_run CODE [TICKS]: starts fvl -e CODE, waits for "ready" on stderr, sends SIGINT, and sets
# $rc and $ms (milliseconds from the signal to the exit). With TICKS, it waits instead until the
# process has used TICKS clock ticks of CPU after "ready" (so that it is inside the long C call
# that follows "ready", however loaded the machine is), at most 120 s.
sigint_run() {
  "$FVL" -e "$1" >"$tmp/out" 2>"$tmp/err" </dev/null &
  local pid=$! i=0
  while ! grep -q ready "$tmp/err" 2>/dev/null && [ $i -lt 1200 ]; do sleep 0.1; i=$((i + 1)); done
  if [ -n "${2:-}" ] && [ -r "/proc/$pid/stat" ]; then
    local c0; c0=$(cpu_ticks $pid); i=0
    while [ $(( $(cpu_ticks $pid) - c0 )) -lt "$2" ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i + 1)); done
  else
    sleep 0.5
  fi
  local t0 c1 last; t0=$(date +%s%N)
  c1=$(cpu_ticks $pid); last=$c1
  kill -INT $pid
  # the CPU it uses from the signal to its end (a loaded machine stretches the wall time, not this)
  while [ -r "/proc/$pid/stat" ] && [ "$(awk '{ sub(/^.*\) /, ""); print $1 }' "/proc/$pid/stat" 2>/dev/null)" != Z ]; do
    last=$(cpu_ticks $pid); sleep 0.02
  done
  wait $pid
  rc=$?
  ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  cpu_ms=$(( (last - c1) * 1000 / $(getconf CLK_TCK) ))
}
sigint_run 'io.stderr:write("ready\n") while true do end'
[ $rc == 1 ] && ok || fail "SIGINT in a Lua loop: exit $rc, expected 1"
err_has "interrupted" "SIGINT in a Lua loop"
err_lacks "[C]" "SIGINT: no internal frames"
# code that swallows the interrupt: the 2nd Ctrl-C warns, the 3rd ends the program
"$FVL" -e 'io.stderr:write("ready\n") while true do pcall(function() while true do end end) end' \
  >"$tmp/out" 2>"$tmp/err" </dev/null &
pid=$!
i=0
while ! grep -q ready "$tmp/err" 2>/dev/null && [ $i -lt 1200 ]; do sleep 0.1; i=$((i + 1)); done
# Ctrl-C until the warning shows (two signals sent while the process waits for the CPU arrive as
# one: a second press is only one once the first was taken), then the third
i=0
while ! grep -q "press Ctrl-C again to quit" "$tmp/err" 2>/dev/null && [ $i -lt 400 ]; do
  kill -INT $pid 2>/dev/null; sleep 0.3; i=$((i + 1))
done
kill -INT $pid 2>/dev/null
wait $pid
rc=$?
[ $rc == 130 ] && ok || fail "three Ctrl-C should end a program that swallows them: exit $rc"
err_has "press Ctrl-C again to quit" "the second Ctrl-C warns"

if "$FVL" -e 'os.exit(fvl.F and fvl.F.conv2d and 0 or 1)' >/dev/null 2>&1; then
  # one long C call (340 GFLOP: seconds even on the direct AVX2 kernels): only the engine's abort flag can stop it early
  sigint_run 'local x, w = fvl.zeros(64, 128, 64, 64), fvl.zeros(128, 128, 7, 7)
    io.stderr:write("ready\n") local y = fvl.F.conv2d(x, w) print("finished")' 50
  [ $rc == 1 ] && ok || fail "SIGINT in a C kernel: exit $rc, expected 1"
  err_has "conv2d: interrupted" "SIGINT stops a C kernel through the abort flag"
  if [ $cpu_ms -lt 3000 ]; then ok; else fail "the kernel used $cpu_ms ms of CPU ($ms ms wall) to stop"; fi
  [ -s "$tmp/out" ] && fail "the interrupted kernel finished anyway" || ok
else
  echo "note: fvl.F.conv2d not available, C-kernel interrupt not checked"
fi

echo "program.sh: $pass passed, $fails failed"
[ $fails == 0 ]
