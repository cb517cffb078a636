#!/usr/bin/env bash
# The e2e suite on kind, for machines with Docker: creates the cluster (or
# reuses it), builds the project's images with Docker, loads them with
# `kind load`, then runs exactly what the local cluster runs (e2e/run-tests.sh).
#   e2e/kind/run.sh          create/reuse, build, load, test
#   e2e/kind/run.sh images   create/reuse, build, load (for the demo:
#                            scripts/demo.sh --use-current-context)
#   e2e/kind/run.sh delete   delete the kind cluster
set -euo pipefail
cd "$(dirname "$0")/../.."

CLUSTER=plexus
command=${1:-test}
case $command in
    test | images | delete) ;;
    *) echo "usage: $0 [test|images|delete]" >&2; exit 2 ;;
esac
for tool in kind docker kubectl cargo; do
    command -v "$tool" >/dev/null || { echo "error: $tool is not installed" >&2; exit 1; }
done

if [[ $command == delete ]]; then
    exec kind delete cluster --name "$CLUSTER"
fi

# `kind create cluster` also makes it kubectl's current context.
kind get clusters | grep -qx "$CLUSTER" || kind create cluster --config e2e/kind/config.yaml --wait 120s

tag=$(e2e/images/tag.sh)
for image in test-server toolbox proxy operator webhook; do
    docker build -f e2e/images/Dockerfile --target "$image" -t "plexus/$image:$tag" .
    kind load docker-image --name "$CLUSTER" "plexus/$image:$tag"
done
[[ $command == images ]] && exit 0

kubeconfig=$(mktemp)
trap 'rm -f "$kubeconfig"' EXIT
kind get kubeconfig --name "$CLUSTER" >"$kubeconfig"
# The webhook's cluster test runs the webhook on this machine: the API server
# (in the kind node's container) reaches it at the kind network's gateway.
PLEXUS_NODE_IP=$(docker network inspect kind -f '{{(index .IPAM.Config 0).Gateway}}')
export PLEXUS_NODE_IP
KUBECONFIG="$kubeconfig" e2e/run-tests.sh
