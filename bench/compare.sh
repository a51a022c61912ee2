#!/usr/bin/env bash
# Side-by-side produce (and consume) benchmark: Sluice's broker vs Apache Kafka 4.x, on this machine,
# in one run, with the same client (Kafka's own Java ProducerPerformance / ConsumerPerformance) and
# the same load: acks=all, 1 KiB records, unthrottled.
#
# Runs, one after the other, each against a freshly started broker with an empty temp data dir:
#   sluice  --fsync always    (fsync before every acks=all answer)
#   sluice  --fsync interval  (fsync every --fsync-interval-ms, like Kafka's default)
#   kafka   defaults          (no fsync per write; the OS page cache decides)
# and prints a markdown table: MB/s, records/s, latency percentiles, broker peak RSS (VmHWM) and
# broker CPU-seconds per GiB of payload (utime+stime from /proc/<pid>/stat).
#
# Usage: bench/compare.sh
# Env (all optional):
#   NUM_RECORDS=150000     records per produce run (1 KiB each; ~146 MiB). Sized so a run finishes
#                          within RUN_TIMEOUT on the busy 2-core team machine; raise it on a quiet one
#   WARMUP_RECORDS=50000   records produced (same command, unmeasured) before the measured run, so
#                          the JVM broker's JIT (and the client's) is warm; 0 to skip
#   RUN_TIMEOUT=30         seconds cap per client run; a capped run is reported from its 1 s windows
#   PARTITIONS=1           partitions of the benchmark topic (same on both brokers)
#   CONSUME=1              also run ConsumerPerformance over what was produced (0 to skip)
#   TARGETS="sluice-always sluice-interval kafka"   which runs, in this order
#   ROUNDS=1               repeat the whole sequence; even rounds run the targets in reverse order
#   SLUICE_BIN=path        use this broker binary instead of `cargo build --release -p sluice-broker`
#   KAFKA_VERSION=4.2.0    Apache Kafka version (bench/kafka/setup.sh fetches it from Maven Central)
#   KAFKA_HEAP_OPTS="-Xms1g -Xmx1g"   Kafka broker heap (the stock kafka-server-start.sh default)
#   CLIENT_HEAP="-Xmx512m"            heap of the Java load generator
#   OUT=file               also write the report there (default /tmp/sluice-bench-<utc>.md)
#   KEEP_WORK=1            keep the temp dir (data dirs and broker logs) for inspection
# Everything listens on 127.0.0.1 only and stops by itself (trap on EXIT/INT/TERM).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KAFKA_DIR="$ROOT/bench/kafka"

NUM_RECORDS="${NUM_RECORDS:-150000}"
RECORD_SIZE=1024
RUN_TIMEOUT="${RUN_TIMEOUT:-30}"
WARMUP_RECORDS="${WARMUP_RECORDS:-50000}"
PARTITIONS="${PARTITIONS:-1}"
CONSUME="${CONSUME:-1}"
TARGETS="${TARGETS:-sluice-always sluice-interval kafka}"
ROUNDS="${ROUNDS:-1}"
ROUND=1
export KAFKA_VERSION="${KAFKA_VERSION:-4.2.0}"
export KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms1g -Xmx1g}"
CLIENT_HEAP="${CLIENT_HEAP:--Xmx512m}"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
OUT="${OUT:-/tmp/sluice-bench-$STAMP.md}"
TOPIC="bench"

# Ports: free loopback ports picked now (teammates run brokers on fixed ports like 19092 too);
# override with the variables below.
command -v python3 >/dev/null || { echo "[compare] FAILED at step: tools: python3 not found (picks free ports)" >&2; exit 1; }
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SLUICE_PORT="${SLUICE_PORT:-$(free_port)}"
SLUICE_HTTP_PORT="${SLUICE_HTTP_PORT:-$(free_port)}"
export KAFKA_PORT="${KAFKA_PORT:-$(free_port)}"
export KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-$(free_port)}"
CLK_TCK="$(getconf CLK_TCK)"

strip_ansi() { sed -E 's/\x1b\[[0-9;]*m//g' | tr '|' '/'; }
log() { echo "[compare $(date -u +%H:%M:%S)] $*" >&2; }
fail() { echo "[compare] FAILED at step: $*" >&2; exit 1; }

