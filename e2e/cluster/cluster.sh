#!/usr/bin/env bash
# A real single-node Kubernetes 1.20 cluster on this machine, built only from
# Debian 12's packages: no Docker, no registry, no internet.
#
#   e2e/cluster/cluster.sh up       start (or reuse) the cluster; prints the kubeconfig path
#   e2e/cluster/cluster.sh down     stop it and remove everything it created
#   e2e/cluster/cluster.sh status   what runs, the kubeconfig, the logs
#   e2e/cluster/cluster.sh check-clean   fail if anything of ours is left
#   e2e/cluster/cluster.sh images   build the project's images and load them into the cluster
#   e2e/cluster/cluster.sh build    only install packages and build the binaries
#
# Needs Debian 12 (bookworm) and root. Elsewhere, use the kind path (e2e/kind/).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STATE_DIR="${PLEXUS_CLUSTER_STATE:-/var/lib/plexus-cluster}"
RUN_DIR=/run/plexus-cluster
LOG_DIR="${PLEXUS_CLUSTER_LOGS:-/var/log/plexus-cluster}"
KUBECONFIG_PATH="$STATE_DIR/admin.kubeconfig"

log() { printf '[cluster] %s\n' "$*" >&2; }
die() { printf '[cluster] error: %s\n' "$*" >&2; exit 1; }

require_platform() {
    [[ $(id -u) == 0 ]] || die "must run as root (it starts kubelet, containerd and sets up a bridge); without root, use the kind path: e2e/kind/run.sh"
    local id version
    id=$(. /etc/os-release 2>/dev/null && echo "${ID:-}")
    version=$(. /etc/os-release 2>/dev/null && echo "${VERSION_ID:-}")
    [[ $id == debian && $version == 12 ]] ||
        die "targets Debian 12 (bookworm); this is ${id:-unknown} ${version:-}. Use the kind path: e2e/kind/run.sh"
}

# shellcheck source=e2e/cluster/build.sh
source "$HERE/build.sh"
# shellcheck source=e2e/cluster/network.sh
source "$HERE/network.sh"
# shellcheck source=e2e/cluster/pki.sh
source "$HERE/pki.sh"
# shellcheck source=e2e/cluster/components.sh
source "$HERE/components.sh"
# shellcheck source=e2e/cluster/images.sh
source "$HERE/images.sh"

DAEMONS=(etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy dnsmasq dns-sync)
# Stopped in this order: nothing left to recreate pods, then the node, then
# the control plane.
STOP_ORDER=(kube-controller-manager kube-scheduler dns-sync dnsmasq kube-proxy kubelet containerd kube-apiserver etcd)
# Directories the kubelet creates whatever its --root-dir says.
KUBELET_DIRS=(/var/log/pods /var/log/containers /var/lib/kubelet)
# What the machine had before `up`, so that `down` removes only what we added.
BASELINE="$LOG_DIR/machine-baseline"

record_baseline() {
    {
        ip netns list 2>/dev/null | awk '{print "netns " $1}'
        local dir
        for dir in "${KUBELET_DIRS[@]}"; do [[ -e $dir ]] && echo "dir $dir"; done
        nft list tables 2>/dev/null | awk '{print "nft " $2 " " $3}'
        if mountpoint -q "$NETNS_DIR"; then echo "mount $NETNS_DIR"; fi
    } >"$BASELINE"
}

# The pods' network namespaces are files under /run/netns, each a mount. The
# first `ip netns add` on the machine (the proxy's namespace tests run one)
# turns /run/netns into a mount point by bind-mounting it onto itself,
# recursively: every pod namespace mounted at that moment is then mounted
# twice, containerd cannot remove it (EBUSY) and its pod stays Terminating.
# Making /run/netns a shared mount point before any pod exists, as ip netns
# would, leaves it nothing to do.
NETNS_DIR=/run/netns
netns_dir_up() {
    mkdir -p "$NETNS_DIR"
    mountpoint -q "$NETNS_DIR" || mount --bind "$NETNS_DIR" "$NETNS_DIR"
    mount --make-shared "$NETNS_DIR"
}

delete_pod_netns() {
    local name
    for name in $(ip netns list 2>/dev/null | awk '$1 ~ /^cni-/ {print $1}'); do
        in_baseline "netns $name" || ip netns delete "$name" 2>/dev/null || true
    done
}

netns_dir_down() {
    in_baseline "mount $NETNS_DIR" || ! mountpoint -q "$NETNS_DIR" || umount "$NETNS_DIR" ||
        log "could not unmount $NETNS_DIR"
}

