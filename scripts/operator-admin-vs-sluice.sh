#!/usr/bin/env bash
# Runs the operator's Kafka admin client tests (operator/tests/kafka_admin.rs) against the
# sluice-broker binary itself (a single-node cluster on loopback), the same tests that
# operator/scripts/kafka-admin-tests.sh runs against Apache Kafka: the operator must work with
# both. The broker runs in a temp dir, removed on exit; it is stopped also when a step fails.
#
# Then operator/tests/secure_admin.rs: the admin client over TLS and SCRAM, ACLs and SCRAM users.
#
# Usage: scripts/operator-admin-vs-sluice.sh
set -euo pipefail
cd "$(dirname "$0")/.."

WORK="$(mktemp -d)"
PID=""
cleanup() {
  local rc=$?
  if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
  if [ $rc -ne 0 ] && [ -f "$WORK/broker.log" ]; then
    echo "operator-admin-vs-sluice: FAILED (exit $rc); last broker log lines:" >&2
    tail -20 "$WORK/broker.log" >&2 || true
  fi
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# One build with the feature set of `cargo test --workspace` (it also builds target/debug/sluice-broker):
# after the test command's workspace step there is nothing left to build.
cargo test -q --workspace --no-run

# Port 0 everywhere: the broker's start line says what it bound.
target/debug/sluice-broker --data-dir "$WORK/data" --listen 127.0.0.1:0 --http-listen 127.0.0.1:0 \
  --cluster-listen 127.0.0.1:0 --log-format text >"$WORK/broker.log" 2>&1 &
PID=$!
kafka=""
for _ in $(seq 1 300); do
  kafka=$(sed -n 's/.*listening kafka=\([0-9.:]*\) .*/\1/p' "$WORK/broker.log" | head -n 1)
  [ -n "$kafka" ] && break
  kill -0 "$PID" 2>/dev/null || { echo "sluice-broker exited during start" >&2; exit 1; }
  sleep 0.1
done
[ -n "$kafka" ] || { echo "sluice-broker did not report its Kafka address within 30 s" >&2; exit 1; }
echo "sluice-broker serving on $kafka; running operator/tests/kafka_admin.rs against it" >&2
SLUICE_TEST_KAFKA="$kafka" cargo test -q --workspace --test kafka_admin -- --ignored

# The secured side: the same binary with TLS, SASL and the ACL authorizer, started by the test
# itself with certificates it makes (TLS + SCRAM connection, ACL and SCRAM user calls, refusals).
echo "running operator/tests/secure_admin.rs against sluice-broker with TLS, SASL and ACLs" >&2
SLUICE_BROKER_BIN=target/debug/sluice-broker cargo test -q --workspace --test secure_admin -- --ignored
