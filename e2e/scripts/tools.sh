#!/usr/bin/env bash
# Builds (once, cached by pinned version) every binary the e2e control plane needs:
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl  (Go module k8s.io/kubernetes)
#   kwok, kwokctl                                                      (Go module sigs.k8s.io/kwok)
#   etcd                                                               (crates.io etcd-bin-vendored)
# Everything lands in $SLUICE_CACHE (default ~/.cache/sluice) under a folder named after the
# version; a second run that finds the binaries prints "cached" and does nothing. Prints one line per step; on failure the
# message names the step that failed.
#
# Usage: e2e/scripts/tools.sh            build what is missing
#        e2e/scripts/tools.sh --print    print KEY=path lines for every binary (after building)
#        e2e/scripts/tools.sh --paths    print KEY=path lines without building (fails if one is missing)
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.35.4}"
KWOK_VERSION="${KWOK_VERSION:-v0.8.0}"
ETCD_VERSION="${ETCD_VERSION:-3.6.15}"

CACHE="${SLUICE_CACHE:-$HOME/.cache/sluice}"
K8S_DIR="$CACHE/kubernetes-$K8S_VERSION"
KWOK_DIR="$CACHE/kwok-$KWOK_VERSION"
ETCD_DIR="$CACHE/etcd-$ETCD_VERSION"
# Parallel Go compile jobs: every core by default (a fixed 2 would idle a bigger CI machine).
GO_JOBS="${GO_JOBS:-$(nproc 2>/dev/null || echo 2)}"

STEP="start"
trap 'rc=$?; if [ $rc -ne 0 ]; then echo "tools.sh: FAILED at step: $STEP (exit $rc)" >&2; fi' EXIT

