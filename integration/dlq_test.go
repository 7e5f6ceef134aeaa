//go:build integration

package integration

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-etl/sluice/internal/itest"
	"github.com/sluice-etl/sluice/pkg/dlq"
	"github.com/sluice-etl/sluice/pkg/gen"
	"github.com/sluice-etl/sluice/pkg/record"
	"github.com/sluice-etl/sluice/pkg/service"
	"github.com/sluice-etl/sluice/pkg/sink"
)

// TestDLQInspectAndReplay: good and undecodable orders go through Sluice;
// the dead letters are read back with their source coordinates; a dead
// letter whose cause is "fixed" (its value a valid order) is replayed into
// the table at its original source offset, exactly once; letters the group
// has not passed, and letters still failing, are left alone.
func TestDLQInspectAndReplay(t *testing.T) {
	w := newWorld(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	topic, dlqTopic, group := w.name("orders"), w.name("dlq"), w.name("g")
	w.createTopic(topic, 2)
	w.createTopic(dlqTopic, 2)

	const good = 200
	w.produceOrders(topic, 7, good)
	// Undecodable records: an over-long varint first, so no byte sequence
	// after it can make them a valid order.
	mcl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer mcl.Close()
	rng := rand.New(rand.NewPCG(7, 7))
	bad := map[int32][]int64{} // source partition -> offsets
	for i := range 5 {
		v := append(bytes.Repeat([]byte{0xff}, 11), make([]byte, 20+rng.IntN(40))...)
		for j := 11; j < len(v); j++ {
			v[j] = byte(rng.Uint32())
		}
		r := &kgo.Record{Topic: topic, Partition: int32(i % 2), Key: []byte(fmt.Sprintf("bad-%d", i)), Value: v}
		res := mcl.ProduceSync(ctx, r)
		if err := res.FirstErr(); err != nil {
			t.Fatal(err)
		}
		bad[res[0].Record.Partition] = append(bad[res[0].Record.Partition], res[0].Record.Offset)
	}
	end := w.endOffsets(topic)

	cfg := w.sluiceConfig(group, ordersPipeline(topic))
	s := w.startSluice(cfg)
	waitUntil(t, "committed offsets at the log end", 2*time.Minute, func() bool {
		return itest.EqualOffsets(w.committed(group, topic), end)
	})
	s.stop(t)
	if n := w.count(fmt.Sprintf("SELECT count() FROM %s.orders", w.db)); n != good {
		t.Fatalf("orders holds %d rows, want %d", n, good)
	}

	// Inspect: the library function sees every undecodable record with
	// its source coordinates.
	rcl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer rcl.Close()
	letters, err := dlq.Read(ctx, rcl, dlqTopic, dlq.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[int32][]int64{}
	for _, l := range letters {
		if l.Pipeline != "orders" || l.Stage != record.StageDecode || l.SourceTopic != topic || l.Invalid != "" || l.Reason == "" {
			t.Fatalf("unexpected dead letter %+v", l)
		}
		got[l.SourcePartition] = append(got[l.SourcePartition], l.SourceOffset)
	}
	for p := range bad {
		slices.Sort(got[p])
		if !slices.Equal(got[p], bad[p]) {
			t.Fatalf("partition %d: dead letters for offsets %v, want %v", p, got[p], bad[p])
		}
	}
	if len(letters) != 5 {
		t.Fatalf("%d dead letters, want 5", len(letters))
	}
	if l, err := dlq.Read(ctx, rcl, dlqTopic, dlq.Filter{Stage: record.StageTransform}); err != nil || len(l) != 0 {
		t.Fatalf("transform stage: %d letters, %v", len(l), err)
	}
	part := int32(0)
	if l, err := dlq.Read(ctx, rcl, dlqTopic, dlq.Filter{SourcePartition: &part}); err != nil || len(l) != len(bad[0]) {
		t.Fatalf("source partition 0: %d letters, %v; want %d", len(l), err, len(bad[0]))
	}

	// The CLI exits 0 and summarises.
	bin := sluiceBinary(t)
	cfgPath := filepath.Join(cfg.Dir, "sluice.yaml")
	out, err := exec.CommandContext(ctx, bin, "dlq", "inspect", "-c", cfgPath).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "5 dead letters") {
		t.Fatalf("sluice dlq inspect: %v\n%s", err, out)
	}

	// "The fix": a dead letter for the first undecodable record whose
	// value is now a valid order (as if it had failed for a reason since
	// fixed), and one for an offset the group has not passed yet.
	g, err := gen.New(gen.Options{Seed: 99, SchemaDir: filepath.Join(repoRoot(), "schemas", "avro")})
	if err != nil {
		t.Fatal(err)
	}
	fixed := g.Order(0)
	k, v, err := g.Codecs().EncodeOrder(fixed)
	if err != nil {
		t.Fatal(err)
	}
	fixedOffset := bad[0][0]
	const fixedReason = "currency: no FX rate for XTS (fixed since)"
	craft := func(offset int64) *kgo.Record {
		it := &record.Item{
			Rec:    &kgo.Record{Topic: topic, Partition: 0, Offset: offset, Key: k, Value: v},
			Failed: &record.Failure{Stage: record.StageTransform, Reason: fixedReason},
		}
		return dlq.Letter(dlqTopic, "orders", it)
	}
	pcl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(dlq.Partitioner(dlqTopic)))
	if err != nil {
		t.Fatal(err)
	}
	defer pcl.Close()
	if err := pcl.ProduceSync(ctx, craft(fixedOffset), craft(end[0])).FirstErr(); err != nil {
		t.Fatal(err)
	}

	conn, err := sink.Open(ctx, cfg.ClickHouse)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	nw, err := service.NativeWriterFor(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer nw.Close()
	pipes, err := service.BuildPipelines(ctx, cfg, conn, nil, nw)
	if err != nil {
		t.Fatal(err)
	}
	op := pipes[0]
	targets := []dlq.Target{dlq.NewTarget(op.Name, op.Topic, op.Decoder, op.Transforms, op.Sink.NewWriter, dlq.TableIndex(conn, w.db, "orders"))}
	replay := func(f dlq.Filter, dryRun bool) *dlq.Report {
		t.Helper()
		letters, err := dlq.Read(ctx, rcl, dlqTopic, f)
		if err != nil {
			t.Fatal(err)
		}
		committed, err := dlq.CommittedOffsets(ctx, w.adm, group)
		if err != nil {
			t.Fatal(err)
		}
		rep, err := dlq.Replay(ctx, letters, dlq.ReplayOptions{Targets: targets, Committed: committed, DryRun: dryRun})
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		_ = dlq.WriteReport(&buf, rep)
		t.Logf("replay %+v dry-run=%v:\n%s", f, dryRun, buf.String())
		return rep
	}
	rows := func() uint64 { return w.count(fmt.Sprintf("SELECT count() FROM %s.orders", w.db)) }
	fixedFilter := dlq.Filter{Reason: "fixed since"}

	// Dry run: everything but the insert.
	if rep := replay(fixedFilter, true); rep.Selected != 2 || rep.Replayed != 1 || rep.NotPassed != 1 || rows() != good {
		t.Fatalf("dry run: %+v, %d rows", rep, rows())
	}
	// The CLI's dry run agrees and inserts nothing either.
	out, err = exec.CommandContext(ctx, bin, "dlq", "replay", "-c", cfgPath, "--reason", "fixed since", "--dry-run").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "not yet passed by the consumer group") || !strings.Contains(string(out), "would replay") || rows() != good {
		t.Fatalf("sluice dlq replay --dry-run: %v\n%s", err, out)
	}

	rep := replay(fixedFilter, false)
	if rep.Replayed != 1 || rep.NotPassed != 1 {
		t.Fatalf("replay: %+v", rep)
	}
	if n := rows(); n != good+1 {
		t.Fatalf("orders holds %d rows after replay, want %d", n, good+1)
	}
	var id, tp string
	var p uint32
	if err := conn.QueryRow(ctx, fmt.Sprintf("SELECT order_id, _topic, toUInt32(_partition) FROM %s.orders WHERE _partition = 0 AND _offset = ?", w.db), uint64(fixedOffset)).Scan(&id, &tp, &p); err != nil {
		t.Fatalf("replayed row at offset %d: %v", fixedOffset, err)
	}
	if id != fixed.OrderID || tp != topic || p != 0 {
		t.Fatalf("row at offset %d: order %s topic %s partition %d; want %s %s 0", fixedOffset, id, tp, p, fixed.OrderID, topic)
	}
	if n := w.count(fmt.Sprintf("SELECT count() FROM %s.orders WHERE _partition = 0 AND _offset >= ?", w.db), uint64(end[0])); n != 0 {
		t.Fatalf("%d rows at or above the committed offset %d", n, end[0])
	}

	// Again: nothing more.
	if rep := replay(fixedFilter, false); rep.Replayed != 0 || rep.AlreadyLoaded != 1 || rows() != good+1 {
		t.Fatalf("second replay: %+v, %d rows", rep, rows())
	}
	// Everything: the undecodable ones still fail and stay in the topic;
	// the original letter of the fixed offset gives way to the newer one.
	rep = replay(dlq.Filter{}, false)
	if rep.Selected != 7 || rep.Replayed != 0 || rep.AlreadyLoaded != 1 || rep.Duplicates != 1 || rep.Failing != 4 || rep.NotPassed != 1 {
		t.Fatalf("replay of all: %+v", rep)
	}
	for _, r := range rep.Results {
		if r.Outcome == dlq.StillFailing && r.Stage != string(record.StageDecode) {
			t.Fatalf("still failing at %s: %s", r.Stage, r.Reason)
		}
	}
	if l, err := dlq.Read(ctx, rcl, dlqTopic, dlq.Filter{}); err != nil || len(l) != 7 {
		t.Fatalf("dead-letter topic holds %d letters after replay, want 7 (%v)", len(l), err)
	}
	if dup := w.count(fmt.Sprintf("SELECT toUInt64(count() - uniqExact(_topic, _partition, _offset)) FROM %s.orders", w.db)); dup != 0 {
		t.Fatalf("%d duplicate source offsets", dup)
	}

	// Sluice restarted after the replay resumes at the group's offsets
	// and loads nothing more.
	s = w.startSluice(cfg)
	time.Sleep(3 * time.Second)
	s.stop(t)
	if n := rows(); n != good+1 {
		t.Fatalf("orders holds %d rows after a restart, want %d", n, good+1)
	}
	if !itest.EqualOffsets(w.committed(group, topic), end) {
		t.Fatalf("committed %v after a restart, want %v", w.committed(group, topic), end)
	}
}
