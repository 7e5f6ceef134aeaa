package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-etl/sluice/pkg/config"
)

func TestSchemaRegistryDefaults(t *testing.T) {
	cfg, err := config.Load(demoConfig)
	if err != nil {
		t.Fatal(err)
	}
	if want := (config.SchemaRegistry{URL: "", Timeout: 5 * time.Second}); cfg.SchemaRegistry != want {
		t.Errorf("schema_registry = %+v, want %+v", cfg.SchemaRegistry, want)
	}
	if cfg.UsesRegistry() {
		t.Error("UsesRegistry() = true for the demo config (plain avro)")
	}
}

// writeConfig writes a config beside the repository's schemas.
func writeConfig(t *testing.T, text string) string {
	t.Helper()
	schema, err := filepath.Abs("../../schemas/avro/order.avsc")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "sluice.yml")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(text, "$SCHEMA", schema)), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

const confluentPipeline = `
pipelines:
  - name: orders
    topic: orders
    format: avro-confluent
    schema: $SCHEMA
`

func TestSchemaRegistryConfigured(t *testing.T) {
	path := writeConfig(t, `
schema_registry:
  url: https://user:secret@registry.example.com:8081/prefix/
  timeout: 2s
`+confluentPipeline)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := config.SchemaRegistry{URL: "https://user:secret@registry.example.com:8081/prefix/", Timeout: 2 * time.Second}
	if cfg.SchemaRegistry != want {
		t.Errorf("schema_registry = %+v, want %+v", cfg.SchemaRegistry, want)
	}
	if !cfg.UsesRegistry() {
		t.Error("UsesRegistry() = false with an avro-confluent pipeline")
	}
}

func TestSchemaRegistryFromEnv(t *testing.T) {
	t.Setenv("SLUICE_SCHEMA_REGISTRY_URL", "http://sr:8081")
	t.Setenv("SLUICE_SCHEMA_REGISTRY_TIMEOUT", "750ms")
	cfg, err := config.Load(writeConfig(t, confluentPipeline))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if cfg.SchemaRegistry.URL != "http://sr:8081" || cfg.SchemaRegistry.Timeout != 750*time.Millisecond {
		t.Errorf("schema_registry = %+v", cfg.SchemaRegistry)
	}
}

func TestSchemaRegistryBadURLs(t *testing.T) {
	for _, tt := range []struct{ url, fragment string }{
		{"ftp://sr:8081", "must start with http:// or https://"},
		{"http://", "has no host"},
		{"http://sr:8081/?x=1", "must not have a query"},
		{"http://user:hunter2@sr:8081/?x=1", "must not have a query"},
		{"http://sr:8081/%zz", "not a URL"},
	} {
		t.Setenv("SLUICE_SCHEMA_REGISTRY_URL", tt.url)
		_, err := config.Load(writeConfig(t, confluentPipeline))
		var errs config.Errors
		if !errors.As(err, &errs) || len(errs) != 1 || errs[0].Key != "schema_registry.url" || !strings.Contains(errs[0].Problem, tt.fragment) {
			t.Errorf("url %q: err = %v, want one error on schema_registry.url containing %q", tt.url, err, tt.fragment)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("url %q: the error shows the password: %v", tt.url, err)
		}
	}
}