log() { printf '[tools %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

k8s_bins=(kube-apiserver kube-controller-manager kube-scheduler kubectl)

build_kubernetes() {
  local missing=0 b
  for b in "${k8s_bins[@]}"; do [ -x "$K8S_DIR/bin/$b" ] || missing=1; done
  if [ $missing -eq 0 ]; then log "kubernetes $K8S_VERSION: cached in $K8S_DIR/bin"; return; fi

  local minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
  local staging="v0.${K8S_VERSION#v1.}"
  local mod="$K8S_DIR/wrapper"
  mkdir -p "$mod" "$K8S_DIR/bin"
  local t0; t0=$(date +%s)

  STEP="kubernetes: fetch upstream go.mod of k8s.io/kubernetes@$K8S_VERSION"
  log "$STEP"
  local gomod_path
  gomod_path=$(cd "$mod" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$K8S_VERSION" \
    | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
  [ -f "$gomod_path" ] || { echo "no go.mod for k8s.io/kubernetes@$K8S_VERSION" >&2; return 1; }

  STEP="kubernetes: generate wrapper module (replace every staging module with $staging)"
  log "$STEP"
  local staging_mods godebug goline
  staging_mods=$(sed -n 's#^[[:space:]]*\(k8s\.io/[^[:space:]]*\) => \./staging/src/.*#\1#p' "$gomod_path" | sort -u)
  [ -n "$staging_mods" ] || { echo "no staging replace lines found in $gomod_path" >&2; return 1; }
  godebug=$(grep -E '^godebug ' "$gomod_path" || true)
  goline=$(grep -E '^go [0-9]' "$gomod_path" | head -1)
  {
    echo "module sluice.local/k8s-wrapper"
    echo
    echo "$goline"
    [ -n "$godebug" ] && echo "$godebug"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    local m
    for m in $staging_mods; do echo "replace $m => $m $staging"; done
  } >"$mod/go.mod"
  cat >"$mod/tools.go" <<'EOF'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
EOF
  log "  $(echo "$staging_mods" | wc -l) staging modules replaced; ${godebug:-no godebug line}"

  STEP="kubernetes: resolve dependencies (go mod tidy)"
  log "$STEP"
  (cd "$mod" && go mod tidy -e >/dev/null 2>"$K8S_DIR/tidy.log") || { cat "$K8S_DIR/tidy.log" >&2; return 1; }

  local ld="-s -w"
  local pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld="$ld -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ld="$ld -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done

  STEP="kubernetes: go build ${k8s_bins[*]} (slow: 10-30 min cold on 2 cores)"
  log "$STEP"
  (cd "$mod" && CGO_ENABLED=0 go build -p "$GO_JOBS" -trimpath -ldflags "$ld" -o "$K8S_DIR/bin/" \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler \
    k8s.io/kubernetes/cmd/kubectl)
  log "kubernetes $K8S_VERSION built in $(( $(date +%s) - t0 ))s"
}

build_kwok() {
  if [ -x "$KWOK_DIR/bin/kwok" ] && [ -x "$KWOK_DIR/bin/kwokctl" ]; then
    log "kwok $KWOK_VERSION: cached in $KWOK_DIR/bin"; return
  fi
  local t0; t0=$(date +%s)
  mkdir -p "$KWOK_DIR/bin"
  STEP="kwok: go install sigs.k8s.io/kwok/cmd/{kwok,kwokctl}@$KWOK_VERSION"
  log "$STEP"
  local ld="-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION"
  GOBIN="$KWOK_DIR/bin" CGO_ENABLED=0 go install -p "$GO_JOBS" -trimpath -ldflags "$ld" \
    "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" "sigs.k8s.io/kwok/cmd/kwokctl@$KWOK_VERSION"
  log "kwok $KWOK_VERSION built in $(( $(date +%s) - t0 ))s"
}

build_etcd() {
  if [ -x "$ETCD_DIR/bin/etcd" ]; then log "etcd $ETCD_VERSION: cached in $ETCD_DIR/bin"; return; fi
  local t0; t0=$(date +%s)
  local proj="$ETCD_DIR/extract"
  mkdir -p "$proj/src" "$ETCD_DIR/bin"
  STEP="etcd: extract binary from crate etcd-bin-vendored =$ETCD_VERSION"
  log "$STEP"
  cat >"$proj/Cargo.toml" <<EOF
[package]
name = "sluice-etcd-extract"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
etcd-bin-vendored = "=$ETCD_VERSION"

[workspace]
EOF
  cat >"$proj/src/main.rs" <<'EOF'
fn main() {
    match etcd_bin_vendored::etcd_bin_path() {
        Ok(p) => println!("{}", p.display()),
        Err(e) => {
            eprintln!("etcd_bin_path: {e:?}");
            std::process::exit(1);
        }
    }
}
EOF
  local path
  path=$(cd "$proj" && CARGO_TARGET_DIR="$proj/target" cargo run -q --release 2>"$ETCD_DIR/cargo.log") \
    || { cat "$ETCD_DIR/cargo.log" >&2; return 1; }
  [ -f "$path" ] || { echo "etcd_bin_path() returned $path which does not exist" >&2; return 1; }
  cp "$path" "$ETCD_DIR/bin/etcd.tmp" && chmod +x "$ETCD_DIR/bin/etcd.tmp" && mv "$ETCD_DIR/bin/etcd.tmp" "$ETCD_DIR/bin/etcd"
  "$ETCD_DIR/bin/etcd" --version | head -1 >&2
  log "etcd $ETCD_VERSION ready in $(( $(date +%s) - t0 ))s"
}

print_paths() {
  echo "KUBE_APISERVER=$K8S_DIR/bin/kube-apiserver"
  echo "KUBE_CONTROLLER_MANAGER=$K8S_DIR/bin/kube-controller-manager"
  echo "KUBE_SCHEDULER=$K8S_DIR/bin/kube-scheduler"
  echo "KUBECTL=$K8S_DIR/bin/kubectl"
  echo "KWOK=$KWOK_DIR/bin/kwok"
  echo "KWOKCTL=$KWOK_DIR/bin/kwokctl"
  echo "ETCD=$ETCD_DIR/bin/etcd"
}

if [ "${1:-}" = "--paths" ]; then
  # Print the paths without building; fail if any binary is missing.
  STEP="check binaries (run e2e/scripts/tools.sh to build them)"
  print_paths | while IFS='=' read -r _ p; do [ -x "$p" ] || { echo "missing $p" >&2; exit 1; }; done
  print_paths
  exit 0
fi

T_ALL=$(date +%s)
build_etcd
build_kwok
build_kubernetes
STEP="done"
log "all tools ready ($(( $(date +%s) - T_ALL ))s this run)"
if [ "${1:-}" = "--print" ]; then print_paths; fi
