#!/usr/bin/env bash
# Stop what up.sh started and wait until it is gone (the state folder stays).
set -euo pipefail
state=${1:-${SPEEDRUN_CLUSTER_STATE:-/tmp/speedrun-cluster}}
pids=()
bin=${SPEEDRUN_CLUSTER_BIN:-$(cd "$(dirname "$0")" && pwd)/bin}
if [ -f "$state/kube-router.pid" ]; then  # the policy controller, and its chains and ipsets
    pid=$(cat "$state/kube-router.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    rm -f "$state/kube-router.pid"
    "$bin/kube-router" --cleanup-config >/dev/null 2>&1 || true
fi
if [ -f "$state/kubelet.pid" ]; then  # the node (node.sh): kubelet first, then every pod's containers
    kill "$(cat "$state/kubelet.pid")" 2>/dev/null || true
    rm -f "$state/kubelet.pid"
    sock=$state/containerd/containerd.sock
    if [ -S "$sock" ]; then
        for task in $(ctr --address "$sock" -n k8s.io tasks ls -q 2>/dev/null); do
            ctr --address "$sock" -n k8s.io tasks kill -s SIGKILL "$task" >/dev/null 2>&1 || true
        done
        sleep 1
        for c in $(ctr --address "$sock" -n k8s.io containers ls -q 2>/dev/null); do
            ctr --address "$sock" -n k8s.io tasks rm -f "$c" >/dev/null 2>&1 || true
            ctr --address "$sock" -n k8s.io containers rm "$c" >/dev/null 2>&1 || true
        done
    fi
    rm -rf /var/lib/cni/networks/speedrun  # the bridge's address leases
    iptables -D FORWARD -i speedrun0 -o speedrun0 -j ACCEPT 2>/dev/null || true
    # volumes the kubelet mounted for pods (emptyDir tmpfs, projected files), deepest first
    # and the pod sandboxes' /dev/shm that containerd mounted in its state folder
    awk -v state="$state/" '$2 ~ "^/var/lib/speedrun-cluster/kubelet/" || index($2, state) == 1 {print $2}' \
        /proc/mounts | sort -r | xargs -r -n1 umount -l
fi
for name in containerd kube-scheduler kube-controller-manager kube-apiserver etcd; do
    if [ -f "$state/$name.pid" ]; then
        pid=$(cat "$state/$name.pid")
        kill "$pid" 2>/dev/null && pids+=("$pid")
        rm -f "$state/$name.pid"
    fi
done
# a graceful API server shutdown takes seconds; the next up.sh needs the ports back
for _ in $(seq 1 100); do
    alive=0
    for pid in "${pids[@]}"; do
        if kill -0 "$pid" 2>/dev/null && ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null; then alive=1; fi
    done
    [ "$alive" = 0 ] && exit 0
    sleep 0.2
done
for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
