#!/usr/bin/env bash
# The whole benchmark: this machine's limits, the load generator's own ceiling, and Sluice beside
# Apache Kafka 4.x in one run, every figure over ROUNDS rounds (min / median / max in the report).
#
# Usage: bench/suite.sh [SECTION...]          (default: all sections, in this order)
#   machine      fdatasync write bandwidth (1 MiB and 16 KiB writes, loadgen and dd), buffered
#                write + one fsync, loopback TCP bandwidth (loadgen; iperf3 too if installed)
#   sink         the load generators against a no-op Kafka sink: the clients' own ceilings
#   throughput   produce MiB/s: 1 and 16 partitions x 100 B and 1 KiB x acks=1 and all
#                (sluice-loadgen), plus Kafka's ProducerPerformance (1 KiB, acks=all, 1 partition)
#   raw          1 KiB produce with sluice-loadgen's raw client (pre-encoded batches on the
#                project's codec, 5 requests in flight; ~0.12 client CPU-s/GiB against
#                librdkafka's ~1.2): its ceiling against the no-op sink, then 1 and 16
#                partitions x acks=1 and all, each run on a fresh broker (a run writes tens of GB)
#   latency      produce and end-to-end p50/p99/p99.9 at fixed rates, from intended send times
#   backlog      fill BACKLOG_FILL_GIB, restart (start to ready on that log), consume
#                BACKLOG_CONSUME_GIB from offset 0 (loadgen with a poll per record and with
#                librdkafka's batch call, its raw client, ConsumerPerformance), restart
#                after SIGKILL
#   partitions   one topic of PARTITIONS_MANY partitions: creation, memory, produce, restart
#   connections  CONNECTIONS sockets each producing in a closed loop: memory and throughput
#   rf3          three brokers each, replication factor 3, min.insync.replicas 2
#   share        share groups (KIP-932) draining a backlog, 1 and 16 partitions, 1 and 4
#                consumers (bench/suite-share.sh; SHARE_RECORDS, SHARE_THREADS)
#   tls          the cost of TLS and SASL: one broker per target with PLAINTEXT, SSL and SASL_SSL
#                (SCRAM-SHA-512) listeners, 1 KiB acks=all produce and a consume through each
#                (bench/suite-tls.sh; needs openssl)
#   txn          transactions: Kafka's ProducerPerformance with a transactional id, committing
#                every TXN_DURATIONS ms (1 KiB, acks=all, 1 partition): what the coordinator's
#                four quorum commands and the markers per transaction cost
# Every broker start is also timed (start to ready on an empty folder) and its idle RSS read.
#
# Env (all optional):
#   ROUNDS=3                 rounds of every section; even rounds run the targets in reverse order
#   TARGETS="sluice-interval sluice-always kafka"   targets of throughput and latency; also
#                            kafka-always: Kafka with log.flush.interval.messages=1, an fsync
#                            after every append before the answer, like Sluice's `always`
#   FEW_TARGETS="sluice-interval kafka"             targets of backlog, partitions, connections, rf3
#   RUN_SECONDS=10 WARMUP_SECONDS=3                 measured window and unmeasured warm-up per run
#   LATENCY_RATES="1000 10000"  LATENCY_SECONDS=20  records/s (1 KiB, acks=all, linger 0)
#   RF3_RATES="1000"
#   BACKLOG_FILL_GIB=5 BACKLOG_CONSUME_GIB=2
#   PARTITIONS_MANY=1000 CONNECTIONS=1000
#   JAVA_RECORDS=300000      records of each ProducerPerformance run (1 KiB)
#   TXN_DURATIONS="10 100"   ms between the commits of the txn section's runs; TXN_RECORDS=100000
#   SLUICE_BIN, LOADGEN_BIN  use these binaries instead of `cargo build --release`
#   PIN=1                    brokers on CPU 0, load generators on CPU 1 (taskset); default: unpinned
#   OUT_DIR=dir              results (results.jsonl, report.md, logs); default /tmp/sluice-suite-<utc>
#   KEEP_WORK=1              keep the data dirs (else deleted at the end, and each target's as soon
#                            as it stops)
# Needs: a Rust toolchain, Java 17+ and Maven (bench/kafka/setup.sh), python3, curl, /usr/bin/time.
# Everything listens on 127.0.0.1 and everything started is stopped on exit (trap).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KAFKA_DIR="$ROOT/bench/kafka"

ROUNDS="${ROUNDS:-3}"
TARGETS="${TARGETS:-sluice-interval sluice-always kafka}"
FEW_TARGETS="${FEW_TARGETS:-sluice-interval kafka}"
RUN_SECONDS="${RUN_SECONDS:-10}"
WARMUP_SECONDS="${WARMUP_SECONDS:-3}"
LATENCY_RATES="${LATENCY_RATES:-1000 10000}"
LATENCY_SECONDS="${LATENCY_SECONDS:-20}"
RF3_RATES="${RF3_RATES:-1000}"
BACKLOG_FILL_GIB="${BACKLOG_FILL_GIB:-5}"
BACKLOG_CONSUME_GIB="${BACKLOG_CONSUME_GIB:-2}"
PARTITIONS_MANY="${PARTITIONS_MANY:-1000}"
CONNECTIONS="${CONNECTIONS:-1000}"
JAVA_RECORDS="${JAVA_RECORDS:-300000}"
TXN_DURATIONS="${TXN_DURATIONS:-10 100}"
TXN_RECORDS="${TXN_RECORDS:-100000}"
PIN="${PIN:-0}"
export KAFKA_VERSION="${KAFKA_VERSION:-4.2.0}"
export KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms1g -Xmx1g}"
CLUSTER_HEAP_OPTS="${CLUSTER_HEAP_OPTS:--Xms512m -Xmx512m}"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
OUT_DIR="${OUT_DIR:-/tmp/sluice-suite-$STAMP}"
RESULTS="$OUT_DIR/results.jsonl"
ALL_SECTIONS="machine sink throughput raw latency backlog partitions connections rf3 share tls txn"
SECTIONS="${*:-$ALL_SECTIONS}"

