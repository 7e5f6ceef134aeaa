package pipeline

import (
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sluice-etl/sluice/pkg/batch"
	"github.com/sluice-etl/sluice/pkg/record"
)

// Tests of the adaptation to a ClickHouse server under pressure (adapt.go)
// on the engine with an in-process Kafka and a fake table.

// errMemory is what ClickHouse 18.16 answers an INSERT it has no memory for.
func errMemory() error {
	return &clickhouse.Exception{Code: 241, Name: "DB::Exception",
		Message: "Memory limit (for query) exceeded: would use 33.04 MiB (attempt to allocate chunk of 16777216 bytes), maximum: 28.61 MiB"}
}

func errTooManyParts() error {
	return &clickhouse.Exception{Code: 252, Name: "DB::Exception",
		Message: "Too many parts (5). Merges are processing significantly slower than inserts.."}
}

func gauge(r *running, g string) float64 {
	m := r.engine.m
	switch g {
	case "rows":
		return testutil.ToFloat64(m.EffectiveMaxRows.WithLabelValues("events"))
	case "bytes":
		return testutil.ToFloat64(m.EffectiveMaxBytes.WithLabelValues("events"))
	}
	return testutil.ToFloat64(m.EffectiveMaxWait.WithLabelValues("events"))
}

func pressure(r *running, code string) float64 {
	return testutil.ToFloat64(r.engine.m.Pressure.WithLabelValues("events", code))
}

// A server that has memory for INSERTs of at most 150 rows, and that
// commits the part of the first table partition of a larger one before it
// gives up (as ClickHouse writes one part per table partition): the
// refused batches are loaded in pieces, each stored once, the partition's
// next batches are cut small enough (so only a few INSERTs are refused, not
// every batch), failed records are dead-lettered once, one WARN tells the
// episode, and the gauges show the lowered limit.
func TestMemoryRefusalLoadsInSmallerPiecesAndCutsSmallerBatches(t *testing.T) {
	f := newFixture(t, 1)
	bad := func(i int) bool { return i%500 == 7 }
	f.produceN(4000, bad) // five 800-row batches
	s := &shapedSink{memSink: newMemSink(), firstPart: true, refuse: func(rows []*record.Item) error {
		if len(rows) > 150 {
			return fmt.Errorf("sink: events insert: %w", errMemory())
		}
		return nil
	}}
	h := &countingHandler{}
	r := f.startWith("g_mem", s, batch.Limits{MaxRows: 800, MaxBytes: 1 << 20, MaxWait: 50 * time.Millisecond},
		func(o *Options) { o.Log = slog.New(h) })
	waitFor(t, "commit at 4000", 20*time.Second, func() bool { return f.committed("g_mem")[0] == 4000 })
	if g := gauge(r, "rows"); g >= 800 || g < 50 {
		t.Errorf("sluice_batch_effective_max_rows = %v, want lowered below 800, not under the floor 50", g)
	}
	if g := gauge(r, "bytes"); g >= 1<<20 {
		t.Errorf("sluice_batch_effective_max_bytes = %v, want lowered below %d", g, 1<<20)
	}
	r.stop(t)

	if total, distinct := s.stats(); total != 3992 || distinct != 3992 {
		t.Fatalf("stored %d rows, %d distinct; want 3992 and 3992", total, distinct)
	}
	var badOffs []int64
	for i := 0; i < 4000; i++ {
		if bad(i) {
			badOffs = append(badOffs, int64(i))
		}
	}
	onceEach(t, f.letters(len(badOffs)), badOffs)
	refused := 0
	for _, offs := range s.sent() {
		if len(offs) > 150 {
			refused++
		}
	}
	t.Logf("%d INSERTs refused of %d", refused, len(s.sent()))
	// 800, 400 and 200 rows for the first batch, then a step up now and
	// then (each refused at once, each making the next wait longer);
	// refusing every batch would be 15 or more.
	if refused < 3 || refused > 8 {
		t.Errorf("%d INSERTs refused; want the first batch's 3 and few more (the next batches are cut smaller)", refused)
	}
	if got := pressure(r, "241"); got != float64(refused) {
		t.Errorf("sluice_insert_pressure_total{code=241} = %v, want %d", got, refused)
	}
	if n := h.count("WARN", "clickhouse is short of memory"); n != 1 {
		t.Errorf("%d WARNs for the memory episode, want 1", n)
	}
	if n := h.count("WARN", "load failed; retrying"); n != 0 {
		t.Errorf("%d retry WARNs; a refusal for memory is not retried whole above the floor", n)
	}
}

