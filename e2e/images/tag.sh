#!/usr/bin/env bash
# Prints the tag of every project image: the workspace version.
set -euo pipefail
awk -F'"' '/^\[workspace.package\]/ {section = 1} section && /^version *=/ {print $2; exit}' \
    "$(dirname "$0")/../../Cargo.toml"
