#!/usr/bin/env bash
# Make this machine the test cluster's one node (after up.sh): a private containerd with the
# CRI plugin and a CNI bridge, then a kubelet registered as `speedrun-node`. Pods run for
# real (runc); images come from the local Docker engine, never a registry.
#
#   tests/cluster/node.sh [STATE_DIR]            # returns once the node is Ready
#   tests/cluster/node.sh --load IMAGE... [--state STATE_DIR]   # copy Docker images into it
#
# Needs root, containerd and runc (Debian's docker.io brings both), the CNI plugins
# (Debian's containernetworking-plugins) and ipset. Stop it with down.sh.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
bin=${SPEEDRUN_CLUSTER_BIN:-$here/bin}
state=${SPEEDRUN_CLUSTER_STATE:-/tmp/speedrun-cluster}
load=()
while [ $# -gt 0 ]; do
    case $1 in
        --load) shift; while [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; do load+=("$1"); shift; done ;;
        --state) state=$2; shift 2 ;;
        *) state=$1; shift ;;
    esac
done
node=speedrun-node
ctrd=/var/lib/speedrun-cluster/containerd   # overlay snapshots need a real file system, not tmpfs
sock=$state/containerd/containerd.sock
pause=speedrun/pause:1
ctr() { command ctr --address "$sock" --namespace k8s.io "$@"; }

