#!/usr/bin/env bash
# cert-manager's own Certificate CustomResourceDefinition, for the e2e scenario that declares
# `tls.issuerRef`: the API server then validates the operator's Certificate against cert-manager's
# real schema. The CRD comes from the cert-manager Go module (the Go module proxy serves it; the
# controller's own module, cmd/controller, is not served, so the controller itself cannot run
# here). The chart's template markers are stripped; the result is cached by version.
#
# Usage: e2e/scripts/cert-manager-crds.sh     prints the path of the plain CRD file
# Env:   CERT_MANAGER_VERSION (v1.16.2), SLUICE_CACHE (~/.cache/sluice)
set -euo pipefail

VERSION="${CERT_MANAGER_VERSION:-v1.16.2}"
CACHE="${SLUICE_CACHE:-$HOME/.cache/sluice}/cert-manager-$VERSION"
OUT="$CACHE/crd-certificates.yaml"
if [[ -s "$OUT" ]]; then
  echo "$OUT"
  exit 0
fi
mkdir -p "$CACHE"
command -v go >/dev/null || { echo "cert-manager-crds.sh: needs the go command (Go module proxy)" >&2; exit 1; }
# outside any module, so no go.mod is needed or touched
dir="$(cd "$CACHE" && GOFLAGS=-mod=mod go mod download -json "github.com/cert-manager/cert-manager@$VERSION" \
  | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d.get("Dir") or sys.exit("go mod download: " + d.get("Error", "no Dir")))')"
src="$dir/deploy/crds/crd-certificates.yaml"
[[ -f "$src" ]] || { echo "cert-manager-crds.sh: $src is missing" >&2; exit 1; }
# The chart wraps the CRD in `# START ... {{- if ...}}` / `# END ... {{- end}}` comment lines
# and templated label values; YAML-wise those are comments and strings: drop the labels.
python3 - "$src" "$OUT.tmp" <<'PY'
import sys
src, out = sys.argv[1], sys.argv[2]
lines = open(src).read().splitlines()
kept, skip_labels = [], False
for line in lines:
    if line.strip().startswith("#") and "{{" in line:
        continue
    if line.startswith("  labels:"):
        skip_labels = True
        continue
    if skip_labels:
        if line.startswith("    "):
            continue
        skip_labels = False
    if "{{" in line:
        sys.exit("unexpected template in %s: %s" % (src, line))
    kept.append(line)
open(out, "w").write("\n".join(kept) + "\n")
PY
mv "$OUT.tmp" "$OUT"
echo "$OUT"
