#!/usr/bin/env bash
# Runs the operator's Kafka admin client tests (operator/tests/kafka_admin.rs) against a real
# Apache Kafka: a three-node KRaft cluster on loopback (node 0 broker and controller, nodes 1 and
# 2 brokers; bench/kafka/start-cluster.sh), started from the jars that bench/kafka/setup.sh
# caches under ~/.cache/sluice (Maven Central on a cold machine, ~25 s start when cached). Queue
# create/alter/delete, replicas and in-sync replicas, AlterPartitionReassignments with full
# replica lists, ListPartitionReassignments and UnregisterBroker with Kafka's own answers and
# errors; last, broker 2 is stopped and the under-replicated and offline partitions read back.
#
# Usage: operator/scripts/kafka-admin-tests.sh
# Env: KAFKA_VERSION (4.2.0), KAFKA_PORT (29192; nodes on 29192, 29194, 29196),
#      KAFKA_CONTROLLER_PORT (29193).
# Kafka runs in a temp dir that is removed on exit; it is stopped also when a step fails.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export KAFKA_PORT="${KAFKA_PORT:-29192}"
export KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-29193}"
WORK="$(mktemp -d)"
T0=$(date +%s)

step() { echo "[kafka-admin-tests +$(( $(date +%s) - T0 ))s] $*" >&2; }

cleanup() {
    local rc=$?
    "$ROOT/bench/kafka/stop-cluster.sh" "$WORK" >/dev/null 2>&1 || true
    if [[ $rc -ne 0 ]]; then
        for log in "$WORK"/node-*/logs/server.log; do
            [[ -f "$log" ]] || continue
            step "FAILED (exit $rc); last lines of $log:"
            tail -10 "$log" >&2 || true
        done
    fi
    rm -rf "$WORK"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "building the tests"
# --workspace (not -p): the feature set of `cargo test --workspace`, whose build this reuses.
(cd "$ROOT" && cargo test --workspace --test kafka_admin --no-run)

step "starting a three-node Apache Kafka ${KAFKA_VERSION:-4.2.0} cluster on 127.0.0.1:$KAFKA_PORT (bench/kafka/start-cluster.sh)"
"$ROOT/bench/kafka/start-cluster.sh" "$WORK" 3

export SLUICE_TEST_KAFKA="127.0.0.1:$KAFKA_PORT" SLUICE_TEST_KAFKA_CLUSTER=3
step "running operator/tests/kafka_admin.rs"
# The queue-counts test declares a `type: queue`, which the operator creates with the topic config
# share.auto.offset.reset; Apache Kafka keeps that setting per share group, not per topic, and
# refuses it (InvalidConfig), so that test runs against sluice-broker only
# (scripts/operator-admin-vs-sluice.sh).
(cd "$ROOT" && cargo test --workspace --test kafka_admin -- --ignored --test-threads=1 \
    --skip zz_a_stopped_broker --skip an_empty_work_queue_counts)
step "stopping broker 2 and reading the under-replicated partitions"
(cd "$ROOT" && SLUICE_TEST_KAFKA_STOP="$WORK/node-2" \
    cargo test --workspace --test kafka_admin -- --ignored --exact \
    zz_a_stopped_broker_leaves_partitions_under_replicated_or_offline)
step "passed"