load_images() {  # docker image -> the node's containerd image store, under the same name
    for image in "$@"; do
        id=$(docker image inspect -f '{{.Id}}' "$image")
        # the CRI plugin names every image by its config digest, Docker's image id too: a
        # node that already holds this exact image is left as it is (a 3 GB import is slow)
        case $image in */*) ref=docker.io/$image ;; *) ref=docker.io/library/$image ;; esac
        named=$(ctr images ls -q "name==$ref")
        [ -n "$named" ] && [ -n "$(ctr images ls -q "name==$id")" ] && continue
        if [ -n "$named" ]; then
            # an older build under this name: removed first, with its snapshots, and waited
            # for, so the collection cannot take a snapshot the import below has found and
            # is about to build on ("parent snapshot ... does not exist")
            ctr images rm --sync "$ref" "$(manifest_part "$ref" config)" >/dev/null 2>&1 || true
        fi
        docker save "$image" | ctr images import --no-unpack=false - >/dev/null
        # pods start from the unpacked snapshots; the layer tarballs beside them would only
        # double the image's footprint on a test disk
        ctr content rm $(manifest_part "$ref" layers) >/dev/null
    done
}

manifest_part() {  # REF config|layers: the digest(s) the image's manifest names
    local manifest
    manifest=$(ctr images ls "name==$1" | awk 'NR == 2 {print $3}')
    ctr content get "$manifest" | python3 -c '
import json, sys
m = json.load(sys.stdin)
print(m["config"]["digest"] if sys.argv[1] == "config" else " ".join(l["digest"] for l in m["layers"]))' "$2"
}

if [ ${#load[@]} -gt 0 ]; then load_images "${load[@]}"; exit 0; fi

for b in kubelet kube-router; do
    [ -x "$bin/$b" ] || { echo "missing $bin/$b: run tests/cluster/build.sh first" >&2; exit 1; }
done
[ -f "$state/admin.kubeconfig" ] || { echo "no control plane in $state: run up.sh first" >&2; exit 1; }
for tool in containerd runc docker ipset curl; do
    command -v $tool >/dev/null || { echo "missing $tool: apt-get install docker.io" >&2; exit 1; }
done
[ -x /usr/lib/cni/bridge ] || { echo "missing CNI plugins: apt-get install containernetworking-plugins" >&2; exit 1; }

kubectl() { "$bin/kubectl" --kubeconfig "$state/admin.kubeconfig" "$@"; }
start() {  # as in up.sh: logs in $state/logs, pid in $state/NAME.pid
    local name=$1; shift
    nohup "$@" >"$state/logs/$name.log" 2>&1 &
    echo $! >"$state/$name.pid"
}

mkdir -p "$state/containerd" "$state/cni" "$state/kubelet" "$ctrd"
cat >"$state/containerd/config.toml" <<TOML
version = 2
root = "$ctrd/root"
state = "$state/containerd/state"
[grpc]
  address = "$sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "docker.io/$pause"
  # the kubelet asks for OOM scores below ours (-998 for pod sandboxes), which needs
  # CAP_SYS_RESOURCE; where this host lacks it (a VM's container), keep them at ours
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$state/cni"
TOML
# One bridge, no masquerade: pods reach each other and this host, nothing beyond it.
cat >"$state/cni/10-speedrun.conflist" <<JSON
{"cniVersion": "0.4.0", "name": "speedrun", "plugins": [
  {"type": "bridge", "bridge": "speedrun0", "isGateway": true, "ipMasq": false,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.0.0/24"}]]}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
JSON
# The bridge exists before any pod: its gateway address is the node's IP, where the API
# server reaches the kubelet (a node IP may not be loopback) and pods reach this host.
if ! ip link show speedrun0 >/dev/null 2>&1; then
    ip link add speedrun0 type bridge
    ip addr add 10.244.0.1/24 dev speedrun0
fi
ip link set speedrun0 up
# Docker sets the FORWARD policy to DROP and bridged frames pass iptables (br_netfilter):
# let pods on this bridge reach each other (the orchestrator pod, sandbox tool APIs)
iptables -C FORWARD -i speedrun0 -o speedrun0 -j ACCEPT 2>/dev/null ||
    iptables -I FORWARD -i speedrun0 -o speedrun0 -j ACCEPT
start containerd containerd --config "$state/containerd/config.toml"
for _ in $(seq 1 50); do [ -S "$sock" ] && break; sleep 0.2; done

# The pod sandbox ("pause") image, from the debootstrapped base: it only has to sleep.
if ! docker image inspect "$pause" >/dev/null 2>&1; then
    printf 'FROM speedrun/debian:bookworm\nENTRYPOINT ["/bin/sleep", "infinity"]\n' | docker build -q -t "$pause" - >/dev/null
fi
ctr images inspect "docker.io/$pause" >/dev/null 2>&1 || load_images "$pause"

pki=$state/pki
cat >"$state/kubelet/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: speedrun-test
  cluster: {server: "$(kubectl config view -o jsonpath='{.clusters[0].cluster.server}')", certificate-authority: $pki/serving.crt}
users:
- name: $node
  user: {token: $(cat "$pki/node.token")}
contexts:
- name: node
  context: {cluster: speedrun-test, user: $node}
current-context: node
KC
chmod 600 "$state/kubelet/kubeconfig"
cat >"$state/kubelet/config.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 10.244.0.1
port: 10250
readOnlyPort: 0
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization: {mode: Webhook}
cgroupDriver: cgroupfs
failSwapOn: false
containerRuntimeEndpoint: unix://$sock
# a small test disk must not evict pods or collect the images loaded from Docker
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
resolvConf: ""
YAML
# the API server's kubelet-client identity may use the kubelet API (logs, exec, port-forward)
kubectl create clusterrolebinding speedrun-apiserver-kubelet --clusterrole system:kubelet-api-admin \
    --user kube-apiserver-kubelet-client --dry-run=client -o yaml | kubectl apply -f - >/dev/null
start kubelet "$bin/kubelet" --config "$state/kubelet/config.yaml" \
    --kubeconfig "$state/kubelet/kubeconfig" --root-dir "$ctrd/../kubelet" \
    --cert-dir "$state/kubelet/pki" --hostname-override "$node" --node-ip 10.244.0.1

ready=
for _ in $(seq 1 120); do
    ready=$(kubectl get node "$node" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null || true)
    [ "$ready" = True ] && break
    sleep 1
done
if [ "$ready" != True ]; then
    echo "node $node not Ready after 120 s; see $state/logs/kubelet.log" >&2
    tail -20 "$state/logs/kubelet.log" >&2
    exit 1
fi

# NetworkPolicy, enforced: kube-router's policy controller alone (no routing, no service
# proxy) turns the policies of the pods on this node into iptables chains and ipsets.
start kube-router "$bin/kube-router" --kubeconfig "$state/admin.kubeconfig" --hostname-override "$node" \
    --run-firewall=true --run-router=false --run-service-proxy=false \
    --health-port 20244 --metrics-port 0
for _ in $(seq 1 60); do
    curl -fs http://127.0.0.1:20244/healthz >/dev/null && { echo "$node Ready, NetworkPolicy enforced"; exit 0; }
    sleep 0.5
done
echo "kube-router not healthy after 30 s; see $state/logs/kube-router.log" >&2
tail -20 "$state/logs/kube-router.log" >&2
exit 1
