package kafkaconn_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-etl/sluice/internal/testcert"
	"github.com/sluice-etl/sluice/pkg/config"
	"github.com/sluice-etl/sluice/pkg/kafkaconn"
)

// cluster is a kfake cluster behind TLS (a test CA's certificate) with
// SASL, one user per mechanism; caFile trusts its CA.
func cluster(t *testing.T) (brokers []string, caFile string) {
	t.Helper()
	return testcert.KfakeTLS(t,
		kfake.EnableSASL(),
		kfake.Superuser(config.SASLPlain, "plain-user", "plain-pass"),
		kfake.Superuser(config.SASLScramSHA256, "scram256-user", "scram256-pass"),
		kfake.Superuser(config.SASLScramSHA512, "scram512-user", "scram512-pass"),
		kfake.SeedTopics(1, "t"),
	)
}

// TestEveryMechanismOverTLS: a client built from the config produces and
// consumes through TLS with each SASL mechanism; with a wrong password
// the broker refuses it.
func TestEveryMechanismOverTLS(t *testing.T) {
	brokers, ca := cluster(t)
	for _, c := range []struct {
		mech, user, pass string
	}{
		{config.SASLPlain, "plain-user", "plain-pass"},
		{config.SASLScramSHA256, "scram256-user", "scram256-pass"},
		{config.SASLScramSHA512, "scram512-user", "scram512-pass"},
	} {
		t.Run(c.mech, func(t *testing.T) {
			k := config.Kafka{
				Brokers: brokers,
				TLS:     config.TLS{Enabled: true, CAFile: ca},
				SASL:    config.SASL{Mechanism: c.mech, Username: c.user, Password: config.Secret(c.pass)},
			}
			cl, err := kafkaconn.NewClient(k, kgo.ConsumeTopics("t"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			value := []byte("through " + c.mech)
			if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "t", Value: value}).FirstErr(); err != nil {
				t.Fatalf("produce: %v", err)
			}
			found := false
			for !found && ctx.Err() == nil {
				cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) { found = found || string(r.Value) == string(value) })
			}
			if !found {
				t.Fatal("the record did not come back")
			}

			k.SASL.Password = "wrong"
			bad, err := kafkaconn.NewClient(k)
			if err != nil {
				t.Fatal(err)
			}
			defer bad.Close()
			// kfake hangs up on a failed authentication (a real broker
			// answers SASL_AUTHENTICATION_FAILED first: integration/
			// security_test.go); either way the client is refused.
			pctx, pcancel := context.WithTimeout(ctx, 3*time.Second)
			defer pcancel()
			if err := bad.Ping(pctx); err == nil {
				t.Error("a wrong password was accepted")
			}
		})
	}
}

// TestSecurityOptions: no options for plaintext without SASL; an
// unreadable CA file is a config error naming kafka.tls.ca_file; Opts
// puts the seed brokers first.
func TestSecurityOptions(t *testing.T) {
	if opts, err := kafkaconn.Security(config.Kafka{Brokers: []string{"b:9092"}}); err != nil || len(opts) != 0 {
		t.Errorf("plaintext: %d options, %v; want none", len(opts), err)
	}
	_, err := kafkaconn.Security(config.Kafka{TLS: config.TLS{Enabled: true, CAFile: filepath.Join(t.TempDir(), "gone.pem")}})
	var errs config.Errors
	if !errors.As(err, &errs) || len(errs) != 1 || errs[0].Key != "kafka.tls.ca_file" {
		t.Errorf("missing CA file: %v, want config.Errors on kafka.tls.ca_file", err)
	}
	if _, err := kafkaconn.Mechanism(config.SASL{Mechanism: "GSSAPI"}); !errors.As(err, &errs) || errs[0].Key != "kafka.sasl.mechanism" {
		t.Errorf("GSSAPI: %v, want config.Errors on kafka.sasl.mechanism", err)
	}
	opts, err := kafkaconn.Opts(config.Kafka{Brokers: []string{"b:9092"}, SASL: config.SASL{Mechanism: "PLAIN", Username: "u", Password: "p"}})
	if err != nil || len(opts) != 2 {
		t.Fatalf("Opts: %d, %v; want seeds and SASL", len(opts), err)
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if seeds := cl.OptValue(kgo.SeedBrokers); len(seeds.([]string)) != 1 || seeds.([]string)[0] != "b:9092" {
		t.Errorf("seed brokers %v", seeds)
	}
}
