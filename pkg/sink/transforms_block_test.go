package sink

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-etl/sluice/pkg/config"
	"github.com/sluice-etl/sluice/pkg/decode"
	"github.com/sluice-etl/sluice/pkg/gen"
	"github.com/sluice-etl/sluice/pkg/record"
	"github.com/sluice-etl/sluice/pkg/refdata"
	"github.com/sluice-etl/sluice/pkg/sink/native"
	"github.com/sluice-etl/sluice/pkg/stage"
	"github.com/sluice-etl/sluice/pkg/transform"
)

// The columnar forms of currency, customer and fraud (their ApplyBlock)
// against their row forms: the same JSON records through the row path
// (Row per record, Apply, Prepare converting the rows) and the columnar
// path (decode.ColumnJSON into a Block, ApplyBlock, Prepare picking rows),
// with both kinds of column buffers (clickhouse-go's and the native
// writer's), must send the same cells in every column and fail the same
// items at the same stage for the same reason.

// enrichCase is one run: the transforms, the table's column types that
// differ from 001_orders.sql, the schema's fields that differ from
// order.avsc, and the records.
type enrichCase struct {
	transforms []string
	fraud      config.Fraud
	store      *refdata.Store
	schema     *decode.Schema
	tab        func(native bool) *Table
	values     [][]byte
}

func enrichFraud() config.Fraud {
	return config.Fraud{
		HighAmount: "5000.00", HighAmountWeight: 40, CountryMismatchWeight: 20, UnknownCustomerWeight: 15,
		VelocityMaxOrders: 3, VelocityWindow: 10 * time.Minute, VelocityWeight: 25, VelocityMaxCustomers: 50,
	}
}

// enrichStore is the generator's customers and rates, and a few more:
// EUR changes at a half second (the event time's milliseconds decide), a
// rate with nine decimals and one of eleven integer digits (neither fits
// Decimal(18,8)).
func enrichStore(g *gen.Generator) *refdata.Store {
	s := refdata.NewStore(g.Options().BaseCurrency)
	for _, c := range g.Customers() {
		s.PutCustomer(c.CustomerID, refdata.Customer{Name: c.Name, Country: c.Country, Segment: string(c.Segment)})
	}
	for _, r := range g.FxRates() {
		s.PutRate(r.Currency, r.EffectiveFrom.UnixMilli(), r.Rate)
	}
	s.PutRate("EUR", halfSecond.UnixMilli(), decimal.RequireFromString("1.23456789"))
	s.PutRate("EUR", halfSecond.Add(time.Second).UnixMilli(), decimal.RequireFromString("1.00000000"))
	s.PutRate("XBT", 0, decimal.RequireFromString("1.123456789"))
	s.PutRate("XAU", 0, decimal.RequireFromString("12345678901.5"))
	s.PutRate("CHF", 0, decimal.RequireFromString("0.9"))  // another scale: rescaled exactly
	s.PutRate("NEG", 0, decimal.RequireFromString("-1.5")) // converts, as the row path does
	s.PutCustomer("c-gb", refdata.Customer{Name: "Ada", Country: "GB", Segment: "VIP"})
	s.PutCustomer("c-empty", refdata.Customer{})
	return s
}

var halfSecond = time.Date(2027, 3, 1, 10, 0, 0, 500_000_000, time.UTC)

