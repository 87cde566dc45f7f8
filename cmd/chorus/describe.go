package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/chorus-sh/chorus/api"
	"github.com/spf13/cobra"
)

type describeOptions struct {
	*rootOptions
	allNamespaces bool
	selector      string
	showEvents    bool
}

func newDescribeCmd(root *rootOptions) *cobra.Command {
	d := &describeOptions{rootOptions: root}
	cmd := &cobra.Command{
		Use:   "describe TYPE [NAME_PREFIX...] | TYPE/NAME...",
		Short: "Show details of a specific resource or group of resources",
		Long: "Show the details of objects, with their recent events. A name that matches\n" +
			"no object exactly describes every object whose name starts with it.\n\n" +
			"Resource types: pods, deployments, services, namespaces, nodes.",
		Example: "  chorus describe pod web-6d4f-0\n  chorus describe deploy/web\n  chorus describe pods -l app=web",
		RunE:    func(cmd *cobra.Command, args []string) error { return d.run(cmd.Context(), args) },
	}
	f := cmd.Flags()
	f.BoolVarP(&d.allNamespaces, "all-namespaces", "A", false, "describe the objects of every namespace")
	f.StringVarP(&d.selector, "selector", "l", "", "label selector to filter on (k=v, k!=v; comma-separated)")
	f.BoolVar(&d.showEvents, "show-events", true, "show the events of each object")
	return cmd
}

func (d *describeOptions) run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return errors.New("you must specify the type of resource to describe. Resource types: pods, deployments, services, namespaces, nodes")
	}
	reqs, _, err := parseResourceArgs(args)
	if err != nil {
		return err
	}
	for _, r := range reqs {
		if r.res.plural == "events" {
			return errors.New("describe does not support events: use 'chorus get events'")
		}
	}
	sel, err := parseSelector(d.selector)
	if err != nil {
		return err
	}
	c, err := d.client()
	if err != nil {
		return err
	}
	ns := d.namespace()

	var objs []object
	var notFound []error
	for _, r := range reqs {
		if len(r.names) == 0 {
			list, err := listObjects(ctx, c, r.res, ns, d.allNamespaces, sel, nil)
			if err != nil {
				return err
			}
			objs = append(objs, list...)
			continue
		}
		for _, name := range r.names {
			o, err := getObject(ctx, c, r.res, ns, name)
			if err == nil {
				objs = append(objs, o)
				continue
			}
			if !isNotFound(err) {
				return err
			}
			// kubectl describes every object whose name starts with the
			// name given when none has it exactly.
			list, lerr := listObjects(ctx, c, r.res, ns, false, sel, nil)
			if lerr != nil {
				return lerr
			}
			matched := false
			for _, o := range list {
				if strings.HasPrefix(o.Metadata.Name, name) {
					objs = append(objs, o)
					matched = true
				}
			}
			if !matched {
				notFound = append(notFound, err)
			}
		}
	}

	if len(objs) == 0 && len(notFound) == 0 {
		fmt.Fprintln(d.errOut, noResourcesMessage(reqs, ns, d.allNamespaces))
		return nil
	}
	now := time.Now()
	for i, o := range objs {
		var buf bytes.Buffer
		if err := d.describe(ctx, c, &buf, o, now); err != nil {
			return err
		}
		if i > 0 {
			fmt.Fprint(d.out, "\n\n")
		}
		if _, err := d.out.Write(buf.Bytes()); err != nil {
			return err
		}
	}
	if len(notFound) > 0 {
		for _, e := range notFound {
			printError(d.errOut, e)
		}
		return &exitError{code: 1}
	}
	return nil
}

