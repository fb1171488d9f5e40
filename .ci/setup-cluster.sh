#!/usr/bin/env bash
# The Kubernetes test cluster for CI (idempotent): Debian's CNI plugins (containerd and runc
# came with docker.io), then the control plane, kubelet and kubectl built from Go modules by
# tests/cluster/build.sh. Go's build cache (~/.cache/go-build) and module cache make a
# rebuild on a machine that built them before take about a minute; a fresh machine compiles
# everything (about 12 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/lib/cni/bridge ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq containernetworking-plugins >/dev/null
fi
export PATH=$PATH:/usr/local/go/bin
command -v go >/dev/null || { echo "the test cluster builds with Go >= 1.23 (go.dev/dl, or /usr/local/go)" >&2; exit 1; }
time tests/cluster/build.sh
