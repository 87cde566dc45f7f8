package trust

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"sigs.k8s.io/yaml"
)

// Kubeconfig is the part of a kubeconfig file (clientcmd's v1 Config)
// that chorus writes and reads.
type Kubeconfig struct {
	APIVersion     string         `json:"apiVersion"`
	Kind           string         `json:"kind"`
	Clusters       []NamedCluster `json:"clusters"`
	Users          []NamedUser    `json:"users"`
	Contexts       []NamedContext `json:"contexts"`
	CurrentContext string         `json:"current-context"`
}

// NamedCluster is an entry of clusters.
type NamedCluster struct {
	Name    string  `json:"name"`
	Cluster Cluster `json:"cluster"`
}

// Cluster is where the API is and how to trust it.
type Cluster struct {
	Server                   string `json:"server"`
	CertificateAuthorityData []byte `json:"certificate-authority-data,omitempty"` // PEM (base64 in the file)
	CertificateAuthority     string `json:"certificate-authority,omitempty"`      // a PEM file
	InsecureSkipTLSVerify    bool   `json:"insecure-skip-tls-verify,omitempty"`
}

// NamedUser is an entry of users.
type NamedUser struct {
	Name string `json:"name"`
	User User   `json:"user"`
}

// User is a credential.
type User struct {
	Token     string `json:"token,omitempty"`
	TokenFile string `json:"tokenFile,omitempty"`
}

// NamedContext is an entry of contexts.
type NamedContext struct {
	Name    string  `json:"name"`
	Context Context `json:"context"`
}

// Context joins a cluster and a user.
type Context struct {
	Cluster   string `json:"cluster"`
	User      string `json:"user"`
	Namespace string `json:"namespace,omitempty"`
}

// AdminKubeconfig returns an admin kubeconfig for the API at server
// ("https://host:port"): the CA certificate (PEM), the bearer token, and a
// context named after the cluster, current.
func AdminKubeconfig(cluster, server string, caPEM []byte, token string) ([]byte, error) {
	user := "admin@" + cluster
	k := Kubeconfig{
		APIVersion:     "v1",
		Kind:           "Config",
		Clusters:       []NamedCluster{{Name: cluster, Cluster: Cluster{Server: server, CertificateAuthorityData: caPEM}}},
		Users:          []NamedUser{{Name: user, User: User{Token: token}}},
		Contexts:       []NamedContext{{Name: cluster, Context: Context{Cluster: cluster, User: user}}},
		CurrentContext: cluster,
	}
	return yaml.Marshal(k)
}

// ClientConfig is what a client needs from a kubeconfig: the server, how
// to trust it and the credential.
type ClientConfig struct {
	Server    string // URL
	CAPEM     []byte // nil: the system's roots
	Insecure  bool   // insecure-skip-tls-verify
	Token     string
	Namespace string
	Context   string // the current context's name
}

// maxKubeconfig bounds the size of a kubeconfig file read.
const maxKubeconfig = 1 << 20

// ParseKubeconfig returns the client configuration of the current context
// of a kubeconfig. Relative file paths in it (certificate-authority,
// tokenFile) are taken relative to dir.
func ParseKubeconfig(b []byte, dir string) (*ClientConfig, error) {
	if len(b) > maxKubeconfig {
		return nil, fmt.Errorf("larger than %d bytes", maxKubeconfig)
	}
	var k Kubeconfig
	if err := yaml.Unmarshal(b, &k); err != nil {
		return nil, err
	}
	if k.CurrentContext == "" {
		return nil, errors.New("current-context: not set")
	}
	var ctx *Context
	for i := range k.Contexts {
		if k.Contexts[i].Name == k.CurrentContext {
			ctx = &k.Contexts[i].Context
		}
	}
	if ctx == nil {
		return nil, fmt.Errorf("current-context: no context named %q in contexts", k.CurrentContext)
	}
	cc := &ClientConfig{Namespace: ctx.Namespace, Context: k.CurrentContext}
	found := false
	for i, c := range k.Clusters {
		if c.Name != ctx.Cluster {
			continue
		}
		found = true
		cc.Server, cc.Insecure = c.Cluster.Server, c.Cluster.InsecureSkipTLSVerify
		cc.CAPEM = c.Cluster.CertificateAuthorityData
		if len(cc.CAPEM) == 0 && c.Cluster.CertificateAuthority != "" {
			data, err := os.ReadFile(resolve(dir, c.Cluster.CertificateAuthority))
			if err != nil {
				return nil, fmt.Errorf("clusters[%d].cluster.certificate-authority: %w", i, err)
			}
			cc.CAPEM = data
		}
		if cc.Server == "" {
			return nil, fmt.Errorf("clusters[%d].cluster.server: not set", i)
		}
	}
	if !found {
		return nil, fmt.Errorf("contexts[%s].context.cluster: no cluster named %q in clusters", k.CurrentContext, ctx.Cluster)
	}
	for i, u := range k.Users {
		if u.Name != ctx.User {
			continue
		}
		cc.Token = u.User.Token
		if cc.Token == "" && u.User.TokenFile != "" {
			data, err := os.ReadFile(resolve(dir, u.User.TokenFile))
			if err != nil {
				return nil, fmt.Errorf("users[%d].user.tokenFile: %w", i, err)
			}
			cc.Token = strings.TrimSpace(string(data))
		}
	}
	return cc, nil
}

func resolve(dir, p string) string {
	if filepath.IsAbs(p) || dir == "" {
		return p
	}
	return filepath.Join(dir, p)
}
