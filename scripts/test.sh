#!/usr/bin/env bash
# Runs every test of the project: formatting, lints (warnings are errors) and
# the workspace's tests, which include the CRD drift test and the conversion
# of the Istio/Linkerd seed manifests. This is the command the README gives
# and the one CI runs.
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

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --locked 2>&1 | tee "$log"

# One closing line with the totals of every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^failed/) f += $(i-1); if ($i ~ /^ignored/) s += $(i-1) } }
     END { printf "\ntests: %d passed, %d failed, %d skipped\n", p, f, s; if (p == 0) exit 1 }' "$log"
