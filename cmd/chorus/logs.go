package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/chorus-sh/chorus/api"
	"github.com/spf13/cobra"
)

type logsOptions struct {
	*rootOptions
	container string
	follow    bool
	tail      int64
	previous  bool
}

func newLogsCmd(root *rootOptions) *cobra.Command {
	l := &logsOptions{rootOptions: root}
	cmd := &cobra.Command{
		Use:   "logs (POD | TYPE/NAME) [-c CONTAINER]",
		Short: "Print the logs of a container in a pod",
		Long: "Print the logs of a container. TYPE/NAME may name a pod, a deployment or a\n" +
			"service: for the latter two the logs of one of its pods are printed.",
		Example: "  chorus logs web-6d4f-0\n" +
			"  chorus logs -f deployment/web\n" +
			"  chorus logs web-6d4f-0 -c sidecar --tail 20\n" +
			"  chorus logs -p web-6d4f-0",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 || len(args) > 2 {
				return errors.New("expected POD or TYPE/NAME (and optionally a container name)")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error { return l.run(cmd.Context(), args) },
	}
	f := cmd.Flags()
	f.StringVarP(&l.container, "container", "c", "", "print the logs of this container")
	f.BoolVarP(&l.follow, "follow", "f", false, "stream the logs until Ctrl-C")
	f.Int64Var(&l.tail, "tail", -1, "lines of recent log to print; -1 prints all")
	f.BoolVarP(&l.previous, "previous", "p", false, "print the logs of the previous instance of the container")
	return cmd
}

func (l *logsOptions) run(ctx context.Context, args []string) error {
	if len(args) == 2 {
		if l.container != "" && l.container != args[1] {
			return errors.New("only one of -c or an inline container name may be given")
		}
		l.container = args[1]
	}
	c, err := l.client()
	if err != nil {
		return err
	}
	ns := l.namespace()
	pod, err := resolvePod(ctx, c, ns, args[0], "get logs from", l.errOut)
	if err != nil {
		return err
	}
	q := url.Values{}
	q.Set("follow", strconv.FormatBool(l.follow))
	q.Set("previous", strconv.FormatBool(l.previous))
	if l.tail >= 0 {
		q.Set("tailLines", strconv.FormatInt(l.tail, 10))
	}
	if l.container != "" {
		q.Set("container", l.container)
	}
	resp, err := c.do(ctx, request{method: http.MethodGet, path: apiPath("namespaces", url.PathEscape(ns), "pods", url.PathEscape(pod), "log"), query: q})
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(l.out, resp.Body); err != nil && ctx.Err() == nil {
		return fmt.Errorf("reading logs: %v", err)
	}
	return nil
}

// resolvePod turns POD, pod/NAME, deployment/NAME or service/NAME into the
// name of a pod: for a deployment or a service, one of its pods (running
// first, then the oldest), telling errOut which when there are several.
// verb ("get logs from", "exec into") words the error for another type.
func resolvePod(ctx context.Context, c *client, ns, arg, verb string, errOut io.Writer) (string, error) {
	typ, name, ok := strings.Cut(arg, "/")
	if !ok {
		return arg, nil
	}
	if name == "" {
		return "", fmt.Errorf("no name given in %q", arg)
	}
	res, err := lookupResource(typ)
	if err != nil {
		return "", err
	}
	var sel labelSelector
	switch res.plural {
	case "pods":
		return name, nil
	case "deployments":
		sel = labelSelector{{key: api.LabelDeployment, op: "=", values: []string{name}}}
	case "services":
		o, err := getObject(ctx, c, res, ns, name)
		if err != nil {
			return "", err
		}
		var svc api.Service
		if err := o.into(&svc); err != nil {
			return "", err
		}
		if len(svc.Spec.Selector) == 0 {
			return "", fmt.Errorf("service/%s has no selector, so no pods", name)
		}
		for _, k := range sortedKeys(svc.Spec.Selector) {
			sel = append(sel, labelRequirement{key: k, op: "=", values: []string{svc.Spec.Selector[k]}})
		}
	default:
		return "", fmt.Errorf("cannot %s %s: use a pod, a deployment or a service", verb, res.plural)
	}
	pods, err := listObjects(ctx, c, resourceTypeOf("pods"), ns, false, sel, nil)
	if err != nil {
		return "", err
	}
	if len(pods) == 0 {
		return "", fmt.Errorf("%s/%s has no pods", res.nameKind(), name)
	}
	pick := pickPod(pods)
	if len(pods) > 1 {
		fmt.Fprintf(errOut, "Found %d pods, using pod/%s\n", len(pods), pick)
	}
	return pick, nil
}

// pickPod prefers a running pod, then the oldest, then by name.
func pickPod(pods []object) string {
	type cand struct {
		name    string
		running bool
		o       object
	}
	cands := make([]cand, 0, len(pods))
	for _, o := range pods {
		var p api.Pod
		_ = o.into(&p)
		cands = append(cands, cand{name: o.Metadata.Name, running: p.Status.Phase == api.PodRunning, o: o})
	}
	sort.SliceStable(cands, func(i, j int) bool {
		a, b := cands[i], cands[j]
		if a.running != b.running {
			return a.running
		}
		if ta, tb := a.o.creation(), b.o.creation(); !ta.Equal(tb) {
			return ta.Before(tb)
		}
		return a.name < b.name
	})
	return cands[0].name
}