// enrichEdits are the edge cases, each applied to one generated order.
func enrichEdits() []func(m map[string]any) {
	ms := func(t time.Time) int64 { return t.UnixMilli() }
	set := func(kv ...any) func(m map[string]any) {
		return func(m map[string]any) {
			for i := 0; i < len(kv); i += 2 {
				m[kv[i].(string)] = kv[i+1]
			}
		}
	}
	edits := []func(m map[string]any){
		set("customer_id", "nobody"),                                               // UNKNOWN_CUSTOMER
		set("customer_id", ""),                                                     // a miss too
		set("customer_id", nil),                                                    // a decode error (not nullable here)
		set("customer_id", "c-gb", "shipping_country", "FR"),                       // COUNTRY_MISMATCH
		set("customer_id", "c-gb", "shipping_country", "GB"),                       // none
		set("customer_id", "c-empty", "shipping_country", ""),                      // a hit with empty values
		set("customer_id", "c-empty", "shipping_country", "GB"),                    // COUNTRY_MISMATCH against ""
		set("currency", "XTS"),                                                     // no rate
		set("currency", "EUR", "created_at", 0),                                    // before the first rate
		set("currency", "XBT"),                                                     // rate does not fit (decimals)
		set("currency", "XAU"),                                                     // rate does not fit (integer digits)
		set("currency", "CHF", "total", "10.05"),                                   // 9.045 -> 9.04
		set("currency", "CHF", "total", "10.15"),                                   // 9.135 -> 9.14
		set("currency", "NEG", "total", "3.33"),                                    // -4.995 -> -5.00
		set("currency", "USD"),                                                     // base currency
		set("currency", "USD", "total", "9999999999999999.99"),                     // base: fits
		set("currency", "USD", "total", "-9999999999999999.99"),                    // base, refund: fits
		set("currency", "EUR", "total", "9999999999999999.99"),                     // overflows after conversion
		set("currency", "EUR", "total", "-9999999999999999.99"),                    // overflows, negative
		set("currency", "CHF", "total", "9999999999999999.99"),                     // 0.9: fits
		set("currency", "USD", "total", "-100.05"),                                 // a refund
		set("currency", "USD", "total", "0.00"),                                    // zero
		set("currency", "USD", "total", "5000.00"),                                 // HIGH_AMOUNT at the threshold
		set("currency", "USD", "total", "4999.99"),                                 // just below
		set("currency", "USD", "total", "-6000.00"),                                // a large refund: no HIGH_AMOUNT
		set("currency", "EUR", "created_at", ms(halfSecond)-1),                     // the rate before
		set("currency", "EUR", "created_at", ms(halfSecond)),                       // 1.23456789 from here
		set("currency", "EUR", "created_at", ms(halfSecond)+999),                   // still
		set("currency", "EUR", "created_at", ms(halfSecond)+1000),                  // 1.00000000
		set("currency", "EUR", "total", "4050.00", "created_at", ms(halfSecond)+1), // 4050 * 1.23456789 = 4999.999... -> 5000.00: HIGH_AMOUNT
		set("currency", "EUR", "total", "4049.99", "created_at", ms(halfSecond)+1), // 4999.99: none
		// Does not fit DateTime: load on both paths in the base currency.
		// With a rate to look up, the row path fails it at transform first
		// and the columnar path at load (DESIGN.md, the columnar path).
		set("created_at", -1000, "currency", "USD"),
		set("status", "SHIPPED"), // a decode error
		set("items", []any{map[string]any{"sku": "A", "quantity": 0, "unit_price": "1.00"}}), // order_items fails it
	}
	// VELOCITY: one customer's orders, out of order and re-delivered;
	// more than 3 in (t-10m, t] fire. Timestamps at milliseconds inside
	// one second, so the column's seconds would not tell them apart.
	t0 := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	for _, d := range []time.Duration{0, 100 * time.Millisecond, 200 * time.Millisecond, 10*time.Minute - time.Millisecond,
		10 * time.Minute, 10*time.Minute + 100*time.Millisecond, 10*time.Minute + 200*time.Millisecond, time.Minute, 30 * time.Minute} {
		edits = append(edits, set("customer_id", "c-gb", "shipping_country", "GB", "created_at", ms(t0.Add(d))))
	}
	// A failed order of that customer is not counted on either path.
	edits = append(edits, set("customer_id", "c-gb", "currency", "XTS", "created_at", ms(t0.Add(10*time.Minute+300*time.Millisecond))))
	edits = append(edits, set("customer_id", "c-gb", "shipping_country", "GB", "created_at", ms(t0.Add(10*time.Minute+400*time.Millisecond))))
	// Three orders of another customer, the last delivered again at the
	// end (runEnrich): counted once, VELOCITY does not fire.
	for d := range 3 {
		edits = append(edits, set("customer_id", "c-dup", "created_at", ms(t0.Add(time.Duration(d)*time.Second))))
	}
	return edits
}