mkdir -p "$OUT_DIR"
WORK="$(mktemp -d /tmp/sluice-suite.XXXXXX)"
LOGS="$OUT_DIR/logs"
mkdir -p "$LOGS"

log() { echo "[suite $(date -u +%H:%M:%S)] $*" | tee -a "$OUT_DIR/suite.log" >&2; }
fail() { log "FAILED at step: $*"; exit 1; }

for s in $SECTIONS; do
    [[ " $ALL_SECTIONS " == *" $s "* ]] || fail "args: unknown section '$s' (sections: $ALL_SECTIONS)"
done
for t in $TARGETS $FEW_TARGETS; do
    case "$t" in sluice-interval | sluice-always | kafka | kafka-always) ;; *) fail "targets: unknown '$t'" ;; esac
done
command -v python3 >/dev/null || fail "tools: python3 not found"
command -v curl >/dev/null || fail "tools: curl not found"
[[ -x /usr/bin/time ]] || fail "tools: /usr/bin/time not found (apt-get install time)"

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
load1() { cut -d' ' -f1 /proc/loadavg; }
now_ns() { date +%s%N; }

# ---- what runs where ------------------------------------------------------------------------
BROKER_CPU=()
CLIENT_CPU=()
if [[ "$PIN" == 1 ]]; then
    command -v taskset >/dev/null || fail "tools: PIN=1 needs taskset (util-linux)"
    BROKER_CPU=(taskset -c 0)
    CLIENT_CPU=(taskset -c 1)
fi

# ---- bookkeeping of everything started ------------------------------------------------------
SLUICE_PIDS=()     # running Sluice brokers of the current target
KAFKA_DIRS=()      # running Kafka work dirs (single node) or cluster dirs
KAFKA_CLUSTER=0
SINK_PID=""

stop_sluice() {
    local pid
    for pid in "${SLUICE_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${SLUICE_PIDS[@]}"; do
        local deadline=$((SECONDS + 30))
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then
            log "sluice pid $pid ignored SIGTERM for 30 s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
    SLUICE_PIDS=()
}

stop_kafka() {
    local d
    for d in "${KAFKA_DIRS[@]}"; do
        if [[ "$KAFKA_CLUSTER" == 1 ]]; then
            "$KAFKA_DIR/stop-cluster.sh" "$d" 2>>"$LOGS/kafka-stop.log" || true
        else
            "$KAFKA_DIR/stop.sh" "$d" 2>>"$LOGS/kafka-stop.log" || true
        fi
    done
    KAFKA_DIRS=()
    KAFKA_CLUSTER=0
}

stop_sink() {
    [[ -n "$SINK_PID" ]] || return 0
    kill -TERM "$SINK_PID" 2>/dev/null || true
    wait "$SINK_PID" 2>/dev/null || true
    SINK_PID=""
}

stop_all() { stop_sluice; stop_kafka; stop_sink; }

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_all
    if [[ "${KEEP_WORK:-0}" == 1 ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- results --------------------------------------------------------------------------------
SECTION=""
TARGET=""
ROUND=0

json_str() { # a bash string as a JSON string
    python3 -c 'import json, sys; print(json.dumps(sys.argv[1]))' "$1"
}

# record LABEL JSON: appends JSON (an object) to results.jsonl with the run's tags in front.
record() {
    local label="$1" body="$2"
    body="${body#\{}"
    local tags="\"section\":\"$SECTION\",\"target\":\"$TARGET\",\"round\":$ROUND,\"label\":$(json_str "$label"),\"load1\":$(load1)"
    if [[ "$body" == "}" ]]; then
        echo "{$tags}" >>"$RESULTS"
    else
        echo "{$tags,$body" >>"$RESULTS"
    fi
}

# lg LABEL CAP_SECONDS ARGS...: runs the load generator, records its JSON line (or the failure).
lg() {
    local label="$1" cap="$2"
    shift 2
    local out="$WORK/lg.out" err="$WORK/lg.err" rc=0
    log "  $SECTION/$TARGET r$ROUND: $label (load1 $(load1))"
    timeout "$cap" "${CLIENT_CPU[@]}" "$LOADGEN" "$@" >"$out" 2>"$err" || rc=$?
    cat "$err" >>"$LOGS/loadgen.log"
    local line
    line="$(grep '^{' "$out" | tail -n 1 || true)"
    if [[ -z "$line" ]]; then
        local why
        why="$(grep -v '^\[loadgen\]' "$err" | tail -n 3 | tr '\n' ' ')"
        [[ "$rc" == 124 ]] && why="cut at ${cap}s; $why"
        line="{\"failed\":$(json_str "exit $rc: $why")}"
        log "    failed: exit $rc: $why"
    else
        grep '^\[loadgen\]' "$err" | tail -n 1 | cut -c1-400 >&2 || true
        if [[ "$rc" != 0 ]]; then
            line="${line%\}},\"failed\":$(json_str "exit $rc: $(grep -v '^\[loadgen\]' "$err" | tail -n 2 | tr '\n' ' ')")}"
        fi
    fi
    record "$label" "$line"
    return 0
}

pids_csv() { local IFS=,; echo "${WATCH[*]}"; }
watch_args() { local p; for p in "${WATCH[@]}"; do printf -- '--watch-pid\n%s\n' "$p"; done; }
rss_mib() { # summed VmRSS of the watched pids
    local p kib=0 v
    for p in "${WATCH[@]}"; do
        v="$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$p/status" 2>/dev/null || echo 0)"
        kib=$((kib + v))
    done
    awk -v k="$kib" 'BEGIN { printf "%.1f", k / 1024 }'
}

# ---- Java tools (the second load generator) -------------------------------------------------
LIB=""
JAVA_TOOL=()
java_setup() {
    [[ -n "$LIB" ]] && return 0
    LIB="$("$KAFKA_DIR/setup.sh" | tail -n 1)" || fail "setup: bench/kafka/setup.sh"
    JAVA_TOOL=(java -Xmx512m "-Dlog4j2.configurationFile=$KAFKA_DIR/tools-log4j2.properties" -cp "$LIB/*")
}

cpu_s() { # summed utime+stime of the watched pids, seconds
    local p t=0 v
    for p in "${WATCH[@]}"; do
        v="$(awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$p/stat" 2>/dev/null || echo 0)"
        t=$((t + v))
    done
    awk -v t="$t" 'BEGIN { printf "%.2f", t / 100 }'
}

