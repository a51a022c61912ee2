#!/usr/bin/env bash
# A/B of two (or more) sluice-broker binaries under one load, alternated round by round on the
# same machine, so that a change's effect is not confused with the machine's drift.
#
# Usage: bench/ab.sh produce|consume|latency BINARY_A BINARY_B [BINARY...]
#   produce   every run on a fresh data dir: PRODUCE_SECONDS of `sluice-loadgen raw-produce`
#             (or `produce`, see CLIENT; RECORD_SIZE, ACKS, PARTITIONS) after WARMUP_SECONDS
#   consume   one backlog of CONSUME_GIB filled once (by the first binary, not measured), then
#             every run reads all of it from offset 0 with `sluice-loadgen raw-consume` (or
#             `consume`)
#   latency   every run on a fresh data dir: librdkafka at a fixed RATE (1 KiB, acks=ACKS,
#             linger 0) for PRODUCE_SECONDS after WARMUP_SECONDS, latency from intended send
#             times (`sluice-loadgen produce --rate --e2e`); prints produce p50/p99/p99.9,
#             end-to-end p99 and the client's own send lag p99 in ms, then the broker's fsyncs
#             per second over the run and their mean duration in ms (how a group commit batched)
# Env: CLIENT=raw (the loadgen's raw client, ~0.1 CPU-s/GiB: the broker's figure) or rdkafka
#      (librdkafka, ~1.2 CPU-s/GiB: what an application sees)
#      ROUNDS=5 RECORD_SIZE=1024 ACKS=all PARTITIONS=1 PRODUCE_SECONDS=10 WARMUP_SECONDS=3
#      CONSUME_GIB=2 FSYNC=interval RATE=1000 (latency) CONSUME_ARGS (more sluice-loadgen
#      consume arguments, e.g. "-X fetch.queue.backoff.ms=10") PASSES=1 (consume: reads of the backlog per broker start,
#      the last one measured; 2 measures a broker that already read it once, which is what
#      a zero-copy fetch needs: docs/benchmarks.md) LOADGEN_BIN (default: cargo build --release -p sluice-loadgen)
#      WORK (default: a temp dir, removed at exit)
# Prints one line per run (binary, MiB/s, broker and client CPU-s per GiB and cores) and the
# median of each binary at the end.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODE="${1:?usage: bench/ab.sh produce|consume|latency BINARY_A BINARY_B [BINARY...]}"
shift
[[ $# -ge 2 ]] || { echo "ab.sh: give at least two broker binaries" >&2; exit 2; }
BINS=("$@")
for b in "${BINS[@]}"; do [[ -x "$b" ]] || { echo "ab.sh: $b is not executable" >&2; exit 2; }; done
ROUNDS="${ROUNDS:-5}"
RECORD_SIZE="${RECORD_SIZE:-1024}"
ACKS="${ACKS:-all}"
PARTITIONS="${PARTITIONS:-1}"
PRODUCE_SECONDS="${PRODUCE_SECONDS:-10}"
WARMUP_SECONDS="${WARMUP_SECONDS:-3}"
CONSUME_GIB="${CONSUME_GIB:-2}"
FSYNC="${FSYNC:-interval}"
CLIENT="${CLIENT:-raw}"
PASSES="${PASSES:-1}"
RATE="${RATE:-1000}"
case "$CLIENT" in
raw) PRODUCE_CMD=(raw-produce --partitions "$PARTITIONS") CONSUME_CMD=(raw-consume --partitions "$PARTITIONS") ;;
rdkafka) PRODUCE_CMD=(produce) CONSUME_CMD=(consume) ;;
*) echo "ab.sh: CLIENT=$CLIENT (raw or rdkafka)" >&2; exit 2 ;;
esac
# shellcheck disable=SC2206 # word splitting of the extra arguments is the point
CONSUME_CMD+=(${CONSUME_ARGS:-})
if [[ -z "${LOADGEN_BIN:-}" ]]; then
    (cd "$ROOT" && cargo build --release --locked -p sluice-loadgen) >&2
    LOADGEN_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/sluice-loadgen"
