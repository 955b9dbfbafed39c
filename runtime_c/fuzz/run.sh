#!/bin/sh
# run.sh SECONDS [TARGET...] -- run each libFuzzer target (default: all four) for SECONDS,
# one after the other, niced; print executions, executions/s and crashes per target.
#
#   make -C runtime_c fuzz && runtime_c/fuzz/run.sh 120
#
# Corpora live in build/fuzz/corpus/TARGET (seeded by fuzz/seeds.py from spec/vectors/valid
# on first use, and kept between runs); crash/leak/timeout inputs are written to
# build/fuzz/crashes/TARGET-*. Copy a crash to fuzz/regressions/ (tests/test_fuzz_regressions.py
# replays that folder through both readers) and fix the bug.
set -u
secs=${1:?usage: run.sh SECONDS [TARGET...]}
shift
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
targets=${*:-open msgpack entropy run}
out=build/fuzz
[ -d "$out/corpus/open" ] || ${PYTHON:-python3} fuzz/seeds.py "$out/corpus" || exit 1
mkdir -p "$out/crashes"
printf '%-8s %12s %10s %8s\n' target execs execs/s crashes
total=0
for t in $targets; do
  bin=$out/fuzz_$t
  [ -x "$bin" ] || { echo "missing $bin: run make fuzz" >&2; exit 1; }
  before=$(ls "$out/crashes" | grep -c "^$t-" || true)
  : > "$out/$t.log"
  start=$(date +%s)
  left=$secs
  # libFuzzer stops at the first crash: restart (up to 5 times) until the time is used
  for attempt in 1 2 3 4 5 6; do
    ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 UBSAN_OPTIONS=print_stacktrace=1 \
    OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive \
    nice -n 10 "$bin" "$out/corpus/$t" -max_total_time="$left" -timeout=10 -rss_limit_mb=2048 \
        -max_len=65536 -print_final_stats=1 -artifact_prefix="$out/crashes/$t-" \
        >> "$out/$t.log" 2>&1 && break
    left=$((secs - ($(date +%s) - start)))
    [ "$left" -gt 1 ] || break
  done
  execs=$(grep -E '^stat::number_of_executed_units' "$out/$t.log" | awk '{s+=$2} END {print s+0}')
  took=$(( $(date +%s) - start ))
  rate=$(( execs / (took > 0 ? took : 1) ))
  after=$(ls "$out/crashes" | grep -c "^$t-" || true)
  printf '%-8s %12s %10s %8s\n' "$t" "$execs" "$rate" "$((after - before))"
  total=$((total + after - before))
done
echo "crashes total: $total (inputs in $out/crashes; logs in $out/TARGET.log)"
[ "$total" -eq 0 ]
