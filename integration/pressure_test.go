//go:build integration

package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// Adaptive batches under pressure (docs/DESIGN.md, "Adaptive batches"),
// against the real server's own refusals.

// lowMemUser is the ClickHouse user integration/clickhouse.sh creates with
// max_memory_usage 100 MB per query.
const lowMemUser = "sluice_lowmem"

// TestInsertsShortOfMemoryLoadInSmallerPieces loads 20,000 orders, ten
// minutes apart (every batch spans several table partitions, so a refused
// INSERT may have committed some of its parts), as a user whose queries may
// use 48 MB, into an orders table with a MATERIALIZED column of 2 KB per
// row: an INSERT of the configured 20,000 rows needs far more, and the
// server refuses it with 241 MEMORY_LIMIT_EXCEEDED. Sluice must load the
// batch in smaller pieces and cut smaller batches (the effective max_rows
// drops), every order stored once; once the column is gone and the server
// has memory for them, the limits grow back to the configured ones.
// Without the adaptation the refused batch is retried whole forever and
// nothing is committed.
func TestInsertsShortOfMemoryLoadInSmallerPieces(t *testing.T) {
	w := newWorld(t)
	topic := w.name("orders_mem")
	w.createTopic(topic, 1)
	w.produceSpreadOrders(topic, 20000, 10*time.Minute)
	ctx := context.Background()
	pad := fmt.Sprintf("ALTER TABLE %s.orders ADD COLUMN _pad String MATERIALIZED arrayStringConcat(arrayMap(x -> '%s', range(200)))",
		w.db, strings.Repeat("x", 20))
	if err := w.ch.Exec(ctx, pad); err != nil {
		t.Fatal(err)
	}

	g := w.name("g_mem")
	cfg := w.sluiceConfig(g, ordersPipeline(topic))
	cfg.ClickHouse.Username = lowMemUser
	s := w.startSluice(cfg)
	w.waitCommitted(g, topic, 45*time.Second)
	refused := s.metric(t, `sluice_insert_pressure_total{code="241",pipeline="orders"}`)
	rows := s.metric(t, `sluice_batch_effective_max_rows{pipeline="orders"}`)
	t.Logf("%v INSERTs refused for memory; effective max_rows %v; %v rows found stored by a refused INSERT's parts and not sent again",
		refused, rows, s.metric(t, `sluice_records_skipped_total{pipeline="orders"}`))
	if refused == 0 {
		t.Fatal("no INSERT was refused for memory: the test does not provoke 241")
	}
	if rows >= 20000 || rows < 20000/16 {
		t.Fatalf("effective max_rows %v; want lowered below the configured 20000, not below the floor 1250", rows)
	}
	w.exactlyOnce(topic)

	// Memory is no object any more: the limits grow back as INSERTs pass.
	if err := w.ch.Exec(ctx, fmt.Sprintf("ALTER TABLE %s.orders DROP COLUMN _pad", w.db)); err != nil {
		t.Fatal(err)
	}
	for i := 0; s.metric(t, `sluice_batch_effective_max_rows{pipeline="orders"}`) < 20000; i++ {
		if i == 10 {
			t.Fatalf("effective max_rows %v after %d rounds; want back at 20000",
				s.metric(t, `sluice_batch_effective_max_rows{pipeline="orders"}`), i)
		}
		w.produceSpreadOrders(topic, 20000, 10*time.Minute)
		w.waitCommitted(g, topic, 30*time.Second)
	}
	s.stop(t)
	w.exactlyOnce(topic)
}

