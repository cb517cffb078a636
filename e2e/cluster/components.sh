# Sourced by e2e/cluster/cluster.sh: configuration and start of every
# component. Daemons are started with a PID file each and stopped by it.

NODE_NAME=plexus-node
CONTAINERD_SOCK="$RUN_DIR/containerd/containerd.sock"
ETCD_PORT=12379
PAUSE_IMAGE=localhost/plexus/pause:1
DNS_HOSTS="$STATE_DIR/dns/hosts"

kubectl_admin() { kubectl --kubeconfig "$KUBECONFIG_PATH" "$@"; }
ctr_k8s() { ctr --address "$CONTAINERD_SOCK" --namespace k8s.io "$@"; }

start_daemon() {
    local name=$1
    shift
    setsid "$@" >>"$LOG_DIR/$name.log" 2>&1 </dev/null &
    echo $! >"$RUN_DIR/$name.pid"
}

daemon_pid() {
    local file="$RUN_DIR/$1.pid" pid
    [[ -f $file ]] || return 1
    pid=$(<"$file")
    [[ -d /proc/$pid ]] || return 1
    echo "$pid"
}

# stop_daemon NAME: TERM, then KILL after 20 s; only the PID we recorded.
stop_daemon() {
    local name=$1 pid
    if pid=$(daemon_pid "$name"); then
        kill -TERM "$pid" 2>/dev/null || true
        local i
        for ((i = 0; i < 40; i++)); do
            [[ -d /proc/$pid ]] || break
            sleep 0.5
        done
        [[ -d /proc/$pid ]] && kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$RUN_DIR/$name.pid"
}

# fail NAME MESSAGE: the component's last log lines, then exit.
fail() {
    local name=$1
    shift
    printf '[cluster] error: %s\n[cluster] last lines of %s:\n' "$*" "$LOG_DIR/$name.log" >&2
    tail -n 25 "$LOG_DIR/$name.log" >&2 2>/dev/null || true
    exit 1
}

# wait_until NAME SECONDS COMMAND...: polls COMMAND; fails with NAME's log.
wait_until() {
    local name=$1 seconds=$2
    shift 2
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        daemon_pid "$name" >/dev/null || fail "$name" "$name exited"
        ((SECONDS < deadline)) || fail "$name" "$name not ready after ${seconds}s"
        sleep 0.5
    done
}

write_configs() {
    mkdir -p "$STATE_DIR/cni/net.d" "$STATE_DIR/dns" "$RUN_DIR/containerd"
    # Pods resolve through the cluster DNS only, never the machine's resolver.
    echo "nameserver $NODE_IP" >"$STATE_DIR/resolv.conf"

    cat >"$STATE_DIR/containerd.toml" <<EOF
version = 2
root = "$STATE_DIR/containerd"
state = "$RUN_DIR/containerd/state"
[grpc]
  address = "$CONTAINERD_SOCK"
[plugins."io.containerd.internal.v1.opt"]
  path = "$STATE_DIR/containerd-opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  stream_server_address = "127.0.0.1"
  # The sandbox lacks CAP_SYS_RESOURCE; without this no sandbox starts.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$STATE_DIR/cni/net.d"
EOF

    cat >"$STATE_DIR/cni/net.d/10-plexus.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "plexus",
  "plugins": [{
    "type": "bridge",
    "bridge": "$BRIDGE",
    "isGateway": true,
    "ipMasq": false,
    "hairpinMode": true,
    "ipam": {
      "type": "host-local",
      "dataDir": "$STATE_DIR/cni/ipam",
      "ranges": [[{ "subnet": "$POD_CIDR", "rangeStart": "198.18.0.10", "gateway": "$NODE_IP" }]],
      "routes": [{ "dst": "0.0.0.0/0" }]
    }
  }]
}
EOF

    cat >"$STATE_DIR/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $PKI_DIR/ca.crt}
authorization: {mode: AlwaysAllow}
tlsCertFile: $PKI_DIR/kubelet-serving.crt
tlsPrivateKeyFile: $PKI_DIR/kubelet-serving.key
cgroupDriver: cgroupfs
failSwapOn: false
clusterDNS: [$NODE_IP]
clusterDomain: cluster.local
resolvConf: $STATE_DIR/resolv.conf
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
EOF

    cat >"$STATE_DIR/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $STATE_DIR/kube-proxy.kubeconfig}
mode: iptables
clusterCIDR: $POD_CIDR
hostnameOverride: $NODE_NAME
bindAddress: $NODE_IP
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
conntrack: {maxPerCore: 0, min: 0}
EOF
}

start_etcd() {
    # A fresh data dir per cluster: the kubernetes Service's ClusterIP is
    # fixed at the API server's first start on it.
    rm -rf "$STATE_DIR/etcd"
    start_daemon etcd etcd --name plexus --data-dir "$STATE_DIR/etcd" \
        --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
        --listen-peer-urls http://127.0.0.1:12380 --initial-advertise-peer-urls http://127.0.0.1:12380 \
        --initial-cluster plexus=http://127.0.0.1:12380 --listen-metrics-urls http://127.0.0.1:12381
    wait_until etcd 30 bash -c "exec 3<>/dev/tcp/127.0.0.1/$ETCD_PORT"
}

