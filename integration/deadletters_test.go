//go:build integration

package integration

// Dead letters against the real Kafka and ClickHouse (issue 7, item 10): a
// dead-letter topic that takes smaller records than the source, and one
// that gains partitions while letters are pending.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-etl/sluice/internal/itest"
	"github.com/sluice-etl/sluice/pkg/dlq"
)

// undecodable returns a value no Avro order decodes from (an over-long
// varint first), n bytes long, that does not compress.
func undecodable(rng *rand.Rand, n int) []byte {
	v := bytes.Repeat([]byte{0xff}, 11)
	for len(v) < n {
		v = append(v, byte(rng.Uint32()))
	}
	return v
}

// produceTo writes one record to a given partition and returns its offset.
func (w *world) produceTo(cl *kgo.Client, topic string, partition int32, key string, value []byte) int64 {
	w.t.Helper()
	res := cl.ProduceSync(context.Background(), &kgo.Record{Topic: topic, Partition: partition, Key: []byte(key), Value: value})
	if err := res.FirstErr(); err != nil {
		w.t.Fatal(err)
	}
	return res[0].Record.Offset
}

// readLetters reads every dead letter of topic.
func (w *world) readLetters(topic string) []dlq.DeadLetter {
	w.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		w.t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	letters, err := dlq.Read(ctx, cl, topic, dlq.Filter{})
	if err != nil {
		w.t.Fatal(err)
	}
	return letters
}

// metric returns the line of the admin server's /metrics that starts with
// series ("" when there is none).
func metric(t *testing.T, addr, series string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(l, series) {
			return l
		}
	}
	return ""
}

// TestDeadLetterLargerThanTheDLQTopicTakes: the dead-letter topic exists
// with max.message.bytes 4096; an undecodable record of 20,000 bytes (the
// source topic takes 1 MB) must not stall its partition: its letter is
// stored with the value cut to fit, the original size and SHA-256 in its
// headers, and counted; a small undecodable record's letter is untouched;
// every good record is loaded once and the group commits the end.
func TestDeadLetterLargerThanTheDLQTopicTakes(t *testing.T) {
	w := newWorld(t)
	topic, dlqTopic, group := w.name("orders_big"), w.name("dlq"), w.name("g_big")
	w.createTopic(topic, 1)
	limit := "4096"
	resp, err := w.adm.CreateTopics(context.Background(), 1, 1, map[string]*string{"max.message.bytes": &limit}, dlqTopic)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !t.Failed() {
			_, _ = w.adm.DeleteTopics(context.Background(), dlqTopic)
		}
	})
	pcl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer pcl.Close()

	w.produceOrders(topic, 5, 50)
	rng := rand.New(rand.NewPCG(10, 10))
	big := undecodable(rng, 20_000)
	bigOff := w.produceTo(pcl, topic, 0, "big", big)
	small := undecodable(rng, 60)
	smallOff := w.produceTo(pcl, topic, 0, "small", small)
	w.produceOrders(topic, 6, 50)
	end := w.endOffsets(topic)

	s := w.startSluice(w.sluiceConfig(group, ordersPipeline(topic)))
	waitUntil(t, "committed offsets at the log end", 90*time.Second, func() bool {
		return itest.EqualOffsets(w.committed(group, topic), end)
	})
	if l := metric(t, s.svc.AdminAddr(), `sluice_dead_letters_truncated_total{pipeline="orders"}`); !strings.HasSuffix(l, " 1") {
		t.Errorf("metrics: %q, want the truncated letter counted once", l)
	}
	s.stop(t)

	letters := w.readLetters(dlqTopic)
	if len(letters) != 2 {
		t.Fatalf("%d dead letters, want 2", len(letters))
	}
	sum := sha256.Sum256(big)
	for _, l := range letters {
		switch l.SourceOffset {
		case bigOff:
			if !l.Truncated || l.ValueBytes != int64(len(big)) || l.ValueSHA256 != hex.EncodeToString(sum[:]) {
				t.Errorf("large letter: truncated %v, value bytes %d, sha256 %s; want true, %d, %x", l.Truncated, l.ValueBytes, l.ValueSHA256, len(big), sum)
			}
			if len(l.Value) == 0 || len(l.Value) >= 4096 || !bytes.HasPrefix(big, l.Value) {
				t.Errorf("large letter keeps %d bytes of the value, want a prefix under 4096", len(l.Value))
			}
			if string(l.Key) != "big" || l.Reason == "" || l.Stage != "decode" || l.SourceTopic != topic {
				t.Errorf("large letter %+v", l)
			}
		case smallOff:
			if l.Truncated || !bytes.Equal(l.Value, small) || string(l.Key) != "small" {
				t.Errorf("small letter: truncated %v, %d bytes", l.Truncated, len(l.Value))
			}
		default:
			t.Errorf("letter for source offset %d", l.SourceOffset)
		}
	}
	rows := w.count(fmt.Sprintf("SELECT count() FROM %s.orders", w.db))
	distinct := w.count(fmt.Sprintf("SELECT uniqExact(_offset) FROM %s.orders", w.db))
	if rows != 100 || distinct != 100 {
		t.Fatalf("orders holds %d rows, %d distinct offsets; want 100 and 100", rows, distinct)
	}
}

