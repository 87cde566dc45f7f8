package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/chorus-sh/chorus/trust"
	"github.com/spf13/cobra"
)

// localKubeconfigHint names the kubeconfig the CLI reads when none is
// given: the one of a peer running on this machine with the default data
// dir.
const localKubeconfigHint = "/var/lib/chorus/<host name>/kubeconfig, if readable"

// kubeconfigState is the kubeconfig the CLI found, read once.
type kubeconfigState struct {
	loaded bool
	cc     *trust.ClientConfig
	path   string
	err    error
}

// kubeconfig returns the client configuration of the kubeconfig the CLI
// uses and its path: --kubeconfig, else the first file of KUBECONFIG
// (a list separated by colons) that exists, else the kubeconfig of a local
// peer with the default data dir; nil when there is none.
func (o *rootOptions) kubeconfig() (*trust.ClientConfig, string, error) {
	if o.kc.loaded {
		return o.kc.cc, o.kc.path, o.kc.err
	}
	o.kc.loaded = true
	var candidates []string
	explicit := false
	if v := strings.TrimSpace(o.v.GetString("kubeconfig")); v != "" {
		candidates, explicit = filepath.SplitList(v), true
	} else if h, err := os.Hostname(); err == nil {
		candidates = []string{filepath.Join("/var/lib/chorus", h, "kubeconfig")}
	}
	for _, p := range candidates {
		b, err := os.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) || !explicit && errors.Is(err, fs.ErrPermission) {
			continue
		}
		if err != nil {
			o.kc.err = fmt.Errorf("kubeconfig: %w", err)
			return nil, p, o.kc.err
		}
		cc, err := trust.ParseKubeconfig(b, filepath.Dir(p))
		if err != nil {
			o.kc.err = fmt.Errorf("kubeconfig %s: %w", p, err)
			return nil, p, o.kc.err
		}
		o.kc.cc, o.kc.path = cc, p
		return cc, p, nil
	}
	if explicit && len(candidates) == 1 {
		o.kc.err = fmt.Errorf("kubeconfig %s: no such file", candidates[0])
	}
	return nil, "", o.kc.err
}

// tlsConfig returns the TLS configuration of the connection to the agent:
// the CA of --certificate-authority, else the kubeconfig's, else the
// system's roots.
func (o *rootOptions) tlsConfig() (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
	var caPEM []byte
	from := ""
	if f := strings.TrimSpace(o.v.GetString("certificate-authority")); f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("--certificate-authority: %w", err)
		}
		caPEM, from = b, "--certificate-authority "+f
	} else {
		kc, path, err := o.kubeconfig()
		if err != nil {
			return nil, err
		}
		if kc != nil {
			caPEM, from = kc.CAPEM, "kubeconfig "+path
			tc.InsecureSkipVerify = kc.Insecure
		}
	}
	if len(caPEM) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(caPEM) {
			return nil, fmt.Errorf("%s: no PEM certificate in its certificate authority", from)
		}
		tc.RootCAs = pool
	}
	return tc, nil
}

