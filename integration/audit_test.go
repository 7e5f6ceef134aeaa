//go:build integration

package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-etl/sluice/internal/itest"
	"github.com/sluice-etl/sluice/pkg/audit"
	"github.com/sluice-etl/sluice/pkg/dlq"
	"github.com/sluice-etl/sluice/pkg/record"
)

// runAudit runs `sluice audit -c cfgPath --json args...` as a user would
// and returns its exit code, its report (nil when stdout is not one) and
// its stderr.
func runAudit(t *testing.T, cfgPath string, args ...string) (int, *audit.Report, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, sluiceBinary(t), append([]string{"audit", "-c", cfgPath, "--json"}, args...)...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("sluice audit: %v", err)
	}
	var rep *audit.Report
	if out.Len() > 0 {
		rep = &audit.Report{}
		if err := json.Unmarshal(out.Bytes(), rep); err != nil {
			t.Fatalf("sluice audit --json printed no JSON document: %v\n%s", err, out.String())
		}
	}
	return code, rep, errOut.String()
}

func partitionOf(t *testing.T, rep *audit.Report, p int32) *audit.PartitionReport {
	t.Helper()
	for _, pr := range rep.Partitions {
		if pr.Partition == p {
			return pr
		}
	}
	t.Fatalf("no partition %d in the report", p)
	return nil
}

func ranges(s audit.Ranges) []audit.Range {
	out := make([]audit.Range, len(s.List))
	for i, r := range s.List {
		out[i] = audit.Range{From: r.From, To: r.To} // Extra compared apart
	}
	return out
}