in_baseline() { grep -qx "$*" "$BASELINE" 2>/dev/null; }

# iptables-nft creates the `ip filter/nat/mangle` tables on first use.
new_nft_tables() {
    [[ -f $BASELINE ]] || return 0
    nft list tables 2>/dev/null | while read -r _ family name; do
        in_baseline "nft $family $name" || echo "$family $name"
    done
}

nft_table_is_empty() {
    ! nft list table "$1" "$2" 2>/dev/null | awk '!/^[[:space:]]*(table|chain|type|\}|$)/ {found = 1} END {exit !found}'
}

cluster_up() {
    local daemon
    for daemon in "${DAEMONS[@]}"; do
        daemon_pid "$daemon" >/dev/null || return 1
    done
    node_ready
}

anything_running() {
    local daemon
    for daemon in "${DAEMONS[@]}"; do
        daemon_pid "$daemon" >/dev/null && return 0
    done
    ip link show "$BRIDGE" >/dev/null 2>&1
}

up() {
    require_platform
    mkdir -p "$STATE_DIR" "$RUN_DIR" "$LOG_DIR"
    if cluster_up; then
        log "the cluster is already up"
        echo "$KUBECONFIG_PATH"
        return 0
    fi
    if anything_running; then
        log "a previous cluster is partly up; taking it down first"
        down
        mkdir -p "$STATE_DIR" "$RUN_DIR" "$LOG_DIR"
    fi
    install_packages
    build_kubernetes
    build_pause_image

    local started=$SECONDS
    record_baseline
    netns_dir_up
    network_up
    make_pki
    write_configs
    start_etcd
    start_control_plane
    start_node
    start_dns
    wait_until kubelet 120 node_ready
    wait_until kube-controller-manager 60 kubectl_admin get serviceaccount default --namespace default
    log "node $NODE_NAME is Ready, $((SECONDS - started))s after the start of the components"
    log "kubeconfig: $KUBECONFIG_PATH   logs: $LOG_DIR"
    echo "$KUBECONFIG_PATH"
}

delete_pods() {
    daemon_pid kube-apiserver >/dev/null || return 0
    stop_daemon kube-controller-manager
    stop_daemon kube-scheduler
    kubectl_admin delete pods --all --all-namespaces --grace-period=1 --wait=false >/dev/null 2>&1 || true
    # The kubelet stops the containers and runs CNI DEL, which removes the
    # pods' network namespaces and veths.
    local deadline=$((SECONDS + 90))
    while ((SECONDS < deadline)); do
        local pods tasks=""
        pods=$(kubectl_admin get pods --all-namespaces --no-headers 2>/dev/null | wc -l)
        daemon_pid containerd >/dev/null && tasks=$(ctr_k8s tasks list --quiet 2>/dev/null)
        [[ $pods == 0 && -z $tasks ]] && return 0
        sleep 1
    done
    log "pods still present after 90s; removing what is left by force"
}

remove_containers() {
    daemon_pid containerd >/dev/null || return 0
    local id
    for id in $(ctr_k8s tasks list --quiet 2>/dev/null); do
        ctr_k8s tasks kill --signal SIGKILL "$id" >/dev/null 2>&1 || true
        ctr_k8s tasks delete --force "$id" >/dev/null 2>&1 || true
    done
    for id in $(ctr_k8s containers list --quiet 2>/dev/null); do
        ctr_k8s containers delete "$id" >/dev/null 2>&1 || true
    done
}

unmount_ours() {
    local mount
    # Deepest first.
    for mount in $(awk -v a="$STATE_DIR" -v b="$RUN_DIR" \
        'index($5, a) == 1 || index($5, b) == 1 {print $5}' /proc/self/mountinfo | sort -r); do
        umount -l "$mount" 2>/dev/null || log "could not unmount $mount"
    done
}

down() {
    require_platform
    local started=$SECONDS
    delete_pods
    log "pods deleted ($((SECONDS - started))s)"
    remove_containers
    local daemon
    for daemon in "${STOP_ORDER[@]}"; do
        stop_daemon "$daemon"
    done
    log "components stopped ($((SECONDS - started))s)"
    [[ -x $K8S_BIN/kube-proxy ]] && "$K8S_BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true
    remove_kube_chains
    unmount_ours
    # Twice: unmounting a /run/netns that `ip netns add` bind-mounted over
    # the old one uncovers whatever pod namespaces were mounted under it.
    delete_pod_netns
    netns_dir_down
    delete_pod_netns
    network_down
    local family table
    while read -r family table; do
        nft_table_is_empty "$family" "$table" && nft delete table "$family" "$table"
    done < <(new_nft_tables)
    local dir
    if [[ -f $BASELINE ]]; then
        for dir in "${KUBELET_DIRS[@]}"; do
            [[ -e $dir ]] && ! in_baseline "dir $dir" && rm -rf "$dir"
        done
    fi
    rm -rf "$RUN_DIR" "$STATE_DIR"
    log "the cluster is down ($((SECONDS - started))s); logs stay in $LOG_DIR"
}

