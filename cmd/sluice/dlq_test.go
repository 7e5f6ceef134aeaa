package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-etl/sluice/pkg/dlq"
	"github.com/sluice-etl/sluice/pkg/record"
)

// dlqWorld is a kfake cluster with a dead-letter topic and a config file
// pointing at it (ClickHouse at an address nothing listens on).
func dlqWorld(t *testing.T) (cfgPath string, cl *kgo.Client) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "sluice-dlq"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cl, err = kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	schema, err := filepath.Abs("../../schemas/avro/order.avsc")
	if err != nil {
		t.Fatal(err)
	}
	yaml := fmt.Sprintf(`kafka:
  brokers: [%s]
  dlq_topic: sluice-dlq
clickhouse:
  addr: [127.0.0.1:1]
  dial_timeout: 1s
startup_timeout: 500ms
log:
  level: error
pipelines:
  - name: orders
    topic: orders
    schema: %s
    table: orders
`, strings.Join(c.ListenAddrs(), ", "), schema)
	cfgPath = filepath.Join(t.TempDir(), "sluice.yaml")
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfgPath, cl
}

func runCLI(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = run(args, &o, &e)
	return code, o.String(), e.String()
}

func TestDLQInspectEmpty(t *testing.T) {
	cfg, _ := dlqWorld(t)
	code, out, errOut := runCLI("dlq", "inspect", "-c", cfg)
	if code != exitOK || out != "no dead letters\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, out, _ = runCLI("dlq", "replay", "-c", cfg)
	if code != exitOK || out != "no dead letters\n" {
		t.Fatalf("replay: exit %d, stdout %q", code, out)
	}
}

func TestDLQInspectLetters(t *testing.T) {
	cfg, cl := dlqWorld(t)
	var rs []*kgo.Record
	for i, st := range []record.Stage{record.StageDecode, record.StageTransform, record.StageDecode} {
		it := &record.Item{
			Rec:    &kgo.Record{Topic: "orders", Partition: int32(i), Offset: int64(10 * i), Key: []byte("cust-1"), Value: []byte("value")},
			Failed: &record.Failure{Stage: st, Reason: fmt.Sprintf("reason %d", i)},
		}
		rs = append(rs, dlq.Letter("sluice-dlq", "orders", it))
	}
	if err := cl.ProduceSync(context.Background(), rs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	code, out, errOut := runCLI("dlq", "inspect", "-c", cfg)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"orders[0]@0", "orders[1]@10", "orders[2]@20", "reason 1", "cust-1", "3 dead letters"} {
		if !strings.Contains(out, want) {
			t.Fatalf("output lacks %q:\n%s", want, out)
		}
	}

	code, out, errOut = runCLI("dlq", "inspect", "-c", cfg, "--stage", "decode", "--source-partition", "2", "--json")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 1 {
		t.Fatalf("--json with filters: %d lines, want 1:\n%s", len(lines), out)
	}
	var j struct {
		Source struct{ Partition int32 }
		Value  []byte
	}
	if err := json.Unmarshal([]byte(lines[0]), &j); err != nil || j.Source.Partition != 2 || string(j.Value) != "value" {
		t.Fatalf("json %s: %+v, %v", lines[0], j, err)
	}

	code, out, _ = runCLI("dlq", "inspect", "-c", cfg, "--reason", "nothing like it")
	if code != exitOK || out != "no dead letters\n" {
		t.Fatalf("no match: exit %d, %q", code, out)
	}
	code, out, errOut = runCLI("dlq", "inspect", "-c", cfg, "--reason", "nothing like it", "--json")
	if code != exitOK || out != "" || !strings.Contains(errOut, "no dead letters") {
		t.Fatalf("no match, --json: exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	// Replay needs ClickHouse: unreachable past startup_timeout is a
	// runtime error (exit 1) naming the service and its address.
	code, _, errOut = runCLI("dlq", "replay", "-c", cfg)
	if code != exitError || !strings.Contains(errOut, "ClickHouse at 127.0.0.1:1 (clickhouse.addr) not reachable within startup_timeout 500ms") {
		t.Fatalf("replay without ClickHouse: exit %d, stderr %q", code, errOut)
	}
}

func TestDLQUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"dlq", "inspect", "--stage", "bogus"},
		{"dlq", "inspect", "--limit", "-1"},
		{"dlq", "replay", "--from-offset", "9", "--to-offset", "3"},
		{"dlq", "inspect", "--source-partition", "x"},
		{"dlq", "replay", "--no-such-flag"},
		{"dlq", "inspect", "-c", filepath.Join(t.TempDir(), "missing.yaml")},
	} {
		if code, _, errOut := runCLI(args...); code != exitConfig {
			t.Errorf("%v: exit %d, want %d (stderr %q)", args, code, exitConfig, errOut)
		}
	}
}
