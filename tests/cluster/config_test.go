package cluster

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/crdt"
	"github.com/chorus-sh/chorus/tests/harness"
)

const configApp = `apiVersion: apps/v1
kind: Deployment
metadata: {name: cfgweb}
spec:
  replicas: 1
  selector: {matchLabels: {app: cfgweb}}
  template:
    metadata: {labels: {app: cfgweb}}
    spec:
      volumes:
      - {name: cfg, configMap: {name: app-config}}
      - {name: creds, secret: {secretName: db, items: [{key: password, path: db/password, mode: 0400}]}}
      - {name: scratch, emptyDir: {}}
      - {name: mem, emptyDir: {medium: Memory, sizeLimit: 8Mi}}
      containers:
      - name: web
        image: example/web:1
        env:
        - {name: GREETING, valueFrom: {configMapKeyRef: {name: app-config, key: greeting}}}
        - {name: DB_PASSWORD, valueFrom: {secretKeyRef: {name: db, key: password}}}
        - {name: MAYBE, valueFrom: {secretKeyRef: {name: db, key: nope, optional: true}}}
        - {name: MY_POD, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
        - {name: MY_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
        - {name: MEM_MI, valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1Mi}}}
        envFrom:
        - {prefix: CFG_, configMapRef: {name: app-config}}
        resources: {limits: {memory: 64Mi}}
        volumeMounts:
        - {name: cfg, mountPath: /etc/app}
        - {name: cfg, mountPath: /etc/greeting-fixed, subPath: greeting}
        - {name: creds, mountPath: /etc/creds}
        - {name: scratch, mountPath: /scratch}
        - {name: mem, mountPath: /mem}
`

