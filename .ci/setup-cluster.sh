#!/usr/bin/env bash
# The Kubernetes test cluster's binaries for CI: the control plane, kubelet and kubectl built
# from Go modules by tests/cluster/build.sh. Go's build cache (~/.cache/go-build) and module
# cache make a rebuild on a machine that built them before take a minute or two; a fresh
# machine compiles everything (about 12 minutes on 2 cores). Its node's packages (CNI
# plugins, containerd, runc) come from .ci/setup-docker.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
command -v go >/dev/null || { echo "the test cluster builds with Go >= 1.23 (go.dev/dl, into /usr/local/go)" >&2; exit 1; }
time tests/cluster/build.sh
