#!/usr/bin/env bash
# run.sh — the fuzz harness: libFuzzer targets for the file parsers (.npy, .npz, IDX/.gz, RecordIO
# .rec + .idx with the insightface image-set reader, .bin pickle packs, JPEG/PNG decoding, the
# checkpoint header through the Lua loader) built
# with clang + ASan + UBSan, and the seeded Lua API call-stream fuzzer under the ASan build.
#
#   bash tests/fuzz/run.sh [seconds per target [api fuzzer seconds [api seeds]]]
#   (api seeds: one seed or a comma list, e.g. 11,12,13: the API fuzzer runs each for its seconds)
#   FUZZ_TARGETS="rec bin" bash tests/fuzz/run.sh 600 0     # some parsers only, no API fuzzer
#   FUZZ_TARGETS=none bash tests/fuzz/run.sh 0 300 11,12    # the API fuzzer only, two seeds
#
# .ci/run runs it for a few seconds each; a longer hunt is e.g. `bash tests/fuzz/run.sh 600 300 7,8,9,10`.
# Inputs that crashed are kept by libFuzzer as build-fuzz/crash-*; copy one into
# tests/fuzz/regress/<target>/ to make it a regression input (every file there is replayed
# first, each run). Seeds come from tests/fuzz/seeds/<target>/ (written by the project's own
# writers: tests/fuzz/make_seeds.lua) and the golden files. The API fuzzer's seed reproduces its call stream (FVL_FUZZ_VERBOSE=1 prints
# every call). Needs clang and libclang-rt-14-dev (tools/deps.sh), and build-asan/ for the API
# fuzzer (skipped with a note when absent).
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:-5}
API_SECS=${2:-20}
API_SEED=${3:-1}
OUT=build-fuzz
mkdir -p "$OUT/obj"
CC=${FUZZ_CC:-clang}
command -v "$CC" >/dev/null || { echo "run.sh: $CC not found: apt-get install -y clang libclang-rt-14-dev" >&2; exit 1; }

# the parsers and what they need from the engine (no plots, stores, MPI)
SRC=(engine/core.c engine/tensor.c engine/autograd.c engine/ops.c engine/rng.c engine/data/idx.c
     engine/data/data_tensor.c engine/data/npyz.c engine/data/synthetic.c engine/data/batch.c engine/sys.c
     engine/data/image.c engine/data/recordio.c engine/data/pickle.c engine/data/loader.c
     engine/data/folder.c engine/sort.c engine/mem.c engine/eval.c engine/cluster.c engine/megaface.c
     lua/bind_tensor.c lua/bind_runtime.c lua/bind_sys.c lua/bind_data_faces.c lua/bind_util.c lua/bind_check.c lua/bind_labels.c lua/bind_cluster.c lua/bind_megaface.c
     engine/data/warp.c lua/bind_warp.c)
# (the lua/ bindings: fuzz_checkpoint runs the Lua checkpoint loader on them)
CFLAGS=(-g -O1 -std=gnu11 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
        -fopenmp -Iengine -Iengine/data -Ilua $(pkg-config --cflags openblas zlib libturbojpeg libpng lua5.4) -DFVL_SANITIZE=1
        -DFVL_BUILD_TYPE='"fuzz"' -ffunction-sections -fdata-sections -w)
LIBS=($(pkg-config --libs openblas zlib libturbojpeg libpng lua5.4) -lm -lpthread -Wl,--gc-sections)
objs=()
for s in "${SRC[@]}"; do
  o="$OUT/obj/$(echo "$s" | tr / _).o"
  if [ ! -f "$o" ] || [ "$s" -nt "$o" ] || [ engine/tensor.h -nt "$o" ] || [ engine/core.h -nt "$o" ] || [ lua/bind.h -nt "$o" ]; then
    "$CC" "${CFLAGS[@]}" -fsanitize=fuzzer-no-link -c "$s" -o "$o" &
  fi
  objs+=("$o")
