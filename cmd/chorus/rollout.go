package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/chorus-sh/chorus/api"
	"github.com/spf13/cobra"
)

// rolloutPollInterval is how often `rollout status` looks at a deployment.
const rolloutPollInterval = 500 * time.Millisecond

func newRolloutCmd(root *rootOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rollout SUBCOMMAND",
		Short: "Manage the rollout of a deployment",
		Long:  "Watch, list, undo, restart, pause and resume the rollouts of deployments.",
		Example: "  chorus rollout status deployment/web\n  chorus rollout history deployment/web\n" +
			"  chorus rollout undo deployment/web --to-revision=2",
	}
	cmd.AddCommand(
		newRolloutStatusCmd(root),
		newRolloutHistoryCmd(root),
		newRolloutUndoCmd(root),
		newRolloutActionCmd(root, "restart", "restarted", "Restart a deployment: replace all of its pods by a rolling update"),
		newRolloutActionCmd(root, "pause", "paused", "Pause a deployment: changes of its template do not roll out until it is resumed"),
		newRolloutActionCmd(root, "resume", "resumed", "Resume a paused deployment"),
	)
	return cmd
}

// deploymentNames reads the deployments a rollout or set command names, as
// "deployment/web [deploy/api...]" or "deployment web [api...]".
// unsupported makes the error for another resource type.
func deploymentNames(args []string, unsupported func(plural string) error) ([]string, error) {
	if len(args) == 0 {
		return nil, errors.New("required resource not specified")
	}
	reqs, _, err := parseResourceArgs(args)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, r := range reqs {
		if r.res.plural != "deployments" {
			return nil, unsupported(r.res.plural)
		}
		if len(r.names) == 0 {
			return nil, errors.New("resource(s) were provided, but no name was specified")
		}
		names = append(names, r.names...)
	}
	return names, nil
}

func noRollout(plural string) error {
	return fmt.Errorf("no rollout for resource type %q: only deployments have rollouts", plural)
}

// oneDeployment is deploymentNames for the commands that take exactly one.
func oneDeployment(cmd *cobra.Command, args []string) (string, error) {
	names, err := deploymentNames(args, noRollout)
	if err != nil {
		return "", err
	}
	if len(names) != 1 {
		return "", fmt.Errorf("%s takes exactly one deployment, got %d", cmd.CommandPath(), len(names))
	}
	return names[0], nil
}

// rolloutRequest is the body of POST .../deployments/NAME/rollout.
type rolloutRequest struct {
	Action     string            `json:"action"` // undo, restart, pause, resume or image
	ToRevision int64             `json:"toRevision,omitempty"`
	Images     map[string]string `json:"images,omitempty"` // container ("*": all) -> image
	Cause      string            `json:"cause,omitempty"`
}

// changeCause is the command line the history records for a change: the
// command, its arguments, then the namespace when given and flags (never
// the server address).
func changeCause(cmd *cobra.Command, args []string, flags ...string) string {
	parts := append(strings.Fields(cmd.CommandPath()), args...)
	if f := cmd.Flags().Lookup("namespace"); f != nil && f.Changed {
		parts = append(parts, "--namespace="+f.Value.String())
	}
	return strings.Join(append(parts, flags...), " ")
}

// postRollout sends req for each deployment and prints kubectl's
// "deployment.apps/NAME <action>"; done is the action printed when the
// agent reports none.
func postRollout(ctx context.Context, root *rootOptions, names []string, req rolloutRequest, done string) error {
	c, err := root.client()
	if err != nil {
		return err
	}
	ns := root.namespace()
	failed := false
	for _, name := range names {
		var resp applyResponse
		path := apiPath("namespaces", url.PathEscape(ns), "deployments", url.PathEscape(name), "rollout")
		err := c.sendJSON(ctx, http.MethodPost, path, req, &resp)
		var se *statusError
		switch {
		case errors.As(err, &se) && req.Action == "undo" && se.Code == http.StatusConflict && strings.HasPrefix(se.Message, "skipped rollback"):
			// kubectl reports a rollback to the current template as an
			// outcome, not as an error.
			fmt.Fprintf(root.out, "deployment.apps/%s %s\n", name, se.Message)
			continue
		case errors.As(err, &se):
			printError(root.errOut, err)
			failed = true
			continue
		case err != nil:
			return err
		}
		printWarnings(root.errOut, resp.Warnings)
		if len(resp.Results) == 0 {
			resp.Results = []applyResult{{Kind: api.KindDeployment, Namespace: ns, Name: name, Action: done}}
		}
		printResults(root.out, resp.Results, false)
	}
	if failed {
		return &exitError{code: 1}
	}
	return nil
}

