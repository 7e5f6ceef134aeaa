package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/goleak"

	"github.com/sluice-etl/sluice/pkg/batch"
	"github.com/sluice-etl/sluice/pkg/dlq"
	"github.com/sluice-etl/sluice/pkg/record"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// kfake and the franz-go client keep package-level helpers.
		goleak.IgnoreAnyFunction("github.com/twmb/franz-go/pkg/kfake.(*Cluster).run"),
		goleak.IgnoreTopFunction("time.Sleep"),
	)
}

// textDecoder decodes "k=v" values; a value starting with "bad" fails.
type textDecoder struct{}

func (textDecoder) Decode(v []byte) (record.Row, error) {
	s := string(v)
	if strings.HasPrefix(s, "bad") {
		return nil, errors.New("not a k=v value")
	}
	return record.Row{"v": s}, nil
}

// memSink stores rows like a table keyed by (topic, partition, offset) and
// counts every stored row, so duplicates show.
type memSink struct {
	mu    sync.Mutex
	rows  map[string]int // "topic/partition/offset" -> times stored
	total int
	order map[string][]int64 // "topic/partition" -> offsets in load order
	// failSends fails every Send while > 0 (decremented per failure);
	// lostAcks stores the rows and then reports an error.
	failSends int
	lostAcks  int
	failAll   bool
	onSend    func()
	// onSendBatch is called with s.mu held and may release it meanwhile.
	onSendBatch func(b *record.Batch)
	// partialSends stores every other row of a send and reports an
	// error (a crash between the parts of an INSERT that spans several
	// table partitions).
	partialSends int
	// lateSends report a timeout at once and store the rows only after
	// lateDelay, listed as running meanwhile (an INSERT that outlives the
	// client's timeout); kills counts the cancel requests seen.
	lateSends  int
	lateDelay  time.Duration
	running    int
	kills      int
	failStored bool
	// ids holds the topic ID each row was stored with ("" for none).
	ids      map[string]string
	storeIDs string // the topic ID store records
	// storedReads and highestReads count the calls of Stored and Highest.
	storedReads, highestReads int
}

func newMemSink() *memSink {
	return &memSink{rows: map[string]int{}, order: map[string][]int64{}, ids: map[string]string{}}
}

type memWriter struct {
	s    *memSink
	rows []*record.Item
}

func (s *memSink) NewWriter() Writer { return &memWriter{s: s} }

func (s *memSink) Stored(_ context.Context, topic string, partition int32, topicID string, from, to int64) ([]int64, int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.storedReads++
	if s.failStored {
		return nil, 0, errors.New("clickhouse is down")
	}
	var out []int64
	foreign := 0
	k := fmt.Sprintf("%s/%d", topic, partition)
	for _, o := range s.order[k] {
		if o < from || o > to {
			continue
		}
		if id := s.ids[fmt.Sprintf("%s/%d", k, o)]; id != "" && topicID != "" && id != topicID {
			foreign++
			continue
		}
		out = append(out, o)
	}
	slices.Sort(out)
	return out, foreign, nil
}

func (s *memSink) Highest(_ context.Context, topic string, partition int32, topicID string, after int64) (int64, int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.highestReads++
	if s.failStored {
		return 0, 0, errors.New("clickhouse is down")
	}
	highest, foreign := int64(-1), 0
	k := fmt.Sprintf("%s/%d", topic, partition)
	for _, o := range s.order[k] {
		if o <= after {
			continue
		}
		if id := s.ids[fmt.Sprintf("%s/%d", k, o)]; id != "" && topicID != "" && id != topicID {
			foreign++
			continue
		}
		highest = max(highest, o)
	}
	return highest, foreign, nil
}

func (s *memSink) Running(_ context.Context, _ string, _ int32, kill bool) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if kill && s.running > 0 {
		s.kills++
	}
	return s.running, nil
}

// store records the rows of topic's partition as stored; s.mu is held.
func (s *memSink) store(topic string, partition int32, rows []*record.Item) {
	k := fmt.Sprintf("%s/%d", topic, partition)
	for _, it := range rows {
		s.rows[fmt.Sprintf("%s/%d", k, it.Offset())]++
		if s.storeIDs != "" {
			s.ids[fmt.Sprintf("%s/%d", k, it.Offset())] = s.storeIDs
		}
		s.order[k] = append(s.order[k], it.Offset())
		s.total++
	}
}

// everyOther is items 0, 2, 4, …: what a crash between the parts of an
// INSERT leaves stored.
func everyOther(items []*record.Item) []*record.Item {
	var half []*record.Item
	for i, it := range items {
		if i%2 == 0 {
			half = append(half, it)
		}
	}
	return half
}

func (w *memWriter) Prepare(b *record.Batch) int {
	w.rows = w.rows[:0]
	for i := range b.Items {
		if b.Items[i].Pending() {
			w.rows = append(w.rows, &b.Items[i])
		}
	}
	return len(w.rows)
}

func (w *memWriter) Send(_ context.Context, b *record.Batch) error {
	s := w.s
	s.mu.Lock()
	defer s.mu.Unlock()
	s.storeIDs = b.TopicID
	if s.onSend != nil {
		s.onSend()
	}
	if s.onSendBatch != nil {
		s.onSendBatch(b)
	}
	if s.failAll {
		return errors.New("clickhouse is down")
	}
	if s.failSends > 0 {
		s.failSends--
		return errors.New("connection refused")
	}
	if s.partialSends > 0 && len(w.rows) > 1 {
		s.partialSends--
		s.store(b.Topic, b.Partition, everyOther(w.rows))
		return errors.New("read: connection reset by peer")
	}
	if s.lateSends > 0 {
		s.lateSends--
		// Copies: the batch's items are recycled once it is committed.
		rows := make([]*record.Item, len(w.rows))
		for i, it := range w.rows {
			rows[i] = &record.Item{Rec: &kgo.Record{Offset: it.Offset()}}
		}
		s.running++
		time.AfterFunc(s.lateDelay, func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.store(b.Topic, b.Partition, rows)
			s.running--
		})
		return errors.New("read: i/o timeout")
	}
	s.store(b.Topic, b.Partition, w.rows)
	if s.lostAcks > 0 {
		s.lostAcks--
		return errors.New("read: connection reset by peer")
	}
	return nil
}

