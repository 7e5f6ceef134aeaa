package service

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"io"
	"log"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/sluice-etl/sluice/internal/testcert"
	"github.com/sluice-etl/sluice/pkg/config"
)

const (
	srUser     = "sluice"
	srPassword = "s3cret-registry-pw"
	srToken    = "t0ken-registry-bearer"
)

// tlsRegistry serves srfake over TLS with a certificate for
// registry.test and 127.0.0.1, requiring a client certificate signed by
// the same authority and HTTP basic auth srUser:srPassword (or, with
// bearer, the token srToken). It writes ca.pem, client.pem, client.key,
// other-ca.pem (an authority nobody trusts) into dir.
func tlsRegistry(t *testing.T, dir string, bearer bool) *httptest.Server {
	t.Helper()
	ca, err := testcert.NewCA("registry test CA")
	if err != nil {
		t.Fatal(err)
	}
	other, err := testcert.NewCA("an authority nobody trusts")
	if err != nil {
		t.Fatal(err)
	}
	server, err := ca.Server("registry.test", "registry.test", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	client, err := ca.Client("sluice")
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"ca.pem": ca.PEM, "other-ca.pem": other.PEM} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := client.Write(dir, "client"); err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(server.CertPEM, server.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	clients := x509.NewCertPool()
	clients.AddCert(ca.Cert)

	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(srUser+":"+srPassword))
	if bearer {
		auth = "Bearer " + srToken
	}
	reg := srfake.NewRegistry(srfake.WithAuth(auth))
	reg.SeedSchema("orders-value", 1, 1, sr.Schema{Schema: `{"type":"record","name":"O","fields":[{"name":"id","type":"string"}]}`})
	srv := httptest.NewUnstartedServer(reg.Handler())
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clients}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes are the test
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// loadRegistryConfig loads a config whose schema_registry section is
// section, with one avro-confluent pipeline, from dir.
func loadRegistryConfig(t *testing.T, dir, section string) *config.Config {
	t.Helper()
	schema, err := filepath.Abs("../../schemas/avro/order.avsc")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "sluice.yml")
	yaml := "schema_registry:\n" + section + "\npipelines:\n  - {name: orders, topic: orders, format: avro-confluent, schema: " + schema + "}\n"
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("Load:\n%s\n%v", yaml, err)
	}
	return cfg
}

