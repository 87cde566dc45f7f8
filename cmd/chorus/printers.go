package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/chorus-sh/chorus/api"
	"sigs.k8s.io/yaml"
)

// Annotation a service carries with its endpoints ("10.0.0.5:8080,...").
const annotationEndpoints = "chorus.io/endpoints"

// node is a peer as the agent reports it.
type node struct {
	APIVersion string         `json:"apiVersion,omitempty"`
	Kind       string         `json:"kind,omitempty"`
	Metadata   api.ObjectMeta `json:"metadata"`
	Spec       nodeSpec       `json:"spec"`
	Status     nodeStatus     `json:"status"`
}

type nodeSpec struct {
	Unschedulable bool `json:"unschedulable,omitempty"`
}

type nodeStatus struct {
	Phase     string            `json:"phase,omitempty"`
	Addresses []nodeAddress     `json:"addresses,omitempty"`
	Capacity  map[string]string `json:"capacity,omitempty"`
	NodeInfo  nodeInfo          `json:"nodeInfo"`
	PodCount  int               `json:"podCount"`
}

type nodeAddress struct {
	Type    string `json:"type"`
	Address string `json:"address"`
}

type nodeInfo struct {
	KubeletVersion string `json:"kubeletVersion,omitempty"`
}

// internalIP returns the node's InternalIP, or its first address.
func (n *node) internalIP() string {
	for _, a := range n.Status.Addresses {
		if a.Type == "InternalIP" {
			return a.Address
		}
	}
	if len(n.Status.Addresses) > 0 {
		return n.Status.Addresses[0].Address
	}
	return ""
}

// formatAge renders a duration as kubectl's AGE column does (its
// duration.HumanDuration): 5s, 119s, 3m12s, 25m, 2h15m, 10h, 3d4h, 20d, 2y30d.
func formatAge(d time.Duration) string {
	if seconds := int(d.Seconds()); seconds < -1 {
		return "<invalid>"
	} else if seconds < 0 {
		return "0s"
	} else if seconds < 60*2 {
		return fmt.Sprintf("%ds", seconds)
	}
	minutes := int(d / time.Minute)
	if minutes < 10 {
		s := int(d/time.Second) % 60
		if s == 0 {
			return fmt.Sprintf("%dm", minutes)
		}
		return fmt.Sprintf("%dm%ds", minutes, s)
	} else if minutes < 60*3 {
		return fmt.Sprintf("%dm", minutes)
	}
	hours := int(d / time.Hour)
	if hours < 8 {
		m := int(d/time.Minute) % 60
		if m == 0 {
			return fmt.Sprintf("%dh", hours)
		}
		return fmt.Sprintf("%dh%dm", hours, m)
	} else if hours < 48 {
		return fmt.Sprintf("%dh", hours)
	} else if hours < 24*8 {
		h := hours % 24
		if h == 0 {
			return fmt.Sprintf("%dd", hours/24)
		}
		return fmt.Sprintf("%dd%dh", hours/24, h)
	} else if hours < 24*365*2 {
		return fmt.Sprintf("%dd", hours/24)
	} else if hours < 24*365*8 {
		dy := (hours / 24) % 365
		if dy == 0 {
			return fmt.Sprintf("%dy", hours/24/365)
		}
		return fmt.Sprintf("%dy%dd", hours/24/365, dy)
	}
	return fmt.Sprintf("%dy", hours/24/365)
}

// ageSince is kubectl's translateTimestampSince: "<unknown>" for no time.
func ageSince(t *time.Time, now time.Time) string {
	if t == nil || t.IsZero() {
		return "<unknown>"
	}
	return formatAge(now.Sub(*t))
}

// humanSize renders a byte count with decimal units and 4 significant
// digits, as docker does: 12.35kB, 5.1MB, 266MB.
func humanSize(n int64) string {
	units := []string{"B", "kB", "MB", "GB", "TB", "PB"}
	size := float64(n)
	i := 0
	for size >= 1000 && i < len(units)-1 {
		size /= 1000
		i++
	}
	return fmt.Sprintf("%.4g%s", size, units[i])
}