// newKubeconfigCmd is `chorus kubeconfig`: print an admin kubeconfig for
// the peer given by -s.
func newKubeconfigCmd(o *rootOptions) *cobra.Command {
	var dataDir, tokenFile string
	cmd := &cobra.Command{
		Use:   "kubeconfig",
		Short: "Print an admin kubeconfig for the peer given by -s",
		Long: `Print an admin kubeconfig (server, cluster CA, API token) for the peer given by -s,
after checking that the peer accepts it. The credential comes from a peer's data dir on
this machine (--data-dir: its kubeconfig or its join token), from the cluster's join token
(--join-token-file or CHORUS_JOIN_TOKEN), or else from the kubeconfig the CLI uses.
Every peer also writes its own to <data-dir>/kubeconfig.`,
		Example: `  chorus -s 10.0.0.12:7070 kubeconfig --data-dir /var/lib/chorus/n1 > n2.kubeconfig
  kubectl --kubeconfig n2.kubeconfig version`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cluster, caPEM, token, err := kubeconfigCredential(o, dataDir, tokenFile)
			if err != nil {
				return err
			}
			server := o.server()
			if !strings.Contains(server, "://") {
				server = "https://" + server
			}
			server = strings.TrimSuffix(server, "/")
			b, err := trust.AdminKubeconfig(cluster, server, caPEM, token)
			if err != nil {
				return err
			}
			// The peer must accept what is printed.
			pool := x509.NewCertPool()
			if len(caPEM) > 0 && !pool.AppendCertsFromPEM(caPEM) {
				return errors.New("the cluster CA is not a PEM certificate")
			}
			tc := &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
			if len(caPEM) > 0 {
				tc.RootCAs = pool
			}
			c, err := newClient(server, token, tc, o.logger())
			if err != nil {
				return err
			}
			if _, err := c.servingPeer(cmd.Context()); err != nil {
				return fmt.Errorf("the peer at %s does not accept this credential: %w", server, err)
			}
			_, err = o.out.Write(b)
			return err
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "data dir of a peer on this machine to take the credential from")
	cmd.Flags().StringVar(&tokenFile, "join-token-file", "", "file holding the cluster's join token (a peer's <data-dir>/token); env CHORUS_JOIN_TOKEN holds the token itself")
	return cmd
}

// kubeconfigCredential returns the cluster name, CA and token for
// `chorus kubeconfig`.
func kubeconfigCredential(o *rootOptions, dataDir, tokenFile string) (string, []byte, string, error) {
	fromSecret := func(s trust.Secret) (string, []byte, string, error) {
		ca, err := s.CA()
		if err != nil {
			return "", nil, "", err
		}
		return s.ClusterID(), ca.CertPEM(), s.APIToken(), nil
	}
	switch {
	case dataDir != "" && tokenFile != "":
		return "", nil, "", errors.New("--data-dir and --join-token-file: give one of them, not both")
	case dataDir != "":
		// The peer's own kubeconfig holds its actual token (an explicit
		// --api-token overrides the derived one).
		if b, err := os.ReadFile(filepath.Join(dataDir, "kubeconfig")); err == nil {
			cc, err := trust.ParseKubeconfig(b, dataDir)
			if err != nil {
				return "", nil, "", fmt.Errorf("--data-dir: %w", err)
			}
			name := "chorus"
			if s, err := trust.ReadTokenFile(filepath.Join(dataDir, trust.TokenFile)); err == nil {
				name = s.ClusterID()
			}
			return name, cc.CAPEM, cc.Token, nil
		}
		s, err := trust.ReadTokenFile(filepath.Join(dataDir, trust.TokenFile))
		if err != nil {
			return "", nil, "", fmt.Errorf("--data-dir: %w", err)
		}
		return fromSecret(s)
	case tokenFile != "":
		s, err := trust.ReadTokenFile(tokenFile)
		if err != nil {
			return "", nil, "", fmt.Errorf("--join-token-file: %w", err)
		}
		return fromSecret(s)
	}
	if t := os.Getenv("CHORUS_JOIN_TOKEN"); t != "" {
		s, err := trust.ParseToken(t)
		if err != nil {
			return "", nil, "", fmt.Errorf("CHORUS_JOIN_TOKEN: %w", err)
		}
		return fromSecret(s)
	}
	kc, _, err := o.kubeconfig()
	if err != nil {
		return "", nil, "", err
	}
	if kc == nil {
		return "", nil, "", errors.New("chorus kubeconfig needs a credential: --data-dir of a peer on this machine, --join-token-file, CHORUS_JOIN_TOKEN or a kubeconfig (--kubeconfig, KUBECONFIG)")
	}
	tok := kc.Token
	if t := strings.TrimSpace(o.v.GetString("token")); t != "" {
		tok = t
	}
	return kc.Context, kc.CAPEM, tok, nil
}
