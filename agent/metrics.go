package agent

import (
	"bytes"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/gossip"
	"github.com/chorus-sh/chorus/proxy"
	"github.com/chorus-sh/chorus/runtime"
)

// metricsContentType is Prometheus' text exposition format.
const metricsContentType = "text/plain; version=0.0.4; charset=utf-8"

// metricsInput is everything GET /metrics reports, gathered from the
// running peer; renderMetrics turns it into text without touching the peer.
type metricsInput struct {
	Node, Version string
	Start         time.Time

	Members   []gossip.Member // as this peer sees them, itself included
	LocalPods []api.Pod       // the pods this peer runs
	Pending   int             // desired replicas that fit on no peer
	Objects   map[string]int  // desired objects by kind

	DeltasMerged, DeltasRejected         int64
	MalformedMessages, AntiEntropyRounds int64
	ReplBytesOut, ReplBytesIn            int64

	BlobsFetched, BytesFetched, BadBlobs, BlobsServed int64
	ChunksRedirected, ChunksRelayed                   int64

	Gossip gossip.Stats
	Proxy  proxy.Stats

	// Usage: the last samples of this peer's containers and of its
	// machine (none when not sampled yet).
	Containers []runtime.Series
	NodeUsage  runtime.Series
}

// metricsInput reads the peer's counters and state.
func (a *Agent) metricsInput() metricsInput {
	merged, rejected := a.store.Deltas()
	in := metricsInput{
		Node: a.cfg.Name, Version: a.cfg.Version, Start: a.start,
		LocalPods: a.pods.Pods(),
		Pending:   a.sched.pendingCount(),
		Objects:   map[string]int{},

		DeltasMerged:   merged,
		DeltasRejected: rejected,
	}
	for _, k := range []string{api.KindNamespace, api.KindDeployment, api.KindDaemonSet, api.KindService} {
		in.Objects[k] = len(a.store.List(k, ""))
	}
	if a.gossip != nil {
		in.Members = a.gossip.Members()
		in.Gossip = a.gossip.Stats()
	}
	if a.repl != nil {
		in.MalformedMessages = a.repl.malformed.Load()
		in.AntiEntropyRounds = a.repl.rounds.Load()
		in.ReplBytesOut = a.repl.bytesOut.Load()
		in.ReplBytesIn = a.repl.bytesIn.Load()
	}
	if a.images != nil {
		in.BlobsFetched = a.images.blobsFetched.Load()
		in.BytesFetched = a.images.bytesFetched.Load()
		in.BadBlobs = a.images.badBlobs.Load()
		in.BlobsServed = a.images.blobsServed.Load()
		in.ChunksRedirected = a.images.chunksRedirected.Load()
		in.ChunksRelayed = a.images.chunksRelayed.Load()
	}
	if a.proxy != nil {
		in.Proxy = a.proxy.Stats()
	}
	if a.sampler != nil {
		in.Containers = a.sampler.Containers(true)
		in.NodeUsage = a.sampler.Node(true)
	}
	return in
}

// handleMetrics serves the peer's metrics in Prometheus' text format.
func (a *Agent) handleMetrics(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", metricsContentType)
	_, _ = w.Write(renderMetrics(a.metricsInput()))
}