// TestSchemaRegistrySecurity: basic auth with the password from a file
// (relative to the config, one trailing newline dropped), a token from the
// environment, and the TLS files of an https:// URL, which load into a
// tls.Config with the CA, the client certificate and the server name.
func TestSchemaRegistrySecurity(t *testing.T) {
	dir := t.TempDir()
	writeCerts(t, dir)
	if err := os.MkdirAll(filepath.Join(dir, "secrets"), 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "secrets", "sr.txt"), "s3cret-from-file\n")
	schema, err := filepath.Abs("../../schemas/avro/order.avsc")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "sluice.yml")
	writeFile(t, path, `
schema_registry:
  url: https://registry.internal:8081
  username: sluice
  password_file: secrets/sr.txt
  tls:
    ca_file: ca.pem
    cert_file: client.pem
    key_file: client.key
    server_name: sr.internal
pipelines:
  - {name: orders, topic: orders, format: avro-confluent, schema: `+schema+`}
`)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	r := cfg.SchemaRegistry
	if r.Username != "sluice" || string(r.Password) != "s3cret-from-file" || r.PasswordFile != filepath.Join(dir, "secrets", "sr.txt") {
		t.Errorf("basic auth = %q / %q (file %s)", r.Username, string(r.Password), r.PasswordFile)
	}
	if r.TLS.CAFile != filepath.Join(dir, "ca.pem") || r.TLS.KeyFile != filepath.Join(dir, "client.key") {
		t.Errorf("TLS paths not resolved against the config's directory: %+v", r.TLS)
	}
	tc, err := r.TLSConfig()
	if err != nil {
		t.Fatalf("TLSConfig: %v", err)
	}
	if tc == nil || tc.RootCAs == nil || len(tc.Certificates) != 1 || tc.ServerName != "sr.internal" {
		t.Fatalf("TLSConfig = %+v, want the CA, one client certificate and server name sr.internal", tc)
	}

	t.Setenv("SLUICE_SCHEMA_REGISTRY_TOKEN", "t0ken-from-env")
	t.Setenv("SLUICE_SCHEMA_REGISTRY_URL", "http://sr:8081")
	cfg, err = config.Load(writeConfig(t, confluentPipeline))
	if err != nil {
		t.Fatalf("Load with a token: %v", err)
	}
	if string(cfg.SchemaRegistry.Token) != "t0ken-from-env" {
		t.Errorf("token = %q", string(cfg.SchemaRegistry.Token))
	}
	if tc, err := cfg.SchemaRegistry.TLSConfig(); tc != nil || err != nil {
		t.Errorf("TLSConfig of an http:// URL = %v, %v; want nil, nil", tc, err)
	}
	printed, err := cfg.Redacted()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(printed), "t0ken-from-env") || !strings.Contains(string(printed), config.RedactedText) {
		t.Errorf("config print does not redact the token:\n%s", printed)
	}
}

// Each mistake in the registry's security keys is one error on the key to
// fix, and none quotes a secret.
func TestSchemaRegistrySecurityErrors(t *testing.T) {
	dir := t.TempDir()
	writeCerts(t, dir)
	writeFile(t, filepath.Join(dir, "empty.txt"), "")
	writeFile(t, filepath.Join(dir, "pw.txt"), "hunter2")
	writeFile(t, filepath.Join(dir, "junk.pem"), "not a certificate")
	for _, tt := range []struct {
		name, yaml, key, fragment string
	}{
		{"password without user", "url: http://sr:8081\n  password: hunter2",
			"schema_registry.username", "missing: schema_registry.password is set"},
		{"user without password", "url: http://sr:8081\n  username: sluice",
			"schema_registry.password", "basic auth needs a password"},
		{"basic and token", "url: http://sr:8081\n  username: sluice\n  password: hunter2\n  token: hunter2",
			"schema_registry.token", "not both"},
		{"credentials in the URL and apart", "url: http://u:hunter2@sr:8081\n  token: hunter2",
			"schema_registry.url", "holds credentials and schema_registry.token is set too"},
		{"password and its file", "url: http://sr:8081\n  username: sluice\n  password: hunter2\n  password_file: pw.txt",
			"schema_registry.password_file", "set either schema_registry.password or schema_registry.password_file, not both"},
		{"password file missing", "url: http://sr:8081\n  username: sluice\n  password_file: nope.txt",
			"schema_registry.password_file", "no such file or directory"},
		{"token file empty", "url: http://sr:8081\n  token_file: empty.txt",
			"schema_registry.token_file", "is empty"},
		{"TLS with http://", "url: http://u:hunter2@sr:8081\n  tls: {ca_file: ca.pem}",
			"schema_registry.tls", "is not https://"},
		{"TLS enabled with http://", "url: http://sr:8081\n  tls: {enabled: true}",
			"schema_registry.tls", "is not https://"},
		{"CA file missing", "url: https://sr:8081\n  tls: {ca_file: nope.pem}",
			"schema_registry.tls.ca_file", "no such file or directory"},
		{"CA file not PEM", "url: https://sr:8081\n  tls: {ca_file: junk.pem}",
			"schema_registry.tls.ca_file", "holds no PEM certificate"},
		{"certificate without key", "url: https://sr:8081\n  tls: {cert_file: client.pem}",
			"schema_registry.tls.key_file", "missing: a client certificate needs both"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, "sluice.yml")
			schema, _ := filepath.Abs("../../schemas/avro/order.avsc")
			writeFile(t, path, "schema_registry:\n  "+tt.yaml+"\n"+strings.ReplaceAll(confluentPipeline, "$SCHEMA", schema))
			_, err := config.Load(path)
			var errs config.Errors
			if !errors.As(err, &errs) || len(errs) != 1 || errs[0].Key != tt.key || !strings.Contains(errs[0].Problem, tt.fragment) {
				t.Fatalf("err = %v, want one error on %s containing %q", err, tt.key, tt.fragment)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("the error quotes the secret: %v", err)
			}
		})
	}
}
