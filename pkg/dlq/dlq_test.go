package dlq

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-etl/sluice/pkg/record"
)

func TestPositionAndMetadata(t *testing.T) {
	for _, tc := range []struct {
		part int32
		off  int64
		md   string
	}{
		{0, 0, "sluice:dlq=p0@0"},
		{3, 1234, "sluice:dlq=p3@1234"},
		{MaxPartitions - 1, 1<<offsetBits - 1, "sluice:dlq=p65534@140737488355327"},
		{-1, 42, "sluice:dlq=42"}, // the earlier format: no partition named
	} {
		pos := Position(tc.part, tc.off)
		if p, o := SplitPosition(pos); p != tc.part || o != tc.off {
			t.Errorf("SplitPosition(Position(%d, %d)) = %d, %d", tc.part, tc.off, p, o)
		}
		if got := Metadata(pos); got != tc.md {
			t.Errorf("Metadata(%d, %d) = %q, want %q", tc.part, tc.off, got, tc.md)
		}
		if got, ok := ParseMetadata(tc.md); !ok || got != pos {
			t.Errorf("ParseMetadata(%q) = %d, %v; want %d", tc.md, got, ok, pos)
		}
	}
	if Position(0, 5)+1 != Position(0, 6) || Position(0, 5) >= Position(0, 6) {
		t.Error("positions of one partition must compare and step as offsets")
	}
	for _, bad := range []string{"", "other", "sluice:dlq=", "sluice:dlq=-1", "sluice:dlq=p@3", "sluice:dlq=3@4", "sluice:dlq=p-1@4", "sluice:dlq=p1@x", "sluice:dlq=p70000@1"} {
		if _, ok := ParseMetadata(bad); ok {
			t.Errorf("ParseMetadata(%q) found a position", bad)
		}
	}
}

func TestFitCutsOnlyWhatIsTooLarge(t *testing.T) {
	it := &record.Item{
		Rec:    &kgo.Record{Topic: "orders", Partition: 2, Offset: 7, Key: []byte("key"), Value: []byte(strings.Repeat("v", 5000))},
		Failed: &record.Failure{Stage: record.StageDecode, Reason: "bad"},
	}
	r := Letter("dlq", "orders", it)
	if fit(r, 1<<20, false) || len(r.Value) != 5000 || Header(r, HeaderTruncated) != "" {
		t.Fatalf("a letter that fits was changed")
	}
	r = Letter("dlq", "orders", it)
	if !fit(r, 1024, false) {
		t.Fatal("a 5,000-byte letter fits in 1,024 bytes?")
	}
	if n := letterSize(r); n > 1024 || len(r.Value) == 0 {
		t.Errorf("cut letter: %d bytes estimated, value %d bytes; want at most 1024 and some value kept", n, len(r.Value))
	}
	if Header(r, HeaderValueBytes) != "5000" || len(Header(r, HeaderValueSHA256)) != 64 || string(r.Key) != "key" || Header(r, HeaderOffset) != "7" {
		t.Errorf("cut letter headers %v, key %q", r.Headers, r.Key)
	}
	r = Letter("dlq", "orders", it)
	if !fit(r, 1<<20, true) || len(r.Value) != 0 {
		t.Errorf("strict fit kept %d bytes of the value", len(r.Value))
	}
}

