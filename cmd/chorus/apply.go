package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
)

// stdinSource is how a manifest read from standard input is named, as
// kubectl names it in messages.
const stdinSource = "STDIN"

// manifest is one manifest file's bytes and the name the agent reports
// problems under.
type manifest struct {
	source string
	data   []byte
}

// expandPaths turns -f values into files: a directory gives its .yaml, .yml
// and .json files (not recursively) sorted by name; "-" stays "-".
func expandPaths(paths []string) ([]string, error) {
	var out []string
	for _, p := range paths {
		if p == "-" {
			out = append(out, p)
			continue
		}
		fi, err := os.Stat(p)
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("the path %q does not exist", p)
		}
		if err != nil {
			return nil, err
		}
		if !fi.IsDir() {
			out = append(out, p)
			continue
		}
		entries, err := os.ReadDir(p) // sorted by name
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			if e.IsDir() {
				continue
			}
			switch strings.ToLower(filepath.Ext(e.Name())) {
			case ".yaml", ".yml", ".json":
				out = append(out, filepath.Join(p, e.Name()))
			}
		}
	}
	return out, nil
}

// readManifests reads every file -f names; "-" reads stdin (once).
func readManifests(stdin io.Reader, paths []string) ([]manifest, error) {
	files, err := expandPaths(paths)
	if err != nil {
		return nil, err
	}
	var out []manifest
	stdinRead := false
	for _, f := range files {
		if f == "-" {
			if stdinRead {
				continue
			}
			stdinRead = true
			data, err := io.ReadAll(stdin)
			if err != nil {
				return nil, fmt.Errorf("reading standard input: %v", err)
			}
			out = append(out, manifest{source: stdinSource, data: data})
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		out = append(out, manifest{source: f, data: data})
	}
	return out, nil
}

type applyOptions struct {
	*rootOptions
	filenames []string
	// create makes it `create -f`: the agent refuses a manifest any of
	// whose objects exists (AlreadyExists) and applies nothing of it.
	create bool
}

func newApplyCmd(root *rootOptions) *cobra.Command {
	a := &applyOptions{rootOptions: root}
	cmd := &cobra.Command{
		Use:   "apply -f FILENAME",
		Short: "Apply a configuration to resources by file name or stdin",
		Long: "Create or update the objects of YAML or JSON manifests. -f takes a file,\n" +
			"a directory (its .yaml, .yml and .json files, sorted) or - for stdin,\n" +
			"and may be repeated.",
		Example: "  chorus apply -f web.yaml\n  chorus apply -f manifests/\n  cat web.yaml | chorus apply -f -",
		Args:    cobra.NoArgs,
		RunE:    func(cmd *cobra.Command, args []string) error { return a.run(cmd.Context()) },
	}
	cmd.Flags().StringArrayVarP(&a.filenames, "filename", "f", nil, "file, directory or - (stdin) holding the manifests to apply")
	return cmd
}

func (a *applyOptions) run(ctx context.Context) error {
	if len(a.filenames) == 0 {
		return errors.New("must specify -f FILENAME")
	}
	verb, query := "apply", url.Values(nil)
	if a.create {
		verb, query = "create", url.Values{"create": {"true"}}
	}
	manifests, err := readManifests(a.in, a.filenames)
	if err != nil {
		return err
	}
	if len(manifests) == 0 {
		return fmt.Errorf("no objects passed to %s", verb)
	}
	c, err := a.client()
	if err != nil {
		return err
	}
	failed := false
	for _, m := range manifests {
		resp, err := c.postManifest(ctx, apiPath("apply"), query, m.source, m.data)
		if err != nil {
			var ce *connError
			if errors.As(err, &ce) || ctx.Err() != nil {
				return err
			}
			printError(a.errOut, err)
			failed = true
			continue
		}
		printWarnings(a.errOut, resp.Warnings)
		printResults(a.out, resp.Results, false)
	}
	if failed {
		return &exitError{code: 1}
	}
	return nil
}
