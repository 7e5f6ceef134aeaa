package pipeline

// Component tests of the dead-letter path on kfake (issue 7, item 10): a
// dead-letter topic that grows, a produce that fails for some letters only,
// a letter larger than the topic takes, and a topic that refuses every
// letter. Each ends with every bad record dead-lettered exactly once.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-etl/sluice/pkg/batch"
	"github.com/sluice-etl/sluice/pkg/dlq"
	"github.com/sluice-etl/sluice/pkg/record"
)

// startClient is startWith with extra options for the group client, the
// one that produces the dead letters.
func (f *fixture) startClient(group string, s Sink, limits batch.Limits, clientOpts ...kgo.Opt) *running {
	f.t.Helper()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	e, err := New(Options{
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
	})
	if err != nil {
		f.t.Fatal(err)
	}
	cl, err := kgo.NewClient(append(append(e.ClientOpts(group),
		kgo.SeedBrokers(f.c.ListenAddrs()...),
		kgo.RecordPartitioner(dlq.Partitioner("dlq")),
		kgo.SessionTimeout(6*time.Second),
		kgo.RebalanceTimeout(10*time.Second),
	), clientOpts...)...)
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

// produceValues writes the values to partition 0 of the source topic, with
// keys "k<i>", and returns their offsets.
func (f *fixture) produceValues(values ...string) []int64 {
	f.t.Helper()
	recs := make([]*kgo.Record, len(values))
	for i, v := range values {
		recs[i] = &kgo.Record{Topic: f.topic, Partition: 0, Key: []byte("k" + strconv.Itoa(i)), Value: []byte(v)}
	}
	res := f.produce.ProduceSync(context.Background(), recs...)
	if err := res.FirstErr(); err != nil {
		f.t.Fatal(err)
	}
	offs := make([]int64, len(res))
	for i, r := range res {
		offs[i] = r.Record.Offset
	}
	return offs
}

// letters reads every dead letter of every partition of the dead-letter
// topic, which must hold exactly n.
func (f *fixture) letters(n int) []*kgo.Record {
	f.t.Helper()
	total := int64(0)
	ends, err := f.adm.ListEndOffsets(context.Background(), "dlq")
	if err != nil {
		f.t.Fatal(err)
	}
	ends.Each(func(o kadm.ListedOffset) { total += o.Offset })
	if total != int64(n) {
		f.t.Fatalf("the dead-letter topic holds %d letters, want %d", total, n)
	}
	return f.consumeAll(f.t, "dlq", n)
}

// onceEach asserts that the letters are for exactly the source offsets
// want, one each.
func onceEach(t *testing.T, letters []*kgo.Record, want []int64) {
	t.Helper()
	got := map[int64]int{}
	for _, l := range letters {
		off, err := strconv.ParseInt(dlq.Header(l, dlq.HeaderOffset), 10, 64)
		if err != nil {
			t.Fatalf("letter without a source offset: %v", l.Headers)
		}
		got[off]++
	}
	for _, o := range want {
		if got[o] != 1 {
			t.Errorf("source offset %d has %d dead letters, want 1", o, got[o])
		}
	}
	if len(got) != len(want) {
		t.Errorf("letters for %d source offsets, want %d", len(got), len(want))
	}
}

// values returns n values of which those at i%every == bad fail to decode;
// bad ones are padded to pad bytes.
func values(n, every, bad, pad int) (all []string, badIdx []int) {
	for i := range n {
		v := fmt.Sprintf("v=0-%d", i)
		if i%every == bad {
			v = "bad-" + v
			v += strings.Repeat("x", max(0, pad-len(v)))
			badIdx = append(badIdx, i)
		}
		all = append(all, v)
	}
	return all, badIdx
}

// A dead-letter topic that gains partitions between two owners of a source
// partition must not remap its letters: the letters the first owner
// produced without committing are found by the second, which produces
// none again, and every later letter of the partition goes to the same
// dead-letter partition, which the commit metadata names.
func TestDeadLetterPartitionSurvivesAGrowingTopic(t *testing.T) {
	f := newFixture(t, 1)
	vals, badIdx := values(100, 10, 3, 0)
	offs := f.produceValues(vals...)
	down := newMemSink()
	down.failAll = true
	a := f.startWith("g40", down, small, func(o *Options) { o.ShutdownTimeout = 300 * time.Millisecond })
	waitFor(t, "10 dead letters from the first owner", 10*time.Second, func() bool { return f.endOffset("dlq", 0) == 10 })
	a.stop(t) // nothing loads: the letters are not covered by a commit

	// Grow the topic until the hash puts source partition 0 elsewhere.
	n := 2
	for dlq.PartitionFor(f.topic, "0", n) == 0 {
		n++
	}
	if _, err := f.adm.CreatePartitions(context.Background(), n-1, "dlq"); err != nil {
		t.Fatal(err)
	}

	s := newMemSink()
	b := f.start("g40", s, small)
	waitFor(t, "commit at 100", 10*time.Second, func() bool { return f.committed("g40")[0] == 100 })
	// More bad records after the growth: their letters join the others.
	more, moreBad := values(20, 10, 3, 0)
	moreOffs := f.produceValues(more...)
	waitFor(t, "commit at 120", 10*time.Second, func() bool { return f.committed("g40")[0] == 120 })
	b.stop(t)

	var want []int64
	for _, i := range badIdx {
		want = append(want, offs[i])
	}
	for _, i := range moreBad {
		want = append(want, moreOffs[i])
	}
	letters := f.letters(len(want))
	onceEach(t, letters, want)
	for _, l := range letters {
		if l.Partition != 0 {
			t.Errorf("letter of source offset %s in dead-letter partition %d, want 0 (where the partition's letters were)",
				dlq.Header(l, dlq.HeaderOffset), l.Partition)
		}
	}
	if total, distinct := s.stats(); total != 108 || distinct != 108 {
		t.Errorf("stored %d rows, %d distinct; want 108 and 108", total, distinct)
	}
	resp, err := f.adm.FetchOffsets(context.Background(), "g40")
	if err != nil {
		t.Fatal(err)
	}
	o, _ := resp.Lookup(f.topic, 0)
	if want := dlq.Metadata(dlq.Position(0, 12)); o.Metadata != want {
		t.Errorf("commit metadata %q, want %q", o.Metadata, want)
	}
}

// dlqTopicID returns the topic ID of the dead-letter topic (produce
// requests of v13 and later name topics by ID).
func (f *fixture) dlqTopicID() [16]byte {
	f.t.Helper()
	td, err := f.adm.ListTopics(context.Background(), "dlq")
	if err != nil {
		f.t.Fatal(err)
	}
	return td["dlq"].ID
}

// failProduce answers a produce request to the dead-letter topic with code
// for every partition, without storing anything.
func failProduce(kreq kmsg.Request, code int16) kmsg.Response {
	req := kreq.(*kmsg.ProduceRequest)
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	for _, t := range req.Topics {
		rt := kmsg.NewProduceResponseTopic()
		rt.Topic, rt.TopicID = t.Topic, t.TopicID
		for _, p := range t.Partitions {
			rp := kmsg.NewProduceResponseTopicPartition()
			rp.Partition, rp.ErrorCode, rp.BaseOffset = p.Partition, code, -1
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}

func isDLQProduce(kreq kmsg.Request, id [16]byte) bool {
	req, ok := kreq.(*kmsg.ProduceRequest)
	if !ok {
		return false
	}
	for _, t := range req.Topics {
		if t.Topic == "dlq" || t.TopicID == id {
			return true
		}
	}
	return false
}

// A produce of several letters that fails for some of them must not
// produce again the letters the topic acknowledged. Each letter is its own
// record batch (a batch holds at most 512 bytes, a letter more than half),
// so each is one produce request; the second is refused with a
// non-retriable error, the others stored.
func TestPartlyFailedDeadLetterProduceIsNotRepeated(t *testing.T) {
	f := newFixture(t, 1)
	vals, badIdx := values(50, 5, 3, 120)
	offs := f.produceValues(vals...)
	id := f.dlqTopicID()
	var seen, failed atomic.Int32
	f.c.ControlKey(int16(kmsg.Produce), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		if !isDLQProduce(kreq, id) || seen.Add(1) != 2 {
			return nil, nil, false
		}
		failed.Add(1)
		return failProduce(kreq, kerr.InvalidRecord.Code), nil, true
	})
	s := newMemSink()
	r := f.startClient("g41", s, small, kgo.ProducerBatchMaxBytes(512))
	waitFor(t, "commit at 50", 15*time.Second, func() bool { return f.committed("g41")[0] == 50 })
	r.stop(t)
	if failed.Load() != 1 {
		t.Fatalf("%d produce requests refused, want 1", failed.Load())
	}
	var want []int64
	for _, i := range badIdx {
		want = append(want, offs[i])
	}
	onceEach(t, f.letters(len(want)), want)
	if got := testutil.ToFloat64(r.engine.m.DeadLetters.WithLabelValues("events", "decode")); got != float64(len(want)) {
		t.Errorf("sluice_dead_letters_total = %v, want %d", got, len(want))
	}
	if total, distinct := s.stats(); total != 40 || distinct != 40 {
		t.Errorf("stored %d rows, %d distinct; want 40 and 40", total, distinct)
	}
}

// A letter larger than the dead-letter topic's max.message.bytes is
// stored with its value cut (headers give the original size and SHA-256)
// instead of being retried forever; a letter that fits is untouched.
func TestOversizeDeadLetterIsCutToFit(t *testing.T) {
	f := newFixture(t, 1)
	limit := "1024"
	resp, err := f.adm.AlterTopicConfigs(context.Background(), []kadm.AlterConfig{{Name: "max.message.bytes", Value: &limit}}, "dlq")
	if err == nil {
		var r kadm.AlterConfigsResponse
		if r, err = resp.On("dlq", nil); err == nil {
			err = r.Err
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	// 5,004 bytes that do not compress: the broker measures the batch
	// as compressed.
	noise := make([]byte, 5000)
	for i := range noise {
		noise[i] = byte(rand.New(rand.NewPCG(1, uint64(i))).Uint32())
	}
	big := "bad-" + string(noise)
	offs := f.produceValues("v=0-0", big, "v=0-2", "bad-small", "v=0-4")
	s := newMemSink()
	r := f.start("g42", s, small)
	waitFor(t, "commit at 5", 10*time.Second, func() bool { return f.committed("g42")[0] == 5 })
	r.stop(t)

	letters := f.letters(2)
	onceEach(t, letters, []int64{offs[1], offs[3]})
	for _, l := range letters {
		d := dlq.Parse(l)
		switch d.SourceOffset {
		case offs[1]:
			sum := sha256.Sum256([]byte(big))
			if !d.Truncated || d.ValueBytes != int64(len(big)) || d.ValueSHA256 != hex.EncodeToString(sum[:]) {
				t.Errorf("cut letter: truncated %v, value bytes %d, sha256 %s; want true, %d, the original's",
					d.Truncated, d.ValueBytes, d.ValueSHA256, len(big))
			}
			if len(d.Value) == 0 || len(d.Value) >= 1024 || !bytes.HasPrefix([]byte(big), d.Value) {
				t.Errorf("cut letter keeps %d bytes of the value; want a non-empty prefix under 1024", len(d.Value))
			}
			if string(d.Key) != "k1" || d.Reason != "not a k=v value" || d.Stage != "decode" {
				t.Errorf("cut letter key %q, reason %q, stage %q", d.Key, d.Reason, d.Stage)
			}
		case offs[3]:
			if d.Truncated || string(d.Value) != "bad-small" || dlq.Header(l, dlq.HeaderTruncated) != "" {
				t.Errorf("letter that fits: truncated %v, value %q", d.Truncated, d.Value)
			}
		}
	}
	if got := testutil.ToFloat64(r.engine.m.TruncatedLetters.WithLabelValues("events")); got != 1 {
		t.Errorf("sluice_dead_letters_truncated_total = %v, want 1", got)
	}
	if total, distinct := s.stats(); total != 3 || distinct != 3 {
		t.Errorf("stored %d rows, %d distinct; want 3 and 3", total, distinct)
	}
}

// While the dead-letter topic refuses every letter the partition cannot
// commit, and says so: the engine is not ready. Once the topic takes them,
// every letter is stored once and the engine is ready again.
func TestRefusedDeadLettersMakeTheEngineNotReady(t *testing.T) {
	f := newFixture(t, 1)
	vals, badIdx := values(30, 10, 3, 0)
	offs := f.produceValues(vals...)
	id := f.dlqTopicID()
	var mu sync.Mutex
	refuse := true
	f.c.ControlKey(int16(kmsg.Produce), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		mu.Lock()
		defer mu.Unlock()
		if !refuse || !isDLQProduce(kreq, id) {
			return nil, nil, false
		}
		f.c.KeepControl()
		return failProduce(kreq, kerr.InvalidRecord.Code), nil, true
	})
	s := newMemSink()
	r := f.start("g43", s, small)
	waitFor(t, "not ready while letters are refused", 10*time.Second, func() bool {
		return r.engine.polling.Load() && !r.engine.Ready()
	})
	time.Sleep(500 * time.Millisecond)
	if r.engine.Ready() {
		t.Fatal("ready again while every letter is still refused")
	}
	if c := f.committed("g43")[0]; c >= 30 {
		t.Fatalf("committed %d while the letters were refused", c)
	}
	mu.Lock()
	refuse = false
	mu.Unlock()
	waitFor(t, "commit at 30", 10*time.Second, func() bool { return f.committed("g43")[0] == 30 })
	waitFor(t, "ready", 5*time.Second, r.engine.Ready)
	r.stop(t)
	var want []int64
	for _, i := range badIdx {
		want = append(want, offs[i])
	}
	onceEach(t, f.letters(len(want)), want)
}

// The position a commit stores must stay before every letter of an offset
// the commit does not cover. The first owner dead-letters a 100-record
// batch and crashes; the second cuts smaller batches, commits the first
// (20 records) and crashes; the third must still find the first owner's
// letters for offsets 20 and up, not produce them again.
func TestCommitKeepsLettersOfLaterOffsetsInReach(t *testing.T) {
	f := newFixture(t, 1)
	vals, badIdx := values(100, 10, 3, 0)
	offs := f.produceValues(vals...)
	quick := func(o *Options) { o.ShutdownTimeout = 300 * time.Millisecond }
	down := newMemSink()
	down.failAll = true
	a := f.startWith("g44", down, small, quick)
	waitFor(t, "10 dead letters from the first owner", 10*time.Second, func() bool { return f.endOffset("dlq", 0) == 10 })
	a.stop(t)

	// The second owner loads its first 20-record batch, then the table
	// fails.
	partly := newMemSink()
	partly.onSendBatch = func(b *record.Batch) {
		if b.First >= 20 {
			partly.failAll = true
		}
	}
	twenty := batch.Limits{MaxRows: 20, MaxBytes: 1 << 20, MaxWait: 50 * time.Millisecond}
	b := f.startWith("g44", partly, twenty, quick)
	waitFor(t, "commit at 20", 10*time.Second, func() bool { return f.committed("g44")[0] == 20 })
	b.stop(t)

	s := newMemSink()
	c := f.start("g44", s, small)
	waitFor(t, "commit at 100", 10*time.Second, func() bool { return f.committed("g44")[0] == 100 })
	c.stop(t)
	var want []int64
	for _, i := range badIdx {
		want = append(want, offs[i])
	}
	onceEach(t, f.letters(len(want)), want)
	if total, _ := s.stats(); total != 72 {
		t.Errorf("the third owner stored %d rows, want 72 (offsets 20..99 less 8 bad ones)", total)
	}
}
