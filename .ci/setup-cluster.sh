#!/usr/bin/env bash
# The Kubernetes test cluster's binaries for CI: the control plane, kubelet and kubectl built
# from Go modules by tests/cluster/build.sh. A fresh machine compiles everything (about 10
# minutes on 2 cores); the result is kept under ~/.cache/speedrun/cluster-bin/, keyed by the
# build recipe, so a later clone on the same machine links it in seconds (and Go's build
# cache makes a rebuild after a recipe change take a minute or two). Its node's packages
# (CNI plugins, containerd, runc) come from .ci/setup-docker.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
command -v go >/dev/null || { echo "the test cluster builds with Go >= 1.23 (go.dev/dl, into /usr/local/go)" >&2; exit 1; }
key=$( (cat tests/cluster/build.sh; go version) | sha256sum | cut -c1-16)
cache=${XDG_CACHE_HOME:-$HOME/.cache}/speedrun/cluster-bin/$key
if [ -f "$cache/.complete" ]; then
  echo "test cluster binaries from $cache (built before by this recipe)"
else
  rm -rf "$cache" && mkdir -p "$cache"
  time SPEEDRUN_CLUSTER_BIN=$cache tests/cluster/build.sh
  touch "$cache/.complete"
fi
rm -rf tests/cluster/bin && ln -s "$cache" tests/cluster/bin