// shortDigest shortens "sha256:<64 hex>" to "sha256:<12 hex>".
func shortDigest(d string) string {
	algo, hex, ok := strings.Cut(d, ":")
	if !ok {
		algo, hex = "", d
	}
	if len(hex) > 12 {
		hex = hex[:12]
	}
	if algo == "" {
		return hex
	}
	return algo + ":" + hex
}

// tabPadding is the space between table columns, as kubectl's.
const tabPadding = 3

// newTabWriter returns a writer aligning tab-separated cells as kubectl's
// tables are.
func newTabWriter(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 6, 4, tabPadding, ' ', 0)
}

// writeTable prints headers and rows aligned. widths, when non-nil, holds
// column widths of earlier output that this output keeps to (kubectl's
// RememberWidths for watch), and is updated.
func writeTable(w io.Writer, headers []string, rows [][]string, widths []int) error {
	tw := newTabWriter(w)
	line := func(cells []string) {
		for i, c := range cells {
			if i > 0 {
				tw.Write([]byte{'\t'})
			}
			if widths != nil && i < len(widths) && i < len(cells)-1 {
				c = padRight(c, widths[i])
			}
			tw.Write([]byte(c))
		}
		tw.Write([]byte{'\n'})
	}
	if headers != nil {
		line(headers)
	}
	for _, r := range rows {
		line(r)
	}
	if widths != nil {
		all := rows
		if headers != nil {
			all = append([][]string{headers}, rows...)
		}
		for _, r := range all {
			for i, c := range r {
				if i < len(widths) && len([]rune(c)) > widths[i] {
					widths[i] = len([]rune(c))
				}
			}
		}
	}
	return tw.Flush()
}

func padRight(s string, width int) string {
	if n := len([]rune(s)); n < width {
		return s + strings.Repeat(" ", width-n)
	}
	return s
}

// tableOptions says how to print a table.
type tableOptions struct {
	wide      bool
	namespace bool // a NAMESPACE column first
	withKind  bool // names as "deployment.apps/web"
	noHeaders bool
	now       time.Time
}

