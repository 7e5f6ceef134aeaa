package dlq

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-etl/sluice/pkg/decode"
	"github.com/sluice-etl/sluice/pkg/record"
)

// The fakes stand in for a pipeline's stages. A value's text decides its
// fate: "undecodable..." fails decode, "untransformable..." fails the
// transform, "unstorable..." fails Prepare, "rejected..." is refused by
// the fake server on Send; anything else loads.

type fakeDecoder struct{}

func (fakeDecoder) Decode(v []byte) (record.Row, error) {
	if bytes.HasPrefix(v, []byte("undecodable")) {
		return nil, errors.New("not an order")
	}
	return record.Row{"v": string(v)}, nil
}

type fakeTransform struct{ err error }

func (t *fakeTransform) Apply(_ context.Context, b *record.Batch) error {
	if t.err != nil {
		return t.err
	}
	for i := range b.Items {
		it := &b.Items[i]
		if it.Failed != nil {
			continue
		}
		if strings.HasPrefix(it.Row["v"].(string), "untransformable") {
			it.Fail(record.StageTransform, "no FX rate")
			continue
		}
		it.Row["t"] = "transformed"
	}
	return nil
}

type coord struct {
	topic     string
	partition int32
	offset    int64
}

// table is a fake target table: the Sink, its writers and its Index.
type table struct {
	mu      sync.Mutex
	rows    map[coord]record.Row
	inserts [][]int64 // offsets of each successful Send, in order
	sendErr error
}

func newTable() *table { return &table{rows: map[coord]record.Row{}} }

func (tb *table) NewWriter() *writer { return &writer{tb: tb} }

func (tb *table) Stored(_ context.Context, topic string, partition int32, offsets []int64) (map[int64]bool, error) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	out := map[int64]bool{}
	for _, o := range offsets {
		if _, ok := tb.rows[coord{topic, partition, o}]; ok {
			out[o] = true
		}
	}
	return out, nil
}

func (tb *table) put(topic string, partition int32, offset int64) {
	tb.rows[coord{topic, partition, offset}] = record.Row{"v": "loaded by the daemon"}
}

func (tb *table) offsets() []int64 {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	var out []int64
	for _, in := range tb.inserts {
		out = append(out, in...)
	}
	return out
}

type writer struct {
	tb       *table
	prepared []*record.Item
}

func (w *writer) Prepare(b *record.Batch) int {
	w.prepared = w.prepared[:0]
	for i := range b.Items {
		it := &b.Items[i]
		if it.Failed != nil {
			continue
		}
		if strings.HasPrefix(it.Row["v"].(string), "unstorable") {
			it.Fail(record.StageLoad, "column total: decimal overflow")
			continue
		}
		w.prepared = append(w.prepared, it)
	}
	return len(w.prepared)
}

func (w *writer) Send(_ context.Context, _ *record.Batch) error {
	w.tb.mu.Lock()
	defer w.tb.mu.Unlock()
	if w.tb.sendErr != nil {
		return w.tb.sendErr
	}
	var offs []int64
	for _, it := range w.prepared {
		if strings.HasPrefix(it.Row["v"].(string), "rejected") {
			return &clickhouse.Exception{Code: 53, Message: "Type mismatch in column v"}
		}
		offs = append(offs, it.Rec.Offset)
	}
	for _, it := range w.prepared {
		w.tb.rows[coord{it.Rec.Topic, it.Rec.Partition, it.Rec.Offset}] = it.Row
	}
	w.tb.inserts = append(w.tb.inserts, offs)
	return nil
}

func target(name, topic string, tb *table, ts ...Transform) Target {
	if len(ts) == 0 {
		ts = []Transform{&fakeTransform{}}
	}
	return NewTarget(name, topic, fakeDecoder{}, ts, tb.NewWriter, tb)
}

// letters builds dead letters as Read would return them, numbering their
// dead-letter offsets in order.
func letters(ss ...src) []DeadLetter {
	out := make([]DeadLetter, len(ss))
	for i, s := range ss {
		r := s.letter(0)
		r.Offset = int64(i)
		out[i] = Parse(r)
	}
	return out
}

func ord(offset int64, value string) src {
	return src{"orders", record.StageTransform, "was failing", "orders", 0, offset, value}
}