// newRolloutActionCmd is `rollout restart|pause|resume`: action is sent,
// done printed.
func newRolloutActionCmd(root *rootOptions, action, done, short string) *cobra.Command {
	return &cobra.Command{
		Use:     action + " (deployment NAME... | deployment/NAME...)",
		Short:   short,
		Example: fmt.Sprintf("  chorus rollout %s deployment/web", action),
		RunE: func(cmd *cobra.Command, args []string) error {
			names, err := deploymentNames(args, noRollout)
			if err != nil {
				return err
			}
			return postRollout(cmd.Context(), root, names, rolloutRequest{Action: action, Cause: changeCause(cmd, args)}, done)
		},
	}
}

func newRolloutUndoCmd(root *rootOptions) *cobra.Command {
	var toRevision int64
	cmd := &cobra.Command{
		Use:     "undo (deployment NAME... | deployment/NAME...) [--to-revision=N]",
		Short:   "Roll a deployment back to its previous revision, or to --to-revision",
		Example: "  chorus rollout undo deployment/web\n  chorus rollout undo deploy/web --to-revision=2",
		RunE: func(cmd *cobra.Command, args []string) error {
			if toRevision < 0 {
				return fmt.Errorf("--to-revision must not be negative, got %d", toRevision)
			}
			names, err := deploymentNames(args, noRollout)
			if err != nil {
				return err
			}
			var flags []string
			if cmd.Flags().Changed("to-revision") {
				flags = append(flags, fmt.Sprintf("--to-revision=%d", toRevision))
			}
			req := rolloutRequest{Action: "undo", ToRevision: toRevision, Cause: changeCause(cmd, args, flags...)}
			return postRollout(cmd.Context(), root, names, req, "rolled back")
		},
	}
	cmd.Flags().Int64Var(&toRevision, "to-revision", 0, "the revision to roll back to; 0 is the previous one")
	return cmd
}

type rolloutStatusOptions struct {
	*rootOptions
	timeout time.Duration
	watch   bool
}

func newRolloutStatusCmd(root *rootOptions) *cobra.Command {
	o := &rolloutStatusOptions{rootOptions: root}
	cmd := &cobra.Command{
		Use:   "status (deployment NAME | deployment/NAME)",
		Short: "Show the status of a deployment's rollout, waiting until it finishes",
		Long: "Watch a deployment until all of its pods run its current template and are\n" +
			"available, printing each change of its progress. With --watch=false, print\n" +
			"the progress once and exit 0 if the rollout is done, 1 if not.",
		Example: "  chorus rollout status deployment/web\n  chorus rollout status deploy/web --timeout=2m\n" +
			"  chorus rollout status deployment web --watch=false",
		RunE: func(cmd *cobra.Command, args []string) error {
			name, err := oneDeployment(cmd, args)
			if err != nil {
				return err
			}
			return o.run(cmd.Context(), name)
		},
	}
	f := cmd.Flags()
	f.DurationVar(&o.timeout, "timeout", 0, "how long to wait before giving up (e.g. 30s, 5m); 0 waits forever")
	f.BoolVarP(&o.watch, "watch", "w", true, "wait until the rollout finishes; false prints its state once")
	return cmd
}

func (o *rolloutStatusOptions) run(ctx context.Context, name string) error {
	c, err := o.client()
	if err != nil {
		return err
	}
	wctx := ctx
	if o.timeout > 0 {
		var cancel context.CancelFunc
		wctx, cancel = context.WithTimeout(ctx, o.timeout)
		defer cancel()
	}
	timedOut := func() error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return errors.New("timed out waiting for the condition")
	}
	ns := o.namespace()
	last := ""
	for {
		msg, done, err := rolloutCheck(wctx, c, ns, name)
		if err != nil {
			if wctx.Err() != nil {
				return timedOut()
			}
			return err
		}
		if msg != last {
			fmt.Fprintln(o.out, msg)
			last = msg
		}
		if done {
			return nil
		}
		if !o.watch {
			return &exitError{code: 1}
		}
		select {
		case <-wctx.Done():
			return timedOut()
		case <-time.After(rolloutPollInterval):
		}
	}
}