# java_produce LABEL TOPIC RECORDS THROUGHPUT ACKS: Kafka's ProducerPerformance, 1 KiB records,
# its summary line as JSON (latency is measured from send(), not from an intended time).
java_produce() { # java_produce LABEL TOPIC RECORDS THROUGHPUT ACKS [MORE ProducerPerformance ARGS...]
    local label="$1" topic="$2" records="$3" tput="$4" acks="$5"
    shift 5
    java_setup
    local out="$WORK/pp.out" rc=0 b0 b1
    log "  $SECTION/$TARGET r$ROUND: $label (ProducerPerformance, load1 $(load1))"
    for p in "${WATCH[@]}"; do echo 5 >"/proc/$p/clear_refs" 2>/dev/null || true; done
    b0="$(cpu_s)"
    /usr/bin/time -f '%U %S %e' -o "$WORK/pp.time" timeout 180 "${CLIENT_CPU[@]}" "${JAVA_TOOL[@]}" \
        org.apache.kafka.tools.ProducerPerformance --topic "$topic" --num-records "$records" \
        --record-size 1024 --throughput "$tput" --bootstrap-server "$BOOTSTRAP" \
        --command-property "acks=$acks" "$@" >"$out" 2>&1 || rc=$?
    b1="$(cpu_s)"
    cat "$out" >>"$LOGS/java.log"
    local summary
    summary="$(grep -E 'records sent, .* 50th' "$out" | tail -n 1 || true)"
    if [[ -z "$summary" ]]; then
        record "$label" "{\"mode\":\"java-produce\",\"failed\":$(json_str "exit $rc: $(tail -n 2 "$out" | tr '\n' ' ')")}"
        log "    failed: exit $rc"
        return 0
    fi
    local peak
    peak="$(for p in "${WATCH[@]}"; do awk '$1 == "VmHWM:" { print $2 }' "/proc/$p/status"; done | awk '{ s += $1 } END { printf "%.1f", s / 1024 }')"
    local json
    json="$(awk -v s="$summary" -v b="$(awk -v a="$b0" -v c="$b1" 'BEGIN { print c - a }')" \
        -v peak="$peak" -v acks="$acks" -v tput="$tput" -v timef="$WORK/pp.time" 'BEGIN {
        # N records sent, R records/sec (M MB/sec), A ms avg latency, X ms max latency, a ms 50th, b ms 95th, c ms 99th, d ms 99.9th.
        n = split(s, f, /[ ,()]+/)
        recs = f[1]; rps = f[4]; mbs = f[6]; avg = f[8]; max = f[12]; p50 = f[16]; p99 = f[22]; p999 = f[25]
        while ((getline line < timef) > 0) { if (split(line, t, " ") == 3 && t[1] ~ /^[0-9.]+$/) { cu = t[1] + t[2]; el = t[3] } }
        gib = recs * 1024 / 1073741824
        printf "{\"mode\":\"java-produce\",\"acks\":\"%s\",\"rate_target\":%s,\"records\":%d,\"mib_s\":%s,\"records_s\":%s,\"lat_mean_ms\":%s,\"lat_p50_ms\":%s,\"lat_p99_ms\":%s,\"lat_p999_ms\":%s,\"lat_max_ms\":%s,\"client_cpu_s\":%.2f,\"client_cpu_s_per_gib\":%.2f,\"client_wall_s\":%s,\"broker_cpu_s\":%.2f,\"broker_cpu_s_per_gib\":%.2f,\"broker_peak_rss_mib\":%s}",
            acks, tput, recs, mbs, rps, avg, p50, p99, p999, max, cu, cu / gib, el, b, b / gib, peak
    }')"
    [[ "$rc" == 0 ]] || json="${json%\}},\"failed\":\"exit $rc\"}"
    echo "    $summary" >&2
    record "$label" "$json"
}

