package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/crdt"
	"github.com/chorus-sh/chorus/tests/harness"
	testimages "github.com/chorus-sh/chorus/tests/images"
)

// send makes one API request as an attacker (or a careless user) would,
// and returns the status code and the body.
func send(t *testing.T, p *harness.Peer, method, path, host string, hdr map[string]string, body []byte) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+p.API+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	c := http.Client{Timeout: 30 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// serving checks that the peer still answers and still runs its pod.
func serving(t *testing.T, p *harness.Peer, after string) {
	t.Helper()
	if !p.Running() {
		t.Fatalf("peer died after %s:\n%s", after, p.Log())
	}
	var v map[string]string
	if err := p.GetJSON("/version", &v); err != nil {
		t.Fatalf("after %s the API does not answer: %v", after, err)
	}
}

// diskUsage returns the bytes of disk the files under dir take (blocks
// allocated, so that sparse files count as they are stored).
func diskUsage(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed while walking
			}
			return err
		}
		if info, err := d.Info(); err == nil {
			if st, ok := info.Sys().(*syscall.Stat_t); ok {
				n += st.Blocks * 512
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Each attack of issue 13 against a real peer fails, and the peer keeps
// serving: a scale to 2^31-1, replicas that cannot run, a YAML alias bomb,
// cross-site requests, idle connections and trickling bodies, a hop to the
// host's own address, and poisonous values on its own disk.
func TestAttacksFailAndPeerKeepsServing(t *testing.T) {
	// An --insecure peer: the open API these attacks were first made
	// against (no TLS, no token), where the limits and the cross-site
	// checks are all that stands in their way.
	p := harness.NewPeer(t, testEnv.bin, "lim", "127.0.0.29", "--insecure")
	p.Start()
	if out, err := p.CLI("image", "load", testEnv.images["web"]); err != nil {
		t.Fatalf("image load: %v\n%s\n%s", err, out, p.Log())
	}
	if _, err := p.CLI("apply", "-f", writeManifest(t, harness.WebDeployment("web", 1))); err != nil {
		t.Fatal(err)
	}
	pod := readyPods(t, p, 1)[0]

	// A trickling body, started first: it must be cut within the body
	// timeout (30 s) while everything else goes on.
	trickle, err := net.Dial("tcp", p.API)
	if err != nil {
		t.Fatal(err)
	}
	defer trickle.Close()
	fmt.Fprintf(trickle, "POST /api/v1/namespaces HTTP/1.1\r\nHost: %s\r\nContent-Type: application/yaml\r\nContent-Length: 100000\r\n\r\n", p.API)
	trickleStart := time.Now()
	trickleCut := make(chan time.Duration, 1)
	go func() {
		buf := make([]byte, 4096)
		for {
			trickle.SetReadDeadline(time.Now().Add(time.Second))
			_, err := trickle.Read(buf)
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				if _, err := trickle.Write([]byte("a")); err != nil {
					trickleCut <- time.Since(trickleStart)
					return
				}
				continue
			}
			if err != nil {
				trickleCut <- time.Since(trickleStart)
				return
			}
		}
	}()

	t.Run("scale to 2^31-1", func(t *testing.T) {
		// As kubectl scale sends it.
		code, body := send(t, p, "PATCH", "/apis/apps/v1/namespaces/default/deployments/web/scale", "",
			map[string]string{"Content-Type": "application/merge-patch+json"}, []byte(`{"spec":{"replicas":2147483647}}`))
		if code != http.StatusUnprocessableEntity || !strings.Contains(body, "spec.replicas") || !strings.Contains(body, `"kind":"Status"`) {
			t.Fatalf("kubernetes scale patch: %d %s", code, body)
		}
		code, body = send(t, p, "PUT", "/apis/apps/v1/namespaces/default/deployments/web/scale", "",
			map[string]string{"Content-Type": "application/json"},
			[]byte(`{"kind":"Scale","apiVersion":"autoscaling/v1","metadata":{"name":"web","namespace":"default"},"spec":{"replicas":2147483647}}`))
		if code != http.StatusUnprocessableEntity || !strings.Contains(body, "spec.replicas") {
			t.Fatalf("kubernetes scale put: %d %s", code, body)
		}
		time.Sleep(2 * time.Second)
		serving(t, p, "a scale to 2^31-1")
		var d api.Deployment
		if err := p.GetJSON("/apis/apps/v1/namespaces/default/deployments/web", &d); err != nil || *d.Spec.Replicas != 1 {
			t.Fatalf("deployment after the refused scale: %v %v", d.Spec.Replicas, err)
		}
	})

	t.Run("replicas that cannot run", func(t *testing.T) {
		before := rssKiB(t, p)
		var m strings.Builder
		for i := range 20 {
			if i > 0 {
				m.WriteString("---\n")
			}
			m.WriteString(strings.Replace(harness.WebDeployment(fmt.Sprintf("nowhere%02d", i), 10000),
				"      containers:", "      nodeSelector: {disk: ssd}\n      containers:", 1))
		}
		if out, err := p.CLI("apply", "-f", writeManifest(t, m.String())); err != nil {
			t.Fatalf("apply: %v %s", err, out)
		}
		harness.Eventually(t, 30*time.Second, "200,000 pending replicas", func() (bool, string) {
			self, err := p.Self()
			if err != nil {
				return false, err.Error()
			}
			st := self.Status.Replication
			return st.PendingReplicas == 200000, fmt.Sprintf("%d pending", st.PendingReplicas)
		})
		time.Sleep(3 * time.Second) // a few reconcile passes
		after := rssKiB(t, p)
		t.Logf("agent RSS %d MiB before, %d MiB with 200,000 pending replicas", before>>10, after>>10)
		if after-before > 150<<10 {
			t.Fatalf("200,000 pending replicas took the agent from %d to %d MiB", before>>10, after>>10)
		}
		serving(t, p, "200,000 pending replicas")
		if _, err := p.CLI("delete", "-f", writeManifest(t, m.String())); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("YAML alias bomb", func(t *testing.T) {
		var b strings.Builder
		b.WriteString("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: bomb\n  annotations:\n    big: &big " + strings.Repeat("x", 1<<20) + "\n")
		for i := range 400 {
			fmt.Fprintf(&b, "    k%d: *big\n", i)
		}
		code, body := send(t, p, "POST", "/api/v1/namespaces", "", map[string]string{"Content-Type": "application/yaml"}, []byte(b.String()))
		if code != http.StatusBadRequest || !strings.Contains(body, "alias *big") || !strings.Contains(body, "line ") {
			t.Fatalf("alias bomb: %d %.300s", code, body)
		}
		serving(t, p, "a YAML alias bomb")
	})

	t.Run("cross-site requests", func(t *testing.T) {
		ns := []byte("apiVersion: v1\nkind: Namespace\nmetadata: {name: csrf}\n")
		for _, c := range []struct {
			what, method, path, host string
			hdr                      map[string]string
			want                     int
		}{
			{"a form post (text/plain)", "POST", "/api/v1/namespaces", "", map[string]string{"Content-Type": "text/plain"}, http.StatusUnsupportedMediaType},
			{"a no-cors fetch of leave", "POST", "/apis/chorus.sh/v1/peers/lim/leave", "", nil, http.StatusUnsupportedMediaType},
			{"another site's origin", "POST", "/api/v1/namespaces", "", map[string]string{"Content-Type": "application/yaml", "Origin": "http://evil.example"}, http.StatusForbidden},
			{"DNS rebinding", "GET", "/api/v1/pods", "evil.example:7070", nil, http.StatusForbidden},
		} {
			if code, body := send(t, p, c.method, c.path, c.host, c.hdr, ns); code != c.want {
				t.Errorf("%s: %d, want %d: %s", c.what, code, c.want, body)
			}
		}
		var nss api.List
		if err := p.GetJSON("/api/v1/namespaces", &nss); err != nil || strings.Contains(fmt.Sprint(nss.Items), "csrf") {
			t.Fatalf("a refused request created a namespace: %v %v", nss.Items, err)
		}
		serving(t, p, "cross-site requests")
		// The CLI still works: it sends application/yaml.
		if _, err := p.CLI("apply", "-f", writeManifest(t, string(ns))); err != nil {
			t.Fatalf("CLI apply: %v", err)
		}
	})

	t.Run("idle connections", func(t *testing.T) {
		var idle []net.Conn
		defer func() {
			for _, c := range idle {
				c.Close()
			}
		}()
		for range 3000 {
			c, err := net.Dial("tcp", p.API)
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			idle = append(idle, c)
		}
		for range 3 {
			serving(t, p, "3,000 idle connections")
		}
	})

	t.Run("hop to the host", func(t *testing.T) {
		hop := p.Bind + ":7948"
		octet := strings.Split(p.Bind, ".")[3]
		gateway := "10.88." + octet + ".1"
		try := func(target string) byte {
			c, err := net.DialTimeout("tcp", hop, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			c.Write(append([]byte{'C', 'H', 'O', 'P', 1, byte(len(target))}, target...))
			ans := make([]byte, 1)
			if _, err := io.ReadFull(c, ans); err != nil {
				t.Fatalf("hop to %s: %v", target, err)
			}
			return ans[0]
		}
		for _, target := range []string{gateway + ":7070", gateway + ":22", p.Bind + ":7070"} {
			if ans := try(target); ans != 1 {
				t.Errorf("hop to the host's %s answered %d, want 1 (refused)", target, ans)
			}
		}
		if ans := try(pod.Status.PodIP + ":8080"); ans != 0 {
			t.Errorf("hop to the pod %s:8080 answered %d, want 0", pod.Status.PodIP, ans)
		}
		serving(t, p, "hops to the host")
	})

	t.Run("gzip bomb image", func(t *testing.T) {
		// 2 GiB of zeros in one layer, about 2 MB compressed: within the
		// default --max-image-size (4Gi), over the default expansion bound.
		start := time.Now()
		bomb, err := testimages.ZeroBomb(2 << 30)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "bomb.tar")
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := testimages.WriteDocker(f, bomb, "example/bomb:1"); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(path)
		if err != nil || fi.Size() > 4<<20 {
			t.Fatalf("bomb archive: %v, %v: want at most 4 MiB", fi.Size(), err)
		}
		t.Logf("bomb archive of %d bytes for 2 GiB of zeros, built in %v", fi.Size(), time.Since(start).Round(time.Millisecond))

		before := diskUsage(t, p.DataDir)
		start = time.Now()
		out, err := p.CLI("image", "load", path)
		if err == nil || !strings.Contains(err.Error(), "expands more than") || !strings.Contains(err.Error(), "over the limit of 100 times (--max-image-expansion)") {
			t.Fatalf("loading the bomb: %v\n%s", err, out)
		}
		t.Logf("refused in %v: %v", time.Since(start).Round(time.Millisecond), err)
		serving(t, p, "a gzip bomb image")
		out, err = p.CLI("image", "ls")
		if err != nil || strings.Contains(out, "bomb") || !strings.Contains(out, "example/web") {
			t.Errorf("image ls after the bomb: %v\n%s", err, out)
		}
		after := diskUsage(t, p.DataDir)
		t.Logf("data dir: %d KiB before, %d KiB after", before>>10, after>>10)
		if after > before+8<<20 {
			t.Errorf("the data dir grew by %d KiB", (after-before)>>10)
		}
	})

	select {
	case d := <-trickleCut:
		if d > 45*time.Second {
			t.Errorf("trickling body cut after %s", d)
		}
	case <-time.After(60 * time.Second):
		t.Error("a trickling body was not cut within 60 s")
	}

	t.Run("poison on disk", func(t *testing.T) {
		p.Stop()
		path := filepath.Join(p.DataDir, "state.crdt")
		st, err := crdt.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		clock := crdt.NewClock("lim", time.Now)
		_ = clock.Observe(st.MaxStamp())
		st.PutFields("Deployment/default/web", map[string]json.RawMessage{"spec.replicas": json.RawMessage("2147483647")}, clock.Now())
		st.PutFields("Deployment/default/junk", map[string]json.RawMessage{"kind": json.RawMessage(`"Deployment"`), "spec.replicas": json.RawMessage(`"many"`)}, clock.Now())
		if err := st.Save(path); err != nil {
			t.Fatal(err)
		}
		p.Start()
		harness.Eventually(t, 20*time.Second, "invalid objects reported", func() (bool, string) {
			self, err := p.Self()
			if err != nil {
				return false, err.Error()
			}
			s := self.Status.Replication
			return len(s.InvalidObjects) == 2 && strings.Contains(s.InvalidObjects[1].Reason, "spec.replicas"), fmt.Sprintf("%+v", s.InvalidObjects)
		})
		time.Sleep(2 * time.Second)
		serving(t, p, "reading replicas=2^31-1 from its disk")
		out, err := p.CLI("get", "events")
		if err != nil || !strings.Contains(out, "InvalidObject") {
			t.Fatalf("events: %v\n%s", err, out)
		}
		// Re-applying replaces the poisoned object.
		if _, err := p.CLI("apply", "-f", writeManifest(t, harness.WebDeployment("web", 1))); err != nil {
			t.Fatal(err)
		}
		readyPods(t, p, 1)

		// A state file that is not one: set aside, the peer starts empty.
		p.Stop()
		if err := os.WriteFile(path, []byte("CHORUS garbage"), 0o644); err != nil {
			t.Fatal(err)
		}
		p.Start()
		self, err := p.Self()
		if err != nil || !strings.Contains(self.Status.Replication.StateFileSetAside, "moved to") {
			t.Fatalf("figures after a corrupt state file: %+v %v", self.Status, err)
		}
		serving(t, p, "a corrupt state file")
	})
}
