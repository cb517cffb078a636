#!/usr/bin/env bash
# Runs every test of the project, fast tiers first:
#   1. formatting, lints (warnings are errors), the workspace's unit and
#      integration tests (CRD drift, schemas, conversion of the seed manifests),
#      and each fuzz target for 10 s when a nightly toolchain is present
#      (scripts/fuzz.sh --brief; scripts/fuzz.sh alone runs them for long);
#   2. the end-to-end suite on a local Kubernetes cluster built from Debian's
#      packages (e2e/cluster/cluster.sh): up (or reuse), load the images, run
#      e2e/run-tests.sh, down, and check that nothing is left behind.
# Tier 2 needs Debian 12 and root; elsewhere it is skipped with a message
# (run the same suite on kind with e2e/kind/run.sh). This is the command the
# README gives and the one CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

need() {
    if ! "$@" >/dev/null 2>&1; then
        echo "error: '$*' failed: install a Rust toolchain (1.89 or later) with the rustfmt and clippy components" >&2
        exit 1
    fi
}
need cargo --version
need cargo fmt --version
need cargo clippy --version

step() { printf '\n==> %s\n' "$*"; }
log=$(mktemp)
trap 'rm -f "$log"' EXIT

# One closing line with the totals of every test binary that ran.
totals() {
    awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^failed/) f += $(i-1); if ($i ~ /^ignored/) s += $(i-1) } }
         END { printf "\ntests: %d passed, %d failed, %d skipped\n", p, f, s; if (p == 0) exit 1 }' "$log"
}

step "cargo fmt --check"
cargo fmt --all --check
cargo fmt --all --check --manifest-path fuzz/Cargo.toml

step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test (unit and integration; e2e tests are skipped here)"
cargo test --workspace --locked 2>&1 | tee "$log"

step "fuzz targets, 10 s each (scripts/fuzz.sh --brief)"
if cargo +nightly --version >/dev/null 2>&1; then
    scripts/fuzz.sh --brief
else
    echo "skipped: no nightly toolchain (rustup toolchain install nightly); scripts/fuzz.sh runs the fuzz targets"
fi

step "end-to-end tests on the local cluster"
if [[ $(id -u) != 0 ]] || ! grep -qs '^VERSION_ID="12"' /etc/os-release || ! grep -qs '^ID=debian' /etc/os-release; then
    echo "skipped: the local cluster needs Debian 12 and root; run the e2e suite on kind with e2e/kind/run.sh"
    totals
    exit 0
fi
cluster=e2e/cluster/cluster.sh
KUBECONFIG=$("$cluster" up)
export KUBECONFIG
"$cluster" images
status=0
e2e/run-tests.sh 2>&1 | tee -a "$log" || status=$?
"$cluster" down || status=1
totals
exit "$status"