// TestDeadLettersKeepTheirPartitionWhenTheDLQTopicGrows: the first run
// dead-letters undecodable records of two source partitions while the
// table refuses every INSERT (it is swapped for a view of itself once
// Sluice has started), so the letters are produced and nothing past them
// is committed; then the dead-letter topic gains partitions, enough that
// the hash moves both source partitions elsewhere. The second run must find
// those letters where they are and produce none again, and put the letters
// of later undecodable records in the same dead-letter partition.
func TestDeadLettersKeepTheirPartitionWhenTheDLQTopicGrows(t *testing.T) {
	w := newWorld(t)
	topic, dlqTopic, group := w.name("orders_grow"), w.name("dlq"), w.name("g_grow")
	w.createTopic(topic, 2)
	w.createTopic(dlqTopic, 1)
	pcl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer pcl.Close()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(11, 11))
	type src struct {
		partition int32
		offset    int64
	}
	var bad []src
	produceBad := func(n int) {
		for i := range n {
			p := int32(i % 2)
			bad = append(bad, src{p, w.produceTo(pcl, topic, p, fmt.Sprintf("bad-%d", len(bad)), undecodable(rng, 40))})
		}
	}

	cfg := w.sluiceConfig(group, ordersPipeline(topic))
	cfg.ShutdownTimeout = 3 * time.Second
	s := w.startSluice(cfg)
	waitUntil(t, "sluice ready", 30*time.Second, s.svc.Ready)
	for _, q := range []string{
		fmt.Sprintf("RENAME TABLE %s.orders TO %s.orders_real", w.db, w.db),
		fmt.Sprintf("CREATE VIEW %s.orders AS SELECT * FROM %s.orders_real", w.db, w.db),
	} {
		if err := w.ch.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	w.produceOrders(topic, 8, 100)
	produceBad(6)
	waitUntil(t, "6 dead letters while no INSERT succeeds", 60*time.Second, func() bool {
		return w.endOffsets(dlqTopic)[0] == 6
	})
	s.stop(t)
	end := w.endOffsets(topic)
	for p, c := range w.committed(group, topic) {
		if c >= end[p] {
			t.Fatalf("partition %d committed at %d although no INSERT succeeded", p, c)
		}
	}
	for _, q := range []string{
		fmt.Sprintf("DROP TABLE %s.orders", w.db),
		fmt.Sprintf("RENAME TABLE %s.orders_real TO %s.orders", w.db, w.db),
	} {
		if err := w.ch.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	n := 2
	for dlq.PartitionFor(topic, "0", n) == 0 || dlq.PartitionFor(topic, "1", n) == 0 {
		n++
	}
	if resp, err := w.adm.CreatePartitions(ctx, n-1, dlqTopic); err != nil || resp.Error() != nil {
		t.Fatalf("add %d partitions to %s: %v %v", n-1, dlqTopic, err, resp.Error())
	}

	s = w.startSluice(cfg)
	w.waitCommitted(group, topic, 90*time.Second)
	produceBad(4)
	w.waitCommitted(group, topic, 60*time.Second)
	s.stop(t)

	letters := w.readLetters(dlqTopic)
	got := map[src]int{}
	for _, l := range letters {
		got[src{l.SourcePartition, l.SourceOffset}]++
		if l.Partition != 0 {
			t.Errorf("letter of %s in dead-letter partition %d, want 0 (where the partition's letters were)", l.Source(), l.Partition)
		}
	}
	for _, b := range bad {
		if got[b] != 1 {
			t.Errorf("%s[%d]@%d has %d dead letters, want 1", topic, b.partition, b.offset, got[b])
		}
	}
	if len(letters) != len(bad) {
		t.Errorf("%d dead letters, want %d", len(letters), len(bad))
	}
	rows := w.count(fmt.Sprintf("SELECT count() FROM %s.orders", w.db))
	distinct := w.count(fmt.Sprintf("SELECT uniqExact(_partition, _offset) FROM %s.orders", w.db))
	if rows != 100 || distinct != 100 {
		t.Fatalf("orders holds %d rows, %d distinct offsets; want 100 and 100", rows, distinct)
	}
}
