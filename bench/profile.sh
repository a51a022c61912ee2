#!/usr/bin/env bash
# Where the Sluice broker's CPU goes under one load: `perf record` (cpu-clock samples, call graphs
# unwound from .eh_frame, so the release build needs no frame pointers) of the release broker while
# sluice-loadgen drives it, then `perf report` by self time and by inclusive time.
#
# Usage: bench/profile.sh produce|consume|e2e [extra sluice-loadgen args...]
#   produce   max-throughput produce, 1 KiB, acks=all (override with e.g. --acks 1 --record-size 100)
#   consume   fills CONSUME_GIB first (not profiled), then profiles reading it from offset 0
#   e2e       fixed-rate produce + consume (--rate 10000 unless given)
# Env: CLIENT=rdkafka|raw (rdkafka: librdkafka's produce/consume; raw: the loadgen's raw client,
#      whose own cost is small, for produce and consume), FSYNC=interval|always (interval),
#      PARTITIONS=1, PROFILE_SECONDS=10, CONSUME_GIB=2,
#      OUT_DIR (default /tmp/sluice-profile-<utc>), SLUICE_BIN, LOADGEN_BIN
# Writes OUT_DIR/perf.data, self.txt, children.txt, loadgen.json; needs `perf` (linux-perf).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODE="${1:?usage: bench/profile.sh produce|consume|e2e [loadgen args...]}"
shift
FSYNC="${FSYNC:-interval}"
PARTITIONS="${PARTITIONS:-1}"
SECS="${PROFILE_SECONDS:-10}"
CONSUME_GIB="${CONSUME_GIB:-2}"
CLIENT="${CLIENT:-rdkafka}"
case "$CLIENT" in
    rdkafka) PRODUCE=(produce) CONSUME=(consume) ;;
    raw) PRODUCE=(raw-produce --partitions "$PARTITIONS") CONSUME=(raw-consume --partitions "$PARTITIONS") ;;
    *) echo "profile.sh: CLIENT=$CLIENT (rdkafka or raw)" >&2; exit 2 ;;
esac
OUT_DIR="${OUT_DIR:-/tmp/sluice-profile-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$OUT_DIR"
log() { echo "[profile $(date -u +%H:%M:%S)] $*" >&2; }
command -v perf >/dev/null || { log "perf not found (apt-get install linux-perf)"; exit 1; }

if [[ -z "${SLUICE_BIN:-}" || -z "${LOADGEN_BIN:-}" ]]; then
    (cd "$ROOT" && cargo build --release --locked -p sluice-broker -p sluice-loadgen) >"$OUT_DIR/cargo.log" 2>&1
    SLUICE_BIN="${SLUICE_BIN:-$ROOT/target/release/sluice-broker}"
    LOADGEN_BIN="${LOADGEN_BIN:-$ROOT/target/release/sluice-loadgen}"
fi
WORK="$(mktemp -d /tmp/sluice-profile.XXXXXX)"
PID=""
cleanup() {
    [[ -n "$PID" ]] && { kill -TERM "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; }
    rm -rf "$WORK"
}
trap cleanup EXIT
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
KPORT="$(free_port)"
env -i PATH="$PATH" HOME="$HOME" RUST_LOG=info "$SLUICE_BIN" --data-dir "$WORK/data" \
    --listen "127.0.0.1:$KPORT" --http-listen "127.0.0.1:$(free_port)" --fsync "$FSYNC" \
    >"$OUT_DIR/broker.log" 2>&1 </dev/null &
PID=$!
B="127.0.0.1:$KPORT"
"$LOADGEN_BIN" ready --bootstrap "$B" --timeout-seconds 30 >/dev/null
"$LOADGEN_BIN" create-topic --bootstrap "$B" --topic prof --partitions "$PARTITIONS" >/dev/null

record() { # record: perf on the broker for SECS seconds, in the background
    perf record -e cpu-clock -F 499 --call-graph dwarf,8192 -p "$PID" -o "$OUT_DIR/perf.data" \
        -- sleep "$SECS" >"$OUT_DIR/perf-record.log" 2>&1 &
    PERF=$!
}

case "$MODE" in
    produce)
        record
        "$LOADGEN_BIN" "${PRODUCE[@]}" --bootstrap "$B" --topic prof --acks all --warmup-seconds 0 \
            --seconds "$SECS" --watch-pid "$PID" "$@" >"$OUT_DIR/loadgen.json"
        ;;
    e2e)
        rate=(--rate 10000)
        [[ " $* " == *" --rate "* ]] && rate=()
        record
        "$LOADGEN_BIN" produce --bootstrap "$B" --topic prof --acks all --linger-ms 0 --e2e \
            "${rate[@]}" --warmup-seconds 0 --seconds "$SECS" --watch-pid "$PID" "$@" >"$OUT_DIR/loadgen.json"
        ;;
    consume)
        log "filling $CONSUME_GIB GiB (not profiled)"
        "$LOADGEN_BIN" produce --bootstrap "$B" --topic prof --acks 1 --bytes $((CONSUME_GIB << 30)) >/dev/null
        record
        "$LOADGEN_BIN" "${CONSUME[@]}" --bootstrap "$B" --topic prof --watch-pid "$PID" "$@" >"$OUT_DIR/loadgen.json"
        ;;
    *) log "unknown mode $MODE"; exit 2 ;;
esac
wait "$PERF" || true
cat "$OUT_DIR/loadgen.json"
perf report -i "$OUT_DIR/perf.data" --no-children --sort symbol --stdio --percent-limit 0.7 \
    2>/dev/null | grep -v '^$' >"$OUT_DIR/self.txt" || true
perf report -i "$OUT_DIR/perf.data" --children --sort symbol --stdio --percent-limit 3 -g none \
    2>/dev/null | grep -v '^$' >"$OUT_DIR/children.txt" || true
log "profile: $OUT_DIR (self.txt: self time by symbol; children.txt: inclusive time)"