WORK="$(mktemp -d /tmp/sluice-bench.XXXXXX)"
SLUICE_PID=""
KAFKA_WORK=""

stop_sluice() {
    [[ -n "$SLUICE_PID" ]] || return 0
    if kill -0 "$SLUICE_PID" 2>/dev/null; then
        kill -TERM "$SLUICE_PID" 2>/dev/null || true
        local deadline=$((SECONDS + 20))
        while kill -0 "$SLUICE_PID" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
        if kill -0 "$SLUICE_PID" 2>/dev/null; then
            log "sluice pid $SLUICE_PID ignored SIGTERM for 20 s: SIGKILL"
            kill -KILL "$SLUICE_PID" 2>/dev/null || true
        fi
    fi
    wait "$SLUICE_PID" 2>/dev/null || true
    SLUICE_PID=""
}

stop_kafka() {
    [[ -n "$KAFKA_WORK" ]] || return 0
    "$KAFKA_DIR/stop.sh" "$KAFKA_WORK" || true
    KAFKA_WORK=""
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_sluice
    stop_kafka
    if [[ "${KEEP_WORK:-0}" == 1 ]]; then
        log "kept $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ---- /proc readings -------------------------------------------------------------------------
cpu_ticks() { # utime+stime of a live pid, in clock ticks (fields 14 and 15 after the comm field)
    local stat
    stat="$(cat "/proc/$1/stat")" || return 1
    stat="${stat##*) }"
    awk '{ print $12 + $13 }' <<<"$stat"
}
status_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
load1() { cut -d' ' -f1 /proc/loadavg; }

# ---- Java tools -----------------------------------------------------------------------------
LIB=""
JAVA_TOOL=() # set once LIB is known: java + client heap + client log4j2 config + classpath


create_topic() { # create_topic BOOTSTRAP
    if timeout 60 "${JAVA_TOOL[@]}" org.apache.kafka.tools.TopicCommand --bootstrap-server "$1" \
        --create --topic "$TOPIC" --partitions "$PARTITIONS" --replication-factor 1 \
        >"$RUN_DIR/topic.log" 2>&1; then
        log "created topic $TOPIC ($PARTITIONS partitions)"
        TOPIC_NOTE=""
    else
        log "TopicCommand --create failed (see below); relying on auto-creation"
        tail -3 "$RUN_DIR/topic.log" >&2 || true
        TOPIC_NOTE="topic auto-created"
    fi
}

# Parse ProducerPerformance output into globals P_*. Complete runs have the summary line with
# percentiles; runs cut by RUN_TIMEOUT are summed from their 1 s window lines (no percentiles).
parse_producer() { # parse_producer OUTFILE RC
    local f="$1" rc="$2" summary
    P_RECORDS=0; P_RPS="-"; P_MBS="-"; P_AVG="-"; P_MAX="-"; P_P50="-"; P_P95="-"; P_P99="-"; P_P999="-"
    P_NOTE=""
    summary="$(grep -E 'records sent, .* 50th' "$f" | tail -n 1 || true)"
    if [[ -n "$summary" ]]; then
        # N records sent, R records/sec (M MB/sec), A ms avg latency, X ms max latency, a ms 50th, b ms 95th, c ms 99th, d ms 99.9th.
        read -r P_RECORDS P_RPS P_MBS P_AVG P_MAX P_P50 P_P95 P_P99 P_P999 < <(
            sed -E 's/^([0-9]+) records sent, ([0-9.]+) records\/sec \(([0-9.]+) MB\/sec\), ([0-9.]+) ms avg latency, ([0-9.]+) ms max latency, ([0-9]+) ms 50th, ([0-9]+) ms 95th, ([0-9]+) ms 99th, ([0-9]+) ms 99.9th\.?$/\1 \2 \3 \4 \5 \6 \7 \8 \9/' <<<"$summary")
        P_RPS="$(printf '%.0f' "$P_RPS")"
        P_AVG="$(printf '%.1f' "$P_AVG")"; P_MAX="$(printf '%.0f' "$P_MAX")"
    else
        # window lines: "N records sent, R records/sec (M MB/sec), A ms avg latency, X ms max latency."
        read -r P_RECORDS P_RPS P_MBS P_AVG P_MAX < <(awk '
            / records sent, .* records\/sec .* max latency\.$/ {
                n = $1; r = $4; a = $8; x = $12;
                if (r > 0) { secs += n / r }
                recs += n; lat += n * a; if (x > max) max = x
            }
            END {
                if (recs == 0 || secs == 0) { print 0, "-", "-", "-", "-"; exit }
                printf "%d %.0f %.2f %.1f %.0f\n", recs, recs / secs, recs * 1024 / secs / 1048576, lat / recs, max
            }' "$f")
        if [[ "$rc" == 124 ]]; then
            P_NOTE="cut at ${RUN_TIMEOUT}s: from 1 s windows, no percentiles"
        else
            P_NOTE="client exited $rc without a summary"
        fi
    fi
    local errs
    errs="$(grep -c -E 'Exception|Error' "$f" || true)"
    if [[ "$errs" != 0 ]]; then
        P_NOTE="${P_NOTE:+$P_NOTE; }$errs error lines: $(grep -m1 -o -E '[A-Za-z.]*(Exception|Error)[^ ]*' "$f" | head -n 1)"
    fi
}

parse_consumer() { # parse_consumer OUTFILE RC -> C_RECORDS C_MBS C_RPS C_NOTE
    local f="$1" rc="$2" line
    C_RECORDS=0; C_MBS="-"; C_RPS="-"; C_NOTE=""
    # start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec
    line="$(grep -E '^[0-9]{4}-[0-9]{2}-[0-9]{2} .*, [0-9]+, ' "$f" | tail -n 1 || true)"
    if [[ -n "$line" ]]; then
        IFS=',' read -r _ _ _ _ C_RECORDS _ _ _ C_MBS C_RPS <<<"$line"
        C_RECORDS="${C_RECORDS// /}"
        C_MBS="$(printf '%.2f' "$C_MBS")"; C_RPS="$(printf '%.0f' "$C_RPS")"
    fi
    [[ "$rc" == 0 ]] || C_NOTE="client exited $rc"
    if [[ "$C_RECORDS" -lt "$P_RECORDS" ]]; then
        C_NOTE="${C_NOTE:+$C_NOTE; }read $C_RECORDS of $P_RECORDS"
    fi
}

per_gib() { # per_gib TICKS RECORDS -> CPU seconds per GiB of 1 KiB payload
    awk -v t="$1" -v r="$2" -v hz="$CLK_TCK" 'BEGIN {
        if (r <= 0) { print "-"; exit }
        printf "%.1f", (t / hz) / (r * 1024 / 1073741824) }'
}

# ---- brokers --------------------------------------------------------------------------------
SLUICE_BIN_RESOLVED=""
SLUICE_BUILD_ERR=""
build_sluice() {
    if [[ -n "${SLUICE_BIN:-}" ]]; then
        [[ -x "$SLUICE_BIN" ]] || fail "build: SLUICE_BIN=$SLUICE_BIN is not executable"
        SLUICE_BIN_RESOLVED="$SLUICE_BIN"
        return
    fi
    log "cargo build --release -p sluice-broker (log: $WORK/cargo.log)"
    if (cd "$ROOT" && cargo build --release -p sluice-broker) >"$WORK/cargo.log" 2>&1; then
        local target="${CARGO_TARGET_DIR:-$ROOT/target}"
        SLUICE_BIN_RESOLVED="$target/release/sluice-broker"
    else
        SLUICE_BUILD_ERR="cargo build failed: $(grep -m1 -E '^error' "$WORK/cargo.log" || tail -n 1 "$WORK/cargo.log")"
        log "$SLUICE_BUILD_ERR"
        tail -20 "$WORK/cargo.log" >&2
    fi
}

start_sluice() { # start_sluice FSYNC -> BROKER_PID, BOOTSTRAP
    local fsync="$1"
    port_free "$SLUICE_PORT" || { START_ERR="port $SLUICE_PORT busy"; return 1; }
    port_free "$SLUICE_HTTP_PORT" || { START_ERR="port $SLUICE_HTTP_PORT busy"; return 1; }
    mkdir -p "$RUN_DIR/data"
    # env -i: no stray SLUICE_* variable from the caller can reach (and stop) the broker.
    # No initial rebalance delay, as bench/kafka/start.sh gives Kafka.
    env -i PATH="$PATH" HOME="$HOME" RUST_LOG="${RUST_LOG:-info}" \
        "$SLUICE_BIN_RESOLVED" --data-dir "$RUN_DIR/data" \
        --listen "127.0.0.1:$SLUICE_PORT" --http-listen "127.0.0.1:$SLUICE_HTTP_PORT" \
        --advertise "127.0.0.1:$SLUICE_PORT" --fsync "$fsync" \
        --group-initial-rebalance-delay-ms 0 \
        --default-partitions "$PARTITIONS" >"$RUN_DIR/broker.log" 2>&1 </dev/null &
    SLUICE_PID=$!
    BROKER_PID=$SLUICE_PID
    BOOTSTRAP="127.0.0.1:$SLUICE_PORT"
    local deadline=$((SECONDS + 30))
    while :; do
        if ! kill -0 "$SLUICE_PID" 2>/dev/null; then
            local code=0
            wait "$SLUICE_PID" || code=$?
            START_ERR="exited at start with code $code: $(tail -n 1 "$RUN_DIR/broker.log" | strip_ansi)"
            SLUICE_PID=""
            return 1
        fi
        if [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 \
                "http://127.0.0.1:$SLUICE_HTTP_PORT/readyz" || true)" == 200 ]]; then
            return 0
        fi
        if ((SECONDS >= deadline)); then
            START_ERR="/readyz not 200 within 30 s"
            return 1
        fi
        sleep 0.2
    done
}

start_kafka() { # -> BROKER_PID, BOOTSTRAP
    port_free "$KAFKA_PORT" || { START_ERR="port $KAFKA_PORT busy"; return 1; }
    port_free "$KAFKA_CONTROLLER_PORT" || { START_ERR="port $KAFKA_CONTROLLER_PORT busy"; return 1; }
    KAFKA_WORK="$RUN_DIR"
    if ! "$KAFKA_DIR/start.sh" "$RUN_DIR" >"$RUN_DIR/start.out" 2>"$RUN_DIR/start.err"; then
        START_ERR="$(grep FAILED "$RUN_DIR/start.err" | tail -n 1)"
        return 1
    fi
    BROKER_PID="$(tail -n 1 "$RUN_DIR/start.out")"
    BOOTSTRAP="127.0.0.1:$KAFKA_PORT"
}

# ---- one run --------------------------------------------------------------------------------
PROD_ROWS=()
CONS_ROWS=()

run_target() { # run_target NAME
    local name="$1" label config
    RUN_DIR="$WORK/$name-$ROUND"
    mkdir -p "$RUN_DIR"
    START_ERR=""
    case "$name" in
        sluice-always) label="Sluice"; config="fsync always" ;;
        sluice-interval) label="Sluice"; config="fsync interval (1 s)" ;;
        kafka) label="Kafka $KAFKA_VERSION"; config="defaults (no fsync per write), heap ${KAFKA_HEAP_OPTS}" ;;
        *) fail "targets: unknown target '$name' (sluice-always, sluice-interval, kafka)" ;;
    esac
    if ((ROUNDS > 1)); then label="$label (round $ROUND)"; fi
    local load_start
    load_start="$(load1)"
    log "== $name: starting broker (load1 $load_start)"
    local started=0
    case "$name" in
        sluice-*)
            if [[ -n "$SLUICE_BUILD_ERR" ]]; then
                START_ERR="$SLUICE_BUILD_ERR"
            elif start_sluice "${name#sluice-}"; then started=1; fi ;;
        kafka) if start_kafka; then started=1; fi ;;
    esac
    if [[ "$started" != 1 ]]; then
        log "$name: not run: $START_ERR"
        PROD_ROWS+=("| $label | $config | not run: ${START_ERR//|//} | | | | | | | | | | | | | | |")
        stop_sluice; stop_kafka
        return 0
    fi
    local rss_idle
    rss_idle="$(status_kb "$BROKER_PID" VmRSS)"
    create_topic "$BOOTSTRAP"

    if [[ "$WARMUP_RECORDS" -gt 0 ]]; then
        log "$name: warm-up: ProducerPerformance $WARMUP_RECORDS records (not measured)"
        timeout "$RUN_TIMEOUT" "${JAVA_TOOL[@]}" org.apache.kafka.tools.ProducerPerformance \
            --topic "$TOPIC" --num-records "$WARMUP_RECORDS" --record-size "$RECORD_SIZE" --throughput -1 \
            --bootstrap-server "$BOOTSTRAP" --command-property acks=all \
            >"$RUN_DIR/warmup.out" 2>&1 || log "$name: warm-up client exited $? (continuing)"
    fi

    log "$name: ProducerPerformance $NUM_RECORDS x $RECORD_SIZE B, acks=all, unthrottled (cap ${RUN_TIMEOUT}s)"
    local t0 t1 t2 rc=0
    t0="$(cpu_ticks "$BROKER_PID")"
    /usr/bin/time -f '%U %S' -o "$RUN_DIR/producer.time" \
        timeout "$RUN_TIMEOUT" "${JAVA_TOOL[@]}" org.apache.kafka.tools.ProducerPerformance \
        --topic "$TOPIC" --num-records "$NUM_RECORDS" --record-size "$RECORD_SIZE" --throughput -1 \
        --reporting-interval 1000 --bootstrap-server "$BOOTSTRAP" --command-property acks=all \
        >"$RUN_DIR/producer.out" 2>&1 || rc=$?
    if ! kill -0 "$BROKER_PID" 2>/dev/null; then
        log "$name: broker died during the produce run"
        PROD_ROWS+=("| $label | $config | broker died during produce: $(tail -n 1 "$RUN_DIR/broker.log" 2>/dev/null | strip_ansi) | | | | | | | | | | | | | | |")
        SLUICE_PID=""; stop_kafka
        return 0
    fi
    t1="$(cpu_ticks "$BROKER_PID")"
    # what actually reached the data dir: a check that the bytes were stored, not just counted
    local disk_mib
    disk_mib="$(du -sm "$RUN_DIR/data" | cut -f1)"
    parse_producer "$RUN_DIR/producer.out" "$rc"
    [[ -z "$TOPIC_NOTE" ]] || P_NOTE="${P_NOTE:+$P_NOTE; }$TOPIC_NOTE"
    local prod_cpu client_cpu
    prod_cpu="$(per_gib $((t1 - t0)) "$P_RECORDS")"
    # /usr/bin/time -o may hold a "Command exited with non-zero status" line first
    client_cpu="$(awk -v r="$P_RECORDS" '$1 ~ /^[0-9.]+$/ && NF == 2 { s = $1 + $2 }
        END { if (r > 0 && s != "") printf "%.1f", s / (r * 1024 / 1073741824); else print "-" }' \
        "$RUN_DIR/producer.time" 2>/dev/null || echo -)"
    log "$name: produce: $P_RECORDS records, $P_MBS MB/s, p99 $P_P99 ms, broker CPU $(((t1 - t0) / CLK_TCK)) s ${P_NOTE:+($P_NOTE)}"
    tail -n 2 "$RUN_DIR/producer.out" >&2

    local cons_cpu="-"
    if [[ "$CONSUME" == 1 && "$P_RECORDS" -gt 0 ]]; then
        log "$name: ConsumerPerformance $P_RECORDS records (cap ${RUN_TIMEOUT}s)"
        rc=0
        timeout "$RUN_TIMEOUT" "${JAVA_TOOL[@]}" org.apache.kafka.tools.ConsumerPerformance \
            --bootstrap-server "$BOOTSTRAP" --topic "$TOPIC" --num-records "$P_RECORDS" \
            --timeout 15000 --group "bench-$name" >"$RUN_DIR/consumer.out" 2>&1 || rc=$?
        if kill -0 "$BROKER_PID" 2>/dev/null; then
            t2="$(cpu_ticks "$BROKER_PID")"
            parse_consumer "$RUN_DIR/consumer.out" "$rc"
            cons_cpu="$(per_gib $((t2 - t1)) "$C_RECORDS")"
            log "$name: consume: $C_RECORDS records, $C_MBS MB/s ${C_NOTE:+($C_NOTE)}"
        else
            C_RECORDS=0; C_MBS="-"; C_RPS="-"; C_NOTE="broker died during consume"
        fi
        CONS_ROWS+=("| $label | $config | $C_RECORDS | $C_MBS | $C_RPS | $cons_cpu | ${C_NOTE//|//} |")
    fi

    local hwm="-" rss_idle_mib
    if kill -0 "$BROKER_PID" 2>/dev/null; then
        hwm="$(awk -v k="$(status_kb "$BROKER_PID" VmHWM)" 'BEGIN { printf "%.0f", k / 1024 }')"
    fi
    rss_idle_mib="$(awk -v k="$rss_idle" 'BEGIN { printf "%.0f", k / 1024 }')"
    PROD_ROWS+=("| $label | $config | $P_RECORDS | $P_MBS | $P_RPS | $P_AVG | $P_P50 | $P_P95 | $P_P99 | $P_P999 | $P_MAX | $rss_idle_mib / $hwm | $prod_cpu | $client_cpu | $disk_mib | $load_start | ${P_NOTE//|//} |")
    log "$name: stopping broker"
    stop_sluice
    stop_kafka
}