// reachRegistry does what start-up does with the registry: build the
// client from the config, Ping it within the start-up budget, and turn a
// failure into the error New returns.
func reachRegistry(t *testing.T, cfg *config.Config) error {
	t.Helper()
	reg, err := newRegistry(cfg.SchemaRegistry, nil)
	if err != nil {
		return err
	}
	st := NewStartup(10*time.Second, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := st.reach(context.Background(), registryTarget(cfg.SchemaRegistry.URL), reg.Ping); err != nil {
		return registryError(cfg.SchemaRegistry, err)
	}
	return nil
}

// TestRegistryTLSAndBasicAuth: the registry reached over mutual TLS with
// basic auth, the password read from a file, serves schemas; each
// mismatch (wrong password, unknown CA, wrong name, no client certificate,
// no credentials, http:// at the TLS port) is a config error on the key to
// fix, returned at once, without the password.
func TestRegistryTLSAndBasicAuth(t *testing.T) {
	dir := t.TempDir()
	srv := tlsRegistry(t, dir, false)
	for name, content := range map[string]string{"pw.txt": srPassword + "\n", "wrong.txt": "wr0ng-" + srPassword} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	port := srv.URL[strings.LastIndexByte(srv.URL, ':'):]
	// The certificate holds 127.0.0.1 too, but server_name is what is
	// checked: registry.test, which need not resolve.
	good := `  url: https://127.0.0.1` + port + `
  username: ` + srUser + `
  password_file: pw.txt
  tls:
    ca_file: ca.pem
    cert_file: client.pem
    key_file: client.key
    server_name: registry.test`

	t.Run("schemas served", func(t *testing.T) {
		cfg := loadRegistryConfig(t, dir, good)
		if err := reachRegistry(t, cfg); err != nil {
			t.Fatalf("start-up: %v", err)
		}
		reg, err := newRegistry(cfg.SchemaRegistry, nil)
		if err != nil {
			t.Fatal(err)
		}
		text, err := reg.SchemaByID(context.Background(), 1)
		if err != nil || !strings.Contains(text, `"name":"O"`) {
			t.Fatalf("SchemaByID over TLS with basic auth = %q, %v", text, err)
		}
	})

	for _, tt := range []struct {
		name      string
		edit      func(string) string
		key, frag string
	}{
		{"wrong password from a file", func(s string) string { return strings.Replace(s, "pw.txt", "wrong.txt", 1) },
			"schema_registry.password_file", `refused user "sluice" (a wrong password or an unknown user?`},
		{"wrong password", func(s string) string {
			return strings.Replace(s, "password_file: pw.txt", "password: wr0ng-"+srPassword, 1)
		}, "schema_registry.password", `refused user "sluice"`},
		{"no credentials", func(s string) string {
			s = strings.Replace(s, "  username: "+srUser+"\n", "", 1)
			return strings.Replace(s, "  password_file: pw.txt\n", "", 1)
		}, "schema_registry.username", "wants credentials"},
		{"unknown CA", func(s string) string { return strings.Replace(s, "ca_file: ca.pem", "ca_file: other-ca.pem", 1) },
			"schema_registry.tls.ca_file", "not signed by the authorities of schema_registry.tls.ca_file"},
		{"wrong server name", func(s string) string {
			return strings.Replace(s, "server_name: registry.test", "server_name: elsewhere.test", 1)
		}, "schema_registry.tls.server_name", "not valid for the name checked"},
		{"no client certificate", func(s string) string {
			s = strings.Replace(s, "    cert_file: client.pem\n", "", 1)
			return strings.Replace(s, "    key_file: client.key\n", "", 1)
		}, "schema_registry.tls.cert_file", "no client certificate is configured"},
		{"http:// at the TLS port", func(s string) string {
			s = strings.Replace(s, "https://", "http://", 1)
			return s[:strings.Index(s, "  tls:")]
		}, "schema_registry.url", "is it a TLS port? then use https://"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := loadRegistryConfig(t, dir, tt.edit(good))
			start := time.Now()
			err := reachRegistry(t, cfg)
			var errs config.Errors
			if !errors.As(err, &errs) || len(errs) != 1 || errs[0].Key != tt.key || !strings.Contains(errs[0].Problem, tt.frag) {
				t.Fatalf("start-up error = %v, want one config error on %s containing %q", err, tt.key, tt.frag)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("took %v: a config mismatch must not be waited for", d)
			}
			if strings.Contains(err.Error(), srPassword) {
				t.Errorf("the error shows the password: %v", err)
			}
		})
	}
}

// TestRegistryBearerToken: a token from the environment is sent as
// "Bearer"; a wrong one names schema_registry.token, without the token;
// an https:// URL at a plain HTTP port names schema_registry.url.
func TestRegistryBearerToken(t *testing.T) {
	dir := t.TempDir()
	srv := tlsRegistry(t, dir, true)
	port := srv.URL[strings.LastIndexByte(srv.URL, ':'):]
	section := `  url: https://127.0.0.1` + port + `
  tls: {ca_file: ca.pem, cert_file: client.pem, key_file: client.key, server_name: registry.test}`

	t.Setenv("SLUICE_SCHEMA_REGISTRY_TOKEN", srToken)
	if err := reachRegistry(t, loadRegistryConfig(t, dir, section)); err != nil {
		t.Fatalf("with the token: %v", err)
	}
	t.Setenv("SLUICE_SCHEMA_REGISTRY_TOKEN", "wr0ng-"+srToken)
	err := reachRegistry(t, loadRegistryConfig(t, dir, section))
	var errs config.Errors
	if !errors.As(err, &errs) || len(errs) != 1 || errs[0].Key != "schema_registry.token" || strings.Contains(err.Error(), srToken) {
		t.Fatalf("with a wrong token: %v, want one error on schema_registry.token without the token", err)
	}

	plain := httptest.NewServer(srfake.NewRegistry().Handler())
	t.Cleanup(plain.Close)
	err = reachRegistry(t, loadRegistryConfig(t, dir, "  url: "+strings.Replace(plain.URL, "http://", "https://", 1)))
	if !errors.As(err, &errs) || len(errs) != 1 || errs[0].Key != "schema_registry.url" || !strings.Contains(errs[0].Problem, "speaks plain HTTP") {
		t.Fatalf("https:// at a plain port: %v, want schema_registry.url: speaks plain HTTP", err)
	}
}
