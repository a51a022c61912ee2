#!/usr/bin/env bash
# Chart checks: helm lint, helm template with default and non-default values, assertions on the
# rendered security context and RBAC (charts/check_rendered.py), values that must be refused, the
# chart's CRD equal to crds/, and examples/ valid against the CRD schema. Exits non-zero on failure.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
chart="$root/charts/sluice"
helm="${HELM:-$("$root/scripts/helm.sh" | tail -n 1)}"
check="$root/charts/check_rendered.py"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
ns=sluice-system

step() { echo "== charts/test.sh: $*"; }

step "helm lint (default values, then non-default values)"
"$helm" lint --strict "$chart"
"$helm" lint --strict "$chart" --namespace "$ns" \
  --set 'watchNamespaces={team-a,team-b}' --set metrics.serviceMonitor.enabled=true \
  --set leaderElection.enabled=false --set logFormat=json

step "helm template: default values"
"$helm" template sluice "$chart" --namespace "$ns" --include-crds >"$work/default.yaml"
python3 "$check" default "$work/default.yaml" "$ns"

step "helm template: watched namespaces, ServiceMonitor, no leader election, json logs"
"$helm" template prod "$chart" --namespace "$ns" \
  --set 'watchNamespaces={team-a,team-b}' --set metrics.serviceMonitor.enabled=true \
  --set leaderElection.enabled=false --set logFormat=json --set logLevel=debug \
  --set replicas=1 --set brokerImage.repository=registry.example/sluice-broker \
  --set brokerImage.defaultVersion=0.2.0 --set clusterDomain=corp.example \
  >"$work/custom.yaml"
python3 "$check" custom "$work/custom.yaml" "$ns"

step "the operator binary accepts the rendered arguments"
operator_bin="${SLUICE_OPERATOR_BIN:-$root/target/debug/sluice-operator}"
if [[ -x "$operator_bin" ]]; then
  for f in default custom; do
    # the rendered args, with the HTTP address moved to a free loopback port
    mapfile -t args < <(python3 "$check" args "$work/$f.yaml" | sed 's/=0\.0\.0\.0:[0-9]*$/=127.0.0.1:0/')
    # No cluster is reachable, so the operator must fail *after* parsing: exit 1, not clap's 2.
    rc=0
    (cd "$work" && env -u KUBERNETES_SERVICE_HOST KUBECONFIG=/nonexistent POD_NAMESPACE="$ns" POD_NAME=chart-test \
      timeout 20 "$operator_bin" "${args[@]}") >"$work/op.log" 2>&1 || rc=$?
    if [[ $rc -ne 1 ]] || ! grep -q "Kubernetes API" "$work/op.log"; then
      echo "FAIL: sluice-operator ${args[*]} exited $rc:" >&2
      cat "$work/op.log" >&2
      exit 1
    fi
    echo "$f: sluice-operator accepts: ${args[*]}"
  done
else
  echo "skipped: no operator binary at $operator_bin (set SLUICE_OPERATOR_BIN or cargo build -p sluice-operator)"
fi

step "helm template: values that must be refused"
refuse() {
  if "$helm" template bad "$chart" "$@" >/dev/null 2>"$work/err"; then
    echo "FAIL: helm template accepted: $*" >&2
    exit 1
  fi
  echo "refused as expected ($*): $(grep -m1 -iE 'error|fail' "$work/err" | cut -c1-160)"
}
refuse --set logFormat=xml
refuse --set replicas=-1
refuse --set image.pullPolicy=Sometimes
refuse --set 'watchNamespaces={Not_A_Namespace}'
refuse --set metrics.serviceMonitor.enabled=true --set metrics.service.enabled=false
refuse --set serviceAccount.create=false
refuse --set unknownKey=1

step "chart CRD equals crds/"
for f in "$root"/crds/*.yaml; do
  cmp "$f" "$chart/crds/$(basename "$f")" || {
    echo "FAIL: $chart/crds/$(basename "$f") differs from $f; copy it (cp crds/*.yaml charts/sluice/crds/)" >&2
    exit 1
  }
done
ls "$root"/crds/*.yaml >/dev/null

step "examples/ valid against the CRD schema"
python3 "$check" examples "$chart/crds" "$root"/examples/*.yaml

step "all chart checks passed"
