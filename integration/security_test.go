//go:build integration

package integration

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-etl/sluice/internal/itest"
	"github.com/sluice-etl/sluice/internal/testcert"
	"github.com/sluice-etl/sluice/pkg/dlq"
	"github.com/sluice-etl/sluice/pkg/gen"
)

// Security against the real services: Kafka's SASL_SSL listeners (SCRAM
// users created through the admin API, the PLAIN user of kafka.sh), its
// SSL listener that requires a client certificate, and ClickHouse's TLS
// native port with a user that has a password; the certificates are the
// test CA's (integration/certgen).

// secureKafka is the kafka: keys of one way in, without brokers.
type secureKafka struct {
	brokers []string
	keys    string // YAML lines under kafka:, indented two spaces
}

// secret writes a secret file (with a trailing newline, as `echo` makes
// it) into dir and returns its path.
func secret(t *testing.T, dir, name, value string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(value+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// secureConfig writes a config for w with Kafka reached as k and
// ClickHouse as chKeys (YAML lines under clickhouse:, addr included),
// one Avro orders pipeline with every transform, the reference topics
// of refs, and top (more top-level YAML). It returns the path.
func (w *world) secureConfig(dir, group, topic string, k secureKafka, chKeys, refs, top string) string {
	w.t.Helper()
	yaml := fmt.Sprintf(`kafka:
  brokers: [%s]
  group: %s
  dlq_topic: %s
  session_timeout: 6s
  rebalance_timeout: 10s
%s
clickhouse:
  database: %s
  dial_timeout: 2s
%s
log:
  level: info
batch:
  max_wait: 200ms
shutdown_timeout: 10s
%s
%s
pipelines:
  - {name: orders, topic: %s, schema: %s, table: orders, transforms: [order_items, currency, customer, fraud]}
`, strings.Join(k.brokers, ", "), group, w.name("dlq"), k.keys, w.db, chKeys, refs, top, topic,
		filepath.Join(repoRoot(), "schemas", "avro", "order.avsc"))
	path := filepath.Join(dir, "sluice.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		w.t.Fatal(err)
	}
	return path
}

// scramKafka is the SCRAM listener with user and the mechanism given, the
// password in a file (relative to the config's directory).
func scramKafka(mech, user, passwordFile string) secureKafka {
	return secureKafka{brokers: itest.ScramBrokers(), keys: fmt.Sprintf(`  tls:
    enabled: true
    ca_file: %s
  sasl:
    mechanism: %s
    username: %s
    password_file: %s`, filepath.Join(itest.TLSDir(), "ca.pem"), mech, user, passwordFile)}
}

// secureClickHouse is ClickHouse's TLS port as the user with a password,
// the password left to SLUICE_CLICKHOUSE_PASSWORD.
func secureClickHouse() string {
	return fmt.Sprintf(`  addr: [%s]
  username: %s
  tls:
    enabled: true
    ca_file: %s`, itest.ClickHouseSecureAddr(), itest.SecureUser, filepath.Join(itest.TLSDir(), "ca.pem"))
}

// runSecure starts the binary with the secrets the test passes in the
// environment.
func runSecure(t *testing.T, env []string, args ...string) *sluiceProc {
	t.Helper()
	return startSluiceBinaryEnv(t, env, args...)
}

// referenceData creates the customers and fx-rates topics with one
// customer and the EUR rate, and returns the reference: keys.
func (w *world) referenceData(codecs *gen.Codecs) string {
	w.t.Helper()
	cust, fx := w.name("customers"), w.name("fx")
	w.createTopic(cust, 1)
	w.createTopic(fx, 1)
	ck, cv, err := codecs.EncodeCustomer(gen.Customer{CustomerID: "C1", Name: "Alice Secure", Email: "alice@example.com",
		Country: "CH", Segment: gen.SegmentConsumer, CreatedAt: t0.Add(-24 * time.Hour)})
	if err != nil {
		w.t.Fatal(err)
	}
	fk, fv, err := codecs.EncodeFxRate(gen.FxRate{Currency: "EUR", Rate: dec("1.25000000"), EffectiveFrom: t0})
	if err != nil {
		w.t.Fatal(err)
	}
	if err := w.kcl.ProduceSync(context.Background(),
		&kgo.Record{Topic: cust, Key: ck, Value: cv}, &kgo.Record{Topic: fx, Key: fk, Value: fv}).FirstErr(); err != nil {
		w.t.Fatal(err)
	}
	return fmt.Sprintf("reference:\n  customers_topic: %s\n  fx_rates_topic: %s", cust, fx)
}

// produceEUROrders writes n orders of customer C1 in EUR, 100.00 each,
// over every partition of topic.
func (w *world) produceEUROrders(codecs *gen.Codecs, topic string, n int) {
	w.t.Helper()
	recs := make([]*kgo.Record, n)
	for i := range recs {
		_, v, err := codecs.EncodeOrder(gen.Order{OrderID: fmt.Sprintf("O-%05d", i), CustomerID: "C1", CreatedAt: t0.Add(time.Hour),
			Currency: "EUR", Total: dec("100.00"), Status: gen.OrderCreated, Channel: gen.ChannelWeb, ShippingCountry: "CH",
			Items: []gen.LineItem{{SKU: "SKU-1", Quantity: 2, UnitPrice: dec("50.00")}}})
		if err != nil {
			w.t.Fatal(err)
		}
		// Keys of their own, so the orders spread over the partitions.
		recs[i] = &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "order-%d", i), Value: v}
	}
	if err := w.kcl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		w.t.Fatal(err)
	}
}

