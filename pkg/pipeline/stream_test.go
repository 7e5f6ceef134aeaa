package pipeline

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-etl/sluice/pkg/batch"
	"github.com/sluice-etl/sluice/pkg/record"
)

// streamSink is a memSink whose writers hold INSERT streams: a stream's
// rows are stored when it ends (ClickHouse writes the squashed block then),
// and failEnds makes an End store every other row and fail (an INSERT
// whose squashed blocks were partly written before the link broke).
type streamSink struct {
	*memSink
	opened, ended, failEnds int
	// sends counts the batches sent alone (Send).
	sends int
}

func newStreamSink() *streamSink { return &streamSink{memSink: newMemSink()} }

func (s *streamSink) NewWriter() Writer { return &streamWriter{memWriter{s: s.memSink}, s} }

type streamWriter struct {
	memWriter
	ss *streamSink
}

func (w *streamWriter) Send(ctx context.Context, b *record.Batch) error {
	w.s.mu.Lock()
	w.ss.sends++
	w.s.mu.Unlock()
	return w.memWriter.Send(ctx, b)
}

func (w *streamWriter) CanStream() bool { return true }

func (w *streamWriter) OpenStream(_ context.Context, b *record.Batch, _, _ int, _ time.Duration) (insertStream, error) {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	w.ss.opened++
	w.s.running++ // listed while open, as ClickHouse lists an INSERT
	return &memStream{w: w, topic: b.Topic, partition: b.Partition}, nil
}

type memStream struct {
	w         *streamWriter
	topic     string
	partition int32
	rows      []*record.Item
	done      bool
}

func (m *memStream) Append(b *record.Batch) error {
	for _, it := range m.w.rows {
		// Copies: the batch's items are recycled once it is done.
		m.rows = append(m.rows, &record.Item{Rec: &kgo.Record{Offset: it.Offset()}})
	}
	return nil
}

func (m *memStream) End() error {
	s := m.w.s
	s.mu.Lock()
	defer s.mu.Unlock()
	m.finish()
	if m.w.ss.failEnds > 0 {
		m.w.ss.failEnds--
		s.store(m.topic, m.partition, everyOther(m.rows))
		return errors.New("read: connection reset by peer")
	}
	s.store(m.topic, m.partition, m.rows)
	m.w.ss.ended++
	return nil
}

func (m *memStream) Abort() {
	m.w.s.mu.Lock()
	defer m.w.s.mu.Unlock()
	m.finish()
}

// finish takes the stream off the running list once; s.mu is held.
func (m *memStream) finish() {
	if !m.done {
		m.done = true
		m.w.s.running--
	}
}

func (s *streamSink) counts() (opened, ended, sends int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.opened, s.ended, s.sends
}

// A backlog's batches, cut full, share INSERT streams of up to StreamRows
// rows: the first batch of the assignment goes alone (it reads the table),
// the rest in streams, and the end is committed once the last stream ended.
func TestBacklogBatchesShareINSERTStreams(t *testing.T) {
	f := newFixture(t, 1)
	f.produceN(1000, nil)
	s := newStreamSink()
	limits := batch.Limits{MaxRows: 100, MaxBytes: 1 << 20, MaxWait: 50 * time.Millisecond}
	r := f.startWith("g-stream", s, limits, func(o *Options) {
		o.StreamWait, o.StreamRows, o.StreamBytes = time.Minute, 300, 1<<30
	})
	waitFor(t, "commit at 1000", 10*time.Second, func() bool { return f.committed("g-stream")[0] == 1000 })
	r.stop(t)
	if total, distinct := s.stats(); total != 1000 || distinct != 1000 {
		t.Fatalf("table holds %d rows, %d distinct; want 1000 and 1000", total, distinct)
	}
	opened, ended, sends := s.counts()
	// 100 alone, then 900 in streams of 300.
	if sends != 1 || opened != 3 || ended != 3 {
		t.Fatalf("%d batches sent alone, %d streams opened, %d ended; want 1, 3, 3", sends, opened, ended)
	}
}

// A stream whose outcome is unknown (End failed after half its rows were
// written) starts the partition again from its last commit: every record
// ends up stored once, and the failed stream's range goes one INSERT per
// batch before streams resume.
func TestAFailedStreamStartsThePartitionAgainFromItsCommit(t *testing.T) {
	f := newFixture(t, 1)
	f.produceN(1000, nil)
	s := newStreamSink()
	s.failEnds = 1
	limits := batch.Limits{MaxRows: 100, MaxBytes: 1 << 20, MaxWait: 50 * time.Millisecond}
	r := f.startWith("g-stream2", s, limits, func(o *Options) {
		o.StreamWait, o.StreamRows, o.StreamBytes = time.Minute, 300, 1<<30
		o.OutcomeWait = 10 * time.Millisecond
	})
	waitFor(t, "commit at 1000", 15*time.Second, func() bool { return f.committed("g-stream2")[0] == 1000 })
	r.stop(t)
	if total, distinct := s.stats(); total != 1000 || distinct != 1000 {
		t.Fatalf("table holds %d rows, %d distinct; want 1000 and 1000", total, distinct)
	}
	opened, ended, sends := s.counts()
	// Batch 0..99 alone; the stream 100..399 fails; the new worker's
	// batches 100..399 go alone (three); 400..999 in two streams.
	if sends != 4 || opened != 3 || ended != 2 {
		t.Fatalf("%d batches sent alone, %d streams opened, %d ended well; want 4, 3, 2", sends, opened, ended)
	}
}
