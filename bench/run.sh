#!/usr/bin/env bash
# Runs plexus-bench (bench/README.md): installs nginx from Debian's packages
# when it is missing, builds the proxy and the benchmark (release), runs them.
# Arguments are passed to plexus-bench.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! [ -x /usr/sbin/nginx ]; then
    echo "installing nginx (Debian package) for the reference pair" >&2
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    # Only the binary is wanted: no service started by the package.
    created=""
    if ! [ -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
        $sudo chmod +x /usr/sbin/policy-rc.d
        created=1
    fi
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends nginx >/dev/null
    [ -z "$created" ] || $sudo rm -f /usr/sbin/policy-rc.d
fi

cargo build --release --locked -p plexus-proxy -p plexus-bench
exec target/release/plexus-bench --proxy target/release/plexus-proxy --nginx /usr/sbin/nginx "$@"
