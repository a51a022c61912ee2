#!/usr/bin/env bash
# The chart on a real API server, with the operator running under the chart's RBAC.
#
# Starts a private etcd + kube-apiserver on free loopback ports (no controller-manager: nothing
# runs pods, which this test does not need), installs the chart, applies examples/ (schema + CEL),
# then runs the real sluice-operator out of cluster with a token of the chart's ServiceAccount and
# the chart's rendered arguments, and checks that it reconciles, heals, pauses, deletes and holds
# its Lease without a single "forbidden" — first watching all namespaces (ClusterRole), then with
# watchNamespaces (Roles). Stops everything it started on exit.
#
# Needs: kube-apiserver (KUBE_APISERVER, default the e2e build in $SLUICE_CACHE,
# default ~/.cache/sluice), etcd (ETCD),
# kubectl, python3, the operator binary (SLUICE_OPERATOR_BIN, default target/debug/sluice-operator).
# When one is missing it prints "skipped" and exits 0; SLUICE_REQUIRE_APISERVER=1 makes that a failure.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
chart="$root/charts/sluice"
cache="${SLUICE_CACHE:-$HOME/.cache/sluice}"
apiserver="${KUBE_APISERVER:-$cache/kubernetes-v1.35.4/bin/kube-apiserver}"
etcd="${ETCD:-$(ls -d "$cache"/etcd-3.6.*/bin/etcd 2>/dev/null | tail -n 1)}"
operator="${SLUICE_OPERATOR_BIN:-$root/target/debug/sluice-operator}"
helm="${HELM:-$("$root/scripts/helm.sh" | tail -n 1)}"
check="$root/charts/check_rendered.py"
ns=sluice-system

step() { echo "== charts/apiserver-test.sh: $*"; }
fail() {
  echo "FAIL: $*" >&2
  if [[ -n "${work:-}" ]] && ls "$work"/op*.log >/dev/null 2>&1; then
    echo "-- operator log (errors):" >&2
    grep -hiE "forbidden|error" "$work"/op*.log | tail -n 5 | cut -c1-400 >&2 || true
  fi
  exit 1
}

for bin in "$apiserver" "$etcd" "$operator" "$(command -v kubectl || echo kubectl)"; do
  if [[ ! -x "$bin" ]]; then
    echo "skipped: $bin not found (build it: e2e/scripts/tools.sh, cargo build -p sluice-operator)"
    [[ "${SLUICE_REQUIRE_APISERVER:-0}" == 1 ]] && exit 1
    exit 0
  fi
done

