#!/usr/bin/env bash
# Runs the end-to-end suite against the cluster KUBECONFIG names, once the
# cluster exists and the project's images are in it. Shared by the local
# cluster (scripts/test.sh) and kind (e2e/kind/run.sh): same install, same
# tests, same assertions.
set -euo pipefail
cd "$(dirname "$0")/.."

[[ -n ${KUBECONFIG:-} ]] || { echo "error: KUBECONFIG is not set" >&2; exit 1; }
kubectl version >/dev/null || { echo "error: the cluster of $KUBECONFIG does not answer" >&2; exit 1; }

# The suite installs the chart with the pinned Helm (scripts/install-helm.sh
# caches it outside the repository).
PLEXUS_HELM=$(scripts/install-helm.sh)
export PLEXUS_HELM

# An e2e failure is told by its error's context chain (which step, what was
# seen); anyhow's backtraces of the test futures would bury it under frames.
# Panics keep RUST_BACKTRACE.
export RUST_LIB_BACKTRACE=0

# The e2e tests are #[ignore]d in the unit tier; here they are what runs.
cargo test --locked -p plexus-e2e -p plexus-operator -p plexus-webhook -p plexus-proxy -- --ignored --test-threads 2