done
wait
for o in "${objs[@]}"; do [ -f "$o" ] || { echo "run.sh: compiling $o failed" >&2; exit 1; }; done

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:allocator_may_return_null=1:max_allocation_size_mb=512
export LSAN_OPTIONS=suppressions=$(pwd)/tools/lsan.supp
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export OMP_NUM_THREADS=1

seed_corpus() {   # a few valid files of each kind to start from
  local t=$1 d=$OUT/corpus/$1
  mkdir -p "$d"
  case $t in
    npy) cp -n tests/golden/faces/*.npy "$d"/ 2>/dev/null || true ;;
    npz) cp -n tests/golden/faces/*.npz "$d"/ 2>/dev/null || true ;;
    bin) cp -n tests/golden/faces/*.bin "$d"/ 2>/dev/null || true ;;
    idx) printf '\0\0\10\3\0\0\0\2\0\0\0\2\0\0\0\3\1\2\3\4\5\6\7\10\11\12\13\14' > "$d/images.idx"
         printf '\0\0\10\1\0\0\0\4\1\2\3\11' > "$d/labels.idx"
         printf '\0\0\14\1\0\0\0\2\0\0\0\5\177\377\377\377' > "$d/int32.idx"
         gzip -c "$d/images.idx" > "$d/images.idx.gz" ;;
  esac
  if [ -d tests/fuzz/seeds/$t ]; then cp -n tests/fuzz/seeds/$t/* "$d"/; fi
}

status=0
for t in ${FUZZ_TARGETS:-npy npz idx rec bin image checkpoint}; do
  [ "$t" = none ] && continue   # FUZZ_TARGETS=none: the API fuzzer only
  "$CC" "${CFLAGS[@]}" -DFVL_SRC_DIR="\"$(pwd)\"" -fsanitize=fuzzer tests/fuzz/fuzz_$t.c "${objs[@]}" "${LIBS[@]}" -o "$OUT/fuzz_$t"
  seed_corpus $t
  reg=tests/fuzz/regress/$t
  if [ -d "$reg" ] && [ -n "$(ls -A "$reg" 2>/dev/null)" ]; then
    echo "== fuzz_$t: replaying $(ls "$reg" | wc -l) regression inputs"
    "$OUT/fuzz_$t" -runs=0 "$reg"/* >/dev/null 2>"$OUT/fuzz_$t.replay.log" || { cat "$OUT/fuzz_$t.replay.log" >&2; status=1; }
  fi
  echo "== fuzz_$t: $SECS s"
  if ! (cd "$OUT" && ./fuzz_$t -max_total_time="$SECS" -timeout=20 -rss_limit_mb=4096 -print_final_stats=1 \
          corpus/$t > fuzz_$t.log 2>&1); then
    tail -40 "$OUT/fuzz_$t.log" >&2
    status=1
  else
    grep -E "stat::number_of_executed_units|stat::new_units_added" "$OUT/fuzz_$t.log" | tr '\n' ' '; echo
  fi
done

if [ "$API_SECS" = 0 ]; then
  echo "== api_fuzz: skipped (0 s)"
elif [ -x build-asan/fvl ]; then
  root=$(pwd)
  for seed in ${API_SEED//,/ }; do
    echo "== api_fuzz: seed $seed, $API_SECS s (build-asan)"
    # in a scratch directory: option words double as file names (plots, saves) there
    work=$(mktemp -d)
    if (cd "$work" && "$root/build-asan/fvl" "$root/tests/fuzz/api_fuzz.lua" "$seed" "$API_SECS") \
         > "$OUT/api_fuzz.$seed.log" 2>&1; then
      grep "^api_fuzz:" "$OUT/api_fuzz.$seed.log" | tail -2 | cut -c1-400 || true   # its summary (LeakSanitizer prints after it)
    else
      grep -v "failed to allocate" "$OUT/api_fuzz.$seed.log" | tail -60 >&2
      echo "api_fuzz: FAILED with seed $seed (rerun with FVL_FUZZ_VERBOSE=1 to see the calls)" >&2
      status=1
    fi
    rm -rf "$work"
  done
else
  echo "== api_fuzz: skipped (no build-asan/fvl; cmake -S . -B build-asan -DFVL_SANITIZE=ON first)"
fi
exit $status
