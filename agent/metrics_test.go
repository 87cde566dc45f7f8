package agent

import (
	"bufio"
	"bytes"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/gossip"
	"github.com/chorus-sh/chorus/proxy"
	"github.com/chorus-sh/chorus/runtime"
)

func testPod(name, phase string, ready bool, restarts int32) api.Pod {
	p := api.Pod{Metadata: api.ObjectMeta{Name: name, Namespace: "default"}, Status: api.PodStatus{Phase: phase}}
	cond := "False"
	if ready {
		cond = "True"
	}
	p.Status.Conditions = []api.PodCondition{{Type: "Ready", Status: cond}}
	p.Status.ContainerStatuses = []api.ContainerStatus{{Name: "web", Ready: ready, RestartCount: restarts}}
	return p
}

func testMetricsInput() metricsInput {
	return metricsInput{
		Node: "n1", Version: `v1.0 "quoted" \ back`, Start: time.Unix(1700000000, 500_000_000),
		Members: []gossip.Member{
			{Name: "n1", Status: gossip.StatusAlive}, {Name: "n2", Status: gossip.StatusAlive},
			{Name: "n3", Status: gossip.StatusDead}, {Name: "n4", Status: gossip.StatusLeft},
		},
		LocalPods: []api.Pod{
			testPod("web-0", api.PodRunning, true, 0), testPod("web-1", api.PodRunning, true, 2),
			testPod("web-2", api.PodRunning, false, 1), testPod("web-3", api.PodPending, false, 0),
			testPod("odd", "", false, 0),
		},
		Pending:      3,
		Objects:      map[string]int{api.KindDeployment: 2, api.KindService: 1, api.KindNamespace: 1, api.KindDaemonSet: 0},
		DeltasMerged: 42, DeltasRejected: 1, MalformedMessages: 5, AntiEntropyRounds: 7, ReplBytesOut: 12345678901, ReplBytesIn: 9,
		BlobsFetched: 3, BytesFetched: 4096, BadBlobs: 1, BlobsServed: 2,
		Gossip: gossip.Stats{GossipRejected: 4, PubsubRejected: 6, StreamsRejected: 8, DeltasDropped: 10, EventsDropped: 12},
		Proxy:  proxy.Stats{Accepted: 100, NoEndpoints: 2, Active: 3, Listeners: 2, HopsServed: 11, DNSQueries: 50, DNSNXDomain: 4},
		Containers: []runtime.Series{
			{Namespace: "default", Pod: "web-0", Container: "web", CPUNanos: 2_500_000_000, Memory: 1 << 20, SampledAt: time.Unix(1700000100, 0)},
			{Namespace: "default", Pod: "web-1", Container: "web"}, // not sampled yet: left out
		},
		NodeUsage: runtime.Series{CPUNanos: 7_000_000_000, Memory: 3 << 30, SampledAt: time.Unix(1700000100, 0)},
	}
}

func TestMetricsUsage(t *testing.T) {
	out := string(renderMetrics(testMetricsInput()))
	for _, want := range []string{
		`container_cpu_usage_seconds_total{container="web",namespace="default",pod="web-0"} 2.5`,
		`container_memory_working_set_bytes{container="web",namespace="default",pod="web-0"} 1048576`,
		"node_cpu_usage_seconds_total 7\n",
		"node_memory_working_set_bytes 3221225472\n",
		"# TYPE container_cpu_usage_seconds_total counter",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in\n%s", want, out)
		}
	}
	if strings.Contains(out, `pod="web-1"`) {
		t.Error("a container not sampled yet is reported")
	}
}

// The lines a scraper reads: HELP, TYPE, then samples "name{labels} value".
var (
	helpLine   = regexp.MustCompile(`^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) \S.*$`)
	typeLine   = regexp.MustCompile(`^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge)$`)
	sampleLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*")*\})? (-?[0-9]+(?:\.[0-9]+)?(?:e[+-]?[0-9]+)?|NaN|[+-]Inf)$`)
)

func TestMetricsFormat(t *testing.T) {
	out := string(renderMetrics(testMetricsInput()))
	if !strings.HasSuffix(out, "\n") {
		t.Fatal("exposition does not end with a newline")
	}
	types := map[string]string{}
	var lastFamily, lastSample string
	sc := bufio.NewScanner(strings.NewReader(out))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "# HELP "):
			m := helpLine.FindStringSubmatch(line)
			if m == nil {
				t.Fatalf("line %d: bad HELP: %q", n, line)
			}
			if m[1] <= lastFamily {
				t.Fatalf("line %d: family %s not in sorted order after %s", n, m[1], lastFamily)
			}
			lastFamily, lastSample = m[1], ""
		case strings.HasPrefix(line, "# TYPE "):
			m := typeLine.FindStringSubmatch(line)
			if m == nil || m[1] != lastFamily {
				t.Fatalf("line %d: bad TYPE or not after its HELP: %q", n, line)
			}
			if _, dup := types[m[1]]; dup {
				t.Fatalf("line %d: family %s twice", n, m[1])
			}
			types[m[1]] = m[2]
			if strings.HasSuffix(m[1], "_total") != (m[2] == "counter") {
				t.Errorf("line %d: %s is a %s: counters, and only they, end in _total", n, m[1], m[2])
			}
		default:
			m := sampleLine.FindStringSubmatch(line)
			if m == nil {
				t.Fatalf("line %d: bad sample: %q", n, line)
			}
			if m[1] != lastFamily || types[m[1]] == "" {
				t.Fatalf("line %d: sample of %s outside its family %s", n, m[1], lastFamily)
			}
			if line <= lastSample {
				t.Fatalf("line %d: samples not sorted: %q after %q", n, line, lastSample)
			}
			lastSample = line
		}
	}
}

