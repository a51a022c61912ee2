#!/usr/bin/env bash
# Builds the broker's fuzz targets and runs each for a fixed time, one after the other, then
# prints executions, executions per second and crashes per target (docs/reliability.md).
#
# Engine: libFuzzer through the `libfuzzer-sys` crate, on the stable toolchain: the coverage
# instrumentation that `cargo fuzz` asks a nightly compiler for is passed here as stable
# `-C passes=sancov-module` / `-C llvm-args=-sanitizer-coverage-*` flags (no sanitizer: the
# broker has no unsafe code, and AddressSanitizer needs nightly). An allocator in front of the
# system one (fuzz/src/lib.rs) turns an allocation above SLUICE_FUZZ_MAX_ALLOC_MB (256) into a
# crash.
#
# Usage: fuzz/run.sh [seconds per target, default 60] [target ...]
#   SLUICE_FUZZ_RUNS=N   run each target for N executions instead of a time
# Everything it builds or keeps is under ${SLUICE_CACHE:-~/.cache/sluice}/fuzz: the build
# (target/), the corpora (corpus/<target>, kept between runs), crash inputs
# (artifacts/<target>/) and one line per target and run in results.tsv.
set -euo pipefail
cd "$(dirname "$0")"

seconds=${1:-60}
shift || true
all=(kafka_requests record_batches partition_dir cluster_rpc raft_dir epoch_cache group_offsets)
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${all[@]}")

cache=${SLUICE_CACHE:-$HOME/.cache/sluice}/fuzz
export CARGO_TARGET_DIR=$cache/target
triple=$(rustc -vV | sed -n 's/^host: //p')
# What cargo-fuzz passes, minus the nightly-only parts. --target keeps these flags off build
# scripts and proc macros, which cannot link the coverage callbacks.
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cforce-frame-pointers"

echo "==> building the fuzz targets (release, coverage-instrumented) into $CARGO_TARGET_DIR"
# Only the targets asked for: each instrumented binary takes a while to link.
bins=()
for t in "${targets[@]}"; do bins+=(--bin "$t"); done
nice -n 10 cargo build --release --locked --target "$triple" "${bins[@]}"
bin=$CARGO_TARGET_DIR/$triple/release

rm -rf "$cache/seeds"
mkdir -p "$cache/seeds" "$cache/corpus" "$cache/artifacts"

max_len() {
  case $1 in
    epoch_cache) echo 1024 ;;
    *) echo 65536 ;;
  esac
}

printf '\n%-16s %14s %10s %8s %s\n' target executions "exec/s" crashes "new crash inputs"
failed=0
for t in "${targets[@]}"; do
  corpus=$cache/corpus/$t
  artifacts=$cache/artifacts/$t
  mkdir -p "$corpus" "$artifacts"
  log=$cache/last-$t.log
  limit=(-max_total_time="$seconds")
  [ -n "${SLUICE_FUZZ_RUNS:-}" ] && limit=(-runs="$SLUICE_FUZZ_RUNS")
  SLUICE_FUZZ_WRITE_SEEDS=$cache/seeds/$t "$bin/$t" >/dev/null 2>&1
  rm -rf /dev/shm/sluice-fuzz-* 2>/dev/null || true
  before=$(ls "$artifacts" | wc -l)
  started=$(date +%s)
  set +e
  nice -n 10 "$bin/$t" "$corpus" "$cache/seeds/$t" \
    "${limit[@]}" -max_len="$(max_len "$t")" -timeout=20 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$artifacts/" >"$log" 2>&1
  rc=$?
  set -e
  elapsed=$(( $(date +%s) - started ))
  rm -rf /dev/shm/sluice-fuzz-* 2>/dev/null || true
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  execs=${execs:-0}
  rate=$(( execs / (elapsed > 0 ? elapsed : 1) ))
  new=$(( $(ls "$artifacts" | wc -l) - before ))
  crashes=0
  if [ "$rc" -ne 0 ]; then crashes=1; failed=1; fi
  # head may close the pipe before ls has written everything (always with -n 0): ls's SIGPIPE
  # must not end the script under pipefail (it did, after raft_dir's 10M runs, before the line
  # below was written).
  inputs=$(ls -t "$artifacts" | head -n "$new" | tr '\n' ' ' || true)
  printf '%-16s %14s %10s %8s %s\n' "$t" "$execs" "$rate" "$crashes" "$inputs"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$(git rev-parse --short HEAD 2>/dev/null || echo -)" \
    "$t" "$execs" "$elapsed" "$crashes" "$(uptime | sed 's/.*load average: //')" >>"$cache/results.tsv"
  if [ "$rc" -ne 0 ]; then
    echo "    $t stopped (exit $rc): see $log; reproduce with: $bin/$t <crash input>"
    grep -m5 -E 'panicked|ERROR|deadly|exceeds the limit' "$log" | sed 's/^/    /' || true
  fi
done
echo
echo "results appended to $cache/results.tsv"
exit $failed