# java_consume LABEL TOPIC RECORDS: Kafka's ConsumerPerformance from offset 0.
java_consume() {
    local label="$1" topic="$2" records="$3"
    java_setup
    local out="$WORK/cp.out" rc=0 b0 b1
    log "  $SECTION/$TARGET r$ROUND: $label (ConsumerPerformance, load1 $(load1))"
    b0="$(cpu_s)"
    /usr/bin/time -f '%U %S %e' -o "$WORK/cp.time" timeout 300 "${CLIENT_CPU[@]}" "${JAVA_TOOL[@]}" \
        org.apache.kafka.tools.ConsumerPerformance --bootstrap-server "$BOOTSTRAP" --topic "$topic" \
        --num-records "$records" --timeout 30000 --group "suite-$RANDOM$RANDOM" >"$out" 2>&1 || rc=$?
    b1="$(cpu_s)"
    cat "$out" >>"$LOGS/java.log"
    # start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec,
    # rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec
    local line
    line="$(grep -E '^[0-9]{4}-[0-9]{2}-[0-9]{2} .*, [0-9]+, ' "$out" | tail -n 1 || true)"
    if [[ -z "$line" ]]; then
        record "$label" "{\"mode\":\"java-consume\",\"failed\":$(json_str "exit $rc: $(tail -n 2 "$out" | tr '\n' ' ')")}"
        return 0
    fi
    record "$label" "$(awk -F', ' -v l="$line" -v b="$(awk -v a="$b0" -v c="$b1" 'BEGIN { print c - a }')" -v timef="$WORK/cp.time" 'BEGIN {
        split(l, f, /, /)
        while ((getline line < timef) > 0) { if (split(line, t, " ") == 3 && t[1] ~ /^[0-9.]+$/) { cu = t[1] + t[2] } }
        gib = f[3] / 1024
        printf "{\"mode\":\"java-consume\",\"records\":%d,\"mib_s_incl_join\":%s,\"records_s\":%s,\"mib_s\":%s,\"client_cpu_s\":%.2f,\"client_cpu_s_per_gib\":%.2f,\"broker_cpu_s\":%.2f,\"broker_cpu_s_per_gib\":%.2f}",
            f[5], f[4], f[10], f[9], cu, cu / gib, b, b / gib
    }')"
}

# ---- targets --------------------------------------------------------------------------------
# A target's state: WATCH (its broker pids), BOOTSTRAP, TDIR (its data), its ports.
WATCH=()
BOOTSTRAP=""
TDIR=""

sluice_spawn() { # sluice_spawn ID FSYNC EXTRA...: starts broker ID of the current target dir
    local id="$1" fsync="$2"
    shift 2
    local dir="$TDIR/b$id"
    mkdir -p "$dir"
    # env -i: no stray SLUICE_* variable from the caller reaches (and stops) the broker.
    # No initial rebalance delay, as bench/kafka/start.sh gives Kafka
    # (group.initial.rebalance.delay.ms=0): a consumer's first poll is not held 3 s.
    env -i PATH="$PATH" HOME="$HOME" RUST_LOG="${SLUICE_RUST_LOG:-info}" \
        "${BROKER_CPU[@]}" "$SLUICE_BIN" --data-dir "$dir/data" \
        --listen "127.0.0.1:${S_PORT[$id]}" --advertise "127.0.0.1:${S_PORT[$id]}" \
        --http-listen "127.0.0.1:${S_HTTP[$id]}" --fsync "$fsync" --fsync-interval-ms 1000 \
        --group-initial-rebalance-delay-ms 0 \
        "$@" >>"$LOGS/sluice-$TARGET-r$ROUND-b$id.log" 2>&1 </dev/null &
    SLUICE_PIDS+=("$!")
}

S_PORT=()
S_HTTP=()
S_CLUSTER=()
S_FSYNC=""
S_EXTRA=()

# kafka_flush_properties TARGET: kafka-always gets log.flush.interval.messages=1 (Kafka fsyncs
# the partition after every append, in the request's thread, before it answers: the setting
# comparable to Sluice's `fsync: always`); plain kafka keeps Kafka's default (no fsync of its own).
# A KAFKA_EXTRA_PROPERTIES file given to the suite applies to both.
USER_KAFKA_EXTRA_PROPERTIES="${KAFKA_EXTRA_PROPERTIES:-}"
kafka_flush_properties() {
    if [[ "$1" == kafka-always ]]; then
        {
            [[ -n "$USER_KAFKA_EXTRA_PROPERTIES" ]] && cat "$USER_KAFKA_EXTRA_PROPERTIES"
            printf 'log.flush.interval.messages=1\n'
        } >"$TDIR/flush.properties"
        export KAFKA_EXTRA_PROPERTIES="$TDIR/flush.properties"
    elif [[ -n "$USER_KAFKA_EXTRA_PROPERTIES" ]]; then
        export KAFKA_EXTRA_PROPERTIES="$USER_KAFKA_EXTRA_PROPERTIES"
    else
        unset KAFKA_EXTRA_PROPERTIES
    fi
}

