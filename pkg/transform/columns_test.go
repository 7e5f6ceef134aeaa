package transform

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/shopspring/decimal"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-etl/sluice/pkg/decode"
	"github.com/sluice-etl/sluice/pkg/gen"
	"github.com/sluice-etl/sluice/pkg/record"
	"github.com/sluice-etl/sluice/pkg/refdata"
	"github.com/sluice-etl/sluice/pkg/stage"
)

// The columnar path's own behaviour where the row path's tests cannot
// reach it: AwaitCurrent on a miss, and a table that cannot serve a field.
// pkg/sink's transforms_block_test.go compares the two paths cell by cell.

// blockBatch decodes orders (customer, currency, total, created_at) into
// a Block of the orders table, as the worker does, with order_items run.
func blockBatch(t *testing.T, ts []Transform, native bool, orders ...gen.Order) *record.Batch {
	t.Helper()
	schema := loadSchema(t, "order")
	pre := build(t, []string{"order_items"}, Env{})
	tab := ordersTable(t, schema, append(ts, pre[0]), native)
	cd, ok := decode.NewColumnJSON(schema, tab.Column, []string{"items.quantity"})
	if !ok {
		t.Fatal("NewColumnJSON refused the orders schema")
	}
	b := &record.Batch{Pipeline: "orders", Topic: "orders", First: 100, Last: int64(100 + len(orders) - 1)}
	for i, o := range orders {
		o.OrderID, o.Status, o.Channel, o.ShippingCountry = "o", gen.OrderCreated, gen.ChannelWeb, "GB"
		o.Items = []gen.LineItem{{SKU: "A", Quantity: 1, UnitPrice: o.Total}}
		_, v, err := gen.EncodeOrderJSON(o)
		if err != nil {
			t.Fatal(err)
		}
		b.Items = append(b.Items, record.Item{Rec: &kgo.Record{Topic: "orders", Offset: int64(100 + i), Value: v}})
	}
	b.Block = tab.Block(tab.NewBuffers(), []string{"items.quantity"})
	if !stage.Run(context.Background(), b, cd, []stage.Transform{pre[0]}, func(_ string, fn func() error) bool { return fn() == nil }) {
		t.Fatal("decode gave up")
	}
	noneFailed(t, b)
	return b
}

func cellDecimal(t *testing.T, b *record.Batch, col string, i int) string {
	t.Helper()
	u, s, ok := b.Block.Decimal(b.Block.Column(col), b.Base+i)
	if !ok {
		return "NULL"
	}
	return decimal.New(u, -s).String()
}

// TestCurrencyBlockMissWhileFollowerFailsFailsTheBatch is
// TestCurrencyMissWhileFollowerFailsFailsTheBatch on columns.
func TestCurrencyBlockMissWhileFollowerFailsFailsTheBatch(t *testing.T) {
	for _, native := range []bool{false, true} {
		f := newFollowed(t)
		tr := newCurrencyT(t, f.store).(stage.ColumnTransform)
		restore := f.failFetches(t)
		f.produce(t, f.rate(t, "CHF", "0.90000000", "2026-01-01T00:00:00Z"))
		noon := at("2026-01-01T12:00:00Z")
		b := blockBatch(t, []Transform{tr.(Transform)}, native,
			gen.Order{CustomerID: "c-1", Currency: "EUR", Total: dec("100.00"), CreatedAt: noon},
			gen.Order{CustomerID: "c-1", Currency: "CHF", Total: dec("100.00"), CreatedAt: noon},
			gen.Order{CustomerID: "c-1", Currency: "USD", Total: dec("5.00"), CreatedAt: noon})
		err := tr.ApplyBlock(context.Background(), b)
		if !errors.Is(err, refdata.ErrNotCurrent) || !strings.Contains(err.Error(), "fx-rates") {
			t.Fatalf("ApplyBlock while the follower fails: %v, want ErrNotCurrent naming fx-rates", err)
		}
		noneFailed(t, b)
		restore()
		waitUntilTrue(t, "ApplyBlock to succeed", func() bool { return tr.ApplyBlock(context.Background(), b) == nil })
		noneFailed(t, b)
		for i, want := range []string{"110", "90", "5"} {
			if got := cellDecimal(t, b, "total_base", i); got != want {
				t.Errorf("native %v: order %d total_base %s, want %s", native, i, got, want)
			}
		}
	}
}

