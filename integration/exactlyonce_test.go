//go:build integration

package integration

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-etl/sluice/internal/itest"
	"github.com/sluice-etl/sluice/pkg/gen"
)

// produceSpreadOrders writes n orders whose event times are step apart
// (so consecutive records fall into different months of the tables'
// PARTITION BY toYYYYMM), round-robin over the topic's partitions.
func (w *world) produceSpreadOrders(topic string, n int, step time.Duration) {
	w.t.Helper()
	w.produceSpreadOrdersAs("avro", topic, n, step)
}

// produceSpreadOrdersAs is produceSpreadOrders in the format given (avro
// or json, the encodings ordersPipelineAs reads).
func (w *world) produceSpreadOrdersAs(format, topic string, n int, step time.Duration) {
	w.t.Helper()
	g, err := gen.New(gen.Options{Seed: 7, Step: step, SchemaDir: filepath.Join(repoRoot(), "schemas", "avro")})
	if err != nil {
		w.t.Fatal(err)
	}
	recs := make([]*kgo.Record, 0, n)
	for seq := 0; seq < n; seq++ {
		encode := g.Codecs().EncodeOrder
		if format == "json" {
			encode = gen.EncodeOrderJSON
		}
		k, v, err := encode(g.Order(seq))
		if err != nil {
			w.t.Fatal(err)
		}
		recs = append(recs, &kgo.Record{Topic: topic, Key: k, Value: v})
	}
	if err := w.kcl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		w.t.Fatalf("produce: %v", err)
	}
}

// exactlyOnce asserts that the orders table holds every offset of the
// topic once: as many rows as offsets, none twice.
func (w *world) exactlyOnce(topic string) {
	w.t.Helper()
	var want int64
	for _, end := range w.endOffsets(topic) {
		want += end
	}
	rows := w.count(fmt.Sprintf("SELECT count() FROM %s.orders WHERE _topic = ?", w.db), topic)
	distinct := w.count(fmt.Sprintf("SELECT uniqExact(_partition, _offset) FROM %s.orders WHERE _topic = ?", w.db), topic)
	if int64(rows) != want || int64(distinct) != want {
		w.t.Fatalf("orders holds %d rows, %d distinct offsets; want %d and %d", rows, distinct, want, want)
	}
}

func (w *world) waitCommitted(group, topic string, d time.Duration) {
	w.t.Helper()
	ends := w.endOffsets(topic)
	waitUntil(w.t, "commits at the log end", d, func() bool { return itest.EqualOffsets(w.committed(group, topic), ends) })
}

// TestPartlyStoredBatchesLoadOnlyWhatIsMissing: batches that span several
// table partitions, of which only some parts are stored (what a crash
// between the parts of one INSERT leaves), are completed without loading
// anything twice. The first run loads everything; dropping two months
// leaves every batch partly stored; a second group re-reads the topic from
// the start and must load exactly the dropped rows.
func TestPartlyStoredBatchesLoadOnlyWhatIsMissing(t *testing.T) {
	for _, format := range []string{"avro", "json"} {
		t.Run(format, func(t *testing.T) { partlyStored(t, format) })
	}
}