// rolloutCheck reads a deployment and its pods and says how its rollout
// stands.
func rolloutCheck(ctx context.Context, c *client, ns, name string) (msg string, done bool, err error) {
	var d api.Deployment
	if err := c.getJSON(ctx, objectPath(resourceTypeOf("deployments"), ns, name), nil, &d); err != nil {
		return "", false, err
	}
	raws, err := c.list(ctx, listPath(resourceTypeOf("pods"), ns, false), nil)
	if err != nil {
		return "", false, err
	}
	pods := make([]api.Pod, len(raws))
	for i, raw := range raws {
		if err := json.Unmarshal(raw, &pods[i]); err != nil {
			return "", false, fmt.Errorf("cannot decode pods from the server: %w", err)
		}
	}
	msg, done = rolloutState(name, &d, pods)
	return msg, done, nil
}

// rolloutState is kubectl's deployment status viewer over pods: "updated"
// pods carry the current template's hash, "available" ones of them are
// Ready, and every other pod of the deployment is old. A waiting line names
// the first new pod that is stuck, and why.
func rolloutState(name string, d *api.Deployment, pods []api.Pod) (msg string, done bool) {
	hash := api.TemplateHash(&d.Spec.Template)
	slices.SortFunc(pods, func(a, b api.Pod) int { return strings.Compare(a.Metadata.Name, b.Metadata.Name) })
	var total, updated, available int32
	problem := ""
	// A replica moving between peers is listed once per peer: count it
	// once, available if either copy is.
	seen := map[string]bool{}
	for i := range pods {
		p := &pods[i]
		if p.Metadata.Labels[api.LabelDeployment] != name || seen[p.Metadata.Name] {
			continue
		}
		seen[p.Metadata.Name] = true
		total++
		if p.Metadata.Labels[api.LabelTemplateHash] != hash {
			continue
		}
		updated++
		copies := slices.IndexFunc(pods, func(q api.Pod) bool { return q.Metadata.Name == p.Metadata.Name && podAvailable(&q) })
		if copies >= 0 {
			available++
		} else if problem == "" {
			problem = podProblem(p)
		}
	}
	want := desiredReplicas(d)
	switch {
	case updated < want:
		msg = fmt.Sprintf("%d out of %d new replicas have been updated", updated, want)
	case total > updated:
		msg = fmt.Sprintf("%d old replicas are pending termination", total-updated)
	case available < updated:
		msg = fmt.Sprintf("%d of %d updated replicas are available", available, updated)
	default:
		return fmt.Sprintf("deployment %q successfully rolled out", name), true
	}
	waiting := fmt.Sprintf("Waiting for deployment %q rollout to finish: ", name)
	if d.Spec.Paused {
		return waiting + fmt.Sprintf("rollout is paused (chorus rollout resume deployment/%s)", name), false
	}
	if problem != "" {
		msg += " (" + problem + ")"
	}
	return waiting + msg + "...", false
}

// podAvailable reports whether p is Ready: its Ready condition or, without
// one, all of its containers ready.
func podAvailable(p *api.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == "Ready" {
			return c.Status == "True"
		}
	}
	for _, cs := range p.Status.ContainerStatuses {
		if !cs.Ready {
			return false
		}
	}
	return p.Status.Phase == api.PodRunning && len(p.Status.ContainerStatuses) > 0
}

// podProblem says why p is stuck ("web-5d8f-0: ErrImagePull: message"), or
// "" when it is merely on its way.
func podProblem(p *api.Pod) string {
	for _, cs := range p.Status.ContainerStatuses {
		if w := cs.State.Waiting; w != nil && stuckReason(w.Reason) {
			return oneLine(p.Metadata.Name, w.Reason, w.Message)
		}
	}
	if p.Status.Phase != api.PodPending {
		return ""
	}
	if p.Status.Reason != "" {
		return oneLine(p.Metadata.Name, p.Status.Reason, p.Status.Message)
	}
	for _, c := range p.Status.Conditions {
		if c.Type == "PodScheduled" && c.Status == "False" && c.Reason != "" {
			return oneLine(p.Metadata.Name, c.Reason, c.Message)
		}
	}
	return ""
}