// describe writes one object's description.
func (d *describeOptions) describe(ctx context.Context, c *client, out io.Writer, o object, now time.Time) error {
	w := newPrefixWriter(out)
	defer w.flush()
	switch o.res.plural {
	case "pods":
		var p api.Pod
		if err := o.into(&p); err != nil {
			return err
		}
		describePod(w, &p)
	case "deployments":
		var dep api.Deployment
		if err := o.into(&dep); err != nil {
			return err
		}
		describeDeployment(w, &dep)
	case "services":
		var svc api.Service
		if err := o.into(&svc); err != nil {
			return err
		}
		describeService(w, &svc)
	case "namespaces":
		var ns api.Namespace
		if err := o.into(&ns); err != nil {
			return err
		}
		describeNamespace(w, &ns)
		return nil // kubectl shows no events for namespaces
	case "nodes":
		var n node
		if err := o.into(&n); err != nil {
			return err
		}
		pods, err := listObjects(ctx, c, resourceTypeOf("pods"), "", true, nil, nil)
		if err != nil {
			c.log.Debug("listing pods of node", "node", n.Metadata.Name, "err", err)
			pods = nil
		}
		describeNode(w, &n, pods, err == nil, now)
	default:
		return fmt.Errorf("describe does not support %s", o.res.plural)
	}
	if d.showEvents {
		if events, ok := d.events(ctx, c, o); ok {
			describeEvents(w, events, now)
		}
	}
	return nil
}

// resourceTypeOf returns a known type by its plural.
func resourceTypeOf(plural string) resourceType {
	r, err := lookupResource(plural)
	if err != nil {
		panic("unknown resource type " + plural)
	}
	return r
}

// events fetches the events of o, oldest first. ok is false when they
// could not be read (then, as kubectl, no Events section is shown).
func (d *describeOptions) events(ctx context.Context, c *client, o object) ([]api.Event, bool) {
	q := url.Values{"involvedKind": {o.Kind}, "involvedName": {o.Metadata.Name}}
	evType := resourceTypeOf("events")
	objs, err := listObjects(ctx, c, evType, o.Metadata.Namespace, !o.res.namespaced, nil, q)
	if err != nil {
		c.log.Debug("reading events", "object", o.key(), "err", err)
		return nil, false
	}
	sortEvents(objs)
	var out []api.Event
	for _, eo := range objs {
		var e api.Event
		if eo.into(&e) != nil {
			continue
		}
		ref := e.InvolvedObject
		if !strings.EqualFold(ref.Kind, o.Kind) || ref.Name != o.Metadata.Name {
			continue
		}
		if o.res.namespaced && ref.Namespace != "" && ref.Namespace != o.Metadata.Namespace {
			continue
		}
		out = append(out, e)
	}
	return out, true
}

// prefixWriter writes kubectl's describe layout: indented "Key:\tvalue"
// lines aligned by a tabwriter.
type prefixWriter struct{ tw *tabwriter.Writer }

func newPrefixWriter(w io.Writer) *prefixWriter {
	return &prefixWriter{tw: tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)}
}

func (p *prefixWriter) write(level int, format string, a ...any) {
	fmt.Fprintf(p.tw, strings.Repeat("  ", level)+format, a...)
}

func (p *prefixWriter) flush() { _ = p.tw.Flush() }

// timeText formats a time as kubectl's describe does.
func timeText(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "<unknown>"
	}
	return t.Local().Format(time.RFC1123Z)
}

// writeMultiline writes "Title:\tk=v" with further pairs on their own
// aligned lines, or <none>.
func writeMultiline(w *prefixWriter, indent, title string, m map[string]string, sep string) {
	w.write(0, "%s%s:\t", indent, title)
	if len(m) == 0 {
		w.write(0, "<none>\n")
		return
	}
	for i, k := range sortedKeys(m) {
		if i > 0 {
			w.write(0, "%s\t", indent)
		}
		w.write(0, "%s%s%s\n", k, sep, m[k])
	}
}

func writeLabels(w *prefixWriter, indent, title string, m map[string]string) {
	writeMultiline(w, indent, title, m, "=")
}

func writeAnnotations(w *prefixWriter, indent, title string, m map[string]string) {
	writeMultiline(w, indent, title, m, ": ")
}

func boolText(b bool) string {
	if b {
		return "True"
	}
	return "False"
}

