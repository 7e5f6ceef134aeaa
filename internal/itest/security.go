package itest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// The secure listeners of the services `make up` starts
// (integration/kafka.sh, integration/clickhouse.sh), overridable like
// Brokers and ClickHouseAddr for a stack on other ports.

// ScramBrokers is SLUICE_KAFKA_SCRAM_BROKERS or the SASL_SSL listener
// with SCRAM-SHA-256 and -512 (KAFKA_SCRAM_PORT, 9094).
func ScramBrokers() []string {
	return strings.Split(Env("SLUICE_KAFKA_SCRAM_BROKERS", "127.0.0.1:9094"), ",")
}

// PlainBrokers is SLUICE_KAFKA_PLAIN_BROKERS or the SASL_SSL listener with
// PLAIN (KAFKA_PLAIN_PORT, 9095), whose one user is PlainUser.
func PlainBrokers() []string {
	return strings.Split(Env("SLUICE_KAFKA_PLAIN_BROKERS", "127.0.0.1:9095"), ",")
}

// MTLSBrokers is SLUICE_KAFKA_MTLS_BROKERS or the SSL listener that
// requires a client certificate signed by the test CA (KAFKA_MTLS_PORT,
// 9096).
func MTLSBrokers() []string {
	return strings.Split(Env("SLUICE_KAFKA_MTLS_BROKERS", "127.0.0.1:9096"), ",")
}

// ClickHouseSecureAddr is SLUICE_CLICKHOUSE_SECURE_ADDR or ClickHouse's
// TLS native port (CLICKHOUSE_TCP_SECURE_PORT, 9440).
func ClickHouseSecureAddr() string { return Env("SLUICE_CLICKHOUSE_SECURE_ADDR", "127.0.0.1:9440") }

// TLSDir holds the certificates the secure ports serve: ca.pem, and
// client.pem / client.key for mutual TLS (integration/certgen). It is
// SLUICE_TLS_DIR, else $SLUICE_STATE_DIR/tls, else <repo>/.state/tls, as
// in integration/common.sh.
func TLSDir() string {
	if d := Env("SLUICE_TLS_DIR", ""); d != "" {
		return d
	}
	return filepath.Join(Env("SLUICE_STATE_DIR", filepath.Join(RepoRoot(), ".state")), "tls")
}

// Fixed test credentials of the services (the scripts define them).
const (
	// PlainUser and PlainPassword: the PLAIN listener's user.
	PlainUser     = "sluice_plain"
	PlainPassword = "plain-test-password"
	// SecureUser and SecurePassword: the ClickHouse user with a password.
	SecureUser     = "sluice_secure"
	SecurePassword = "secure-test-password"
)

// CreateScramUser creates (or resets) user with password for mechanism
// through the admin API of the plaintext listener (adm), waits until the
// SCRAM listener accepts it, and deletes it when the test ends.
func CreateScramUser(tb testing.TB, adm *kadm.Client, user, password string, mech kadm.ScramMechanism) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := adm.AlterUserSCRAMs(ctx, nil, []kadm.UpsertSCRAM{{User: user, Mechanism: mech, Iterations: 4096, Password: password}})
	if err == nil {
		err = res.Error()
	}
	if err != nil {
		tb.Fatalf("create SCRAM user %s: %v", user, err)
	}
	tb.Cleanup(func() {
		_, _ = adm.AlterUserSCRAMs(context.Background(), []kadm.DeleteSCRAM{{User: user, Mechanism: mech}}, nil)
	})
	auth := scram.Auth{User: user, Pass: password}
	m := auth.AsSha512Mechanism()
	if mech == kadm.ScramSha256 {
		m = auth.AsSha256Mechanism()
	}
	// The credential reaches the listener through the metadata log;
	// until then the broker refuses it.
	var last error
	for ctx.Err() == nil {
		cl, err := kgo.NewClient(kgo.SeedBrokers(ScramBrokers()...), kgo.DialTLSConfig(TestCAConfig(tb)), kgo.SASL(m))
		if err != nil {
			tb.Fatal(err)
		}
		pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
		last = cl.Ping(pctx)
		pcancel()
		cl.Close()
		if last == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	tb.Fatalf("SCRAM user %s not accepted by %v within 30s: %v", user, ScramBrokers(), last)
}

// TestCAConfig is a TLS client config that trusts the test CA.
func TestCAConfig(tb testing.TB) *tls.Config {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(TLSDir(), "ca.pem"))
	if err != nil {
		tb.Fatalf("the test CA (run `make up`, which writes it): %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		tb.Fatalf("%s holds no certificate", filepath.Join(TLSDir(), "ca.pem"))
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}