# Fails when anything of ours is left: processes, bridge, routes, network
# namespaces, mounts, iptables chains, the nft guard.
check_clean() {
    local problems=() pid cmdline
    for pid in /proc/[0-9]*; do
        pid=${pid#/proc/}
        [[ $pid == "$$" || $pid == "$PPID" ]] && continue
        cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || continue
        # Our daemons name our directories; containers live in kubepods cgroups.
        if [[ $cmdline == *"$STATE_DIR"* || $cmdline == *"$RUN_DIR"* || $cmdline == *"$K8S_BIN"* ]] ||
            grep -qs kubepods "/proc/$pid/cgroup"; then
            problems+=("process $pid: $cmdline")
        fi
    done
    ip link show "$BRIDGE" >/dev/null 2>&1 && problems+=("bridge $BRIDGE")
    local route
    while IFS= read -r route; do
        [[ -n $route ]] && problems+=("route: $route")
    done < <(ip route show | grep -E '198\.1[89]\.' || true)
    local netns
    while IFS= read -r netns; do
        [[ -n $netns ]] && problems+=("network namespace $netns")
    done < <(ip netns list 2>/dev/null | awk '$1 ~ /^cni-/ {print $1}')
    local mount
    while IFS= read -r mount; do
        [[ -n $mount ]] && problems+=("mount $mount")
    done < <(awk -v a="$STATE_DIR" -v b="$RUN_DIR" 'index($5, a) == 1 || index($5, b) == 1 {print $5}' /proc/self/mountinfo)
    if [[ -f $BASELINE ]] && mountpoint -q "$NETNS_DIR" && ! in_baseline "mount $NETNS_DIR"; then
        problems+=("mount $NETNS_DIR")
    fi
    local tool chain
    for tool in iptables ip6tables; do
        while IFS= read -r chain; do
            [[ -n $chain ]] && problems+=("$tool chain $chain")
        done < <("$tool-save" 2>/dev/null | awk '/^:(KUBE|CNI)-/ {print substr($1, 2)}')
    done
    nft list table inet "$NFT_GUARD_TABLE" >/dev/null 2>&1 && problems+=("nft table inet $NFT_GUARD_TABLE")
    local table
    while IFS= read -r table; do
        [[ -n $table ]] && problems+=("nft table $table")
    done < <(new_nft_tables)
    if [[ -f $BASELINE ]]; then
        local dir
        for dir in "${KUBELET_DIRS[@]}"; do
            [[ -e $dir ]] && ! in_baseline "dir $dir" && problems+=("directory $dir")
        done
    fi
    [[ -e $STATE_DIR ]] && problems+=("directory $STATE_DIR")
    [[ -e $RUN_DIR ]] && problems+=("directory $RUN_DIR")
    if ((${#problems[@]})); then
        log "left behind:"
        printf '  %s\n' "${problems[@]}" >&2
        return 1
    fi
    log "nothing of the cluster is left on this machine"
}

status() {
    local daemon pid
    for daemon in "${DAEMONS[@]}"; do
        if pid=$(daemon_pid "$daemon"); then
            printf '%-24s running (pid %s)\n' "$daemon" "$pid"
        else
            printf '%-24s stopped\n' "$daemon"
        fi
    done
    if node_ready; then echo "node $NODE_NAME: Ready"; else echo "node $NODE_NAME: not ready"; fi
    echo "kubeconfig: $KUBECONFIG_PATH"
    echo "logs: $LOG_DIR"
    echo "binaries: $K8S_BIN"
}

main() {
    local command="${1:-}"
    case "$command" in
        up) up ;;
        down)
            down
            check_clean
            ;;
        status) status ;;
        check-clean) check_clean ;;
        images)
            require_platform
            cluster_up || die "the cluster is not up: run '$0 up' first"
            build_project_images
            load_project_images
            ;;
        build)
            require_platform
            mkdir -p "$LOG_DIR"
            install_packages
            build_kubernetes
            ;;
        dns-sync) dns_sync_loop ;;
        *)
            sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2
            exit 2
            ;;
    esac
}

main "$@"
