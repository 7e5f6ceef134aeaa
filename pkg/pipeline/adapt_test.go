package pipeline

import (
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-etl/sluice/pkg/batch"
	"github.com/sluice-etl/sluice/pkg/record"
)

var cfgLimits = batch.Limits{MaxRows: 1600, MaxBytes: 160_000, MaxWait: time.Second}

// The effective limits under a sequence of events: a memory refusal halves
// max_rows and max_bytes together until the refused rows go in two pieces
// or more (so a batch cut by time drops further than one cut by its
// limits), never below the floor (a sixteenth); too many parts stretches
// max_wait only, up to eight times;
// growAfter successes in a row step everything back once; a step up that
// is refused at once makes the next one wait twice as many successes.
func TestAdaptiveLimits(t *testing.T) {
	type step struct {
		ev          string // "mem rows bytes", "parts", "ok"
		rows, bytes int
		wait        time.Duration
		changed     bool
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"halved together until one is at most half of what was refused", []step{
			{ev: "mem 600 60000", rows: 200, bytes: 20000, wait: time.Second, changed: true},
			{ev: "mem 200 20000", rows: 100, bytes: 10000, wait: time.Second, changed: true}, // the floor: 1600/16, 160000/16
			{ev: "mem 100 10000", rows: 100, bytes: 10000, wait: time.Second, changed: false},
		}},
		{"few large rows: bytes decide", []step{
			{ev: "mem 100 160000", rows: 800, bytes: 80000, wait: time.Second, changed: true},
			{ev: "mem 50 80000", rows: 400, bytes: 40000, wait: time.Second, changed: true},
		}},
		{"a single row refused goes to the floor at once", []step{
			{ev: "mem 1 500", rows: 100, bytes: 10000, wait: time.Second, changed: true},
		}},
		{"growth: four successes double rows and bytes, then the configured limits", []step{
			{ev: "mem 1600 160000", rows: 800, bytes: 80000, wait: time.Second, changed: true},
			{ev: "mem 800 80000", rows: 400, bytes: 40000, wait: time.Second, changed: true},
			{ev: "ok", rows: 400, bytes: 40000, wait: time.Second},
			{ev: "ok", rows: 400, bytes: 40000, wait: time.Second},
			{ev: "ok", rows: 400, bytes: 40000, wait: time.Second},
			{ev: "ok", rows: 800, bytes: 80000, wait: time.Second, changed: true},
			{ev: "ok", rows: 800, bytes: 80000, wait: time.Second},
			{ev: "ok", rows: 800, bytes: 80000, wait: time.Second},
			{ev: "ok", rows: 800, bytes: 80000, wait: time.Second},
			{ev: "ok", rows: 1600, bytes: 160000, wait: time.Second, changed: true},
			{ev: "ok", rows: 1600, bytes: 160000, wait: time.Second},
		}},
		{"a step up refused at once: the next needs eight successes", []step{
			{ev: "mem 1600 160000", rows: 800, bytes: 80000, wait: time.Second, changed: true},
			{ev: "ok"}, {ev: "ok"}, {ev: "ok"},
			{ev: "ok", rows: 1600, bytes: 160000, wait: time.Second, changed: true},
			{ev: "mem 1600 160000", rows: 800, bytes: 80000, wait: time.Second, changed: true},
			{ev: "ok"}, {ev: "ok"}, {ev: "ok"}, {ev: "ok"}, {ev: "ok"}, {ev: "ok"}, {ev: "ok"},
			{ev: "ok", rows: 1600, bytes: 160000, wait: time.Second, changed: true},
		}},
		{"a step up that holds halves the successes the next one needs", []step{
			{ev: "mem 1600 160000", rows: 800, bytes: 80000, wait: time.Second, changed: true},
			{ev: "mem 800 80000", rows: 400, bytes: 40000, wait: time.Second, changed: true},
			{ev: "ok"}, {ev: "ok"}, {ev: "ok"},
			{ev: "ok", rows: 800, bytes: 80000, wait: time.Second, changed: true},
			{ev: "mem 800 80000", rows: 400, bytes: 40000, wait: time.Second, changed: true}, // need 8
			{ev: "ok"}, {ev: "ok"}, {ev: "ok"}, {ev: "ok"}, {ev: "ok"}, {ev: "ok"}, {ev: "ok"},
			{ev: "ok", rows: 800, bytes: 80000, wait: time.Second, changed: true},
			{ev: "ok"}, {ev: "ok"}, {ev: "ok"}, // held: need 4 again
			{ev: "ok", rows: 1600, bytes: 160000, wait: time.Second, changed: true},
		}},
		{"INSERTs no larger than before a step up do not confirm it", []step{
			{ev: "mem 1600 160000", rows: 800, bytes: 80000, wait: time.Second, changed: true},
			{ev: "mem 800 80000", rows: 400, bytes: 40000, wait: time.Second, changed: true},
			{ev: "ok"}, {ev: "ok"}, {ev: "ok"},
			{ev: "ok", rows: 800, bytes: 80000, wait: time.Second, changed: true},
			{ev: "small"}, // still at 400 rows or less: no proof that 800 pass
			{ev: "mem 800 80000", rows: 400, bytes: 40000, wait: time.Second, changed: true}, // need 8
			{ev: "ok"}, {ev: "ok"}, {ev: "ok"}, {ev: "ok"}, {ev: "ok"}, {ev: "ok"}, {ev: "ok"},
			{ev: "ok", rows: 800, bytes: 80000, wait: time.Second, changed: true},
		}},
		{"a refusal resets the run of successes", []step{
			{ev: "mem 1600 160000", rows: 800, bytes: 80000, wait: time.Second, changed: true},
			{ev: "ok"}, {ev: "ok"}, {ev: "ok"},
			{ev: "parts", rows: 800, bytes: 80000, wait: 2 * time.Second, changed: true},
			{ev: "ok"}, {ev: "ok"}, {ev: "ok"},
			{ev: "ok", rows: 1600, bytes: 160000, wait: time.Second, changed: true},
		}},
		{"too many parts: max_wait doubles up to eight times, rows and bytes stay", []step{
			{ev: "parts", rows: 1600, bytes: 160000, wait: 2 * time.Second, changed: true},
			{ev: "parts", rows: 1600, bytes: 160000, wait: 4 * time.Second, changed: true},
			{ev: "parts", rows: 1600, bytes: 160000, wait: 8 * time.Second, changed: true},
			{ev: "parts", rows: 1600, bytes: 160000, wait: 8 * time.Second, changed: false},
			{ev: "ok"}, {ev: "ok"}, {ev: "ok"},
			{ev: "ok", rows: 1600, bytes: 160000, wait: 4 * time.Second, changed: true},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := newAdaptive(cfgLimits)
			var last batch.Limits = a.cur
			for i, s := range c.steps {
				var changed bool
				var rows, bytes int
				switch {
				case s.ev == "ok":
					changed = a.success(a.cur.MaxRows, a.cur.MaxBytes) // INSERTs as large as the limits
				case s.ev == "small":
					changed = a.success(1, 1)
				case s.ev == "parts":
					changed = a.parts()
				default:
					if _, err := fmt.Sscanf(s.ev, "mem %d %d", &rows, &bytes); err != nil {
						t.Fatal(err)
					}
					changed = a.memory(rows, bytes)
				}
				if changed != s.changed {
					t.Errorf("step %d (%s): changed = %v, want %v", i, s.ev, changed, s.changed)
				}
				if s.rows == 0 { // "no change" shorthand
					if a.cur != last {
						t.Errorf("step %d (%s): limits %+v, want unchanged %+v", i, s.ev, a.cur, last)
					}
					continue
				}
				want := batch.Limits{MaxRows: s.rows, MaxBytes: s.bytes, MaxWait: s.wait}
				if a.cur != want {
					t.Errorf("step %d (%s): limits %+v, want %+v", i, s.ev, a.cur, want)
				}
				last = a.cur
			}
		})
	}
}

