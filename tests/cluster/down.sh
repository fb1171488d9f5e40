#!/usr/bin/env bash
# Stop what up.sh started (state folder kept unless --purge).
set -euo pipefail
state=${1:-${SPEEDRUN_CLUSTER_STATE:-/tmp/speedrun-cluster}}
for name in kube-scheduler kube-controller-manager kube-apiserver etcd; do
    if [ -f "$state/$name.pid" ]; then
        kill "$(cat "$state/$name.pid")" 2>/dev/null || true
        rm -f "$state/$name.pid"
    fi
done
