package config_test

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-etl/sluice/internal/testcert"
	"github.com/sluice-etl/sluice/pkg/config"
)

// writeCerts writes a CA and a client certificate into dir (ca.pem,
// client.pem, client.key).
func writeCerts(t *testing.T, dir string) *testcert.CA {
	t.Helper()
	ca, err := testcert.NewCA("config test CA")
	if err != nil {
		t.Fatal(err)
	}
	client, err := ca.Client("config-test-client")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), ca.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := client.Write(dir, "client"); err != nil {
		t.Fatal(err)
	}
	return ca
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// secureYAML is a config with Kafka TLS (CA and client certificate), SASL
// with a password file, ClickHouse TLS, and an admin token file, every
// path relative to the config's directory.
func secureYAML(schema string) string {
	return fmt.Sprintf(`kafka:
  brokers: [k1:9094]
  tls:
    enabled: true
    ca_file: ca.pem
    cert_file: client.pem
    key_file: client.key
    server_name: kafka.internal
  sasl:
    mechanism: scram-sha-512
    username: sluice
    password_file: secrets/kafka.txt
clickhouse:
  addr: [ch1:9440]
  username: loader
  tls:
    enabled: true
    ca_file: ca.pem
admin:
  listen: 0.0.0.0:8080
  token_file: secrets/admin.txt
pipelines:
  - {name: orders, topic: orders, schema: %s}
`, schema)
}

// TestLoadSecurity: the TLS files and the secret files resolve against the
// config's directory, a secret file loses its one trailing newline, the
// mechanism is upper-cased, a secret may come from the environment, and
// the TLS configs load the CA and the client certificate.
func TestLoadSecurity(t *testing.T) {
	dir := t.TempDir()
	ca := writeCerts(t, dir)
	if err := os.Mkdir(filepath.Join(dir, "secrets"), 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "secrets", "kafka.txt"), "kafka pass word\n")
	writeFile(t, filepath.Join(dir, "secrets", "admin.txt"), "0123456789abcdef0123\r\n")
	path := filepath.Join(dir, "sluice.yaml")
	writeFile(t, path, secureYAML(mustAbs(t, "../../schemas/avro/order.avsc")))
	t.Setenv("SLUICE_CLICKHOUSE_PASSWORD", "from the environment")

	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	k := cfg.Kafka
	if k.TLS.CAFile != filepath.Join(dir, "ca.pem") || k.TLS.CertFile != filepath.Join(dir, "client.pem") || k.TLS.KeyFile != filepath.Join(dir, "client.key") {
		t.Errorf("kafka.tls paths not resolved against %s: %+v", dir, k.TLS)
	}
	if k.SASL.Mechanism != config.SASLScramSHA512 || k.SASL.Username != "sluice" || string(k.SASL.Password) != "kafka pass word" {
		t.Errorf("kafka.sasl = %q %q %q, want SCRAM-SHA-512 sluice and the file's password", k.SASL.Mechanism, k.SASL.Username, string(k.SASL.Password))
	}
	if k.SASL.PasswordFile != filepath.Join(dir, "secrets", "kafka.txt") {
		t.Errorf("kafka.sasl.password_file = %q", k.SASL.PasswordFile)
	}
	if string(cfg.ClickHouse.Password) != "from the environment" {
		t.Errorf("clickhouse.password = %q, want SLUICE_CLICKHOUSE_PASSWORD's", string(cfg.ClickHouse.Password))
	}
	if string(cfg.Admin.Token) != "0123456789abcdef0123" {
		t.Errorf("admin.token = %q, want the file's without CRLF", string(cfg.Admin.Token))
	}

	tc, err := k.TLS.ClientConfig("kafka.tls")
	if err != nil || tc == nil {
		t.Fatalf("kafka TLS config: %v", err)
	}
	if tc.ServerName != "kafka.internal" || len(tc.Certificates) != 1 || tc.RootCAs == nil {
		t.Errorf("kafka TLS: server name %q, %d client certificates, roots %v", tc.ServerName, len(tc.Certificates), tc.RootCAs != nil)
	}
	// The pool is the file's CA: a certificate it signed verifies.
	srv, err := ca.Server("kafka", "kafka.internal")
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(srv.CertPEM)
	leaf, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: tc.RootCAs, DNSName: "kafka.internal"}); err != nil {
		t.Errorf("a certificate of the CA does not verify against kafka.tls.ca_file's pool: %v", err)
	}
	if chc, err := cfg.ClickHouse.TLS.ClientConfig("clickhouse.tls"); err != nil || chc == nil || chc.RootCAs == nil || len(chc.Certificates) != 0 {
		t.Errorf("clickhouse TLS config %+v, %v", chc, err)
	}
	if off, err := (config.TLS{}).ClientConfig("x"); off != nil || err != nil {
		t.Errorf("TLS off: %v, %v; want nil, nil", off, err)
	}
}