func TestCurrencyBlockMatchesRows(t *testing.T) {
	runEnrich(t, []string{"order_items", "currency"}, nil, "")
}

func TestCustomerBlockMatchesRows(t *testing.T) {
	runEnrich(t, []string{"order_items", "customer"}, nil, "")
}

func TestFraudBlockMatchesRows(t *testing.T) {
	runEnrich(t, []string{"order_items", "currency", "customer", "fraud"}, nil, "")
	// One rule at a time: a rule that is off reads nothing.
	for _, w := range []struct {
		name string
		set  func(*config.Fraud)
	}{
		{"HIGH_AMOUNT only", func(f *config.Fraud) { f.CountryMismatchWeight, f.UnknownCustomerWeight, f.VelocityWeight = 0, 0, 0 }},
		{"VELOCITY only", func(f *config.Fraud) { f.HighAmountWeight, f.CountryMismatchWeight, f.UnknownCustomerWeight = 0, 0, 0 }},
		{"customer rules only", func(f *config.Fraud) { f.HighAmountWeight, f.VelocityWeight = 0, 0 }},
	} {
		t.Run(w.name, func(t *testing.T) {
			runEnrich(t, []string{"order_items", "currency", "customer", "fraud"}, w.set, "")
		})
	}
}

// TestEnrichBlockNullableFields runs all three on a schema whose fields
// the transforms read are nullable, into Nullable columns: a NULL amount
// (NULL results), currency, time (failed), customer_id (a miss, not
// counted by VELOCITY) and shipping_country.
func TestEnrichBlockNullableFields(t *testing.T) {
	runEnrich(t, []string{"order_items", "currency", "customer", "fraud"}, nil, "nullable")
}

