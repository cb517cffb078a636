#!/usr/bin/env bash
# The Plexus demo in one command. On a fresh Debian 12 machine, as root:
#
#   ./scripts/demo.sh                        bring up the local cluster, build and
#                                            load the images, then run the demo
#   ./scripts/demo.sh --use-current-context  use the cluster KUBECONFIG (or
#                                            ~/.kube/config) names; the images
#                                            plexus/*:<version> must be on its
#                                            nodes (e2e/kind/run.sh loads them on kind)
#
# The demo installs Plexus with Helm, labels namespace plexus-demo, deploys the
# demo application, applies a canary split and a header match, sends traffic
# and prints each check as true or false. It leaves everything running; take
# it down with `e2e/cluster/cluster.sh down` (local cluster) or
# `kubectl delete namespace plexus-demo; helm uninstall plexus -n plexus-system`.
set -euo pipefail
cd "$(dirname "$0")/.."

use_current=false
demo_args=()
for arg in "$@"; do
    case $arg in
        --use-current-context) use_current=true ;;
        -h | --help) sed -n '2,16p' "$0"; exit 0 ;;
        *) demo_args+=("$arg") ;;
    esac
done

command -v cargo >/dev/null || { echo "error: install a Rust toolchain (1.89 or later)" >&2; exit 1; }

if ! $use_current; then
    cluster=e2e/cluster/cluster.sh
    KUBECONFIG=$("$cluster" up)
    export KUBECONFIG
    "$cluster" images
fi
command -v kubectl >/dev/null || { echo "error: kubectl is not installed" >&2; exit 1; }

PLEXUS_HELM=$(scripts/install-helm.sh)
export PLEXUS_HELM
echo "==> helm: $PLEXUS_HELM"
echo "==> kubeconfig: ${KUBECONFIG:-~/.kube/config}"
cargo run --quiet --locked -p plexus-e2e --bin demo -- "${demo_args[@]}"
