package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-etl/sluice/internal/testcert"
	sluicecfg "github.com/sluice-etl/sluice/pkg/config"
	"github.com/sluice-etl/sluice/pkg/kafkaconn"
)

// TestConfigConnectsOverTLSAndSASL: with --config, sluice-gen reaches a
// broker that takes only TLS with SCRAM-SHA-512, as Sluice would with the
// same file; a wrong password in the file is refused (exit 1, naming the
// config's keys), and a file Sluice would refuse is a usage error.
func TestConfigConnectsOverTLSAndSASL(t *testing.T) {
	brokers, caFile := testcert.KfakeTLS(t, kfake.EnableSASL(), kfake.Superuser(sluicecfg.SASLScramSHA512, "gen", "gen-secret"))
	dir := t.TempDir()
	schema, err := filepath.Abs(filepath.Join(schemas, "order.avsc"))
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, password string) string {
		path := filepath.Join(dir, name)
		yaml := fmt.Sprintf(`kafka:
  brokers: [%s]
  tls:
    enabled: true
    ca_file: %s
  sasl:
    mechanism: SCRAM-SHA-512
    username: gen
    password: %s
pipelines:
  - name: orders
    topic: orders
    format: json
    schema: %s
`, strings.Join(brokers, ","), caFile, password, schema)
		if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}

	good := write("good.yaml", "gen-secret")
	r := runArgs(t, nil, false, "--config", good, "--count", "20", "--no-reference", "--no-payments", "--no-shipments", "--schemas", schemas, "--quiet")
	if r.code != exitOK {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	// Read back through a client of the same config.
	cfg, err := sluicecfg.Load(good)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kafkaconn.NewClient(cfg.Kafka, kgo.SeedBrokers(cfg.Kafka.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	if got := endOffsets(t, kadm.NewClient(cl), "orders")["orders"]; got != 20 {
		t.Fatalf("orders holds %d records, want 20", got)
	}

	bad := write("bad.yaml", "wrong")
	r = runArgs(t, nil, false, "--config", bad, "--count", "5", "--no-reference", "--schemas", schemas, "--quiet", "--timeout", "3s")
	if r.code != exitFailure || !strings.Contains(r.stderr, "kafka.sasl of --config") {
		t.Fatalf("wrong password: exit %d, stderr %q; want %d naming the config's kafka keys", r.code, r.stderr, exitFailure)
	}

	invalid := filepath.Join(dir, "invalid.yaml")
	if err := os.WriteFile(invalid, []byte("kafka:\n  sasl:\n    mechanism: GSSAPI\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = runArgs(t, nil, false, "--config", invalid, "--count", "5", "--schemas", schemas)
	if r.code != exitUsage || !strings.Contains(r.stderr, "kafka.sasl.mechanism") {
		t.Fatalf("invalid config: exit %d, stderr %q; want %d naming kafka.sasl.mechanism", r.code, r.stderr, exitUsage)
	}
}