// TestAuditAfterPipelineLoad: a real load (good orders and undecodable
// records through Sluice) audits clean, every offset accounted for as a
// row or a dead letter; then the table is corrupted on purpose — three
// offsets duplicated, five deleted — and a dead letter is produced for an
// offset that has a row: the audit exits 1 and reports exactly those
// ranges, and nothing else.
func TestAuditAfterPipelineLoad(t *testing.T) {
	w := newWorld(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	topic, dlqTopic, group := w.name("audit_orders"), w.name("dlq"), w.name("audit_g")
	w.createTopic(topic, 2)
	w.createTopic(dlqTopic, 2)

	const good = 400
	w.produceOrders(topic, 11, good)
	mcl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer mcl.Close()
	for i := range 4 { // undecodable (an over-long varint first): dead letters
		r := &kgo.Record{Topic: topic, Partition: int32(i % 2), Value: bytes.Repeat([]byte{0xff}, 16)}
		if err := mcl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	end := w.endOffsets(topic)
	if end[0] < 40 || end[1] < 10 {
		t.Fatalf("partitions too small for the test: %v", end)
	}

	cfg := w.sluiceConfig(group, ordersPipeline(topic))
	cfgPath := filepath.Join(cfg.Dir, "sluice.yaml")
	s := w.startSluice(cfg)
	waitUntil(t, "committed offsets at the log end", 2*time.Minute, func() bool {
		return itest.EqualOffsets(w.committed(group, topic), end)
	})
	s.stop(t)

	code, rep, stderr := runAudit(t, cfgPath)
	if code != 0 || rep == nil || !rep.Clean {
		t.Fatalf("audit of a clean load: exit %d, report %+v\nstderr: %s", code, rep, stderr)
	}
	letters := int64(0)
	for _, p := range rep.Partitions {
		if int64(p.Rows)+p.DeadLetters != end[p.Partition] || p.Committed != end[p.Partition] || p.Lag != 0 || p.HighWatermark != end[p.Partition] {
			t.Fatalf("partition %d: %d rows + %d dead letters, committed %d, lag %d; want %d offsets",
				p.Partition, p.Rows, p.DeadLetters, p.Committed, p.Lag, end[p.Partition])
		}
		letters += p.DeadLetters
	}
	if letters != 4 || len(rep.Partitions) != 2 {
		t.Fatalf("%d dead letters over %d partitions, want 4 over 2", letters, len(rep.Partitions))
	}

	// Corrupt partition 0: offsets 5..7 stored twice, 20..24 deleted.
	// (ALTER ... DELETE is an asynchronous mutation on 18.16: wait.)
	if err := w.ch.Exec(ctx, fmt.Sprintf("INSERT INTO %s.orders SELECT * FROM %s.orders WHERE _partition = 0 AND _offset >= 5 AND _offset <= 7", w.db, w.db)); err != nil {
		t.Fatal(err)
	}
	if err := w.ch.Exec(ctx, fmt.Sprintf("ALTER TABLE %s.orders DELETE WHERE _partition = 0 AND _offset >= 20 AND _offset <= 24", w.db)); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the delete mutation", time.Minute, func() bool {
		return w.count(fmt.Sprintf("SELECT count() FROM %s.orders WHERE _partition = 0 AND _offset >= 20 AND _offset <= 24", w.db)) == 0
	})
	// Partition 1, offset 3 has a row; give it a dead letter too.
	pcl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(dlq.Partitioner(dlqTopic)))
	if err != nil {
		t.Fatal(err)
	}
	defer pcl.Close()
	both := dlq.Letter(dlqTopic, "orders", &record.Item{
		Rec:    &kgo.Record{Topic: topic, Partition: 1, Offset: 3, Value: []byte("x")},
		Failed: &record.Failure{Stage: record.StageLoad, Reason: "audit test"},
	})
	if err := pcl.ProduceSync(ctx, both).FirstErr(); err != nil {
		t.Fatal(err)
	}

	code, rep, stderr = runAudit(t, cfgPath)
	if code != 1 || rep == nil || rep.Clean || rep.Defective != 2 {
		t.Fatalf("audit of a corrupted table: exit %d, report %+v\nstderr: %s", code, rep, stderr)
	}
	if !strings.Contains(stderr, "2 of 2 partitions defective") {
		t.Errorf("stderr %q does not say how many partitions are defective", stderr)
	}
	p0, p1 := partitionOf(t, rep, 0), partitionOf(t, rep, 1)
	if want := []string{audit.DefectDuplicates, audit.DefectGaps}; !reflect.DeepEqual(p0.Defects, want) {
		t.Fatalf("partition 0 defects %v, want %v", p0.Defects, want)
	}
	if got, want := ranges(p0.Duplicates), []audit.Range{{From: 5, To: 7}}; !reflect.DeepEqual(got, want) || p0.DuplicateRows != 3 || p0.Duplicates.Extra != 3 {
		t.Fatalf("partition 0 duplicates %v (%d extra rows), want %v (3)", got, p0.DuplicateRows, want)
	}
	if got, want := ranges(p0.Gaps), []audit.Range{{From: 20, To: 24}}; !reflect.DeepEqual(got, want) || p0.MissingOffsets != 5 {
		t.Fatalf("partition 0 gaps %v (%d missing), want %v (5)", got, p0.MissingOffsets, want)
	}
	if p0.BothOffsets != 0 || !p0.Undrilled.Empty() {
		t.Fatalf("partition 0: both %d, undrilled %v", p0.BothOffsets, p0.Undrilled.String())
	}
	if want := []string{audit.DefectBoth}; !reflect.DeepEqual(p1.Defects, want) {
		t.Fatalf("partition 1 defects %v, want %v", p1.Defects, want)
	}
	if got, want := ranges(p1.Both), []audit.Range{{From: 3, To: 3}}; !reflect.DeepEqual(got, want) || p1.BothOffsets != 1 {
		t.Fatalf("partition 1 both %v (%d), want %v", got, p1.BothOffsets, want)
	}

	// A replayed letter is accepted with --replayed-ok; the table's
	// defects stay.
	code, rep, _ = runAudit(t, cfgPath, "--replayed-ok")
	if p1 := partitionOf(t, rep, 1); code != 1 || !p1.Clean || !reflect.DeepEqual(ranges(p1.Replayed), []audit.Range{{From: 3, To: 3}}) || partitionOf(t, rep, 0).Clean {
		t.Fatalf("--replayed-ok: exit %d, partition 1 %+v", code, p1)
	}

	// The text report names the same ranges.
	out, _ := exec.CommandContext(ctx, sluiceBinary(t), "audit", "-c", cfgPath).Output()
	t.Logf("sluice audit:\n%s", out)
	for _, want := range []string{
		fmt.Sprintf("%s[0] duplicates: 3 extra rows at 5-7", topic),
		fmt.Sprintf("%s[0] gaps (neither stored nor dead-lettered): 5 offsets at 20-24", topic),
		fmt.Sprintf("%s[1] both stored and dead-lettered: 1 offset at 3", topic),
		"2 defective",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("text report lacks %q:\n%s", want, out)
		}
	}
}

