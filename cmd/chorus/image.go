package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/chorus-sh/chorus/api"
)

// imagesPath is the collection of images in chorus' API group.
const imagesPath = api.PathChorusV1 + "/images"

// unpackedSize shows an unpacked size, "-" when it was not measured.
func unpackedSize(n int64) string {
	if n <= 0 {
		return "-"
	}
	return api.HumanSize(n)
}

func newImageCmd(root *rootOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "image",
		Aliases: []string{"images"},
		Short:   "Load images into the cluster, list and remove them",
	}
	cmd.AddCommand(newImageLoadCmd(root), newImageListCmd(root), newImageRemoveCmd(root), newImagePruneCmd(root))
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
	r := request{method: http.MethodPost, path: imagesPath, body: pr, contentType: "application/x-tar"}
	if size > 0 {
		r.contentLength = size
	}
	var out api.ImageList
	err := c.call(ctx, r, &out)
	pr.finish(err == nil)
	if err != nil {
		return err
	}
	if len(out.Items) == 0 {
		fmt.Fprintf(o.errOut, "Warning: %s held no image\n", label)
	}
	for _, im := range out.Items {
		fmt.Fprintf(o.out, "image %s loaded (%s, %s, %s unpacked)\n", im.Reference, api.ShortDigest(im.Digest), api.HumanSize(im.Size), unpackedSize(im.Unpacked))
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
		fmt.Fprintf(p.w, "\r%s  %s sent\x1b[K", p.label, api.HumanSize(p.n))
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
	fmt.Fprintf(p.w, "\r%s  [%s] %3d%%  %s/%s\x1b[K", p.label, bar, int(frac*100), api.HumanSize(p.n), api.HumanSize(p.total))
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
		fmt.Fprintf(p.w, "%s: sent %s in %s\n", p.label, api.HumanSize(p.n), took)
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
			var out api.ImageList
			if err := c.getJSON(cmd.Context(), imagesPath, nil, &out); err != nil {
				return err
			}
			if len(out.Items) == 0 {
				fmt.Fprintln(root.errOut, "No images found")
				return nil
			}
			sort.SliceStable(out.Items, func(i, j int) bool { return out.Items[i].Reference < out.Items[j].Reference })
			rows := make([][]string, 0, len(out.Items))
			for _, im := range out.Items {
				digest := im.Digest
				if !noTrunc {
					digest = api.ShortDigest(digest)
				}
				rows = append(rows, []string{im.Reference, digest, api.HumanSize(im.Size), unpackedSize(im.Unpacked), strconv.Itoa(int(im.Peers))})
			}
			return writeTable(root.out, []string{"NAME", "DIGEST", "SIZE", "UNPACKED", "PEERS"}, rows)
		},
	}
	cmd.Flags().BoolVar(&noTrunc, "no-trunc", false, "show whole digests")
	return cmd
}

func newImageRemoveCmd(root *rootOptions) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:     "rm NAME...",
		Aliases: []string{"remove", "delete"},
		Short:   "Remove images from the peer the CLI talks to",
		Long: `Remove images from the peer the CLI talks to (--server); other peers keep
their copies. An image a pod on that peer uses is not removed unless
--force is given: the pod runs on, and fetches the image again from another
peer when it next starts a container.`,
		Example: "  chorus image rm example/web:1\n  chorus --server 127.0.0.12:7070 image rm example/web:1 example/web:2",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return errors.New("expected one or more image names, e.g. example/web:1")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := root.client()
			if err != nil {
				return err
			}
			var q url.Values
			if force {
				q = url.Values{"force": {"true"}}
			}
			failed := false
			for _, name := range args {
				var out api.Image
				err := c.call(cmd.Context(), request{method: http.MethodDelete, path: imagesPath + "/" + url.PathEscape(api.ImageObjectName(name)), query: q}, &out)
				var se *statusError
				if errors.As(err, &se) {
					printError(root.errOut, err)
					failed = true
					continue
				}
				if err != nil {
					return err
				}
				fmt.Fprintf(root.out, "image %s removed from peer %s\n", out.Reference, out.RemovedFrom)
			}
			if failed {
				return &exitError{code: 1}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "remove the image even while pods on the peer use it")
	return cmd
}

func newImagePruneCmd(root *rootOptions) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "prune",
		Short: "Remove the images no pod uses from the peer the CLI talks to",
		Long: `Remove from the peer the CLI talks to (--server) every image that no pod
on it uses and that another alive peer holds with the same content, so the
cluster keeps a copy. With --all, remove every image no pod on the peer
uses, even the cluster's last copy.

Peers also do this by themselves for images unused for --image-gc-after
(24h by default; see chorus agent --help).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := root.client()
			if err != nil {
				return err
			}
			var q url.Values
			if all {
				q = url.Values{"all": {"true"}}
			}
			var out api.ImageList
			if err := c.call(cmd.Context(), request{method: http.MethodDelete, path: imagesPath, query: q}, &out); err != nil {
				return err
			}
			if len(out.Items) == 0 {
				self, err := c.servingPeer(cmd.Context())
				if err != nil {
					return err
				}
				fmt.Fprintf(root.out, "no image to remove on peer %s\n", self.Name)
				return nil
			}
			var total int64
			for _, im := range out.Items {
				fmt.Fprintf(root.out, "image %s removed from peer %s (%s unpacked)\n", im.Reference, im.RemovedFrom, unpackedSize(im.Unpacked))
				total += im.Unpacked
			}
			fmt.Fprintf(root.out, "%d images, %s unpacked\n", len(out.Items), api.HumanSize(total))
			return nil
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "also remove images no other peer holds")
	return cmd
}
