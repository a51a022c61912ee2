#!/usr/bin/env bash
# What incremental fetch sessions (KIP-227) save: a Java consumer (Kafka's ConsumerPerformance,
# which fetches in a session like every Java client) follows a topic of PARTITIONS partitions
# while a producer trickles RATE 1 KiB records/s over them (round robin) for RUN_SECONDS, against
# each target in turn, ROUNDS times:
#   sessions     the Sluice broker, --fetch-session-cache-slots 1000 (the default)
#   nosessions   the same binary with 0: every fetch lists, and is answered with, every partition
#   kafka        Apache Kafka 4.2 (bench/kafka/start.sh; sessions on, as by default)
# The work is the same for all (the producer sets the pace), so the broker's CPU-seconds and the
# bytes it wrote (to its sockets, files and pipes: /proc/PID/io wchar) compare directly.
#
# Usage: bench/sessions.sh [BROKER_BINARY]   (default: cargo build --release -p sluice-broker)
# Env: PARTITIONS=1000 RATE=1000 RUN_SECONDS=30 ROUNDS=3 TARGETS="sessions nosessions kafka"
#      LOADGEN_BIN WORK (default: a temp dir)
# Prints one line per run: target, broker CPU-s, MiB the broker wrote, fetch requests and
# incremental fetches (Sluice's metrics; "-" for Kafka), records consumed; then the medians.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PARTITIONS="${PARTITIONS:-1000}"
RATE="${RATE:-1000}"
# Not SECONDS: bash keeps its own count of seconds in that name, so it is never unset.
SECONDS_="${RUN_SECONDS:-30}"
ROUNDS="${ROUNDS:-3}"
TARGETS="${TARGETS:-sessions nosessions kafka}"
if [[ $# -ge 1 ]]; then
    BROKER="$1"
else
    (cd "$ROOT" && cargo build --release --locked -p sluice-broker) >&2
    BROKER="${CARGO_TARGET_DIR:-$ROOT/target}/release/sluice-broker"
fi
if [[ -z "${LOADGEN_BIN:-}" ]]; then
    (cd "$ROOT" && cargo build --release --locked -p sluice-loadgen) >&2
    LOADGEN_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/sluice-loadgen"
fi
LIB="$("$ROOT/bench/kafka/setup.sh" | tail -n 1)"
WORK="${WORK:-$(mktemp -d /tmp/sluice-sessions.XXXXXX)}"
PID=""
cleanup() {
    [[ -n "$PID" ]] && { kill -TERM "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; }
    [[ -f "$WORK/kafka/kafka.pid" ]] && "$ROOT/bench/kafka/stop.sh" "$WORK/kafka" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
KPORT="$(free_port)"
HPORT="$(free_port)"
BOOT="127.0.0.1:$KPORT"
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
wchar() { awk '/^wchar/ {print $2}' "/proc/$1/io"; }
metric() { curl -fsS "http://127.0.0.1:$HPORT/metrics" | awk -v m="$1" '$1 == m {s += $2} END {print s + 0}'; }
HZ="$(getconf CLK_TCK)"
RECORDS=$((RATE * SECONDS_))

# The consumer's first fetch comes once it has joined its group and has its partitions; the
# producer starts after that, so the run measures a consumer that follows. (It reads from the
# earliest offset, so one that joined late would still read everything, in a burst.)
joined() { # joined TARGET
    for _ in $(seq 600); do
        if [[ "$1" == kafka ]]; then
            grep -qs "Stabilized group" "$WORK/kafka/logs/"*.log && return 0
        else
            [[ "$(metric 'sluice_requests_total{api="Fetch"}')" -gt 0 ]] && return 0
        fi
        sleep 0.1
    done
    echo "the consumer did not join within 60 s ($1); producing anyway" >&2
}

echo "target broker_cpu_s broker_wrote_mib fetches incremental consumed" >"$WORK/runs.txt"
for round in $(seq "$ROUNDS"); do
    for target in $TARGETS; do
        rm -rf "$WORK/data" "$WORK/kafka"
        case "$target" in
        sessions | nosessions)
            slots=1000
            [[ "$target" == nosessions ]] && slots=0
            "$BROKER" --data-dir "$WORK/data" --listen "$BOOT" --advertise "$BOOT" \
                --http-listen "127.0.0.1:$HPORT" --fetch-session-cache-slots "$slots" \
                --group-initial-rebalance-delay-ms 0 >>"$WORK/broker.log" 2>&1 </dev/null &
            PID=$!
            ;;
        kafka)
            KAFKA_PORT="$KPORT" KAFKA_CONTROLLER_PORT="$(free_port)" "$ROOT/bench/kafka/start.sh" "$WORK/kafka" \
                >>"$WORK/kafka-start.log" 2>&1 || { echo "kafka did not start: $WORK/kafka-start.log" >&2; exit 1; }
            PID=""
            ;;
        *) echo "sessions.sh: unknown target $target (sessions, nosessions, kafka)" >&2; exit 2 ;;
        esac
        pid="${PID:-$(cat "$WORK/kafka/kafka.pid")}"
        "$LOADGEN_BIN" create-topic --bootstrap "$BOOT" --topic s --partitions "$PARTITIONS" \
            --replication-factor 1 >/dev/null 2>>"$WORK/loadgen.log"
        t0="$(ticks "$pid")" w0="$(wchar "$pid")"
        java -Xmx512m "-Dlog4j2.configurationFile=$ROOT/bench/kafka/tools-log4j2.properties" -cp "$LIB/*" \
            org.apache.kafka.tools.ConsumerPerformance --bootstrap-server "$BOOT" --topic s \
            --num-records "$RECORDS" --timeout 30000 --group "g-$round-$target" \
            >"$WORK/consumer.out" 2>>"$WORK/consumer.log" &
        consumer=$!
        joined "$target"
        "$LOADGEN_BIN" produce --bootstrap "$BOOT" --topic s --record-size 1024 --acks 1 \
            --linger-ms 0 --partitioner round-robin --rate "$RATE" --warmup-seconds 0 \
            --seconds "$SECONDS_" >/dev/null 2>>"$WORK/loadgen.log"
        rc=0
        wait "$consumer" || rc=$?
        consumed="$(awk -F', *' 'NF > 5 && $1 ~ /^[0-9]/ {print $5}' "$WORK/consumer.out" | tail -n 1)"
        [[ "$rc" == 0 ]] || echo "ConsumerPerformance exited $rc (log: $WORK/consumer.log)" >&2
        t1="$(ticks "$pid")" w1="$(wchar "$pid")"
        if [[ "$target" == kafka ]]; then
            counts="- -"
        else
            counts="$(metric 'sluice_requests_total{api="Fetch"}') $(metric sluice_fetch_incremental_total)"
        fi
        line="$target $(python3 -c "print(round(($t1 - $t0) / $HZ, 2), round(($w1 - $w0) / 2**20, 1))") $counts ${consumed:-?}"
        echo "round $round: $line"
        echo "$line" >>"$WORK/runs.txt"
        if [[ "$target" == kafka ]]; then
            "$ROOT/bench/kafka/stop.sh" "$WORK/kafka" 2>>"$WORK/kafka-start.log"
        else
            kill -TERM "$PID"; wait "$PID" || true
            PID=""
        fi
    done
done
python3 - "$WORK/runs.txt" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]).read().splitlines()[1:]]
for target in dict.fromkeys(r[0] for r in rows):
    mine = [r[1:5] for r in rows if r[0] == target]
    med = [statistics.median(float(x) for x in c) if c[0] != "-" else None for c in zip(*mine)]
    fetches = f", {med[2]:.0f} fetches ({med[3]:.0f} incremental)" if med[2] is not None else ""
    print(f"median of {len(mine)}, {target}: broker {med[0]:.2f} CPU-s, wrote {med[1]:.1f} MiB{fetches}")
PY
