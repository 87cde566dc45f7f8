#!/bin/sh
# Installs what chorus needs on Debian 12 when it is missing: containerd,
# runc, the CNI plugins, iptables (the bridge plugin's masquerade), iproute2,
# wrk for the benchmarks and Debian's docker-registry for the registry pull
# tests, tmux (kubectl exec -it is tested in a terminal), kubectl, helm. Run as root.
set -eu
need=""
command -v containerd >/dev/null 2>&1 || need="$need containerd"
command -v runc >/dev/null 2>&1 || need="$need runc"
[ -x /usr/lib/cni/bridge ] || [ -x /opt/cni/bin/bridge ] || need="$need containernetworking-plugins"
command -v iptables >/dev/null 2>&1 || need="$need iptables"
command -v ip >/dev/null 2>&1 || need="$need iproute2"
command -v wrk >/dev/null 2>&1 || need="$need wrk"
command -v docker-registry >/dev/null 2>&1 || need="$need docker-registry"
command -v tmux >/dev/null 2>&1 || need="$need tmux"
if [ -n "$need" ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "chorus needs:$need; run as root to install them" >&2
		exit 1
	fi
	echo "installing:$need"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends $need >/dev/null
fi
# The Kubernetes API tests drive the real kubectl. Without one on PATH,
# chorus itself is built as kubectl (it embeds k8s.io/kubectl and acts as
# kubectl when called by that name, as k3s does).
if ! command -v kubectl >/dev/null 2>&1; then
	echo "kubectl not found: building chorus' built-in kubectl as /usr/local/bin/kubectl"
	(cd "$(dirname "$0")/../.." && go build -ldflags "-X k8s.io/component-base/version.gitVersion=v1.37.2 -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37" -o /usr/local/bin/kubectl ./cmd/chorus)
fi
# The helm test drives the real helm (v3), built from its module when missing.
if ! command -v helm >/dev/null 2>&1; then
	echo "helm not found: building helm.sh/helm/v3 v3.22.0 as /usr/local/bin/helm"
	(cd / && GOBIN=/usr/local/bin GOFLAGS=-mod=mod go install helm.sh/helm/v3/cmd/helm@v3.22.0)
fi
modprobe br_netfilter 2>/dev/null || true
sysctl -qw net.ipv4.ip_forward=1 2>/dev/null || true
echo "dependencies ok: $(containerd --version | cut -d' ' -f3), runc $(runc --version | head -1 | cut -d' ' -f3)"