func partlyStored(t *testing.T, format string) {
	w := newWorld(t)
	topic := w.name("orders_spread")
	w.createTopic(topic, 2)
	// 4,000 orders 1h apart: 167 days, six months; a 20,000-row batch
	// holds a partition's whole backlog and so every month.
	w.produceSpreadOrdersAs(format, topic, 4000, time.Hour)

	g1 := w.name("g_first")
	s := w.startSluice(w.sluiceConfig(g1, ordersPipelineAs(format, topic)))
	w.waitCommitted(g1, topic, 60*time.Second)
	s.stop(t)
	w.exactlyOnce(topic)

	months := w.count(fmt.Sprintf("SELECT uniqExact(toYYYYMM(created_at)) FROM %s.orders", w.db))
	if months < 5 {
		t.Fatalf("orders span %d months; the test needs batches spanning several", months)
	}
	ctx := context.Background()
	for _, m := range []string{"202602", "202604"} {
		if err := w.ch.Exec(ctx, fmt.Sprintf("ALTER TABLE %s.orders DROP PARTITION %s", w.db, m)); err != nil {
			t.Fatal(err)
		}
	}
	kept := w.count(fmt.Sprintf("SELECT count() FROM %s.orders", w.db))
	if kept == 0 || kept >= 4000 {
		t.Fatalf("after dropping two months %d rows are left; want some but not all", kept)
	}

	g2 := w.name("g_second")
	s = w.startSluice(w.sluiceConfig(g2, ordersPipelineAs(format, topic)))
	w.waitCommitted(g2, topic, 60*time.Second)
	s.stop(t)
	w.exactlyOnce(topic)
}

// TestInsertOutlivingItsTimeoutIsNotLoadedTwice makes every INSERT into the
// table take about 2 s on the server (a MATERIALIZED column that sleeps per
// row) while Sluice's INSERT timeout is 1 s: each client gives up while the
// server goes on and stores the rows. Sluice must wait for that INSERT to
// end before it reads what is stored, and must not send the rows again.
// Once the first INSERT has timed out, the column is dropped so that a
// retry, if one is needed, is fast.
//
// The shared case does the same to an INSERT that carries the batches of
// several partitions (batch.combine 4): four partitions' batches are ready at
// once, the first goes alone (0.6 s) and the other three share the next
// (1.8 s), which outlives the timeout. Each of the three must see the
// shared INSERT as its own in the server's process list (the query_id lists
// the partitions), or it would send its rows again while they are stored.
func TestInsertOutlivingItsTimeoutIsNotLoadedTwice(t *testing.T) {
	t.Run("alone", func(t *testing.T) { outlivingInsert(t, "avro", 1, 500) })
	t.Run("shared", func(t *testing.T) { outlivingInsert(t, "json", 4, 600) })
}

func outlivingInsert(t *testing.T, format string, partitions int32, records int) {
	w := newWorld(t)
	topic := w.name("orders_slow")
	w.createTopic(topic, partitions)
	w.produceSpreadOrdersAs(format, topic, records, time.Minute)
	ctx := context.Background()
	if err := w.ch.Exec(ctx, fmt.Sprintf("ALTER TABLE %s.orders ADD COLUMN _slow UInt8 MATERIALIZED sleepEachRow(0.004)", w.db)); err != nil {
		t.Fatal(err)
	}

	g := w.name("g_slow")
	cfg := w.sluiceConfig(g, ordersPipelineAs(format, topic))
	cfg.ClickHouse.InsertTimeout = time.Second
	// No pause to hide behind: only the wait for the running INSERT
	// keeps the rows from being sent twice.
	cfg.ClickHouse.UnknownOutcomeWait = time.Millisecond
	if partitions > 1 {
		cfg.Batch.Combine = 4
		for i := range cfg.Pipelines {
			cfg.Pipelines[i].Batch.Combine = 4
		}
	}
	s := w.startSluice(cfg)
	inserts := fmt.Sprintf("SELECT count() FROM system.processes WHERE query_id LIKE 'sluice:%s.orders:%%'", w.db)
	if partitions > 1 {
		// One INSERT naming several partitions: "…:<topic>:1,3,0:…".
		inserts = fmt.Sprintf("SELECT count() FROM system.processes WHERE query_id LIKE 'sluice:%s.orders:%s:%%,%%'", w.db, topic)
	}
	waitUntil(t, "an INSERT running", 30*time.Second, func() bool { return w.count(inserts) > 0 })
	time.Sleep(1500 * time.Millisecond) // past the client's timeout
	if err := w.ch.Exec(ctx, fmt.Sprintf("ALTER TABLE %s.orders DROP COLUMN _slow", w.db)); err != nil {
		t.Fatal(err)
	}
	w.waitCommitted(g, topic, 60*time.Second)
	s.stop(t)
	waitUntil(t, "no INSERT running", 20*time.Second, func() bool { return w.count(inserts) == 0 })
	w.exactlyOnce(topic)
}

