#!/usr/bin/env bash
# The one-command local run: build, start the local control plane, install the chart, run the
# operator with the chart's identity, apply examples/minimal.yaml, wait for Available (showing
# progress), send and receive a message through a broker, and print how to reach it.
#
#   e2e/scripts/demo.sh up      everything above; leaves the cluster running
#   e2e/scripts/demo.sh down    stops everything (operator, brokers, control plane)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
WORK="$ROOT/e2e/.work"
T0=$(date +%s)
log() { printf '[demo +%ss] %s\n' "$(( $(date +%s) - T0 ))" "$*" >&2; }

up() {
  trap 'rc=$?; if [ $rc -ne 0 ]; then log "failed (exit $rc); stopping everything"; e2e/scripts/cluster.sh down; fi' EXIT
  log "1/7 tools (first run builds Kubernetes from source: long; cached afterwards)"
  e2e/scripts/tools.sh
  eval "$(e2e/scripts/tools.sh --paths)"
  export HELM; HELM="$(scripts/helm.sh | tail -1)"
  log "2/7 building broker, operator, pod runner and the Kafka smoke client"
  cargo build -p sluice-broker --bin sluice-broker
  cargo build -p sluice-operator --bin sluice-operator
  cargo build -p sluice-e2e --bin pod-runner --example kafka-smoke
  log "3/7 starting the control plane"
  e2e/scripts/cluster.sh up
  export KUBECONFIG="$WORK/kubeconfig"
  log "4/7 installing the chart and starting the operator"
  e2e/scripts/operator.sh start
  log "5/7 applying examples/minimal.yaml"
  "$KUBECTL" apply -n default -f examples/minimal.yaml
  log "6/7 waiting for MessageQueue demo to be Available (up to 5 min)"
  local deadline=$(( $(date +%s) + 300 )) last=""
  while :; do
    local line
    line="$("$KUBECTL" get mq demo -n default --no-headers 2>/dev/null || true)"
    [ "$line" != "$last" ] && { log "  $line"; last="$line"; }
    if [ "$("$KUBECTL" get mq demo -n default -o jsonpath='{.status.conditions[?(@.type=="Available")].status}' 2>/dev/null)" = "True" ]; then
      break
    fi
    [ "$(date +%s)" -lt "$deadline" ] || { "$KUBECTL" describe mq demo -n default >&2 || true; log "not Available after 5 min"; exit 1; }
    sleep 2
  done
  local ip
  ip="$("$KUBECTL" get pod demo-0 -n default -o jsonpath='{.status.podIP}')"
  log "7/7 producing and consuming one message through broker demo-0 at $ip:9092"
  target/debug/examples/kafka-smoke "$ip:9092" events
  trap - EXIT
  cat <<EOT

Sluice is running on a local Kubernetes control plane (kwok nodes; brokers are real processes).
  export KUBECONFIG=$WORK/kubeconfig
  $KUBECTL get mq,sts,pods,pvc -n default
  $KUBECTL get pods -n default -o wide          # pod IPs are loopback addresses: Kafka clients connect directly
  bootstrap server of broker 0: $ip:9092       (e.g. target/debug/examples/kafka-smoke $ip:9092 events)
  logs: $WORK/operator.log  $WORK/pod-runner.log  $WORK/pods/logs/
Stop everything with: e2e/scripts/demo.sh down
EOT
}

case "${1:-}" in
  up) up ;;
  down) e2e/scripts/cluster.sh down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
