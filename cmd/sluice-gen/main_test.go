package main

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-etl/sluice/pkg/gen"
)

const schemas = "../../schemas/avro"

type result struct {
	code           int
	stdout, stderr string
}

func runArgs(t *testing.T, env map[string]string, tty bool, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, func(k string) string { return env[k] }, &out, &errb, tty)
	return result{code, out.String(), errb.String()}
}

// newCluster starts an empty kfake cluster (no topics, no auto-creation)
// and an admin client for it.
func newCluster(t *testing.T) (*kfake.Cluster, *kadm.Client) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return c, kadm.NewClient(cl)
}

func endOffsets(t *testing.T, adm *kadm.Client, topics ...string) map[string]int64 {
	t.Helper()
	ends, err := adm.ListEndOffsets(context.Background(), topics...)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			t.Fatalf("end offset %s/%d: %v", o.Topic, o.Partition, o.Err)
		}
		m[o.Topic] += o.Offset
	})
	return m
}

func TestHelp(t *testing.T) {
	r := runArgs(t, nil, false, "--help")
	if r.code != exitOK {
		t.Fatalf("--help exited %d: %s", r.code, r.stderr)
	}
	for _, want := range []string{
		"--brokers", "SLUICE_KAFKA_BROKERS", "--count", "--rate", "--seed", "--customers", "--schemas",
		"--create-topics", "--partitions", "--topic-orders", "--topic-fx-rates", "--quiet",
		"compacted", "key customer_id", "Exit status", "Examples:",
		"--format", "avro-confluent", "--registry", "SLUICE_SCHEMA_REGISTRY_URL", "<topic>-value",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("--help does not mention %q", want)
		}
	}
}

func TestProducesAndCreatesTopics(t *testing.T) {
	c, adm := newCluster(t)
	r := runArgs(t, nil, false,
		"--brokers", c.ListenAddrs()[0], "--count", "300", "--customers", "40", "--seed", "5",
		"--schemas", schemas, "--partitions", "4")
	if r.code != exitOK {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}

	// Topics: events with --partitions, reference data compacted with 1.
	details, err := adm.ListTopics(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for topic, parts := range map[string]int{"orders": 4, "payments": 4, "shipments": 4, "customers": 1, "fx-rates": 1} {
		d, ok := details[topic]
		if !ok {
			t.Fatalf("topic %s not created", topic)
		}
		if len(d.Partitions) != parts {
			t.Errorf("topic %s has %d partitions, want %d", topic, len(d.Partitions), parts)
		}
		if !strings.Contains(r.stderr, "created topic "+topic) {
			t.Errorf("creation of %s not reported: %s", topic, r.stderr)
		}
	}
	cfgs, err := adm.DescribeTopicConfigs(context.Background(), "customers", "fx-rates", "orders")
	if err != nil {
		t.Fatal(err)
	}
	for _, rc := range cfgs {
		policy := ""
		for _, kv := range rc.Configs {
			if kv.Key == "cleanup.policy" && kv.Value != nil {
				policy = *kv.Value
			}
		}
		compacted := policy == "compact"
		if compacted != (rc.Name != "orders") {
			t.Errorf("topic %s cleanup.policy = %q", rc.Name, policy)
		}
	}

	// Exactly what the generator says, on the broker and in the summary.
	g, err := gen.New(gen.Options{Seed: 5, Customers: 40, SchemaDir: schemas})
	if err != nil {
		t.Fatal(err)
	}
	want := gen.Counts{Customers: 40, FxRates: int64(len(g.FxRates())), Orders: 300}
	for seq := range 300 {
		o := g.Order(seq)
		want.Payments += int64(len(g.Payments(o)))
		want.Shipments += int64(len(g.Shipments(o)))
	}
	got := endOffsets(t, adm, "orders", "payments", "shipments", "customers", "fx-rates")
	for topic, n := range want.ByTopic(gen.Topics{}) {
		if got[topic] != n {
			t.Errorf("topic %s holds %d records, want %d", topic, got[topic], n)
		}
		if !strings.Contains(r.stdout, topic) {
			t.Errorf("summary lacks topic %s:\n%s", topic, r.stdout)
		}
	}
	for _, want := range []string{"total", "records/s", g.OrderID(0), g.OrderID(299)} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("summary lacks %q:\n%s", want, r.stdout)
		}
	}

	// A second run into the existing topics neither fails nor recreates.
	r = runArgs(t, nil, false, "--brokers", c.ListenAddrs()[0], "--count", "10", "--customers", "40",
		"--seed", "6", "--schemas", schemas, "--no-reference", "--quiet")
	if r.code != exitOK || r.stdout != "" || r.stderr != "" {
		t.Fatalf("second quiet run: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if got := endOffsets(t, adm, "orders")["orders"]; got != 310 {
		t.Errorf("orders holds %d records after the second run, want 310", got)
	}
}

