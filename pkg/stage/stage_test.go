package stage

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-etl/sluice/pkg/decode"
	"github.com/sluice-etl/sluice/pkg/record"
)

// flaky fails with decode.ErrUnavailable for the first n calls, fails
// values starting with "bad" as records, and decodes the rest.
type flaky struct{ n, calls int }

func (d *flaky) Decode(v []byte) (record.Row, error) {
	d.calls++
	if d.calls <= d.n {
		return nil, fmt.Errorf("registry: %w", decode.ErrUnavailable)
	}
	if strings.HasPrefix(string(v), "bad") {
		return nil, errors.New("not a record")
	}
	return record.Row{"v": string(v)}, nil
}

// counting counts its runs and fails the step while err is set.
type counting struct {
	runs int
	errs []error
}

func (c *counting) Apply(_ context.Context, b *record.Batch) error {
	c.runs++
	if len(c.errs) > 0 {
		err := c.errs[0]
		c.errs = c.errs[1:]
		return err
	}
	for i := range b.Items {
		if b.Items[i].Failed == nil {
			b.Items[i].Row["t"] = true
		}
	}
	return nil
}

func batch(values ...string) *record.Batch {
	b := &record.Batch{}
	for i, v := range values {
		b.Items = append(b.Items, record.Item{Rec: &kgo.Record{Offset: int64(i), Value: []byte(v)}})
	}
	return b
}

// retries retries every step up to max times, recording what it saw.
type retries struct {
	max  int
	seen []string
}

func (r *retries) retry(what string, fn func() error) bool {
	for i := 0; i < r.max; i++ {
		if err := fn(); err == nil {
			return true
		}
		r.seen = append(r.seen, what)
	}
	return false
}

func TestRunRetriesOnlyTheFailingStep(t *testing.T) {
	dec := &flaky{n: 2}
	first, second := &counting{}, &counting{errs: []error{errors.New("reference data not current")}}
	r := &retries{max: 5}
	b := batch("a", "bad", "c")
	if !Run(context.Background(), b, dec, []Transform{first, second}, r.retry) {
		t.Fatal("Run gave up")
	}
	if strings.Join(r.seen, ",") != "decode,decode,transform" {
		t.Errorf("retried %v, want decode twice (the outage) and the second transform once", r.seen)
	}
	if first.runs != 1 || second.runs != 2 {
		t.Errorf("transform runs %d and %d, want 1 and 2: a transform that succeeded is not run again", first.runs, second.runs)
	}
	if b.Items[0].Failed != nil || b.Items[2].Failed != nil || b.Items[0].Row["t"] != true {
		t.Errorf("good records: %+v %+v", b.Items[0], b.Items[2])
	}
	if f := b.Items[1].Failed; f == nil || f.Stage != record.StageDecode {
		t.Errorf("bad record failed with %+v, want stage decode", f)
	}
}

func TestRunNeverFailsARecordForAnOutage(t *testing.T) {
	dec := &flaky{n: 1 << 30}
	r := &retries{max: 3}
	b := batch("a", "b")
	if Run(context.Background(), b, dec, nil, r.retry) {
		t.Fatal("Run succeeded while the decoder was unavailable")
	}
	for _, it := range b.Items {
		if it.Failed != nil {
			t.Errorf("record %d failed (%v) for an outage", it.Rec.Offset, it.Failed)
		}
	}
}

// flakyColumns is flaky for the columnar path: DecodeIntoContext fails
// with decode.ErrUnavailable for the first n calls without touching the
// block, fails values starting with "bad" as records (a placeholder row)
// and puts the rest.
type flakyColumns struct {
	n, calls int
	ctxs     int // calls that came with the batch's context
}

type ctxKey struct{}

func (d *flakyColumns) Needs() []string { return nil }

func (d *flakyColumns) DecodeInto(v []byte, blk record.Block) (error, error) {
	return d.DecodeIntoContext(context.Background(), v, blk)
}

func (d *flakyColumns) DecodeIntoContext(ctx context.Context, v []byte, blk record.Block) (error, error) {
	d.calls++
	if ctx.Value(ctxKey{}) != nil {
		d.ctxs++
	}
	if d.calls <= d.n {
		return fmt.Errorf("registry: %w", decode.ErrUnavailable), nil
	}
	if strings.HasPrefix(string(v), "bad") {
		blk.FailRow()
		return errors.New("not a record"), nil
	}
	blk.PutString(0, string(v))
	return nil, blk.EndRow()
}

func (d *flakyColumns) Decode([]byte) (record.Row, error) { panic("the row path") }

// rowsBlock is a Block that keeps its rows' one string (a placeholder is
// ""); the rest of record.Block is not used here.
type rowsBlock struct {
	record.Block
	rows []string
	cur  string
}

func (b *rowsBlock) Rows() int                 { return len(b.rows) }
func (b *rowsBlock) PutString(_ int, s string) { b.cur = s }
func (b *rowsBlock) EndRow() error             { b.rows, b.cur = append(b.rows, b.cur), ""; return nil }
func (b *rowsBlock) FailRow()                  { b.rows, b.cur = append(b.rows, ""), "" }

func TestRunColumnsRetriesAnUnavailableDecoder(t *testing.T) {
	dec := &flakyColumns{n: 2}
	blk := &rowsBlock{}
	r := &retries{max: 5}
	b := batch("a", "bad", "c")
	b.Block = blk
	ctx := context.WithValue(context.Background(), ctxKey{}, true)
	if !Run(ctx, b, dec, nil, r.retry) {
		t.Fatal("Run gave up")
	}
	if strings.Join(r.seen, ",") != "decode,decode" {
		t.Errorf("retried %v, want decode twice (the outage)", r.seen)
	}
	if dec.calls != 5 || dec.ctxs != 5 {
		t.Errorf("%d decodes, %d of them with the batch's context; want 5 and 5", dec.calls, dec.ctxs)
	}
	// One row per item, in item order: the failed attempts appended none.
	if got := strings.Join(blk.rows, ","); got != "a,,c" {
		t.Errorf("block rows %q, want a, a placeholder, c", got)
	}
	if b.Items[0].Failed != nil || b.Items[2].Failed != nil {
		t.Errorf("good records failed: %+v %+v", b.Items[0].Failed, b.Items[2].Failed)
	}
	if f := b.Items[1].Failed; f == nil || f.Stage != record.StageDecode {
		t.Errorf("bad record failed with %+v, want stage decode", f)
	}
}

func TestRunColumnsNeverFailsARecordForAnOutage(t *testing.T) {
	dec := &flakyColumns{n: 1 << 30}
	blk := &rowsBlock{}
	r := &retries{max: 3}
	b := batch("a", "b")
	b.Block = blk
	if Run(context.Background(), b, dec, nil, r.retry) {
		t.Fatal("Run succeeded while the decoder was unavailable")
	}
	if dec.calls != 3 {
		t.Errorf("%d decodes, want 3 (the retry's attempts, the first one's included)", dec.calls)
	}
	if len(blk.rows) != 0 {
		t.Errorf("block has %d rows, want none", len(blk.rows))
	}
	for _, it := range b.Items {
		if it.Failed != nil {
			t.Errorf("record %d failed (%v) for an outage", it.Rec.Offset, it.Failed)
		}
	}
}
