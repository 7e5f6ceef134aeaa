//go:build integration

package integration

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/sluice-etl/sluice/pkg/sink"
)

// TestStoredReadsTheRangeOnEveryEngine: the stored offsets read (invariant
// 3) and the highest-offset read beside it (Table.Highest) filter in PREWHERE on a MergeTree table and in WHERE on any other
// engine (a Log table refuses PREWHERE). On both it returns exactly the
// offsets of the range for the topic, partition and incarnation asked, and
// counts another incarnation's rows of the range as foreign; rows of the
// same offsets in another topic or partition are not the range's. A
// MergeTree table replaced by a view after start-up is still read (the
// server refuses PREWHERE on a view, and the read falls back to WHERE).
func TestStoredReadsTheRangeOnEveryEngine(t *testing.T) {
	w := newWorld(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, c := range []struct{ name, engine string }{
		{"stored_mergetree", "MergeTree ORDER BY (_topic, _partition, _offset)"},
		{"stored_log", "Log"},
	} {
		name, engine := c.name, c.engine
		t.Run(name, func(t *testing.T) {
			ddl := fmt.Sprintf("CREATE TABLE `%s`.%s (v String, _topic String, _partition UInt32, _offset UInt64, _topic_id String, _ingested_at DateTime) ENGINE = %s", w.db, name, engine)
			if err := w.ch.Exec(ctx, ddl); err != nil {
				t.Fatal(err)
			}
			// Offsets 0..99 of orders[1] under id A, 100..119 under id B (a
			// later incarnation), 42 twice and 43 again without an id, and
			// the same offsets in orders[2] and in payments[1] as decoys;
			// an INSERT each, so several parts.
			for _, r := range []struct{ cols, from string }{
				{"'orders', 1, number, if(number >= 100, 'B', 'A')", " FROM numbers(120)"},
				{"'orders', 2, number, 'A'", " FROM numbers(120)"},
				{"'payments', 1, number, 'A'", " FROM numbers(120)"},
				{"'orders', 1, 42, 'A'", ""},
				{"'orders', 1, 43, ''", ""},
			} {
				q := fmt.Sprintf("INSERT INTO `%s`.%s SELECT 'x', %s, now()%s", w.db, name, r.cols, r.from)
				if err := w.ch.Exec(ctx, q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			tb, err := sink.NewTable(ctx, w.ch, w.db, name, 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			got, foreign, err := tb.Stored(ctx, "orders", 1, "A", 40, 104)
			if err != nil {
				t.Fatal(err)
			}
			var want []int64
			for off := int64(40); off < 100; off++ {
				want = append(want, off)
				if off == 42 || off == 43 { // stored twice; 43's copy has no id
					want = append(want, off)
				}
			}
			if !slices.Equal(got, want) {
				t.Errorf("stored offsets of orders[1] 40..104:\n got %v\nwant %v", got, want)
			}
			if foreign != 5 {
				t.Errorf("foreign rows in orders[1] 40..104 = %d, want 5 (100..104 of incarnation B)", foreign)
			}
			if got, _, err := tb.Stored(ctx, "orders", 1, "A", 120, 200); err != nil || len(got) != 0 {
				t.Errorf("a range past the stored rows: %v, %v; want none", got, err)
			}
			checkHighest(ctx, t, tb)
			if engine == "Log" {
				return
			}
			// The table replaced by a view over it after NewTable: the
			// server refuses PREWHERE there, and the read falls back.
			for _, q := range []string{
				fmt.Sprintf("RENAME TABLE `%s`.%s TO `%s`.%s_real", w.db, name, w.db, name),
				fmt.Sprintf("CREATE VIEW `%s`.%s AS SELECT * FROM `%s`.%s_real", w.db, name, w.db, name),
			} {
				if err := w.ch.Exec(ctx, q); err != nil {
					t.Fatal(err)
				}
			}
			for range 2 {
				got, foreign, err := tb.Stored(ctx, "orders", 1, "A", 40, 104)
				if err != nil || !slices.Equal(got, want) || foreign != 5 {
					t.Errorf("through the view: %v (%d foreign), %v; want %v (5 foreign)", got, foreign, err, want)
				}
				checkHighest(ctx, t, tb)
			}
		})
	}
}

// checkHighest asks Table.Highest about the rows TestStoredReadsTheRangeOnEveryEngine
// wrote: orders[1] 0..99 under A, 100..119 under B, 42 again under A and 43
// without an id; orders[2] and payments[1] as decoys.
func checkHighest(ctx context.Context, t *testing.T, tb *sink.Table) {
	t.Helper()
	for _, c := range []struct {
		topic       string
		partition   int32
		id          string
		after, want int64
		wantForeign int
	}{
		{"orders", 1, "A", 40, 99, 20},  // 100..119 are B's
		{"orders", 1, "B", 40, 119, 60}, // 41..99 and 42's copy are A's; 43 has no id
		{"orders", 1, "", 50, 119, 0},   // no id asked: every row counts
		{"orders", 1, "A", 119, -1, 0},  // nothing above the last row
		{"orders", 3, "A", -1, -1, 0},   // a partition without rows
		{"orders", 1, "A", -1, 99, 20},  // from offset 0
	} {
		got, foreign, err := tb.Highest(ctx, c.topic, c.partition, c.id, c.after)
		if err != nil || got != c.want || foreign != c.wantForeign {
			t.Errorf("Highest(%s[%d], id %q, above %d) = %d (%d foreign), %v; want %d (%d foreign)",
				c.topic, c.partition, c.id, c.after, got, foreign, err, c.want, c.wantForeign)
		}
	}
}
