#!/usr/bin/env bash
# Start a single-node KRaft Apache Kafka (combined broker+controller) on loopback from the jars
# that bench/kafka/setup.sh caches. Returns once the broker logged "Kafka Server started" and accepts TCP
# (or fails after KAFKA_START_TIMEOUT seconds).
#
# Usage: bench/kafka/start.sh WORKDIR
#   WORKDIR gets server.properties, log4j2.properties, data/, logs/ and kafka.pid.
# Env: KAFKA_VERSION (4.2.0), KAFKA_PORT (19092), KAFKA_CONTROLLER_PORT (19093),
#      KAFKA_HEAP_OPTS ("-Xms1g -Xmx1g", the stock kafka-server-start.sh default),
#      KAFKA_START_TIMEOUT (90 s), KAFKA_FORMAT_ONLY=1 (write the config and format the storage,
#      then exit without starting: bench/suite.sh times the start of a formatted empty folder
#      apart from the one-off format),
#      KAFKA_EXTRA_LISTENERS ("SSL://127.0.0.1:P,SASL_SSL://127.0.0.1:Q": more listeners, each
#      advertised as bound and mapped to the protocol of its name),
#      KAFKA_EXTRA_PROPERTIES (a file appended to server.properties: keystores, SASL),
#      KAFKA_FORMAT_ARGS (more `StorageTool format` arguments, e.g. --add-scram ...).
# Stop with bench/kafka/stop.sh WORKDIR.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WORKDIR="${1:?usage: start.sh WORKDIR}"
KAFKA_PORT="${KAFKA_PORT:-19092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-19093}"
KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms1g -Xmx1g}"
KAFKA_START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"

step() { echo "[kafka-start] $*" >&2; }
fail() { echo "[kafka-start] FAILED at step: $*" >&2; exit 1; }

LIB="$("$HERE/setup.sh" | tail -n 1)" || fail "setup (bench/kafka/setup.sh)"
CP="$LIB/*"
mkdir -p "$WORKDIR/data" "$WORKDIR/logs"
WORKDIR="$(cd "$WORKDIR" && pwd)"

if [[ -f "$WORKDIR/kafka.pid" ]] && kill -0 "$(cat "$WORKDIR/kafka.pid")" 2>/dev/null; then
    fail "already running (pid $(cat "$WORKDIR/kafka.pid")); stop it with bench/kafka/stop.sh $WORKDIR"
fi

step "writing $WORKDIR/server.properties (127.0.0.1:$KAFKA_PORT, controller :$KAFKA_CONTROLLER_PORT)"
# Only what a single loopback node needs; everything else (notably log.flush.interval.messages,
# i.e. no fsync per write, and num.io/network.threads) stays at Kafka's defaults.
EXTRA_L="${KAFKA_EXTRA_LISTENERS:+,$KAFKA_EXTRA_LISTENERS}"
EXTRA_MAP=""
if [[ -n "${KAFKA_EXTRA_LISTENERS:-}" ]]; then
    IFS=, read -r -a extra_listeners <<<"$KAFKA_EXTRA_LISTENERS"
    for l in "${extra_listeners[@]}"; do
        name="${l%%://*}"
        EXTRA_MAP+=",$name:$name"
    done
fi
cat > "$WORKDIR/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT$EXTRA_L
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT$EXTRA_L
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT$EXTRA_MAP
log.dirs=$WORKDIR/data
num.partitions=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
PROPS
if [[ -n "${KAFKA_EXTRA_PROPERTIES:-}" ]]; then
    cat "$KAFKA_EXTRA_PROPERTIES" >>"$WORKDIR/server.properties"
fi

cat > "$WORKDIR/log4j2.properties" <<'L4J'
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = ${sys:kafka.logs.dir}/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = info
logger.state.name = state.change.logger
logger.state.level = warn
L4J

# shellcheck disable=SC2206 # KAFKA_HEAP_OPTS is a list of JVM flags
JAVA_OPTS=(
    $KAFKA_HEAP_OPTS
    -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35
    -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true
    "-Dkafka.logs.dir=$WORKDIR/logs"
    "-Dlog4j2.configurationFile=$WORKDIR/log4j2.properties"
)

if [[ ! -f "$WORKDIR/data/meta.properties" ]]; then
    step "formatting storage (kafka.tools.StorageTool format --standalone)"
    cluster_id="$(java -cp "$CP" "-Dlog4j2.configurationFile=$WORKDIR/log4j2.properties" \
        "-Dkafka.logs.dir=$WORKDIR/logs" kafka.tools.StorageTool random-uuid 2>"$WORKDIR/logs/format.err")" \
        || fail "format: random-uuid ($(tail -3 "$WORKDIR/logs/format.err"))"
    java -cp "$CP" "-Dlog4j2.configurationFile=$WORKDIR/log4j2.properties" "-Dkafka.logs.dir=$WORKDIR/logs" \
        kafka.tools.StorageTool format --standalone -t "$cluster_id" -c "$WORKDIR/server.properties" \
        ${KAFKA_FORMAT_ARGS:-} \
        >"$WORKDIR/logs/format.out" 2>&1 || fail "format ($(tail -5 "$WORKDIR/logs/format.out"))"
fi

if [[ "${KAFKA_FORMAT_ONLY:-0}" == 1 ]]; then
    step "formatted $WORKDIR (KAFKA_FORMAT_ONLY=1: not starting)"
    exit 0
fi

step "starting kafka.Kafka (heap: $KAFKA_HEAP_OPTS)"
# setsid: own process group, so an interrupted parent's Ctrl-C does not race our cleanup
setsid java "${JAVA_OPTS[@]}" -cp "$CP" kafka.Kafka "$WORKDIR/server.properties" \
    >"$WORKDIR/logs/stdout.log" 2>&1 </dev/null &
pid=$!
echo "$pid" > "$WORKDIR/kafka.pid"

step "waiting for "Kafka Server started" and a listening socket on 127.0.0.1:$KAFKA_PORT (<= ${KAFKA_START_TIMEOUT}s)"
deadline=$((SECONDS + KAFKA_START_TIMEOUT))
while :; do
    if ! kill -0 "$pid" 2>/dev/null; then
        tail -20 "$WORKDIR/logs/stdout.log" "$WORKDIR/logs/server.log" >&2 2>/dev/null || true
        fail "broker process $pid exited during start (logs: $WORKDIR/logs)"
    fi
    if grep -q "Kafka Server started" "$WORKDIR/logs/server.log" 2>/dev/null \
        && (exec 3<>"/dev/tcp/127.0.0.1/$KAFKA_PORT") 2>/dev/null; then
        break
    fi
    (( SECONDS < deadline )) || fail "broker not ready after ${KAFKA_START_TIMEOUT}s (logs: $WORKDIR/logs)"
    sleep 0.5
done
step "ready: pid $pid, bootstrap 127.0.0.1:$KAFKA_PORT"
echo "$pid"
