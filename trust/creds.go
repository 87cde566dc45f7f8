package trust

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"slices"
	"sync"
)

// Creds is what a peer presents (its certificate) and trusts (one cluster
// CA, or two while the cluster secret is rotated), and may change while
// connections are served: the TLS configurations it returns read the
// current values at each handshake. Safe for concurrent use.
type Creds struct {
	mu   sync.RWMutex
	cert tls.Certificate
	cas  []*CA
	pool *x509.CertPool
}

// NewCreds returns credentials presenting cert and trusting cas.
func NewCreds(cert tls.Certificate, cas ...*CA) *Creds {
	c := &Creds{}
	c.Set(cert, cas...)
	return c
}

// Set replaces the certificate presented and the CAs trusted, for the
// handshakes to come.
func (c *Creds) Set(cert tls.Certificate, cas ...*CA) {
	pool := x509.NewCertPool()
	for _, ca := range cas {
		pool.AddCert(ca.cert)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cert, c.cas, c.pool = cert, slices.Clone(cas), pool
}

// Certificate returns the certificate presented.
func (c *Creds) Certificate() tls.Certificate {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.cert
}

// Pool returns a pool of the CAs trusted.
func (c *Creds) Pool() *x509.CertPool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.pool.Clone()
}

// trusted returns the pool of the CAs trusted, not a copy: Set replaces the
// pool whole and nothing changes one once made (for the handshakes).
func (c *Creds) trusted() *x509.CertPool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.pool
}

// CAsPEM returns the certificates of the CAs trusted, PEM, one after the
// other (a kubeconfig's certificate-authority-data may hold several).
func (c *Creds) CAsPEM() []byte {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out []byte
	for _, ca := range c.cas {
		out = append(out, ca.certPEM...)
	}
	return out
}

func (c *Creds) certificate() *tls.Certificate {
	cert := c.Certificate()
	return &cert
}

// verifyServer verifies a server's certificate chain against the CAs
// trusted now, and its name against the name dialled (cs.ServerName;
// none: the chain only).
func (c *Creds) verifyServer(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("trust: the server presented no certificate")
	}
	opts := x509.VerifyOptions{
		Roots:         c.trusted(),
		DNSName:       cs.ServerName,
		Intermediates: x509.NewCertPool(),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, ic := range cs.PeerCertificates[1:] {
		opts.Intermediates.AddCert(ic)
	}
	if _, err := cs.PeerCertificates[0].Verify(opts); err != nil {
		return &tls.CertificateVerificationError{UnverifiedCertificates: cs.PeerCertificates, Err: err}
	}
	return nil
}

// server returns a configuration that, at each handshake, presents the
// current certificate and verifies client certificates against the
// current CAs.
func (c *Creds) server(base *tls.Config) *tls.Config {
	return &tls.Config{
		MinVersion: base.MinVersion,
		NextProtos: base.NextProtos,
		ClientAuth: base.ClientAuth,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			cfg := base.Clone()
			cfg.Certificates = []tls.Certificate{c.Certificate()}
			cfg.ClientCAs = c.trusted()
			return cfg, nil
		},
	}
}

// client returns a configuration that presents the current certificate
// when asked and verifies the server against the current CAs. The
// verification is VerifyConnection's, as RootCAs cannot change, hence
// InsecureSkipVerify (which only turns off the built-in one).
func (c *Creds) client(base *tls.Config) *tls.Config {
	cfg := base.Clone()
	cfg.InsecureSkipVerify = true
	cfg.VerifyConnection = c.verifyServer
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return c.certificate(), nil }
	return cfg
}

// ServerTLS returns the TLS configuration of a peer's API: it presents the
// certificate, speaks HTTP/1.1 only (connection upgrades for exec and
// port-forward need it), and verifies a client certificate when one is
// given (other peers present theirs), without requiring one (users come
// with a bearer token).
func (c *Creds) ServerTLS() *tls.Config {
	return c.server(&tls.Config{MinVersion: tls.VersionTLS12, ClientAuth: tls.VerifyClientCertIfGiven, NextProtos: []string{"http/1.1"}})
}

// PeerClientTLS returns the TLS configuration a peer calls another peer's
// API with: the server is verified against the CAs and the peer presents
// its certificate.
func (c *Creds) PeerClientTLS() *tls.Config {
	return c.client(&tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}})
}

// PeerOnlyServerTLS returns the TLS configuration of a listener that only
// peers may use (the service hop): TLS 1.3, presenting the certificate,
// and requiring a client certificate one of the CAs issued. Session
// tickets let a peer that connected once resume without the certificate
// signatures; a resumed session's client certificate is verified again.
func (c *Creds) PeerOnlyServerTLS() *tls.Config {
	return c.server(&tls.Config{MinVersion: tls.VersionTLS13, ClientAuth: tls.RequireAndVerifyClientCert})
}

// PeerOnlyClientTLS returns the TLS configuration a peer connects to
// another peer's PeerOnlyServerTLS listener with: TLS 1.3, presenting its
// certificate, verifying the server against the CAs, and keeping session
// tickets to resume.
func (c *Creds) PeerOnlyClientTLS() *tls.Config {
	return c.client(&tls.Config{MinVersion: tls.VersionTLS13, ClientSessionCache: tls.NewLRUClientSessionCache(256)})
}