// Memory runs short for a moment (three refusals, whatever the size): the
// limits drop, then grow back to the configured ones as INSERTs pass, the
// episode ending with one INFO.
func TestBatchLimitsGrowBackOnceInsertsPass(t *testing.T) {
	f := newFixture(t, 1)
	f.produceN(800, nil)
	var refusals atomic.Int32
	refusals.Store(3)
	s := &shapedSink{memSink: newMemSink(), refuse: func(rows []*record.Item) error {
		if refusals.Add(-1) >= 0 {
			return errMemory()
		}
		return nil
	}}
	h := &countingHandler{}
	r := f.startWith("g_grow", s, batch.Limits{MaxRows: 800, MaxBytes: 1 << 20, MaxWait: 50 * time.Millisecond},
		func(o *Options) { o.Log = slog.New(h) })
	waitFor(t, "commit at 800", 10*time.Second, func() bool { return f.committed("g_grow")[0] == 800 })
	if g := gauge(r, "rows"); g >= 800 {
		t.Errorf("sluice_batch_effective_max_rows = %v after three refusals, want below 800", g)
	}
	// More records: the next batches are cut at the lowered limit, which
	// doubles every four INSERTs that pass.
	for i := 0; gauge(r, "rows") < 800; i++ {
		if i == 20 {
			t.Fatalf("limits not back at 800 rows after 20 rounds: %v", gauge(r, "rows"))
		}
		f.produceN(400, nil)
		end := f.endOffset(f.topic, 0)
		waitFor(t, "the round committed", 10*time.Second, func() bool { return f.committed("g_grow")[0] == end })
	}
	r.stop(t)
	total, distinct := s.stats()
	if end := int(f.endOffset(f.topic, 0)); total != end || distinct != end {
		t.Fatalf("stored %d rows, %d distinct; want %d and %d", total, distinct, end, end)
	}
	if n := h.count("WARN", "clickhouse is short of memory"); n != 1 {
		t.Errorf("%d WARNs for the memory episode, want 1", n)
	}
	if n := h.count("INFO", "batch limits back at the configured ones"); n != 1 {
		t.Errorf("%d INFOs for the episode's end, want 1", n)
	}
	if g := gauge(r, "bytes"); g != 1<<20 {
		t.Errorf("sluice_batch_effective_max_bytes = %v at the end, want the configured %d", g, 1<<20)
	}
}

// A server that refuses every INSERT for memory, however small: the batch
// goes down to pieces at the floor (a sixteenth of max_rows) and no
// further, which are retried with backoff — nothing dead-lettered, nothing
// committed, the engine not ready, one WARN — and load once memory returns.
func TestMemoryRefusalAtTheFloorIsRetriedNeverDeadLettered(t *testing.T) {
	f := newFixture(t, 1)
	f.produceN(160, nil)
	var short atomic.Bool
	short.Store(true)
	s := &shapedSink{memSink: newMemSink(), refuse: func(rows []*record.Item) error {
		if short.Load() {
			return errMemory()
		}
		return nil
	}}
	h := &countingHandler{}
	r := f.startWith("g_floor", s, batch.Limits{MaxRows: 160, MaxBytes: 1 << 20, MaxWait: 50 * time.Millisecond},
		func(o *Options) { o.Log = slog.New(h) })
	atFloor := func() int {
		n := 0
		for _, offs := range s.sent() {
			if len(offs) == 10 && offs[0] == 0 {
				n++
			}
		}
		return n
	}
	waitFor(t, "the first piece at the floor refused three times", 10*time.Second, func() bool { return atFloor() >= 3 })
	for _, offs := range s.sent() {
		if len(offs) < 10 {
			t.Fatalf("an INSERT of %d rows: below the floor of 10", len(offs))
		}
	}
	if r.engine.Ready() {
		t.Errorf("ready while every INSERT is refused")
	}
	if c := f.committed("g_floor")[0]; c != 0 {
		t.Errorf("committed %d while nothing could be stored", c)
	}
	if g := gauge(r, "rows"); g != 10 {
		t.Errorf("sluice_batch_effective_max_rows = %v, want the floor 10", g)
	}
	short.Store(false)
	waitFor(t, "commit at 160", 10*time.Second, func() bool { return f.committed("g_floor")[0] == 160 })
	r.stop(t)
	if total, distinct := s.stats(); total != 160 || distinct != 160 {
		t.Fatalf("stored %d rows, %d distinct; want 160 and 160", total, distinct)
	}
	if n := f.endOffset("dlq", 0); n != 0 {
		t.Fatalf("%d dead letters; no row is to blame for the server's memory", n)
	}
	if n := h.count("WARN", "clickhouse is short of memory"); n != 1 {
		t.Errorf("%d WARNs for the memory episode, want 1 (not one per retry)", n)
	}
	if n := h.count("INFO", "the INSERT is refused for memory at the smallest batch size"); n != 1 {
		t.Errorf("%d INFOs for reaching the floor, want 1", n)
	}
	if n := h.count("WARN", "load failed; retrying"); n != 0 {
		t.Errorf("%d retry WARNs, want none (one WARN per episode)", n)
	}
}

