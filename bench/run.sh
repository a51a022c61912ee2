#!/usr/bin/env bash
# Rough single-node throughput of sluice-broker on this machine (kept under a minute):
# builds the broker in release mode, starts it on a fresh temporary data dir with --fsync always,
# produces 1 KiB records with acks=all and consumes them back with confluent-kafka (librdkafka),
# then prints records/s, MB/s and the broker's CPU seconds.
#
#   bench/run.sh [--count N] [--size BYTES] [--partitions P] [--compression C]
#   BENCH_FSYNC=interval bench/run.sh    # the fsync policy under test (default always)
#
# Comparing with Apache Kafka (a later issue): start kafka_2.13 from Maven Central as a
# single-node KRaft server (StorageTool format --standalone, then kafka.Kafka server.properties
# with log.flush.interval.messages=1 to match --fsync always) on another loopback port and run
# the same perf.py against it in the same run, so both share the machine's state.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "bench: building sluice-broker (release)" >&2
cargo build --release -p sluice-broker --bin sluice-broker >&2
PY="${SLUICE_PYTHON:-$(scripts/clients.sh)}"

work="$(mktemp -d)"
broker_pid=""
cleanup() {
  if [[ -n "$broker_pid" ]] && kill -0 "$broker_pid" 2>/dev/null; then
    kill -TERM "$broker_pid" 2>/dev/null || true
    wait "$broker_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

target_dir="$(cargo metadata --format-version 1 --no-deps | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
# The broker refuses unknown SLUICE_* variables (SLUICE_PYTHON is the test harness's).
env -u SLUICE_PYTHON "$target_dir/release/sluice-broker" --data-dir "$work/data" --listen 127.0.0.1:0 --http-listen 127.0.0.1:0 \
  --fsync "${BENCH_FSYNC:-always}" >"$work/broker.log" 2>&1 &
broker_pid=$!

addr=""
for _ in $(seq 1 200); do
  addr="$(sed -n 's/.*listening kafka=\([0-9.:]*\).*/\1/p' "$work/broker.log" | head -1)"
  [[ -n "$addr" ]] && break
  kill -0 "$broker_pid" 2>/dev/null || { cat "$work/broker.log" >&2; echo "bench: broker exited" >&2; exit 1; }
  sleep 0.05
done
[[ -n "$addr" ]] || { cat "$work/broker.log" >&2; echo "bench: no 'listening kafka=' line in 10 s" >&2; exit 1; }
echo "bench: broker at $addr (fsync ${BENCH_FSYNC:-always}), $(nproc) cores shared with the load generator" >&2

cpu() { awk '{print ($14 + $15) / 100}' "/proc/$broker_pid/stat"; }
cpu0="$(cpu)"
timeout 90 "$PY" bench/perf.py --bootstrap "$addr" "$@"
cpu1="$(cpu)"
echo "broker CPU: $(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { printf "%.2f", b - a }') s for both phases"
echo "data dir size: $(du -sh "$work/data" | cut -f1)"