func (s *memSink) stats() (total, distinct int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total, len(s.rows)
}

func (s *memSink) set(f func(s *memSink)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

type fixture struct {
	t       *testing.T
	c       *kfake.Cluster
	topic   string
	parts   int
	produce *kgo.Client
	adm     *kadm.Client
}

func newFixture(t *testing.T, parts int) *fixture {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(int32(parts), "events"), kfake.SeedTopics(1, "dlq"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return &fixture{t: t, c: c, topic: "events", parts: parts, produce: cl, adm: kadm.NewClient(cl)}
}

// produceN writes n records per partition, values "v=<p>-<i>" (or bad ones
// where bad(i) says so), and returns the end offsets.
func (f *fixture) produceN(n int, bad func(i int) bool) {
	f.t.Helper()
	var recs []*kgo.Record
	for p := 0; p < f.parts; p++ {
		for i := 0; i < n; i++ {
			v := fmt.Sprintf("v=%d-%d", p, i)
			if bad != nil && bad(i) {
				v = "bad-" + v
			}
			recs = append(recs, &kgo.Record{Topic: f.topic, Partition: int32(p), Value: []byte(v)})
		}
	}
	if err := f.produce.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) committed(group string) map[int32]int64 {
	f.t.Helper()
	out := map[int32]int64{}
	resp, err := f.adm.FetchOffsets(context.Background(), group)
	if errors.Is(err, kerr.GroupIDNotFound) {
		return out // the group has not committed anything yet
	}
	if err != nil {
		f.t.Fatal(err)
	}
	resp.Each(func(o kadm.OffsetResponse) {
		if o.Topic == f.topic && o.Err == nil {
			out[o.Partition] = o.At
		}
	})
	return out
}

type running struct {
	cancel context.CancelFunc
	done   chan error
	engine *Engine
}

func (f *fixture) start(group string, s Sink, limits batch.Limits) *running {
	f.t.Helper()
	return f.startWith(group, s, limits, nil)
}

func (f *fixture) startWith(group string, s Sink, limits batch.Limits, tweak func(*Options)) *running {
	f.t.Helper()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	o := Options{
		Pipelines: []*Pipeline{{
			Name: "events", Topic: f.topic, Decoder: textDecoder{}, Sink: s, Limits: limits,
		}},
		InflightBytes:   1 << 20,
		Group:           group,
		Metadata:        dlq.Metadata,
		ShutdownTimeout: 10 * time.Second,
		RevokeTimeout:   5 * time.Second,
		Log:             log,
		BackoffMin:      5 * time.Millisecond,
		BackoffMax:      50 * time.Millisecond,
	}
	if tweak != nil {
		tweak(&o)
	}
	e, err := New(o)
	if err != nil {
		f.t.Fatal(err)
	}
	cl, err := kgo.NewClient(append(e.ClientOpts(group),
		kgo.SeedBrokers(f.c.ListenAddrs()...),
		kgo.RecordPartitioner(dlq.Partitioner("dlq")),
		kgo.SessionTimeout(6*time.Second),
		kgo.RebalanceTimeout(10*time.Second),
	)...)
	if err != nil {
		f.t.Fatal(err)
	}
	e.SetDeadLetters(dlq.New(cl, "dlq", f.c.ListenAddrs()))
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1), engine: e}
	go func() { r.done <- e.Run(ctx, cl) }()
	f.t.Cleanup(func() {
		cancel()
		<-r.done
	})
	return r
}

