#!/usr/bin/env bash
# The fvl REPL. Part 1 pipes lines into `fvl -i` (no terminal: plain line reading, same
# evaluation rules). Part 2 drives the real readline REPL through a pseudo-terminal made by
# tmux: 1+1, multi-line input, errors, Ctrl-C in a loop and at the prompt, tab completion,
# history file, Ctrl-D. Without tmux part 2 is skipped with a message (CI installs tmux).
# usage (from the repo root): bash tests/cli/repl.sh /path/to/fvl builddir
set -u
FVL=${1:?usage: bash tests/cli/repl.sh /path/to/fvl builddir}
case $FVL in /*) ;; *) FVL=$PWD/$FVL ;; esac
[ -x "$FVL" ] || { echo "FAIL: $FVL is not an executable"; exit 1; }
tmp=$(mktemp -d)
TMUX_CMD=()
cleanup() {
  [ ${#TMUX_CMD[@]} -gt 0 ] && "${TMUX_CMD[@]}" kill-server >/dev/null 2>&1
  rm -rf "$tmp"
}
trap cleanup EXIT
unset FVL_THREADS LUA_INIT LUA_INIT_5_4
export FVL_HISTORY=

fails=0
pass=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
ok() { pass=$((pass + 1)); }
has() {      # has TEXT FILE WHAT
  if grep -qF -- "$1" "$2"; then ok; else fail "$3: lacks '$1' in: $(head -c 800 "$2")"; fi
}
lacks() {
  if grep -qF -- "$1" "$2"; then fail "$3: unexpected '$1' in: $(head -c 800 "$2")"; else ok; fi
}

# ================================================================ part 1: piped REPL
cat >"$tmp/in.txt" <<'EOF'
1+1
function sq(x)
  return x * x
end
sq(12)
error("boom42")
print("alive" .. 7)
7*6;
x = 10;
x + 1
"plain", 2.5, nil, true
{1, 2, 3, name = "n", sub = {k = 1}, [true] = 0}
{}
setmetatable({}, {__tostring = function() return "custom view" end})
setmetatable({}, {__tostring = function() error("tostring exploded") end})
local t = os.clock() while os.clock() - t < 1.2 do end
print("last")
for i = 1, 3 do
EOF
"$FVL" -i <"$tmp/in.txt" >"$tmp/out" 2>"$tmp/err"
rc=$?
[ $rc == 0 ] && ok || fail "piped REPL exited $rc"
has "fvl> 2" "$tmp/out" "1+1 prints 2"
has "144" "$tmp/out" "multi-line function definition"
has ">> " "$tmp/out" "continuation prompt"
has "stdin:1: boom42" "$tmp/err" "error message"
lacks "stack traceback" "$tmp/err" "a one-line error at the REPL: no traceback"
has "alive7" "$tmp/out" "the session goes on after an error"
lacks "42" "$tmp/out" "a trailing ; suppresses printing"
has "fvl> 11" "$tmp/out" "assignment with ; then use"
has "plain	2.5	nil	true" "$tmp/out" "several results, tab separated"
has '{1, 2, 3, name = "n", sub = {k = 1}, [true] = 0}' "$tmp/out" "one-line table view"
has "fvl> {}" "$tmp/out" "empty table"
has "custom view" "$tmp/out" "__tostring is used"
has "tostring exploded" "$tmp/err" "an error in __tostring is reported"
has "last" "$tmp/out" "the session survives a failing __tostring"
grep -qE '^\([0-9]+\.[0-9]+ s\)$' "$tmp/err" && ok || fail "a command over 1 s prints its time: $(cat "$tmp/err")"
has "'end' expected" "$tmp/err" "end of input inside a statement reports the syntax error"

# ? help
printf 'function scale(x, factor) return x * factor end\n? scale\n?\n? {alpha = 1, beta = print}\n' |
  "$FVL" -i >"$tmp/out" 2>&1
has "function(x, factor)  -- defined at stdin:1" "$tmp/out" "? describes a function's parameters and source"
has "Ctrl-D" "$tmp/out" "? alone prints the REPL help"
has "  alpha  beta(" "$tmp/out" "? lists a table's fields"

# the table view stays short
printf 'big = {}\nfor i = 1, 1000 do big[i] = i end\nbig\n' | "$FVL" -i >"$tmp/out" 2>&1
has "... (1000 entries)}" "$tmp/out" "a long table is cut"
[ "$(grep -c . "$tmp/out")" -le 3 ] && ok || fail "table view is one line"

# -i after a script: the script's globals are there
echo 'from_script = 99' >"$tmp/s.lua"
echo 'from_script + 1' | "$FVL" -i "$tmp/s.lua" >"$tmp/out" 2>&1
has "100" "$tmp/out" "-i runs the REPL after the script"

# "? name" prints the API reference entry generated from the doc comments (docs/api.md), from
# any directory (the text is embedded): Lua heads with their defaults, C functions' signatures
printf '%s\n' '? fvl.matmul' '? fvl.loss.arcface' 'loss = fvl.loss' '? loss.cosface' '? fvl.eval.verify' \
  '? function(a, b) end' >"$tmp/help.txt"
(cd "$tmp" && "$FVL" -i <"$tmp/help.txt" >"$tmp/help.out" 2>"$tmp/help.err")
has "fvl.matmul(a, b) -> tensor" "$tmp/help.out" "? fvl.matmul: the C function's signature"
lacks "its parameters are not known" "$tmp/help.out" "? fvl.matmul: documented, not 'unknown'"
has "fvl.loss.arcface{dim = D, classes = C, ...} -> head" "$tmp/help.out" "? fvl.loss.arcface"
has "  m = 0.5" "$tmp/help.out" "? fvl.loss.arcface shows the default margin"
has "  s = 64" "$tmp/help.out" "? fvl.loss.arcface shows the default scale"
has "  m = 0.35" "$tmp/help.out" "? loss.cosface (an alias of fvl.loss) shows its defaults"
has "fvl.eval.verify(emb, labels, opts)" "$tmp/help.out" "? fvl.eval.verify"
has "function(a, b)  -- defined at stdin:1" "$tmp/help.out" "? an undocumented function still describes it"
# tensor methods (C and Lua-written, asked as they are called), layer constructors, optimisers
printf '%s\n' 'x = fvl.zeros(2, 3)' '? x:sum' '? x.softmax' '? fvl.nn.Linear' '? fvl.optim.sgd' '? fvl.eye' \
  '? fvl.Tensor.cumsum' >"$tmp/help2.txt"
"$FVL" -i <"$tmp/help2.txt" >"$tmp/help2.out" 2>&1
has "fvl.Tensor:sum([dim [, keepdim]]) -> tensor" "$tmp/help2.out" "? x:sum: the C method's entry"
has "t:softmax([dim]) -> tensor" "$tmp/help2.out" "? x.softmax: the Lua-written method's entry"
has "fvl.nn.Linear(in_features, out_features [, opts]) -> module" "$tmp/help2.out" "? fvl.nn.Linear"
has "fvl.optim.sgd(" "$tmp/help2.out" "? fvl.optim.sgd"
has "fvl.eye(n [, m]) -> tensor" "$tmp/help2.out" "? fvl.eye"
has "t:cumsum([dim]) -> tensor" "$tmp/help2.out" "? fvl.Tensor.cumsum (not loaded under that name)"
lacks "nil: nil" "$tmp/help2.out" "a documented name prints its entry only"

# ================================================================ part 2: a real terminal
if ! command -v tmux >/dev/null 2>&1; then
  echo "SKIP: tmux is not installed, the pseudo-terminal REPL tests did not run"
  echo "repl.sh: $pass passed, $fails failed"
  [ $fails == 0 ]
  exit
fi

mkdir -p "$tmp/home/data"
touch "$tmp/home/data/train_pairs.csv"
TMUX_CMD=(env -u TMUX tmux -f /dev/null -S "$tmp/tmux.sock")
T=fvltest
screen() { "${TMUX_CMD[@]}" capture-pane -p -J -t "$T" -S -500 2>/dev/null; }
# wait_for TEXT [SECONDS]: the pane shows TEXT (fixed string)
wait_for() {
  local text=$1 limit=${2:-10} i=0
  while [ $i -lt $((limit * 10)) ]; do
    if screen | grep -qF -- "$text"; then return 0; fi
    sleep 0.1
    i=$((i + 1))
  done
  return 1
}
# count of prompts "fvl> " at line starts
prompts() { screen | grep -c '^fvl> '; }
wait_prompts() {   # wait until at least N prompts are shown
  local n=$1 i=0
  while [ $i -lt 100 ]; do
    [ "$(prompts)" -ge "$n" ] && return 0
    sleep 0.1
    i=$((i + 1))
  done
  return 1
}
type_line() { "${TMUX_CMD[@]}" send-keys -t "$T" -l -- "$1"; "${TMUX_CMD[@]}" send-keys -t "$T" Enter; }
type_text() { "${TMUX_CMD[@]}" send-keys -t "$T" -l -- "$1"; }
key() { "${TMUX_CMD[@]}" send-keys -t "$T" "$@"; }
expect_screen() {  # expect_screen TEXT WHAT [SECONDS]
  if wait_for "$1" "${3:-10}"; then ok; else fail "$2: '$1' never appeared on the terminal:"; screen | tail -20 | sed 's/^/  | /'; fi
}

"${TMUX_CMD[@]}" new-session -d -s "$T" -x 160 -y 50 -c "$tmp/home" \
  "env HOME='$tmp/home' FVL_HISTORY='$tmp/home/hist' INPUTRC=/dev/null TERM=xterm '$FVL'; echo FVL_EXITED=\$?; sleep 30"
if ! wait_for "fvl> " 15; then
  fail "the REPL prompt never appeared on a terminal"
  screen | sed 's/^/  | /'
  echo "repl.sh: $pass passed, $fails failed"
  exit 1
fi
ok
expect_screen "FaceVerLoss" "banner on a terminal"

# 1+1
n=$(prompts)
type_line '1+1'
wait_prompts $((n + 1))
screen | grep -qx '2' && ok || { fail "1+1 did not print 2 on the terminal"; screen | tail -5; }

# multi-line input with the continuation prompt
type_line 'function cube(x)'
expect_screen ">> " "continuation prompt on a terminal"
type_line '  return x * x * x'
type_line 'end'
type_line 'cube(11)'
expect_screen "1331" "multi-line function on a terminal"

# an error keeps the session alive
type_line 'error("pty-failure")'
expect_screen "stdin:1: pty-failure" "error message on a terminal"
type_line 'print("still" .. "-here")'
expect_screen "still-here" "the session goes on after an error"

# Ctrl-C interrupts a running Lua loop and the prompt comes back
type_line 'while true do end'
sleep 0.7
key C-c
expect_screen "interrupted" "Ctrl-C interrupts while true do end" 5
type_line 'print("after" .. "-interrupt")'
expect_screen "after-interrupt" "the prompt returns after Ctrl-C"

# Ctrl-C stops one long C kernel (it polls the engine's abort flag), and the flag is
# cleared back at the prompt so the next kernel runs
if "$FVL" -e 'os.exit(fvl.F and fvl.F.conv2d and 0 or 1)' >/dev/null 2>&1; then
  n=$(prompts)
  type_line 'xx, ww = fvl.zeros(64, 128, 64, 64), fvl.zeros(128, 128, 7, 7)'
  wait_prompts $((n + 1))
  type_line 'yy = fvl.F.conv2d(xx, ww)'
  sleep 1
  key C-c
  expect_screen "conv2d: interrupted" "Ctrl-C stops a long C kernel" 4
  type_line 'fvl.F.conv2d(fvl.ones(1, 1, 3, 3), fvl.ones(1, 1, 3, 3)):sum():item() .. "=nine"'
  expect_screen "9.0=nine" "the next kernel runs after an interrupt"
else
  echo "note: fvl.F.conv2d not available yet, C-kernel interrupt not checked"
fi

# Ctrl-C at the prompt drops the half-typed line
type_text 'this is not lua'
sleep 0.3
key C-c
sleep 0.3
type_line '2+3 .. "" .. "=five"'
expect_screen "5=five" "Ctrl-C at the prompt clears the line"
screen | grep -q "this is not lua.*2+3" && fail "the abandoned line was kept" || ok

# Ctrl-C in the middle of a multi-line statement abandons it
type_line 'for i = 1, 3 do'
sleep 0.2
key C-c
sleep 0.2
type_line 'print("fresh" .. "-statement")'
expect_screen "fresh-statement" "Ctrl-C abandons an unfinished statement"

# tab completion: a table field, a nested library function, a method through a metatable
type_line 'config = {learning_rate = 0.5, momentum = 0.9}'
type_text 'config.lea'
key Tab
sleep 0.4
type_line ' * 4'
expect_screen "config.learning_rate * 4" "Tab completes a table field"
screen | grep -qx '2.0' && ok || { fail "completed field did not evaluate"; screen | tail -5; }
type_text 'string.rev'
key Tab
sleep 0.4
type_line '"olleh")'
expect_screen 'string.reverse("olleh")' "Tab completes a nested function (with its parenthesis)"
expect_screen "hello" "completed call runs"
type_line 'word = "abc"'
type_text 'word:upp'
key Tab
sleep 0.4
type_line ')'
expect_screen "word:upper()" "Tab completes a method through the metatable"
expect_screen "ABC" "completed method runs"
type_line 'lazy = setmetatable({}, {__index = function(t, k) return k end, __complete = {"alphabet"}})'
type_text 'lazy.alp'
key Tab
sleep 0.4
type_line ''
expect_screen "lazy.alphabet" "Tab completes names listed in the metatable's __complete"
type_line 'config._private_thing = 1'
type_text 'io.open("data/trai'
key Tab
sleep 0.4
type_line '):close()'
expect_screen 'io.open("data/train_pairs.csv"):close()' "Tab completes a file name inside a string"
# absolute and ~/ paths complete as a whole (not from the last '/' relative to the cwd)
mkdir -p "$tmp/absdir" && touch "$tmp/absdir/absolute_target.txt" "$tmp/home/tilde_target.txt"
type_text "abs_p = \"$tmp/absdir/absolute_ta"
key Tab
sleep 0.4
key Enter
expect_screen "abs_p = \"$tmp/absdir/absolute_target.txt\"" "Tab completes an absolute path"
type_text 'tilde_p = "~/tilde_ta'
key Tab
sleep 0.4
key Enter
expect_screen 'tilde_p = "~/tilde_target.txt"' "Tab completes a ~/ path"
type_text 'config.'
key Tab Tab
expect_screen "momentum" "Tab Tab lists the fields"
screen | grep -q "_private_thing *$\|_private_thing  " && fail "names starting with _ are listed before _ is typed" || ok
key C-u
# methods of userdata: getmetatable(u).__index, once the tensor core provides them
if "$FVL" -e 'os.exit(fvl.zeros and fvl.zeros(1).matmul and 0 or 1)' >/dev/null 2>&1; then
  type_line 'tt = fvl.zeros(2, 2)'
  type_text 'tt:matm'
  key Tab
  sleep 0.4
  type_line 'tt):sum():item()'
  expect_screen "tt:matmul(tt)" "Tab completes a tensor method"
else
  echo "note: fvl.zeros/matmul not available yet, tensor method completion not checked"
fi

# Ctrl-D at an empty prompt leaves with status 0, and the history file has the commands
key C-d
expect_screen "FVL_EXITED=0" "Ctrl-D exits with status 0" 5
if [ -f "$tmp/home/hist" ] && grep -qxF '1+1' "$tmp/home/hist" && grep -qF 'cube(11)' "$tmp/home/hist"; then
  ok
else
  fail "history file lacks the commands: $(cat "$tmp/home/hist" 2>&1 | head -20)"
fi
"${TMUX_CMD[@]}" kill-server >/dev/null 2>&1

# history is read back: Up arrow recalls the previous session's command; the file is capped
{ for i in $(seq 1 1500); do echo "filler_$i = $i"; done; cat "$tmp/home/hist"; } >"$tmp/hist.new"
mv "$tmp/hist.new" "$tmp/home/hist"
"${TMUX_CMD[@]}" new-session -d -s "$T" -x 160 -y 50 -c "$tmp/home" \
  "env HOME='$tmp/home' FVL_HISTORY='$tmp/home/hist' INPUTRC=/dev/null TERM=xterm '$FVL'; echo FVL_EXITED=\$?; sleep 30"
wait_for "fvl> " 15 || fail "second REPL did not start"
key Up
sleep 0.4
# the last command of the previous session (before Ctrl-D): word:upper(), or the tensor line
screen | grep -qE '^fvl> (word:upper\(\)|tt:matmul\(tt\))' && ok ||
  { fail "Up did not recall the previous session's last command"; screen | tail -8; }
key C-u
type_line 'print("second" .. "-session")'
expect_screen "second-session" "second session runs"
key C-d
expect_screen "FVL_EXITED=0" "second session exits" 5
lines=$(wc -l <"$tmp/home/hist")
[ "$lines" -le 1000 ] && ok || fail "history file holds $lines lines, expected at most 1000"
tail -1 "$tmp/home/hist" | grep -qF 'print("second" .. "-session")' && ok ||
  fail "the newest entry is not at the end of the history file: $(tail -2 "$tmp/home/hist")"

echo "repl.sh: $pass passed, $fails failed"
[ $fails == 0 ]