func describePod(w *prefixWriter, p *api.Pod) {
	w.write(0, "Name:\t%s\n", p.Metadata.Name)
	w.write(0, "Namespace:\t%s\n", p.Metadata.Namespace)
	nodeText := "<none>"
	if p.Spec.NodeName != "" {
		nodeText = p.Spec.NodeName
		if p.Status.HostIP != "" {
			nodeText += "/" + p.Status.HostIP
		}
	}
	w.write(0, "Node:\t%s\n", nodeText)
	if p.Status.StartTime != nil {
		w.write(0, "Start Time:\t%s\n", timeText(p.Status.StartTime))
	}
	writeLabels(w, "", "Labels", p.Metadata.Labels)
	writeAnnotations(w, "", "Annotations", p.Metadata.Annotations)
	w.write(0, "Status:\t%s\n", orNone(p.Status.Phase))
	if p.Status.Reason != "" {
		w.write(0, "Reason:\t%s\n", p.Status.Reason)
	}
	if p.Status.Message != "" {
		w.write(0, "Message:\t%s\n", p.Status.Message)
	}
	w.write(0, "IP:\t%s\n", orNone(p.Status.PodIP))
	if dep := p.Metadata.Labels[api.LabelDeployment]; dep != "" {
		w.write(0, "Controlled By:\tDeployment/%s\n", dep)
	}
	statuses := map[string]*api.ContainerStatus{}
	for i := range p.Status.ContainerStatuses {
		statuses[p.Status.ContainerStatuses[i].Name] = &p.Status.ContainerStatuses[i]
	}
	w.write(0, "Containers:\n")
	for i := range p.Spec.Containers {
		c := &p.Spec.Containers[i]
		w.write(1, "%s:\n", c.Name)
		describeContainer(w, c, statuses[c.Name], true)
	}
	if len(p.Status.Conditions) > 0 {
		w.write(0, "Conditions:\n  Type\tStatus\n")
		for _, c := range p.Status.Conditions {
			w.write(1, "%s\t%s\n", c.Type, c.Status)
		}
	}
	if len(p.Spec.NodeSelector) > 0 {
		w.write(0, "Node-Selectors:\t%s\n", formatLabels(p.Spec.NodeSelector))
	}
}

// describeContainer writes a container's lines at level 2. withStatus
// writes State, Ready and Restart Count (a pod's, not a template's).
func describeContainer(w *prefixWriter, c *api.Container, st *api.ContainerStatus, withStatus bool) {
	if st != nil && st.ContainerID != "" {
		w.write(2, "Container ID:\t%s\n", st.ContainerID)
	}
	w.write(2, "Image:\t%s\n", c.Image)
	if st != nil && st.ImageID != "" {
		w.write(2, "Image ID:\t%s\n", st.ImageID)
	}
	var ports []string
	for _, p := range c.Ports {
		proto := p.Protocol
		if proto == "" {
			proto = "TCP"
		}
		ports = append(ports, fmt.Sprintf("%d/%s", p.ContainerPort, proto))
	}
	switch len(ports) {
	case 0:
		w.write(2, "Port:\t<none>\n")
	case 1:
		w.write(2, "Port:\t%s\n", ports[0])
	default:
		w.write(2, "Ports:\t%s\n", strings.Join(ports, ", "))
	}
	if len(c.Command) > 0 {
		w.write(2, "Command:\n")
		for _, s := range c.Command {
			w.write(3, "%s\n", s)
		}
	}
	if len(c.Args) > 0 {
		w.write(2, "Args:\n")
		for _, s := range c.Args {
			w.write(3, "%s\n", s)
		}
	}
	if withStatus {
		if st == nil {
			w.write(2, "State:\tWaiting\n")
			w.write(3, "Reason:\tPending\n")
			w.write(2, "Ready:\tFalse\n")
			w.write(2, "Restart Count:\t0\n")
		} else {
			describeState(w, "State", st.State)
			if st.LastState.Terminated != nil {
				describeState(w, "Last State", st.LastState)
			}
			w.write(2, "Ready:\t%s\n", boolText(st.Ready))
			w.write(2, "Restart Count:\t%d\n", st.RestartCount)
		}
	}
	for _, rl := range []struct {
		title string
		list  api.ResourceList
	}{{"Limits", c.Resources.Limits}, {"Requests", c.Resources.Requests}} {
		if len(rl.list) == 0 {
			continue
		}
		w.write(2, "%s:\n", rl.title)
		for _, k := range sortedKeys(rl.list) {
			w.write(3, "%s:\t%s\n", k, rl.list[k])
		}
	}
	if c.LivenessProbe != nil {
		w.write(2, "Liveness:\t%s\n", describeProbe(c.LivenessProbe))
	}
	if c.ReadinessProbe != nil {
		w.write(2, "Readiness:\t%s\n", describeProbe(c.ReadinessProbe))
	}
	if len(c.Env) == 0 {
		w.write(2, "Environment:\t<none>\n")
	} else {
		w.write(2, "Environment:\n")
		for _, e := range c.Env {
			w.write(3, "%s:\t%s\n", e.Name, e.Value)
		}
	}
}

