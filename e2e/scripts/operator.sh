#!/usr/bin/env bash
# Installs the chart into the e2e cluster and runs the operator on the host with the identity of the
# chart's ServiceAccount (a `kubectl create token` token in a kubeconfig of its own), so a missing
# RBAC rule fails exactly as it would in a real cluster. The chart's Deployment is installed with
# replicas=0: the host process is the only operator.
#
# Usage: e2e/scripts/operator.sh start|stop
#   SLUICE_OPERATOR_BIN  operator binary (default target/debug/sluice-operator)
#   HELM                 helm binary (default: scripts/helm.sh's output)
#   SLUICE_QUEUE_COUNTS_INTERVAL_SECS  queue counts refresh (default here 10, the operator's 60:
#                        the scenarios wait for counts on status)
#   SLUICE_OPERATOR_API_SERVER  API server URL for the operator's kubeconfig (default: the
#                        cluster's own; operator_faults.rs points it at a partitionable proxy)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
WORK="$ROOT/e2e/.work"
NS="sluice-system"
RELEASE="sluice"
OPERATOR_BIN="${SLUICE_OPERATOR_BIN:-$ROOT/target/debug/sluice-operator}"
PID="$WORK/operator.pid"
LOG="$WORK/operator.log"
export KUBECONFIG="$WORK/kubeconfig"

log() { printf '[operator %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

start() {
  eval "$("$ROOT/e2e/scripts/tools.sh" --paths)"
  local helm="${HELM:-$("$ROOT/scripts/helm.sh" | tail -1)}"
  [ -x "$OPERATOR_BIN" ] || die "operator binary $OPERATOR_BIN missing (cargo build -p sluice-operator)"
  "$OPERATOR_BIN" --help 2>&1 | grep -qw run || die "$OPERATOR_BIN has no 'run' subcommand yet: the operator cannot be started"
  log "helm install $RELEASE charts/sluice -n $NS (replicas=0: the operator runs on the host)"
  "$helm" upgrade --install "$RELEASE" "$ROOT/charts/sluice" --namespace "$NS" --create-namespace \
    --set replicas=0 --wait --timeout 3m >"$WORK/helm-install.log" 2>&1 \
    || { cat "$WORK/helm-install.log" >&2; die "helm install failed"; }
  local sa
  sa="$("$KUBECTL" get sa -n "$NS" -l "app.kubernetes.io/instance=$RELEASE" -o jsonpath='{.items[0].metadata.name}')"
  [ -n "$sa" ] || die "the chart created no ServiceAccount"
  local token server ca
  token="$("$KUBECTL" create token "$sa" -n "$NS" --duration=24h)"
  server="$("$KUBECTL" config view --raw --minify --flatten -o jsonpath='{.clusters[0].cluster.server}')"
  # A scenario may route the operator's traffic through a proxy it controls (a network
  # partition); the proxy listens on the API server's host, so its certificate still fits.
  server="${SLUICE_OPERATOR_API_SERVER:-$server}"
  ca="$("$KUBECTL" config view --raw --minify --flatten -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')"
  cat >"$WORK/operator.kubeconfig" <<EOK
apiVersion: v1
kind: Config
clusters: [{name: e2e, cluster: {server: "$server", certificate-authority-data: "$ca"}}]
users: [{name: $sa, user: {token: "$token"}}]
contexts: [{name: operator, context: {cluster: e2e, user: $sa, namespace: $NS}}]
current-context: operator
EOK
  chmod 600 "$WORK/operator.kubeconfig"
  stop
  log "starting $OPERATOR_BIN run as system:serviceaccount:$NS:$sa (log $LOG)"
  KUBECONFIG="$WORK/operator.kubeconfig" POD_NAMESPACE="$NS" POD_NAME="operator-host-$$" \
    RUST_LOG="${RUST_LOG:-info}" SLUICE_QUEUE_COUNTS_INTERVAL_SECS="${SLUICE_QUEUE_COUNTS_INTERVAL_SECS:-10}" setsid "$OPERATOR_BIN" run --http-listen="${SLUICE_OPERATOR_HTTP:-127.0.2.1:8080}" --lease-name="$sa" \
    >"$LOG" 2>&1 </dev/null &
  echo $! >"$PID"
  local i
  for i in $(seq 1 100); do
    kill -0 "$(cat "$PID")" 2>/dev/null || { tail -20 "$LOG" >&2; die "operator exited at start (log $LOG)"; }
    grep -q 'acting as leader\|leader\|reconcil' "$LOG" 2>/dev/null && break
    sleep 0.1
  done
  log "operator running (pid $(cat "$PID"))"
}

stop() {
  [ -f "$PID" ] || return 0
  local pid; pid="$(cat "$PID")"
  if kill -0 "$pid" 2>/dev/null; then
    log "stopping operator (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    local i; for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$PID"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