func randomPassword() string { return fmt.Sprintf("pw-%016x-%016x", rand.Uint64(), rand.Uint64()) }

// noSecrets fails the test when out holds any of the secrets.
func noSecrets(t *testing.T, what, out string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if s != "" && strings.Contains(out, s) {
			t.Errorf("%s shows a secret (%q):\n%s", what, s, out)
		}
	}
}

// TestSecureLoadEndToEnd loads orders from the SASL_SSL listener (SCRAM-
// SHA-512 user made through the admin API, password from a file) into
// ClickHouse's TLS port (a user whose password comes from the
// environment), with reference data read and a dead letter produced over
// the same listener, and the admin HTTP behind a token from a file: every
// order stored once with its conversion, the dead letter readable with
// `sluice dlq inspect` over SASL_SSL, the group's offsets committed, and no
// secret in any output, `sluice config print` included.
func TestSecureLoadEndToEnd(t *testing.T) {
	w := newWorld(t)
	codecs, err := gen.LoadCodecs(filepath.Join(repoRoot(), "schemas", "avro"))
	if err != nil {
		t.Fatal(err)
	}
	user, kafkaPass, token := "sluice_"+w.suffix, randomPassword(), randomPassword()
	itest.CreateScramUser(t, w.adm, user, kafkaPass, kadm.ScramSha512)

	topic := w.name("orders")
	w.createTopic(topic, 2)
	refs := w.referenceData(codecs)
	const n = 300
	w.produceEUROrders(codecs, topic, n)
	// The client partitions by key: the partition argument is not used.
	bad := w.produceTo(w.kcl, topic, 0, "C1", undecodable(rand.New(rand.NewPCG(1, 2)), 64))

	dir := t.TempDir()
	secret(t, dir, "kafka.pass", kafkaPass)
	secret(t, dir, "admin.token", token)
	admin := freePort(t)
	group := w.name("g")
	cfg := w.secureConfig(dir, group, topic, scramKafka("SCRAM-SHA-512", user, "kafka.pass"), secureClickHouse(), refs,
		fmt.Sprintf("admin:\n  listen: %s\n  token_file: admin.token", admin))
	env := []string{"SLUICE_CLICKHOUSE_PASSWORD=" + itest.SecurePassword}
	secrets := []string{kafkaPass, token, itest.SecurePassword}

	check := runSecure(t, env, "check", "-c", cfg)
	if code := check.wait(60 * time.Second); code != 0 {
		t.Fatalf("sluice check: exit %d; log:\n%s", code, check.log())
	}
	if !strings.Contains(check.log(), "Kafka and ClickHouse reachable") {
		t.Errorf("sluice check did not say it reached both:\n%s", check.log())
	}

	p := runSecure(t, env, "run", "-c", cfg)
	waitUntil(t, "every order loaded over TLS", 90*time.Second, func() bool {
		if p.exited() {
			t.Fatalf("sluice exited (%v); log:\n%s", p.err, p.log())
		}
		return w.count(fmt.Sprintf("SELECT count() FROM %s.orders", w.db)) == n
	})
	// The reference data came over SASL_SSL too: every order converted
	// at 1.25 and joined.
	if got := w.count(fmt.Sprintf(`SELECT count() FROM %s.orders
		WHERE toString(total_base) = '125.00' AND toString(fx_rate) = '1.25000000' AND customer_name = 'Alice Secure' AND item_count = 2`, w.db)); got != n {
		t.Errorf("%d of %d orders converted at 1.25 and joined with C1", got, n)
	}

	// The admin HTTP: probes open, the rest behind the token.
	get := func(path, auth string) int {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+admin+path, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res.StatusCode
	}
	waitUntil(t, "the admin HTTP", 20*time.Second, func() bool { return get("/healthz", "") == http.StatusOK })
	for _, c := range []struct {
		path, auth string
		want       int
	}{
		{"/metrics", "", http.StatusUnauthorized},
		{"/metrics", "Bearer wrong-token-wrong-token", http.StatusUnauthorized},
		{"/metrics", "Bearer " + token, http.StatusOK},
		{"/api/stats", "Bearer " + token, http.StatusOK},
		{"/", "", http.StatusUnauthorized},
		{"/readyz", "", http.StatusOK},
	} {
		if got := get(c.path, c.auth); got != c.want {
			t.Errorf("GET %s with %q: %d, want %d", c.path, strings.Replace(c.auth, token, "<token>", 1), got, c.want)
		}
	}

	// The dead letter went out over SASL_SSL before the commit.
	deadline := time.Now().Add(30 * time.Second)
	for !itest.EqualOffsets(w.committed(group, topic), w.endOffsets(topic)) {
		if time.Now().After(deadline) {
			t.Fatalf("committed %v, want the end offsets %v; log:\n%s", w.committed(group, topic), w.endOffsets(topic), p.log())
		}
		time.Sleep(200 * time.Millisecond)
	}
	letters := w.readLetters(w.name("dlq"))
	if len(letters) != 1 || letters[0].SourceTopic != topic || letters[0].SourceOffset != bad || letters[0].Stage != "decode" {
		t.Fatalf("dead letters %+v, want the undecodable record at offset %d", letters, bad)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(30 * time.Second); code != 0 {
		t.Fatalf("exit %d after SIGTERM; log:\n%s", code, p.log())
	}
	noSecrets(t, "the log of sluice run", p.log(), secrets...)

	inspect := runSecure(t, env, "dlq", "inspect", "-c", cfg)
	if code := inspect.wait(60 * time.Second); code != 0 || !strings.Contains(inspect.log(), letters[0].Source()) {
		t.Fatalf("sluice dlq inspect over SASL_SSL: exit %d, want the dead letter of %s; output:\n%s", code, letters[0].Source(), inspect.log())
	}

	// The effective config, secrets redacted: from the file, the
	// environment and the *_file keys alike.
	pr := runSecure(t, append(env, "SLUICE_KAFKA_SASL_MECHANISM=scram-sha-512"), "config", "print", "-c", cfg)
	if code := pr.wait(20 * time.Second); code != 0 {
		t.Fatalf("sluice config print: exit %d:\n%s", code, pr.log())
	}
	out := pr.log()
	noSecrets(t, "sluice config print", out, secrets...)
	for _, want := range []string{
		"mechanism: SCRAM-SHA-512", "username: " + user, "password: '[redacted]'", "password_file: " + filepath.Join(dir, "kafka.pass"),
		"token: '[redacted]'", "token_file: " + filepath.Join(dir, "admin.token"), "addr: ['" + itest.ClickHouseSecureAddr() + "']",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("sluice config print lacks %q:\n%s", want, out)
		}
	}
	noSecrets(t, "sluice check", check.log(), secrets...)
	noSecrets(t, "sluice dlq inspect", inspect.log(), secrets...)
}

