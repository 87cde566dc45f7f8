package cluster

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/tests/harness"
)

// TestStatefulSetsAndClaims drives apps/v1 StatefulSets and local-path
// PersistentVolumeClaims with the real kubectl through three peers: pods
// start in order, each with its own claim, bound to one peer; a deleted pod
// comes back under its name on its claim's peer with its data; a pod whose
// peer is killed (its containers keep running: the peer looks dead, as
// across a partition) is never started a second time elsewhere, and a
// replacement waits Pending for the peer that holds its data, then runs
// there with the data once the peer is back; scaling removes the highest
// ordinals first and keeps their claims; deleting a claim deletes its data.
func TestStatefulSetsAndClaims(t *testing.T) {
	hostDir := t.TempDir()
	peers := startCluster(t, 3, 214, "st", "--allow-host-path", hostDir)
	loadWebImages(t, peers[0])
	k1 := kubectlFor(t, peers[0])
	must := kubectlMust(t)
	get := func(args ...string) string {
		t.Helper()
		return strings.TrimSpace(must(k1(args...)))
	}
	f := filepath.Join(t.TempDir(), "db.yaml")
	if err := os.WriteFile(f, []byte(`apiVersion: v1
kind: Service
metadata:
  name: db
spec:
  clusterIP: None
  selector: {app: db}
  ports:
  - {name: http, port: 8080}
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
spec:
  serviceName: db
  replicas: 2
  selector:
    matchLabels: {app: db}
  template:
    metadata:
      labels: {app: db}
    spec:
      serviceAccountName: builder
      containers:
      - name: db
        image: example/web:1
        readinessProbe:
          httpGet: {path: /ready, port: 8080}
          periodSeconds: 1
        volumeMounts:
        - {name: data, mountPath: /data}
  volumeClaimTemplates:
  - metadata:
      name: data
    spec:
      accessModes: [ReadWriteOnce]
      resources:
        requests:
          storage: 1Gi
`), 0o644); err != nil {
		t.Fatal(err)
	}
	// Service accounts: every namespace has "default"; pods name theirs.
	must(k1("create", "serviceaccount", "builder"))
	if out := get("get", "serviceaccounts"); !strings.Contains(out, "default") || !strings.Contains(out, "builder") {
		t.Fatalf("get serviceaccounts:\n%s", out)
	}
	must(k1("apply", "-f", f))
	must(k1("rollout", "status", "statefulset/db", "--timeout=120s"))
	if out := get("describe", "pod", "db-0"); !strings.Contains(out, "builder") {
		t.Fatalf("describe pod db-0: no service account builder\n%s", out)
	}
	// Stable names through the headless service: db-1 resolves db-0.
	ip0 := get("get", "pod", "db-0", "-o", "jsonpath={.status.podIP}")
	ip1 := get("get", "pod", "db-1", "-o", "jsonpath={.status.podIP}")
	harness.Eventually(t, 30*time.Second, "db-0.db.default.svc.cluster.local resolves in db-1 to "+ip0, func() (bool, string) {
		out, err := harness.HTTPGet("http://" + ip1 + ":8080/lookup?host=db-0.db.default.svc.cluster.local")
		return err == nil && strings.TrimSpace(out) == ip0, out
	})
	if out := get("get", "pvc"); strings.Count(out, "Bound") != 2 || !strings.Contains(out, "data-db-0") || !strings.Contains(out, "local-path") {
		t.Fatalf("get pvc:\n%s", out)
	}
	if out := get("get", "pv"); strings.Count(out, "Bound") != 2 || !strings.Contains(out, "default/data-db-1") {
		t.Fatalf("get pv:\n%s", out)
	}
	if out := get("get", "storageclass"); !strings.Contains(out, "local-path (default)") {
		t.Fatalf("get storageclass:\n%s", out)
	}
	// Pod db-0 started before db-1 (OrderedReady).
	start := func(pod string) time.Time {
		ts, err := time.Parse(time.RFC3339, get("get", "pod", pod, "-o", "jsonpath={.status.startTime}"))
		if err != nil {
			t.Fatalf("pod %s: start time: %v", pod, err)
		}
		return ts
	}
	if start("db-1").Before(start("db-0")) {
		t.Fatal("db-1 started before db-0")
	}
	node := func(pod string) string { return get("get", "pod", pod, "-o", "jsonpath={.spec.nodeName}") }
	claimNode := func(claim string) string {
		return get("get", "pvc", claim, "-o", `jsonpath={.metadata.annotations.volume\.kubernetes\.io/selected-node}`)
	}
	for _, i := range []string{"0", "1"} {
		if n, c := node("db-"+i), claimNode("data-db-"+i); n == "" || n != c {
			t.Fatalf("pod db-%s on %q, its claim on %q", i, n, c)
		}
		must(k1("exec", "db-"+i, "--", "/app", "writefile", "/data/who", "db-"+i))
	}

	// A deleted pod comes back, same name, same peer, same data.
	n0 := node("db-0")
	must(k1("delete", "pod", "db-0"))
	must(k1("rollout", "status", "statefulset/db", "--timeout=120s"))
	harness.Eventually(t, 60*time.Second, "db-0 back with its data", func() (bool, string) {
		out, err := k1("exec", "db-0", "--", "/app", "readfile", "/data/who")
		return err == nil && strings.TrimSpace(out) == "db-0", out
	})
	if n := node("db-0"); n != n0 {
		t.Fatalf("db-0 came back on %s, its data is on %s", n, n0)
	}

	// Kill the peer of a pod (not st1, which the test talks to); its
	// containers go on running.
	names := []string{"st1", "st2", "st3"}
	victimPod := "db-1"
	if node("db-1") == "st1" {
		victimPod = "db-0"
	}
	vn := node(victimPod)
	victim := peers[slices.Index(names, vn)]
	victim.Kill()
	harness.Eventually(t, 60*time.Second, victimPod+" shown Unknown (NodeLost)", func() (bool, string) {
		out, _ := k1("get", "pod", victimPod, "-o", "wide")
		return strings.Contains(out, "Unknown") || strings.Contains(out, "NodeLost"), out
	})
	// Never a second copy: for 15 s it stays bound to the dead peer.
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if out, _ := k1("get", "pods", "-o", "wide"); strings.Count(out, victimPod+" ") != 1 || node(victimPod) != vn {
			t.Fatalf("%s started again while its peer %s may run it:\n%s", victimPod, vn, out)
		}
		time.Sleep(time.Second)
	}
	// Deleted by a user, it is made again, bound to its claim's peer, and
	// waits Pending: never started empty elsewhere.
	must(k1("delete", "pod", victimPod, "--wait=false"))
	harness.Eventually(t, 60*time.Second, victimPod+" Pending on its claim's peer", func() (bool, string) {
		out, _ := k1("get", "pod", victimPod, "-o", "jsonpath={.status.phase} {.spec.nodeName} {.status.message}")
		return strings.HasPrefix(out, "Pending "+vn) && strings.Contains(out, "not alive"), out
	})
	victim.Start()
	harness.Eventually(t, 120*time.Second, victimPod+" runs again on "+vn+" with its data", func() (bool, string) {
		out, err := k1("exec", victimPod, "--", "/app", "readfile", "/data/who")
		return err == nil && strings.TrimSpace(out) == victimPod && node(victimPod) == vn, out
	})

	// Scale up then down: the highest ordinals go first, claims stay.
	must(k1("scale", "statefulset", "db", "--replicas=3"))
	must(k1("rollout", "status", "statefulset/db", "--timeout=120s"))
	must(k1("scale", "statefulset", "db", "--replicas=1"))
	harness.Eventually(t, 90*time.Second, "db scaled to 1", func() (bool, string) {
		out, _ := k1("get", "pods", "-l", "app=db", "-o", "name")
		return strings.TrimSpace(out) == "pod/db-0", out
	})
	if out := get("get", "pvc", "-o", "name"); strings.Count(out, "persistentvolumeclaim/") != 3 {
		t.Fatalf("claims after scaling down (Retain): %s", out)
	}

	// Deleting the set deletes its pods; deleting a claim deletes its data
	// on its peer.
	must(k1("delete", "statefulset", "db"))
	c1 := claimNode("data-db-1")
	must(k1("delete", "pvc", "data-db-1"))
	holder := peers[slices.Index(names, c1)]
	harness.Eventually(t, 90*time.Second, "the data of data-db-1 deleted on "+c1, func() (bool, string) {
		ents, _ := filepath.Glob(filepath.Join(holder.DataDir, "pods", "claims", "default_data-db-1_*"))
		pods, _ := k1("get", "pods", "-l", "app=db", "-o", "name")
		return len(ents) == 0 && strings.TrimSpace(pods) == "", strings.Join(ents, " ") + pods
	})

	// hostPath: under the allowed prefix, the pod writes the peer's file;
	// elsewhere the pod is refused, naming the field and the flag.
	hp := func(name, path string) string {
		return `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"` + name + `"},"spec":{"restartPolicy":"Never",` +
			`"containers":[{"name":"c","image":"example/web:1","command":["/app","writefile","/h/out","from-pod"],"volumeMounts":[{"name":"h","mountPath":"/h"}]}],` +
			`"volumes":[{"name":"h","hostPath":{"path":"` + path + `","type":"DirectoryOrCreate"}}]}}`
	}
	hf := filepath.Join(t.TempDir(), "hp.json")
	if err := os.WriteFile(hf, []byte(hp("hp", filepath.Join(hostDir, "sub"))), 0o644); err != nil {
		t.Fatal(err)
	}
	must(k1("apply", "-f", hf))
	harness.Eventually(t, 90*time.Second, "pod hp wrote the peer's file", func() (bool, string) {
		b, err := os.ReadFile(filepath.Join(hostDir, "sub", "out"))
		return err == nil && string(b) == "from-pod", string(b)
	})
	if err := os.WriteFile(hf, []byte(hp("etc", "/etc")), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := k1("apply", "-f", hf); err == nil || !strings.Contains(out, "spec.volumes[0].hostPath.path") || !strings.Contains(out, "--allow-host-path") {
		t.Fatalf("a hostPath of /etc: %v\n%s", err, out)
	}

	// A deployment with a claim (the usual single-replica database): its
	// pod binds the claim where it runs, and a new template's pod goes
	// there too, to the same data.
	f2 := filepath.Join(t.TempDir(), "app.yaml")
	if err := os.WriteFile(f2, []byte(`apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: cache
spec:
  accessModes: [ReadWriteOnce]
  resources:
    requests:
      storage: 100Mi
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app
spec:
  replicas: 1
  strategy: {type: Recreate}
  selector:
    matchLabels: {app: app}
  template:
    metadata:
      labels: {app: app}
    spec:
      containers:
      - name: app
        image: example/web:1
        volumeMounts:
        - {name: cache, mountPath: /cache}
      volumes:
      - name: cache
        persistentVolumeClaim:
          claimName: cache
`), 0o644); err != nil {
		t.Fatal(err)
	}
	must(k1("apply", "-f", f2))
	must(k1("rollout", "status", "deployment/app", "--timeout=120s"))
	must(k1("exec", "deploy/app", "--", "/app", "writefile", "/cache/v", "one"))
	cn := claimNode("cache")
	if cn == "" {
		t.Fatal("claim cache not bound after its pod ran")
	}
	must(k1("set", "image", "deployment/app", "app=example/web:2"))
	must(k1("rollout", "status", "deployment/app", "--timeout=120s"))
	harness.Eventually(t, 60*time.Second, "the new pod of app reads the claim's data on "+cn, func() (bool, string) {
		out, err := k1("exec", "deploy/app", "--", "/app", "readfile", "/cache/v")
		nodes, _ := k1("get", "pods", "-l", "app=app", "-o", "jsonpath={.items[*].spec.nodeName}")
		return err == nil && strings.TrimSpace(out) == "one" && strings.TrimSpace(nodes) == cn, out + " on " + nodes
	})
}
