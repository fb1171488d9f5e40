#!/usr/bin/env bash
# Stop what up.sh started and wait until it is gone (the state folder stays).
set -euo pipefail
state=${1:-${SPEEDRUN_CLUSTER_STATE:-/tmp/speedrun-cluster}}
pids=()
for name in kube-scheduler kube-controller-manager kube-apiserver etcd; do
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