func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		r.done <- err // for the cleanup
		if err != nil {
			t.Fatalf("engine returned %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("engine did not stop within 20s")
	}
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var small = batch.Limits{MaxRows: 100, MaxBytes: 1 << 20, MaxWait: 50 * time.Millisecond}

func TestLoadsEveryRecordOnceAndCommitsTheEnd(t *testing.T) {
	f := newFixture(t, 3)
	f.produceN(1000, nil)
	s := newMemSink()
	r := f.start("g1", s, small)
	waitFor(t, "3000 rows", 20*time.Second, func() bool { total, _ := s.stats(); return total >= 3000 })
	waitFor(t, "commits at the log end", 10*time.Second, func() bool {
		c := f.committed("g1")
		return c[0] == 1000 && c[1] == 1000 && c[2] == 1000
	})
	r.stop(t)
	total, distinct := s.stats()
	if total != 3000 || distinct != 3000 {
		t.Fatalf("stored %d rows, %d distinct; want 3000 and 3000", total, distinct)
	}
	// Batches of one partition load in offset order.
	for k, offs := range s.order {
		if !sort.SliceIsSorted(offs, func(i, j int) bool { return offs[i] < offs[j] }) {
			t.Fatalf("%s loaded out of order", k)
		}
	}
}

func TestFailingSinkCommitsNothing(t *testing.T) {
	f := newFixture(t, 2)
	f.produceN(50, nil)
	s := newMemSink()
	s.failAll = true
	r := f.start("g2", s, small)
	// Long enough for many retries of every batch.
	time.Sleep(1500 * time.Millisecond)
	// The fence before each insert commits the batch's first offset (0),
	// never anything past it.
	for p, off := range f.committed("g2") {
		if off != 0 {
			t.Fatalf("partition %d committed at %d while every insert failed", p, off)
		}
	}
	if r.engine.Ready() {
		t.Fatal("ready while the sink fails")
	}
	// ClickHouse comes back: everything loads once and commits.
	s.set(func(s *memSink) { s.failAll = false })
	waitFor(t, "100 rows", 10*time.Second, func() bool { total, _ := s.stats(); return total >= 100 })
	waitFor(t, "commits", 10*time.Second, func() bool { c := f.committed("g2"); return c[0] == 50 && c[1] == 50 })
	r.stop(t)
	if total, distinct := s.stats(); total != 100 || distinct != 100 {
		t.Fatalf("stored %d rows, %d distinct; want 100 and 100", total, distinct)
	}
}

func TestLostAcknowledgementIsNotLoadedTwice(t *testing.T) {
	f := newFixture(t, 1)
	f.produceN(300, nil)
	s := newMemSink()
	s.lostAcks = 2
	r := f.start("g3", s, small)
	waitFor(t, "commit at 300", 10*time.Second, func() bool { return f.committed("g3")[0] == 300 })
	r.stop(t)
	if total, distinct := s.stats(); total != 300 || distinct != 300 {
		t.Fatalf("stored %d rows, %d distinct; want 300 and 300 (no duplicate after a lost ack)", total, distinct)
	}
}

func TestRestartResumesFromCommittedOffsets(t *testing.T) {
	f := newFixture(t, 2)
	f.produceN(100, nil)
	s1 := newMemSink()
	r := f.start("g4", s1, small)
	waitFor(t, "commit at 100", 10*time.Second, func() bool { c := f.committed("g4"); return c[0] == 100 && c[1] == 100 })
	r.stop(t)

	f.produceN(40, nil)
	// A fresh sink that knows nothing loaded: only the commit can tell the
	// second run where to start.
	s2 := newMemSink()
	r = f.start("g4", s2, small)
	waitFor(t, "commit at 140", 10*time.Second, func() bool { c := f.committed("g4"); return c[0] == 140 && c[1] == 140 })
	r.stop(t)
	if total, _ := s2.stats(); total != 80 {
		t.Fatalf("second run loaded %d rows, want the 80 produced after the first run's commits", total)
	}
	for k, offs := range s2.order {
		if offs[0] != 100 {
			t.Fatalf("%s: second run started at %d, want 100", k, offs[0])
		}
	}
}

func TestResumeSkipsRowsAlreadyInTheTable(t *testing.T) {
	f := newFixture(t, 1)
	f.produceN(200, nil)
	// The table already holds offsets 0..149 (loaded, then a crash before
	// the commit): only 150..199 may load.
	s := newMemSink()
	for o := int64(0); o < 150; o++ {
		s.rows[fmt.Sprintf("events/0/%d", o)] = 1
		s.order["events/0"] = append(s.order["events/0"], o)
		s.total++
	}
	r := f.start("g5", s, small)
	waitFor(t, "commit at 200", 10*time.Second, func() bool { return f.committed("g5")[0] == 200 })
	r.stop(t)
	if total, distinct := s.stats(); total != 200 || distinct != 200 {
		t.Fatalf("table holds %d rows, %d distinct; want 200 and 200", total, distinct)
	}
}

func TestBadRecordsGoToTheDeadLetterTopic(t *testing.T) {
	f := newFixture(t, 1)
	f.produceN(100, func(i int) bool { return i%10 == 3 })
	s := newMemSink()
	r := f.start("g6", s, small)
	waitFor(t, "commit at 100", 10*time.Second, func() bool { return f.committed("g6")[0] == 100 })
	r.stop(t)
	if total, _ := s.stats(); total != 90 {
		t.Fatalf("loaded %d rows, want 90", total)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(f.c.ListenAddrs()...), kgo.ConsumeTopics("dlq"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var letters []*kgo.Record
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for len(letters) < 10 && ctx.Err() == nil {
		letters = append(letters, cl.PollFetches(ctx).Records()...)
	}
	if len(letters) != 10 {
		t.Fatalf("got %d dead letters, want 10", len(letters))
	}
	for _, l := range letters {
		off := dlq.Header(l, dlq.HeaderOffset)
		if !strings.HasPrefix(string(l.Value), "bad-v=0-") || dlq.Header(l, dlq.HeaderStage) != "decode" ||
			dlq.Header(l, dlq.HeaderReason) != "not a k=v value" || dlq.Header(l, dlq.HeaderTopic) != "events" ||
			!strings.HasSuffix(off, "3") {
			t.Fatalf("dead letter %q headers %v", l.Value, l.Headers)
		}
	}
}

func TestRevokeFlushesAndCommits(t *testing.T) {
	f := newFixture(t, 4)
	f.produceN(20, nil)
	s := newMemSink()
	// Batches that would wait an hour (a first batch at least 8 minutes,
	// batch.phase): only a revoke (or shutdown) loads them.
	slow := batch.Limits{MaxRows: 100000, MaxBytes: 1 << 20, MaxWait: time.Hour}
	a := f.start("g7", s, slow)
	waitFor(t, "member A to buffer everything", 10*time.Second, func() bool {
		return a.engine.inflight.Load() > 0 && a.engine.inflight.Load() == int64(80*len("v=0-00"))-int64(4*10)+int64(80*batch.RecordOverhead)
	})
	if total, _ := s.stats(); total != 0 {
		t.Fatalf("loaded %d rows before any limit", total)
	}
	// B joins: cooperative-sticky moves two partitions, A flushes them.
	b := f.start("g7", s, slow)
	// The flushes store, then commit: wait for the commits (the stores
	// alone may be seen between the two).
	var c map[int32]int64
	waitFor(t, "two partitions flushed on revoke and committed at 20", 15*time.Second, func() bool {
		c = f.committed("g7")
		flushed := 0
		for _, off := range c {
			if off == 20 {
				flushed++
			}
		}
		return flushed >= 2
	})
	if total, _ := s.stats(); total < 40 {
		t.Fatalf("committed %v with %d rows stored: a commit ran ahead of its rows", c, total)
	}
	b.stop(t)
	a.stop(t)
	if total, distinct := s.stats(); total != 80 || distinct != 80 {
		t.Fatalf("stored %d rows, %d distinct; want 80 and 80", total, distinct)
	}
}

func TestShutdownFlushesBufferedBatches(t *testing.T) {
	f := newFixture(t, 2)
	f.produceN(30, nil)
	s := newMemSink()
	slow := batch.Limits{MaxRows: 100000, MaxBytes: 1 << 20, MaxWait: time.Hour}
	r := f.start("g8", s, slow)
	waitFor(t, "records buffered", 10*time.Second, func() bool { return r.engine.inflight.Load() > 0 })
	time.Sleep(200 * time.Millisecond)
	r.stop(t)
	if total, _ := s.stats(); total != 60 {
		t.Fatalf("shutdown loaded %d rows, want 60", total)
	}
	if c := f.committed("g8"); c[0] != 30 || c[1] != 30 {
		t.Fatalf("committed %v, want 30 on both partitions", c)
	}
}

// poisonSink rejects, like ClickHouse, any batch holding a value that
// starts with "poison", for its content.
type poisonSink struct{ *memSink }

func (s poisonSink) NewWriter() Writer { return &poisonWriter{memWriter{s: s.memSink}} }

type poisonWriter struct{ memWriter }

func (w *poisonWriter) Send(ctx context.Context, b *record.Batch) error {
	for _, it := range w.rows {
		if strings.HasPrefix(string(it.Rec.Value), "poison") {
			return fmt.Errorf("insert: %w", &clickhouse.Exception{Code: 53, Message: "Type mismatch in column v"})
		}
	}
	return w.memWriter.Send(ctx, b)
}

func TestRowsTheServerRejectsAreIsolatedAndDeadLettered(t *testing.T) {
	f := newFixture(t, 1)
	var recs []*kgo.Record
	for i := 0; i < 200; i++ {
		v := fmt.Sprintf("v=%d", i)
		if i == 17 || i == 18 || i == 150 {
			v = "poison-" + v
		}
		recs = append(recs, &kgo.Record{Topic: f.topic, Partition: 0, Value: []byte(v)})
	}
	if err := f.produce.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	s := newMemSink()
	r := f.start("g9", poisonSink{s}, batch.Limits{MaxRows: 200, MaxBytes: 1 << 20, MaxWait: 50 * time.Millisecond})
	waitFor(t, "commit at 200", 10*time.Second, func() bool { return f.committed("g9")[0] == 200 })
	r.stop(t)
	if total, distinct := s.stats(); total != 197 || distinct != 197 {
		t.Fatalf("stored %d rows, %d distinct; want the 197 good ones once", total, distinct)
	}
	for _, o := range []int{17, 18, 150} {
		if s.rows[fmt.Sprintf("events/0/%d", o)] != 0 {
			t.Fatalf("poison row %d was stored", o)
		}
	}
	letters := f.consumeAll(t, "dlq", 3)
	var offs []string
	for _, l := range letters {
		if dlq.Header(l, dlq.HeaderStage) != "load" || !strings.Contains(dlq.Header(l, dlq.HeaderReason), "Type mismatch") {
			t.Fatalf("dead letter %q headers %v", l.Value, l.Headers)
		}
		offs = append(offs, dlq.Header(l, dlq.HeaderOffset))
	}
	if strings.Join(offs, ",") != "17,18,150" {
		t.Fatalf("dead-lettered offsets %v, want 17,18,150 in order", offs)
	}
}

func TestNoInsertWithoutASuccessfulFence(t *testing.T) {
	f := newFixture(t, 1)
	f.produceN(50, nil)
	var refused atomic.Int32
	// The coordinator refuses the first three commits as if this member
	// had been expelled from the group.
	f.c.Fault(kfake.Fault{
		Keys: []kmsg.Key{kmsg.OffsetCommit}, Group: "g10", Err: kerr.UnknownMemberID, Count: 3,
		When: func(kmsg.Request) bool { refused.Add(1); return true },
	})
	s := newMemSink()
	var refusedAtFirstSend atomic.Int32
	refusedAtFirstSend.Store(-1)
	s.onSend = func() { refusedAtFirstSend.CompareAndSwap(-1, refused.Load()) }
	r := f.start("g10", s, small)
	waitFor(t, "commit at 50", 15*time.Second, func() bool { return f.committed("g10")[0] == 50 })
	r.stop(t)
	if got := refusedAtFirstSend.Load(); got != 3 {
		t.Fatalf("first insert happened after %d refused commits; want 3 (no insert before a commit succeeds)", got)
	}
	if total, distinct := s.stats(); total != 50 || distinct != 50 {
		t.Fatalf("stored %d rows, %d distinct; want 50 and 50", total, distinct)
	}
}

// consumeAll reads n records of topic from the start.
func (f *fixture) consumeAll(t *testing.T, topic string, n int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(f.c.ListenAddrs()...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []*kgo.Record
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for len(out) < n && ctx.Err() == nil {
		out = append(out, cl.PollFetches(ctx).Records()...)
	}
	if len(out) != n {
		t.Fatalf("read %d records from %s, want %d", len(out), topic, n)
	}
	return out
}

func (f *fixture) endOffset(topic string, partition int32) int64 {
	f.t.Helper()
	ends, err := f.adm.ListEndOffsets(context.Background(), topic)
	if err != nil {
		f.t.Fatal(err)
	}
	o, _ := ends.Lookup(topic, partition)
	return o.Offset
}

// A member that produced dead letters and died before committing must not
// make the next owner produce them again.
func TestDeadLettersAreNotProducedTwiceAfterACrash(t *testing.T) {
	f := newFixture(t, 1)
	f.produceN(100, func(i int) bool { return i%10 == 3 })
	down := newMemSink()
	down.failAll = true
	quick := func(o *Options) { o.ShutdownTimeout = 300 * time.Millisecond }
	a := f.startWith("g11", down, small, quick)
	waitFor(t, "10 dead letters from the first member", 10*time.Second, func() bool { return f.endOffset("dlq", 0) == 10 })
	a.stop(t) // the inserts never succeed: nothing committed past the fences
	if c := f.committed("g11")[0]; c >= 100 {
		t.Fatalf("committed %d although nothing was loaded", c)
	}

	s := newMemSink()
	b := f.start("g11", s, small)
	waitFor(t, "commit at 100", 10*time.Second, func() bool { return f.committed("g11")[0] == 100 })
	b.stop(t)
	if total, distinct := s.stats(); total != 90 || distinct != 90 {
		t.Fatalf("stored %d rows, %d distinct; want 90 and 90", total, distinct)
	}
	if n := f.endOffset("dlq", 0); n != 10 {
		t.Fatalf("dead-letter topic holds %d letters, want each of the 10 bad records once", n)
	}
}

// A worker stopped with records it never committed gives their bytes back
// to the in-flight budget; otherwise every revoke would shrink the budget
// until fetching paused for good.
func TestStoppedWorkersReleaseTheirBudget(t *testing.T) {
	f := newFixture(t, 2)
	f.produceN(50, nil)
	s := newMemSink()
	s.failAll = true // nothing ever commits
	r := f.startWith("g12", s, small, func(o *Options) { o.ShutdownTimeout = 200 * time.Millisecond })
	waitFor(t, "records handed to the workers", 10*time.Second, func() bool { return r.engine.inflight.Load() > 0 })
	r.stop(t)
	if n := r.engine.inflight.Load(); n != 0 {
		t.Fatalf("%d bytes still counted in flight after every worker stopped", n)
	}
}

// slowSink counts how many batches are inside Send at once.
type slowSink struct {
	*memSink
	in, peak atomic.Int32
}

func (s *slowSink) NewWriter() Writer { return &slowWriter{memWriter{s: s.memSink}, s} }

type slowWriter struct {
	memWriter
	s *slowSink
}

func (w *slowWriter) Send(ctx context.Context, b *record.Batch) error {
	n := w.s.in.Add(1)
	defer w.s.in.Add(-1)
	for p := w.s.peak.Load(); n > p && !w.s.peak.CompareAndSwap(p, n); p = w.s.peak.Load() {
	}
	time.Sleep(5 * time.Millisecond)
	return w.memWriter.Send(ctx, b)
}

func TestParallelBoundsBatchesInFlight(t *testing.T) {
	f := newFixture(t, 4)
	f.produceN(400, nil)
	s := &slowSink{memSink: newMemSink()}
	limits := batch.Limits{MaxRows: 20, MaxBytes: 1 << 20, MaxWait: 20 * time.Millisecond}
	r := f.startWith("g13", s, limits, func(o *Options) { o.Parallel = 1 })
	waitFor(t, "everything committed", 20*time.Second, func() bool {
		c := f.committed("g13")
		return c[0] == 400 && c[1] == 400 && c[2] == 400 && c[3] == 400
	})
	r.stop(t)
	if p := s.peak.Load(); p != 1 {
		t.Fatalf("%d batches were loading at once with Parallel = 1", p)
	}
	if total, distinct := s.stats(); total != 1600 || distinct != 1600 {
		t.Fatalf("stored %d rows, %d distinct; want 1600", total, distinct)
	}
}

// A send that stores only some of its rows before failing (a crash between
// the parts of an INSERT spanning several table partitions) must end with
// every row stored once: the resume reads which offsets are stored, not
// the highest one.
func TestPartlyStoredBatchIsCompleted(t *testing.T) {
	f := newFixture(t, 1)
	f.produceN(200, nil)
	s := newMemSink()
	s.partialSends = 3
	r := f.start("g20", s, small)
	waitFor(t, "commit at 200", 10*time.Second, func() bool { return f.committed("g20")[0] == 200 })
	r.stop(t)
	if total, distinct := s.stats(); total != 200 || distinct != 200 {
		t.Fatalf("stored %d rows, %d distinct; want 200 and 200", total, distinct)
	}
}

// An INSERT that outlives the client's timeout commits later; the worker
// must wait for it to end (and ask for it to be cancelled) before it reads
// what is stored, instead of sending the rows again at once.
func TestInsertThatOutlivesItsTimeoutIsNotSentAgain(t *testing.T) {
	f := newFixture(t, 1)
	f.produceN(100, nil)
	s := newMemSink()
	s.lateSends, s.lateDelay = 2, 300*time.Millisecond
	r := f.startWith("g21", s, small, func(o *Options) { o.OutcomeWait = 10 * time.Millisecond })
	waitFor(t, "commit at 100", 10*time.Second, func() bool { return f.committed("g21")[0] == 100 })
	r.stop(t)
	waitFor(t, "late inserts ended", 5*time.Second, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.running == 0
	})
	if total, distinct := s.stats(); total != 100 || distinct != 100 {
		t.Fatalf("stored %d rows, %d distinct; want 100 and 100", total, distinct)
	}
	s.set(func(s *memSink) {
		if s.kills == 0 {
			t.Errorf("no cancel was asked for the running INSERT")
		}
	})
}

// Once the member's identity changed (it rejoined under a new member ID),
// no commit, and so no fence and no insert, passes until the poll loop
// confirms the assignment under the new ID.
func TestNoInsertUnderAChangedMemberID(t *testing.T) {
	f := newFixture(t, 1)
	f.produceN(50, nil)
	s := newMemSink()
	r := f.start("g22", s, small)
	waitFor(t, "commit at 50", 10*time.Second, func() bool { return f.committed("g22")[0] == 50 })
	if err := r.engine.commit(f.topic, 0, -1, 50, -1); err != nil {
		t.Fatalf("commit under the confirmed member ID: %v", err)
	}
	stale := "a-member-id-of-another-life"
	r.engine.member.Store(&stale)
	if err := r.engine.commit(f.topic, 0, -1, 50, -1); !errors.Is(err, errIdentityChanged) {
		t.Fatalf("commit under a changed member ID: %v, want errIdentityChanged", err)
	}
	r.stop(t)
}

// A partition paused by backpressure, revoked and assigned back, gets a
// new worker; the client still has it paused, and backpressure must
// resume it (a flag of the old worker is gone). Partitions no worker holds
// are resumed too.
func TestBackpressureResumesWhatTheClientHasPaused(t *testing.T) {
	f := newFixture(t, 2)
	e, err := New(Options{Pipelines: []*Pipeline{{Name: "events", Topic: f.topic, Decoder: textDecoder{}, Sink: newMemSink(),
		Limits: small}}, InflightBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(f.c.ListenAddrs()...), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{
		f.topic: {0: kgo.NewOffset().AtStart(), 1: kgo.NewOffset().AtStart()}}))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	e.cl = cl
	e.workers[tp{f.topic, 0}] = newWorker(e, e.opts.Pipelines[0], 0) // holds nothing
	cl.PauseFetchPartitions(map[string][]int32{f.topic: {0, 1}})
	e.backpressure()
	if still := cl.PauseFetchPartitions(nil); len(still[f.topic]) != 0 {
		t.Fatalf("still paused after backpressure: %v", still)
	}
	// And a worker over its limit is paused.
	w := e.workers[tp{f.topic, 0}]
	w.held.Store(int64(3 * small.MaxBytes))
	e.backpressure()
	if got := cl.PauseFetchPartitions(nil)[f.topic]; !slices.Equal(got, []int32{0}) || !w.paused.Load() {
		t.Fatalf("paused %v (worker says %v), want [0]", got, w.paused.Load())
	}
	// A spent budget pauses nothing in the client (the poll loop stops
	// polling instead, keeping what the client buffered): the worker
	// below its limit is resumed, and held back all the same.
	w.held.Store(int64(small.MaxBytes / 2))
	e.inflight.Store(e.opts.InflightBytes)
	e.backpressure()
	if got := cl.PauseFetchPartitions(nil)[f.topic]; len(got) != 0 || !w.paused.Load() {
		t.Fatalf("with the budget spent: paused %v (worker held back: %v), want none paused and the worker held back", got, w.paused.Load())
	}
	e.inflight.Store(0)
	e.backpressure()
	if w.paused.Load() {
		t.Fatal("the worker is still held back with the budget free")
	}
	w.cancel()
}

// A worker whose partition is paused because the in-flight budget is spent
// cuts its open batch at once (worker.starved): nothing more can come for
// it until batches commit. With max_wait an hour and max_rows above what
// the budget holds, waiting would never end.
func TestSpentBudgetCutsOpenBatchesEarly(t *testing.T) {
	f := newFixture(t, 2)
	f.produceN(500, nil)
	s := newMemSink()
	r := f.startWith("g1", s, batch.Limits{MaxRows: 1000, MaxBytes: 1 << 20, MaxWait: time.Hour}, func(o *Options) {
		o.InflightBytes = 20 << 10 // about 100 records (batch.Held)
	})
	waitFor(t, "1000 rows", 20*time.Second, func() bool { total, _ := s.stats(); return total >= 1000 })
	waitFor(t, "commits at the log end", 10*time.Second, func() bool {
		c := f.committed("g1")
		return c[0] == 500 && c[1] == 500
	})
	r.stop(t)
	if total, distinct := s.stats(); total != 1000 || distinct != 1000 {
		t.Fatalf("stored %d rows, %d distinct; want 1000 and 1000", total, distinct)
	}
}

// A batch's max_wait counts from the arrival of its first record, also
// when the record arrives while the worker loads the previous batch: the
// record then waits for that load and for what is left of its max_wait,
// not for the load and a whole max_wait after it (which put case f of
// make bench at max_wait + 1 s). Here the first batch's INSERT takes 2 s
// and the second record arrives 0.5 s into it: past its max_wait of 1 s
// when the INSERT ends, so it is sent then, 1.5 s after it was produced
// (2.5 s when the clock started at the drain).
func TestMaxWaitCountsFromArrivalWhileTheWorkerLoads(t *testing.T) {
	f := newFixture(t, 1)
	s := newMemSink()
	inFirst := make(chan struct{})
	sent := make(chan time.Time, 1)
	s.onSendBatch = func(b *record.Batch) {
		if b.First == 0 {
			close(inFirst)
			s.mu.Unlock()
			time.Sleep(2 * time.Second)
			s.mu.Lock()
			return
		}
		sent <- time.Now()
	}
	r := f.start("g-arrival", s, batch.Limits{MaxRows: 1000, MaxBytes: 1 << 20, MaxWait: time.Second})
	waitFor(t, "partition assigned", 10*time.Second, func() bool { return len(r.engine.Stats()) == 1 })
	f.produceN(1, nil)
	select {
	case <-inFirst:
	case <-time.After(10 * time.Second):
		t.Fatal("the first batch was not sent within 10 s")
	}
	time.Sleep(500 * time.Millisecond)
	produced := time.Now()
	f.produceN(1, nil)
	var at time.Time
	select {
	case at = <-sent:
	case <-time.After(10 * time.Second):
		t.Fatal("the second batch was not sent within 10 s")
	}
	if d := at.Sub(produced); d > 2*time.Second || d < time.Second {
		t.Errorf("the second record was sent %v after it was produced; want about 1.5 s (1 s max_wait from its arrival, ending after the first INSERT)", d.Round(time.Millisecond))
	}
	waitFor(t, "commit at 2", 10*time.Second, func() bool { return f.committed("g-arrival")[0] == 2 })
	r.stop(t)
}

// A rebalance that revokes a partition while a shutting-down member still
// flushes it must wait for the flush: the old member's INSERT ends before
// the new owner reads the table. The sink lists no running insert here, so
// only the wait in revoke keeps the two apart.
func TestRevokeDuringShutdownWaitsForTheFlush(t *testing.T) {
	f := newFixture(t, 2)
	f.produceN(20, nil)
	s := newMemSink()
	// Per partition: sends in progress (two at once means two members
	// loaded the partition at the same time).
	sending := map[int32]int{}
	var overlapped atomic.Bool
	first := make(chan struct{})
	var once sync.Once
	s.onSendBatch = func(b *record.Batch) {
		sending[b.Partition]++
		if sending[b.Partition] > 1 {
			overlapped.Store(true)
		}
		once.Do(func() { close(first) })
		s.mu.Unlock() // let the other member in while this send sleeps
		time.Sleep(1500 * time.Millisecond)
		s.mu.Lock()
		sending[b.Partition]--
	}
	// Big batches that only the flush cuts: the shutdown's flush is the
	// slow send.
	lim := batch.Limits{MaxRows: 1000, MaxBytes: 1 << 20, MaxWait: time.Hour}
	a := f.start("g23", s, lim)
	waitFor(t, "partitions assigned", 10*time.Second, func() bool { return len(a.engine.Stats()) == 2 })
	waitFor(t, "records handed over", 10*time.Second, func() bool { return a.engine.inflight.Load() > 0 })
	a.cancel() // SIGTERM: flush both partitions
	<-first
	b := f.start("g23", s, batch.Limits{MaxRows: 5, MaxBytes: 1 << 20, MaxWait: 10 * time.Millisecond})
	if err := <-a.done; err != nil {
		t.Fatal(err)
	}
	a.done <- nil // for the cleanup
	waitFor(t, "commit at 20", 15*time.Second, func() bool { c := f.committed("g23"); return c[0] == 20 && c[1] == 20 })
	b.stop(t)
	if overlapped.Load() {
		t.Errorf("the new owner sent while the old member's flush was still sending")
	}
	if total, distinct := s.stats(); total != 40 || distinct != 40 {
		t.Fatalf("stored %d rows, %d distinct; want 40 and 40", total, distinct)
	}
}

// countingHandler counts log records by message prefix (all levels).
type countingHandler struct {
	mu     sync.Mutex
	counts map[string]int
}

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.counts == nil {
		h.counts = map[string]int{}
	}
	h.counts[r.Level.String()+" "+r.Message]++
	return nil
}
func (h *countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countingHandler) WithGroup(string) slog.Handler      { return h }

func (h *countingHandler) count(level, prefix string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for m, c := range h.counts {
		if strings.HasPrefix(m, level+" "+prefix) {
			n += c
		}
	}
	return n
}

// outOfRange commits offset 10 for group, then deletes the records below
// 50: the group's position is no longer in the log.
func (f *fixture) outOfRange(group string) {
	f.t.Helper()
	ctx := context.Background()
	var os kadm.Offsets
	os.Add(kadm.Offset{Topic: f.topic, Partition: 0, At: 10})
	if _, err := f.adm.CommitOffsets(ctx, group, os); err != nil {
		f.t.Fatal(err)
	}
	var del kadm.Offsets
	del.Add(kadm.Offset{Topic: f.topic, Partition: 0, At: 50})
	resp, err := f.adm.DeleteRecords(ctx, del)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		f.t.Fatal(err)
	}
}

// A committed offset below the log start stops the partition loudly and
// once: one ERROR, a metric, /readyz not ready, no flood of fetch errors,
// nothing loaded.
func TestOffsetOutOfRangeStopsThePartitionLoudlyOnce(t *testing.T) {
	f := newFixture(t, 1)
	f.produceN(100, nil)
	f.outOfRange("g30")
	s := newMemSink()
	h := &countingHandler{}
	r := f.startWith("g30", s, small, func(o *Options) { o.Log = slog.New(h) })
	waitFor(t, "the partition stopped", 10*time.Second, func() bool { return r.engine.stalled.Load() == 1 })
	time.Sleep(2 * time.Second) // many polls
	if n := h.count("ERROR", "the partition's committed offset is no longer in the Kafka log"); n != 1 {
		t.Errorf("%d out-of-range ERRORs, want exactly 1", n)
	}
	if n := h.count("WARN", "fetch error"); n != 0 {
		t.Errorf("%d fetch-error WARNs, want none (no log flood)", n)
	}
	if r.engine.Ready() {
		t.Errorf("ready while a partition is stopped out of range")
	}
	if got := testutil.ToFloat64(r.engine.m.OutOfRange.WithLabelValues("events")); got != 1 {
		t.Errorf("sluice_offset_out_of_range_total = %v, want 1", got)
	}
	if total, _ := s.stats(); total != 0 {
		t.Errorf("%d rows loaded from a stopped partition", total)
	}
	r.stop(t)
	if c := f.committed("g30")[0]; c != 10 {
		t.Errorf("committed %d, want 10 untouched", c)
	}
}

// With resume_from_log_start the lost range is counted and the partition
// loads from the log start on.
func TestOffsetOutOfRangeResumesFromTheLogStart(t *testing.T) {
	f := newFixture(t, 1)
	f.produceN(100, nil)
	f.outOfRange("g31")
	s := newMemSink()
	r := f.startWith("g31", s, small, func(o *Options) {
		o.OnOutOfRange = OutOfRangeResume
		o.RecordSkip, o.ReadSkip = dlq.WithSkipped, dlq.Skipped
	})
	waitFor(t, "commit at 100", 10*time.Second, func() bool { return f.committed("g31")[0] == 100 })
	// The commits record what was given up, for the audit.
	offs, err := f.adm.FetchOffsets(context.Background(), "g31")
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := offs.Lookup(f.topic, 0); !strings.HasSuffix(o.Metadata, ";skipped=10-50") {
		t.Errorf("commit metadata %q does not record the skipped offsets 10..49", o.Metadata)
	}
	if !r.engine.Ready() {
		t.Errorf("not ready after resuming")
	}
	r.stop(t)
	if total, distinct := s.stats(); total != 50 || distinct != 50 {
		t.Fatalf("stored %d rows, %d distinct; want the 50 still in the log", total, distinct)
	}
	if got := testutil.ToFloat64(r.engine.m.SkippedOffsets.WithLabelValues("events")); got != 40 {
		t.Errorf("sluice_offsets_skipped_total = %v, want 40 (offsets 10..49)", got)
	}
}

// Shutdown is a hard bound even while the coordinator sits on the group's
// requests (as it does while it waits for a dead member's join): the leave
// is not waited for past the deadline.
func TestShutdownIsBoundedWhileTheCoordinatorStalls(t *testing.T) {
	f := newFixture(t, 1)
	f.produceN(50, nil)
	s := newMemSink()
	r := f.startWith("g32", s, small, func(o *Options) { o.ShutdownTimeout = 2 * time.Second })
	waitFor(t, "commit at 50", 10*time.Second, func() bool { return f.committed("g32")[0] == 50 })
	release := make(chan struct{})
	for _, key := range []kmsg.Key{kmsg.LeaveGroup, kmsg.Heartbeat, kmsg.OffsetCommit, kmsg.JoinGroup} {
		f.c.ControlKey(int16(key), func(kmsg.Request) (kmsg.Response, error, bool) {
			f.c.KeepControl()
			f.c.SleepControl(func() {
				select {
				case <-release:
				case <-time.After(20 * time.Second):
				}
			})
			return nil, nil, false
		})
	}
	start := time.Now()
	r.cancel()
	select {
	case err := <-r.done:
		r.done <- err
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10s")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("shutdown took %v for a 2s shutdown_timeout", d)
	}
	close(release)
	<-r.engine.clientClosed // the leave went on in the background
}

// A topic deleted and created again starts again at offset 0, where the
// table holds the old incarnation's rows: they are told apart by topic
// ID, and the new records are loaded, not skipped as "already stored".
func TestRecreatedTopicIsLoadedBesideTheOldIncarnation(t *testing.T) {
	f := newFixture(t, 1)
	f.produceN(60, nil)
	s := newMemSink()
	// The old incarnation's rows at offsets 0..99.
	s.storeIDs = "an-old-topic-id"
	var old []*record.Item
	for o := int64(0); o < 100; o++ {
		old = append(old, &record.Item{Rec: &kgo.Record{Topic: f.topic, Partition: 0, Offset: o}})
	}
	s.store(f.topic, 0, old)
	h := &countingHandler{}
	r := f.startWith("g33", s, small, func(o *Options) { o.Log = slog.New(h) })
	waitFor(t, "commit at 60", 10*time.Second, func() bool { return f.committed("g33")[0] == 60 })
	r.stop(t)
	if total, _ := s.stats(); total != 160 {
		t.Fatalf("table holds %d rows, want the 100 old and the 60 new", total)
	}
	if n := h.count("WARN", "the table holds rows of an earlier incarnation"); n != 1 {
		t.Errorf("%d WARNs about an earlier incarnation, want 1", n)
	}
}

// The poll loop, with the in-flight budget spent, polls with a cancelled
// context before it reloads pipelines or restarts streams (Run): such a
// poll must take no records and must hold rebalances back until
// AllowRebalance, as a poll that returns records does. A second member
// joining makes the group rebalance; the first member's revoke must wait.
func TestCancelledPollTakesNothingAndHoldsRebalancesBack(t *testing.T) {
	f := newFixture(t, 4)
	f.produceN(10, nil)
	var revokes atomic.Int32
	opts := func(extra ...kgo.Opt) []kgo.Opt {
		return append([]kgo.Opt{
			kgo.SeedBrokers(f.c.ListenAddrs()...), kgo.ConsumerGroup("g-cancelled"), kgo.ConsumeTopics(f.topic),
			kgo.DisableAutoCommit(), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		}, extra...)
	}
	a, err := kgo.NewClient(opts(kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsRevoked(func(context.Context, *kgo.Client, map[string][]int32) { revokes.Add(1) }))...)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	// A real poll first: the member joins, is given every partition and
	// buffers records.
	for got := 0; got == 0; {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		fs := a.PollRecords(ctx, 1)
		cancel()
		if err := fs.Err0(); err != nil {
			t.Fatal(err)
		}
		got = fs.NumRecords()
		if got == 0 {
			a.AllowRebalance()
		}
	}
	a.AllowRebalance()
	done, cancel := context.WithCancel(context.Background())
	cancel()
	if fs := a.PollRecords(done, 0); fs.NumRecords() != 0 {
		t.Fatalf("a poll with a cancelled context took %d records", fs.NumRecords())
	}
	b, err := kgo.NewClient(opts()...)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		b.PollRecords(ctx, 1) // joins the group (b does not block rebalances)
	}()
	time.Sleep(3 * time.Second) // the join is well under way by now
	if n := revokes.Load(); n != 0 {
		t.Fatalf("the first member's partitions were revoked %d times while its cancelled poll held rebalances back", n)
	}
	a.AllowRebalance()
	waitFor(t, "the revoke once rebalances are allowed", 20*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		a.PollRecords(ctx, 1)
		cancel()
		a.AllowRebalance()
		return revokes.Load() > 0
	})
}
