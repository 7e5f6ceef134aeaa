package dlq

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-etl/sluice/pkg/record"
)

const testTopic = "sluice-dlq"

// cluster starts a one-broker kfake cluster with the dead-letter topic
// (partitions partitions) and returns a plain client on it.
func cluster(t *testing.T, partitions int32) (*kfake.Cluster, *kgo.Client) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, testTopic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.DefaultProduceTopic(testTopic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return c, cl
}

// src describes one dead letter to produce.
type src struct {
	pipeline  string
	stage     record.Stage
	reason    string
	topic     string
	partition int32
	offset    int64
	value     string
}

// letter builds the dead letter of s as the Writer does.
func (s src) letter(dlqPartition int32) *kgo.Record {
	it := &record.Item{
		Rec:    &kgo.Record{Topic: s.topic, Partition: s.partition, Offset: s.offset, Key: []byte("k" + s.value), Value: []byte(s.value)},
		Failed: &record.Failure{Stage: s.stage, Reason: s.reason},
	}
	r := Letter(testTopic, s.pipeline, it)
	r.Partition = dlqPartition
	return r
}

func produce(t *testing.T, cl *kgo.Client, rs ...*kgo.Record) {
	t.Helper()
	if err := cl.ProduceSync(context.Background(), rs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

var sample = []src{
	{"orders", record.StageDecode, "avro: short buffer", "orders", 0, 3, "a"},
	{"orders", record.StageTransform, "currency: no FX rate for XTS at 2026-01-01", "orders", 0, 7, "b"},
	{"orders", record.StageTransform, "currency: no FX rate for XTS at 2026-01-02", "orders", 1, 2, "c"},
	{"orders", record.StageLoad, "column total: Decimal overflow", "orders", 1, 9, "d"},
	{"payments", record.StageDecode, "avro: bad enum", "payments", 0, 4, "e"},
	{"payments", record.StageTransform, "currency: no FX rate for ABC", "payments", 2, 100, "f"},
}

func ptr[T any](v T) *T { return &v }

func TestReadFilters(t *testing.T) {
	_, cl := cluster(t, 1)
	for _, s := range sample {
		produce(t, cl, s.letter(0))
	}
	// A record without Sluice's headers: readable, not replayable.
	produce(t, cl, &kgo.Record{Topic: testTopic, Value: []byte("stray")})

	for _, tc := range []struct {
		name string
		f    Filter
		want []string // values, in dead-letter order
	}{
		{"all", Filter{}, []string{"a", "b", "c", "d", "e", "f", "stray"}},
		{"pipeline", Filter{Pipeline: "orders"}, []string{"a", "b", "c", "d"}},
		{"stage", Filter{Stage: record.StageTransform}, []string{"b", "c", "f"}},
		{"pipeline and stage", Filter{Pipeline: "payments", Stage: record.StageDecode}, []string{"e"}},
		{"source topic", Filter{SourceTopic: "payments"}, []string{"e", "f"}},
		{"source partition", Filter{SourcePartition: ptr[int32](0)}, []string{"a", "b", "e"}},
		{"from offset", Filter{FromOffset: ptr[int64](7)}, []string{"b", "d", "f"}},
		{"to offset inclusive", Filter{ToOffset: ptr[int64](4)}, []string{"a", "c", "e"}},
		{"offset range", Filter{FromOffset: ptr[int64](3), ToOffset: ptr[int64](7)}, []string{"a", "b", "e"}},
		{"reason ignores case", Filter{Reason: "no fx RATE for xts"}, []string{"b", "c"}},
		{"limit", Filter{Stage: record.StageTransform, Limit: 2}, []string{"b", "c"}},
		{"nothing", Filter{Pipeline: "shipments"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Read(context.Background(), cl, testTopic, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			var vals []string
			for _, l := range got {
				vals = append(vals, string(l.Value))
			}
			if !slices.Equal(vals, tc.want) {
				t.Fatalf("got %v, want %v", vals, tc.want)
			}
		})
	}
}

func TestReadParsesHeaders(t *testing.T) {
	_, cl := cluster(t, 1)
	produce(t, cl, sample[1].letter(0), &kgo.Record{Topic: testTopic, Value: []byte("stray")})
	got, err := Read(context.Background(), cl, testTopic, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("%d letters, want 2", len(got))
	}
	l := got[0]
	if l.Pipeline != "orders" || l.Stage != record.StageTransform || l.Reason != sample[1].reason ||
		l.SourceTopic != "orders" || l.SourcePartition != 0 || l.SourceOffset != 7 ||
		string(l.Key) != "kb" || string(l.Value) != "b" || l.Invalid != "" ||
		l.Topic != testTopic || l.Partition != 0 || l.Offset != 0 || l.Timestamp.IsZero() || len(l.Headers) != 6 {
		t.Fatalf("parsed %+v", l)
	}
	if l.Source() != "orders[0]@7" {
		t.Fatalf("Source() = %s", l.Source())
	}
	stray := got[1]
	if stray.Invalid == "" || stray.SourcePartition != -1 || stray.SourceOffset != -1 || stray.Offset != 1 {
		t.Fatalf("stray record parsed as %+v", stray)
	}
	// Offset filters never match a letter without a source offset.
	got, err = Read(context.Background(), cl, testTopic, Filter{FromOffset: ptr[int64](0)})
	if err != nil || len(got) != 1 {
		t.Fatalf("from-offset 0: %d letters, %v; want 1", len(got), err)
	}
}

func TestReadStopsAtHighWatermarkAndOrdersByPartition(t *testing.T) {
	_, cl := cluster(t, 3)
	// Interleave partitions; Read returns partition 0, then 1, then 2.
	var rs []*kgo.Record
	for i, s := range sample {
		rs = append(rs, s.letter(int32(2-i%3)))
	}
	produce(t, cl, rs...)
	got, err := Read(context.Background(), cl, testTopic, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, l := range got {
		order = append(order, string(l.Value))
	}
	if want := []string{"c", "f", "b", "e", "a", "d"}; !slices.Equal(order, want) {
		t.Fatalf("order %v, want %v", order, want)
	}
	// Limit applies after ordering: the first two of partition 0.
	got, err = Read(context.Background(), cl, testTopic, Filter{Limit: 2})
	if err != nil || len(got) != 2 || string(got[0].Value) != "c" || string(got[1].Value) != "f" {
		t.Fatalf("limit 2: %v, %v", got, err)
	}
	// A second Read on the same client reads everything again.
	got, err = Read(context.Background(), cl, testTopic, Filter{})
	if err != nil || len(got) != len(sample) {
		t.Fatalf("second read: %d letters, %v", len(got), err)
	}
}

func TestReadEmptyAndMissingTopic(t *testing.T) {
	_, cl := cluster(t, 2)
	got, err := Read(context.Background(), cl, testTopic, Filter{})
	if err != nil || len(got) != 0 {
		t.Fatalf("empty topic: %v, %v", got, err)
	}
	_, err = Read(context.Background(), cl, "no-such-topic", Filter{})
	if !errors.Is(err, ErrNoTopic) {
		t.Fatalf("missing topic: %v, want ErrNoTopic", err)
	}
}

func TestReadHonoursContext(t *testing.T) {
	c, cl := cluster(t, 1)
	produce(t, cl, sample[0].letter(0), sample[1].letter(0))
	// The broker stops answering fetches: Read must give up with ctx.
	c.ControlKey(int16(kmsg.Fetch), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		return nil, nil, true // never answered
	})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := Read(ctx, cl, testTopic, Filter{})
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Read returned no error with fetches blocked and ctx done")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Read did not return after ctx ended")
	}
}

func TestWriteTable(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteTable(&buf, nil, 80); err != nil {
		t.Fatal(err)
	}
	if buf.String() != "no dead letters\n" {
		t.Fatalf("empty: %q", buf.String())
	}

	letters := []DeadLetter{
		Parse(sample[0].letter(0)),
		Parse(sample[1].letter(0)),
		Parse(sample[4].letter(0)),
	}
	letters[1].Reason = strings.Repeat("very long reason ", 20)
	letters[2].Key = []byte{0, 1, 0xfe}
	buf.Reset()
	if err := WriteTable(&buf, letters, 100); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	lines := strings.Split(out, "\n")
	for _, want := range []string{"DLQ", "TIME", "PIPELINE", "STAGE", "SOURCE", "KEY", "SIZE", "REASON"} {
		if !strings.Contains(lines[0], want) {
			t.Fatalf("header %q lacks %s", lines[0], want)
		}
	}
	for _, want := range []string{"orders[0]@3", "avro: short buffer", "payments[0]@4", "0x0001fe", "ka", "3 dead letters"} {
		if !strings.Contains(out, want) {
			t.Fatalf("output lacks %q:\n%s", want, out)
		}
	}
	for i, l := range lines[:4] {
		if n := len([]rune(l)); n > 100 {
			t.Fatalf("line %d is %d runes wide, want <= 100: %q", i, n, l)
		}
	}
	if !strings.Contains(lines[2], "…") {
		t.Fatalf("long reason not cut: %q", lines[2])
	}
	// Summary per pipeline and stage.
	if !regexpLine(out, `orders\s+decode\s+1`) || !regexpLine(out, `orders\s+transform\s+1`) || !regexpLine(out, `payments\s+decode\s+1`) {
		t.Fatalf("summary missing:\n%s", out)
	}

	buf.Reset()
	if err := WriteTable(&buf, letters, 0); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), letters[1].Reason[:len(letters[1].Reason)-1]) {
		t.Fatal("width 0 cut the reason")
	}
}

