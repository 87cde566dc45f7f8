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
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/chorus-sh/chorus/trust"
)

// KubeconfigFile is the name of the admin kubeconfig in a peer's data dir.
const KubeconfigFile = "kubeconfig"

// peerTrust is what a peer of a protected cluster holds: the cluster
// secret, the cluster CA derived from it and its own certificate. A nil
// *peerTrust is an --insecure peer: plain HTTP, no gossip key unless given.
// While the cluster secret is rotated (rotation.go), the peer holds two
// secrets: the one it uses (secret) and another one it accepts (other).
type peerTrust struct {
	creds *trust.Creds // the certificate presented and the CAs trusted

	// derivedGossip and derivedToken: the gossip key and the API token are
	// the secret's (not --gossip-key, --api-token), and follow a rotation.
	derivedGossip, derivedToken bool
	// name and certIPs, certDNS: what the peer's certificates are for.
	name    string
	certIPs []net.IP
	certDNS []string

	mu     sync.RWMutex
	secret trust.Secret  // used: sent, presented, sealed under
	other  *trust.Secret // also accepted, during a rotation
	ca     *trust.CA     // the CA of secret
	tokens []string      // the API tokens accepted when derivedToken
}

// secrets returns the secret the peer uses and the other one it accepts
// (nil outside a rotation).
func (t *peerTrust) secrets() (trust.Secret, *trust.Secret) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.secret, t.other
}

// apiTokens returns the API tokens accepted, nil when they are not the
// secret's (then the configured token is).
func (t *peerTrust) apiTokens() []string {
	if t == nil || !t.derivedToken {
		return nil
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.tokens
}

// set makes the peer use secret and accept other too (nil: only secret):
// its certificate (a new one when the secret changes), the CAs it trusts
// and the API tokens it accepts. The gossip keys, the sealer and the files
// are the caller's.
func (t *peerTrust) set(secret trust.Secret, other *trust.Secret, now time.Time) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	ca := t.ca
	cert := t.creds.Certificate()
	if ca == nil || secret != t.secret {
		var err error
		if ca, err = secret.CA(); err != nil {
			return err
		}
		if cert, err = ca.IssuePeer(t.name, t.certIPs, t.certDNS, now); err != nil {
			return err
		}
	}
	cas := []*trust.CA{ca}
	tokens := []string{secret.APIToken()}
	if other != nil {
		oca, err := other.CA()
		if err != nil {
			return err
		}
		cas = append(cas, oca)
		tokens = append(tokens, other.APIToken())
		o := *other
		other = &o
	}
	t.creds.Set(cert, cas...)
	t.secret, t.other, t.ca, t.tokens = secret, other, ca, tokens
	return nil
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
		if haveStored && stored != s && retiredSecret(cfg.DataDir, s) {
			// A service that passes the token of before a rotation at
			// every start: the data dir's token replaced it.
			log.Warn("--join-token is the token of a secret this cluster retired in a rotation: using the data dir's token (give the current one: "+path+")",
				"given", s.ClusterID(), "cluster", stored.ClusterID())
			s = stored
		}
		if haveStored && stored != s {
			return nil, fmt.Errorf("--join-token is the token of cluster %s, but the data dir %s belongs to cluster %s: use another --data-dir, or `chorus reset` this one first (if the cluster secret was rotated, give the current token, a peer's <data-dir>/token)",
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
	// A peer stopped in the middle of a rotation, after it began to use
	// the new secret, kept the old one beside it.
	var other *trust.Secret
	if prev, err := trust.ReadTokenFile(filepath.Join(cfg.DataDir, PreviousTokenFile)); err == nil && prev != s {
		other = &prev
		log.Info("a rotation of the cluster secret was under way: accepting the previous secret too until it ends", "cluster", s.ClusterID(), "previous", prev.ClusterID())
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read the previous join token: %w", err)
	}
	t := &peerTrust{creds: trust.NewCreds(tls.Certificate{}), name: cfg.Name,
		derivedGossip: cfg.GossipKey == "", derivedToken: cfg.APIToken == ""}
	t.certIPs, t.certDNS = certNames(cfg)
	if cfg.GossipKey == "" {
		cfg.GossipKey = base64.StdEncoding.EncodeToString(s.GossipKey())
	}
	if cfg.APIToken == "" {
		cfg.APIToken = s.APIToken()
	}
	if err := t.set(s, other, now); err != nil {
		return nil, err
	}
	return t, nil
}

// RetiredFile is the name of the file, in a peer's data dir, that lists
// (one a line) the cluster ids of the secrets the peer retired in
// rotations: no secret, only what recognises an old --join-token.
const RetiredFile = "token.retired"

// retiredSecret reports whether s is a secret this data dir's peer retired.
func retiredSecret(dataDir string, s trust.Secret) bool {
	b, err := os.ReadFile(filepath.Join(dataDir, RetiredFile))
	if err != nil {
		return false
	}
	return slices.Contains(strings.Fields(string(b)), s.ClusterID())
}

// PreviousTokenFile is the name of the file, in a peer's data dir, that
// holds the join token of the old secret while a rotation is under way
// (the new one is in TokenFile); it is removed when the rotation ends.
const PreviousTokenFile = "token.previous"

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
	name, ca, token := "chorus-insecure", []byte(nil), a.cfg.APIToken
	if a.trust != nil {
		// During a rotation: both CAs, and the token of the secret in use.
		secret, _ := a.trust.secrets()
		name, ca = secret.ClusterID(), a.trust.creds.CAsPEM()
		if ts := a.trust.apiTokens(); len(ts) > 0 {
			token = ts[0]
		}
	}
	b, err := trust.AdminKubeconfig(name, a.apiURL(), ca, token)
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
	return t.creds.ServerTLS()
}

// hopTLS returns the TLS configurations of the service hop listener and of
// hops to other peers: mutual TLS 1.3 with the cluster CA, so that only
// peers reach pods through a hop. nil, nil for an --insecure peer (plain
// TCP).
func (t *peerTrust) hopTLS() (server, client *tls.Config) {
	if t == nil {
		return nil, nil
	}
	return t.creds.PeerOnlyServerTLS(), t.creds.PeerOnlyClientTLS()
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
		tr.TLSClientConfig = t.creds.PeerClientTLS()
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
