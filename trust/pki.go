package trust

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"time"
)

// CA is the cluster's certificate authority. Its key is derived from the
// cluster secret, so every peer holds the same CA and can issue
// certificates that every other peer and client trusts.
type CA struct {
	cert    *x509.Certificate
	certPEM []byte
	key     *ecdsa.PrivateKey
	pool    *x509.CertPool
}

// The CA certificate's validity is fixed, so that every peer builds the
// same certificate, byte for byte.
var (
	caNotBefore = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	caNotAfter  = time.Date(2125, 1, 1, 0, 0, 0, 0, time.UTC)
)

// PeerCertValidity is how long a peer certificate is valid. A peer issues
// itself a new one at every start.
const PeerCertValidity = 365 * 24 * time.Hour

// CA returns the cluster CA: an ECDSA P-256 key derived from the secret and
// a self-signed certificate with fixed fields and a deterministic
// (RFC 6979) signature.
func (s Secret) CA() (*CA, error) {
	var key *ecdsa.PrivateKey
	for i := 0; key == nil; i++ {
		// A derived scalar is out of range with probability 2^-32.
		k, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), s.derive(fmt.Sprintf("ca key %d", i), 32))
		if err == nil {
			key = k
		} else if i == 8 {
			return nil, fmt.Errorf("derive the cluster CA key: %w", err)
		}
	}
	serial := s.derive("ca serial", 16)
	serial[0] = serial[0]&0x7f | 0x40 // positive, never zero
	tmpl := &x509.Certificate{
		SerialNumber:          new(big.Int).SetBytes(serial),
		Subject:               pkix.Name{CommonName: s.ClusterID() + " CA", Organization: []string{"chorus"}},
		NotBefore:             caNotBefore,
		NotAfter:              caNotAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(nil, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("create the cluster CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &CA{cert: cert, key: key, pool: pool,
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

// CertPEM returns the CA certificate, PEM-encoded (a kubeconfig's
// certificate-authority-data).
func (ca *CA) CertPEM() []byte { return append([]byte(nil), ca.certPEM...) }

// Pool returns a pool holding only the CA certificate.
func (ca *CA) Pool() *x509.CertPool { return ca.pool.Clone() }

// IssuePeer returns a new certificate, with a new key, for the peer name:
// valid as a TLS server for its IP addresses and DNS names, and as a TLS
// client (the peer's identity when it calls another peer).
func (ca *CA) IssuePeer(name string, ips []net.IP, dnsNames []string, now time.Time) (tls.Certificate, error) {
	if name == "" {
		return tls.Certificate{}, errors.New("a peer certificate needs the peer's name")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial.Add(serial, big.NewInt(1)),
		Subject:      pkix.Name{CommonName: name, Organization: []string{PeerOrganization}},
		NotBefore:    now.Add(-time.Hour), // clocks of peers differ a little
		NotAfter:     now.Add(PeerCertValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  ips,
		DNSNames:     dnsNames,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("issue the certificate of peer %s: %w", name, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// PeerOrganization is the organization of every peer certificate.
const PeerOrganization = "chorus peers"

// PeerName returns the name of the peer a verified TLS client certificate
// belongs to, and false when the connection did not present a certificate
// the cluster CA issued to a peer.
func PeerName(cs *tls.ConnectionState) (string, bool) {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return "", false
	}
	leaf := cs.VerifiedChains[0][0]
	for _, o := range leaf.Subject.Organization {
		if o == PeerOrganization && leaf.Subject.CommonName != "" {
			return leaf.Subject.CommonName, true
		}
	}
	return "", false
}

// ServerTLS is NewCreds(cert, ca).ServerTLS().
func (ca *CA) ServerTLS(cert tls.Certificate) *tls.Config { return NewCreds(cert, ca).ServerTLS() }

// PeerClientTLS is NewCreds(cert, ca).PeerClientTLS().
func (ca *CA) PeerClientTLS(cert tls.Certificate) *tls.Config {
	return NewCreds(cert, ca).PeerClientTLS()
}

// PeerOnlyServerTLS is NewCreds(cert, ca).PeerOnlyServerTLS().
func (ca *CA) PeerOnlyServerTLS(cert tls.Certificate) *tls.Config {
	return NewCreds(cert, ca).PeerOnlyServerTLS()
}

// PeerOnlyClientTLS is NewCreds(cert, ca).PeerOnlyClientTLS().
func (ca *CA) PeerOnlyClientTLS(cert tls.Certificate) *tls.Config {
	return NewCreds(cert, ca).PeerOnlyClientTLS()
}