# start_target NAME [cluster]: a fresh broker (or three) on an empty dir; records start-to-ready
# and idle RSS. Returns 1 (and records why) when it does not come up.
start_target() {
    local name="$1" nodes="${2:-1}"
    TARGET="$name"
    TDIR="$WORK/$SECTION-$name-r$ROUND"
    mkdir -p "$TDIR"
    WATCH=()
    local since
    case "$name" in
        sluice-*)
            S_FSYNC="${name#sluice-}"
            S_PORT=() S_HTTP=() S_CLUSTER=() S_EXTRA=()
            local i seeds=""
            for ((i = 0; i < nodes; i++)); do
                S_PORT+=("$(free_port)")
                S_HTTP+=("$(free_port)")
                S_CLUSTER+=("$(free_port)")
            done
            if ((nodes > 1)); then
                seeds="$(printf '127.0.0.1:%s,' "${S_CLUSTER[@]}")"
                S_EXTRA=(--default-replication-factor 3 --min-insync-replicas 2)
            fi
            since="$(now_ns)"
            for ((i = 0; i < nodes; i++)); do
                if ((nodes > 1)); then
                    local extra=(--node-id "$i" --cluster-listen "127.0.0.1:${S_CLUSTER[$i]}" "${S_EXTRA[@]}")
                    ((i == 0)) || extra+=(--seeds "${seeds%,}")
                    sluice_spawn "$i" "$S_FSYNC" "${extra[@]}"
                else
                    sluice_spawn "$i" "$S_FSYNC"
                fi
            done
            WATCH=("${SLUICE_PIDS[@]}")
            BOOTSTRAP="127.0.0.1:${S_PORT[0]}"
            ;;
        kafka | kafka-always)
            export KAFKA_PORT KAFKA_CONTROLLER_PORT
            kafka_flush_properties "$name"
            KAFKA_PORT="$(free_port)"
            KAFKA_CONTROLLER_PORT="$(free_port)"
            if ((nodes > 1)); then
                # start-cluster.sh puts node i on KAFKA_PORT + 2i: find a base with all free
                local base
                base="$(python3 -c '
import socket, random
for _ in range(200):
    b = random.randrange(20000, 60000, 2)
    try:
        ss = []
        for i in range(6):
            s = socket.socket(); s.bind(("127.0.0.1", b + i)); ss.append(s)
        print(b); break
    except OSError:
        pass
    finally:
        for s in ss: s.close()')"
                KAFKA_PORT="$base"
                KAFKA_CONTROLLER_PORT="$((base + 1))"
                KAFKA_CLUSTER=1
                KAFKA_DIRS=("$TDIR")
                since="$(now_ns)"
                if ! KAFKA_HEAP_OPTS="$CLUSTER_HEAP_OPTS" "${BROKER_CPU[@]}" "$KAFKA_DIR/start-cluster.sh" "$TDIR" "$nodes" \
                    >"$LOGS/kafka-start.out" 2>>"$LOGS/kafka-start.log"; then
                    record "start" "{\"mode\":\"start\",\"failed\":\"start-cluster.sh failed\"}"
                    return 1
                fi
                local i
                for ((i = 0; i < nodes; i++)); do WATCH+=("$(cat "$TDIR/node-$i/kafka.pid")"); done
            else
                KAFKA_DIRS=("$TDIR")
                KAFKA_FORMAT_ONLY=1 "$KAFKA_DIR/start.sh" "$TDIR" >/dev/null 2>>"$LOGS/kafka-start.log" \
                    || { record "start" '{"mode":"start","failed":"format failed"}'; return 1; }
                since="$(now_ns)"
                "${BROKER_CPU[@]}" "$KAFKA_DIR/start.sh" "$TDIR" >"$TDIR/start.out" 2>>"$LOGS/kafka-start.log" &
                KAFKA_STARTER=$!
            fi
            BOOTSTRAP="127.0.0.1:$KAFKA_PORT"
            ;;
    esac
    lg "start (empty dir)" 200 ready --bootstrap "$BOOTSTRAP" --brokers "$nodes" --since-ns "$since" --timeout-seconds 180
    if [[ "$name" == kafka* && "$nodes" == 1 ]]; then
        wait "$KAFKA_STARTER" || { record "start" '{"mode":"start","failed":"start.sh failed"}'; return 1; }
        WATCH=("$(tail -n 1 "$TDIR/start.out")")
    fi
    local p
    for p in "${WATCH[@]}"; do
        kill -0 "$p" 2>/dev/null || { record "start" '{"mode":"start","failed":"broker exited"}'; return 1; }
    done
    sleep 2
    record "idle" "{\"mode\":\"rss\",\"broker_rss_mib\":$(rss_mib)}"
    return 0
}

# restart_target clean|kill TOPIC PARTITIONS LABEL: stops the broker (SIGTERM or SIGKILL), starts
# it again on the same data, times start to serving TOPIC.
restart_target() {
    local how="$1" topic="$2" parts="$3" label="$4" since
    case "$TARGET" in
        sluice-*)
            if [[ "$how" == kill ]]; then
                kill -KILL "${SLUICE_PIDS[0]}" 2>/dev/null || true
                wait "${SLUICE_PIDS[0]}" 2>/dev/null || true
                SLUICE_PIDS=()
            else
                stop_sluice
            fi
            since="$(now_ns)"
            sluice_spawn 0 "$S_FSYNC"
            WATCH=("${SLUICE_PIDS[@]}")
            ;;
        kafka | kafka-always)
            if [[ "$how" == kill ]]; then
                kill -KILL "${WATCH[0]}" 2>/dev/null || true
                while kill -0 "${WATCH[0]}" 2>/dev/null; do sleep 0.1; done
                rm -f "$TDIR/kafka.pid"
            else
                "$KAFKA_DIR/stop.sh" "$TDIR" 2>>"$LOGS/kafka-stop.log" || true
            fi
            : >"$TDIR/logs/server.log"
            since="$(now_ns)"
            "${BROKER_CPU[@]}" "$KAFKA_DIR/start.sh" "$TDIR" >"$TDIR/start.out" 2>>"$LOGS/kafka-start.log" &
            KAFKA_STARTER=$!
            ;;
    esac
    lg "$label" 400 ready --bootstrap "$BOOTSTRAP" --topic "$topic" --partitions "$parts" --since-ns "$since" --timeout-seconds 360
    if [[ "$TARGET" == kafka* ]]; then
        wait "$KAFKA_STARTER" || true
        WATCH=("$(tail -n 1 "$TDIR/start.out")")
    fi
    sleep 2
    record "$label: idle" "{\"mode\":\"rss\",\"broker_rss_mib\":$(rss_mib)}"
}

