#!/usr/bin/env bash
# Start an N-node KRaft Apache Kafka cluster on loopback from the jars that bench/kafka/setup.sh
# caches: node 0 is broker and (sole) controller, nodes 1..N-1 are brokers. Node ids are 0..N-1,
# as the operator numbers the brokers of a StatefulSet. Returns once every broker logged "Kafka
# Server started" and accepts TCP (or fails after KAFKA_START_TIMEOUT seconds).
#
# Usage: bench/kafka/start-cluster.sh WORKDIR [N]   (N defaults to 3)
#   WORKDIR/node-<i> gets that node's server.properties, data/, logs/ and kafka.pid; stop a node
#   with bench/kafka/stop.sh WORKDIR/node-<i>, all of them with bench/kafka/stop-cluster.sh WORKDIR.
# Env: KAFKA_VERSION (4.2.0), KAFKA_PORT (19092: node i listens on KAFKA_PORT + 2i),
#      KAFKA_CONTROLLER_PORT (19093), KAFKA_HEAP_OPTS ("-Xms512m -Xmx512m" per node),
#      KAFKA_START_TIMEOUT (120 s), KAFKA_EXTRA_PROPERTIES (a file appended to every node's
#      server.properties, e.g. log.flush.interval.messages=1).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WORKDIR="${1:?usage: start-cluster.sh WORKDIR [N]}"
NODES="${2:-3}"
KAFKA_PORT="${KAFKA_PORT:-19092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-19093}"
KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms512m -Xmx512m}"
KAFKA_START_TIMEOUT="${KAFKA_START_TIMEOUT:-120}"

step() { echo "[kafka-cluster] $*" >&2; }
fail() { echo "[kafka-cluster] FAILED at step: $*" >&2; exit 1; }

[[ "$NODES" =~ ^[1-9][0-9]*$ ]] || fail "N must be a positive number, got '$NODES'"
LIB="$("$HERE/setup.sh" | tail -n 1)" || fail "setup (bench/kafka/setup.sh)"
CP="$LIB/*"
mkdir -p "$WORKDIR"
WORKDIR="$(cd "$WORKDIR" && pwd)"

port_of() { echo $(( KAFKA_PORT + 2 * $1 )); }

cluster_id=""
for (( i = 0; i < NODES; i++ )); do
    dir="$WORKDIR/node-$i"
    mkdir -p "$dir/data" "$dir/logs"
    if [[ -f "$dir/kafka.pid" ]] && kill -0 "$(cat "$dir/kafka.pid")" 2>/dev/null; then
        fail "node $i already running (pid $(cat "$dir/kafka.pid")); stop it with bench/kafka/stop-cluster.sh $WORKDIR"
    fi
    port="$(port_of "$i")"
    if (( i == 0 )); then
        roles="broker,controller"
        listeners="PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT"
    else
        roles="broker"
        listeners="PLAINTEXT://127.0.0.1:$port"
    fi
    # As bench/kafka/start.sh, plus what several nodes need; internal topics keep one copy so a
    # stopped broker never blocks them.
    cat > "$dir/server.properties" <<PROPS
process.roles=$roles
node.id=$i
controller.quorum.bootstrap.servers=127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=$listeners
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/data
num.partitions=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
PROPS
    if [[ -n "${KAFKA_EXTRA_PROPERTIES:-}" ]]; then
        cat "$KAFKA_EXTRA_PROPERTIES" >>"$dir/server.properties"
    fi
    cat > "$dir/log4j2.properties" <<'L4J'
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
    if [[ ! -f "$dir/data/meta.properties" ]]; then
        tool=(java -cp "$CP" "-Dlog4j2.configurationFile=$dir/log4j2.properties"
            "-Dkafka.logs.dir=$dir/logs" kafka.tools.StorageTool)
        if [[ -z "$cluster_id" ]]; then
            cluster_id="$("${tool[@]}" random-uuid 2>"$dir/logs/format.err")" \
                || fail "format: random-uuid ($(tail -3 "$dir/logs/format.err"))"
        fi
        if (( i == 0 )); then
            initial=(--standalone)
        else
            initial=(--no-initial-controllers)
        fi
        step "formatting node $i"
        "${tool[@]}" format "${initial[@]}" -t "$cluster_id" -c "$dir/server.properties" \
            >"$dir/logs/format.out" 2>&1 || fail "format node $i ($(tail -5 "$dir/logs/format.out"))"
    fi
done

for (( i = 0; i < NODES; i++ )); do
    dir="$WORKDIR/node-$i"
    # shellcheck disable=SC2206 # KAFKA_HEAP_OPTS is a list of JVM flags
    java_opts=(
        $KAFKA_HEAP_OPTS
        -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35
        -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true
        "-Dkafka.logs.dir=$dir/logs"
        "-Dlog4j2.configurationFile=$dir/log4j2.properties"
    )
    step "starting node $i on 127.0.0.1:$(port_of "$i")"
    # setsid: own process group, so an interrupted parent's Ctrl-C does not race our cleanup
    setsid java "${java_opts[@]}" -cp "$CP" kafka.Kafka "$dir/server.properties" \
        >"$dir/logs/stdout.log" 2>&1 </dev/null &
    echo "$!" > "$dir/kafka.pid"
done

step "waiting for $NODES brokers (<= ${KAFKA_START_TIMEOUT}s)"
deadline=$((SECONDS + KAFKA_START_TIMEOUT))
for (( i = 0; i < NODES; i++ )); do
    dir="$WORKDIR/node-$i"
    pid="$(cat "$dir/kafka.pid")"
    while :; do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -20 "$dir/logs/stdout.log" "$dir/logs/server.log" >&2 2>/dev/null || true
            fail "node $i (pid $pid) exited during start (logs: $dir/logs)"
        fi
        if grep -q "Kafka Server started" "$dir/logs/server.log" 2>/dev/null \
            && (exec 3<>"/dev/tcp/127.0.0.1/$(port_of "$i")") 2>/dev/null; then
            break
        fi
        (( SECONDS < deadline )) || fail "node $i not ready after ${KAFKA_START_TIMEOUT}s (logs: $dir/logs)"
        sleep 0.5
    done
done
step "ready: $NODES brokers, bootstrap 127.0.0.1:$KAFKA_PORT"
