package agent

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"time"

	"github.com/chorus-sh/chorus/trust"
)

// KubeconfigFile is the name of the admin kubeconfig in a peer's data dir.
const KubeconfigFile = "kubeconfig"

// peerTrust is what a peer of a protected cluster holds: the cluster
// secret, the cluster CA derived from it and its own certificate. A nil
// *peerTrust is an --insecure peer: plain HTTP, no gossip key unless given.
type peerTrust struct {
	secret trust.Secret
	ca     *trust.CA
	cert   tls.Certificate
}

// setupTrust finds the cluster secret of this peer and fills in what
// derives from it and was not given explicitly (the gossip key, the API
// token). The secret comes from, in order: the join token given
// (--join-token), the token file of the data dir (a restart), or, for the
// first peer of a new cluster (no --join), a new random secret. The token
// is kept in <data-dir>/token (0600), so a restart needs no flag.
func setupTrust(cfg *Config, log *slog.Logger, now time.Time) (*peerTrust, error) {
	path := filepath.Join(cfg.DataDir, trust.TokenFile)
	stored, err := trust.ReadTokenFile(path)
	haveStored := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read the cluster's join token: %w", err)
	}
	if cfg.Insecure {
		if cfg.JoinToken != "" {
			return nil, errors.New("--insecure and --join-token: give one of them, not both")
		}
		if haveStored {
			log.Warn("--insecure: ignoring the cluster secret of the data dir", "file", path)
		}
		log.Warn("INSECURE: this peer runs an open cluster: gossip is not encrypted unless --gossip-key is set, the API is plain HTTP and open unless --api-token is set; anyone who reaches this machine can join the cluster and control it")
		return nil, nil
	}
	var s trust.Secret
	switch {
	case cfg.JoinToken != "":
		if s, err = trust.ParseToken(cfg.JoinToken); err != nil {
			return nil, fmt.Errorf("--join-token: %w", err)
		}
		if haveStored && stored != s {
			return nil, fmt.Errorf("--join-token is the token of cluster %s, but the data dir %s belongs to cluster %s: use another --data-dir, or `chorus reset` this one first",
				s.ClusterID(), cfg.DataDir, stored.ClusterID())
		}
		if !haveStored {
			if err := trust.WriteFile(path, []byte(s.Token()+"\n")); err != nil {
				return nil, fmt.Errorf("store the join token: %w", err)
			}
			log.Info("joined cluster with its token; the token is stored for restarts", "cluster", s.ClusterID(), "file", path)
		}
	case haveStored:
		s = stored
	case len(cfg.Join) > 0 && cfg.GossipKey == "":
		return nil, errors.New("--join needs the cluster's join token: --join-token-file <a peer's data dir>/token, --join-token or CHORUS_JOIN_TOKEN (or --insecure for an open cluster)")
	default:
		if s, err = trust.NewSecret(); err != nil {
			return nil, err
		}
		if err := trust.WriteFile(path, []byte(s.Token()+"\n")); err != nil {
			return nil, fmt.Errorf("store the join token: %w", err)
		}
		log.Info("created a new cluster: other peers join it with --join-token-file "+path, "cluster", s.ClusterID(), "token", path)
	}
	if cfg.GossipKey == "" {
		cfg.GossipKey = base64.StdEncoding.EncodeToString(s.GossipKey())
	}
	if cfg.APIToken == "" {
		cfg.APIToken = s.APIToken()
	}
	ca, err := s.CA()
	if err != nil {
		return nil, err
	}
	ips, dns := certNames(cfg)
	cert, err := ca.IssuePeer(cfg.Name, ips, dns, now)
	if err != nil {
		return nil, err
	}
	return &peerTrust{secret: s, ca: ca, cert: cert}, nil
}

// certNames returns the addresses and names a peer's certificate is valid
// for: its --bind address (every address of the machine when it binds
// them all), the loopback addresses, its name and localhost.
func certNames(cfg *Config) ([]net.IP, []string) {
	ips := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	bind := net.ParseIP(cfg.Bind)
	if bind != nil && bind.IsUnspecified() {
		if addrs, err := net.InterfaceAddrs(); err == nil {
			for _, a := range addrs {
				if n, ok := a.(*net.IPNet); ok {
					ips = append(ips, n.IP)
				}
			}
		}
	} else if bind != nil && !bind.Equal(ips[0]) && !bind.Equal(ips[1]) {
		ips = append(ips, bind)
	}
	return ips, []string{cfg.Name, "localhost"}
}

// apiURL returns the URL of this peer's API for its own kubeconfig.
func (a *Agent) apiURL() string {
	host := a.cfg.Bind
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	scheme := "https"
	if a.trust == nil {
		scheme = "http"
	}
	return scheme + "://" + net.JoinHostPort(host, strconv.Itoa(a.cfg.APIPort))
}

// writeKubeconfig writes the admin kubeconfig of this peer to
// <data-dir>/kubeconfig (0600): its API's URL, the cluster CA and the API
// token, in a context named after the cluster.
func (a *Agent) writeKubeconfig() error {
	name, ca := "chorus-insecure", []byte(nil)
	if a.trust != nil {
		name, ca = a.trust.secret.ClusterID(), a.trust.ca.CertPEM()
	}
	b, err := trust.AdminKubeconfig(name, a.apiURL(), ca, a.cfg.APIToken)
	if err != nil {
		return err
	}
	return trust.WriteFile(filepath.Join(a.cfg.DataDir, KubeconfigFile), b)
}

// serverTLS returns the TLS configuration of the API, nil for plain HTTP.
func (t *peerTrust) serverTLS() *tls.Config {
	if t == nil {
		return nil
	}
	return t.ca.ServerTLS(t.cert)
}

// hopTLS returns the TLS configurations of the service hop listener and of
// hops to other peers: mutual TLS 1.3 with the cluster CA, so that only
// peers reach pods through a hop. nil, nil for an --insecure peer (plain
// TCP).
func (t *peerTrust) hopTLS() (server, client *tls.Config) {
	if t == nil {
		return nil, nil
	}
	return t.ca.PeerOnlyServerTLS(t.cert), t.ca.PeerOnlyClientTLS(t.cert)
}

// newPeerTransport returns the transport a peer calls other peers' APIs
// through: TLS verified against the cluster CA, presenting this peer's
// certificate; plain HTTP for an --insecure peer.
func newPeerTransport(t *peerTrust) *http.Transport {
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	if t != nil {
		tr.TLSClientConfig = t.ca.PeerClientTLS(t.cert)
	}
	return tr
}

// peerURL returns the URL of path (with its query) on the peer whose API is
// at addr (host:port).
func (a *Agent) peerURL(addr string) *url.URL {
	scheme := "https"
	if a.trust == nil {
		scheme = "http"
	}
	return &url.URL{Scheme: scheme, Host: addr}
}

// asPeer makes an outgoing request to another peer carry this peer's
// identity and never the user's: the user's Authorization header is
// dropped; with TLS the peer's certificate (presented by the transport)
// is its credential; an --insecure peer with an API token sends the
// cluster's shared token.
func (a *Agent) asPeer(h http.Header) {
	h.Del("Authorization")
	h.Del("Cookie")
	h.Set(headerForwarded, a.cfg.Name)
	if a.trust == nil && a.cfg.APIToken != "" {
		h.Set("Authorization", "Bearer "+a.cfg.APIToken)
	}
}

// peerDo sends req to another peer as this peer.
func (a *Agent) peerDo(ctx context.Context, req *http.Request) (*http.Response, error) {
	a.asPeer(req.Header)
	return (&http.Client{Transport: a.peerTransport}).Do(req.WithContext(ctx))
}
