package pipeline

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// reads returns how often the sink was asked Stored and Highest.
func (s *memSink) reads() (stored, highest int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.storedReads, s.highestReads
}

// A partition's first batch under an assignment reads the table (its range
// and the highest offset above it); the batches after it lie above
// everything the table held then and everything the worker sent since, so
// they are loaded without a read (cleanRegion).
func TestLaterBatchesOfAnAssignmentSkipTheStoredRead(t *testing.T) {
	f := newFixture(t, 1)
	f.produceN(500, nil)
	s := newMemSink()
	r := f.start("g-clean", s, small)
	waitFor(t, "commit at 500", 10*time.Second, func() bool { return f.committed("g-clean")[0] == 500 })
	r.stop(t)
	if total, distinct := s.stats(); total != 500 || distinct != 500 {
		t.Fatalf("table holds %d rows, %d distinct; want 500 and 500", total, distinct)
	}
	stored, highest := s.reads()
	read := testutil.ToFloat64(r.engine.m.StoredReads.WithLabelValues("events", "read"))
	skipped := testutil.ToFloat64(r.engine.m.StoredReads.WithLabelValues("events", "skipped"))
	if stored != 1 || highest != 1 || read != 1 {
		t.Fatalf("Stored asked %d times, Highest %d, reads counted %v; want 1 each", stored, highest, read)
	}
	if skipped < 4 {
		t.Fatalf("%v batches skipped the read; want at least 4 of 500 records in batches of 100", skipped)
	}
}

// Rows written while another member owned the partition lie in what was
// this worker's clean region: once the group confirms an assignment again
// (a new Engine.member pointer, as every assigned callback stores), the
// next batch reads the table and finds them. Without the assignment in
// the region's key they would be loaded twice.
func TestANewAssignmentReadsTheTableAgain(t *testing.T) {
	f := newFixture(t, 1)
	f.produceN(200, nil)
	s := newMemSink()
	r := f.start("g-clean2", s, small)
	waitFor(t, "commit at 200", 10*time.Second, func() bool { return f.committed("g-clean2")[0] == 200 })
	s.set(func(s *memSink) {
		for o := int64(250); o < 260; o++ {
			s.rows[fmt.Sprintf("events/0/%d", o)] = 1
			s.order["events/0"] = append(s.order["events/0"], o)
			s.total++
		}
	})
	id := *r.engine.member.Load()
	r.engine.member.Store(&id)
	f.produceN(200, nil)
	waitFor(t, "commit at 400", 10*time.Second, func() bool { return f.committed("g-clean2")[0] == 400 })
	r.stop(t)
	if total, distinct := s.stats(); total != 400 || distinct != 400 {
		t.Fatalf("table holds %d rows, %d distinct; want 400 and 400 (250..259 were stored by another owner)", total, distinct)
	}
	if stored, highest := s.reads(); stored != 2 || highest != 2 {
		t.Fatalf("Stored asked %d times, Highest %d; want 2 each (one per assignment)", stored, highest)
	}
}