func outcomes(rep *Report) map[string]string {
	out := map[string]string{}
	for _, r := range rep.Results {
		s := r.Outcome.String()
		if r.Outcome == StillFailing {
			s = "failing at " + r.Stage
		}
		out[fmt.Sprintf("%s %s dlq@%d", r.Pipeline, r.Letter.Source(), r.Letter.Offset)] = s
	}
	return out
}

func TestReplay(t *testing.T) {
	orders, payments := newTable(), newTable()
	orders.put("orders", 0, 1) // replayed before
	in := letters(
		ord(1, "good1"),
		ord(3, "good3"),
		ord(5, "undecodable"),
		ord(6, "untransformable"),
		ord(7, "unstorable"),
		ord(8, "rejected"),
		ord(9, "good9"),
		ord(10, "good10"), // the group committed 10: not passed yet
		src{"orders", record.StageDecode, "x", "orders", 1, 2, "good-p1"}, // nothing committed on partition 1
		ord(3, "good3"), // dead-lettered twice (re-delivered after a crash)
		src{"", record.StageDecode, "x", "payments", 0, 4, "pay4"},                   // no pipeline header: by topic
		src{"shipments", record.StageDecode, "x", "shipments", 0, 1, "ship1"},        // no such pipeline
		src{"orders", record.StageTransform, "x", "orders", 0, 2, "untransformable"}, // stays failing
	)
	stray := Parse(&kgo.Record{Topic: testTopic, Offset: 99, Value: []byte("stray")})
	in = append(in, stray)

	opts := ReplayOptions{
		Targets:   []Target{target("orders", "orders", orders), target("payments", "payments", payments)},
		Committed: Offsets{"orders": {0: 10}, "payments": {0: 50}},
	}
	rep, err := Replay(context.Background(), in, opts)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"orders orders[0]@1 dlq@0":      "already loaded",
		"orders orders[0]@3 dlq@1":      "duplicate",
		"orders orders[0]@3 dlq@9":      "replayed",
		"orders orders[0]@5 dlq@2":      "failing at decode",
		"orders orders[0]@6 dlq@3":      "failing at transform",
		"orders orders[0]@7 dlq@4":      "failing at load",
		"orders orders[0]@8 dlq@5":      "failing at load",
		"orders orders[0]@9 dlq@6":      "replayed",
		"orders orders[0]@10 dlq@7":     NotPassed.String(),
		"orders orders[1]@2 dlq@8":      NotPassed.String(),
		"payments payments[0]@4 dlq@10": "replayed",
		" shipments[0]@1 dlq@11":        "failing at replay",
		"orders orders[0]@2 dlq@12":     "failing at transform",
		" [-1]@-1 dlq@99":               "failing at replay",
	}
	got := outcomes(rep)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %q, want %q", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d results, want %d: %v", len(got), len(want), got)
	}
	if rep.Selected != 14 || rep.Replayed != 3 || rep.AlreadyLoaded != 1 || rep.Failing != 7 || rep.NotPassed != 2 || rep.Duplicates != 1 {
		t.Errorf("totals %+v", *rep)
	}
	for _, r := range rep.Results {
		if r.Outcome == NotPassed && r.Letter.SourcePartition == 1 && r.Committed != -1 {
			t.Errorf("partition 1 committed %d, want -1 (nothing)", r.Committed)
		}
		if r.Letter.SourceOffset == 8 && !strings.Contains(r.Reason, "rejected the row") {
			t.Errorf("server rejection reported as %q", r.Reason)
		}
	}

	// Stored with their source coordinates, through the transforms, in
	// source-offset order; the rejected row isolated from its neighbours.
	if offs := orders.offsets(); !slices.Equal(offs, []int64{3, 9}) {
		t.Fatalf("orders inserted offsets %v, want [3 9]", offs)
	}
	if row := orders.rows[coord{"orders", 0, 9}]; row["v"] != "good9" || row["t"] != "transformed" {
		t.Fatalf("row of offset 9: %v", row)
	}
	if _, ok := payments.rows[coord{"payments", 0, 4}]; !ok {
		t.Fatal("payments row of offset 4 not stored")
	}

	// Second run: nothing more inserted.
	inserts := len(orders.inserts) + len(payments.inserts)
	rep, err = Replay(context.Background(), in, opts)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Replayed != 0 || rep.AlreadyLoaded != 4 || rep.Failing != 7 || rep.NotPassed != 2 {
		t.Fatalf("second run totals %+v", *rep)
	}
	if n := len(orders.inserts) + len(payments.inserts); n != inserts {
		t.Fatalf("second run sent %d more inserts", n-inserts)
	}

	var buf bytes.Buffer
	if err := WriteReport(&buf, rep); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"orders[0]@10 (dlq 0/7): not yet passed by the consumer group (committed 10); replay later",
		"orders[1]@2 (dlq 0/8): not yet passed by the consumer group (nothing committed); replay later",
		"orders[0]@5 (dlq 0/2): still failing at decode: not an order",
		"dlq 0/99: still failing at replay: cannot replay",
		"already loaded",
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, buf.String())
		}
	}
}

