package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// TODO(exec helper): replace this placeholder.
func newExecCmd(root *rootOptions) *cobra.Command {
	return &cobra.Command{Use: "exec", Hidden: true, RunE: func(*cobra.Command, []string) error { return errors.New("not built yet") }}
}
