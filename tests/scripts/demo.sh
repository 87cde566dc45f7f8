#!/bin/sh
# `make demo` and `make demo-down`: a local chorus cluster running the
# example app. Run as root from the repository root.
set -eu
BIN=${BIN:-bin/chorus}
OUT=${OUT:-_out/demo}
PEERS=${PEERS:-"demo1:127.0.0.11"}

up() {
	mkdir -p "$OUT"
	first=""
	for p in $PEERS; do
		name=${p%%:*}; bind=${p#*:}
		[ -z "$first" ] && first=$bind
		if [ -f "$OUT/$name.pid" ] && kill -0 "$(cat "$OUT/$name.pid")" 2>/dev/null; then
			echo "peer $name already running"
			continue
		fi
		echo "starting peer $name on $bind (log: $OUT/$name.log)"
		nohup "$BIN" agent --name "$name" --bind "$bind" --data-dir "/var/lib/chorus/$name" >"$OUT/$name.log" 2>&1 &
		echo $! >"$OUT/$name.pid"
	done
	S="$first:7070"
	i=0
	until "$BIN" -s "$S" version >/dev/null 2>&1; do
		i=$((i+1)); [ $i -gt 120 ] && { echo "peer did not start; see $OUT/*.log" >&2; tail -20 "$OUT"/*.log >&2; exit 1; }
		sleep 0.5
	done
	echo "building the example image example/web:1"
	go run ./tests/images/cmd/mkimage -o "$OUT/images" web >/dev/null
	"$BIN" -s "$S" image load "$OUT/images/web-1.tar"
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
	cat <<MSG

chorus is running. Try:
  export CHORUS_SERVER=$S
  $BIN get deployments,services
  curl http://$ip:8080/                  # a pod answers with its name
  $BIN describe pod $("$BIN" -s "$S" get pods -o name | head -1 | cut -d/ -f2)
  $BIN scale deployment web --replicas=5
  $BIN logs deployment/web
  make demo-down                         # stop and clean up
MSG
}

down() {
	for p in $PEERS; do
		name=${p%%:*}; bind=${p#*:}
		if [ -f "$OUT/$name.pid" ]; then
			pid=$(cat "$OUT/$name.pid")
			if kill -0 "$pid" 2>/dev/null; then
				"$BIN" -s "$bind:7070" delete -f examples/app.yaml --ignore-not-found >/dev/null 2>&1 || true
				kill "$pid"
				i=0; while kill -0 "$pid" 2>/dev/null && [ $i -lt 60 ]; do sleep 0.5; i=$((i+1)); done
			fi
			rm -f "$OUT/$name.pid"
		fi
		"$BIN" reset --name "$name" --data-dir "/var/lib/chorus/$name"
	done
}

case "${1:-up}" in
up) up ;;
down) down ;;
*) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
