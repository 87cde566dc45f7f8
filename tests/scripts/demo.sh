#!/bin/sh
# `make demo` and `make demo-down`: a local chorus cluster running the
# example app, made by `chorus cluster create` (a network namespace per
# peer). Run as root from the repository root. The cluster is protected as
# by default: the first peer creates the cluster secret and its join token,
# the others join with the token, and the CLI talks HTTPS with the token
# through the first peer's kubeconfig.
set -eu
BIN=${BIN:-bin/chorus}
OUT=${OUT:-_out/demo}
NAME=${NAME:-demo}
DIR=/var/lib/chorus/clusters

up() {
	mkdir -p "$OUT"
	# Three peers, each in a network namespace of its own (a machine, for
	# the network), on a bridge with this host: the same code as
	# `chorus cluster create` anywhere.
	"$BIN" cluster create --name "$NAME" --peers 3
	KC="$DIR/$NAME/kubeconfig"
	export KUBECONFIG="$KC"
	S=$(sed -n 's|.*server: https://||p' "$KC" | head -1)
	first=${S%:*}
	echo "building the example images example/web:1 and example/web:2"
	go run ./tests/images/cmd/mkimage -o "$OUT/images" web >/dev/null
	go run ./tests/images/cmd/mkimage -o "$OUT/images" -tag example/web:2 web >/dev/null
	# Loaded on one peer: the others fetch them from their peers when they need them.
	"$BIN" -s "$S" image load "$OUT/images/web-1.tar"
	"$BIN" -s "$S" image load "$OUT/images/web-2.tar"
	"$BIN" -s "$S" get nodes
	"$BIN" -s "$S" apply -f examples/app.yaml
	printf "waiting for the pods to be ready"
	i=0
	while :; do
		ready=$("$BIN" -s "$S" get pods 2>/dev/null | awk 'NR>1 && $2=="1/1" && $3=="Running"' | wc -l)
		[ "$ready" -ge 3 ] && break
		i=$((i+1)); [ $i -gt 120 ] && { echo; echo "pods not ready after 60s:" >&2; "$BIN" -s "$S" get pods >&2; exit 1; }
		printf "."; sleep 0.5
	done
	echo
	"$BIN" -s "$S" get pods -o wide
	ip=$("$BIN" -s "$S" get pods -o wide | awk 'NR==2{print $6}')
	np=$("$BIN" -s "$S" get services web | sed -n 's/.*8080:\([0-9]*\)\/TCP.*/\1/p')
	last=$("$BIN" get nodes -o jsonpath='{.items[2].status.addresses[0].address}')
	cat <<MSG

chorus is running, protected: gossip encrypted, the API HTTPS with a token.
  join token (for more peers): $DIR/$NAME/$NAME-1/token   (chorus agent --join-token-file ...)
  admin kubeconfig:            $KC   (every peer writes its own in its data dir)
  peers' machines:             nsenter --net=/run/netns/chorus-$NAME-1 ... (each peer has its own network namespace)
Try:
  export KUBECONFIG=$KC
  $BIN get deployments,services            # every kubectl command is a chorus command (kubectl built in)
  kubectl get pods -o wide                # or kubectl itself, with the same kubeconfig (every peer serves the Kubernetes API)
  kubectl exec deploy/web -- /app echo hi; kubectl explain deployment.spec
  curl --cacert <(sed -n 's/.*certificate-authority-data: //p' \$KUBECONFIG | base64 -d) -H "Authorization: Bearer \$(sed -n 's/.*token: //p' \$KUBECONFIG)" https://$S/version
  nsenter --net=/run/netns/chorus-$NAME-1 curl http://$ip:8080/   # a pod answers with its name, from any peer's machine (pod network)
  curl http://$last:$np/            # the service, on any peer's NodePort
  curl http://$first/                    # the Ingress, on any peer's port 80: "Hello from a ConfigMap from web-..."
  $BIN apply -f examples/batch.yaml       # a Job and a CronJob; then: $BIN logs job/pi
  $BIN apply -f examples/stateful.yaml    # a StatefulSet with volumes; then: $BIN get pvc,pv
  curl \$($BIN service web)                # the same, as minikube service --url
  $BIN port-forward service/web 7080:8080 &   curl localhost:7080/
  $BIN describe pod $("$BIN" -s "$S" get pods -o name | head -1 | cut -d/ -f2)
  $BIN scale deployment web --replicas=5
  $BIN set image deployment/web web=example/web:2 && $BIN rollout status deployment/web
  $BIN rollout history deployment/web ; $BIN rollout undo deployment/web
  $BIN logs deployment/web
  $BIN dashboard                         # the web dashboard's URL (every peer serves one)
  $BIN drain $NAME-2                     # its pods move to the other peers
  $BIN uncordon $NAME-2
  make demo-down                         # stop and clean up
MSG
}

down() {
	"$BIN" cluster delete --name "$NAME"
}

case "${1:-up}" in
up) up ;;
down) down ;;
*) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