// TestAuditRetentionPendingAndConfig: a table filled by hand beside a
// topic whose log start was moved by DeleteRecords and whose group offsets
// were committed by hand. Partition 0: rows below the log start are not
// checked, the offsets after the last of them up to the log start are an
// accepted gap, rows above the committed offset are pending — clean.
// Partition 1: the committed offset is below the log start (out of range)
// and a row lies above the log end (beyond end) — defects. A missing
// table or topic exits 2 naming the pipeline's key.
func TestAuditRetentionPendingAndConfig(t *testing.T) {
	w := newWorld(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	topic, group := w.name("audit_src"), w.name("audit_g2")
	w.createTopic(topic, 2)
	w.createTopic(w.name("dlq"), 1)
	mcl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer mcl.Close()
	var rs []*kgo.Record
	for p := range int32(2) {
		for range 100 {
			rs = append(rs, &kgo.Record{Topic: topic, Partition: p, Value: []byte("v")})
		}
	}
	if err := mcl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	var del kadm.Offsets
	del.Add(kadm.Offset{Topic: topic, Partition: 0, At: 40})
	del.Add(kadm.Offset{Topic: topic, Partition: 1, At: 30})
	if r, err := w.adm.DeleteRecords(ctx, del); err != nil || r.Error() != nil {
		t.Fatalf("delete records: %v %v", err, r.Error())
	}
	var commit kadm.Offsets
	commit.Add(kadm.Offset{Topic: topic, Partition: 0, At: 90})
	commit.Add(kadm.Offset{Topic: topic, Partition: 1, At: 10})
	if r, err := w.adm.CommitOffsets(ctx, group, commit); err != nil || r.Error() != nil {
		t.Fatalf("commit: %v %v", err, r.Error())
	}

	if err := w.ch.Exec(ctx, fmt.Sprintf(`CREATE TABLE %s.audit_src (_topic String, _partition UInt32, _offset UInt64, _ingested_at DateTime)
		ENGINE = MergeTree ORDER BY (_topic, _partition, _offset)`, w.db)); err != nil {
		t.Fatal(err)
	}
	insert := func(p, from, to int) {
		t.Helper()
		q := fmt.Sprintf("INSERT INTO %s.audit_src (_topic, _partition, _offset, _ingested_at) SELECT ?, %d, number, now() FROM system.numbers WHERE number >= %d LIMIT %d", w.db, p, from, to-from+1)
		if err := w.ch.Exec(ctx, q, topic); err != nil {
			t.Fatal(err)
		}
	}
	insert(0, 0, 19)    // loaded, then expired from Kafka; 20..39 never loaded
	insert(0, 40, 94)   // 40..89 checked, 90..94 pending
	insert(1, 0, 9)     // below the committed offset 10
	insert(1, 150, 150) // above the log end 100

	schema := filepath.Join(repoRoot(), "schemas", "avro", "order.avsc")
	pipeline := func(table, topic string) string {
		return fmt.Sprintf("  - name: src\n    topic: %s\n    format: avro\n    schema: %s\n    table: %s\n", topic, schema, table)
	}
	cfg := w.sluiceConfig(group, pipeline("audit_src", topic))
	code, rep, stderr := runAudit(t, filepath.Join(cfg.Dir, "sluice.yaml"))
	if code != 1 || rep == nil || rep.Defective != 1 {
		t.Fatalf("exit %d, report %+v\nstderr: %s", code, rep, stderr)
	}
	p0, p1 := partitionOf(t, rep, 0), partitionOf(t, rep, 1)
	if !p0.Clean || p0.Rows != 50 || *p0.Checked != (audit.Range{From: 40, To: 89}) || p0.Lag != 10 {
		t.Fatalf("partition 0: %+v", p0)
	}
	if !reflect.DeepEqual(p0.AcceptedGaps, []audit.Range{{From: 20, To: 39}}) {
		t.Fatalf("partition 0 accepted gaps %v, want 20-39", p0.AcceptedGaps)
	}
	if p0.Pending.Rows != 5 || *p0.Pending.Range != (audit.Range{From: 90, To: 94}) {
		t.Fatalf("partition 0 pending %+v", p0.Pending)
	}
	if want := []string{audit.DefectOutOfRange, audit.DefectBeyondEnd}; !reflect.DeepEqual(p1.Defects, want) {
		t.Fatalf("partition 1 defects %v, want %v", p1.Defects, want)
	}
	if *p1.OutOfRange != (audit.Range{From: 10, To: 29}) || *p1.BeyondEnd != (audit.Range{From: 100, To: 150}) {
		t.Fatalf("partition 1 out of range %v, beyond end %v", p1.OutOfRange, p1.BeyondEnd)
	}

	// Exit 2, naming the key, for a table or a topic that does not exist.
	for _, c := range []struct{ pipelines, key string }{
		{pipeline("no_such_table", topic), "pipelines[0].table"},
		{pipeline("audit_src", w.name("no_such_topic")), "pipelines[0].topic"},
	} {
		cfg := w.sluiceConfig(group, c.pipelines)
		code, rep, stderr := runAudit(t, filepath.Join(cfg.Dir, "sluice.yaml"))
		if code != 2 || rep != nil || !strings.Contains(stderr, c.key) {
			t.Fatalf("%s: exit %d, stderr %q; want exit 2 naming it", c.key, code, stderr)
		}
	}
}