// TestLoadSecurityEnvOverrides: every security key has its SLUICE_*
// variable, booleans included.
func TestLoadSecurityEnvOverrides(t *testing.T) {
	dir := t.TempDir()
	writeCerts(t, dir)
	for k, v := range map[string]string{
		"SLUICE_KAFKA_TLS_ENABLED":        "true",
		"SLUICE_KAFKA_TLS_CA_FILE":        filepath.Join(dir, "ca.pem"),
		"SLUICE_KAFKA_SASL_MECHANISM":     "PLAIN",
		"SLUICE_KAFKA_SASL_USERNAME":      "env-user",
		"SLUICE_KAFKA_SASL_PASSWORD":      "env-pass",
		"SLUICE_CLICKHOUSE_TLS_ENABLED":   "1",
		"SLUICE_CLICKHOUSE_TLS_CERT_FILE": filepath.Join(dir, "client.pem"),
		"SLUICE_CLICKHOUSE_TLS_KEY_FILE":  filepath.Join(dir, "client.key"),
		"SLUICE_ADMIN_TOKEN":              "token-from-the-environment",
	} {
		t.Setenv(k, v)
	}
	cfg, err := config.Load(demoConfig)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if !cfg.Kafka.TLS.Enabled || cfg.Kafka.TLS.CAFile == "" || cfg.Kafka.SASL.Mechanism != "PLAIN" ||
		cfg.Kafka.SASL.Username != "env-user" || string(cfg.Kafka.SASL.Password) != "env-pass" {
		t.Errorf("kafka = %+v", cfg.Kafka)
	}
	if !cfg.ClickHouse.TLS.Enabled || cfg.ClickHouse.TLS.CertFile == "" || string(cfg.Admin.Token) != "token-from-the-environment" {
		t.Errorf("clickhouse.tls %+v, admin.token %q", cfg.ClickHouse.TLS, string(cfg.Admin.Token))
	}
	t.Setenv("SLUICE_KAFKA_TLS_ENABLED", "sometimes")
	_, err = config.Load(demoConfig)
	var errs config.Errors
	if !errors.As(err, &errs) || !hasKey(errs, "kafka.tls.enabled") {
		t.Errorf("SLUICE_KAFKA_TLS_ENABLED=sometimes: %v, want an error on kafka.tls.enabled", err)
	}
}

// TestSecretsStayOutOfText: a Secret prints redacted however a config is
// formatted or logged, and a secret of the wrong type is not quoted in
// the error about it.
func TestSecretsStayOutOfText(t *testing.T) {
	const pass = "correct horse battery staple"
	cfg := config.Config{
		Kafka:      config.Kafka{SASL: config.SASL{Mechanism: "PLAIN", Username: "u", Password: pass}},
		ClickHouse: config.ClickHouse{Password: pass},
		Admin:      config.Admin{Token: pass},
	}
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("config", "cfg", cfg, "password", cfg.ClickHouse.Password)
	slog.New(slog.NewTextHandler(&logged, nil)).Info("config", "kafka", cfg.Kafka, "token", cfg.Admin.Token)
	for _, s := range []string{
		fmt.Sprint(cfg), fmt.Sprintf("%v", cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg),
		fmt.Sprintf("%s", cfg.Kafka.SASL.Password), logged.String(),
	} {
		if strings.Contains(s, pass) {
			t.Errorf("the secret shows in %q", s)
		}
		if !strings.Contains(s, config.RedactedText) {
			t.Errorf("%q does not say a secret is set", s)
		}
	}
	if got := config.Secret("").String(); got != "" {
		t.Errorf("an unset secret prints %q, want nothing", got)
	}

	_, err := config.Load("testdata/secret_wrong_type.bad.yml")
	if err == nil || strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "swordfish") {
		t.Errorf("the error quotes the secret: %v", err)
	}
}