// stuckReason reports whether a container waiting for reason needs the
// user (rather than time) to get going.
func stuckReason(reason string) bool {
	switch reason {
	case "ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName",
		"CrashLoopBackOff", "CreateContainerError", "CreateContainerConfigError", "RunContainerError":
		return true
	}
	return false
}

// oneLine joins the non-empty parts with ": ", each on one line.
func oneLine(parts ...string) string {
	var keep []string
	for _, s := range parts {
		if s = strings.Join(strings.Fields(s), " "); s != "" {
			keep = append(keep, s)
		}
	}
	return strings.Join(keep, ": ")
}

type rolloutHistoryOptions struct {
	*rootOptions
	revision int64
	output   string
}

func newRolloutHistoryCmd(root *rootOptions) *cobra.Command {
	o := &rolloutHistoryOptions{rootOptions: root}
	cmd := &cobra.Command{
		Use:   "history (deployment NAME | deployment/NAME) [--revision=N]",
		Short: "List the revisions of a deployment, or show one",
		Example: "  chorus rollout history deployment/web\n  chorus rollout history deploy/web --revision=2\n" +
			"  chorus rollout history deployment web -o yaml",
		RunE: func(cmd *cobra.Command, args []string) error {
			name, err := oneDeployment(cmd, args)
			if err != nil {
				return err
			}
			return o.run(cmd.Context(), name)
		},
	}
	cmd.Flags().Int64Var(&o.revision, "revision", 0, "show the pod template of this revision")
	cmd.Flags().StringVarP(&o.output, "output", "o", "", "output format: json or yaml")
	return cmd
}

func (o *rolloutHistoryOptions) run(ctx context.Context, name string) error {
	if o.revision < 0 {
		return fmt.Errorf("revision must be a positive integer: %d", o.revision)
	}
	if err := validateOutput(o.output, "", "json", "yaml"); err != nil {
		return err
	}
	c, err := o.client()
	if err != nil {
		return err
	}
	var raw json.RawMessage
	path := apiPath("namespaces", url.PathEscape(o.namespace()), "deployments", url.PathEscape(name), "revisions")
	if err := c.getJSON(ctx, path, nil, &raw); err != nil {
		return err
	}
	var list listResponse
	if err := json.Unmarshal(raw, &list); err != nil {
		return fmt.Errorf("cannot decode the revisions of deployment %q: %w", name, err)
	}
	revs := make([]api.ControllerRevision, len(list.Items))
	for i, item := range list.Items {
		if err := json.Unmarshal(item, &revs[i]); err != nil {
			return fmt.Errorf("cannot decode the revisions of deployment %q: %w", name, err)
		}
	}
	if o.revision > 0 {
		i := slices.IndexFunc(revs, func(r api.ControllerRevision) bool { return r.Revision == o.revision })
		if i < 0 {
			return errors.New("unable to find the specified revision")
		}
		if o.output != "" {
			return printRaw(o.out, o.output, list.Items[i])
		}
		fmt.Fprintf(o.out, "deployment.apps/%s with revision #%d\n", name, o.revision)
		w := newPrefixWriter(o.out)
		describePodTemplate(w, &revs[i].Data)
		w.flush()
		return nil
	}
	if o.output != "" {
		return printRaw(o.out, o.output, raw)
	}
	fmt.Fprintf(o.out, "deployment.apps/%s\n", name)
	if len(revs) == 0 {
		fmt.Fprintln(o.out, "No rollout history found.")
		return nil
	}
	slices.SortStableFunc(revs, func(a, b api.ControllerRevision) int { return cmp.Compare(a.Revision, b.Revision) })
	// kubectl's history table is aligned as describe's sections are.
	w := newPrefixWriter(o.out)
	w.write(0, "REVISION\tCHANGE-CAUSE\n")
	for _, r := range revs {
		w.write(0, "%d\t%s\n", r.Revision, orNone(r.Metadata.Annotations[api.AnnotationChangeCause]))
	}
	w.flush()
	return nil
}

// printRaw prints an object as the agent sent it, as -o json or yaml.
func printRaw(w io.Writer, format string, raw json.RawMessage) error {
	v, err := generic(raw)
	if err != nil {
		return fmt.Errorf("cannot decode the answer of the server: %w", err)
	}
	if format == "yaml" {
		return printYAML(w, v)
	}
	return printJSON(w, v)
}
