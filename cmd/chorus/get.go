package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

// watchInterval is how often `get -w` polls the agent.
const watchInterval = time.Second

// typesHelp lists the resource types for messages and help.
const typesHelp = "pods (po), deployments (deploy), daemonsets (ds), services (svc), namespaces (ns), nodes (no), events (ev), all"

type getOptions struct {
	*rootOptions
	output        string
	allNamespaces bool
	selector      string
	watch         bool
	showKind      bool
	noHeaders     bool
	ignoreNF      bool
}

func newGetCmd(root *rootOptions) *cobra.Command {
	g := &getOptions{rootOptions: root}
	cmd := &cobra.Command{
		Use:   "get TYPE[,TYPE...] [NAME...] | TYPE/NAME...",
		Short: "Display one or many resources",
		Long: "Display one or many resources as a table, or as JSON, YAML or names.\n\n" +
			"Resource types: " + typesHelp + ".",
		Example: "  chorus get pods\n" +
			"  chorus get deploy,svc -o wide\n" +
			"  chorus get pods -A -l app=web\n" +
			"  chorus get deployment web -o yaml\n" +
			"  chorus get pods -w",
		RunE: func(cmd *cobra.Command, args []string) error { return g.run(cmd.Context(), args) },
	}
	f := cmd.Flags()
	f.StringVarP(&g.output, "output", "o", "", "output format: wide, json, yaml or name")
	f.BoolVarP(&g.allNamespaces, "all-namespaces", "A", false, "list the requested objects across all namespaces")
	f.StringVarP(&g.selector, "selector", "l", "", "label selector to filter on (k=v, k!=v, k, !k; comma-separated)")
	f.BoolVarP(&g.watch, "watch", "w", false, "after listing, watch for changes (polls every second; Ctrl-C stops)")
	f.BoolVar(&g.noHeaders, "no-headers", false, "print tables without their header line")
	f.BoolVar(&g.showKind, "show-kind", false, "prefix names with their type even for a single type")
	f.BoolVar(&g.ignoreNF, "ignore-not-found", false, "print nothing for named objects that do not exist")
	return cmd
}

func (g *getOptions) run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("you must specify the type of resource to get. Resource types: %s", typesHelp)
	}
	if err := validateOutput(g.output, "", "wide", "json", "yaml", "name"); err != nil {
		return err
	}
	reqs, multi, err := parseResourceArgs(args)
	if err != nil {
		return err
	}
	sel, err := parseSelector(g.selector)
	if err != nil {
		return err
	}
	names := 0
	for _, r := range reqs {
		names += len(r.names)
	}
	if names > 0 && len(sel) > 0 {
		return errors.New("name cannot be provided when a selector is specified")
	}
	c, err := g.client()
	if err != nil {
		return err
	}
	ns := g.namespace()
	to := tableOptions{
		wide:      g.output == "wide",
		namespace: g.allNamespaces,
		withKind:  multi || g.showKind,
		noHeaders: g.noHeaders,
		now:       time.Now(),
	}
	if g.watch {
		if len(reqs) != 1 {
			return fmt.Errorf("watch is only supported on individual resources and resource collections, but %d resources were found", len(reqs))
		}
		return g.runWatch(ctx, c, reqs[0], ns, sel, to)
	}

	var groups [][]object
	var notFound []error
	for _, r := range reqs {
		objs, nf, err := g.fetch(ctx, c, r, ns, sel)
		if err != nil {
			return err
		}
		notFound = append(notFound, nf...)
		groups = append(groups, objs)
	}

	switch g.output {
	case "json", "yaml", "name":
		var all []object
		for _, objs := range groups {
			all = append(all, objs...)
		}
		single := len(reqs) == 1 && names == 1
		if !(single && len(all) == 0) && !(len(all) == 0 && len(notFound) > 0) {
			if err := printObjects(g.out, g.output, all, single); err != nil {
				return err
			}
		}
	default:
		printed := false
		for i, objs := range groups {
			if len(objs) == 0 {
				continue
			}
			if printed {
				fmt.Fprintln(g.out)
			}
			if err := printTable(g.out, reqs[i].res, objs, to); err != nil {
				return err
			}
			printed = true
		}
		if !printed && len(notFound) == 0 && names == 0 {
			fmt.Fprintln(g.errOut, noResourcesMessage(reqs, ns, g.allNamespaces))
		}
	}
	if len(notFound) > 0 && !g.ignoreNF {
		for _, e := range notFound {
			printError(g.errOut, e)
		}
		return &exitError{code: 1}
	}
	return nil
}