func TestAdaptiveFloor(t *testing.T) {
	a := newAdaptive(cfgLimits)
	if f := a.floor(); f.MaxRows != 100 || f.MaxBytes != 10000 {
		t.Errorf("floor %+v, want 100 rows and 10000 bytes (a sixteenth)", f)
	}
	tiny := newAdaptive(batch.Limits{MaxRows: 3, MaxBytes: 10, MaxWait: time.Second})
	if f := tiny.floor(); f.MaxRows != 1 || f.MaxBytes != 1 {
		t.Errorf("floor of a tiny configuration %+v, want 1 row and 1 byte", f)
	}
	tiny.memory(3, 10)
	tiny.memory(1, 1)
	if p := tiny.cut(testBatch(1, 10)); p != nil {
		t.Errorf("a single row was cut in %d pieces", len(p))
	}
}

// testBatch is a batch of n records of size bytes each from offset 0.
func testBatch(n, size int) *record.Batch {
	b := &record.Batch{Topic: "events", Items: make([]record.Item, n), Last: int64(n - 1)}
	for i := range b.Items {
		b.Items[i].Rec = &kgo.Record{Topic: "events", Offset: int64(i), Value: make([]byte, size)}
		b.Bytes += size
	}
	return b
}

// cut gives consecutive pieces within the effective limits, counting only
// the items still to load; every item is in exactly one piece.
func TestAdaptiveCut(t *testing.T) {
	a := newAdaptive(cfgLimits)
	a.cur.MaxRows, a.cur.MaxBytes = 4, 1000

	if p := a.cut(testBatch(4, 100)); p != nil {
		t.Fatalf("a batch within the limits was cut in %d pieces", len(p))
	}
	shape := func(ps []*record.Batch) string {
		s := ""
		for _, p := range ps {
			s += fmt.Sprintf("[%d-%d]", p.First, p.Last)
		}
		return s
	}
	cases := []struct {
		name string
		b    *record.Batch
		want string
	}{
		{"by rows", testBatch(10, 100), "[0-3][4-7][8-9]"},
		{"by bytes", testBatch(5, 400), "[0-1][2-3][4-4]"},
		{"a record over max_bytes goes alone", func() *record.Batch {
			b := testBatch(4, 100)
			b.Items[1].Rec.Value = make([]byte, 5000)
			return b
		}(), "[0-0][1-1][2-3]"},
		{"stored and failed items do not count", func() *record.Batch {
			b := testBatch(10, 100)
			b.Items[0].MarkStored()
			b.Items[1].MarkStored()
			b.Items[5].Fail(record.StageDecode, "bad")
			return b
		}(), "[0-6][7-9]"},
	}
	for _, c := range cases {
		ps := a.cut(c.b)
		if got := shape(ps); got != c.want {
			t.Errorf("%s: pieces %s, want %s", c.name, got, c.want)
		}
		n := 0
		for _, p := range ps {
			n += len(p.Items)
		}
		if n != len(c.b.Items) {
			t.Errorf("%s: pieces hold %d items, the batch %d", c.name, n, len(c.b.Items))
		}
	}
}
