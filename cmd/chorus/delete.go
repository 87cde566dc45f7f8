package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/spf13/cobra"
)

type deleteOptions struct {
	*rootOptions
	filenames      []string
	ignoreNotFound bool
	all            bool
	selector       string
}

func newDeleteCmd(root *rootOptions) *cobra.Command {
	d := &deleteOptions{rootOptions: root}
	cmd := &cobra.Command{
		Use:   "delete (-f FILENAME | TYPE NAME... | TYPE/NAME... | TYPE -l SELECTOR | TYPE --all)",
		Short: "Delete resources by file names, stdin, or type and name",
		Example: "  chorus delete -f web.yaml\n" +
			"  chorus delete deployment web\n" +
			"  chorus delete deploy/web svc/web\n" +
			"  chorus delete pods -l app=web",
		RunE: func(cmd *cobra.Command, args []string) error { return d.run(cmd.Context(), args) },
	}
	f := cmd.Flags()
	f.StringArrayVarP(&d.filenames, "filename", "f", nil, "file, directory or - (stdin) holding the manifests of the objects to delete")
	f.BoolVar(&d.ignoreNotFound, "ignore-not-found", false, "treat objects that do not exist as deleted")
	f.BoolVar(&d.all, "all", false, "delete every object of the type in the namespace")
	f.StringVarP(&d.selector, "selector", "l", "", "delete the objects whose labels match (k=v, k!=v; comma-separated)")
	return cmd
}

func (d *deleteOptions) run(ctx context.Context, args []string) error {
	switch {
	case len(d.filenames) > 0 && len(args) > 0:
		return errors.New("when paths or stdin are given as input, you may not specify resources as arguments as well")
	case len(d.filenames) == 0 && len(args) == 0:
		return errors.New("you must provide one or more resources by argument or filename (-f FILENAME, TYPE NAME or TYPE/NAME)")
	}
	if len(d.filenames) > 0 {
		return d.runFiles(ctx)
	}
	return d.runArgs(ctx, args)
}

// runFiles deletes the objects of manifests.
func (d *deleteOptions) runFiles(ctx context.Context) error {
	manifests, err := readManifests(d.in, d.filenames)
	if err != nil {
		return err
	}
	if len(manifests) == 0 {
		return errors.New("no objects passed to delete")
	}
	c, err := d.client()
	if err != nil {
		return err
	}
	failed := false
	for _, m := range manifests {
		resp, err := c.postManifest(ctx, apiPath("delete"), nil, m.source, m.data)
		if err != nil {
			var ce *connError
			if errors.As(err, &ce) || ctx.Err() != nil {
				return err
			}
			printError(d.errOut, err)
			failed = true
			continue
		}
		printWarnings(d.errOut, resp.Warnings)
		if d.printDeleted(resp.Results) {
			failed = true
		}
	}
	if failed {
		return &exitError{code: 1}
	}
	return nil
}

// printDeleted prints `deployment.apps "web" deleted` lines, and NotFound
// errors for "notfound" results unless --ignore-not-found. It reports
// whether something was not found (and not ignored).
func (d *deleteOptions) printDeleted(results []applyResult) (missing bool) {
	for _, r := range results {
		if r.Action == "notfound" {
			if !d.ignoreNotFound {
				printError(d.errOut, &statusError{apiStatus{
					Reason:  "NotFound",
					Code:    http.StatusNotFound,
					Message: fmt.Sprintf("%s %q not found", kindGroupResource(r.Kind), r.Name),
				}})
				missing = true
			}
			continue
		}
		action := r.Action
		if action == "" {
			action = "deleted"
		}
		fmt.Fprintf(d.out, "%s %q %s\n", kindName(r.Kind), r.Name, action)
	}
	return missing
}

// runArgs deletes objects named on the command line, or selected with -l
// or --all.
func (d *deleteOptions) runArgs(ctx context.Context, args []string) error {
	reqs, _, err := parseResourceArgs(args)
	if err != nil {
		return err
	}
	sel, err := parseSelector(d.selector)
	if err != nil {
		return err
	}
	for _, r := range reqs {
		if r.res.plural == "nodes" {
			return errors.New("nodes cannot be deleted: stop the peer's 'chorus agent' instead")
		}
		switch {
		case len(r.names) > 0 && (d.all || len(sel) > 0):
			return errors.New("name cannot be provided when a selector or --all is specified")
		case len(r.names) == 0 && !d.all && len(sel) == 0:
			return errors.New("resource(s) were provided, but no name was specified")
		}
	}
	c, err := d.client()
	if err != nil {
		return err
	}
	ns := d.namespace()
	failed := false
	for _, r := range reqs {
		names := r.names
		if len(names) == 0 {
			objs, err := listObjects(ctx, c, r.res, ns, false, sel, nil)
			if err != nil {
				return err
			}
			if len(objs) == 0 {
				fmt.Fprintln(d.errOut, noResourcesMessage([]typedNames{r}, ns, false))
			}
			for _, o := range objs {
				names = append(names, o.Metadata.Name)
			}
		}
		for _, name := range names {
			var resp applyResponse
			err := c.call(ctx, request{method: http.MethodDelete, path: objectPath(r.res, ns, name)}, &resp)
			if isNotFound(err) {
				if !d.ignoreNotFound {
					printError(d.errOut, err)
					failed = true
				}
				continue
			}
			var se *statusError
			if errors.As(err, &se) {
				printError(d.errOut, err)
				failed = true
				continue
			}
			if err != nil {
				return err
			}
			printWarnings(d.errOut, resp.Warnings)
			if len(resp.Results) == 0 {
				resp.Results = []applyResult{{Kind: r.res.kind, Namespace: ns, Name: name, Action: "deleted"}}
			}
			if d.printDeleted(resp.Results) {
				failed = true
			}
		}
	}
	if failed {
		return &exitError{code: 1}
	}
	return nil
}
