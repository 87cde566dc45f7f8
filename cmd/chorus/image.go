package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
)

// imageInfo is one image of the agent's store.
type imageInfo struct {
	Name   string `json:"name"`
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
	Peers  int    `json:"peers,omitempty"`
}

func newImageCmd(root *rootOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "image",
		Aliases: []string{"images"},
		Short:   "Load images into the cluster and list them",
	}
	cmd.AddCommand(newImageLoadCmd(root), newImageListCmd(root))
	return cmd
}

func newImageLoadCmd(root *rootOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "load FILE... | -",
		Short: "Load image archives (docker save or OCI layout tar) into the cluster",
		Example: "  chorus image load web.tar\n" +
			"  docker save example/web:1 | chorus image load -",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return errors.New("expected one or more image archives, or - for stdin")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error { return imageLoad(cmd.Context(), root, args) },
	}
}

// imageLoad sends each archive to the agent, streaming it.
func imageLoad(ctx context.Context, o *rootOptions, files []string) error {
	c, err := o.client()
	if err != nil {
		return err
	}
	failed := false
	for _, f := range files {
		err := loadOne(ctx, c, o, f)
		if err == nil {
			continue
		}
		var se *statusError
		if !errors.As(err, &se) {
			return err
		}
		printError(o.errOut, err)
		failed = true
	}
	if failed {
		return &exitError{code: 1}
	}
	return nil
}

func loadOne(ctx context.Context, c *client, o *rootOptions, file string) error {
	var body io.Reader
	size := int64(-1)
	label := file
	if file == "-" {
		body, label = o.in, "<stdin>"
	} else {
		f, err := os.Open(file)
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("the path %q does not exist", file)
		}
		if err != nil {
			return err
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		if fi.IsDir() {
			return fmt.Errorf("%s is a directory, not an image archive", file)
		}
		body, size = f, fi.Size()
	}
	pr := newProgressReader(body, o.errOut, label, size, isTerminal(o.errOut))
	r := request{method: http.MethodPost, path: apiPath("images"), body: pr, contentType: "application/x-tar"}
	if size > 0 {
		r.contentLength = size
	}
	var out struct {
		Images []imageInfo `json:"images"`
	}
	err := c.call(ctx, r, &out)
	pr.finish(err == nil)
	if err != nil {
		return err
	}
	if len(out.Images) == 0 {
		fmt.Fprintf(o.errOut, "Warning: %s held no image\n", label)
	}
	for _, im := range out.Images {
		fmt.Fprintf(o.out, "image %s loaded (%s, %s)\n", im.Name, shortDigest(im.Digest), humanSize(im.Size))
	}
	return nil
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// progressReader counts what the HTTP client reads of an upload and draws a
// progress bar on a terminal, or prints one line at the end otherwise.
type progressReader struct {
	r     io.Reader
	w     io.Writer
	label string
	total int64 // -1: unknown
	tty   bool
	start time.Time

	mu       sync.Mutex
	n        int64
	lastDraw time.Time
	done     bool
}

func newProgressReader(r io.Reader, w io.Writer, label string, total int64, tty bool) *progressReader {
	return &progressReader{r: r, w: w, label: label, total: total, tty: tty, start: time.Now()}
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n += int64(n)
	if p.tty && !p.done && time.Since(p.lastDraw) >= 100*time.Millisecond {
		p.lastDraw = time.Now()
		p.draw()
	}
	return n, err
}

// draw writes the bar over the current line; p.mu is held.
func (p *progressReader) draw() {
	if p.total <= 0 {
		fmt.Fprintf(p.w, "\r%s  %s sent\x1b[K", p.label, humanSize(p.n))
		return
	}
	const width = 30
	frac := float64(p.n) / float64(p.total)
	if frac > 1 {
		frac = 1
	}
	filled := int(frac * width)
	bar := strings.Repeat("=", filled)
	if filled < width {
		bar += ">" + strings.Repeat(" ", width-filled-1)
	}
	// \x1b[K clears what a longer previous line left.
	fmt.Fprintf(p.w, "\r%s  [%s] %3d%%  %s/%s\x1b[K", p.label, bar, int(frac*100), humanSize(p.n), humanSize(p.total))
}

// finish ends the bar (or prints the summary line).
func (p *progressReader) finish(ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done {
		return
	}
	p.done = true
	took := time.Since(p.start).Round(100 * time.Millisecond)
	if p.tty {
		if ok {
			p.draw()
		}
		fmt.Fprintln(p.w)
		return
	}
	if ok {
		fmt.Fprintf(p.w, "%s: sent %s in %s\n", p.label, humanSize(p.n), took)
	}
}

func newImageListCmd(root *rootOptions) *cobra.Command {
	var noTrunc bool
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List the images the cluster holds",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := root.client()
			if err != nil {
				return err
			}
			var out struct {
				Items []imageInfo `json:"items"`
			}
			if err := c.getJSON(cmd.Context(), apiPath("images"), nil, &out); err != nil {
				return err
			}
			if len(out.Items) == 0 {
				fmt.Fprintln(root.errOut, "No images found")
				return nil
			}
			sort.SliceStable(out.Items, func(i, j int) bool { return out.Items[i].Name < out.Items[j].Name })
			rows := make([][]string, 0, len(out.Items))
			for _, im := range out.Items {
				digest := im.Digest
				if !noTrunc {
					digest = shortDigest(digest)
				}
				rows = append(rows, []string{im.Name, digest, humanSize(im.Size), strconv.Itoa(im.Peers)})
			}
			return writeTable(root.out, []string{"NAME", "DIGEST", "SIZE", "PEERS"}, rows, nil)
		},
	}
	cmd.Flags().BoolVar(&noTrunc, "no-trunc", false, "show whole digests")
	return cmd
}
