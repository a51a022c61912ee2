#!/usr/bin/env bash
# Stop every node of the cluster bench/kafka/start-cluster.sh WORKDIR started, brokers first and
# the controller (node 0) last, each with bench/kafka/stop.sh (SIGTERM, SIGKILL after 30 s).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WORKDIR="${1:?usage: stop-cluster.sh WORKDIR}"
shopt -s nullglob
nodes=("$WORKDIR"/node-*)
for (( i = ${#nodes[@]} - 1; i >= 0; i-- )); do
    "$HERE/stop.sh" "${nodes[$i]}" || true
done