// noResourcesMessage is kubectl's "No resources found in default namespace.".
func noResourcesMessage(reqs []typedNames, ns string, allNS bool) string {
	namespaced := true
	for _, r := range reqs {
		namespaced = namespaced && r.res.namespaced
	}
	if namespaced && !allNS {
		return fmt.Sprintf("No resources found in %s namespace.", ns)
	}
	return "No resources found"
}

// fetch gets the named objects of r, or lists them all. NotFound answers for
// names are returned apart so the others still print.
func (g *getOptions) fetch(ctx context.Context, c *client, r typedNames, ns string, sel labelSelector) (objs []object, notFound []error, err error) {
	if len(r.names) == 0 {
		objs, err := listObjects(ctx, c, r.res, ns, g.allNamespaces, sel, nil)
		if err != nil {
			return nil, nil, err
		}
		if r.res.plural == "events" {
			sortEvents(objs)
		}
		return objs, nil, nil
	}
	for _, name := range r.names {
		o, err := getObject(ctx, c, r.res, ns, name)
		if isNotFound(err) {
			notFound = append(notFound, err)
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		objs = append(objs, o)
	}
	return objs, notFound, nil
}

// runWatch prints the objects, then polls every second and prints those
// whose content changed, until ctx ends (Ctrl-C).
func (g *getOptions) runWatch(ctx context.Context, c *client, r typedNames, ns string, sel labelSelector, to tableOptions) error {
	seen := map[string]string{}
	headers := tableHeaders(r.res, to)
	widths := make([]int, len(headers))
	headerDone := false
	yamlDocs := 0

	emit := func(objs []object) error {
		var changed []object
		current := make(map[string]string, len(objs))
		for _, o := range objs {
			var buf bytes.Buffer
			if err := json.Compact(&buf, o.raw); err != nil {
				buf.Write(o.raw)
			}
			current[o.key()] = buf.String()
			if seen[o.key()] != buf.String() {
				changed = append(changed, o)
			}
		}
		for k := range seen {
			delete(seen, k)
		}
		for k, v := range current {
			seen[k] = v
		}
		if len(changed) == 0 {
			return nil
		}
		switch g.output {
		case "json", "name":
			for _, o := range changed {
				if err := printObjects(g.out, g.output, []object{o}, true); err != nil {
					return err
				}
			}
		case "yaml":
			for _, o := range changed {
				if yamlDocs > 0 {
					fmt.Fprintln(g.out, "---")
				}
				yamlDocs++
				if err := printObjects(g.out, "yaml", []object{o}, true); err != nil {
					return err
				}
			}
		default:
			to.now = time.Now()
			rows := make([][]string, 0, len(changed))
			for _, o := range changed {
				row, err := tableRow(o, to)
				if err != nil {
					return err
				}
				rows = append(rows, row)
			}
			h := headers
			if headerDone {
				h = nil
			}
			headerDone = true
			return writeTable(g.out, h, rows, widths)
		}
		return nil
	}

	objs, nf, err := g.fetch(ctx, c, r, ns, sel)
	if err != nil {
		return err
	}
	if len(nf) > 0 {
		return nf[0]
	}
	if len(objs) == 0 && g.output != "json" && g.output != "yaml" && g.output != "name" {
		fmt.Fprintln(g.errOut, noResourcesMessage([]typedNames{r}, ns, g.allNamespaces))
	}
	if err := emit(objs); err != nil {
		return err
	}
	ticker := time.NewTicker(watchInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
		objs, _, err := g.fetch(ctx, c, r, ns, sel)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if err := emit(objs); err != nil {
			return err
		}
	}
}
