package main

import (
	"io"
	"strings"
	"text/tabwriter"
)

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
