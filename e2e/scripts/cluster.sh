#!/usr/bin/env bash
# A local Kubernetes control plane for the e2e tests, all on loopback:
#   etcd + kube-apiserver + kube-controller-manager + kube-scheduler + kwok (fake nodes), started by
#   `kwokctl --runtime binary` from the binaries e2e/scripts/tools.sh built; plus the e2e pod runner,
#   which runs the real sluice-broker for each broker pod (see e2e/README.md).
#
# Usage: e2e/scripts/cluster.sh up|down|status|env
#   up      start (idempotent: a running cluster is left alone), wait until every node is Ready
#   down    stop everything this script started (cluster processes, pod runner, brokers); keep nothing
#   status  print the state of the processes and the nodes
#   env     print `export KUBECONFIG=...` etc. for `eval "$(e2e/scripts/cluster.sh env)"`
#
# Environment:
#   SLUICE_E2E_NODES      number of kwok nodes (default 3)
#   SLUICE_BROKER_BIN     sluice-broker binary for the pod runner (default target/debug/sluice-broker)
#   SLUICE_POD_RUNNER     pod-runner binary (default target/debug/pod-runner)
#   SLUICE_BROKER_LABEL   label key=value selecting broker pods (default app.kubernetes.io/name=sluice-broker)
#   SLUICE_NO_RUNNER=1    start the control plane only
#   SLUICE_HOSTS_FILE     hosts file holding the pod runner's pod DNS block (default /etc/hosts)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
WORK="$ROOT/e2e/.work"
NAME="sluice-e2e"
export KWOK_WORKDIR="$WORK/kwok"
CLUSTER_DIR="$KWOK_WORKDIR/clusters/$NAME"
KUBECONFIG_PATH="$WORK/kubeconfig"
NODES="${SLUICE_E2E_NODES:-3}"
BROKER_LABEL="${SLUICE_BROKER_LABEL:-app.kubernetes.io/name=sluice-broker}"
BROKER_BIN="${SLUICE_BROKER_BIN:-$ROOT/target/debug/sluice-broker}"
POD_RUNNER="${SLUICE_POD_RUNNER:-$ROOT/target/debug/pod-runner}"
RUNNER_PID="$WORK/pod-runner.pid"
RUNNER_LOG="$WORK/pod-runner.log"
# The pod runner keeps pod DNS names in a marked block of this file (no cluster DNS here); the
# markers are sluice_e2e::hosts::{BEGIN,END}.
HOSTS_FILE="${SLUICE_HOSTS_FILE:-/etc/hosts}"
HOSTS_BEGIN="# BEGIN sluice-e2e pod-runner: pod DNS (managed; removed by cluster.sh down)"
HOSTS_END="# END sluice-e2e pod-runner"

