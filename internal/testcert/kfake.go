package testcert

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
)

// KfakeTLS starts a one-broker kfake cluster that speaks only TLS, with a
// certificate for 127.0.0.1 from a new CA, and the other options given
// (SASL users, topics). It returns the brokers and a file holding the
// CA's certificate; the cluster stops when the test ends.
func KfakeTLS(t testing.TB, opts ...kfake.Opt) (brokers []string, caFile string) {
	t.Helper()
	ca, err := NewCA("kfake test CA")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ca.Server("kfake", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(srv.CertPEM, srv.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	c, err := kfake.NewCluster(append([]kfake.Opt{
		kfake.NumBrokers(1),
		kfake.TLS(&tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}),
	}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	caFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, ca.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return c.ListenAddrs(), caFile
}