// describeState writes a container state as kubectl does.
func describeState(w *prefixWriter, title string, s api.ContainerState) {
	switch {
	case s.Running != nil:
		w.write(2, "%s:\tRunning\n", title)
		w.write(3, "Started:\t%s\n", timeText(s.Running.StartedAt))
	case s.Waiting != nil:
		w.write(2, "%s:\tWaiting\n", title)
		if s.Waiting.Reason != "" {
			w.write(3, "Reason:\t%s\n", s.Waiting.Reason)
		}
		if s.Waiting.Message != "" {
			w.write(3, "Message:\t%s\n", s.Waiting.Message)
		}
	case s.Terminated != nil:
		t := s.Terminated
		w.write(2, "%s:\tTerminated\n", title)
		if t.Reason != "" {
			w.write(3, "Reason:\t%s\n", t.Reason)
		}
		if t.Message != "" {
			w.write(3, "Message:\t%s\n", t.Message)
		}
		w.write(3, "Exit Code:\t%d\n", t.ExitCode)
		if t.Signal > 0 {
			w.write(3, "Signal:\t%d\n", t.Signal)
		}
		w.write(3, "Started:\t%s\n", timeText(t.StartedAt))
		w.write(3, "Finished:\t%s\n", timeText(t.FinishedAt))
	default:
		w.write(2, "%s:\tWaiting\n", title)
	}
}

// describeProbe summarizes a probe as kubectl does:
// "http-get http://:8080/healthz delay=0s timeout=1s period=10s #success=1 #failure=3".
func describeProbe(p *api.Probe) string {
	def := func(v, d int32) int32 {
		if v == 0 {
			return d
		}
		return v
	}
	attrs := fmt.Sprintf("delay=%ds timeout=%ds period=%ds #success=%d #failure=%d",
		p.InitialDelaySeconds, def(p.TimeoutSeconds, 1), def(p.PeriodSeconds, 10),
		def(p.SuccessThreshold, 1), def(p.FailureThreshold, 3))
	switch {
	case p.Exec != nil:
		return fmt.Sprintf("exec [%s] %s", strings.Join(p.Exec.Command, " "), attrs)
	case p.HTTPGet != nil:
		scheme := strings.ToLower(p.HTTPGet.Scheme)
		if scheme == "" {
			scheme = "http"
		}
		u := url.URL{Scheme: scheme, Host: p.HTTPGet.Host, Path: p.HTTPGet.Path}
		if port := p.HTTPGet.Port.String(); !p.HTTPGet.Port.IsZero() {
			u.Host = net.JoinHostPort(p.HTTPGet.Host, port)
		}
		return fmt.Sprintf("http-get %s %s", u.String(), attrs)
	case p.TCPSocket != nil:
		return fmt.Sprintf("tcp-socket %s:%s %s", p.TCPSocket.Host, p.TCPSocket.Port.String(), attrs)
	}
	return "unknown " + attrs
}

