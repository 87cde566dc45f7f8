package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/chorus-sh/chorus/api"
	"github.com/spf13/cobra"
)

// newClusterCmd is `chorus cluster`: operations on the whole cluster.
func newClusterCmd(root *rootOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Local clusters (create, delete) and operations on the whole cluster (rotate-secret)",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newRotateSecretCmd(root), newClusterCreateCmd(root), newClusterDeleteCmd(root))
	return cmd
}

// rotationsPath is the chorus.sh/v1 SecretRotation collection.
const rotationsPath = api.PathChorusV1 + "/secretrotations"

// newRotateSecretCmd is `chorus cluster rotate-secret`.
func newRotateSecretCmd(root *rootOptions) *cobra.Command {
	var status, watch bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "rotate-secret",
		Short: "Move the cluster to a new secret without downtime, and show its progress",
		Long: "rotate-secret asks the peer (-s) to move the whole cluster to a new cluster secret: every peer\n" +
			"installs it beside the old one, then uses it, then forgets the old one, each phase once every\n" +
			"alive peer finished the previous one, while pods and the API keep serving. At the end each peer\n" +
			"has written its new <data-dir>/token and <data-dir>/kubeconfig, and the old join token, API\n" +
			"token and CA are refused. A peer that was down during the whole rotation cannot rejoin with the\n" +
			"old token: copy a current peer's <data-dir>/token over its own before starting it.\n\n" +
			"The command waits for the end (as `kubectl rollout status` does), reading the kubeconfig again\n" +
			"at each check, as the peers rewrite theirs.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if !status {
				c, err := root.client()
				if err != nil {
					return err
				}
				var obj api.SecretRotation
				if err := c.sendJSON(ctx, http.MethodPost, rotationsPath, api.NewSecretRotation(api.SecretRotationStatus{}), &obj); err != nil {
					return err
				}
				st := obj.Status
				fmt.Fprintf(root.out, "rotation of the cluster secret from %s to %s started through %s\n", st.From, st.ID, st.By)
				if !watch {
					return nil
				}
				return waitRotation(ctx, root, timeout, false, st.ID)
			}
			return waitRotation(ctx, root, timeout, !watch, "")
		},
	}
	cmd.Flags().BoolVar(&status, "status", false, "only show the progress of the last rotation, start none")
	cmd.Flags().BoolVarP(&watch, "watch", "w", true, "wait until the rotation ends, showing its progress")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Minute, "how long to wait for the end")
	return cmd
}

// waitRotation shows the progress of the last rotation, a line at every
// change, until it completes (or once, with once). started is the id of
// the rotation this command started, if it did: two asked at the same
// moment through two peers, the record keeps one (the last written).
func waitRotation(ctx context.Context, root *rootOptions, timeout time.Duration, once bool, started string) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	last := ""
	var failingSince time.Time
	for {
		// The peers rewrite their kubeconfig during the rotation (both
		// CAs, then the new token): read it again at each check.
		root.kc = kubeconfigState{}
		st, err := rotationStatusOnce(ctx, root)
		switch {
		case err == nil:
			failingSince = time.Time{}
			if started != "" && st.ID != started {
				fmt.Fprintf(root.out, "a rotation to %s, asked at the same moment through %s, replaced this one: following it\n", st.ID, st.By)
				started = st.ID
			}
			line := fmt.Sprintf("phase %s: %d of %d peers done", st.Phase, st.Done, st.Total)
			if line != last {
				fmt.Fprintf(root.out, "%s (%s)\n", line, st.Elapsed)
				last = line
			}
			if st.Complete {
				fmt.Fprintf(root.out, "cluster secret rotated to %s: every peer wrote its new <data-dir>/token and <data-dir>/kubeconfig; the old token and CA are refused (replace copies of kubeconfigs: chorus kubeconfig)\n", st.ID)
				return nil
			}
			if once {
				return nil
			}
		case isNotFound(err):
			return errors.New("the cluster secret was never rotated")
		case isUnauthorized(err):
			// Not wrapped: printError would print only the server's Status.
			return fmt.Errorf("%v: the credential in use was retired by the rotation; use a peer's new <data-dir>/kubeconfig (chorus kubeconfig --data-dir <dir>)", err)
		default:
			if failingSince.IsZero() {
				failingSince = time.Now()
			} else if time.Since(failingSince) > 15*time.Second || once {
				return fmt.Errorf("rotation status: %w", err)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the rotation did not end within %v (%s): `chorus cluster rotate-secret --status` shows it; it goes on when the peers it waits for are back or declared dead", timeout, last)
		case <-time.After(time.Second):
		}
	}
}

func rotationStatusOnce(ctx context.Context, root *rootOptions) (api.SecretRotationStatus, error) {
	var obj api.SecretRotation
	c, err := root.client()
	if err != nil {
		return obj.Status, err
	}
	defer c.hc.CloseIdleConnections() // a new client each second, as the kubeconfig changes
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err = c.getJSON(cctx, rotationsPath+"/"+api.SecretRotationName, nil, &obj)
	return obj.Status, err
}

// isNotFound reports whether err is the agent's 404.
func isNotFound(err error) bool {
	var se *statusError
	return errors.As(err, &se) && se.Code == http.StatusNotFound
}

// isUnauthorized reports whether err is the agent's 401.
func isUnauthorized(err error) bool {
	var se *statusError
	return errors.As(err, &se) && se.Code == http.StatusUnauthorized
}
