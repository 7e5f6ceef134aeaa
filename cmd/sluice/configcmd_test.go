package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigPrint: `sluice config print` shows the effective config (file,
// environment, defaults) with the secrets of each source redacted and
// contacts nothing; a bad config exits 2 naming the key.
func TestConfigPrint(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "kafka.pass"), []byte("pass-from-a-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	schema, err := filepath.Abs("../../schemas/avro/order.avsc")
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "sluice.yaml")
	yaml := `kafka:
  brokers: [nowhere.invalid:9094]
  sasl: {mechanism: SCRAM-SHA-256, username: loader, password_file: kafka.pass}
clickhouse:
  addr: [nowhere.invalid:9440]
  password: pass-in-the-file
pipelines:
  - {name: orders, topic: orders, schema: ` + schema + `}
`
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SLUICE_ADMIN_TOKEN", "token-from-the-environment")
	t.Setenv("SLUICE_BATCH_MAX_ROWS", "777")
	code, out, errOut := runCLI("config", "print", "-c", cfg)
	if code != exitOK || errOut != "" {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	for _, s := range []string{"pass-from-a-file", "pass-in-the-file", "token-from-the-environment"} {
		if strings.Contains(out, s) {
			t.Errorf("the output shows %q:\n%s", s, out)
		}
	}
	for _, want := range []string{
		"brokers: ['nowhere.invalid:9094']", "mechanism: SCRAM-SHA-256", "password_file: " + filepath.Join(dir, "kafka.pass"),
		"    password: '[redacted]'", "  token: '[redacted]'", "max_rows: 777", "listen: 127.0.0.1:8080",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the output lacks %q:\n%s", want, out)
		}
	}

	t.Setenv("SLUICE_KAFKA_SASL_MECHANISM", "KERBEROS")
	code, out, errOut = runCLI("config", "print", "-c", cfg)
	if code != exitConfig || out != "" || !strings.Contains(errOut, "kafka.sasl.mechanism: \"KERBEROS\" is not one of") {
		t.Errorf("bad mechanism: exit %d, stdout %q, stderr %q; want exit 2 naming kafka.sasl.mechanism", code, out, errOut)
	}
}