// TestConfigMapsAndSecrets drives the real kubectl through two peers:
// a ConfigMap and a Secret made with kubectl create, a Deployment that
// reads them as env and files, a change of the ConfigMap reaching the
// mounted file (not the env), Secrets shown as base64 and never stored in
// clear on any peer, and a missing key leaving the container waiting.
func TestConfigMapsAndSecrets(t *testing.T) {
	peers := startCluster(t, 2, 161, "cfg")
	loadWebImages(t, peers[0])
	k1, k2 := kubectlFor(t, peers[0]), kubectlFor(t, peers[1])
	must := kubectlMust(t)
	const password = "pa55-w0rd-very-secret"
	must(k1("create", "configmap", "app-config", "--from-literal=greeting=hello", "--from-literal=mode=fast"))
	must(k2("create", "secret", "generic", "db", "--from-literal=password="+password))

	// Listed through either peer with Kubernetes' columns.
	harness.Eventually(t, 30*time.Second, "get cm,secrets through peer 2", func() (bool, string) {
		out, err := k2("get", "cm,secrets")
		ok := err == nil && strings.Contains(out, "configmap/app-config") && strings.Contains(out, "secret/db") &&
			strings.Contains(out, "Opaque") && strings.Contains(out, "DATA")
		return ok, out
	})
	// The Secret is base64 in -o json, never clear.
	harness.Eventually(t, 30*time.Second, "secret readable through peer 1", func() (bool, string) {
		out, err := k1("get", "secret", "db", "-o", "json")
		return err == nil && strings.Contains(out, base64.StdEncoding.EncodeToString([]byte(password))) && !strings.Contains(out, password), out
	})

	manifest := filepath.Join(t.TempDir(), "app.yaml")
	if err := os.WriteFile(manifest, []byte(configApp), 0o600); err != nil {
		t.Fatal(err)
	}
	must(k1("apply", "-f", manifest))
	must(k1("rollout", "status", "deploy/cfgweb", "--timeout=120s"))

	exec := func(args ...string) (string, error) {
		return k2(append([]string{"exec", "deploy/cfgweb", "--", "/app"}, args...)...)
	}
	expect := func(want string, args ...string) {
		t.Helper()
		harness.Eventually(t, 30*time.Second, strings.Join(args, " ")+" = "+want, func() (bool, string) {
			out, err := exec(args...)
			return err == nil && strings.TrimSpace(out) == want, out
		})
	}
	expect("hello", "env", "GREETING")
	expect(password, "env", "DB_PASSWORD")
	expect("hello", "env", "CFG_greeting")
	expect("fast", "env", "CFG_mode")
	expect("64", "env", "MEM_MI")
	if out, err := exec("env", "MAYBE"); err == nil {
		t.Fatalf("an optional missing key set MAYBE: %s", out)
	}
	pod := strings.TrimSpace(must(k1("get", "pods", "-l", "app=cfgweb", "-o", "jsonpath={.items[0].metadata.name}")))
	expect(pod, "env", "MY_POD")
	podIP := strings.TrimSpace(must(k1("get", "pods", "-l", "app=cfgweb", "-o", "jsonpath={.items[0].status.podIP}")))
	expect(podIP, "env", "MY_IP")
	expect("hello", "readfile", "/etc/app/greeting")
	expect("hello", "readfile", "/etc/greeting-fixed")
	expect(password, "readfile", "/etc/creds/db/password")
	must(exec("writefile", "/scratch/x", "written"))
	expect("written", "readfile", "/scratch/x")
	must(exec("writefile", "/mem/x", "in memory"))
	expect("in memory", "readfile", "/mem/x")
	if out, err := exec("writefile", "/etc/app/new", "x"); err == nil {
		t.Fatalf("a configMap volume is writable: %s", out)
	}

	// A change of the ConfigMap reaches the mounted file within a minute;
	// the env and the subPath mount keep the value they started with.
	start := time.Now()
	must(k2("patch", "configmap", "app-config", "--type=merge", "-p", `{"data":{"greeting":"bonjour"}}`))
	harness.Eventually(t, 60*time.Second, "the mounted file follows the ConfigMap", func() (bool, string) {
		out, err := exec("readfile", "/etc/app/greeting")
		return err == nil && out == "bonjour", out
	})
	t.Logf("ConfigMap change reached the mounted file after %v", time.Since(start).Round(100*time.Millisecond))
	expect("hello", "env", "GREETING")
	expect("hello", "readfile", "/etc/greeting-fixed")

	// No peer holds the password in clear (nor its base64) in its state.
	time.Sleep(500 * time.Millisecond) // merged deltas are appended at once, synced within 100 ms
	for _, p := range peers {
		// The snapshot (once written) and the journal's log after it.
		snap, err := os.ReadFile(filepath.Join(p.DataDir, "state.crdt"))
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		log, err := os.ReadFile(filepath.Join(p.DataDir, "state.crdt"+crdt.LogSuffix))
		if err != nil {
			t.Fatal(err)
		}
		b := append(snap, log...)
		if bytes.Contains(b, []byte(password)) || bytes.Contains(b, []byte(base64.StdEncoding.EncodeToString([]byte(password)))) {
			t.Fatalf("peer %s's state.crdt holds the secret's value", p.Name)
		}
		if !bytes.Contains(b, []byte("app-config")) || !bytes.Contains(b, []byte("sealed:data")) {
			t.Fatalf("peer %s's state.crdt lacks the objects", p.Name)
		}
	}

	// An immutable ConfigMap refuses a change of its data.
	must(k1("create", "configmap", "frozen", "--from-literal=a=1"))
	must(k1("patch", "configmap", "frozen", "--type=merge", "-p", `{"immutable":true}`))
	if out, err := k1("patch", "configmap", "frozen", "--type=merge", "-p", `{"data":{"a":"2"}}`); err == nil || !strings.Contains(out, "immutable") {
		t.Fatalf("patch of an immutable ConfigMap: %v\n%s", err, out)
	}

	// A missing required key: the container waits with
	// CreateContainerConfigError and an event names the key.
	broken := strings.NewReplacer("name: cfgweb", "name: broken", "app: cfgweb", "app: broken", "key: greeting}", "key: nokey}").Replace(configApp)
	if err := os.WriteFile(manifest, []byte(broken), 0o600); err != nil {
		t.Fatal(err)
	}
	must(k1("apply", "-f", manifest))
	harness.Eventually(t, 60*time.Second, "broken pod waits with CreateContainerConfigError", func() (bool, string) {
		out, err := k1("get", "pods", "-l", "app=broken", "-o", "json")
		if err != nil {
			return false, out
		}
		var l struct {
			Items []struct {
				Status struct {
					ContainerStatuses []struct {
						State struct {
							Waiting *struct{ Reason, Message string } `json:"waiting"`
						} `json:"state"`
					} `json:"containerStatuses"`
				} `json:"status"`
			} `json:"items"`
		}
		if json.Unmarshal([]byte(out), &l) != nil || len(l.Items) != 1 || len(l.Items[0].Status.ContainerStatuses) != 1 {
			return false, out
		}
		w := l.Items[0].Status.ContainerStatuses[0].State.Waiting
		return w != nil && w.Reason == "CreateContainerConfigError" && strings.Contains(w.Message, "couldn't find key nokey in ConfigMap default/app-config"), out
	})
	harness.Eventually(t, 30*time.Second, "an event names the missing key", func() (bool, string) {
		out, err := k2("get", "events")
		return err == nil && strings.Contains(out, "couldn't find key nokey in ConfigMap default/app-config"), out
	})
}