// TestCutLinkDuringInsertsLosesAndDuplicatesNothing cuts every connection
// between Sluice and ClickHouse after 64 KiB (toxiproxy's limit_data, in
// this process): queries pass, every INSERT is cut in the middle of its
// data. Nothing may be committed while no INSERT can land, and once the
// link heals every record is stored once.
func TestCutLinkDuringInsertsLosesAndDuplicatesNothing(t *testing.T) {
	for _, format := range []string{"avro", "json"} {
		t.Run(format, func(t *testing.T) { cutLink(t, format) })
	}
}

func cutLink(t *testing.T, format string) {
	w := newWorld(t)
	topic := w.name("orders_cut")
	w.createTopic(topic, 2)
	w.produceSpreadOrdersAs(format, topic, 4000, 10*time.Minute)

	px := newProxy(t, clickhouse)
	g := w.name("g_cut")
	cfg := w.sluiceConfig(g, ordersPipelineAs(format, topic))
	cfg.ClickHouse.Addr = []string{px.Listen}
	px.toxic(t, `{"name":"cut","type":"limit_data","stream":"upstream","attributes":{"bytes":65536}}`)
	s := w.startSluice(cfg)
	time.Sleep(6 * time.Second)
	if n := w.count(fmt.Sprintf("SELECT count() FROM %s.orders", w.db)); n != 0 {
		t.Fatalf("%d rows stored through a link that cuts every INSERT", n)
	}
	for p, off := range w.committed(g, topic) {
		if off > 0 {
			t.Fatalf("partition %d committed at %d while no INSERT could land", p, off)
		}
	}
	px.heal(t, "cut")
	w.waitCommitted(g, topic, 60*time.Second)
	s.stop(t)
	w.exactlyOnce(topic)
}

// TestResetLinkDuringINSERTStreamsLosesAndDuplicatesNothing: a backlog's
// batches share INSERTs held open across them (clickhouse.insert_stream_wait,
// a minute here). The link to ClickHouse is slowed so that the drain takes
// a while, and reset (toxiproxy reset_peer) once a stream has been open for
// two seconds: the streams fail with their outcome unknown, their
// partitions start again from their commits, and every record ends up
// stored once. The test fails if no stream failed (the fault missed).
func TestResetLinkDuringINSERTStreamsLosesAndDuplicatesNothing(t *testing.T) {
	w := newWorld(t)
	topic := w.name("orders_stream")
	w.createTopic(topic, 2)
	w.produceSpreadOrdersAs("json", topic, 20000, 10*time.Minute)

	px := newProxy(t, clickhouse)
	g := w.name("g_stream")
	cfg := w.sluiceConfig(g, ordersPipelineAs("json", topic))
	cfg.ClickHouse.Addr = []string{px.Listen}
	cfg.ClickHouse.InsertStreamWait = time.Minute
	cfg.ClickHouse.InsertStreamRows = 1_000_000
	cfg.ClickHouse.InsertStreamBytes = 1 << 30
	cfg.Pipelines[0].Batch.MaxRows = 500
	px.toxic(t, `{"name":"slow","type":"bandwidth","stream":"upstream","attributes":{"rate":300}}`)
	s := w.startSluice(cfg)
	open := fmt.Sprintf("SELECT count() FROM system.processes WHERE startsWith(query_id, 'sluice:%s.') AND elapsed > 2", w.db)
	waitUntil(t, "an INSERT stream open for 2 s", 60*time.Second, func() bool { return w.count(open) > 0 })
	px.toxic(t, `{"name":"reset","type":"reset_peer","stream":"upstream","attributes":{"timeout":0}}`)
	time.Sleep(2 * time.Second)
	px.heal(t, "reset")
	px.heal(t, "slow")
	w.waitCommitted(g, topic, 120*time.Second)
	if n := s.metric(t, `sluice_insert_streams_total{outcome="failed",pipeline="orders"}`); n < 1 {
		t.Fatalf("%v INSERT streams failed: the reset missed them", n)
	}
	s.stop(t)
	w.exactlyOnce(topic)
}