// The other meaning of 252, "Too many parts ... Merges are processing
// significantly slower than inserts", is the table being busy: the batch
// is retried whole, not split, after pauses of at least PartsBackoff that
// let merges catch up; max_wait is stretched meanwhile (later batches are
// cut later, so fewer INSERTs make fewer parts) and shrinks back once
// INSERTs pass. One WARN for the episode.
func TestTooManyPartsIsRetriedWholeAfterAPause(t *testing.T) {
	f := newFixture(t, 1)
	f.produceN(100, nil)
	var mu sync.Mutex
	busy := 2
	s := &shapedSink{memSink: newMemSink(), refuse: func([]*record.Item) error {
		mu.Lock()
		defer mu.Unlock()
		if busy == 0 {
			return nil
		}
		busy--
		return errTooManyParts()
	}}
	h := &countingHandler{}
	const pause = 300 * time.Millisecond
	limits := batch.Limits{MaxRows: 100, MaxBytes: 1 << 20, MaxWait: 50 * time.Millisecond}
	r := f.startWith("g_busy", s, limits, func(o *Options) {
		o.OutcomeWait = 10 * time.Millisecond
		o.PartsBackoff = pause
		o.Log = slog.New(h)
	})
	waitFor(t, "commit at 100", 10*time.Second, func() bool { return f.committed("g_busy")[0] == 100 })
	if g := gauge(r, "wait"); g != 0.2 {
		t.Errorf("sluice_batch_effective_max_wait_seconds = %v after two refusals, want 0.2 (50ms doubled twice)", g)
	}
	if g := gauge(r, "rows"); g != 100 {
		t.Errorf("sluice_batch_effective_max_rows = %v, want 100: too many parts does not make batches smaller", g)
	}
	sends, at := s.sent(), s.sentAt()
	if len(sends) != 3 {
		t.Fatalf("%d sends, want 3 (two refused, one stored)", len(sends))
	}
	for i, offs := range sends {
		if len(offs) != 100 {
			t.Fatalf("send %d held %d rows; a busy table is retried with the whole batch", i, len(offs))
		}
	}
	for i := 1; i < len(at); i++ {
		if gap := at[i].Sub(at[i-1]); gap < pause {
			t.Errorf("retry %d came %v after the refusal, want at least %v", i, gap, pause)
		}
	}
	// INSERTs that pass bring max_wait back to the configured one.
	for i := 0; gauge(r, "wait") > 0.05; i++ {
		if i == 20 {
			t.Fatalf("max_wait not back at 50ms after 20 batches: %vs", gauge(r, "wait"))
		}
		f.produceN(100, nil)
		end := f.endOffset(f.topic, 0)
		waitFor(t, "the batch committed", 10*time.Second, func() bool { return f.committed("g_busy")[0] == end })
	}
	r.stop(t)
	total, distinct := s.stats()
	if end := int(f.endOffset(f.topic, 0)); total != end || distinct != end {
		t.Fatalf("stored %d rows, %d distinct; want %d and %d", total, distinct, end, end)
	}
	if n := f.endOffset("dlq", 0); n != 0 {
		t.Fatalf("%d dead letters for a busy table", n)
	}
	if got := pressure(r, "252"); got != 2 {
		t.Errorf("sluice_insert_pressure_total{code=252} = %v, want 2", got)
	}
	if n := h.count("WARN", "the table has too many active parts"); n != 1 {
		t.Errorf("%d WARNs for the episode, want 1", n)
	}
	if n := h.count("WARN", "load failed; retrying"); n != 0 {
		t.Errorf("%d retry WARNs, want none (one WARN per episode)", n)
	}
	if n := h.count("INFO", "batch limits back at the configured ones"); n != 1 {
		t.Errorf("%d INFOs for the episode's end, want 1", n)
	}
}
