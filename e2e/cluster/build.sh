# Sourced by e2e/cluster/cluster.sh: installs the Debian packages the local
# cluster needs and builds the Kubernetes server binaries once, from Debian's
# `kubernetes` source package, into a cache outside the repository.

K8S_SOURCE_VERSION="1.20.5+really1.20.2"
K8S_VERSION="1.20.2"
K8S_CACHE="${PLEXUS_CACHE:-/var/cache/plexus}/kubernetes-${K8S_VERSION}"
K8S_BIN="$K8S_CACHE/bin"
K8S_COMPONENTS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)

PACKAGES=(
    etcd-server containerd runc containernetworking-plugins iptables nftables
    iproute2 dnsmasq-base buildah busybox-static openssl gcc libc6-dev tcpdump
    golang-go rsync jq dpkg-dev
    golang-github-modern-go-reflect2-dev golang-github-json-iterator-go-dev
)

install_packages() {
    local missing=()
    for package in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
            missing+=("$package")
    done
    ((${#missing[@]} == 0)) && return 0
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# deb-src entry for bookworm, from the machine's own deb entry (same mirror).
ensure_deb_src() {
    local list=/etc/apt/sources.list.d/plexus-bookworm-src.sources
    [[ -f $list ]] && return 0
    local uri
    uri=$(grep -h -m1 -E '^URIs:.*debian/?$' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}')
    [[ -n $uri ]] || uri=$(awk '$1 == "deb" && $0 ~ /bookworm/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null)
    [[ -n $uri ]] || die "cannot find the machine's Debian mirror in /etc/apt/sources.list(.d)"
    cat >"$list" <<EOF
Types: deb-src
URIs: $uri
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    apt-get update -qq
}

kubernetes_built() {
    local component
    for component in "${K8S_COMPONENTS[@]}"; do
        [[ -x $K8S_BIN/$component ]] || return 1
    done
}

build_kubernetes() {
    kubernetes_built && return 0
    ensure_deb_src
    local work="$K8S_CACHE/build"
    rm -rf "$work" && mkdir -p "$work"
    log "downloading Debian's kubernetes source package ($K8S_SOURCE_VERSION)"
    local version
    version=$(apt-cache showsrc kubernetes | awk '$1 == "Version:" {print $2; exit}')
    [[ $version == "$K8S_SOURCE_VERSION"-* ]] ||
        die "bookworm serves kubernetes source ${version:-none}, expected $K8S_SOURCE_VERSION-*"
    (cd "$work" && apt-get source --download-only -qq "kubernetes=$version") ||
        die "apt-get source kubernetes=$version failed"
    local orig
    orig=$(ls "$work"/kubernetes_*.orig.tar.gz | head -n1)
    [[ -f $orig ]] || die "no .orig.tar.gz in $work"
    mkdir -p "$work/src"
    tar -xzf "$orig" -C "$work/src" --strip-components=1

    # Kubernetes 1.20 vendors reflect2 1.0.1 and json-iterator 1.1.10, which
    # crash (SIGSEGV in mapiterinit) under Go >= 1.18; Debian's newer sources
    # of both fix it.
    local vendor="$work/src/vendor/github.com"
    local module
    for module in modern-go/reflect2 json-iterator/go; do
        rm -rf "${vendor:?}/$module" && mkdir -p "$vendor/$module"
        (cd "/usr/share/gocode/src/github.com/$module" && find . -maxdepth 1 -type f \( -name '*.go' -o -name '*.s' \) \
            ! -name '*_test.go' -exec cp {} "$vendor/$module/" \;)
    done

    log "building ${K8S_COMPONENTS[*]} (about 11 minutes on 2 cores; logs in $LOG_DIR/k8s-build.log)"
    # GOPATH mode, as the tree's own make expects (a plain `go build` fails:
    # go.mod and vendor/ disagree).
    local src="$work/src"
    mkdir -p "$src/.go/src/k8s.io" "$work/home"
    ln -sfn ../../.. "$src/.go/src/k8s.io/kubernetes"
    local what="" component
    for component in "${K8S_COMPONENTS[@]}"; do what+="cmd/$component "; done
    (cd "$src" && GOPATH="$src/.go" CGO_ENABLED=0 HOME="$work/home" \
        make WHAT="${what% }" >"$LOG_DIR/k8s-build.log" 2>&1) ||
        { tail -n 30 "$LOG_DIR/k8s-build.log" >&2; die "the Kubernetes build failed"; }
    mkdir -p "$K8S_BIN"
    for component in "${K8S_COMPONENTS[@]}"; do
        install -m 0755 "$work/src/_output/local/bin/linux/amd64/$component" "$K8S_BIN/$component"
    done
    rm -rf "$work"
    log "Kubernetes $K8S_VERSION binaries cached in $K8S_BIN"
}
