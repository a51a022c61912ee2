#!/usr/bin/env bash
# Installs helm v3 from its Go module into $SLUICE_CACHE/bin/helm-<tag>/helm (idempotent).
# Prints progress on stderr and the helm binary's path as the last line on stdout.
#
#   HELM_VERSION  tag to build (default below)
#   SLUICE_CACHE  cache root (default ~/.cache/sluice)
set -euo pipefail

tag="${HELM_VERSION:-v3.22.0}"
cache="${SLUICE_CACHE:-$HOME/.cache/sluice}"
dir="$cache/bin/helm-$tag"
bin="$dir/helm"

log() { echo "helm.sh: $*" >&2; }

if [[ -x "$bin" ]] && "$bin" version --short 2>/dev/null | grep -q "^$tag"; then
  log "helm $tag already present"
  echo "$bin"
  exit 0
fi

command -v go >/dev/null || { log "go not found on PATH; helm is built from its Go module"; exit 1; }

# helm's Makefile derives the Kubernetes version it assumes (lint deprecations, `helm template`
# capabilities) from the client-go it is built with: major = first field + 1, minor = second field.
log "resolving k8s.io/client-go of helm.sh/helm/v3@$tag"
gomod="$(go mod download -json "helm.sh/helm/v3@$tag" | sed -n 's/^\s*"GoMod": "\(.*\)",\?$/\1/p')"
[[ -f "$gomod" ]] || { log "cannot download go.mod of helm.sh/helm/v3@$tag"; exit 1; }
client_go="$(awk '$1 == "k8s.io/client-go" { print $2; exit }' "$gomod")"
[[ "$client_go" =~ ^v([0-9]+)\.([0-9]+)\. ]] || { log "unexpected client-go version '$client_go'"; exit 1; }
k8s_major=$((BASH_REMATCH[1] + 1))
k8s_minor="${BASH_REMATCH[2]}"
log "client-go $client_go -> default Kubernetes version v$k8s_major.$k8s_minor"

ldflags="-s -w"
ldflags+=" -X helm.sh/helm/v3/internal/version.version=$tag"
ldflags+=" -X helm.sh/helm/v3/internal/version.metadata="
ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in pkg/lint/rules pkg/chartutil; do
  ldflags+=" -X helm.sh/helm/v3/$pkg.k8sVersionMajor=$k8s_major"
  ldflags+=" -X helm.sh/helm/v3/$pkg.k8sVersionMinor=$k8s_minor"
done

log "building helm $tag (several minutes on a cold Go cache)"
mkdir -p "$dir"
tmp="$(mktemp -d "$dir/.build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
CGO_ENABLED=0 GOBIN="$tmp" go install -trimpath -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$tag"
mv -f "$tmp/helm" "$bin"

log "built: $("$bin" version --short)"
echo "$bin"