// TestSecureListeners: `sluice check` reaches the SASL_SSL listeners with
// PLAIN and with SCRAM-SHA-256 and, with a client certificate, the SSL
// listener that requires one.
func TestSecureListeners(t *testing.T) {
	w := newWorld(t)
	codecs, err := gen.LoadCodecs(filepath.Join(repoRoot(), "schemas", "avro"))
	if err != nil {
		t.Fatal(err)
	}
	refs := w.referenceData(codecs)
	ca := filepath.Join(itest.TLSDir(), "ca.pem")
	// SCRAM-SHA-512 is TestSecureLoadEndToEnd's; the other SCRAM
	// mechanism gets a user of its own, its password in a file.
	user256, pass256 := "sluice256_"+w.suffix, randomPassword()
	itest.CreateScramUser(t, w.adm, user256, pass256, kadm.ScramSha256)
	for _, c := range []struct {
		name  string
		k     secureKafka
		env   []string
		files map[string]string // secret files beside the config
	}{
		{"SASL PLAIN over TLS", secureKafka{brokers: itest.PlainBrokers(), keys: fmt.Sprintf(
			"  tls: {enabled: true, ca_file: %s}\n  sasl: {mechanism: PLAIN, username: %s}", ca, itest.PlainUser)},
			[]string{"SLUICE_KAFKA_SASL_PASSWORD=" + itest.PlainPassword}, nil},
		{"SASL SCRAM-SHA-256 over TLS", scramKafka("SCRAM-SHA-256", user256, "kafka.pass"), nil, map[string]string{"kafka.pass": pass256}},
		{"mutual TLS", secureKafka{brokers: itest.MTLSBrokers(), keys: fmt.Sprintf(
			"  tls: {enabled: true, ca_file: %s, cert_file: %s, key_file: %s, server_name: localhost}", ca,
			filepath.Join(itest.TLSDir(), "client.pem"), filepath.Join(itest.TLSDir(), "client.key"))}, nil, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, v := range c.files {
				secret(t, dir, name, v)
			}
			cfg := w.secureConfig(dir, w.name("g"), w.name("orders"), c.k, secureClickHouse(), refs, "")
			p := runSecure(t, append(c.env, "SLUICE_CLICKHOUSE_PASSWORD="+itest.SecurePassword), "check", "-c", cfg)
			if code := p.wait(60 * time.Second); code != 0 {
				t.Fatalf("exit %d; log:\n%s", code, p.log())
			}
			noSecrets(t, "sluice check", p.log(), itest.PlainPassword, itest.SecurePassword, pass256)
		})
	}
}