// TestRedacted: the printed config holds no secret, whether it came from
// the file, the environment, a *_file key or a URL; it names the *_file
// paths; and with no secrets set it loads back to the same config.
func TestRedacted(t *testing.T) {
	dir := t.TempDir()
	writeCerts(t, dir)
	if err := os.Mkdir(filepath.Join(dir, "secrets"), 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "secrets", "kafka.txt"), "kafka-secret-from-file\n")
	writeFile(t, filepath.Join(dir, "secrets", "admin.txt"), "admin-token-from-file\n")
	path := filepath.Join(dir, "sluice.yaml")
	writeFile(t, path, secureYAML(mustAbs(t, "../../schemas/avro/order.avsc"))+
		"schema_registry:\n  url: https://reg:registry-url-secret@registry.internal:8081\n")
	t.Setenv("SLUICE_CLICKHOUSE_PASSWORD", "clickhouse-secret-from-env")
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	out, err := cfg.Redacted()
	if err != nil {
		t.Fatal(err)
	}
	text := string(out)
	for _, s := range []string{"kafka-secret-from-file", "admin-token-from-file", "clickhouse-secret-from-env", "registry-url-secret"} {
		if strings.Contains(text, s) {
			t.Errorf("Redacted shows %q:\n%s", s, text)
		}
	}
	for _, want := range []string{
		"password: '[redacted]'", "token: '[redacted]'", "password_file: " + filepath.Join(dir, "secrets", "kafka.txt"),
		"mechanism: SCRAM-SHA-512", "url: https://reg:xxxxx@registry.internal:8081", "brokers: ['k1:9094']",
		"session_timeout: 45s", "max_bytes: 12MiB",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("Redacted lacks %q:\n%s", want, text)
		}
	}
	// Key order is the struct's: kafka first, pipelines last.
	if strings.Index(text, "kafka:") > strings.Index(text, "clickhouse:") || strings.Index(text, "pipelines:") < strings.Index(text, "schema_registry:") {
		t.Errorf("keys out of the Config's order:\n%s", text)
	}

	// Without secrets the print is a config that loads to the same thing.
	t.Setenv("SLUICE_CLICKHOUSE_PASSWORD", "")
	plain, err := config.Load(demoConfig)
	if err != nil {
		t.Fatal(err)
	}
	out, err = plain.Redacted()
	if err != nil {
		t.Fatal(err)
	}
	again := filepath.Join(t.TempDir(), "printed.yaml")
	writeFile(t, again, string(out))
	back, err := config.Load(again)
	if err != nil {
		t.Fatalf("the printed config does not load: %v\n%s", err, out)
	}
	out2, err := back.Redacted()
	if err != nil {
		t.Fatal(err)
	}
	if string(out2) != string(out) {
		t.Errorf("the printed config loads to\n%s\nwant\n%s", out2, out)
	}
	if back.Kafka.Brokers[0] != plain.Kafka.Brokers[0] || back.Batch != plain.Batch || len(back.Pipelines) != len(plain.Pipelines) {
		t.Errorf("the printed config loads to %+v, want %+v", back, plain)
	}
}

func TestIsSecretKey(t *testing.T) {
	for key, want := range map[string]bool{
		"kafka.sasl.password": true, "clickhouse.password": true, "admin.token": true,
		"schema_registry.bearer_token": true, "schema_registry.basic_auth_password": true, "x.client_secret": true,
		"kafka.sasl.password_file": false, "admin.token_file": false, "kafka.sasl.username": false, "pipelines[0].name": false,
	} {
		if got := config.IsSecretKey(key); got != want {
			t.Errorf("IsSecretKey(%q) = %v, want %v", key, got, want)
		}
	}
}