// renderMetrics writes in as Prometheus text exposition format 0.0.4:
// families sorted by name, samples by their labels, so that the same input
// gives the same bytes.
func renderMetrics(in metricsInput) []byte {
	var m metricSet
	m.gauge("chorus_build_info", "The peer's name and chorus version; always 1.",
		1, "node", in.Node, "version", in.Version)
	if !in.Start.IsZero() {
		m.gauge("chorus_start_time_seconds", "When the agent started, in seconds since the Unix epoch.",
			float64(in.Start.UnixNano())/1e9)
	}

	// Every known status and phase is reported, 0 or not, so that series
	// do not come and go.
	members := map[string]int{}
	for _, s := range []gossip.Status{gossip.StatusAlive, gossip.StatusLeaving, gossip.StatusLeft, gossip.StatusDead, gossip.StatusUnknown} {
		members[strings.ToLower(string(s))] = 0
	}
	for _, mb := range in.Members {
		members[strings.ToLower(string(mb.Status))]++
	}
	for s, n := range members {
		m.gauge("chorus_members", "Cluster members as this peer sees them, by status.", float64(n), "status", s)
	}

	type phaseReady struct {
		phase string
		ready bool
	}
	pods := map[phaseReady]int{}
	for _, ph := range []string{api.PodPending, api.PodRunning, api.PodSucceeded, api.PodFailed, api.PodUnknown} {
		pods[phaseReady{ph, true}], pods[phaseReady{ph, false}] = 0, 0
	}
	restarts := 0
	for i := range in.LocalPods {
		p := &in.LocalPods[i]
		ph := p.Status.Phase
		if ph == "" {
			ph = api.PodUnknown
		}
		pods[phaseReady{ph, podReady(p)}]++
		for _, c := range p.Status.ContainerStatuses {
			restarts += int(c.RestartCount)
		}
	}
	for k, n := range pods {
		m.gauge("chorus_pods", "Pods this peer runs, by phase and readiness.", float64(n),
			"phase", k.phase, "ready", strconv.FormatBool(k.ready))
	}
	m.gauge("chorus_pod_container_restarts", "Sum of the restart counts of the containers of the pods this peer runs.", float64(restarts))
	m.gauge("chorus_pods_pending", "Desired pods that fit on no alive peer, as this peer's placement computes them (cluster-wide).", float64(in.Pending))
	for k, n := range in.Objects {
		m.gauge("chorus_desired_objects", "Objects of the replicated desired state, by kind.", float64(n), "kind", k)
	}

	m.counter("chorus_store_deltas_merged_total", "Remote state deltas merged into this peer's replica.", float64(in.DeltasMerged))
	m.counter("chorus_store_deltas_rejected_total", "Remote state deltas dropped as invalid.", float64(in.DeltasRejected))
	m.counter("chorus_replication_malformed_messages_total", "Replication and image messages dropped as undecodable.", float64(in.MalformedMessages))
	m.counter("chorus_replication_anti_entropy_rounds_total", "Anti-entropy rounds that transferred registers.", float64(in.AntiEntropyRounds))
	m.counter("chorus_replication_sent_bytes_total", "Bytes this peer sent for replication.", float64(in.ReplBytesOut))
	m.counter("chorus_replication_received_bytes_total", "Bytes this peer received for replication.", float64(in.ReplBytesIn))

	g := in.Gossip
	m.counter("chorus_gossip_messages_rejected_total", "Membership messages refused: undecryptable, unencrypted while a key is set, bad label or checksum, undecodable.", float64(g.GossipRejected))
	m.counter("chorus_pubsub_messages_rejected_total", "Deltas refused by the pubsub validator: too large, or from a peer that is not an alive member.", float64(g.PubsubRejected))
	m.counter("chorus_streams_rejected_total", "Inbound data-plane streams refused.", float64(g.StreamsRejected))
	m.counter("chorus_gossip_deltas_dropped_total", "Received deltas dropped because the receive queue was full.", float64(g.DeltasDropped))
	m.counter("chorus_gossip_events_dropped_total", "Member events dropped because a subscriber was slow.", float64(g.EventsDropped))

	m.counter("chorus_image_blobs_fetched_total", "Image blobs fetched from other peers.", float64(in.BlobsFetched))
	m.counter("chorus_image_fetched_bytes_total", "Bytes of image blobs fetched from other peers.", float64(in.BytesFetched))
	m.counter("chorus_image_bad_blobs_total", "Image blobs from other peers refused because their digest did not match.", float64(in.BadBlobs))
	m.counter("chorus_image_blobs_served_total", "Image blobs served to other peers.", float64(in.BlobsServed))
	m.counter("chorus_image_chunks_redirected_total", "Image chunk requests sent on to the peer that got the chunk last.", float64(in.ChunksRedirected))
	m.counter("chorus_image_chunks_relayed_total", "Image chunks served from a blob this peer was still fetching.", float64(in.ChunksRelayed))

	p := in.Proxy
	m.counter("chorus_proxy_connections_accepted_total", "Client connections accepted on service listeners.", float64(p.Accepted))
	m.counter("chorus_proxy_connections_no_endpoints_total", "Client connections closed at once because the service had no endpoints.", float64(p.NoEndpoints))
	m.counter("chorus_proxy_connections_unserved_total", "Client connections closed because every endpoint dial failed.", float64(p.Unserved))
	m.counter("chorus_proxy_dial_failures_total", "Endpoint dials that failed, each try counted.", float64(p.DialFailures))
	m.counter("chorus_proxy_retries_total", "Dials retried on another endpoint after a failure.", float64(p.Retries))
	m.gauge("chorus_proxy_connections_active", "Proxied client connections open now.", float64(p.Active))
	m.gauge("chorus_proxy_listeners", "Service listeners open now.", float64(p.Listeners))
	m.gauge("chorus_proxy_listeners_failing", "Wanted service listeners that could not be opened.", float64(p.ListenersFailing))
	m.counter("chorus_proxy_listen_errors_total", "Failed listen attempts for service ports.", float64(p.ListenErrors))
	m.counter("chorus_proxy_hops_served_total", "Connections from other peers spliced to a local pod.", float64(p.HopsServed))
	m.counter("chorus_proxy_hops_refused_total", "Hop targets refused (not in this peer's pod subnet).", float64(p.HopsRefused))
	m.counter("chorus_proxy_hops_unauthenticated_total", "Hop connections whose TLS handshake failed: no peer certificate of the cluster CA.", float64(p.HopsUnauthenticated))
	m.counter("chorus_proxy_connections_over_limit_total", "Connections closed at once because their service or hop listener was at its cap.", float64(p.OverLimit))
	m.counter("chorus_proxy_hops_malformed_total", "Hop headers that were malformed, short or late.", float64(p.HopsMalformed))
	m.counter("chorus_proxy_hop_dial_failures_total", "Allowed hop targets whose dial failed.", float64(p.HopDialFailures))
	m.counter("chorus_dns_queries_total", "Well-formed DNS queries to this peer's cluster DNS.", float64(p.DNSQueries))
	m.counter("chorus_dns_answers_total", "DNS responses carrying at least one address.", float64(p.DNSAnswers))
	m.counter("chorus_dns_nxdomain_total", "NXDOMAIN DNS responses.", float64(p.DNSNXDomain))
	m.counter("chorus_dns_refused_total", "REFUSED DNS responses.", float64(p.DNSRefused))
	m.counter("chorus_dns_forwarded_total", "DNS queries forwarded to an upstream resolver.", float64(p.DNSForwarded))
	m.counter("chorus_dns_malformed_total", "DNS queries dropped as malformed.", float64(p.DNSMalformed))

	// Resource usage, with cAdvisor's and the kubelet's names.
	for _, c := range in.Containers {
		if c.SampledAt.IsZero() {
			continue
		}
		l := []string{"namespace", c.Namespace, "pod", c.Pod, "container", c.Container}
		m.counter("container_cpu_usage_seconds_total", "Cumulative CPU time the container consumed, in seconds.", float64(c.CPUNanos)/1e9, l...)
		m.gauge("container_memory_working_set_bytes", "Current working set of the container (memory usage less inactive file pages), in bytes.", float64(c.Memory), l...)
	}
	if !in.NodeUsage.SampledAt.IsZero() {
		m.counter("node_cpu_usage_seconds_total", "Cumulative CPU time the machine spent not idle, in seconds (peers sharing a machine report the same).", float64(in.NodeUsage.CPUNanos)/1e9)
		m.gauge("node_memory_working_set_bytes", "Current working set of the machine (MemTotal less MemAvailable), in bytes.", float64(in.NodeUsage.Memory))
	}

	var b bytes.Buffer
	m.write(&b)
	return b.Bytes()
}