func TestBrokersFromEnv(t *testing.T) {
	c, adm := newCluster(t)
	env := map[string]string{brokersEnv: " " + c.ListenAddrs()[0] + " ,"}
	r := runArgs(t, env, true, "--count", "5", "--customers", "5", "--schemas", schemas,
		"--topic-orders", "env-orders", "--no-payments", "--no-shipments")
	if r.code != exitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if got := endOffsets(t, adm, "env-orders")["env-orders"]; got != 5 {
		t.Errorf("env-orders holds %d records, want 5", got)
	}
	// On a terminal the bar is drawn in place and its line ended.
	if !strings.Contains(r.stderr, "\r[") || !strings.Contains(r.stderr, "100%") || !strings.HasSuffix(r.stderr, "\n") {
		t.Errorf("no progress bar on a terminal: %q", r.stderr)
	}

	// The flag wins over the environment.
	r = runArgs(t, map[string]string{brokersEnv: "127.0.0.1:1"}, false, "--brokers", c.ListenAddrs()[0],
		"--count", "1", "--schemas", schemas, "--quiet", "--no-reference", "--topic-orders", "env-orders")
	if r.code != exitOK {
		t.Errorf("--brokers did not override %s: exit %d: %s", brokersEnv, r.code, r.stderr)
	}
}

func TestUnreachableBroker(t *testing.T) {
	// A port nobody listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	start := time.Now()
	r := runArgs(t, nil, false, "--brokers", addr, "--timeout", "1s", "--schemas", schemas)
	if r.code != exitFailure {
		t.Fatalf("exit %d, want %d; stderr: %s", r.code, exitFailure, r.stderr)
	}
	if !strings.Contains(r.stderr, "cannot reach Kafka at "+addr) {
		t.Errorf("stderr does not explain: %s", r.stderr)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v to give up with --timeout 1s", d)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--count", "-1"}, "--count"},
		{[]string{"--rate", "-5"}, "--rate"},
		{[]string{"--partitions", "0"}, "--partitions"},
		{[]string{"--customers", "0"}, "--customers"},
		{[]string{"--unknown-customer-ratio", "2"}, "--unknown-customer-ratio"},
		{[]string{"--start", "yesterday"}, "--start"},
		{[]string{"--currencies", "EUR,XYZ"}, `"XYZ"`},
		{[]string{"--topic-orders", ""}, "--topic-orders"},
		{[]string{"--no-such-flag"}, "no-such-flag"},
		{[]string{"extra"}, `"extra"`},
		{[]string{"--schemas", "/nonexistent"}, "--schemas"},
	} {
		r := runArgs(t, nil, false, append([]string{"--schemas", schemas, "--brokers", "127.0.0.1:1"}, c.args...)...)
		if r.code != exitUsage || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d mentioning %s", c.args, r.code, r.stderr, exitUsage, c.want)
		}
	}
}

func TestInterrupted(t *testing.T) {
	c, _ := newCluster(t)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(500*time.Millisecond, cancel)
	var out, errb bytes.Buffer
	code := run(ctx, []string{"--brokers", c.ListenAddrs()[0], "--count", "100000", "--rate", "200", "--schemas", schemas},
		func(string) string { return "" }, &out, &errb, false)
	if code != exitInterrupted || !strings.Contains(errb.String(), "interrupted") {
		t.Fatalf("exit %d, stderr %q; want %d and 'interrupted'", code, errb.String(), exitInterrupted)
	}
	if !strings.Contains(errb.String(), "total") {
		t.Errorf("no partial summary after interrupt: %q", errb.String())
	}
}

func TestProgressLines(t *testing.T) {
	var b bytes.Buffer
	u := newProgressUI(&b, false)
	u.lastLine = time.Now().Add(-time.Hour) // due now
	u.update(gen.Progress{Phase: gen.PhaseEvents, PlannedOrders: 100, OrdersDone: 25, Acked: gen.Counts{Orders: 25, Payments: 30}, Elapsed: time.Second})
	u.update(gen.Progress{Phase: gen.PhaseEvents, PlannedOrders: 100, OrdersDone: 30, Elapsed: 2 * time.Second})
	u.finish()
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("want one line within %v, got %q", lineInterval, b.String())
	}
	for _, want := range []string{"25%", "25/100 orders", "55 records", "ETA"} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("progress line %q lacks %q", lines[0], want)
		}
	}
	if strings.Contains(b.String(), "\r") || strings.Contains(b.String(), "\x1b") {
		t.Errorf("terminal control characters outside a terminal: %q", b.String())
	}
}