stop_target() {
    stop_sluice
    stop_kafka
    WATCH=()
    [[ "${KEEP_WORK:-0}" == 1 ]] || rm -rf "$TDIR"
}

create() { # create TOPIC PARTITIONS [RF [config...]]
    local topic="$1" parts="$2" rf="${3:-1}"
    shift 3 2>/dev/null || shift $#
    local cfg=() c
    for c in "$@"; do cfg+=(--config "$c"); done
    lg "create $topic ($parts partitions, RF $rf)" 180 create-topic --bootstrap "$BOOTSTRAP" --topic "$topic" \
        --partitions "$parts" --replication-factor "$rf" "${cfg[@]}"
}

delete() {
    timeout 120 "$LOADGEN" delete-topic --bootstrap "$BOOTSTRAP" --topic "$1" >/dev/null 2>>"$LOGS/loadgen.log" \
        || log "    deleting $1 failed (continuing)"
}

# produce LABEL TOPIC EXTRA...: a loadgen produce run against the current target
produce() {
    local label="$1" topic="$2"
    shift 2
    local w
    mapfile -t w < <(watch_args)
    lg "$label" $((RUN_SECONDS + WARMUP_SECONDS + 120)) produce --bootstrap "$BOOTSTRAP" --topic "$topic" \
        --warmup-seconds "$WARMUP_SECONDS" --seconds "$RUN_SECONDS" "${w[@]}" "$@"
}

order() { # the targets of this round: reversed on even rounds
    if ((ROUND % 2 == 0)); then tr ' ' '\n' <<<"$1" | tac | tr '\n' ' '; else echo "$1"; fi
}

# ---- sections -------------------------------------------------------------------------------
section_machine() {
    TARGET="machine"
    local blk
    lg "fdatasync 1 MiB writes" 120 disk --dir "$WORK" --block-bytes $((1 << 20)) --total-bytes $((512 << 20)) --sync each --max-seconds 20
    lg "fdatasync 16 KiB writes" 120 disk --dir "$WORK" --block-bytes $((16 << 10)) --total-bytes $((256 << 20)) --sync each --max-seconds 15
    lg "buffered 1 MiB writes, one fsync" 120 disk --dir "$WORK" --block-bytes $((1 << 20)) --total-bytes $((1 << 30)) --sync end --max-seconds 30
    for blk in 1M 16K; do
        local count=256
        [[ "$blk" == 16K ]] && count=4096
        local out
        out="$(LC_ALL=C dd if=/dev/zero of="$WORK/dd.test" bs="$blk" count="$count" oflag=dsync 2>&1 | tail -n 1)"
        rm -f "$WORK/dd.test"
        # "268435456 bytes (268 MB, 256 MiB) copied, 2.1 s, 128 MB/s"
        record "dd bs=$blk oflag=dsync" "$(awk -v l="$out" -v blk="$blk" 'BEGIN {
            split(l, f, " "); bytes = f[1]; for (i = 1; i <= length(f); i++) if (f[i] == "copied,") secs = f[i + 1]
            printf "{\"mode\":\"dd\",\"block\":\"%s\",\"bytes\":%d,\"seconds\":%s,\"mib_s\":%.1f}", blk, bytes, secs, bytes / 1048576 / secs }')"
        log "  machine: dd bs=$blk oflag=dsync: $out"
    done
    lg "loopback TCP, one stream" 60 loopback --seconds 5
    if command -v iperf3 >/dev/null; then
        local port
        port="$(free_port)"
        iperf3 -s -1 -B 127.0.0.1 -p "$port" >/dev/null 2>&1 &
        local ip=$!
        sleep 0.5
        local bps
        bps="$(iperf3 -c 127.0.0.1 -p "$port" -t 5 -J 2>/dev/null | python3 -c 'import json, sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"])' || echo 0)"
        wait "$ip" 2>/dev/null || true
        record "iperf3 loopback, one stream" "{\"mode\":\"iperf3\",\"mib_s\":$(awk -v b="$bps" 'BEGIN { printf "%.1f", b / 8 / 1048576 }')}"
    fi
}

# start_sink PARTITIONS: the no-op sink as the current target (BOOTSTRAP, WATCH, SINK_PID)
start_sink() {
    local out="$WORK/sink.out" i
    "${BROKER_CPU[@]}" "$LOADGEN" sink --partitions "$1" >"$out" 2>>"$LOGS/sink.log" &
    SINK_PID=$!
    for ((i = 0; i < 50; i++)); do grep -q '^listening' "$out" && break; sleep 0.1; done
    BOOTSTRAP="$(sed -n 's/^listening //p' "$out")"
    [[ -n "$BOOTSTRAP" ]] || fail "sink: no 'listening' line"
    WATCH=("$SINK_PID")
}

section_sink() {
    TARGET="sink"
    local parts size acks
    for parts in 1 16; do
        start_sink "$parts"
        for size in 100 1024; do
            for acks in 1 all; do
                produce "produce ${parts}p ${size}B acks=$acks" sink-test --record-size "$size" --acks "$acks"
            done
        done
        if [[ "$parts" == 1 ]]; then
            local rate
            for rate in $LATENCY_RATES; do
                # the client's and the machine's own latency floor at the latency section's rates
                lg "fixed rate ${rate}/s 1p 1024B acks=all" $((LATENCY_SECONDS + WARMUP_SECONDS + 120)) produce \
                    --bootstrap "$BOOTSTRAP" --topic sink-lat --record-size 1024 --acks all --linger-ms 0 \
                    --rate "$rate" --warmup-seconds "$WARMUP_SECONDS" --seconds "$LATENCY_SECONDS" --watch-pid "$SINK_PID"
            done
            java_produce "ProducerPerformance 1p 1024B acks=all" sink-java "$JAVA_RECORDS" -1 all
        fi
        stop_sink
    done
}

