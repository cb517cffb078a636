# Sourced by e2e/cluster/cluster.sh: the bridge, routes, guard and sysctls.
#
# Everything stays on this machine: pods live on 198.18.0.0/24 on the bridge,
# Services on 198.19.0.0/20 (room for the 1,000-Service scale check) are
# routed to the bridge, and a blackhole route for 198.18.0.0/15 lies under
# both, so a packet to any address of these ranges that nothing answers dies
# here. A forward guard drops whatever a pod sends towards any other interface.

BRIDGE=plexus0
NODE_IP=198.18.0.1
POD_CIDR=198.18.0.0/24
SERVICE_CIDR=198.19.0.0/20
KUBERNETES_SERVICE_IP=198.19.0.1
GUARD_RANGE=198.18.0.0/15
NFT_GUARD_TABLE=plexus_guard
SYSCTLS=(net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables net.ipv4.conf.all.route_localnet)

network_up() {
    # Blackhole first, so that nothing of these ranges can leave even while
    # the rest is being set up.
    ip route replace blackhole "$GUARD_RANGE"
    if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
        ip link add "$BRIDGE" type bridge
    fi
    ip addr replace "$NODE_IP/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
    ip route replace "$SERVICE_CIDR" dev "$BRIDGE"

    nft -f - <<EOF
table inet $NFT_GUARD_TABLE {
    chain forward {
        type filter hook forward priority -300; policy accept;
        iifname "$BRIDGE" oifname != "$BRIDGE" drop
    }
}
EOF

    # Remember the sysctls we change, to put them back on down.
    if [[ ! -f $STATE_DIR/sysctls.saved ]]; then
        local name
        for name in "${SYSCTLS[@]}"; do
            echo "$name=$(sysctl -n "$name")"
        done >"$STATE_DIR/sysctls.saved"
    fi
    # Pods reach ClusterIPs through the host (DNAT, then back onto the bridge).
    sysctl -q -w net.ipv4.ip_forward=1
    # Replies between pods on the bridge must pass conntrack to be un-DNATed.
    sysctl -q -w net.bridge.bridge-nf-call-iptables=1
}

network_down() {
    nft delete table inet "$NFT_GUARD_TABLE" 2>/dev/null || true
    ip link del "$BRIDGE" 2>/dev/null || true
    ip route del "$SERVICE_CIDR" 2>/dev/null || true
    ip route del blackhole "$GUARD_RANGE" 2>/dev/null || true
    if [[ -f $STATE_DIR/sysctls.saved ]]; then
        local line
        while IFS= read -r line; do
            sysctl -q -w "$line" || log "could not restore $line"
        done <"$STATE_DIR/sysctls.saved"
        rm -f "$STATE_DIR/sysctls.saved"
    fi
}

# The chains kube-proxy and the kubelet create; `kube-proxy --cleanup`
# removes the former, not the latter.
remove_kube_chains() {
    local table chain
    for table in filter nat mangle; do
        # Rules in built-in chains that jump to our chains go first.
        local tool rule
        for tool in iptables ip6tables; do
            while IFS= read -r rule; do
                # shellcheck disable=SC2086
                "$tool" -t "$table" ${rule/-A/-D} 2>/dev/null || true
            done < <("$tool" -t "$table" -S 2>/dev/null | awk '$1 == "-A" && $2 !~ /^(KUBE|CNI)-/ && / -j (KUBE|CNI)-/')
            for chain in $("$tool" -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^(KUBE|CNI)-/ {print $2}'); do
                "$tool" -t "$table" -F "$chain" 2>/dev/null || true
            done
            for chain in $("$tool" -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^(KUBE|CNI)-/ {print $2}'); do
                "$tool" -t "$table" -X "$chain" 2>/dev/null || true
            done
        done
    done
}