// TestMemoryRefusedAfterTheTableStoredTheBatch: a 241 does not say that
// nothing is stored. A materialized view that needs 4 KB per row runs out
// the user's 100 MB after the table's own parts are
// committed (18.16 runs views after them): the refused batch is in the
// table. Sluice lowers its limits and loads the batch in pieces, whose
// reads find every row stored: nothing is sent twice, nothing
// dead-lettered, every order once (the view's table lacks the batch, as
// for any failed view: docs/DESIGN.md, "Materialized views").
func TestMemoryRefusedAfterTheTableStoredTheBatch(t *testing.T) {
	w := newWorld(t)
	topic := w.name("orders_memview")
	w.createTopic(topic, 1)
	w.produceSpreadOrders(topic, 20000, 10*time.Minute)
	ctx := context.Background()
	for _, q := range []string{
		fmt.Sprintf("CREATE TABLE %s.padded (_offset UInt64, pad String) ENGINE = MergeTree ORDER BY _offset", w.db),
		fmt.Sprintf("CREATE MATERIALIZED VIEW %[1]s.pad_mv TO %[1]s.padded AS SELECT _offset, arrayStringConcat(arrayMap(x -> '%[2]s', range(200))) AS pad FROM %[1]s.orders",
			w.db, strings.Repeat("x", 20)),
	} {
		if err := w.ch.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	g := w.name("g_memview")
	cfg := w.sluiceConfig(g, ordersPipeline(topic))
	cfg.ClickHouse.Username = lowMemUser
	s := w.startSluice(cfg)
	w.waitCommitted(g, topic, 45*time.Second)
	refused := s.metric(t, `sluice_insert_pressure_total{code="241",pipeline="orders"}`)
	skipped := s.metric(t, `sluice_records_skipped_total{pipeline="orders"}`)
	t.Logf("%v INSERTs refused for memory; %v rows found stored after a refusal and not sent again; the view's table has %d of 20000",
		refused, skipped, w.count(fmt.Sprintf("SELECT count() FROM %s.padded", w.db)))
	if refused == 0 || skipped == 0 {
		t.Fatalf("%v INSERTs refused for memory, %v rows found stored after one; the test needs a refusal after the table stored rows", refused, skipped)
	}
	s.stop(t)
	w.exactlyOnce(topic)
	if n := w.endOffsets(w.name("dlq"))[0]; n != 0 {
		t.Fatalf("%d dead letters; no row is to blame for the server's memory", n)
	}
}

// TestTooManyPartsBacksOffUntilMergesCatchUp recreates the orders table
// with parts_to_throw_insert = 4 and stops its merges: four INSERTs make
// four parts, and the server refuses the fifth with 252 "Too many parts"
// — before it stores anything. Sluice must not split the batch (that would
// make more parts): it backs off, stretches max_wait (later batches are
// cut later, so fewer INSERTs) and sends the same rows whole again; once
// merges run again, they load, every order once. Without the adaptation
// the batch is retried as any transient error (no pressure counted, no
// longer max_wait).
func TestTooManyPartsBacksOffUntilMergesCatchUp(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	var ddl string
	if err := w.ch.QueryRow(ctx, fmt.Sprintf("SHOW CREATE TABLE %s.orders", w.db)).Scan(&ddl); err != nil {
		t.Fatal(err)
	}
	const granularity = "index_granularity = 8192"
	if !strings.Contains(ddl, granularity) {
		t.Fatalf("unexpected DDL, no %q: %s", granularity, ddl)
	}
	ddl = strings.Replace(ddl, granularity, granularity+", parts_to_delay_insert = 4, parts_to_throw_insert = 4", 1)
	for _, q := range []string{"DROP TABLE " + w.db + ".orders", ddl, "SYSTEM STOP MERGES " + w.db + ".orders"} {
		if err := w.ch.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	merging := false
	t.Cleanup(func() {
		if !merging {
			_ = w.ch.Exec(context.Background(), "SYSTEM START MERGES "+w.db+".orders")
		}
	})
	topic := w.name("orders_parts")
	w.createTopic(topic, 1)
	g := w.name("g_parts")
	s := w.startSluice(w.sluiceConfig(g, ordersPipeline(topic)))

	// Four batches, one INSERT (one part: the orders are a second apart,
	// in one month) each.
	for i := 0; i < 4; i++ {
		w.produceSpreadOrders(topic, 500, time.Second)
		w.waitCommitted(g, topic, 20*time.Second)
	}
	parts := fmt.Sprintf("SELECT count() FROM system.parts WHERE database = '%s' AND table = 'orders' AND active", w.db)
	if n := w.count(parts); n != 4 {
		t.Fatalf("%d active parts after four INSERTs with merges stopped, want 4", n)
	}
	// The fifth is refused, and retried after pauses.
	w.produceSpreadOrders(topic, 500, time.Second)
	refused := `sluice_insert_pressure_total{code="252",pipeline="orders"}`
	waitUntil(t, "two INSERTs refused for too many parts", 20*time.Second, func() bool { return s.metric(t, refused) >= 2 })
	if wait := s.metric(t, `sluice_batch_effective_max_wait_seconds{pipeline="orders"}`); wait <= 0.3 {
		t.Errorf("effective max_wait %vs while the table has too many parts; want stretched past the configured 0.3s", wait)
	}
	if rows := s.metric(t, `sluice_batch_effective_max_rows{pipeline="orders"}`); rows != 20000 {
		t.Errorf("effective max_rows %v; too many parts must not make batches smaller", rows)
	}
	if n := w.count(parts); n != 4 {
		t.Errorf("%d active parts while refused; want 4 (nothing stored, nothing split)", n)
	}
	if n := w.count(fmt.Sprintf("SELECT count() FROM %s.orders", w.db)); n != 2000 {
		t.Errorf("the table holds %d rows while the fifth batch is refused; want the first four batches' 2000", n)
	}

	// Merges run again, and merge the four parts into one at once (the
	// background pool would take its time with four small parts).
	merging = true
	for _, q := range []string{"SYSTEM START MERGES " + w.db + ".orders", "OPTIMIZE TABLE " + w.db + ".orders FINAL"} {
		if err := w.ch.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	w.waitCommitted(g, topic, 40*time.Second)
	t.Logf("%v INSERTs refused for too many parts", s.metric(t, refused))
	s.stop(t)
	w.exactlyOnce(topic)
}