section_throughput() {
    local t parts size acks
    for t in $(order "$TARGETS"); do
        start_target "$t" || { stop_target; continue; }
        for parts in 1 16; do
            for size in 100 1024; do
                for acks in 1 all; do
                    local topic="t${parts}p${size}b${acks}"
                    create "$topic" "$parts" 1
                    produce "produce ${parts}p ${size}B acks=$acks" "$topic" --record-size "$size" --acks "$acks"
                    delete "$topic"
                done
            done
        done
        create java 1 1
        java_produce "ProducerPerformance 1p 1024B acks=all" java "$JAVA_RECORDS" -1 all
        stop_target
    done
}

# raw_produce LABEL TOPIC PARTITIONS ACKS: the raw client against the current target
raw_produce() {
    local w
    mapfile -t w < <(watch_args)
    lg "$1" $((RUN_SECONDS + WARMUP_SECONDS + 120)) raw-produce --bootstrap "$BOOTSTRAP" --topic "$2" \
        --partitions "$3" --acks "$4" --record-size 1024 --warmup-seconds "$WARMUP_SECONDS" \
        --seconds "$RUN_SECONDS" "${w[@]}"
}

section_raw() {
    local t parts acks
    TARGET="sink"
    for parts in 1 16; do
        start_sink "$parts"
        raw_produce "raw produce ${parts}p 1024B acks=all" sink-raw "$parts" all
        stop_sink
    done
    for t in $(order "$TARGETS"); do
        for parts in 1 16; do
            for acks in 1 all; do
                # A fresh broker per run: at a few GB/s a run leaves tens of GB behind.
                start_target "$t" || { stop_target; continue; }
                create raw "$parts" 1
                raw_produce "raw produce ${parts}p 1024B acks=$acks" raw "$parts" "$acks"
                stop_target
            done
        done
    done
}

section_latency() {
    local t rate
    for t in $(order "$TARGETS"); do
        start_target "$t" || { stop_target; continue; }
        create lat 1 1
        for rate in $LATENCY_RATES; do
            local w
            mapfile -t w < <(watch_args)
            lg "e2e ${rate}/s 1p 1024B acks=all" $((LATENCY_SECONDS + WARMUP_SECONDS + 120)) produce \
                --bootstrap "$BOOTSTRAP" --topic lat --record-size 1024 --acks all --linger-ms 0 \
                --rate "$rate" --e2e --warmup-seconds "$WARMUP_SECONDS" --seconds "$LATENCY_SECONDS" "${w[@]}"
        done
        create javalat 1 1
        for rate in $LATENCY_RATES; do
            java_produce "ProducerPerformance ${rate}/s 1p 1024B acks=all" javalat $((rate * LATENCY_SECONDS)) "$rate" all
        done
        stop_target
    done
}

section_backlog() {
    local t fill=$((BACKLOG_FILL_GIB << 30)) take=$((BACKLOG_CONSUME_GIB << 30))
    for t in $(order "$FEW_TARGETS"); do
        start_target "$t" || { stop_target; continue; }
        create backlog 1 1
        local w
        mapfile -t w < <(watch_args)
        lg "fill ${BACKLOG_FILL_GIB} GiB 1p 1024B acks=1" 1800 produce --bootstrap "$BOOTSTRAP" --topic backlog \
            --record-size 1024 --acks 1 --bytes "$fill" "${w[@]}"
        record "data dir after fill" "{\"mode\":\"du\",\"data_mib\":$(du -sm "$TDIR" | cut -f1)}"
        restart_target clean backlog 1 "restart on ${BACKLOG_FILL_GIB} GiB (clean stop)"
        mapfile -t w < <(watch_args)
        lg "consume ${BACKLOG_CONSUME_GIB} GiB from offset 0" 900 consume --bootstrap "$BOOTSTRAP" --topic backlog \
            --bytes "$take" "${w[@]}"
        # librdkafka again, taking records 1,000 at a time (its batch call): the same fetches,
        # a fraction of the client's per-record cost, so less of the figure is the client's.
        lg "consume ${BACKLOG_CONSUME_GIB} GiB from offset 0, batch call" 900 consume --bootstrap "$BOOTSTRAP" \
            --topic backlog --bytes "$take" --batch 1000 "${w[@]}"
        lg "raw consume ${BACKLOG_CONSUME_GIB} GiB from offset 0" 900 raw-consume --bootstrap "$BOOTSTRAP" \
            --topic backlog --bytes "$take" "${w[@]}"
        java_consume "ConsumerPerformance ${BACKLOG_CONSUME_GIB} GiB from offset 0" backlog $((take / 1024))
        restart_target kill backlog 1 "restart on ${BACKLOG_FILL_GIB} GiB (after SIGKILL)"
        stop_target
    done
}