func TestMetricsValues(t *testing.T) {
	out := string(renderMetrics(testMetricsInput()))
	for _, want := range []string{
		`chorus_build_info{node="n1",version="v1.0 \"quoted\" \\ back"} 1`,
		`chorus_start_time_seconds 1.7000000005e+09`,
		`chorus_members{status="alive"} 2`,
		`chorus_members{status="dead"} 1`,
		`chorus_members{status="left"} 1`,
		`chorus_members{status="leaving"} 0`,
		`chorus_members{status="unknown"} 0`,
		`chorus_pods{phase="Running",ready="true"} 2`,
		`chorus_pods{phase="Running",ready="false"} 1`,
		`chorus_pods{phase="Pending",ready="false"} 1`,
		`chorus_pods{phase="Unknown",ready="false"} 1`,
		`chorus_pods{phase="Failed",ready="true"} 0`,
		`chorus_pod_container_restarts 3`,
		`chorus_pods_pending 3`,
		`chorus_desired_objects{kind="Deployment"} 2`,
		`chorus_desired_objects{kind="DaemonSet"} 0`,
		`chorus_desired_objects{kind="Service"} 1`,
		`chorus_store_deltas_merged_total 42`,
		`chorus_store_deltas_rejected_total 1`,
		`chorus_replication_malformed_messages_total 5`,
		`chorus_replication_anti_entropy_rounds_total 7`,
		`chorus_replication_sent_bytes_total 12345678901`,
		`chorus_gossip_messages_rejected_total 4`,
		`chorus_pubsub_messages_rejected_total 6`,
		`chorus_streams_rejected_total 8`,
		`chorus_gossip_deltas_dropped_total 10`,
		`chorus_gossip_events_dropped_total 12`,
		`chorus_image_bad_blobs_total 1`,
		`chorus_proxy_connections_accepted_total 100`,
		`chorus_proxy_connections_active 3`,
		`chorus_proxy_listeners 2`,
		`chorus_proxy_hops_served_total 11`,
		`chorus_dns_queries_total 50`,
		`chorus_dns_nxdomain_total 4`,
		"# TYPE chorus_pods gauge",
		"# TYPE chorus_store_deltas_merged_total counter",
	} {
		if !strings.Contains(out, "\n"+want+"\n") {
			t.Errorf("missing line %q", want)
		}
	}
	if t.Failed() {
		t.Logf("exposition:\n%s", out)
	}
}

func TestMetricsDeterministic(t *testing.T) {
	in := testMetricsInput()
	first := renderMetrics(in)
	for i := 0; i < 20; i++ {
		// The same state in another order says the same thing.
		in.Members[0], in.Members[len(in.Members)-1] = in.Members[len(in.Members)-1], in.Members[0]
		in.LocalPods[i%len(in.LocalPods)], in.LocalPods[0] = in.LocalPods[0], in.LocalPods[i%len(in.LocalPods)]
		if got := renderMetrics(in); !bytes.Equal(got, first) {
			t.Fatalf("run %d differs:\n%s\nfirst:\n%s", i, got, first)
		}
	}
	// An empty peer still reports every family, with zeros.
	empty := string(renderMetrics(metricsInput{Node: "n1"}))
	for _, want := range []string{`chorus_members{status="alive"} 0`, `chorus_pods{phase="Running",ready="true"} 0`, "chorus_pods_pending 0"} {
		if !strings.Contains(empty, "\n"+want+"\n") {
			t.Errorf("empty input: missing %q", want)
		}
	}
	if strings.Contains(empty, "chorus_start_time_seconds") {
		t.Error("empty input reports a start time")
	}
}

func TestPromValue(t *testing.T) {
	for v, want := range map[float64]string{0: "0", -3: "-3", 1e15: "1e+15", 0.25: "0.25", 12345678901: "12345678901"} {
		if got := promValue(v); got != want {
			t.Errorf("promValue(%v) = %q, want %q", v, got, want)
		}
	}
	if got := promLabels([]string{"b", "x\ny", "a", `q"`}); got != `{a="q\"",b="x\ny"}` {
		t.Errorf("promLabels = %s", got)
	}
}
