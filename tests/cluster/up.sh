#!/usr/bin/env bash
# Start the test cluster's control plane on this machine: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler (binaries from build.sh), RBAC on.
#
#   tests/cluster/up.sh [STATE_DIR]   # prints the admin kubeconfig's path when ready
#   tests/cluster/down.sh [STATE_DIR]
#
# Everything listens on loopback but the API server, which pods also reach through the
# node's bridge (10.244.0.1): it admits only holders of its tokens and certificates. The admin credential is a static bearer token
# written into STATE_DIR/admin.kubeconfig (mode 0600); service accounts get real
# signed tokens (TokenRequest), so RBAC is checked as in any cluster.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
bin=${SPEEDRUN_CLUSTER_BIN:-$here/bin}
state=${1:-${SPEEDRUN_CLUSTER_STATE:-/tmp/speedrun-cluster}}
port=${SPEEDRUN_CLUSTER_PORT:-16443}
mkdir -p "$state/logs" "$state/pki" "$state/etcd"
chmod 700 "$state"

for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    [ -x "$bin/$b" ] || { echo "missing $bin/$b: run tests/cluster/build.sh first" >&2; exit 1; }
done

pki=$state/pki
if [ ! -f "$pki/sa.key" ]; then
    openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
    openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=speedrun-test-cluster" \
        -addext "subjectAltName=IP:127.0.0.1,IP:10.244.0.1,DNS:localhost" \
        -keyout "$pki/serving.key" -out "$pki/serving.crt" 2>/dev/null
    head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$pki/admin.token"
    printf '%s,speedrun-admin,speedrun-admin,system:masters\n' "$(cat "$pki/admin.token")" >"$pki/tokens.csv"
    chmod 600 "$pki"/*
fi

# The API server's client certificate for kubelets (logs, exec, port-forward), from a CA the
# node's kubelet trusts, and the node's own bearer token (user system:node:NAME, group
# system:nodes: the Node authorizer's naming). Kept apart so older state folders gain them.
if [ ! -f "$pki/ca.key" ]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=speedrun-test-ca" \
        -keyout "$pki/ca.key" -out "$pki/ca.crt" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver-kubelet-client" \
        -keyout "$pki/apiserver-kubelet.key" -out "$pki/apiserver-kubelet.csr" 2>/dev/null
    openssl x509 -req -in "$pki/apiserver-kubelet.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
        -CAcreateserial -days 30 -out "$pki/apiserver-kubelet.crt" 2>/dev/null
    head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$pki/node.token"
    printf '%s,system:node:speedrun-node,system:node:speedrun-node,system:nodes\n' \
        "$(cat "$pki/node.token")" >>"$pki/tokens.csv"
    chmod 600 "$pki"/*
fi

start() {  # name, then the command; logs in $state/logs, pid in $state/NAME.pid
    local name=$1; shift
    nohup "$@" >"$state/logs/$name.log" 2>&1 &
    echo $! >"$state/$name.pid"
}

start etcd "$bin/etcd" --data-dir "$state/etcd" \
    --listen-client-urls http://127.0.0.1:12379 --advertise-client-urls http://127.0.0.1:12379 \
    --listen-peer-urls http://127.0.0.1:12380 --initial-advertise-peer-urls http://127.0.0.1:12380 \
    --initial-cluster default=http://127.0.0.1:12380 --log-level warn

start kube-apiserver "$bin/kube-apiserver" \
    --etcd-servers http://127.0.0.1:12379 \
    --bind-address 0.0.0.0 --advertise-address 127.0.0.1 --secure-port "$port" \
    --tls-cert-file "$pki/serving.crt" --tls-private-key-file "$pki/serving.key" \
    --token-auth-file "$pki/tokens.csv" \
    --authorization-mode Node,RBAC --allow-privileged=true \
    --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
    --service-account-issuer https://kubernetes.default.svc \
    --service-cluster-ip-range 10.96.0.0/16 \
    --kubelet-client-certificate "$pki/apiserver-kubelet.crt" --kubelet-client-key "$pki/apiserver-kubelet.key" \
    --kubelet-preferred-address-types InternalIP \
    --enable-admission-plugins NamespaceLifecycle,ServiceAccount,PodSecurity,ResourceQuota,LimitRanger,NodeRestriction

kubeconfig=$state/admin.kubeconfig
cat >"$kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: speedrun-test
  cluster:
    server: https://127.0.0.1:$port
    certificate-authority: $pki/serving.crt
users:
- name: speedrun-admin
  user:
    token: $(cat "$pki/admin.token")
contexts:
- name: speedrun-test
  context: {cluster: speedrun-test, user: speedrun-admin}
current-context: speedrun-test
KC
chmod 600 "$kubeconfig"

for _ in $(seq 1 120); do
    if "$bin/kubectl" --kubeconfig "$kubeconfig" get --raw /readyz >/dev/null 2>&1; then break; fi
    sleep 1
done
"$bin/kubectl" --kubeconfig "$kubeconfig" get --raw /readyz >/dev/null

start kube-controller-manager "$bin/kube-controller-manager" --kubeconfig "$kubeconfig" \
    --bind-address 127.0.0.1 --secure-port 0 --leader-elect=false \
    --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/serving.crt" \
    --use-service-account-credentials
start kube-scheduler "$bin/kube-scheduler" --kubeconfig "$kubeconfig" \
    --bind-address 127.0.0.1 --secure-port 0 --leader-elect=false

echo "$kubeconfig"
