#!/usr/bin/env bash
# Runs the operator's Kafka admin client tests (operator/tests/kafka_admin.rs) against a real
# Apache Kafka: a single KRaft node (broker + controller) on loopback, started from the jars that
# bench/kafka/setup.sh caches under ~/.cache/sluice (Maven Central on a cold machine, ~15 s start
# when cached). Queue create/alter/delete, AlterPartitionReassignments, ListPartitionReassignments
# and UnregisterBroker with Kafka's own answers and errors.
#
# Usage: operator/scripts/kafka-admin-tests.sh
# Env: KAFKA_VERSION (4.2.0), KAFKA_PORT (29192), KAFKA_CONTROLLER_PORT (29193).
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
    "$ROOT/bench/kafka/stop.sh" "$WORK" >/dev/null 2>&1 || true
    if [[ $rc -ne 0 && -f "$WORK/logs/server.log" ]]; then
        step "FAILED (exit $rc); last lines of the Kafka log:"
        tail -20 "$WORK/logs/server.log" >&2 || true
    fi
    rm -rf "$WORK"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "building the tests"
# --workspace (not -p): the feature set of `cargo test --workspace`, whose build this reuses.
(cd "$ROOT" && cargo test --workspace --test kafka_admin --no-run)

step "starting Apache Kafka ${KAFKA_VERSION:-4.2.0} on 127.0.0.1:$KAFKA_PORT (bench/kafka/start.sh)"
"$ROOT/bench/kafka/start.sh" "$WORK" >/dev/null

step "running operator/tests/kafka_admin.rs"
(cd "$ROOT" && SLUICE_TEST_KAFKA="127.0.0.1:$KAFKA_PORT" \
    cargo test --workspace --test kafka_admin -- --ignored --test-threads=1)
step "passed"
