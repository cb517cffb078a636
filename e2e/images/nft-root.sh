#!/usr/bin/env bash
# Copies Debian's nft binary and the shared libraries it loads into DEST,
# keeping their paths: the root filesystem the proxy image's init mode needs.
#   e2e/images/nft-root.sh DEST
set -euo pipefail
dest=${1:?usage: nft-root.sh DEST}
nft=$(command -v nft || echo /usr/sbin/nft)
[[ -x $nft ]] || { echo "error: nft is not installed (Debian package nftables)" >&2; exit 1; }
mkdir -p "$dest/usr/sbin"
cp "$nft" "$dest/usr/sbin/nft"
# Each library ldd names (with its path), and the dynamic loader.
ldd "$nft" | awk '/=> \// {print $3} /^[ \t]*\// {print $1}' | while read -r lib; do
    mkdir -p "$dest$(dirname "$lib")"
    cp -L "$lib" "$dest$lib"
done
