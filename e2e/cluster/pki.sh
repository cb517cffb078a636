# Sourced by e2e/cluster/cluster.sh: a CA and the certificates and
# kubeconfigs of the components, made anew for every cluster.

PKI_DIR="$STATE_DIR/pki"

# issue NAME CN [O] [SANS]: a key and a certificate signed by the cluster CA.
issue() {
    local name=$1 cn=$2 org=${3:-} sans=${4:-}
    local subject="/CN=$cn"
    [[ -n $org ]] && subject="/O=$org$subject"
    openssl req -new -newkey rsa:2048 -nodes -keyout "$PKI_DIR/$name.key" \
        -subj "$subject" -out "$PKI_DIR/$name.csr" 2>/dev/null
    {
        echo "basicConstraints=CA:FALSE"
        echo "keyUsage=critical,digitalSignature,keyEncipherment"
        echo "extendedKeyUsage=serverAuth,clientAuth"
        [[ -n $sans ]] && echo "subjectAltName=$sans"
    } >"$PKI_DIR/$name.ext"
    openssl x509 -req -in "$PKI_DIR/$name.csr" -CA "$PKI_DIR/ca.crt" -CAkey "$PKI_DIR/ca.key" \
        -CAcreateserial -days 30 -sha256 -extfile "$PKI_DIR/$name.ext" -out "$PKI_DIR/$name.crt" 2>/dev/null
    rm -f "$PKI_DIR/$name.csr" "$PKI_DIR/$name.ext"
}

# kubeconfig NAME: a kubeconfig for the certificate NAME.
kubeconfig() {
    local name=$1 file="$STATE_DIR/$1.kubeconfig"
    cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: plexus-local
  cluster:
    server: https://$NODE_IP:6443
    certificate-authority-data: $(base64 -w0 <"$PKI_DIR/ca.crt")
users:
- name: $name
  user:
    client-certificate-data: $(base64 -w0 <"$PKI_DIR/$name.crt")
    client-key-data: $(base64 -w0 <"$PKI_DIR/$name.key")
contexts:
- name: plexus-local
  context:
    cluster: plexus-local
    user: $name
current-context: plexus-local
EOF
    chmod 0600 "$file"
}

make_pki() {
    rm -rf "$PKI_DIR" && mkdir -p "$PKI_DIR" && chmod 0700 "$PKI_DIR"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$PKI_DIR/ca.key" -out "$PKI_DIR/ca.crt" \
        -days 30 -subj "/CN=plexus-local-ca" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    openssl genrsa -out "$PKI_DIR/sa.key" 2048 2>/dev/null
    openssl rsa -in "$PKI_DIR/sa.key" -pubout -out "$PKI_DIR/sa.pub" 2>/dev/null

    issue apiserver kube-apiserver "" \
        "IP:$NODE_IP,IP:$KUBERNETES_SERVICE_IP,IP:127.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost"
    issue apiserver-kubelet-client kube-apiserver-kubelet-client system:masters
    issue kubelet-serving "$NODE_NAME" "" "IP:$NODE_IP,DNS:$NODE_NAME"
    issue admin plexus-admin system:masters
    issue controller-manager system:kube-controller-manager
    issue scheduler system:kube-scheduler
    issue kubelet "system:node:$NODE_NAME" system:nodes
    issue kube-proxy system:kube-proxy

    local name
    for name in admin controller-manager scheduler kubelet kube-proxy; do
        kubeconfig "$name"
    done
}
