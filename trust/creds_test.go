package trust

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"testing"
	"time"
)

// TestCredsChangeWhileServing: a listener keeps serving while its peer
// moves from one CA to two and then to the new one only; each handshake
// follows what the server and the client trust at that moment.
func TestCredsChangeWhileServing(t *testing.T) {
	oldS, _ := NewSecret()
	newS, _ := NewSecret()
	oldCA, _ := oldS.CA()
	newCA, _ := newS.CA()
	lo := []net.IP{net.ParseIP("127.0.0.1")}
	now := time.Now()
	srvOld, _ := oldCA.IssuePeer("srv", lo, nil, now)
	srvNew, _ := newCA.IssuePeer("srv", lo, nil, now)
	cliOld, _ := oldCA.IssuePeer("cli", nil, nil, now)
	cliNew, _ := newCA.IssuePeer("cli", nil, nil, now)

	srv := NewCreds(srvOld, oldCA)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", srv.PeerOnlyServerTLS())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	defer func() { <-done }()
	defer ln.Close()
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.(*tls.Conn).Handshake()
			_, _ = c.Write([]byte{1})
			c.Close()
		}
	}()
	dial := func(cli *Creds) error {
		c, err := tls.Dial("tcp", ln.Addr().String(), cli.PeerOnlyClientTLS())
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		var b [1]byte
		_, err = c.Read(b[:]) // TLS 1.3: the server's verdict on the client comes here
		return err
	}
	cli := NewCreds(cliOld, oldCA)
	if err := dial(cli); err != nil {
		t.Fatalf("old to old: %v", err)
	}
	// A client presenting a new certificate before the server trusts the
	// new CA is refused; once the server trusts both, it is let in.
	if err := dial(NewCreds(cliNew, oldCA, newCA)); err == nil {
		t.Fatal("the server accepted a certificate of a CA it does not trust yet")
	}
	srv.Set(srvOld, oldCA, newCA)
	if err := dial(NewCreds(cliNew, oldCA, newCA)); err != nil {
		t.Fatalf("new client, server trusting both: %v", err)
	}
	// The server presents a new certificate: a client trusting only the
	// old CA refuses it, one trusting both accepts it.
	srv.Set(srvNew, newCA, oldCA)
	var ve *tls.CertificateVerificationError
	if err := dial(cli); !errors.As(err, &ve) {
		t.Fatalf("old-only client to a new server: %v, want a verification error", err)
	}
	cli.Set(cliOld, oldCA, newCA)
	if err := dial(cli); err != nil {
		t.Fatalf("client trusting both: %v", err)
	}
	// Retired: the old CA's certificates are refused.
	srv.Set(srvNew, newCA)
	if err := dial(cli); err == nil {
		t.Fatal("the server accepted an old certificate after retiring the old CA")
	}
	cli.Set(cliNew, newCA)
	if err := dial(cli); err != nil {
		t.Fatalf("new to new: %v", err)
	}
	if pem := (NewCreds(srvNew, newCA, oldCA)).CAsPEM(); !bytes.HasPrefix(pem, newCA.CertPEM()) || !bytes.HasSuffix(pem, oldCA.CertPEM()) {
		t.Fatal("CAsPEM is not both CAs in order")
	}
}

// The client checks the name it dialled.
func TestCredsClientChecksServerName(t *testing.T) {
	s, _ := NewSecret()
	ca, _ := s.CA()
	cert, _ := ca.IssuePeer("srv", []net.IP{net.ParseIP("127.0.0.1")}, nil, time.Now())
	cfg := NewCreds(cert, ca).PeerClientTLS()
	chain := []*x509.Certificate{cert.Leaf}
	if err := cfg.VerifyConnection(tls.ConnectionState{ServerName: "127.0.0.1", PeerCertificates: chain}); err != nil {
		t.Fatalf("the right name: %v", err)
	}
	if err := cfg.VerifyConnection(tls.ConnectionState{ServerName: "127.0.0.2", PeerCertificates: chain}); err == nil {
		t.Fatal("accepted a certificate for another address")
	}
	if err := cfg.VerifyConnection(tls.ConnectionState{ServerName: "127.0.0.1"}); err == nil {
		t.Fatal("accepted no certificate")
	}
}

func TestSealerOpensOlderKeys(t *testing.T) {
	oldS, _ := NewSecret()
	newS, _ := NewSecret()
	before, _ := NewSealer(oldS.DataKey())
	during, err := NewSealer(newS.DataKey(), oldS.DataKey())
	if err != nil {
		t.Fatal(err)
	}
	after, _ := NewSealer(newS.DataKey())
	ad := []byte("Secret/default/a\x00data")
	old := before.Seal([]byte("v1"), ad)
	if p, first, err := during.OpenKey(old, ad); err != nil || first || string(p) != "v1" {
		t.Fatalf("during opens old: %q %v %v", p, first, err)
	}
	resealed := during.Seal([]byte("v1"), ad)
	if p, first, err := during.OpenKey(resealed, ad); err != nil || !first || string(p) != "v1" {
		t.Fatalf("during opens its own: %q %v %v", p, first, err)
	}
	if p, err := after.Open(resealed, ad); err != nil || string(p) != "v1" {
		t.Fatalf("after opens the resealed value: %q %v", p, err)
	}
	if _, err := after.Open(old, ad); !errors.Is(err, ErrUnseal) {
		t.Fatalf("after opens the old value: %v", err)
	}
	if _, err := NewSealer(newS.DataKey(), []byte("short")); err == nil {
		t.Fatal("accepted a short older key")
	}
}