// seedLetters produces letters for source offsets of orders[0] to the
// partition dp of "dlq", one record batch each.
func seedLetters(t *testing.T, cl *kgo.Client, dp int32, offsets ...int64) {
	t.Helper()
	for _, o := range offsets {
		it := &record.Item{
			Rec:    &kgo.Record{Topic: "orders", Partition: 0, Offset: o, Value: []byte("x")},
			Failed: &record.Failure{Stage: record.StageDecode, Reason: "bad"},
		}
		r := Letter("dlq", "orders", it)
		r.Partition = dp
		if err := cl.ProduceSync(context.Background(), r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
}

func commitWithMetadata(t *testing.T, adm *kadm.Client, group string, at int64, md string) {
	t.Helper()
	var offs kadm.Offsets
	offs.Add(kadm.Offset{Topic: "orders", Partition: 0, At: at, LeaderEpoch: -1, Metadata: md})
	if resp, err := adm.CommitOffsets(context.Background(), group, offs); err != nil || resp.Error() != nil {
		t.Fatalf("commit: %v %v", err, resp.Error())
	}
}

// Resume reads the dead-letter partition the commit metadata names, also
// when the hash over today's partition count names another; metadata of
// the earlier format (an offset alone) means the hash's partition.
func TestResumeReadsThePartitionTheMetadataNames(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(8, "dlq"), kfake.SeedTopics(1, "orders"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	hashed := int32(PartitionFor("orders", "0", 8))
	other := (hashed + 1) % 8
	// Letters in both partitions; offsets 10 and 11 are below the commit.
	seedLetters(t, cl, other, 10, 11, 12, 13)
	seedLetters(t, cl, hashed, 10, 11, 14, 15)
	w := New(cl, "dlq", c.ListenAddrs())
	ctx := context.Background()

	commitWithMetadata(t, adm, "named", 12, Metadata(Position(other, 1)))
	seen, pos, err := w.Resume(ctx, "named", "orders", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != 2 || seen[12] != Position(other, 2) || seen[13] != Position(other, 3) || pos != Position(other, 4) {
		t.Errorf("named partition %d: seen %v, position %d; want 12 and 13 at %d/2 and %d/3, position %d/4", other, seen, pos, other, other, other)
	}

	commitWithMetadata(t, adm, "legacy", 12, MetadataPrefix+"1")
	seen, pos, err = w.Resume(ctx, "legacy", "orders", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != 2 || seen[14] != Position(hashed, 2) || seen[15] != Position(hashed, 3) || pos != Position(hashed, 4) {
		t.Errorf("earlier format: seen %v, position %d; want 14 and 15 in partition %d", seen, pos, hashed)
	}

	seen, pos, err = w.Resume(ctx, "fresh", "orders", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != 4 || pos != Position(hashed, 4) {
		t.Errorf("no commit: seen %v, position %d; want the 4 letters of partition %d", seen, pos, hashed)
	}
}

// slowFetches delays every fetch by d (the cluster handles one request at
// a time, so a reader needing n fetches takes at least n*d).
func slowFetches(c *kfake.Cluster, d time.Duration) {
	c.ControlKey(int16(kmsg.Fetch), func(kmsg.Request) (kmsg.Response, error, bool) {
		time.Sleep(d)
		return nil, nil, false
	})
}

// A backlog that takes more than a minute to read is read to its end, not
// given up after a minute and retried from the start forever. 640 letters,
// one record batch each, one batch per fetch, 100 ms per fetch: at least
// 64 s.
func TestResumeReadsABacklogThatTakesOverAMinute(t *testing.T) {
	if testing.Short() {
		t.Skip("takes over a minute")
	}
	t.Parallel()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "dlq"), kfake.SeedTopics(1, "orders"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	const n = 640
	offs := make([]int64, n)
	for i := range offs {
		offs[i] = int64(i)
	}
	seedLetters(t, cl, 0, offs...)
	slowFetches(c, 100*time.Millisecond)
	w := New(cl, "dlq", c.ListenAddrs(), kgo.FetchMaxPartitionBytes(1))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	seen, pos, err := w.Resume(ctx, "g", "orders", 0)
	if err != nil {
		t.Fatalf("after %v: %v", time.Since(start).Round(time.Second), err)
	}
	if len(seen) != n || pos != Position(0, n) {
		t.Fatalf("seen %d letters, position %d; want %d and %d", len(seen), pos, n, Position(0, n))
	}
	if d := time.Since(start); d < time.Minute {
		t.Fatalf("the read took %v; the test needs over a minute", d)
	}
}

// A read that makes no progress fails (to be retried) rather than return
// what it has as if it were complete.
func TestResumeFailsWhenTheReadStalls(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "dlq"), kfake.SeedTopics(1, "orders"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	seedLetters(t, cl, 0, 0, 1, 2, 3)
	fetches := 0
	c.ControlKey(int16(kmsg.Fetch), func(kmsg.Request) (kmsg.Response, error, bool) {
		// The first fetch is answered (one batch): then no answer.
		if fetches++; fetches == 1 {
			return nil, nil, false
		}
		c.KeepControl()
		return nil, errors.New("stalled"), true // closes the connection
	})
	w := New(cl, "dlq", c.ListenAddrs(), kgo.FetchMaxPartitionBytes(1))
	w.stall = time.Second
	start := time.Now()
	seen, _, err := w.Resume(context.Background(), "g", "orders", 0)
	if err == nil || !strings.Contains(err.Error(), "no progress at 1") {
		t.Fatalf("seen %v, error %v; want no progress at 1", seen, err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("gave up after %v, want about a second", d)
	}
}

// Send reports every acknowledged letter at the position it got, and pins
// letters to the partition of the position it is given.
func TestSendPinsLettersAndReportsEachAcknowledgement(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, "dlq"), kfake.SeedTopics(1, "orders"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.RecordPartitioner(Partitioner("dlq")))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	b := &record.Batch{Pipeline: "orders", Topic: "orders", Partition: 0, First: 0, Last: 5}
	for o := range 6 {
		it := record.Item{Rec: &kgo.Record{Topic: "orders", Partition: 0, Offset: int64(o), Value: []byte("v" + strconv.Itoa(o))}}
		if o%2 == 1 {
			it.Fail(record.StageDecode, "bad")
		}
		b.Items = append(b.Items, it)
	}
	pin := int32(PartitionFor("orders", "0", 4)+1) % 4
	got := map[int64]int64{}
	err = New(cl, "dlq", c.ListenAddrs()).Send(context.Background(), b, Position(pin, 0),
		func(off int64) bool { return off == 5 },
		func(it *record.Item, at int64, truncated bool) {
			if truncated {
				t.Errorf("offset %d truncated", it.Rec.Offset)
			}
			got[it.Rec.Offset] = at
		})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[1] != Position(pin, 0) || got[3] != Position(pin, 1) {
		t.Errorf("acknowledged %v; want offsets 1 and 3 at %d/0 and %d/1", got, pin, pin)
	}
}

// A letter whose value was cut is read back as such, shown with both sizes,
// and never replayed: its value is not the record's.
func TestTruncatedLetterIsShownAndNotReplayed(t *testing.T) {
	r := ord(3, "good3").letter(0)
	if !fit(r, 200, true) {
		t.Fatal("not cut")
	}
	l := Parse(r)
	if !l.Truncated || l.ValueBytes != 5 || len(l.ValueSHA256) != 64 || len(l.Value) != 0 {
		t.Fatalf("parsed %+v", l)
	}
	var buf strings.Builder
	if err := WriteTable(&buf, []DeadLetter{l}, 0); err != nil || !strings.Contains(buf.String(), "0 of 5") {
		t.Errorf("table %q, %v; want the size shown as 0 of 5", buf.String(), err)
	}
	tb := newTable()
	rep, err := Replay(context.Background(), []DeadLetter{l}, ReplayOptions{
		Targets:   []Target{target("orders", "orders", tb)},
		Committed: Offsets{"orders": {0: 10}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Replayed != 0 || rep.Failing != 1 || len(tb.rows) != 0 || !strings.Contains(rep.Results[0].Reason, "value was cut") {
		t.Fatalf("replay of a cut letter: %+v", rep.Results)
	}
}

// fakeProducer acknowledges letters unless refuse says otherwise.
type fakeProducer struct {
	refuse func(r *kgo.Record) error
	next   int64
	sent   []*kgo.Record
}

func (p *fakeProducer) ProduceSync(_ context.Context, rs ...*kgo.Record) kgo.ProduceResults {
	var out kgo.ProduceResults
	for _, r := range rs {
		err := p.refuse(r)
		if err == nil {
			r.Partition, r.Offset = 0, p.next
			p.next++
			p.sent = append(p.sent, r)
		}
		out = append(out, kgo.ProduceResult{Record: r, Err: err})
	}
	return out
}

// A letter the broker refuses as too large although it was estimated to
// fit goes once more without its value; a letter that failed otherwise in
// the same produce is still reported as an error, and only the letters
// acknowledged are reported as such.
func TestSendRetriesATooLargeLetterWithoutItsValue(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "dlq"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p := &fakeProducer{refuse: func(r *kgo.Record) error {
		switch {
		case string(r.Key) == "boom":
			return errors.New("broker went away")
		case len(r.Value) > 10:
			return kerr.MessageTooLarge
		}
		return nil
	}}
	b := &record.Batch{Pipeline: "orders", Topic: "orders", Partition: 0, First: 0, Last: 2}
	for o, kv := range [][2]string{{"large", strings.Repeat("x", 100)}, {"small", "tiny"}, {"boom", "b"}} {
		it := record.Item{Rec: &kgo.Record{Topic: "orders", Offset: int64(o), Key: []byte(kv[0]), Value: []byte(kv[1])}}
		it.Fail(record.StageDecode, "bad")
		b.Items = append(b.Items, it)
	}
	acked := map[int64]bool{} // offset -> truncated
	err = New(p, "dlq", c.ListenAddrs()).Send(context.Background(), b, Position(0, 0), nil, func(it *record.Item, _ int64, truncated bool) {
		acked[it.Rec.Offset] = truncated
	})
	if err == nil || !strings.Contains(err.Error(), "broker went away") {
		t.Fatalf("error %v, want the other letter's failure", err)
	}
	if tr, ok := acked[0]; !ok || !tr {
		t.Errorf("large letter: acknowledged %v, truncated %v; want both", ok, tr)
	}
	if tr, ok := acked[1]; !ok || tr {
		t.Errorf("small letter: acknowledged %v, truncated %v; want acknowledged as is", ok, tr)
	}
	if _, ok := acked[2]; ok || len(acked) != 2 {
		t.Errorf("acknowledged %v; want offsets 0 and 1", acked)
	}
	for _, r := range p.sent {
		if string(r.Key) == "large" && (len(r.Value) != 0 || Header(r, HeaderValueBytes) != "100") {
			t.Errorf("large letter sent with %d bytes of value, headers %v", len(r.Value), r.Headers)
		}
	}
}

func TestSkippedInMetadata(t *testing.T) {
	md := WithSkipped(Metadata(Position(3, 1234)), 10, 100)
	if md != "sluice:dlq=p3@1234;skipped=10-100" {
		t.Fatalf("metadata %q", md)
	}
	if pos, ok := ParseMetadata(md); !ok || pos != Position(3, 1234) {
		t.Fatalf("position of %q: %d %v", md, pos, ok)
	}
	if from, to, ok := Skipped(md); !ok || from != 10 || to != 100 {
		t.Fatalf("skipped of %q: %d-%d %v", md, from, to, ok)
	}
	for _, bad := range []string{Metadata(7), "sluice:dlq=7;skipped=", "sluice:dlq=7;skipped=9-3", "sluice:dlq=7;skipped=a-b"} {
		if _, _, ok := Skipped(bad); ok {
			t.Errorf("%q reads as a skip", bad)
		}
	}
}

// Originals reads the records at the offsets asked for, of the topic's
// incarnation asked for, and leaves out those the partition no longer
// holds: below the log start, past its end, of a topic created again.
func TestOriginalsReadsTheRecordsThePartitionStillHolds(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "orders"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.DefaultProduceTopic("orders"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	produce := func(cl *kgo.Client, prefix string, n int) {
		t.Helper()
		for i := 0; i < n; i++ {
			r := &kgo.Record{Key: []byte(fmt.Sprintf("%sk%d", prefix, i)), Value: []byte(fmt.Sprintf("%sv%d", prefix, i))}
			if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	adm := kadm.NewClient(cl)
	topicID := func(cl *kgo.Client) string {
		t.Helper()
		td, err := kadm.NewClient(cl).ListTopics(ctx, "orders")
		if err != nil || td["orders"].Err != nil {
			t.Fatal(err, td["orders"].Err)
		}
		return td["orders"].ID.String()
	}
	produce(cl, "", 20)
	id := topicID(cl)
	w := New(cl, "dlq", c.ListenAddrs())
	w.stall = 5 * time.Second
	check := func(what, id string, offsets []int64, want map[int64]string) {
		t.Helper()
		got, err := w.Originals(ctx, "orders", 0, id, offsets)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if len(got) != len(want) {
			t.Errorf("%s: read %d records, want %d", what, len(got), len(want))
		}
		for off, v := range want {
			r := got[off]
			if r == nil || string(r.Value) != v || string(r.Key) != strings.Replace(v, "v", "k", 1) || r.Offset != off {
				t.Errorf("%s: offset %d read %v, want value %s", what, off, r, v)
			}
		}
	}
	check("held", id, []int64{3, 7, 19}, map[int64]string{3: "v3", 7: "v7", 19: "v19"})
	check("no topic ID known", "", []int64{0}, map[int64]string{0: "v0"})
	check("past the end", id, []int64{19, 20, 25}, map[int64]string{19: "v19"})

	if _, err := adm.DeleteRecords(ctx, kadm.Offsets{"orders": {0: kadm.Offset{Topic: "orders", Partition: 0, At: 5}}}); err != nil {
		t.Fatal(err)
	}
	check("below the log start", id, []int64{3, 4, 5, 7}, map[int64]string{5: "v5", 7: "v7"})

	// Created again between the read and the answer: the records read are
	// the new incarnation's, not the originals asked for.
	var pcl *kgo.Client
	w.originalsRead = func() {
		w.originalsRead = nil
		if _, err := adm.DeleteTopics(ctx, "orders"); err != nil {
			t.Fatal(err)
		}
		// A topic a worker consumes that a broker does not know is no
		// proof its records are gone: an error, which the caller retries.
		if _, err := w.Originals(ctx, "orders", 0, id, []int64{7}); !errors.Is(err, kerr.UnknownTopicOrPartition) {
			t.Errorf("deleted: %v, want UNKNOWN_TOPIC_OR_PARTITION", err)
		}
		if _, err := adm.CreateTopic(ctx, 1, 1, nil, "orders"); err != nil {
			t.Fatal(err)
		}
		// A client of its own: the first one holds the old topic ID.
		var err error
		if pcl, err = kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.DefaultProduceTopic("orders")); err != nil {
			t.Fatal(err)
		}
		produce(pcl, "new-", 10)
	}
	check("created again during the read", id, []int64{7, 8}, map[int64]string{})
	defer pcl.Close()
	check("created again, the old incarnation asked for", id, []int64{7}, map[int64]string{})
	// (A client's metadata answers are cached for a while: the first
	// client would still name the old ID.)
	if topicID(pcl) == id {
		t.Fatal("the topic created again has the old topic ID")
	}
	check("created again, the new incarnation asked for", topicID(pcl), []int64{7}, map[int64]string{7: "new-v7"})
}