func describeDeployment(w *prefixWriter, d *api.Deployment) {
	w.write(0, "Name:\t%s\n", d.Metadata.Name)
	w.write(0, "Namespace:\t%s\n", d.Metadata.Namespace)
	w.write(0, "CreationTimestamp:\t%s\n", timeText(d.Metadata.CreationTimestamp))
	writeLabels(w, "", "Labels", d.Metadata.Labels)
	writeAnnotations(w, "", "Annotations", d.Metadata.Annotations)
	w.write(0, "Selector:\t%s\n", formatSelector(d.Spec.Selector))
	w.write(0, "Replicas:\t%d desired | %d updated | %d total | %d available | %d unavailable\n",
		desiredReplicas(d), d.Status.UpdatedReplicas, d.Status.Replicas, d.Status.AvailableReplicas, d.Status.UnavailableReplicas)
	strategy := d.Spec.Strategy.Type
	if strategy == "" {
		strategy = "RollingUpdate"
	}
	w.write(0, "StrategyType:\t%s\n", strategy)
	w.write(0, "MinReadySeconds:\t%d\n", d.Spec.MinReadySeconds)
	if strategy == "RollingUpdate" {
		maxUnavailable, maxSurge := "25%", "25%"
		if ru := d.Spec.Strategy.RollingUpdate; ru != nil {
			if ru.MaxUnavailable != nil {
				maxUnavailable = ru.MaxUnavailable.String()
			}
			if ru.MaxSurge != nil {
				maxSurge = ru.MaxSurge.String()
			}
		}
		w.write(0, "RollingUpdateStrategy:\t%s max unavailable, %s max surge\n", maxUnavailable, maxSurge)
	}
	if d.Spec.Paused {
		w.write(0, "Paused:\ttrue\n")
	}
	describePodTemplate(w, &d.Spec.Template)
}

// describePodTemplate writes kubectl's "Pod Template:" section of a
// deployment or a revision.
func describePodTemplate(w *prefixWriter, t *api.PodTemplateSpec) {
	w.write(0, "Pod Template:\n")
	writeLabels(w, "  ", "Labels", t.Metadata.Labels)
	if len(t.Metadata.Annotations) > 0 {
		writeAnnotations(w, "  ", "Annotations", t.Metadata.Annotations)
	}
	w.write(1, "Containers:\n")
	for i := range t.Spec.Containers {
		c := &t.Spec.Containers[i]
		w.write(1, " %s:\n", c.Name)
		describeContainer(w, c, nil, false)
	}
	if len(t.Spec.NodeSelector) > 0 {
		w.write(1, "Node-Selectors:\t%s\n", formatLabels(t.Spec.NodeSelector))
	}
}

func describeService(w *prefixWriter, svc *api.Service) {
	w.write(0, "Name:\t%s\n", svc.Metadata.Name)
	w.write(0, "Namespace:\t%s\n", svc.Metadata.Namespace)
	writeLabels(w, "", "Labels", svc.Metadata.Labels)
	annotations := map[string]string{}
	for k, v := range svc.Metadata.Annotations {
		if k != annotationEndpoints {
			annotations[k] = v
		}
	}
	writeAnnotations(w, "", "Annotations", annotations)
	w.write(0, "Selector:\t%s\n", formatLabels(svc.Spec.Selector))
	w.write(0, "Type:\t%s\n", serviceType(svc))
	w.write(0, "IP:\t%s\n", orNone(svc.Spec.ClusterIP))
	endpoints := serviceEndpoints(svc)
	for _, p := range svc.Spec.Ports {
		name := p.Name
		if name == "" {
			name = "<unset>"
		}
		proto := p.Protocol
		if proto == "" {
			proto = "TCP"
		}
		w.write(0, "Port:\t%s\t%d/%s\n", name, p.Port, proto)
		target := p.TargetPort.String()
		if p.TargetPort.IsZero() {
			target = fmt.Sprint(p.Port)
		}
		w.write(0, "TargetPort:\t%s/%s\n", target, proto)
		if p.NodePort != 0 {
			w.write(0, "NodePort:\t%s\t%d/%s\n", name, p.NodePort, proto)
		}
		w.write(0, "Endpoints:\t%s\n", endpoints)
	}
	if len(svc.Spec.Ports) == 0 {
		w.write(0, "Endpoints:\t%s\n", endpoints)
	}
}

