package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// TODO(dashboard helper): replace this placeholder.
func newDashboardCmd(root *rootOptions) *cobra.Command {
	return &cobra.Command{Use: "dashboard", Hidden: true, RunE: func(*cobra.Command, []string) error { return errors.New("not built yet") }}
}
