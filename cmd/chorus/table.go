package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

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

// writeTable prints headers and rows aligned as kubectl's tables are
// (three spaces between columns).
func writeTable(w io.Writer, headers []string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 6, 4, 3, ' ', 0)
	for _, r := range append([][]string{headers}, rows...) {
		if _, err := io.WriteString(tw, strings.Join(r, "\t")+"\n"); err != nil {
			return err
		}
	}
	return tw.Flush()
}