// metricSet collects metric families for one exposition.
type metricSet struct {
	families map[string]*metricFamily
}

type metricFamily struct {
	help, typ string
	samples   map[string]float64 // rendered labels -> value
}

func (m *metricSet) gauge(name, help string, v float64, labels ...string) {
	m.add(name, help, "gauge", v, labels)
}

func (m *metricSet) counter(name, help string, v float64, labels ...string) {
	m.add(name, help, "counter", v, labels)
}

// add records one sample; labels are name, value pairs.
func (m *metricSet) add(name, help, typ string, v float64, labels []string) {
	if m.families == nil {
		m.families = map[string]*metricFamily{}
	}
	f := m.families[name]
	if f == nil {
		f = &metricFamily{help: help, typ: typ, samples: map[string]float64{}}
		m.families[name] = f
	}
	f.samples[promLabels(labels)] = v
}

func (m *metricSet) write(w io.Writer) {
	for _, name := range slices.Sorted(maps.Keys(m.families)) {
		f := m.families[name]
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", name, promEscapeHelp(f.help), name, f.typ)
		for _, l := range slices.Sorted(maps.Keys(f.samples)) {
			fmt.Fprintf(w, "%s%s %s\n", name, l, promValue(f.samples[l]))
		}
	}
}

// promLabels renders name, value pairs as {a="x",b="y"}, sorted by name.
func promLabels(kv []string) string {
	if len(kv) < 2 {
		return ""
	}
	values := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		values[kv[i]] = kv[i+1]
	}
	pairs := make([]string, 0, len(values))
	for _, k := range slices.Sorted(maps.Keys(values)) {
		pairs = append(pairs, k+`="`+promEscapeLabel(values[k])+`"`)
	}
	return "{" + strings.Join(pairs, ",") + "}"
}

// promEscapeLabel escapes backslash, double quote and newline.
func promEscapeLabel(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s)
}

// promEscapeHelp escapes backslash and newline.
func promEscapeHelp(s string) string {
	return strings.NewReplacer(`\`, `\\`, "\n", `\n`).Replace(s)
}

// promValue writes integers without an exponent, as Prometheus' own
// clients do, and the special values as the format spells them.
func promValue(v float64) string {
	switch {
	case math.IsNaN(v):
		return "NaN"
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case v == math.Trunc(v) && math.Abs(v) < 1e15:
		return strconv.FormatInt(int64(v), 10)
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}
