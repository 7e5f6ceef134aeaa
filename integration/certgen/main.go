// Command certgen writes the certificates the test services serve
// (integration/common.sh runs it before Kafka and ClickHouse start): a
// private authority, a server certificate for 127.0.0.1 and localhost,
// and a client certificate for mutual TLS, into one directory:
//
//	ca.pem                 the authority; what clients trust (tls.ca_file)
//	server.pem, .key       Kafka's and ClickHouse's certificate and key
//	server-keystore.pem    key + certificate, Kafka's PEM key store
//	client.pem, .key       a client certificate the authority signed
//
// Idempotent: files that exist and stay valid for 30 more days are kept
// (a running server keeps serving them); otherwise all are made anew.
// Test use only: the keys are not encrypted.
package main

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/sluice-etl/sluice/internal/testcert"
)

var files = []string{"ca.pem", "server.pem", "server.key", "server-keystore.pem", "client.pem", "client.key"}

func main() {
	dir := flag.String("dir", "", "directory to write the certificates into (created)")
	flag.Parse()
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "certgen: -dir is required")
		os.Exit(2)
	}
	made, err := run(*dir)
	if err != nil {
		fmt.Fprintf(os.Stderr, "certgen: %v\n", err)
		os.Exit(1)
	}
	if made {
		fmt.Fprintf(os.Stderr, "certgen: wrote a test CA, server and client certificates into %s\n", *dir)
	}
}

func run(dir string) (bool, error) {
	if current(dir) {
		return false, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, err
	}
	ca, err := testcert.NewCA("Sluice test CA")
	if err != nil {
		return false, err
	}
	server, err := ca.Server("sluice-test-server", "127.0.0.1", "localhost", "::1")
	if err != nil {
		return false, err
	}
	client, err := ca.Client("sluice-test-client")
	if err != nil {
		return false, err
	}
	// ca.pem last: it marks the set complete (current reads it).
	if err := server.Write(dir, "server"); err != nil {
		return false, err
	}
	if err := testcert.WriteFile(filepath.Join(dir, "server-keystore.pem"), server.Bundle(), 0o600); err != nil {
		return false, err
	}
	if err := client.Write(dir, "client"); err != nil {
		return false, err
	}
	return true, testcert.WriteFile(filepath.Join(dir, "ca.pem"), ca.PEM, 0o644)
}

// current says whether dir holds every file and the server certificate,
// signed by ca.pem, is valid for 30 more days.
func current(dir string) bool {
	for _, f := range files {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			return false
		}
	}
	caCert, err1 := readCert(filepath.Join(dir, "ca.pem"))
	srv, err2 := readCert(filepath.Join(dir, "server.pem"))
	if err := errors.Join(err1, err2); err != nil {
		return false
	}
	if srv.CheckSignatureFrom(caCert) != nil {
		return false
	}
	return time.Now().Add(30 * 24 * time.Hour).Before(srv.NotAfter)
}

func readCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%s: no PEM", path)
	}
	return x509.ParseCertificate(blk.Bytes)
}
