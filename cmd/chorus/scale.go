package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"github.com/spf13/cobra"
)

type scaleOptions struct {
	*rootOptions
	replicas int32
}

func newScaleCmd(root *rootOptions) *cobra.Command {
	s := &scaleOptions{rootOptions: root}
	cmd := &cobra.Command{
		Use:     "scale (deployment NAME... | deployment/NAME...) --replicas=COUNT",
		Short:   "Set a new size for a deployment",
		Example: "  chorus scale deployment web --replicas=5\n  chorus scale deploy/web --replicas=0",
		RunE:    func(cmd *cobra.Command, args []string) error { return s.run(cmd.Context(), args) },
	}
	cmd.Flags().Int32Var(&s.replicas, "replicas", -1, "the new number of replicas (required)")
	return cmd
}

func (s *scaleOptions) run(ctx context.Context, args []string) error {
	if s.replicas < 0 {
		return errors.New("--replicas=COUNT is required, and COUNT must be greater than or equal to 0")
	}
	if len(args) == 0 {
		return errors.New("you must specify the deployment to scale: scale deployment NAME --replicas=COUNT")
	}
	reqs, _, err := parseResourceArgs(args)
	if err != nil {
		return err
	}
	for _, r := range reqs {
		if r.res.plural != "deployments" {
			return fmt.Errorf("cannot scale %s: only deployments can be scaled", r.res.plural)
		}
		if len(r.names) == 0 {
			return errors.New("resource(s) were provided, but no name was specified")
		}
	}
	c, err := s.client()
	if err != nil {
		return err
	}
	ns := s.namespace()
	failed := false
	for _, r := range reqs {
		for _, name := range r.names {
			var resp applyResponse
			path := apiPath("namespaces", url.PathEscape(ns), r.res.plural, url.PathEscape(name), "scale")
			err := c.sendJSON(ctx, http.MethodPut, path, map[string]int32{"replicas": s.replicas}, &resp)
			var se *statusError
			if errors.As(err, &se) {
				printError(s.errOut, err)
				failed = true
				continue
			}
			if err != nil {
				return err
			}
			printWarnings(s.errOut, resp.Warnings)
			if len(resp.Results) == 0 {
				resp.Results = []applyResult{{Kind: r.res.kind, Namespace: ns, Name: name}}
			}
			for _, res := range resp.Results {
				fmt.Fprintf(s.out, "%s/%s scaled\n", kindName(res.Kind), res.Name)
			}
		}
	}
	if failed {
		return &exitError{code: 1}
	}
	return nil
}