// runEnrich compares the two paths for transforms over the generated
// orders and the edge cases, with each kind of buffers.
func runEnrich(t *testing.T, transforms []string, fraud func(*config.Fraud), variant string) {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	avsc := filepath.Join(filepath.Dir(file), "..", "..", "schemas", "avro")
	g, err := gen.New(gen.Options{Seed: 7, SchemaDir: avsc, Customers: 40})
	if err != nil {
		t.Fatal(err)
	}
	schema, err := decode.LoadSchema(filepath.Join(avsc, "order.avsc"))
	if err != nil {
		t.Fatal(err)
	}
	nullable := []string{"total", "currency", "created_at", "customer_id", "shipping_country"}
	if variant == "nullable" {
		if schema, err = nullableOrderSchema(nullable); err != nil {
			t.Fatal(err)
		}
	}
	cfg := enrichFraud()
	if fraud != nil {
		fraud(&cfg)
	}
	store := enrichStore(g)

	var values [][]byte
	for i := range 300 {
		_, v, err := gen.EncodeOrderJSON(g.Order(i))
		if err != nil {
			t.Fatal(err)
		}
		values = append(values, v)
	}
	edits := enrichEdits()
	if variant == "nullable" {
		for _, n := range nullable {
			edits = append(edits, func(m map[string]any) { m[n] = nil })
			edits = append(edits, func(m map[string]any) { delete(m, n) })
			edits = append(edits, func(m map[string]any) { m[n] = nil; m["customer_id"] = "c-gb" })
		}
	}
	for i, e := range edits {
		values = append(values, orderJSON(t, g.Order(1000+i), e))
	}
	// A broken record, and the last edit delivered again (same offset,
	// same value).
	dup := len(values) - 1
	values = append(values, []byte(`{`), values[dup])

	for _, native := range []bool{false, true} {
		name := "driver"
		if native {
			name = "native"
		}
		t.Run(name, func(t *testing.T) {
			tab := ordersTableFromDDL(t)
			if variant == "nullable" {
				for j, c := range tab.cols {
					for _, n := range nullable {
						if c.Name == n && !tab.types[j].nullable {
							tab.cols[j].Type, tab.cols[j].Nullable = "Nullable("+c.Type+")", true
							tab.types[j].nullable = true
						}
					}
				}
				tab.setInsert()
			}
			tab.now = func() time.Time { return time.Date(2026, 12, 2, 4, 0, 0, 0, time.UTC) }
			if native {
				tab.native = &NativeWriter{}
			}
			// Each path gets its own transforms: VELOCITY keeps state.
			build := func() []stage.Transform {
				ts, err := transform.Build(transforms, transform.Env{Pipeline: "orders", Schema: schema, Store: store, Fraud: cfg})
				if err != nil {
					t.Fatal(err)
				}
				out := make([]stage.Transform, len(ts))
				for i, tr := range ts {
					out[i] = tr
				}
				return out
			}
			rowTs, colTs := build(), build()
			filled := map[string]bool{}
			for _, f := range schema.Fields {
				filled[f.Name] = true
			}
			for _, tr := range rowTs {
				for _, o := range tr.(transform.Transform).Outputs() {
					filled[o] = true
				}
			}
			if err := tab.Bind(func(c string) bool { return filled[c] }); err != nil {
				t.Fatal(err)
			}
			rowDec, err := decode.NewFromSchema(decode.FormatJSON, schema)
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, tr := range colTs {
				if ct, ok := tr.(stage.ColumnTransform); ok {
					want = append(want, ct.Needs()...)
				}
			}
			colDec, ok := decode.NewColumnJSON(schema, tab.Column, want)
			if !ok {
				t.Fatal("NewColumnJSON refused")
			}
			blockNeeds, ok := stage.Columnar(colDec, colTs)
			if !ok {
				t.Fatalf("%v is not columnar", transforms)
			}
			retry := func(_ string, fn func() error) bool {
				if err := fn(); err != nil {
					t.Fatalf("step failed: %v", err)
				}
				return true
			}
			mk := func() *record.Batch {
				b := &record.Batch{Pipeline: "orders", Topic: "orders", Partition: 2, TopicID: "tid", First: 100, Last: int64(100 + len(values) - 1)}
				for i, v := range values {
					off := int64(100 + i)
					if i == len(values)-1 {
						off = int64(100 + dup)
					}
					b.Items = append(b.Items, record.Item{Rec: &kgo.Record{Topic: "orders", Partition: 2, Offset: off, Value: v}})
				}
				return b
			}
			rowB, colB := mk(), mk()
			rowBufs, colBufs := tab.NewBuffers(), tab.NewBuffers()
			stage.Run(context.Background(), rowB, rowDec, rowTs, retry)
			colB.Block = tab.Block(colBufs, blockNeeds)
			stage.Run(context.Background(), colB, colDec, colTs, retry)
			nRow, nCol := tab.Prepare(rowBufs, rowB), tab.Prepare(colBufs, colB)
			if nRow != nCol || nRow < 300 {
				t.Errorf("prepared %d rows on the row path, %d on the columnar path", nRow, nCol)
			}
			fails := map[record.Stage]int{}
			for i := range values {
				rf, cf := rowB.Items[i].Failed, colB.Items[i].Failed
				if rf != nil {
					fails[rf.Stage]++
				}
				if fmt.Sprint(rf) != fmt.Sprint(cf) {
					t.Errorf("value %d %s:\nrow path failed %v\ncolumnar    %v", i, values[i], rf, cf)
				}
			}
			t.Logf("%d rows loaded, failures by stage %v", nRow, fails)
			for j, c := range tab.cols {
				if want, got := rowBufs.cols[j].slice(), colBufs.send[j]; !sameCells(want, got) {
					t.Errorf("column %s differs:\nrow path %v\ncolumnar %v", c.Name, want, got)
				}
			}
			checkFired(t, tab, rowBufs, transforms, cfg)
		})
	}
}

// sameCells compares a column's cells; decimals by value (the driver
// rescales them to the column's scale).
func sameCells(a, b any) bool {
	switch x := a.(type) {
	case []decimal.Decimal:
		y := b.([]decimal.Decimal)
		if len(x) != len(y) {
			return false
		}
		for i := range x {
			if !x[i].Equal(y[i]) {
				return false
			}
		}
		return true
	case []*decimal.Decimal:
		y := b.([]*decimal.Decimal)
		if len(x) != len(y) {
			return false
		}
		for i := range x {
			if (x[i] == nil) != (y[i] == nil) || x[i] != nil && !x[i].Equal(*y[i]) {
				return false
			}
		}
		return true
	case native.SpanStrings:
		y, ok := b.(native.SpanStrings)
		return ok && slices.Equal(spanValues(x), spanValues(y))
	case nullSpans:
		y, ok := b.(nullSpans)
		return ok && slices.Equal(x.nulls, y.nulls) && slices.Equal(spanValues(x.vals), spanValues(y.vals))
	}
	return reflect.DeepEqual(a, b)
}