start_control_plane() {
    start_daemon kube-apiserver "$K8S_BIN/kube-apiserver" \
        --advertise-address="$NODE_IP" --bind-address="$NODE_IP" --secure-port=6443 --insecure-port=0 \
        --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
        --service-cluster-ip-range="$SERVICE_CIDR" \
        --client-ca-file="$PKI_DIR/ca.crt" \
        --tls-cert-file="$PKI_DIR/apiserver.crt" --tls-private-key-file="$PKI_DIR/apiserver.key" \
        --kubelet-client-certificate="$PKI_DIR/apiserver-kubelet-client.crt" \
        --kubelet-client-key="$PKI_DIR/apiserver-kubelet-client.key" \
        --kubelet-preferred-address-types=InternalIP \
        --service-account-key-file="$PKI_DIR/sa.pub" --service-account-signing-key-file="$PKI_DIR/sa.key" \
        --service-account-issuer=https://kubernetes.default.svc.cluster.local \
        --authorization-mode=Node,RBAC --allow-privileged=true \
        --enable-admission-plugins=NodeRestriction
    wait_until kube-apiserver 90 kubectl_admin get --raw /readyz

    local kubeconfig="$STATE_DIR/controller-manager.kubeconfig"
    start_daemon kube-controller-manager "$K8S_BIN/kube-controller-manager" \
        --kubeconfig="$kubeconfig" --authentication-kubeconfig="$kubeconfig" --authorization-kubeconfig="$kubeconfig" \
        --bind-address=127.0.0.1 --port=0 --leader-elect=false \
        --cluster-signing-cert-file="$PKI_DIR/ca.crt" --cluster-signing-key-file="$PKI_DIR/ca.key" \
        --root-ca-file="$PKI_DIR/ca.crt" --service-account-private-key-file="$PKI_DIR/sa.key" \
        --use-service-account-credentials=true --cluster-name=plexus-local
    kubeconfig="$STATE_DIR/scheduler.kubeconfig"
    start_daemon kube-scheduler "$K8S_BIN/kube-scheduler" \
        --kubeconfig="$kubeconfig" --authentication-kubeconfig="$kubeconfig" --authorization-kubeconfig="$kubeconfig" \
        --bind-address=127.0.0.1 --port=0 --leader-elect=false
}

start_node() {
    # No image can be pulled here, and a pull must never leave the machine:
    # every registry request goes to a proxy on a closed loopback port and
    # fails at once (images are imported, pods use imagePullPolicy Never).
    start_daemon containerd env HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 NO_PROXY= \
        containerd --config "$STATE_DIR/containerd.toml"
    wait_until containerd 30 ctr --address "$CONTAINERD_SOCK" version
    ctr_k8s images import "$IMAGE_CACHE/pause.tar" >/dev/null || fail containerd "importing the pause image"

    start_daemon kubelet "$K8S_BIN/kubelet" \
        --config="$STATE_DIR/kubelet.yaml" --kubeconfig="$STATE_DIR/kubelet.kubeconfig" \
        --container-runtime=remote --container-runtime-endpoint="unix://$CONTAINERD_SOCK" \
        --node-ip="$NODE_IP" --hostname-override="$NODE_NAME" --root-dir="$STATE_DIR/kubelet"
    start_daemon kube-proxy "$K8S_BIN/kube-proxy" --config="$STATE_DIR/kube-proxy.yaml"
}

start_dns() {
    touch "$DNS_HOSTS"
    chmod 0644 "$DNS_HOSTS"
    # Answers the cluster's names from the hosts file, NXDOMAIN for other
    # cluster.local names, and REFUSED for everything else: no upstream, it
    # never forwards a query.
    start_daemon dnsmasq dnsmasq --keep-in-foreground --no-resolv --no-hosts --no-poll \
        --addn-hosts="$DNS_HOSTS" --local=/cluster.local/ \
        --listen-address="$NODE_IP" --bind-interfaces --except-interface=lo --log-facility=-
    start_daemon dns-sync "$HERE/cluster.sh" dns-sync
}

# Keeps the DNS hosts file in step with the Services (run as a daemon), and
# with the names ConfigMap kube-system/cluster-dns-hosts lists in /etc/hosts
# form (key `hosts`): what a CoreDNS `hosts` block would serve, for names
# outside Kubernetes' Services.
dns_sync_loop() {
    local current="" services extra
    while true; do
        if services=$(kubectl_admin get services --all-namespaces -o \
            jsonpath='{range .items[*]}{.spec.clusterIP} {.metadata.name}.{.metadata.namespace}.svc.cluster.local{"\n"}{end}' 2>/dev/null); then
            extra=$(kubectl_admin get configmap cluster-dns-hosts --namespace kube-system \
                -o jsonpath='{.data.hosts}' 2>/dev/null || true)
            services=$(printf '%s\n%s\n' "$services" "$extra" |
                awk 'NF >= 2 && $1 != "None" && $1 !~ /^#/' | sort)
            if [[ $services != "$current" ]]; then
                printf '%s\n' "$services" >"$DNS_HOSTS.new" && mv "$DNS_HOSTS.new" "$DNS_HOSTS"
                local pid
                pid=$(daemon_pid dnsmasq) && kill -HUP "$pid"
                current=$services
            fi
        fi
        sleep 1
    done
}

node_ready() {
    [[ $(kubectl_admin get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]
}