log() { printf '[cluster %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

tools_env() {
  local paths
  paths="$("$ROOT/e2e/scripts/tools.sh" --paths)" || die "tools missing: run e2e/scripts/tools.sh first"
  eval "$paths"
}

kubectl_() { "$KUBECTL" --kubeconfig "$KUBECONFIG_PATH" "$@"; }

kwok_stage_dir() {
  local modcache; modcache="$(go env GOMODCACHE)"
  echo "$modcache/sigs.k8s.io/kwok@${KWOK_VERSION:-v0.8.0}/kustomize/stage"
}

# The kwokctl configuration: binaries, loopback binding, pod CIDR, and the stages kwok plays.
write_config() {
  local stages; stages="$(kwok_stage_dir)"
  [ -d "$stages" ] || die "kwok stage definitions not found at $stages (run e2e/scripts/tools.sh)"
  local key="${BROKER_LABEL%%=*}" value="${BROKER_LABEL#*=}"
  local is_broker="has(self.metadata.labels) && '$key' in self.metadata.labels && self.metadata.labels['$key'] == '$value'"
  {
    cat <<EOF
apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokctlConfiguration
options:
  runtime: binary
  kubeVersion: ${K8S_VERSION:-v1.35.4}
  bindAddress: 127.0.0.1
  kubeAuthorization: true
  kubeAdmission: true
  kubeApiserverBinary: $KUBE_APISERVER
  kubeControllerManagerBinary: $KUBE_CONTROLLER_MANAGER
  kubeSchedulerBinary: $KUBE_SCHEDULER
  kubectlBinary: $KUBECTL
  kwokControllerBinary: $KWOK
  etcdBinary: $ETCD
componentsPatches:
# kube-apiserver's default Service range (10.0.0.0/24) holds 254 ClusterIPs: fewer than the
# client Services of bench/operator.sh's 500 MessageQueues ("failed to allocate a serviceIP:
# range is full"). A /16, like most clusters'.
- name: kube-apiserver
  extraArgs:
  - key: service-cluster-ip-range
    value: 10.96.0.0/16
---
apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokConfiguration
options:
  cidr: 127.1.250.0/24
  nodeIP: 127.0.0.1
  # A KwokConfiguration given here replaces kwokctl's defaulted one: restate the defaults.
  podPlayStageParallelism: 4
  nodePlayStageParallelism: 4
  nodeLeaseParallelism: 4
  podsOnNodeSyncParallelism: 1
  enablePodsOnNodeSyncListPager: true
  enablePodsOnNodeSyncStreamWatch: false
  enableDebuggingHandlers: true
  enableProfilingHandler: false
EOF
    # Upstream kwok stages, read from the kwok module kwokctl was built from.
    echo "---"; cat "$stages/node/fast/node-initialize.yaml"
    echo "---"; cat "$stages/node/heartbeat/node-heartbeat.yaml"
    echo "---"; cat "$stages/pod/fast/pod-complete.yaml"
    echo "---"; cat "$stages/pod/fast/pod-delete.yaml"
    for f in pv-bind pv-delete pvc-provision pvc-delete; do echo "---"; cat "$stages/volume/fast/$f.yaml"; done
    # Upstream pod-ready, restricted to pods that are not brokers.
    echo "---"
    awk -v expr="!($is_broker)" '
      $0 == "  name: pod-ready" { print "  name: pod-ready-non-broker"; next }
      $0 == "    matchExpressions:" { print; print "    - cel:"; print "        expression: >-"; print "          " expr; next }
      { print }' "$stages/pod/fast/pod-ready.yaml"
    # Broker pods: running with an IP, but not Ready; the pod runner sets Ready from /readyz.
    cat <<EOF
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: sluice-broker-pod-running
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - cel:
        expression: >-
          $is_broker
    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
    - key: '.status.phase'
      operator: 'In'
      values: ['Pending']
  next:
    statusTemplate: |
      {{ \$now := Now }}
      conditions:
      - {type: PodScheduled, status: "True", lastTransitionTime: {{ \$now | Quote }}}
      - {type: Initialized, status: "True", lastTransitionTime: {{ \$now | Quote }}}
      - {type: ContainersReady, status: "False", reason: WaitingForBrokerReadyz, lastTransitionTime: {{ \$now | Quote }}}
      - {type: Ready, status: "False", reason: WaitingForBrokerReadyz, lastTransitionTime: {{ \$now | Quote }}}
      containerStatuses:
      {{ range .spec.containers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: false
        started: true
        restartCount: 0
        state:
          running:
            startedAt: {{ \$now | Quote }}
      {{ end }}
      {{ with NodeIPsWith .spec.nodeName }}
      hostIP: {{ index . 0 | Quote }}
      hostIPs:
      {{ range . }}
      - ip: {{ . | Quote }}
      {{ end }}
      {{ end }}
      {{ with PodIPsWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" ) ( or .metadata.name "" ) ( or .metadata.namespace "" ) }}
      podIP: {{ index . 0 | Quote }}
      podIPs:
      {{ range . }}
      - ip: {{ . | Quote }}
      {{ end }}
      {{ end }}
      phase: Running
      startTime: {{ \$now | Quote }}
EOF
  } >"$WORK/kwok.yaml"
}

cluster_running() {
  [ -f "$KUBECONFIG_PATH" ] && "$KUBECTL" --kubeconfig "$KUBECONFIG_PATH" --request-timeout=3s get --raw /readyz >/dev/null 2>&1
}

create_nodes() {
  local i
  for ((i = 0; i < NODES; i++)); do
    cat <<EOF
---
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations:
    node.alpha.kubernetes.io/ttl: "0"
    kwok.x-k8s.io/node: fake
  labels:
    kubernetes.io/hostname: kwok-node-$i
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    kubernetes.io/role: agent
    node-role.kubernetes.io/agent: ""
    type: kwok
    topology.kubernetes.io/zone: zone-$((i % 3))
spec:
  podCIDR: 127.1.$i.0/24
  podCIDRs: [127.1.$i.0/24]
status:
  allocatable: {cpu: "32", memory: 256Gi, pods: "110"}
  capacity: {cpu: "32", memory: 256Gi, pods: "110"}
EOF
  done
  cat <<EOF
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: kwok-volume
  annotations:
    storageclass.kubernetes.io/is-default-class: "true"
provisioner: kwok.x-k8s.io/volume
reclaimPolicy: Delete
volumeBindingMode: Immediate
allowVolumeExpansion: true
EOF
}

start_runner() {
  if [ "${SLUICE_NO_RUNNER:-0}" = 1 ]; then log "pod runner: skipped (SLUICE_NO_RUNNER=1)"; return; fi
  if [ -f "$RUNNER_PID" ] && kill -0 "$(cat "$RUNNER_PID")" 2>/dev/null; then
    log "pod runner: already running (pid $(cat "$RUNNER_PID"))"; return
  fi
  [ -x "$POD_RUNNER" ] || die "pod runner binary $POD_RUNNER missing (cargo build -p sluice-e2e --bin pod-runner)"
  [ -x "$BROKER_BIN" ] || die "broker binary $BROKER_BIN missing (cargo build -p sluice-broker)"
  log "pod runner: starting for pods with $BROKER_LABEL (broker $BROKER_BIN), log $RUNNER_LOG"
  local hosts_args=(--hosts-file "$HOSTS_FILE")
  if [ ! -w "$HOSTS_FILE" ]; then
    log "pod runner: $HOSTS_FILE is not writable: pod DNS names (the brokers' seeds) will not resolve"
    hosts_args=(--no-hosts)
  fi
  KUBECONFIG="$KUBECONFIG_PATH" setsid "$POD_RUNNER" --selector "$BROKER_LABEL" \
    --broker-bin "$BROKER_BIN" --work-dir "$WORK/pods" "${hosts_args[@]}" >"$RUNNER_LOG" 2>&1 </dev/null &
  echo $! >"$RUNNER_PID"
}

stop_runner() {
  [ -f "$RUNNER_PID" ] || return 0
  local pid; pid="$(cat "$RUNNER_PID")"
  if kill -0 "$pid" 2>/dev/null; then
    log "pod runner: stopping (pid $pid, brokers get SIGTERM)"
    kill -TERM "$pid" 2>/dev/null || true
    local i
    for i in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    # The runner's process group holds the brokers it started: nothing of it may survive.
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$RUNNER_PID"
}

# Drops the runner's block from the hosts file (a killed runner cannot), in place: /etc/hosts may
# be a bind mount that cannot be replaced by a rename.
remove_hosts_block() {
  [ -f "$HOSTS_FILE" ] && grep -qxF "$HOSTS_BEGIN" "$HOSTS_FILE" || return 0
  local tmp; tmp="$(mktemp)"
  if awk -v b="$HOSTS_BEGIN" -v e="$HOSTS_END" '$0 == b { skip = 1; next } skip && $0 == e { skip = 0; next } !skip' \
      "$HOSTS_FILE" >"$tmp" && cat "$tmp" >"$HOSTS_FILE"; then
    log "removed the pod DNS block from $HOSTS_FILE"
  else
    log "could not remove the pod DNS block from $HOSTS_FILE"
  fi
  rm -f "$tmp"
}

up() {
  tools_env
  mkdir -p "$WORK"
  local t0; t0=$(date +%s)
  if cluster_running; then
    log "cluster $NAME already running"
  else
    if [ -d "$CLUSTER_DIR" ]; then
      log "removing stale cluster state"; "$KWOKCTL" --name "$NAME" delete cluster >/dev/null 2>&1 || true
    fi
    write_config
    log "starting control plane (kwokctl --runtime binary), config $WORK/kwok.yaml"
    "$KWOKCTL" --name "$NAME" create cluster --config "$WORK/kwok.yaml" \
      --kubeconfig "$KUBECONFIG_PATH" --wait 3m --timeout 5m >"$WORK/kwokctl-create.log" 2>&1 \
      || { tail -30 "$WORK/kwokctl-create.log" >&2; die "kwokctl create cluster failed (log $WORK/kwokctl-create.log)"; }
    log "control plane up after $(( $(date +%s) - t0 ))s; creating $NODES kwok nodes and StorageClass kwok-volume"
  fi
  create_nodes | kubectl_ apply -f - >/dev/null
  local deadline=$(( $(date +%s) + 120 )) ready=0
  while :; do
    ready=$(kubectl_ get nodes --no-headers 2>/dev/null | awk '$2 == "Ready"' | wc -l)
    [ "$ready" -ge "$NODES" ] && break
    [ "$(date +%s)" -lt "$deadline" ] || die "only $ready of $NODES nodes Ready after 120s"
    sleep 1
  done
  log "$ready nodes Ready"
  start_runner
  log "cluster up in $(( $(date +%s) - t0 ))s. Use: export KUBECONFIG=$KUBECONFIG_PATH"
}

down() {
  "$ROOT/e2e/scripts/operator.sh" stop || true
  stop_runner
  remove_hosts_block
  if [ -d "$CLUSTER_DIR" ]; then
    tools_env
    log "deleting cluster $NAME"
    "$KWOKCTL" --name "$NAME" delete cluster >"$WORK/kwokctl-delete.log" 2>&1 || log "kwokctl delete reported an error (see $WORK/kwokctl-delete.log)"
  fi
  # Belt and braces: kwokctl keeps one pid file per component; end any that survived.
  local f pid
  for f in "$CLUSTER_DIR"/pids/*.pid; do
    [ -f "$f" ] || continue
    pid="$(cat "$f")"
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      log "killing leftover $(basename "$f" .pid) (pid $pid)"; kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  rm -rf "$CLUSTER_DIR" "$KUBECONFIG_PATH" "$WORK/pods"
  log "cluster down"
}

status() {
  tools_env
  if [ -f "$RUNNER_PID" ] && kill -0 "$(cat "$RUNNER_PID")" 2>/dev/null; then
    echo "pod runner: running (pid $(cat "$RUNNER_PID"))"
  else
    echo "pod runner: not running"
  fi
  if cluster_running; then
    echo "control plane: running (KUBECONFIG=$KUBECONFIG_PATH)"
    kubectl_ get nodes
  else
    echo "control plane: not running"
  fi
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  env) echo "export KUBECONFIG=$KUBECONFIG_PATH" ;;
  *) echo "usage: $0 up|down|status|env" >&2; exit 2 ;;
esac