func describeNamespace(w *prefixWriter, ns *api.Namespace) {
	w.write(0, "Name:\t%s\n", ns.Metadata.Name)
	writeLabels(w, "", "Labels", ns.Metadata.Labels)
	writeAnnotations(w, "", "Annotations", ns.Metadata.Annotations)
	phase := ns.Status.Phase
	if phase == "" {
		phase = "Active"
	}
	w.write(0, "Status:\t%s\n", phase)
}

// describeNode writes a peer's description; pods (all pods of the cluster,
// when podsOK) give its list of running pods.
func describeNode(w *prefixWriter, n *node, pods []object, podsOK bool, now time.Time) {
	w.write(0, "Name:\t%s\n", n.Metadata.Name)
	writeLabels(w, "", "Labels", n.Metadata.Labels)
	writeAnnotations(w, "", "Annotations", n.Metadata.Annotations)
	w.write(0, "CreationTimestamp:\t%s\n", timeText(n.Metadata.CreationTimestamp))
	w.write(0, "Unschedulable:\t%t\n", n.Spec.Unschedulable)
	w.write(0, "Status:\t%s\n", orNone(n.Status.Phase))
	w.write(0, "Addresses:\n")
	for _, a := range n.Status.Addresses {
		w.write(1, "%s:\t%s\n", a.Type, a.Address)
	}
	if len(n.Status.Capacity) > 0 {
		w.write(0, "Capacity:\n")
		for _, k := range sortedKeys(n.Status.Capacity) {
			w.write(1, "%s:\t%s\n", k, n.Status.Capacity[k])
		}
	}
	w.write(0, "System Info:\n")
	w.write(1, "Kubelet Version:\t%s\n", orNone(n.Status.NodeInfo.KubeletVersion))
	if !podsOK {
		w.write(0, "Non-terminated Pods:\t(%d in total)\n", n.Status.PodCount)
		return
	}
	var mine []api.Pod
	for _, o := range pods {
		var p api.Pod
		if o.into(&p) != nil || p.Spec.NodeName != n.Metadata.Name {
			continue
		}
		if p.Status.Phase == api.PodSucceeded || p.Status.Phase == api.PodFailed {
			continue
		}
		mine = append(mine, p)
	}
	sort.Slice(mine, func(i, j int) bool {
		if mine[i].Metadata.Namespace != mine[j].Metadata.Namespace {
			return mine[i].Metadata.Namespace < mine[j].Metadata.Namespace
		}
		return mine[i].Metadata.Name < mine[j].Metadata.Name
	})
	w.write(0, "Non-terminated Pods:\t(%d in total)\n", len(mine))
	if len(mine) == 0 {
		return
	}
	w.write(1, "Namespace\tName\tAge\n")
	w.write(1, "---------\t----\t---\n")
	for _, p := range mine {
		w.write(1, "%s\t%s\t%s\n", p.Metadata.Namespace, p.Metadata.Name, ageSince(p.Metadata.CreationTimestamp, now))
	}
}

// describeEvents writes the Events table as kubectl does.
func describeEvents(w *prefixWriter, events []api.Event, now time.Time) {
	if len(events) == 0 {
		w.write(0, "Events:\t<none>\n")
		return
	}
	w.flush()
	w.write(0, "Events:\n  Type\tReason\tAge\tFrom\tMessage\n")
	w.write(1, "----\t------\t----\t----\t-------\n")
	for i := range events {
		e := &events[i]
		first := e.FirstTimestamp
		if first == nil {
			first = eventTime(e)
		}
		interval := ageSince(first, now)
		if e.Count > 1 {
			interval = fmt.Sprintf("%s (x%d over %s)", ageSince(eventTime(e), now), e.Count, ageSince(first, now))
		}
		w.write(1, "%s\t%s\t%s\t%s\t%s\n", e.Type, e.Reason, interval, e.Source.Component, strings.TrimSpace(e.Message))
	}
}