// TestSecurityErrorsExitTwo: each TLS or SASL mismatch is a config error
// naming its key, for `sluice run` and `sluice check` alike: exit 2 at
// once (not retried within the long startup_timeout), no secret in the
// output, and nothing consumed (the group never commits an offset).
func TestSecurityErrorsExitTwo(t *testing.T) {
	w := newWorld(t)
	codecs, err := gen.LoadCodecs(filepath.Join(repoRoot(), "schemas", "avro"))
	if err != nil {
		t.Fatal(err)
	}
	refs := w.referenceData(codecs)
	topic := w.name("orders")
	w.createTopic(topic, 2)
	w.produceEUROrders(codecs, topic, 50)
	group := w.name("g")

	user, pass := "sluice_"+w.suffix, randomPassword()
	itest.CreateScramUser(t, w.adm, user, pass, kadm.ScramSha512)
	// An authority nobody configured, for the unknown-CA cases.
	other, err := testcert.NewCA("Someone else's CA")
	if err != nil {
		t.Fatal(err)
	}
	otherCA := filepath.Join(t.TempDir(), "other-ca.pem")
	if err := os.WriteFile(otherCA, other.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(itest.TLSDir(), "ca.pem")
	goodKafka := scramKafka("SCRAM-SHA-512", user, "kafka.pass")
	goodCH := secureClickHouse()
	wrong := "wrong-" + randomPassword()

	for _, c := range []struct {
		name     string
		k        secureKafka
		ch       string
		chPass   string
		kPass    string
		key      string
		fragment string
	}{
		{"Kafka wrong password", goodKafka, goodCH, itest.SecurePassword, wrong,
			"kafka.sasl.password", fmt.Sprintf("refused user %q with SCRAM-SHA-512", user)},
		{"Kafka SCRAM mechanism the user has no credentials for", scramKafka("SCRAM-SHA-256", user, "kafka.pass"), goodCH, itest.SecurePassword, pass,
			"kafka.sasl.password", "without SCRAM-SHA-256 credentials"},
		{"Kafka wrong mechanism", scramKafka("PLAIN", user, "kafka.pass"), goodCH, itest.SecurePassword, pass,
			"kafka.sasl.mechanism", "does not offer PLAIN on that listener"},
		{"Kafka unknown CA", secureKafka{brokers: itest.ScramBrokers(), keys: strings.Replace(goodKafka.keys, ca, otherCA, 1)}, goodCH, itest.SecurePassword, pass,
			"kafka.tls.ca_file", "its certificate is not signed by the authorities of kafka.tls.ca_file " + otherCA},
		{"Kafka TLS missing", secureKafka{brokers: itest.ScramBrokers(), keys: fmt.Sprintf("  sasl: {mechanism: SCRAM-SHA-512, username: %s, password_file: kafka.pass}", user)}, goodCH, itest.SecurePassword, pass,
			"kafka.tls.enabled", "as a TLS listener does to a plaintext client"},
		{"Kafka TLS to the plaintext listener", secureKafka{brokers: brokers, keys: fmt.Sprintf("  tls: {enabled: true, ca_file: %s}", ca)}, goodCH, itest.SecurePassword, pass,
			"kafka.tls.enabled", "as a plaintext listener does to a TLS client"},
		{"Kafka SASL missing", secureKafka{brokers: itest.ScramBrokers(), keys: fmt.Sprintf("  tls: {enabled: true, ca_file: %s}", ca)}, goodCH, itest.SecurePassword, pass,
			"kafka.sasl.mechanism", "as a SASL listener does to a client without SASL"},
		{"Kafka client certificate missing", secureKafka{brokers: itest.MTLSBrokers(), keys: fmt.Sprintf("  tls: {enabled: true, ca_file: %s}", ca)}, goodCH, itest.SecurePassword, pass,
			"kafka.tls.cert_file", "no client certificate is configured"},
		{"ClickHouse wrong password", goodKafka, goodCH, wrong, pass,
			"clickhouse.password", "user " + itest.SecureUser},
		{"ClickHouse unknown CA", goodKafka, strings.Replace(goodCH, ca, otherCA, 1), itest.SecurePassword, pass,
			"clickhouse.tls.ca_file", "its certificate is not signed by the authorities of clickhouse.tls.ca_file " + otherCA},
		{"ClickHouse server name", goodKafka, goodCH + "\n    server_name: clickhouse.example", itest.SecurePassword, pass,
			"clickhouse.tls.server_name", "not valid for the name checked"},
		{"ClickHouse TLS to the plaintext port", goodKafka, strings.Replace(goodCH, itest.ClickHouseSecureAddr(), clickhouse, 1), itest.SecurePassword, pass,
			"clickhouse.tls.enabled", "does not speak TLS on that port"},
		{"ClickHouse plaintext to the TLS port", goodKafka, fmt.Sprintf("  addr: [%s]\n  username: %s", itest.ClickHouseSecureAddr(), itest.SecureUser), itest.SecurePassword, pass,
			"clickhouse.tls.enabled", "is a TLS port and clickhouse.tls is not enabled"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			secret(t, dir, "kafka.pass", c.kPass)
			cfg := w.secureConfig(dir, group, topic, c.k, c.ch, refs, "admin:\n  listen: \"\"\nstartup_timeout: 60s")
			for _, cmd := range []string{"run", "check"} {
				start := time.Now()
				p := runSecure(t, []string{"SLUICE_CLICKHOUSE_PASSWORD=" + c.chPass}, cmd, "-c", cfg)
				code := p.wait(30 * time.Second)
				log := p.log()
				if code != 2 || !strings.Contains(log, "sluice: invalid config:") || !strings.Contains(log, "  "+c.key+": ") || !strings.Contains(log, c.fragment) {
					t.Fatalf("%s: exit %d, want 2 naming %s with %q; log:\n%s", cmd, code, c.key, c.fragment, log)
				}
				if strings.Contains(log, "retrying") || time.Since(start) > 15*time.Second {
					t.Errorf("%s: the error was waited for (%v); log:\n%s", cmd, time.Since(start), log)
				}
				noSecrets(t, cmd, log, pass, wrong, itest.SecurePassword)
				if cmd == "run" {
					t.Logf("%s", log[strings.Index(log, "  "+c.key+": "):])
				}
			}
		})
	}
	if got := w.committed(group, topic); len(got) != 0 {
		t.Errorf("group %s committed %v; nothing may be consumed", group, got)
	}
	if n := w.count(fmt.Sprintf("SELECT count() FROM %s.orders", w.db)); n != 0 {
		t.Errorf("%d orders loaded; nothing may be consumed", n)
	}
	letters := readLettersIfAny(t, w.name("dlq"))
	if letters != 0 {
		t.Errorf("%d dead letters; nothing may be consumed", letters)
	}
}

// readLettersIfAny counts the dead letters of topic (0 when it does not
// exist).
func readLettersIfAny(t *testing.T, topic string) int {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	letters, err := dlq.Read(ctx, cl, topic, dlq.Filter{})
	if err != nil && !errors.Is(err, dlq.ErrNoTopic) {
		t.Fatal(err)
	}
	return len(letters)
}