// proxy is a fault-injecting TCP proxy (toxiproxy) run in the test process.
type proxy struct {
	*toxiproxy.Proxy
	mu sync.Mutex
}

func newProxy(t *testing.T, upstream string) *proxy {
	t.Helper()
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	p := toxiproxy.NewProxy(srv, "ch-"+strings.ReplaceAll(t.Name(), "/", "_"), "127.0.0.1:0", upstream)
	if err := p.Start(); err != nil {
		t.Fatalf("start toxiproxy to %s: %v", upstream, err)
	}
	t.Cleanup(p.Stop)
	return &proxy{Proxy: p}
}

func (p *proxy) toxic(t *testing.T, spec string) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, err := p.Toxics.AddToxicJson(strings.NewReader(spec)); err != nil {
		t.Fatalf("add toxic %s: %v", spec, err)
	}
}

func (p *proxy) heal(t *testing.T, name string) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.Toxics.RemoveToxic(context.Background(), name); err != nil {
		t.Fatalf("remove toxic %s: %v", name, err)
	}
}

// TestRecreatedTopicIsLoaded: a topic deleted and created again under its
// name starts again at offset 0, where the table holds the first
// incarnation's rows. The new incarnation's records must all be loaded
// (told apart by topic ID), once each.
func TestRecreatedTopicIsLoaded(t *testing.T) {
	w := newWorld(t)
	topic := w.name("orders_again")
	w.createTopic(topic, 1)
	w.produceOrders(topic, 1, 60)
	g := w.name("g_again")
	cfg := w.sluiceConfig(g, ordersPipeline(topic))
	s := w.startSluice(cfg)
	w.waitCommitted(g, topic, 60*time.Second)
	s.stop(t)

	ctx := context.Background()
	if _, err := w.adm.DeleteTopics(ctx, topic); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the topic created again", 60*time.Second, func() bool {
		resp, err := w.adm.CreateTopic(ctx, 1, 1, nil, topic)
		return err == nil && resp.Err == nil
	})
	// A new producer: the test's client still knows the old topic ID.
	fresh, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	w.kcl = fresh
	w.produceOrders(topic, 2, 40)
	s = w.startSluice(cfg)
	w.waitCommitted(g, topic, 60*time.Second)
	s.stop(t)

	topics, err := w.adm.ListTopics(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	id := topics[topic].ID.String()
	q := fmt.Sprintf("SELECT count() FROM %s.orders WHERE _topic = ? AND _topic_id = ?", w.db)
	if n := w.count(q, topic, id); n != 40 {
		t.Errorf("%d rows of the new incarnation, want 40", n)
	}
	if n := w.count(fmt.Sprintf("SELECT uniqExact(_offset) FROM %s.orders WHERE _topic = ? AND _topic_id = ?", w.db), topic, id); n != 40 {
		t.Errorf("%d distinct offsets of the new incarnation, want 40", n)
	}
	if n := w.count(fmt.Sprintf("SELECT count() FROM %s.orders WHERE _topic = ?", w.db), topic); n != 100 {
		t.Errorf("%d rows in all, want 60 + 40", n)
	}
	// The audit checks the current incarnation: clean.
	if code, rep, stderr := runAudit(t, filepath.Join(cfg.Dir, "sluice.yaml")); code != 0 {
		t.Errorf("audit exit %d, report %+v\nstderr: %s", code, rep, stderr)
	}
}