// tableHeaders returns the column headers of res' table.
func tableHeaders(res resourceType, to tableOptions) []string {
	var h []string
	switch res.plural {
	case "pods":
		h = []string{"NAME", "READY", "STATUS", "RESTARTS", "AGE"}
		if to.wide {
			h = append(h, "IP", "NODE")
		}
	case "deployments":
		h = []string{"NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"}
		if to.wide {
			h = append(h, "CONTAINERS", "IMAGES", "SELECTOR")
		}
	case "daemonsets":
		h = []string{"NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "NODE SELECTOR", "AGE"}
		if to.wide {
			h = append(h, "CONTAINERS", "IMAGES", "SELECTOR")
		}
	case "services":
		h = []string{"NAME", "TYPE", "CLUSTER-IP", "PORT(S)", "ENDPOINTS", "AGE"}
		if to.wide {
			h = append(h, "SELECTOR")
		}
	case "namespaces":
		h = []string{"NAME", "STATUS", "AGE"}
	case "nodes":
		h = []string{"NAME", "STATUS", "ADDRESS", "LABELS", "PODS", "AGE", "VERSION"}
		if to.wide {
			h = append(h, "CPU", "MEMORY")
		}
	case "events":
		h = []string{"LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"}
		if to.wide {
			h = []string{"LAST SEEN", "TYPE", "REASON", "OBJECT", "SOURCE", "MESSAGE", "FIRST SEEN", "COUNT", "NAME"}
		}
	}
	if to.namespace && res.namespaced {
		h = append([]string{"NAMESPACE"}, h...)
	}
	return h
}

// tableRow returns the cells of one object's row.
func tableRow(o object, to tableOptions) ([]string, error) {
	var cells []string
	var err error
	switch o.res.plural {
	case "pods":
		cells, err = podRow(o, to)
	case "deployments":
		cells, err = deploymentRow(o, to)
	case "daemonsets":
		cells, err = daemonSetRow(o, to)
	case "services":
		cells, err = serviceRow(o, to)
	case "namespaces":
		cells, err = namespaceRow(o, to)
	case "nodes":
		cells, err = nodeRow(o, to)
	case "events":
		cells, err = eventRow(o, to)
	default:
		cells = []string{o.Metadata.Name, ageSince(o.Metadata.CreationTimestamp, to.now)}
	}
	if err != nil {
		return nil, err
	}
	if to.withKind && o.res.plural != "events" {
		cells[0] = o.res.nameKind() + "/" + cells[0]
	}
	if to.namespace && o.res.namespaced {
		cells = append([]string{o.Metadata.Namespace}, cells...)
	}
	return cells, nil
}

// printTable prints objs (all of one type) as a table.
func printTable(w io.Writer, res resourceType, objs []object, to tableOptions) error {
	rows := make([][]string, 0, len(objs))
	for _, o := range objs {
		r, err := tableRow(o, to)
		if err != nil {
			return err
		}
		rows = append(rows, r)
	}
	headers := tableHeaders(res, to)
	if to.noHeaders {
		headers = nil
	}
	return writeTable(w, headers, rows, nil)
}

// podStatusSummary is what a pod's row shows, computed as kubectl's printPod.
type podStatusSummary struct {
	ready, total int
	reason       string
	restarts     int
	lastRestart  time.Time
}

// summarizePod applies kubectl's STATUS logic: the pod's reason or phase,
// overridden by a container waiting or terminated with a reason (the first
// container's wins), "Completed" turned back into Running/NotReady while a
// container still runs.
func summarizePod(p *api.Pod) podStatusSummary {
	s := podStatusSummary{total: len(p.Spec.Containers), reason: p.Status.Phase}
	if p.Status.Reason != "" {
		s.reason = p.Status.Reason
	}
	if s.total == 0 {
		s.total = len(p.Status.ContainerStatuses)
	}
	hasRunning := false
	for i := len(p.Status.ContainerStatuses) - 1; i >= 0; i-- {
		c := p.Status.ContainerStatuses[i]
		s.restarts += int(c.RestartCount)
		if t := c.LastState.Terminated; t != nil && t.FinishedAt != nil && t.FinishedAt.After(s.lastRestart) {
			s.lastRestart = *t.FinishedAt
		}
		switch {
		case c.State.Waiting != nil && c.State.Waiting.Reason != "":
			s.reason = c.State.Waiting.Reason
		case c.State.Terminated != nil && c.State.Terminated.Reason != "":
			s.reason = c.State.Terminated.Reason
		case c.State.Terminated != nil:
			if c.State.Terminated.Signal != 0 {
				s.reason = fmt.Sprintf("Signal:%d", c.State.Terminated.Signal)
			} else {
				s.reason = fmt.Sprintf("ExitCode:%d", c.State.Terminated.ExitCode)
			}
		case c.Ready && c.State.Running != nil:
			hasRunning = true
			s.ready++
		}
	}
	if s.reason == "Completed" && hasRunning {
		s.reason = "NotReady"
		for _, c := range p.Status.Conditions {
			if c.Type == "Ready" && c.Status == "True" {
				s.reason = "Running"
			}
		}
	}
	if s.reason == "" {
		s.reason = api.PodUnknown
	}
	return s
}

func podRow(o object, to tableOptions) ([]string, error) {
	var p api.Pod
	if err := o.into(&p); err != nil {
		return nil, err
	}
	s := summarizePod(&p)
	restarts := strconv.Itoa(s.restarts)
	if s.restarts != 0 && !s.lastRestart.IsZero() {
		restarts = fmt.Sprintf("%d (%s ago)", s.restarts, formatAge(to.now.Sub(s.lastRestart)))
	}
	cells := []string{p.Metadata.Name, fmt.Sprintf("%d/%d", s.ready, s.total), s.reason, restarts,
		ageSince(p.Metadata.CreationTimestamp, to.now)}
	if to.wide {
		cells = append(cells, orNone(p.Status.PodIP), orNone(p.Spec.NodeName))
	}
	return cells, nil
}

// desiredReplicas is spec.replicas, 1 when unset.
func desiredReplicas(d *api.Deployment) int32 {
	if d.Spec.Replicas == nil {
		return 1
	}
	return *d.Spec.Replicas
}

func deploymentRow(o object, to tableOptions) ([]string, error) {
	var d api.Deployment
	if err := o.into(&d); err != nil {
		return nil, err
	}
	cells := []string{d.Metadata.Name,
		fmt.Sprintf("%d/%d", d.Status.ReadyReplicas, desiredReplicas(&d)),
		strconv.Itoa(int(d.Status.UpdatedReplicas)),
		strconv.Itoa(int(d.Status.AvailableReplicas)),
		ageSince(d.Metadata.CreationTimestamp, to.now)}
	if to.wide {
		var names, images []string
		for _, c := range d.Spec.Template.Spec.Containers {
			names = append(names, c.Name)
			images = append(images, c.Image)
		}
		cells = append(cells, strings.Join(names, ","), strings.Join(images, ","), formatSelector(d.Spec.Selector))
	}
	return cells, nil
}

func daemonSetRow(o object, to tableOptions) ([]string, error) {
	var d api.DaemonSet
	if err := o.into(&d); err != nil {
		return nil, err
	}
	sel := "<none>"
	if len(d.Spec.Template.Spec.NodeSelector) > 0 {
		var parts []string
		for _, k := range sortedKeys(d.Spec.Template.Spec.NodeSelector) {
			parts = append(parts, k+"="+d.Spec.Template.Spec.NodeSelector[k])
		}
		sel = strings.Join(parts, ",")
	}
	st := d.Status
	cells := []string{d.Metadata.Name, strconv.Itoa(int(st.DesiredNumberScheduled)), strconv.Itoa(int(st.CurrentNumberScheduled)),
		strconv.Itoa(int(st.NumberReady)), strconv.Itoa(int(st.UpdatedNumberScheduled)), strconv.Itoa(int(st.NumberAvailable)),
		sel, ageSince(d.Metadata.CreationTimestamp, to.now)}
	if to.wide {
		var names, images []string
		for _, c := range d.Spec.Template.Spec.Containers {
			names = append(names, c.Name)
			images = append(images, c.Image)
		}
		cells = append(cells, strings.Join(names, ","), strings.Join(images, ","), formatSelector(d.Spec.Selector))
	}
	return cells, nil
}

// formatSelector renders a label selector as kubectl does: app=web,tier in (a,b).
func formatSelector(s *api.LabelSelector) string {
	if s == nil {
		return "<none>"
	}
	var parts []string
	for _, k := range sortedKeys(s.MatchLabels) {
		parts = append(parts, k+"="+s.MatchLabels[k])
	}
	for _, e := range s.MatchExpressions {
		switch e.Operator {
		case "In":
			parts = append(parts, fmt.Sprintf("%s in (%s)", e.Key, strings.Join(e.Values, ",")))
		case "NotIn":
			parts = append(parts, fmt.Sprintf("%s notin (%s)", e.Key, strings.Join(e.Values, ",")))
		case "Exists":
			parts = append(parts, e.Key)
		case "DoesNotExist":
			parts = append(parts, "!"+e.Key)
		}
	}
	if len(parts) == 0 {
		return "<none>"
	}
	return strings.Join(parts, ",")
}

// formatLabels renders labels as sorted k=v pairs, or <none>.
func formatLabels(m map[string]string) string {
	if len(m) == 0 {
		return "<none>"
	}
	parts := make([]string, 0, len(m))
	for _, k := range sortedKeys(m) {
		parts = append(parts, k+"="+m[k])
	}
	return strings.Join(parts, ",")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

// servicePorts renders PORT(S): 80/TCP, 8080:31234/TCP for a NodePort.
func servicePorts(svc *api.Service) string {
	var parts []string
	for _, p := range svc.Spec.Ports {
		proto := p.Protocol
		if proto == "" {
			proto = "TCP"
		}
		if p.NodePort != 0 {
			parts = append(parts, fmt.Sprintf("%d:%d/%s", p.Port, p.NodePort, proto))
		} else {
			parts = append(parts, fmt.Sprintf("%d/%s", p.Port, proto))
		}
	}
	if len(parts) == 0 {
		return "<none>"
	}
	return strings.Join(parts, ",")
}

// serviceEndpoints renders the endpoints annotation as kubectl shows
// endpoints: at most three, then "+ N more...".
func serviceEndpoints(svc *api.Service) string {
	raw := strings.TrimSpace(svc.Metadata.Annotations[annotationEndpoints])
	if raw == "" {
		return "<none>"
	}
	var eps []string
	for _, e := range strings.Split(raw, ",") {
		if e = strings.TrimSpace(e); e != "" {
			eps = append(eps, e)
		}
	}
	if len(eps) == 0 {
		return "<none>"
	}
	if len(eps) > 3 {
		return fmt.Sprintf("%s + %d more...", strings.Join(eps[:3], ","), len(eps)-3)
	}
	return strings.Join(eps, ",")
}

func serviceType(svc *api.Service) string {
	if svc.Spec.Type == "" {
		return "ClusterIP"
	}
	return svc.Spec.Type
}

func serviceRow(o object, to tableOptions) ([]string, error) {
	var svc api.Service
	if err := o.into(&svc); err != nil {
		return nil, err
	}
	cells := []string{svc.Metadata.Name, serviceType(&svc), orNone(svc.Spec.ClusterIP), servicePorts(&svc),
		serviceEndpoints(&svc), ageSince(svc.Metadata.CreationTimestamp, to.now)}
	if to.wide {
		cells = append(cells, formatLabels(svc.Spec.Selector))
	}
	return cells, nil
}

func namespaceRow(o object, to tableOptions) ([]string, error) {
	var ns api.Namespace
	if err := o.into(&ns); err != nil {
		return nil, err
	}
	phase := ns.Status.Phase
	if phase == "" {
		phase = "Active"
	}
	return []string{ns.Metadata.Name, phase, ageSince(ns.Metadata.CreationTimestamp, to.now)}, nil
}

// nodeStatusText is STATUS: the phase, with ",SchedulingDisabled" when
// cordoned.
func nodeStatusText(n *node) string {
	s := n.Status.Phase
	if s == "" {
		s = "Unknown"
	}
	if n.Spec.Unschedulable {
		s += ",SchedulingDisabled"
	}
	return s
}

func nodeRow(o object, to tableOptions) ([]string, error) {
	var n node
	if err := o.into(&n); err != nil {
		return nil, err
	}
	cells := []string{n.Metadata.Name, nodeStatusText(&n), orNone(n.internalIP()), formatLabels(n.Metadata.Labels),
		strconv.Itoa(n.Status.PodCount), ageSince(n.Metadata.CreationTimestamp, to.now), orNone(n.Status.NodeInfo.KubeletVersion)}
	if to.wide {
		cells = append(cells, orNone(n.Status.Capacity["cpu"]), orNone(n.Status.Capacity["memory"]))
	}
	return cells, nil
}

// eventTime is when an event last happened.
func eventTime(e *api.Event) *time.Time {
	switch {
	case e.LastTimestamp != nil:
		return e.LastTimestamp
	case e.FirstTimestamp != nil:
		return e.FirstTimestamp
	}
	return e.Metadata.CreationTimestamp
}

// eventObject is OBJECT: "pod/web-x".
func eventObject(e *api.Event) string {
	if e.InvolvedObject.Name == "" {
		return strings.ToLower(e.InvolvedObject.Kind)
	}
	return strings.ToLower(e.InvolvedObject.Kind) + "/" + e.InvolvedObject.Name
}

func eventSource(e *api.Event) string {
	if e.Source.Host == "" {
		return e.Source.Component
	}
	return e.Source.Component + ", " + e.Source.Host
}

func eventRow(o object, to tableOptions) ([]string, error) {
	var e api.Event
	if err := o.into(&e); err != nil {
		return nil, err
	}
	last := ageSince(eventTime(&e), to.now)
	msg := strings.TrimSpace(e.Message)
	if to.wide {
		first := e.FirstTimestamp
		if first == nil {
			first = eventTime(&e)
		}
		count := e.Count
		if count == 0 {
			count = 1
		}
		return []string{last, e.Type, e.Reason, eventObject(&e), eventSource(&e), msg,
			ageSince(first, to.now), strconv.Itoa(int(count)), e.Metadata.Name}, nil
	}
	return []string{last, e.Type, e.Reason, eventObject(&e), msg}, nil
}

// sortEvents orders events oldest first, by when they last happened.
func sortEvents(objs []object) {
	times := make(map[string]time.Time, len(objs))
	for _, o := range objs {
		var e api.Event
		if json.Unmarshal(o.raw, &e) == nil {
			if t := eventTime(&e); t != nil {
				times[o.key()] = *t
			}
		}
	}
	sort.SliceStable(objs, func(i, j int) bool { return times[objs[i].key()].Before(times[objs[j].key()]) })
}

// generic decodes a raw object into maps, keeping numbers as written, so it
// prints with sorted keys as kubectl's unstructured objects do.
func generic(raw json.RawMessage) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

// listOf wraps objects in kubectl's List.
func listOf(objs []object) (map[string]any, error) {
	items := make([]any, 0, len(objs))
	for _, o := range objs {
		v, err := generic(o.raw)
		if err != nil {
			return nil, err
		}
		items = append(items, v)
	}
	return map[string]any{
		"apiVersion": "v1",
		"kind":       "List",
		"items":      items,
		"metadata":   map[string]any{"resourceVersion": ""},
	}, nil
}

// printJSON prints v indented by 4 spaces, as kubectl's -o json.
func printJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "    ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// printYAML prints v as YAML, as kubectl's -o yaml.
func printYAML(w io.Writer, v any) error {
	j, err := json.Marshal(v)
	if err != nil {
		return err
	}
	y, err := yaml.JSONToYAML(j)
	if err != nil {
		return err
	}
	_, err = w.Write(y)
	return err
}

// printObjects prints objects with -o json, yaml or name. single prints a
// lone object as itself instead of a List (kubectl, for one named object).
func printObjects(w io.Writer, format string, objs []object, single bool) error {
	if format == "name" {
		for _, o := range objs {
			if _, err := fmt.Fprintf(w, "%s/%s\n", o.res.nameKind(), o.Metadata.Name); err != nil {
				return err
			}
		}
		return nil
	}
	var v any
	if single && len(objs) == 1 {
		g, err := generic(objs[0].raw)
		if err != nil {
			return err
		}
		v = g
	} else {
		l, err := listOf(objs)
		if err != nil {
			return err
		}
		v = l
	}
	if format == "yaml" {
		return printYAML(w, v)
	}
	return printJSON(w, v)
}

// validateOutput checks an -o value.
func validateOutput(format string, allowed ...string) error {
	for _, a := range allowed {
		if format == a {
			return nil
		}
	}
	var shown []string
	for _, a := range allowed {
		if a != "" {
			shown = append(shown, a)
		}
	}
	return fmt.Errorf("unable to match a printer suitable for the output format %q, allowed formats are: %s", format, strings.Join(shown, ","))
}

// printResults prints apply-shaped results: "deployment.apps/web created".
func printResults(w io.Writer, results []applyResult, dryRun bool) {
	suffix := ""
	if dryRun {
		suffix = " (dry run)"
	}
	for _, r := range results {
		fmt.Fprintf(w, "%s/%s %s%s\n", kindName(r.Kind), r.Name, r.Action, suffix)
	}
}

// printWarnings prints server warnings as kubectl does.
func printWarnings(w io.Writer, warnings []string) {
	for _, msg := range warnings {
		fmt.Fprintf(w, "Warning: %s\n", msg)
	}
}