work="$(mktemp -d)"
pids=()
cleanup() {
  # Newest first (operator, apiserver, then etcd); SIGKILL whatever is left after 10 s.
  local i pid
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    pid="${pids[i]}"
    kill "$pid" 2>/dev/null || continue
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# poll <seconds> <description> <command...>: run the command until it succeeds or time runs out
poll() {
  local secs="$1" what="$2"; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || fail "timed out after ${secs}s waiting for: $what"
    sleep 0.5
  done
}
listening_pid() { ss -ltnp "sport = :$1" | grep -q "pid=$2,"; }

step "etcd and kube-apiserver on private ports"
etcd_client="$(free_port)"; etcd_peer="$(free_port)"; api_port="$(free_port)"
"$etcd" --data-dir "$work/etcd" --listen-client-urls "http://127.0.0.1:$etcd_client" \
  --advertise-client-urls "http://127.0.0.1:$etcd_client" --listen-peer-urls "http://127.0.0.1:$etcd_peer" \
  --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
  --initial-cluster "default=http://127.0.0.1:$etcd_peer" >"$work/etcd.log" 2>&1 &
etcd_pid=$!; pids+=("$etcd_pid")
# the port must be served by *our* etcd, never by someone else's on the same machine
poll 30 "etcd on :$etcd_client" listening_pid "$etcd_client" "$etcd_pid"

openssl genrsa -out "$work/sa.key" 2048 2>/dev/null
openssl rsa -in "$work/sa.key" -pubout -out "$work/sa.pub" 2>/dev/null
echo "admintoken,admin,admin,system:masters" >"$work/tokens.csv"
"$apiserver" --etcd-servers="http://127.0.0.1:$etcd_client" --bind-address=127.0.0.1 \
  --advertise-address=127.0.0.1 --secure-port="$api_port" --cert-dir="$work/certs" \
  --token-auth-file="$work/tokens.csv" --authorization-mode=RBAC \
  --service-account-issuer=https://kubernetes.default.svc --service-account-key-file="$work/sa.pub" \
  --service-account-signing-key-file="$work/sa.key" --service-cluster-ip-range=10.96.0.0/16 \
  >"$work/apiserver.log" 2>&1 &
pids+=("$!")

kubeconfig() { # <file> <token>
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:$api_port", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: "$2"}}]
contexts: [{name: c, context: {cluster: c, user: u, namespace: $ns}}]
current-context: c
EOF
}
kubeconfig "$work/admin.kubeconfig" admintoken
export KUBECONFIG="$work/admin.kubeconfig"
poll 90 "kube-apiserver /readyz" kubectl get --raw /readyz

step "helm install (all namespaces)"
"$helm" install sluice "$chart" --namespace "$ns" --create-namespace >/dev/null
kubectl get crd messagequeues.sluice.dev >/dev/null
kubectl -n "$ns" get deployment/sluice-operator serviceaccount/sluice-operator service/sluice-operator-metrics \
  role/sluice-operator-leader-election >/dev/null
kubectl get clusterrole/sluice-operator clusterrolebinding/sluice-operator >/dev/null

step "examples/ accepted, a bad manifest refused by the CRD's rules"
kubectl create namespace payments >/dev/null
kubectl apply --server-side -f "$root/examples/production.yaml" >/dev/null
kubectl apply --server-side -n default -f "$root/examples/minimal.yaml" >/dev/null
if sed 's/partitions: 12/partitions: 0/' "$root/examples/production.yaml" |
  kubectl apply --dry-run=server -f - >"$work/bad.log" 2>&1; then
  fail "a queue with 0 partitions was accepted"
fi
grep -q "partitions must be at least 1" "$work/bad.log" || fail "no CEL message: $(cat "$work/bad.log")"

token="$(kubectl -n "$ns" create token sluice-operator --duration=1h)"
kubeconfig "$work/sa.kubeconfig" "$token"

# run_operator <log> <release manifest>: the operator as the chart's ServiceAccount, chart args
run_operator() {
  mapfile -t args < <("$helm" get manifest sluice -n "$ns" >"$work/manifest.yaml" &&
    python3 "$check" args "$work/manifest.yaml" | sed 's/=0\.0\.0\.0:[0-9]*$/=127.0.0.1:0/')
  echo "sluice-operator ${args[*]}"
  (cd "$work" && KUBECONFIG="$work/sa.kubeconfig" POD_NAMESPACE="$ns" POD_NAME=chart-test \
    RUST_LOG=info,kube=warn exec "$operator" "${args[@]}") >"$1" 2>&1 &
  operator_pid=$!; pids+=("$operator_pid")
}
stop_operator() {
  kill -TERM "$operator_pid"
  poll 30 "operator exit" bash -c "! kill -0 $operator_pid"
}
phase() { kubectl -n "$1" get mq "$2" -o jsonpath='{.status.phase}'; }
has_event() { kubectl -n "$1" get events --field-selector "reason=$2" -o name | grep -q .; }
no_forbidden() { ! grep -qi "forbidden" "$1" || fail "operator hit RBAC limits: $(grep -i forbidden "$1" | head -3)"; }

step "operator under the ClusterRole: create, heal, scale, pause, delete, Lease"
run_operator "$work/op1.log"
poll 60 "demo reconciled" bash -c "[ -n \"\$(kubectl -n default get mq demo -o jsonpath='{.status.phase}')\" ]"
poll 30 "payments reconciled" bash -c "[ -n \"\$(kubectl -n payments get mq payments -o jsonpath='{.status.phase}')\" ]"
kubectl -n default get statefulset/demo service/demo service/demo-brokers configmap/demo-config \
  poddisruptionbudget/demo >/dev/null
[[ "$(kubectl -n "$ns" get lease sluice-operator -o jsonpath='{.spec.holderIdentity}')" == chart-test ]] ||
  fail "the operator does not hold its Lease"
kubectl -n default delete configmap demo-config >/dev/null
poll 30 "ConfigMap recreated" kubectl -n default get configmap demo-config
poll 30 "Recreated event" has_event default Recreated
kubectl -n default scale mq demo --replicas=1 >/dev/null
poll 30 "StatefulSet scaled to 1" bash -c "[ \"\$(kubectl -n default get sts demo -o jsonpath='{.spec.replicas}')\" = 1 ]"
kubectl -n payments annotate mq payments sluice.dev/paused=true >/dev/null
poll 30 "payments paused" bash -c "[ \"\$(kubectl -n payments get mq payments -o jsonpath='{.status.phase}')\" = Paused ]"
kubectl -n default patch mq demo --type merge -p '{"spec":{"storage":{"deleteClaim":true}}}' >/dev/null
kubectl -n default delete mq demo --timeout=60s >/dev/null
poll 30 "ClaimsDeleted event" has_event default ClaimsDeleted
stop_operator
[[ -z "$(kubectl -n "$ns" get lease sluice-operator -o jsonpath='{.spec.holderIdentity}')" ]] ||
  fail "the Lease was not released on SIGTERM"
no_forbidden "$work/op1.log"

step "operator under per-namespace Roles (watchNamespaces={payments}, no leader election)"
"$helm" upgrade sluice "$chart" -n "$ns" --set 'watchNamespaces={payments}' \
  --set leaderElection.enabled=false >/dev/null
kubectl get rolebinding -n payments sluice-operator >/dev/null
kubectl -n payments annotate mq payments sluice.dev/paused- >/dev/null
sed 's/name: demo/name: outside/' "$root/examples/minimal.yaml" | kubectl apply -n default -f - >/dev/null
sed 's/name: demo/name: inside/' "$root/examples/minimal.yaml" | kubectl apply -n payments -f - >/dev/null
run_operator "$work/op2.log"
poll 60 "inside reconciled" bash -c "[ -n \"\$(kubectl -n payments get mq inside -o jsonpath='{.status.phase}')\" ]"
poll 30 "payments resumed" bash -c "[ \"\$(kubectl -n payments get mq payments -o jsonpath='{.status.phase}')\" != Paused ]"
[[ -z "$(phase default outside)" ]] || fail "a MessageQueue outside watchNamespaces was reconciled"
kubectl -n payments patch mq inside --type merge -p '{"spec":{"storage":{"deleteClaim":true}}}' >/dev/null
kubectl -n payments delete mq inside --timeout=60s >/dev/null
stop_operator
no_forbidden "$work/op2.log"

step "helm uninstall"
"$helm" uninstall sluice -n "$ns" >/dev/null
step "all API server checks passed"
