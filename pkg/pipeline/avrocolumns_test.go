package pipeline

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-etl/sluice/pkg/decode"
	"github.com/sluice-etl/sluice/pkg/gen"
	"github.com/sluice-etl/sluice/pkg/record"
	"github.com/sluice-etl/sluice/pkg/transform"
)

// TestAvroWithOrderItemsTakesTheColumnarPath runs an Avro pipeline as the
// service builds it (decode.ColumnAvro bound to the table's columns, the
// order_items transform) on kfake: every batch must come with a Block,
// every record's row must be in it with its item_count, and no item may
// carry a Row. With a transform that has no columnar form the same
// decoder must take the row path instead: no Block, a Row per item.
func TestAvroWithOrderItemsTakesTheColumnarPath(t *testing.T) {
	for _, columnar := range []bool{true, false} {
		name := "order_items"
		if !columnar {
			name = "order_items+rows_only"
		}
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, 2)
			const n = 300
			_, want, dec, ts, column := orderColumns(t, f, n)
			if !columnar {
				ts = append(ts, rowsOnly{})
			}
			s := &blockSink{memSink: newMemSink(), column: column}
			r := f.startWith("g-avro-cols", s, small, func(o *Options) {
				o.Pipelines[0].Decoder = dec
				o.Pipelines[0].Transforms = ts
			})
			waitFor(t, "every order stored", 20*time.Second, func() bool { total, _ := s.stats(); return total >= n })
			r.stop(t)
			s.mu.Lock()
			defer s.mu.Unlock()
			if columnar {
				if s.rowBatches > 0 || s.blockBatches == 0 {
					t.Fatalf("%d batches with a Block, %d without: want every one with", s.blockBatches, s.rowBatches)
				}
				if len(s.counts) != n {
					t.Fatalf("%d rows found in blocks, want %d", len(s.counts), n)
				}
				for k, q := range want {
					if got := s.counts[k]; got != q {
						t.Fatalf("partition %d offset %d: item_count %d in the block, want %d", k>>32, k&(1<<32-1), got, q)
					}
				}
			} else if s.blockBatches > 0 || s.rowBatches == 0 {
				t.Fatalf("%d batches with a Block, %d without: want none with (rowsOnly has no columnar form)", s.blockBatches, s.rowBatches)
			}
		})
	}
}

