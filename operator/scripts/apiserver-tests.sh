#!/usr/bin/env bash
# Runs the operator's API-server tests (operator/tests/api_server.rs) against a throwaway
# etcd + kube-apiserver on loopback: the CRD and its CEL rules in a real API server, and the
# controller creating, healing, scaling and finalizing a MessageQueue's children.
# Much faster than the e2e suite (no nodes, no pods); the e2e suite proves the rest.
#
# Needs the binaries the e2e tooling caches under SLUICE_CACHE (default ~/.cache/sluice): etcd,
# kube-apiserver; set ETCD / KUBE_APISERVER to override. Everything runs under a temp dir that is removed on exit, with no process left behind.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.35.4}"
CACHE="${SLUICE_CACHE:-$HOME/.cache/sluice}"
ETCD="${ETCD:-$(ls "$CACHE"/etcd-*/bin/etcd 2>/dev/null | sort -V | tail -n 1)}"
KUBE_APISERVER="${KUBE_APISERVER:-$CACHE/kubernetes-$K8S_VERSION/bin/kube-apiserver}"
ETCD_PORT="${ETCD_PORT:-23891}"
API_PORT="${API_PORT:-16543}"

step() { echo "[apiserver-tests] $*" >&2; }
fail() { echo "[apiserver-tests] FAILED at step: $*" >&2; exit 1; }

[[ -x "$ETCD" ]] || fail "find etcd (build it with the e2e tooling, or set ETCD=/path/to/etcd)"
[[ -x "$KUBE_APISERVER" ]] || fail "find kube-apiserver at $KUBE_APISERVER (build it with the e2e tooling, or set KUBE_APISERVER)"
command -v openssl >/dev/null || fail "find openssl"

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
    # kube-apiserver first, then etcd: an apiserver whose etcd is gone can hang in its shutdown.
    # Each process gets 10 s after SIGTERM, then SIGKILL, so cleanup never blocks the test run.
    local i pid
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        pid="${PIDS[i]}"
        kill "$pid" 2>/dev/null || continue
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

step "starting etcd on 127.0.0.1:$ETCD_PORT"
"$ETCD" --data-dir "$WORK/etcd" --listen-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" --listen-peer-urls "http://127.0.0.1:$((ETCD_PORT + 10))" \
    --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT + 10))" \
    --initial-cluster "default=http://127.0.0.1:$((ETCD_PORT + 10))" >"$WORK/etcd.log" 2>&1 &
PIDS+=($!)

openssl genrsa -out "$WORK/sa.key" 2048 2>/dev/null || fail "generate the service-account key"
openssl rsa -in "$WORK/sa.key" -pubout -out "$WORK/sa.pub" 2>/dev/null || fail "derive the service-account public key"
TOKEN="$(openssl rand -hex 16)"
echo "$TOKEN,admin,admin,system:masters" >"$WORK/tokens.csv"

step "starting kube-apiserver on 127.0.0.1:$API_PORT"
"$KUBE_APISERVER" --etcd-servers "http://127.0.0.1:$ETCD_PORT" --bind-address 127.0.0.1 \
    --secure-port "$API_PORT" --cert-dir "$WORK/certs" --token-auth-file "$WORK/tokens.csv" \
    --authorization-mode RBAC --service-account-key-file "$WORK/sa.pub" \
    --service-account-signing-key-file "$WORK/sa.key" \
    --service-account-issuer https://kubernetes.default.svc \
    --service-cluster-ip-range 10.96.0.0/16 >"$WORK/apiserver.log" 2>&1 &
PIDS+=($!)

cat >"$WORK/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster: {server: "https://127.0.0.1:$API_PORT", insecure-skip-tls-verify: true}
users:
- name: admin
  user: {token: "$TOKEN"}
contexts:
- name: local
  context: {cluster: local, user: admin, namespace: default}
current-context: local
KC

step "waiting for /readyz (60 s)"
for _ in $(seq 1 120); do
    for pid in "${PIDS[@]}"; do
        kill -0 "$pid" 2>/dev/null || { tail -n 5 "$WORK"/*.log >&2; fail "etcd / kube-apiserver exited (port in use? set ETCD_PORT / API_PORT)"; }
    done
    if curl -sk -H "Authorization: Bearer $TOKEN" "https://127.0.0.1:$API_PORT/readyz" 2>/dev/null | grep -q '^ok$'; then
        break
    fi
    sleep 0.5
done
curl -sk -H "Authorization: Bearer $TOKEN" "https://127.0.0.1:$API_PORT/readyz" | grep -q '^ok$' \
    || { tail -n 20 "$WORK/apiserver.log" >&2; fail "kube-apiserver ready"; }

# --workspace (not -p): the same feature set as `cargo test --workspace`, so the test binary
# built there is reused instead of the dependencies being built again.
step "cargo test --workspace --test api_server -- --ignored"
KUBECONFIG="$WORK/kubeconfig" cargo test --workspace --test api_server -- --ignored --test-threads=1 ${APISERVER_TEST_ARGS:-} \
    || fail "operator API-server tests"
step "passed"
