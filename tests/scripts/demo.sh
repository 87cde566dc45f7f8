#!/bin/sh
# `make demo` and `make demo-down`: a local chorus cluster running the
# example app. Run as root from the repository root. The cluster is
# protected as by default: the first peer creates the cluster secret and its
# join token, the others join with the token (found by mDNS), and the CLI
# talks HTTPS with the token through the first peer's kubeconfig.
set -eu
BIN=${BIN:-bin/chorus}
OUT=${OUT:-_out/demo}
PEERS=${PEERS:-"demo1:127.0.0.11 demo2:127.0.0.12 demo3:127.0.0.13"}

up() {
	mkdir -p "$OUT"
	# The peers find each other by mDNS, which needs multicast on loopback.
	ip link set lo multicast on
	first=""
	firstname=""
	for p in $PEERS; do
		name=${p%%:*}; bind=${p#*:}
		join=""
		if [ -z "$first" ]; then
			first=$bind; firstname=$name
		else
			# The others join with the first peer's token (a restart
			# needs none: each peer keeps it in its data dir).
			join="--join-token-file /var/lib/chorus/$firstname/token"
		fi
		if [ -f "$OUT/$name.pid" ] && kill -0 "$(cat "$OUT/$name.pid")" 2>/dev/null; then
			echo "peer $name already running"
			continue
		fi
		echo "starting peer $name on $bind (log: $OUT/$name.log)"
		# shellcheck disable=SC2086
		nohup "$BIN" agent --name "$name" --bind "$bind" --data-dir "/var/lib/chorus/$name" $join >"$OUT/$name.log" 2>&1 &
		echo $! >"$OUT/$name.pid"
		if [ -z "$join" ]; then
			i=0
			until [ -f "/var/lib/chorus/$name/token" ]; do
				i=$((i+1)); [ $i -gt 120 ] && { echo "peer $name wrote no join token; see $OUT/$name.log" >&2; tail -20 "$OUT/$name.log" >&2; exit 1; }
				sleep 0.25
			done
		fi
	done
	S="$first:7070"
	KC="/var/lib/chorus/$firstname/kubeconfig"
	# The CLI reads the server, the cluster CA and the token from it.
	export KUBECONFIG="$KC"
	i=0
	until [ -f "$KC" ] && "$BIN" -s "$S" version >/dev/null 2>&1; do
		i=$((i+1)); [ $i -gt 120 ] && { echo "peer did not start; see $OUT/*.log" >&2; tail -20 "$OUT"/*.log >&2; exit 1; }
		sleep 0.5
	done
	echo "building the example images example/web:1 and example/web:2"
	go run ./tests/images/cmd/mkimage -o "$OUT/images" web >/dev/null
	go run ./tests/images/cmd/mkimage -o "$OUT/images" -tag example/web:2 web >/dev/null
	# Loaded on one peer: the others fetch them from their peers when they need them.
	"$BIN" -s "$S" image load "$OUT/images/web-1.tar"
	"$BIN" -s "$S" image load "$OUT/images/web-2.tar"
	n=$(echo $PEERS | wc -w)
	printf "waiting for the %d peers to find each other" "$n"
	i=0
	until [ "$("$BIN" -s "$S" get nodes --no-headers 2>/dev/null | grep -c ' Ready ')" -ge "$n" ]; do
		i=$((i+1)); [ $i -gt 120 ] && { echo; echo "peers did not find each other:" >&2; "$BIN" -s "$S" get nodes >&2; exit 1; }
		printf "."; sleep 0.5
	done
	echo
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
	last=${PEERS##* }; last=${last#*:}
	cat <<MSG

chorus is running, protected: gossip encrypted, the API HTTPS with a token.
  join token (for more peers): /var/lib/chorus/$firstname/token   (chorus agent --join-token-file ...)
  admin kubeconfig:            $KC   (every peer writes its own in its data dir)
Try:
  export KUBECONFIG=$KC
  $BIN get deployments,services            # every kubectl command is a chorus command (kubectl built in)
  kubectl get pods -o wide                # or kubectl itself, with the same kubeconfig (every peer serves the Kubernetes API)
  kubectl exec deploy/web -- /app echo hi; kubectl explain deployment.spec
  curl --cacert <(sed -n 's/.*certificate-authority-data: //p' \$KUBECONFIG | base64 -d) -H "Authorization: Bearer \$(sed -n 's/.*token: //p' \$KUBECONFIG)" https://$S/version
  curl http://$ip:8080/                  # a pod answers with its name
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
  $BIN drain demo2                       # its pods move to the other peers
  $BIN uncordon demo2
  make demo-down                         # stop and clean up
MSG
}

down() {
	# Stop every peer first, so that none moves the pods of another.
	for p in $PEERS; do
		name=${p%%:*}
		if [ -f "$OUT/$name.pid" ] && kill -0 "$(cat "$OUT/$name.pid")" 2>/dev/null; then
			kill "$(cat "$OUT/$name.pid")"
		fi
	done
	for p in $PEERS; do
		name=${p%%:*}
		if [ -f "$OUT/$name.pid" ]; then
			pid=$(cat "$OUT/$name.pid")
			i=0; while kill -0 "$pid" 2>/dev/null && [ $i -lt 60 ]; do sleep 0.5; i=$((i+1)); done
			rm -f "$OUT/$name.pid"
		fi
		"$BIN" reset --name "$name" --data-dir "/var/lib/chorus/$name" 2>/dev/null
	done
}

case "${1:-up}" in
up) up ;;
down) down ;;
*) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