// spanValues is the values of a native String buffer's hand-over, read
// from its spans; it panics where the wire form it carries is not theirs.
func spanValues(c native.SpanStrings) []string {
	var vals []string
	var enc []byte
	for _, sp := range c.Spans {
		v := string(c.Data[sp.Start : sp.Start+sp.Len])
		vals = append(vals, v)
		enc = binary.AppendUvarint(enc, uint64(len(v)))
		enc = append(enc, v...)
	}
	if c.Wire != nil && !bytes.Equal(c.Wire, enc) {
		panic(fmt.Sprintf("wire form %q is not the spans' %q", c.Wire, enc))
	}
	return vals
}

// checkFired wants the edge cases to have done what they are for: every
// rule fired somewhere, when fraud ran with it on.
func checkFired(t *testing.T, tab *Table, bufs *Buffers, transforms []string, cfg config.Fraud) {
	t.Helper()
	if !slices.Contains(transforms, "fraud") {
		return
	}
	col := tab.Column("fraud_reasons")
	if col < 0 {
		t.Fatal("the table has no fraud_reasons")
	}
	seen := map[string]bool{}
	for _, rs := range bufs.cols[col].slice().([][]string) {
		for _, r := range rs {
			seen[r] = true
		}
	}
	for rule, w := range map[string]int{"HIGH_AMOUNT": cfg.HighAmountWeight, "COUNTRY_MISMATCH": cfg.CountryMismatchWeight,
		"UNKNOWN_CUSTOMER": cfg.UnknownCustomerWeight, "VELOCITY": cfg.VelocityWeight} {
		if w > 0 && !seen[rule] {
			t.Errorf("%s never fired", rule)
		}
	}
}

// nullableOrderSchema is order.avsc with the named fields nullable.
func nullableOrderSchema(names []string) (*decode.Schema, error) {
	text := map[string]string{
		"total":            `{"type": "bytes", "logicalType": "decimal", "precision": 18, "scale": 2}`,
		"currency":         `"string"`,
		"created_at":       `{"type": "long", "logicalType": "timestamp-millis"}`,
		"customer_id":      `"string"`,
		"shipping_country": `"string"`,
	}
	var fields []string
	for _, f := range []string{"order_id", "customer_id", "created_at", "currency", "total", "status", "channel", "shipping_country", "items", "coupon"} {
		switch f {
		case "order_id":
			fields = append(fields, `{"name": "order_id", "type": "string"}`)
		case "status":
			fields = append(fields, `{"name": "status", "type": {"type": "enum", "name": "OrderStatus", "symbols": ["CREATED", "CONFIRMED", "CANCELLED"]}}`)
		case "channel":
			fields = append(fields, `{"name": "channel", "type": {"type": "enum", "name": "Channel", "symbols": ["WEB", "MOBILE", "STORE"]}}`)
		case "items":
			fields = append(fields, `{"name": "items", "type": {"type": "array", "items": {"type": "record", "name": "LineItem", "fields": [
				{"name": "sku", "type": "string"}, {"name": "quantity", "type": "int"},
				{"name": "unit_price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 18, "scale": 2}}]}}}`)
		case "coupon":
			fields = append(fields, `{"name": "coupon", "type": ["null", "string"], "default": null}`)
		default:
			typ := text[f]
			if slices.Contains(names, f) {
				typ = `["null", ` + typ + `]`
			}
			fields = append(fields, fmt.Sprintf(`{"name": %q, "type": %s}`, f, typ))
		}
	}
	return decode.ParseSchema([]byte(`{"type": "record", "name": "Order", "namespace": "io.sluice.ecommerce", "fields": [` +
		strings.Join(fields, ",") + `]}`))
}
