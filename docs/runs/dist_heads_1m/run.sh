#!/bin/bash
# the dist_heads runs for the README rows (run with nice -n 5 from anywhere)
cd "$(dirname "$0")/../../.."   # the repository root; output in out_1m.txt there
{ echo "load at start: $(cat /proc/loadavg)"; date -u; } > out_1m.txt
build/fvl scripts/bench/dist_heads.lua --C 1000000 --np 1,2,4 --pfc 0.1 --steps 2 --warmup 1 --max-gb 10 >> out_1m.txt 2>&1
{ echo "load: $(cat /proc/loadavg)"; date -u; } >> out_1m.txt
build/fvl scripts/bench/dist_heads.lua --C 1000000 --np 1,2,4 --pfc 0 --steps 1 --warmup 0 --max-gb 10 --gemm 0 >> out_1m.txt 2>&1
{ echo "load: $(cat /proc/loadavg)"; date -u; } >> out_1m.txt
build/fvl scripts/bench/dist_heads.lua --C 2000000 --np 1,2,4 --pfc 0.1 --steps 1 --warmup 0 --max-gb 10 --gemm 0 >> out_1m.txt 2>&1
{ echo "load at end: $(cat /proc/loadavg)"; date -u; } >> out_1m.txt
