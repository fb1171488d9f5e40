#!/usr/bin/env bash
# Build the test cluster's binaries from Go modules, through the module proxy:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kubectl, and
# kube-router, whose network policy controller enforces NetworkPolicy on the node.
#
#   tests/cluster/build.sh            # binaries into tests/cluster/bin (git-ignored)
#   tests/cluster/build.sh kwok       # and kwok, the simulated nodes of ./taskw test:scale
#
# k8s.io/kubernetes names its staging modules (k8s.io/api, k8s.io/client-go, ...) at
# v0.0.0 with `replace` lines into its own tree; a consumer must pin each to the
# published v0.<minor>.<patch> instead. The pins are generated from the release's own
# go.mod. Rebuilds hit Go's build cache (GOCACHE), so a warm machine takes seconds.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-1.32.3}
ETCD_VERSION=${ETCD_VERSION:-3.5.17}
KUBE_ROUTER_VERSION=${KUBE_ROUTER_VERSION:-2.10.0}
KWOK_VERSION=${KWOK_VERSION:-0.7.0}
here=$(cd "$(dirname "$0")" && pwd)
out=${SPEEDRUN_CLUSTER_BIN:-$here/bin}
mod=$here/.module   # generated go.mod and go.sum (git-ignored)
router_mod=$here/.module-kube-router   # its own go.mod: it needs a newer client-go
kwok_mod=$here/.module-kwok   # the same, for kwok
mkdir -p "$out" "$mod" "$router_mod"
# Some staging modules (kube-controller-manager, endpointslice) are served by the module
# proxy but missing from the checksum database it mirrors here; go.sum still pins them.
export GOFLAGS=-mod=mod CGO_ENABLED=0 GONOSUMDB=k8s.io
# no symbol table or DWARF: the linker writes ~40% less, and nothing here debugs these binaries
build() { go build -ldflags='-s -w' "$@"; }

cd "$mod"
if [ ! -f go.mod ] || ! grep -q "k8s.io/kubernetes v$K8S_VERSION" go.mod; then
    rm -f go.mod go.sum
    go mod init speedrun.test/cluster >/dev/null 2>&1
    upstream=$(go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
    staging_version="v0.${K8S_VERSION#1.}"
    awk -v v="$staging_version" '$2 == "=>" && $3 ~ /^\.\/staging\// {print "replace " $1 " => " $1 " " v}' "$upstream" >>go.mod
    mkdir -p etcd
    cat >etcd/main.go <<'GO'
// The etcd server of the test cluster: etcd's own entry point, linked here so that it
// builds from the module proxy like the Kubernetes binaries.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
    go get "k8s.io/kubernetes@v$K8S_VERSION" "go.etcd.io/etcd/server/v3@v$ETCD_VERSION"
fi

start=$(date +%s)
# kube-router (its own module) builds beside the Kubernetes binaries, and those in one `go
# build`: the compiles share one package graph and the links (single-threaded) overlap
(
    cd "$router_mod"
    if [ ! -f go.mod ] || ! grep -q "kube-router/v2 v$KUBE_ROUTER_VERSION" go.mod; then
        rm -f go.mod go.sum
        go mod init speedrun.test/kube-router >/dev/null 2>&1
        # the netlink pseudo-version kube-router pins is not on the module proxy: its release
        # before stands in (the policy controller uses none of what came after)
        go mod edit -require "github.com/cloudnativelabs/kube-router/v2@v$KUBE_ROUTER_VERSION" \
            -replace github.com/vishvananda/netlink=github.com/vishvananda/netlink@v1.3.1
    fi
    build -o "$out/kube-router" github.com/cloudnativelabs/kube-router/v2/cmd/kube-router
    echo "built kube-router ($(( $(date +%s) - start ))s so far)"
) &
router=$!
build -o "$out/" ./etcd $(printf 'k8s.io/kubernetes/cmd/%s ' kube-apiserver kube-controller-manager \
    kube-scheduler kubelet kubectl)
echo "built etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kubectl ($(( $(date +%s) - start ))s so far)"
wait "$router"

if [ "${1:-}" = kwok ]; then
    mkdir -p "$kwok_mod" && cd "$kwok_mod"
    if [ ! -f go.mod ] || ! grep -q "sigs.k8s.io/kwok v$KWOK_VERSION" go.mod; then
        rm -f go.mod go.sum
        go mod init speedrun.test/kwok >/dev/null 2>&1
        go mod edit -require "sigs.k8s.io/kwok@v$KWOK_VERSION"
    fi
    build -o "$out/kwok" sigs.k8s.io/kwok/cmd/kwok
fi
echo "test cluster binaries in $out ($(( $(date +%s) - start ))s)"