# ---- main -----------------------------------------------------------------------------------
command -v curl >/dev/null || fail "tools: curl not found (apt-get install curl)"
[[ -x /usr/bin/time ]] || fail "tools: /usr/bin/time not found (apt-get install time)"
log "step 1: Kafka $KAFKA_VERSION jars (bench/kafka/setup.sh)"
LIB="$("$KAFKA_DIR/setup.sh" | tail -n 1)" || fail "setup: bench/kafka/setup.sh"
# shellcheck disable=SC2206 # CLIENT_HEAP is a list of JVM flags
JAVA_TOOL=(java $CLIENT_HEAP "-Dlog4j2.configurationFile=$KAFKA_DIR/tools-log4j2.properties" -cp "$LIB/*")
case " $TARGETS " in *" sluice-"*) log "step 2: Sluice broker binary"; build_sluice ;; esac

LOAD_BEFORE="$(uptime)"
log "step 3: runs: $TARGETS, $ROUNDS round(s)"
for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
    order="$TARGETS"
    if ((ROUND % 2 == 0)); then order="$(tr ' ' '\n' <<<"$TARGETS" | tac | tr '\n' ' ')"; fi
    for t in $order; do run_target "$t"; done
done
LOAD_AFTER="$(uptime)"

SLUICE_REV="$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)"
{
    echo "### Produce: acks=all, $RECORD_SIZE B records, $NUM_RECORDS records, $PARTITIONS partition(s), unthrottled"
    echo
    echo "Run $STAMP on $(nproc) cores, $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM, $(uname -sr); Sluice at $SLUICE_REV; Java client = Kafka $KAFKA_VERSION tools ($(java -version 2>&1 | head -n 1))."
    echo
    echo "- uptime before: \`$LOAD_BEFORE\`"
    echo "- uptime after:  \`$LOAD_AFTER\`"
    echo
    echo "| broker | config | records | MB/s | records/s | avg ms | p50 ms | p95 ms | p99 ms | p99.9 ms | max ms | RSS idle / peak MiB | broker CPU-s per GiB | client CPU-s per GiB | data dir MiB | load1 at start | notes |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    printf '%s\n' "${PROD_ROWS[@]}"
    if [[ "${#CONS_ROWS[@]}" -gt 0 ]]; then
        echo
        echo "### Consume: ConsumerPerformance over the records just produced (from offset 0)"
        echo
        echo "| broker | config | records | fetch MB/s | fetch records/s | broker CPU-s per GiB | notes |"
        echo "|---|---|---:|---:|---:|---:|---|"
        printf '%s\n' "${CONS_ROWS[@]}"
    fi
    echo
    echo "MB = MiB (2^20 B) as ProducerPerformance prints it; peak RSS = VmHWM of the broker process over its whole life (start, produce, consume); broker CPU = utime+stime of the broker process during the run, per GiB of record payload; client CPU = the same for the Java producer (JVM start included); data dir = \`du -sm\` of the broker's data dir right after the produce run (payload incl. warm-up: $(((NUM_RECORDS + WARMUP_RECORDS) * RECORD_SIZE / 1048576)) MiB). Each broker first took $WARMUP_RECORDS unmeasured warm-up records through the same command."
} | tee "$OUT"
log "report written to $OUT"