// orderColumns is an Avro orders pipeline as the service builds it for the
// columnar path (decode.ColumnAvro bound to the table's columns, the
// order_items transform), and n orders for it spread over f's partitions:
// the records (produced to f's topic), each one's item_count by
// partition<<32 | offset, the decoder, the transforms and the column lookup.
func orderColumns(t *testing.T, f *fixture, n int) ([]*kgo.Record, map[int64]int64, Decoder, []transform.Transform, func(string) int) {
	t.Helper()
	avsc := filepath.Join("..", "..", "schemas", "avro")
	g, err := gen.New(gen.Options{Seed: 9, SchemaDir: avsc})
	if err != nil {
		t.Fatal(err)
	}
	want := map[int64]int64{}
	var recs []*kgo.Record
	for i := range n {
		o := g.Order(i)
		k, v, err := g.Codecs().EncodeOrder(o)
		if err != nil {
			t.Fatal(err)
		}
		var q int64
		for _, it := range o.Items {
			q += int64(it.Quantity)
		}
		p := int32(i % f.parts)
		want[int64(p)<<32|int64(i/f.parts)] = q
		recs = append(recs, &kgo.Record{Topic: f.topic, Partition: p, Key: k, Value: v})
	}
	schema, err := decode.LoadSchema(filepath.Join(avsc, "order.avsc"))
	if err != nil {
		t.Fatal(err)
	}
	ts, err := transform.Build([]string{"order_items"}, transform.Env{Pipeline: "orders", Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	columns := []string{"order_id", "customer_id", "created_at", "currency", "total", "status", "channel", "shipping_country", "coupon", "item_count"}
	column := func(name string) int {
		for i, c := range columns {
			if c == name {
				return i
			}
		}
		return -1
	}
	dec, ok, err := decode.NewColumnAvro(decode.FormatAvro, schema, nil, column, []string{"items.quantity"})
	if err != nil || !ok {
		t.Fatalf("NewColumnAvro: %v %v", ok, err)
	}
	if err := f.produce.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	return recs, want, dec, ts, column
}

// rowsOnly is a transform without a columnar form.
type rowsOnly struct{}

func (rowsOnly) Outputs() []string                              { return nil }
func (rowsOnly) Apply(_ context.Context, _ *record.Batch) error { return nil }

// blockSink is a memSink whose writers hand out Blocks (as the table
// writer does) and record, per batch sent, whether it came with one, and
// what the block holds in item_count per record.
type blockSink struct {
	*memSink
	column func(string) int
	// under memSink.mu:
	blockBatches, rowBatches int
	counts                   map[int64]int64 // partition<<32 | offset -> item_count
	// refuse, when set, answers an INSERT of rows instead of the table
	// when it returns an error (set before the engine starts).
	refuse func(b *record.Batch, rows []*record.Item) error
}

func (s *blockSink) NewWriter() Writer { return &blockWriter{memWriter: memWriter{s: s.memSink}, s: s} }

type blockWriter struct {
	memWriter
	s   *blockSink
	blk *countBlock
}

func (w *blockWriter) Block(needs []string) record.Block {
	w.blk = &countBlock{column: w.s.column, lists: map[string]*record.IntList{}}
	for _, n := range needs {
		w.blk.lists[n] = &record.IntList{Offsets: []int32{0}}
	}
	return w.blk
}

func (w *blockWriter) Send(ctx context.Context, b *record.Batch) error {
	w.s.mu.Lock()
	if w.s.counts == nil {
		w.s.counts = map[int64]int64{}
	}
	if b.Block == nil {
		w.s.rowBatches++
		for i := range b.Items {
			if b.Items[i].Pending() && b.Items[i].Row == nil {
				panic("row path without a Row")
			}
		}
	} else {
		w.s.blockBatches++
		for i := range b.Items {
			it := &b.Items[i]
			if it.Row != nil {
				panic("columnar path with a Row")
			}
			if r := b.Base + i; it.Pending() && r < len(w.blk.counts) {
				w.s.counts[int64(b.Partition)<<32|it.Offset()] = w.blk.counts[r]
			}
		}
	}
	w.s.mu.Unlock()
	if w.s.refuse != nil {
		if err := w.s.refuse(b, w.rows); err != nil {
			return err
		}
	}
	return w.memWriter.Send(ctx, b)
}

// countBlock is a Block that keeps only item_count per row (what
// order_items writes) and the side lists.
type countBlock struct {
	record.Block
	column func(string) int
	rows   int
	counts []int64
	lists  map[string]*record.IntList
}

func (b *countBlock) Rows() int                     { return b.rows }
func (b *countBlock) Column(name string) int        { return b.column(name) }
func (b *countBlock) PutString(int, string)         {}
func (b *countBlock) PutInt(int, int64)             {}
func (b *countBlock) PutDecimal(int, int64, int32)  {}
func (b *countBlock) PutTime(int, time.Time)        {}
func (b *countBlock) PutNull(int)                   {}
func (b *countBlock) PutValue(int, any)             {}
func (b *countBlock) Ints(n string) *record.IntList { return b.lists[n] }
func (b *countBlock) EndRow() error                 { b.endRow(); return nil }
func (b *countBlock) FailRow()                      { b.endRow() }

func (b *countBlock) endRow() {
	b.rows++
	b.counts = append(b.counts, 0)
	for _, l := range b.lists {
		l.Offsets = append(l.Offsets, int32(len(l.Vals)))
	}
}

func (b *countBlock) SetInt(col, row int, v int64) error {
	if col == b.column("item_count") {
		b.counts[row] = v
	}
	return nil
}
