package cluster

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/chorus-sh/chorus/lab"
	"github.com/chorus-sh/chorus/runtime"
	"github.com/chorus-sh/chorus/tests/harness"
	"github.com/chorus-sh/chorus/tests/images"
)

// BenchmarkLabFailover times a failover with the default gossip profile on
// lossy links: five peers made by `chorus cluster create`, every machine
// losing the given share of its packets, 10 replicas of the web image with
// a readiness probe. Three times, the peer holding the most replicas is
// killed with its containers (as a dead machine) and the time runs until
// the Kubernetes API of the first peer shows 10 Ready replicas, none on
// the dead peer; then the peer is started again and the cluster settles.
//
//	go test -run '^$' -bench LabFailover -benchtime 1x ./tests/cluster/
func BenchmarkLabFailover(b *testing.B) {
	for _, loss := range []float64{0, 1, 5} {
		b.Run(fmt.Sprintf("loss=%g", loss), func(b *testing.B) {
			for range b.N {
				labFailover(b, loss)
			}
		})
	}
}

func labFailover(b *testing.B, loss float64) {
	name := fmt.Sprintf("lf%d", os.Getpid()%10000)
	l := lab.Lab{Name: name, Subnet: netip.MustParsePrefix("10.214.205.0/24")}
	dir := b.TempDir()
	create := []string{"cluster", "create", "--name", name, "--peers", "5", "--subnet", l.Subnet.String(), "--dir", dir}
	run := func(name string, args ...string) {
		b.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
		defer cancel()
		if out, err := exec.CommandContext(ctx, name, args...).CombinedOutput(); err != nil {
			b.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
	}
	b.Cleanup(func() {
		_ = exec.Command(bin, "cluster", "delete", "--name", name, "--dir", dir).Run()
		_ = l.Delete()
	})
	run(bin, create...)
	kc := filepath.Join(dir, name, "kubeconfig")
	img, err := images.Build(context.Background(), "web", images.CacheDir(), []string{"example/web:1"}, images.FormatDocker)
	if err != nil {
		b.Fatal(err)
	}
	run(bin, "--kubeconfig", kc, "image", "load", img)
	manifest := filepath.Join(dir, "app.yaml")
	if err := os.WriteFile(manifest, []byte(harness.WebDeployment("web", 10)), 0o644); err != nil {
		b.Fatal(err)
	}
	k := harness.Kubectl(b)
	run(k, "--kubeconfig", kc, "apply", "-f", manifest)
	run(k, "--kubeconfig", kc, "rollout", "status", "deployment/web", "--timeout=180s")
	ms := l.Machines()
	for _, m := range ms {
		if err := l.Shape(m, lab.Link{Loss: loss}); err != nil {
			b.Fatal(err)
		}
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kc)
	if err != nil {
		b.Fatal(err)
	}
	cfg.Timeout = 2 * time.Second
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	// readyOn counts the Ready web pods per node, as the first peer's API
	// lists them.
	readyOn := func() map[string]int {
		pods, err := cs.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			return nil
		}
		on := map[string]int{}
		for _, p := range pods.Items {
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
					on[p.Spec.NodeName]++
				}
			}
		}
		return on
	}
	var took []float64
	for range 3 {
		on := readyOn()
		victim := ms[1] // never the first: its API is the one asked
		for _, m := range ms[1:] {
			if on[m.Name] > on[victim.Name] {
				victim = m
			}
		}
		pid, err := os.ReadFile(filepath.Join(dir, name, victim.Name+".pid"))
		if err != nil {
			b.Fatal(err)
		}
		p, err := strconv.Atoi(strings.TrimSpace(string(pid)))
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if err := syscall.Kill(p, syscall.SIGKILL); err != nil {
			b.Fatal(err)
		}
		runtime.KillPeerProcesses(filepath.Join(dir, name, victim.Name))
		for {
			on := readyOn()
			total := 0
			for _, n := range on {
				total += n
			}
			if on != nil && on[victim.Name] == 0 && total == 10 {
				took = append(took, time.Since(start).Seconds())
				break
			}
			if time.Since(start) > 2*time.Minute {
				b.Fatalf("%s killed 2 minutes ago: Ready replicas %v", victim.Name, on)
			}
			time.Sleep(50 * time.Millisecond)
		}
		run(bin, create...) // starts the killed peer again, waits until all are Ready
		if err := l.Shape(victim, lab.Link{Loss: loss}); err != nil {
			b.Fatal(err)
		}
		run(k, "--kubeconfig", kc, "rollout", "status", "deployment/web", "--timeout=180s")
		time.Sleep(5 * time.Second) // the restarted peer takes its share back
	}
	slices.Sort(took)
	b.ReportMetric(took[len(took)/2], "failover_median_s")
	b.ReportMetric(took[len(took)-1], "failover_max_s")
	b.Logf("loss %g%%: failover %v s", loss, took)
}