func TestReplayDryRunInsertsNothing(t *testing.T) {
	tb := newTable()
	in := letters(ord(1, "good1"), ord(2, "undecodable"), ord(3, "unstorable"), ord(4, "good4"), ord(20, "good20"))
	rep, err := Replay(context.Background(), in, ReplayOptions{
		Targets:   []Target{target("orders", "orders", tb)},
		Committed: Offsets{"orders": {0: 10}},
		DryRun:    true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(tb.inserts) != 0 || len(tb.rows) != 0 {
		t.Fatalf("dry run inserted %v", tb.inserts)
	}
	if !rep.DryRun || rep.Replayed != 2 || rep.Failing != 2 || rep.NotPassed != 1 {
		t.Fatalf("totals %+v", *rep)
	}
	var buf bytes.Buffer
	_ = WriteReport(&buf, rep)
	if !strings.Contains(buf.String(), "dry run") || !strings.Contains(buf.String(), "would replay") {
		t.Fatalf("report does not say dry run:\n%s", buf.String())
	}
}

func TestReplayChunksInSourceOrder(t *testing.T) {
	tb := newTable()
	var ss []src
	for o := range int64(25) {
		ss = append(ss, ord(o, fmt.Sprintf("good%d", o)))
	}
	rand.Shuffle(len(ss), func(i, j int) { ss[i], ss[j] = ss[j], ss[i] })
	rep, err := Replay(context.Background(), letters(ss...), ReplayOptions{
		Targets:   []Target{target("orders", "orders", tb)},
		Committed: Offsets{"orders": {0: 100}},
		ChunkRows: 10,
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Replayed != 25 {
		t.Fatalf("replayed %d, want 25", rep.Replayed)
	}
	var sizes []int
	for _, in := range tb.inserts {
		sizes = append(sizes, len(in))
	}
	if !slices.Equal(sizes, []int{10, 10, 5}) {
		t.Fatalf("insert sizes %v, want [10 10 5]", sizes)
	}
	if offs := tb.offsets(); !slices.IsSorted(offs) || len(offs) != 25 {
		t.Fatalf("inserted offsets %v: want 0..24 in order", offs)
	}
}

func TestReplayStopsOnInfrastructureErrors(t *testing.T) {
	tb := newTable()
	tb.sendErr = errors.New("dial tcp 127.0.0.1:9000: connection refused")
	in := letters(ord(1, "good1"), ord(2, "good2"))
	opts := ReplayOptions{Targets: []Target{target("orders", "orders", tb)}, Committed: Offsets{"orders": {0: 10}}}
	rep, err := Replay(context.Background(), in, opts)
	if err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("error %v, want the send error", err)
	}
	if rep == nil || rep.Replayed != 0 {
		t.Fatalf("report %+v", rep)
	}
	// Fixed: the same replay loads them.
	tb.sendErr = nil
	if rep, err = Replay(context.Background(), in, opts); err != nil || rep.Replayed != 2 {
		t.Fatalf("after the fix: %+v, %v", rep, err)
	}

	// A transform failing as a whole (not a row) stops the replay too.
	broken := errors.New("customer lookup unreachable")
	opts.Targets = []Target{target("orders", "orders", newTable(), &fakeTransform{err: broken})}
	if _, err := Replay(context.Background(), in, opts); !errors.Is(err, broken) {
		t.Fatalf("error %v, want the transform's", err)
	}
}

// TestReplayFromTopic goes the whole way on kfake: the Writer dead-letters
// a batch, the group commits, Read selects, CommittedOffsets and Replay
// load only what the group has passed.
func TestReplayFromTopic(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, testTopic), kfake.SeedTopics(2, "orders"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	adm := kadm.NewClient(cl)

	// Nothing committed yet: no group at all.
	if off, err := CommittedOffsets(ctx, adm, "sluice"); err != nil || len(off) != 0 {
		t.Fatalf("offsets of a missing group: %v, %v", off, err)
	}

	b := &record.Batch{Pipeline: "orders", Topic: "orders", Partition: 0}
	for o, v := range []string{"good0", "undecodable", "good2", "untransformable", "good4", "good5"} {
		it := record.Item{Rec: &kgo.Record{Topic: "orders", Partition: 0, Offset: int64(o), Key: []byte("k"), Value: []byte(v)}}
		it.Fail(record.StageTransform, "no FX rate for XTS")
		b.Items = append(b.Items, it)
	}
	if err := New(cl, testTopic, c.ListenAddrs()).Send(ctx, b, Position(0, 0), nil, func(*record.Item, int64, bool) {}); err != nil {
		t.Fatal(err)
	}
	var commit kadm.Offsets
	commit.AddOffset("orders", 0, 5, -1) // offset 5 not passed yet
	if resp, err := adm.CommitOffsets(ctx, "sluice", commit); err != nil || resp.Error() != nil {
		t.Fatalf("commit: %v %v", err, resp.Error())
	}
	committed, err := CommittedOffsets(ctx, adm, "sluice")
	if err != nil || committed["orders"][0] != 5 {
		t.Fatalf("committed %v, %v", committed, err)
	}

	letters, err := Read(ctx, cl, testTopic, Filter{Pipeline: "orders", Stage: record.StageTransform})
	if err != nil || len(letters) != 6 {
		t.Fatalf("read %d letters, %v", len(letters), err)
	}
	tb := newTable()
	opts := ReplayOptions{Targets: []Target{target("orders", "orders", tb)}, Committed: committed}
	rep, err := Replay(ctx, letters, opts)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Replayed != 3 || rep.Failing != 2 || rep.NotPassed != 1 {
		t.Fatalf("totals %+v", *rep)
	}
	if offs := tb.offsets(); !slices.Equal(offs, []int64{0, 2, 4}) {
		t.Fatalf("inserted %v, want [0 2 4]", offs)
	}
	// Failing records are not dead-lettered again.
	if again, err := Read(ctx, cl, testTopic, Filter{}); err != nil || len(again) != 6 {
		t.Fatalf("dead-letter topic holds %d letters after replay, want 6 (%v)", len(again), err)
	}
	if rep, err := Replay(ctx, letters, opts); err != nil || rep.Replayed != 0 || rep.AlreadyLoaded != 3 {
		t.Fatalf("second replay: %+v, %v", rep, err)
	}
}

// registryDown fails every decode as the Confluent decoder does while the
// schema registry is unreachable, until up is set.
type registryDown struct{ calls, upAfter int }

func (d *registryDown) Decode(v []byte) (record.Row, error) {
	d.calls++
	if d.calls <= d.upAfter {
		return nil, fmt.Errorf("schema 7: %w", decode.ErrUnavailable)
	}
	return record.Row{"v": string(v)}, nil
}

// An unreachable registry is an outage, not a verdict on the records: the
// replay retries a little, then stops with an error, and reports no letter
// as still failing. Within its retries it recovers.
func TestReplayDoesNotCallAnOutageStillFailing(t *testing.T) {
	in := letters(ord(1, "good1"), ord(2, "good2"))
	tb := newTable()
	tg := target("orders", "orders", tb)
	tg.Decoder = &registryDown{upAfter: 1 << 30}
	rep, err := Replay(context.Background(), in, ReplayOptions{Targets: []Target{tg}, Committed: Offsets{"orders": {0: 10}}})
	if !errors.Is(err, decode.ErrUnavailable) {
		t.Fatalf("error %v, want one wrapping decode.ErrUnavailable", err)
	}
	if rep == nil || rep.Failing != 0 || rep.Replayed != 0 || len(tb.rows) != 0 {
		t.Fatalf("report %+v, rows %d: want nothing failing, nothing replayed", rep, len(tb.rows))
	}

	tb = newTable()
	tg = target("orders", "orders", tb)
	tg.Decoder = &registryDown{upAfter: 1} // back at the second attempt
	rep, err = Replay(context.Background(), in, ReplayOptions{Targets: []Target{tg}, Committed: Offsets{"orders": {0: 10}}})
	if err != nil || rep.Replayed != 2 {
		t.Fatalf("after a short outage: %+v, %v; want both replayed", rep, err)
	}
}