// TestCustomerBlockMissWhileFollowerFailsFailsTheBatch is
// TestCustomerMissWhileFollowerFailsFailsTheBatch on columns: the join's
// result is in the block's marks, never in a column.
func TestCustomerBlockMissWhileFollowerFailsFailsTheBatch(t *testing.T) {
	f := newFollowed(t)
	tr := build(t, []string{"customer"}, Env{Schema: loadSchema(t, "order"), Store: f.store})[0]
	restore := f.failFetches(t)
	f.produce(t, f.customer(t, "c-2", "Grace"))
	noon := at("2026-01-01T12:00:00Z")
	b := blockBatch(t, []Transform{tr}, true,
		gen.Order{CustomerID: "c-1", Currency: "USD", Total: dec("1.00"), CreatedAt: noon},
		gen.Order{CustomerID: "c-2", Currency: "USD", Total: dec("1.00"), CreatedAt: noon})
	ct := tr.(stage.ColumnTransform)
	err := ct.ApplyBlock(context.Background(), b)
	if !errors.Is(err, refdata.ErrNotCurrent) || !strings.Contains(err.Error(), "customers") {
		t.Fatalf("ApplyBlock while the follower fails: %v, want ErrNotCurrent naming customers", err)
	}
	if m := b.Block.Marks(customerFound); m[b.Base+1] != 0 {
		t.Fatalf("c-2 marked %d while the follower fails", m[b.Base+1])
	}
	restore()
	waitUntilTrue(t, "ApplyBlock to succeed", func() bool { return ct.ApplyBlock(context.Background(), b) == nil })
	noneFailed(t, b)
	name, ok := b.Block.String(b.Block.Column(colCustomerName), b.Base+1)
	if m := b.Block.Marks(customerFound); !ok || name != "Grace" || m[b.Base+1] != markFound {
		t.Fatalf("c-2 after recovery: name %q (%v), mark %d", name, ok, m[b.Base+1])
	}
}

// TestBlockTableMustServeTheFields: a field read from a column the table
// lacks, or holds as another kind, fails the batch with the column's name
// and fails no row.
func TestBlockTableMustServeTheFields(t *testing.T) {
	store := storeWith(eurHistory)
	schema := loadSchema(t, "order")
	ts := build(t, []string{"currency", "customer", "fraud"}, Env{Schema: schema, Store: store, Fraud: defaultFraud()})
	b := blockBatch(t, ts, false, gen.Order{CustomerID: "c-1", Currency: "EUR", Total: dec("1.00"), CreatedAt: at("2026-01-02T00:00:00Z")})
	for _, tt := range []struct {
		tr   Transform
		read cellRead
		want string
	}{
		{ts[0], cellRead{name: "nope", kind: record.CellDecimal}, "no column nope"},
		{ts[0], cellRead{name: "status", kind: record.CellDecimal}, "column status cannot be read as a decimal"},
		{ts[1], cellRead{name: "coupon", kind: record.CellString, nullable: true}, ""}, // Nullable(String): fits
		{ts[1], cellRead{name: "order_id", kind: record.CellString, nullable: true}, "field order_id is nullable but column order_id is not"},
	} {
		switch tr := tt.tr.(type) {
		case *currency:
			tr.reads[0] = tt.read
		case *customer:
			tr.read = tt.read
		}
		err := tt.tr.(stage.ColumnTransform).ApplyBlock(context.Background(), b)
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("reading %+v: %v, want %q", tt.read, err, tt.want)
		}
		noneFailed(t, b)
	}
}