section_partitions() {
    local t
    for t in $(order "$FEW_TARGETS"); do
        start_target "$t" || { stop_target; continue; }
        create many "$PARTITIONS_MANY" 1
        sleep 3
        record "idle with $PARTITIONS_MANY partitions" "{\"mode\":\"rss\",\"broker_rss_mib\":$(rss_mib)}"
        produce "produce ${PARTITIONS_MANY}p round-robin 1024B acks=1" many --record-size 1024 --acks 1 --partitioner round-robin
        restart_target clean many "$PARTITIONS_MANY" "restart with $PARTITIONS_MANY partitions"
        stop_target
    done
}

section_connections() {
    local t
    for t in $(order "$FEW_TARGETS"); do
        start_target "$t" || { stop_target; continue; }
        create conns 16 1
        local w
        mapfile -t w < <(watch_args)
        lg "$CONNECTIONS connections, 16 x 1 KiB per request, acks=1" $((RUN_SECONDS + WARMUP_SECONDS + 180)) conns \
            --bootstrap "$BOOTSTRAP" --topic conns --partitions 16 --connections "$CONNECTIONS" \
            --batch-records 16 --record-size 1024 --acks 1 --warmup-seconds "$WARMUP_SECONDS" \
            --seconds "$RUN_SECONDS" "${w[@]}"
        stop_target
    done
}

section_rf3() {
    local t parts rate
    for t in $(order "$FEW_TARGETS"); do
        start_target "$t" 3 || { stop_target; continue; }
        local cfg=()
        [[ "$t" == kafka* ]] && cfg=(min.insync.replicas=2)
        for parts in 1 16; do
            create "rf${parts}" "$parts" 3 "${cfg[@]}"
            produce "produce RF3 ${parts}p 1024B acks=all" "rf${parts}" --record-size 1024 --acks all
        done
        create rflat 1 3 "${cfg[@]}"
        for rate in $RF3_RATES; do
            local w
            mapfile -t w < <(watch_args)
            lg "e2e RF3 ${rate}/s 1p 1024B acks=all" $((LATENCY_SECONDS + WARMUP_SECONDS + 120)) produce \
                --bootstrap "$BOOTSTRAP" --topic rflat --record-size 1024 --acks all --linger-ms 0 \
                --rate "$rate" --e2e --warmup-seconds "$WARMUP_SECONDS" --seconds "$LATENCY_SECONDS" "${w[@]}"
        done
        stop_target
    done
}

section_txn() {
    local t d
    for t in $(order "$TARGETS"); do
        start_target "$t" || { stop_target; continue; }
        for d in $TXN_DURATIONS; do
            create "tx$d" 1 1
            java_produce "ProducerPerformance 1p 1024B acks=all, a transaction every ${d} ms" "tx$d" \
                "$TXN_RECORDS" -1 all --transactional-id "bench-tx$d-r$ROUND" --transaction-duration-ms "$d"
            delete "tx$d"
        done
        stop_target
    done
}

# shellcheck source=bench/suite-share.sh
source "$ROOT/bench/suite-share.sh"
# shellcheck source=bench/suite-tls.sh
source "$ROOT/bench/suite-tls.sh"

# ---- main -----------------------------------------------------------------------------------
if [[ -z "${SLUICE_BIN:-}" || -z "${LOADGEN_BIN:-}" ]]; then
    log "cargo build --release -p sluice-broker -p sluice-loadgen (log: $LOGS/cargo.log)"
    (cd "$ROOT" && cargo build --release --locked -p sluice-broker -p sluice-loadgen) >"$LOGS/cargo.log" 2>&1 \
        || fail "build: cargo build --release (see $LOGS/cargo.log)"
    target_dir="${CARGO_TARGET_DIR:-$ROOT/target}"
    SLUICE_BIN="${SLUICE_BIN:-$target_dir/release/sluice-broker}"
    LOADGEN_BIN="${LOADGEN_BIN:-$target_dir/release/sluice-loadgen}"
fi
[[ -x "$SLUICE_BIN" ]] || fail "build: $SLUICE_BIN is not executable"
[[ -x "$LOADGEN_BIN" ]] || fail "build: $LOADGEN_BIN is not executable"
LOADGEN="$LOADGEN_BIN"
case " $SECTIONS " in *" throughput "* | *" latency "* | *" backlog "* | *" sink "* | *" partitions "* | *" connections "* | *" rf3 "* | *" share "* | *" txn "*) java_setup ;; esac

{
    echo "run $STAMP: $(nproc) cores, $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM, $(uname -sr)"
    echo "sluice $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)$(cd "$ROOT" && git diff --quiet 2>/dev/null || echo ' (dirty)'), kafka $KAFKA_VERSION, $(java -version 2>&1 | head -n 1)"
    echo "sections: $SECTIONS; rounds: $ROUNDS; targets: $TARGETS / $FEW_TARGETS; window ${RUN_SECONDS}s after ${WARMUP_SECONDS}s warm-up; pin: $PIN"
    echo "data dir filesystem: $(df -h "$WORK" | tail -n 1)"
} >"$OUT_DIR/run.txt"
cat "$OUT_DIR/run.txt" >&2

for SECTION in $SECTIONS; do
    for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
        TARGET=""
        log "== $SECTION, round $ROUND/$ROUNDS: $(uptime)"
        record "uptime before" "{\"mode\":\"uptime\",\"uptime\":$(json_str "$(uptime)")}"
        "section_$SECTION"
        TARGET=""
        record "uptime after" "{\"mode\":\"uptime\",\"uptime\":$(json_str "$(uptime)")}"
    done
done

python3 "$ROOT/bench/report.py" "$RESULTS" "$OUT_DIR/run.txt" >"$OUT_DIR/report.md"
log "results: $RESULTS; report: $OUT_DIR/report.md"
cat "$OUT_DIR/report.md"