fi
WORK="${WORK:-$(mktemp -d /tmp/sluice-ab.XXXXXX)}"
PID=""
cleanup() {
    [[ -n "$PID" ]] && { kill -TERM "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; }
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
KPORT="$(free_port)"
HPORT="$(free_port)"
BOOT="127.0.0.1:$KPORT"

start() { # start BINARY DATA_DIR
    "$1" --data-dir "$2" --listen "$BOOT" --advertise "$BOOT" --http-listen "127.0.0.1:$HPORT" \
        --fsync "$FSYNC" --group-initial-rebalance-delay-ms 0 >>"$WORK/broker.log" 2>&1 </dev/null &
    PID=$!
    "$LOADGEN_BIN" ready --bootstrap "$BOOT" >/dev/null 2>>"$WORK/loadgen.log" \
        || { echo "ab.sh: $1 did not become ready (log: $WORK/broker.log)" >&2; exit 1; }
}
stop() { kill -TERM "$PID"; wait "$PID" || true; PID=""; }
fields() { python3 -c 'import json, sys
d = json.loads(sys.stdin.read().strip().splitlines()[-1])
keys = ["lat_p50_ms", "lat_p99_ms", "lat_p999_ms", "e2e_p99_ms", "send_lag_p99_ms", "fsyncs_per_s", "fsync_mean_ms"] \
    if sys.argv[1] == "latency" \
    else ["mib_s", "broker_cpu_s_per_gib", "client_cpu_s_per_gib", "broker_cores", "client_cores"]
print(*(d[k] for k in keys))' "$MODE"; }
# The broker's fsyncs per second of the whole run and their mean duration, added to the loadgen's
# JSON line (latency mode: how a group commit batched what arrived).
fsync_rate() { # fsync_rate SECONDS JSON: prints the loadgen's JSON with the two fields added
    curl -fsS "http://127.0.0.1:$HPORT/metrics" | python3 -c 'import json, sys
secs = float(sys.argv[1]); n = t = 0.0
for l in sys.stdin:
    if l.startswith("sluice_log_fsyncs_total"): n += float(l.split()[-1])
    elif l.startswith("sluice_log_fsync_seconds_total"): t += float(l.split()[-1])
d = json.loads(sys.argv[2].strip().splitlines()[-1])
d["fsyncs_per_s"] = round(n / secs, 1); d["fsync_mean_ms"] = round(1e3 * t / n, 3) if n else 0
print(json.dumps(d))' "$1" "$2"; }

if [[ "$MODE" == consume ]]; then
    start "${BINS[0]}" "$WORK/backlog"
    "$LOADGEN_BIN" create-topic --bootstrap "$BOOT" --topic ab --partitions "$PARTITIONS" \
        --replication-factor 1 >/dev/null 2>>"$WORK/loadgen.log"
    echo "filling $CONSUME_GIB GiB (not measured)" >&2
    "$LOADGEN_BIN" produce --bootstrap "$BOOT" --topic ab --record-size "$RECORD_SIZE" --acks 1 \
        --bytes $((CONSUME_GIB << 30)) >/dev/null 2>>"$WORK/loadgen.log"
    stop
fi

if [[ "$MODE" == latency ]]; then
    echo "binary produce_p50_ms produce_p99_ms produce_p999_ms e2e_p99_ms send_lag_p99_ms fsyncs_per_s fsync_mean_ms" >"$WORK/runs.txt"
else
    echo "binary MiB/s broker_cpu_s_per_gib client_cpu_s_per_gib broker_cores client_cores" >"$WORK/runs.txt"
fi
for round in $(seq "$ROUNDS"); do
    for b in "${BINS[@]}"; do
        case "$MODE" in
        produce)
            rm -rf "$WORK/data"
            start "$b" "$WORK/data"
            "$LOADGEN_BIN" create-topic --bootstrap "$BOOT" --topic ab --partitions "$PARTITIONS" \
                --replication-factor 1 >/dev/null 2>>"$WORK/loadgen.log"
            out="$("$LOADGEN_BIN" "${PRODUCE_CMD[@]}" --bootstrap "$BOOT" --topic ab --record-size "$RECORD_SIZE" \
                --acks "$ACKS" --warmup-seconds "$WARMUP_SECONDS" --seconds "$PRODUCE_SECONDS" \
                --watch-pid "$PID" 2>>"$WORK/loadgen.log")"
            ;;
        latency)
            rm -rf "$WORK/data"
            start "$b" "$WORK/data"
            "$LOADGEN_BIN" create-topic --bootstrap "$BOOT" --topic ab --partitions 1 \
                --replication-factor 1 >/dev/null 2>>"$WORK/loadgen.log"
            out="$("$LOADGEN_BIN" produce --bootstrap "$BOOT" --topic ab --record-size "$RECORD_SIZE" \
                --acks "$ACKS" --linger-ms 0 --rate "$RATE" --e2e --warmup-seconds "$WARMUP_SECONDS" \
                --seconds "$PRODUCE_SECONDS" --watch-pid "$PID" 2>>"$WORK/loadgen.log")"
            out="$(fsync_rate $((WARMUP_SECONDS + PRODUCE_SECONDS)) "$out")"
            ;;
        consume)
            start "$b" "$WORK/backlog"
            for _ in $(seq $((PASSES - 1))); do
                "$LOADGEN_BIN" "${CONSUME_CMD[@]}" --bootstrap "$BOOT" --topic ab --bytes $((CONSUME_GIB << 30)) \
                    --watch-pid "$PID" >/dev/null 2>>"$WORK/loadgen.log"
            done
            out="$("$LOADGEN_BIN" "${CONSUME_CMD[@]}" --bootstrap "$BOOT" --topic ab --bytes $((CONSUME_GIB << 30)) \
                --watch-pid "$PID" 2>>"$WORK/loadgen.log")"
            ;;
        *) echo "ab.sh: unknown mode $MODE (produce or consume)" >&2; exit 2 ;;
        esac
        stop
        line="$b $(fields <<<"$out")"
        echo "round $round: $line"
        echo "$line" >>"$WORK/runs.txt"
    done
done
python3 - "$WORK/runs.txt" "$MODE" <<'EOF'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]).read().splitlines()[1:]]
for b in dict.fromkeys(r[0] for r in rows):
    mine = [[float(x) for x in r[1:]] for r in rows if r[0] == b]
    med = [statistics.median(c) for c in zip(*mine)]
    if sys.argv[2] == "latency":
        print(f"median of {len(mine)}: {b}: produce p50 {med[0]:.3f} p99 {med[1]:.3f} p99.9 {med[2]:.3f} ms, "
              f"end-to-end p99 {med[3]:.3f} ms, client send lag p99 {med[4]:.3f} ms, "
              f"{med[5]:.0f} fsyncs/s of {med[6]:.3f} ms")
        continue
    print(f"median of {len(mine)}: {b}: {med[0]:.0f} MiB/s, broker {med[1]:.2f} CPU-s/GiB, "
          f"client {med[2]:.2f} CPU-s/GiB, broker {med[3]:.2f} cores, client {med[4]:.2f} cores")
EOF