func TestWriteJSON(t *testing.T) {
	l := Parse(sample[3].letter(0))
	l.Key = []byte{0xff, 0x00}
	var buf bytes.Buffer
	if err := WriteJSON(&buf, []DeadLetter{l, Parse(sample[0].letter(0))}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines, want one per letter:\n%s", len(lines), buf.String())
	}
	var got struct {
		Pipeline, Stage, Reason string
		Source                  struct {
			Topic     string
			Partition int32
			Offset    int64
		}
		Headers    map[string]string
		Key, Value []byte
	}
	if err := json.Unmarshal([]byte(lines[0]), &got); err != nil {
		t.Fatal(err)
	}
	if got.Pipeline != "orders" || got.Stage != "load" || got.Source.Topic != "orders" || got.Source.Partition != 1 ||
		got.Source.Offset != 9 || !bytes.Equal(got.Key, []byte{0xff, 0}) || string(got.Value) != "d" ||
		got.Headers[HeaderReason] != "column total: Decimal overflow" || got.Headers[HeaderOffset] != "9" {
		t.Fatalf("decoded %+v", got)
	}
	if !strings.Contains(lines[0], `"key":"/wA="`) {
		t.Fatalf("key not base64: %s", lines[0])
	}
}

func TestPrintable(t *testing.T) {
	for _, tc := range []struct {
		in   []byte
		want string
	}{
		{nil, "-"},
		{[]byte("cust-42"), "cust-42"},
		{[]byte("a\tb"), "0x610962"},
		{[]byte("abcdefghijklmnopqrstuvwxyz0123"), "abcdefghijklmnopqrstuvw…"},
		{bytes.Repeat([]byte{0xff}, 40), "0x" + strings.Repeat("ff", 10) + "…"},
	} {
		if got := printable(tc.in, 24); got != tc.want {
			t.Errorf("printable(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func regexpLine(s, expr string) bool { return regexp.MustCompile(`(?m)^` + expr + `$`).MatchString(s) }
