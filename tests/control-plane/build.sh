#!/usr/bin/env bash
# Builds the real control plane used by the tests and `make dev`: etcd, kube-apiserver,
# kube-controller-manager and helm, from their Go modules, into a cache outside the repository.
# A binary already in the cache is never rebuilt. Prints the bin folder on its last line.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
k8s_version=v1.36.3
etcd_version=v3.6.16
helm_version=v3.22.0
cache_root=${XDG_CACHE_HOME:-$HOME/.cache}/tenancy-operator
bin=${TENANCY_CONTROL_PLANE_BIN:-$cache_root/$k8s_version-etcd$etcd_version-helm$helm_version/bin}
mkdir -p "$bin"

log() { printf '[control-plane] %s\n' "$*" >&2; }

command -v go >/dev/null || { log "go is not installed; it is needed to build the control plane"; exit 1; }

# build NAME MODULE_DIR PACKAGE [LDFLAGS]
build() {
  local name=$1 dir=$2 pkg=$3 ldflags=${4:-}
  if [ -x "$bin/$name" ]; then
    log "$name: cached at $bin/$name"
    return
  fi
  log "$name: building $pkg (first time only; several minutes on 2 cores)"
  local start=$SECONDS
  # Build to a temporary name so an interrupted build never leaves a half-written binary.
  (cd "$here/$dir" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w $ldflags" -o "$bin/.$name.tmp" "$pkg")
  mv "$bin/.$name.tmp" "$bin/$name"
  log "$name: built in $((SECONDS - start))s"
}

minor=${k8s_version#v1.}; minor=${minor%%.*}
version_flags="-X k8s.io/component-base/version.gitVersion=$k8s_version \
-X k8s.io/component-base/version.gitMajor=1 \
-X k8s.io/component-base/version.gitMinor=$minor \
-X k8s.io/component-base/version.gitTreeState=clean \
-X k8s.io/client-go/pkg/version.gitVersion=$k8s_version \
-X k8s.io/client-go/pkg/version.gitMajor=1 \
-X k8s.io/client-go/pkg/version.gitMinor=$minor"

build etcd etcd go.etcd.io/etcd/server/v3
build kube-apiserver kubernetes k8s.io/kubernetes/cmd/kube-apiserver "$version_flags"
build kube-controller-manager kubernetes k8s.io/kubernetes/cmd/kube-controller-manager "$version_flags"
build helm helm helm.sh/helm/v3/cmd/helm "-X helm.sh/helm/v3/internal/version.version=$helm_version"
# The health library Flux and kubectl-based tools use (sigs.k8s.io/cli-utils kstatus), for the
# tests that compare its answers with the Argo CD health script's.
build kstatus-v0.37.2 kstatus tenancy.dev/kstatus

log "ready: $bin"
echo "$bin"
