package transform

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/sluice-etl/sluice/pkg/config"
	"github.com/sluice-etl/sluice/pkg/record"
	"github.com/sluice-etl/sluice/pkg/refdata"
)

// EUR changes rate at midnight of 2 January; GBP has one rate.
var eurHistory = map[string]map[string]string{
	"EUR": {"2026-01-01T00:00:00Z": "1.10000000", "2026-01-02T00:00:00Z": "1.20000000"},
	"GBP": {"2026-01-01T00:00:00Z": "1.25000000"},
}

func newCurrencyT(t *testing.T, store *refdata.Store) Transform {
	t.Helper()
	return build(t, []string{"currency"}, Env{Schema: loadSchema(t, "order"), Store: store})[0]
}

func order(cur, total, created string) record.Row {
	return record.Row{"order_id": "o", "customer_id": "c", "currency": cur, "total": dec(total), "created_at": at(created)}
}

// checkConverted asserts total_base and fx_rate, including their scales
// (2 and 8, the columns' own).
func checkConverted(t *testing.T, it record.Item, wantBase, wantRate string) {
	t.Helper()
	if it.Failed != nil {
		t.Fatalf("failed: %s", it.Failed.Reason)
	}
	base, ok1 := it.Row["total_base"].(decimal.Decimal)
	rate, ok2 := it.Row["fx_rate"].(decimal.Decimal)
	if !ok1 || !ok2 {
		t.Fatalf("total_base %T, fx_rate %T, want decimals", it.Row["total_base"], it.Row["fx_rate"])
	}
	if base.StringFixed(2) != wantBase || base.Exponent() != -2 {
		t.Errorf("total_base = %s (exponent %d), want %s at scale 2", base, base.Exponent(), wantBase)
	}
	if rate.StringFixed(8) != wantRate || rate.Exponent() != -8 {
		t.Errorf("fx_rate = %s (exponent %d), want %s at scale 8", rate, rate.Exponent(), wantRate)
	}
}

func TestCurrencyRateLookup(t *testing.T) {
	tr := newCurrencyT(t, storeWith(eurHistory))
	tests := []struct {
		name               string
		row                record.Row
		wantBase, wantRate string
		wantFail           string
	}{
		{"at effective_from: the new rate", order("EUR", "100.00", "2026-01-02T00:00:00.000Z"), "120.00", "1.20000000", ""},
		{"1 ms before: the old rate", order("EUR", "100.00", "2026-01-01T23:59:59.999Z"), "110.00", "1.10000000", ""},
		{"at the first effective_from", order("EUR", "100.00", "2026-01-01T00:00:00.000Z"), "110.00", "1.10000000", ""},
		{"long after the last change", order("EUR", "10.00", "2030-06-01T12:00:00Z"), "12.00", "1.20000000", ""},
		{"before the first rate", order("EUR", "100.00", "2025-12-31T23:59:59.999Z"), "", "",
			"currency: no FX rate for EUR at 2025-12-31T23:59:59.999Z"},
		{"unknown currency", order("XTS", "1.00", "2026-01-01T00:00:00Z"), "", "",
			"currency: no FX rate for XTS at 2026-01-01T00:00:00.000Z"},
		// 77.77 * 1.25 = 97.2125 -> 97.21
		{"another currency", order("GBP", "77.77", "2026-03-01T00:00:00Z"), "97.21", "1.25000000", ""},
		{"base currency: rate 1, no lookup", order("USD", "123.45", "1999-01-01T00:00:00Z"), "123.45", "1.00000000", ""},
		{"base currency, refund", order("USD", "-0.01", "2026-01-01T00:00:00Z"), "-0.01", "1.00000000", ""},
		// 100.05 * 1.1 = 110.055, a tie: 110.06 (5 is odd); a refund the same
		{"refund converts like a sale", order("EUR", "-100.05", "2026-01-01T10:00:00Z"), "-110.06", "1.10000000", ""},
		{"sale", order("EUR", "100.05", "2026-01-01T10:00:00Z"), "110.06", "1.10000000", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := batchOf(0, tt.row)
			apply(t, b, tr)
			it := b.Items[0]
			if tt.wantFail != "" {
				if it.Failed == nil || it.Failed.Stage != record.StageTransform || it.Failed.Reason != tt.wantFail {
					t.Fatalf("Failed = %+v, want stage transform, reason %q", it.Failed, tt.wantFail)
				}
				if _, ok := it.Row["total_base"]; ok {
					t.Errorf("failed row got total_base %v", it.Row["total_base"])
				}
				return
			}
			checkConverted(t, it, tt.wantBase, tt.wantRate)
		})
	}
}

// Every expected value is amount * rate worked out by hand, then rounded
// half to even at the second decimal.
func TestCurrencyRounding(t *testing.T) {
	tests := []struct {
		amount, rate string
		want         string // "" with overflow
		overflow     bool
	}{
		{"0.25", "0.50000000", "0.12", false},   // 0.125: tie, 2 is even
		{"0.27", "0.50000000", "0.14", false},   // 0.135: tie, 3 is odd -> 4
		{"-0.25", "0.50000000", "-0.12", false}, // -0.125
		{"-0.27", "0.50000000", "-0.14", false}, // -0.135
		{"5.35", "0.50000000", "2.68", false},   // 2.675: tie, 7 is odd -> 8
		{"5.33", "0.50000000", "2.66", false},   // 2.665: tie, 6 is even
		{"0.01", "0.50000000", "0.00", false},   // 0.005: tie, 0 is even
		{"0.03", "0.50000000", "0.02", false},   // 0.015: tie, 1 is odd -> 2
		{"-0.01", "0.50000000", "0.00", false},  // -0.005 -> zero
		{"0.01", "0.50000001", "0.01", false},   // 0.0050000001: just above the tie
		{"0.01", "0.49999999", "0.00", false},   // 0.0049999999: just below
		{"1.00", "1.23456789", "1.23", false},
		{"100.00", "0.33333333", "33.33", false},
		{"1234.56", "0.91234567", "1126.35", false}, // 1126.3454703552
		{"77.77", "0.87654321", "68.17", false},     // 68.1687654417
		// Decimal(18,2)'s largest value fits at rate 1 and overflows at 2.
		{"9999999999999999.99", "1.00000000", "9999999999999999.99", false},
		{"-9999999999999999.99", "1.00000000", "-9999999999999999.99", false},
		{"4999999999999999.99", "2.00000000", "9999999999999999.98", false},
		{"9999999999999999.99", "2.00000000", "", true},  // 19999999999999999.98
		{"-9999999999999999.99", "2.00000000", "", true}, // the other side
		{"5000000000000000.00", "2.00000000", "", true},  // exactly 10^16
	}
	for _, tt := range tests {
		t.Run(tt.amount+"x"+tt.rate, func(t *testing.T) {
			store := storeWith(map[string]map[string]string{"XTS": {"2026-01-01T00:00:00Z": tt.rate}})
			b := batchOf(0, order("XTS", tt.amount, "2026-01-01T00:00:00Z"))
			apply(t, b, newCurrencyT(t, store))
			it := b.Items[0]
			if tt.overflow {
				if it.Failed == nil || !strings.Contains(it.Failed.Reason, "overflows Decimal(18,2)") {
					t.Fatalf("Failed = %+v, want an overflow", it.Failed)
				}
				if _, ok := it.Row["total_base"]; ok {
					t.Errorf("overflowing row got total_base %v", it.Row["total_base"])
				}
				return
			}
			checkConverted(t, it, tt.want, tt.rate)
		})
	}
}

// One batch: a rate change between two orders of one currency, a record
// that failed decoding, a currency without a rate. The failure is the one
// row's; the others convert, the failed ones are left as they were.
func TestCurrencyBatch(t *testing.T) {
	tr := newCurrencyT(t, storeWith(eurHistory))
	b := batchOf(3,
		order("EUR", "10.00", "2026-01-01T23:59:00Z"),
		nil, // failed in decode, below
		order("XTS", "5.00", "2026-01-02T00:00:00Z"),
		order("EUR", "10.00", "2026-01-02T00:01:00Z"),
		order("USD", "10.00", "2026-01-02T00:01:00Z"),
	)
	b.Items[1].Fail(record.StageDecode, "bad bytes")
	apply(t, b, tr)

	checkConverted(t, b.Items[0], "11.00", "1.10000000")
	if f := b.Items[1].Failed; f.Stage != record.StageDecode || f.Reason != "bad bytes" || b.Items[1].Row != nil {
		t.Errorf("decode failure changed: %+v, row %v", f, b.Items[1].Row)
	}
	if f := b.Items[2].Failed; f == nil || f.Reason != "currency: no FX rate for XTS at 2026-01-02T00:00:00.000Z" {
		t.Errorf("XTS: Failed = %+v", f)
	}
	checkConverted(t, b.Items[3], "12.00", "1.20000000")
	checkConverted(t, b.Items[4], "10.00", "1.00000000")
	if got := b.Good(); got != 3 {
		t.Errorf("Good() = %d, want 3", got)
	}
}

// A rate with more than 8 decimals cannot be stored in fx_rate: the row
// fails instead of loading a rate that differs from the one applied.
func TestCurrencyUnstorableRate(t *testing.T) {
	for _, tc := range []struct{ rate, fail string }{
		{"1.123456789", "does not fit Decimal(18,8)"},
		{"10000000000", "does not fit Decimal(18,8)"},
		{"1.1", ""},            // fewer decimals: rescaled, exactly
		{"1.100000000000", ""}, // more digits, all zeros: fine
	} {
		t.Run(tc.rate, func(t *testing.T) {
			store := refdata.NewStore("USD")
			store.PutRate("XTS", 0, dec(tc.rate))
			b := batchOf(0, order("XTS", "10.00", "2026-01-01T00:00:00Z"))
			apply(t, b, newCurrencyT(t, store))
			if tc.fail == "" {
				checkConverted(t, b.Items[0], "11.00", "1.10000000")
				return
			}
			if f := b.Items[0].Failed; f == nil || !strings.Contains(f.Reason, tc.fail) {
				t.Fatalf("Failed = %+v, want %q", f, tc.fail)
			}
		})
	}
}

func TestCurrencyNullAmount(t *testing.T) {
	tr := newCurrencyT(t, storeWith(eurHistory))
	row := order("EUR", "1.00", "2026-01-01T00:00:00Z")
	row["total"] = nil
	b := batchOf(0, row)
	apply(t, b, tr)
	if b.Items[0].Failed != nil {
		t.Fatalf("failed: %+v", b.Items[0].Failed)
	}
	for _, c := range []string{"total_base", "fx_rate"} {
		if v, ok := row[c]; !ok || v != nil {
			t.Errorf("%s = %v (present %v), want NULL", c, v, ok)
		}
	}
}

func TestCurrencyBuild(t *testing.T) {
	order, payment, shipment := loadSchema(t, "order"), loadSchema(t, "payment"), loadSchema(t, "shipment")
	store := refdata.NewStore("USD")
	tests := []struct {
		name    string
		env     Env
		outputs []string
		err     string
	}{
		{"orders", Env{Schema: order, Store: store}, []string{"total_base", "fx_rate"}, ""},
		{"payments", Env{Schema: payment, Store: store}, []string{"amount_base", "fx_rate"}, ""},
		{"renamed columns", Env{Schema: order, Store: store, Fields: config.Fields{AmountBase: "tb", Rate: "r"}}, []string{"tb", "r"}, ""},
		{"no store", Env{Schema: order}, nil, "reference data"},
		{"no schema", Env{Store: store}, nil, "schema"},
		{"no amount", Env{Schema: shipment, Store: store}, nil, "no field total or amount"},
		{"amount not a decimal", Env{Schema: order, Store: store, Fields: config.Fields{Amount: "order_id"}}, nil, `fields.amount: field "order_id" is string, want a decimal`},
		{"unknown currency field", Env{Schema: order, Store: store, Fields: config.Fields{Currency: "ccy"}}, nil, `fields.currency: "ccy" is not a field`},
		{"time not a timestamp", Env{Schema: order, Store: store, Fields: config.Fields{Time: "order_id"}}, nil, "want a timestamp"},
		{"output overwrites a field", Env{Schema: order, Store: store, Fields: config.Fields{Rate: "currency"}}, nil, `column "currency" is also a field`},
		{"same column twice", Env{Schema: order, Store: store, Fields: config.Fields{AmountBase: "x", Rate: "x"}}, nil, "written twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts, err := Build([]string{"currency"}, tt.env)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := ts[0].Outputs(); !slices.Equal(got, tt.outputs) {
				t.Errorf("Outputs() = %v, want %v", got, tt.outputs)
			}
		})
	}
}

// BenchmarkCurrencyOrders converts a 1000-order batch in three currencies
// (one the base) against 100-entry rate histories.
func BenchmarkCurrencyOrders(b *testing.B) {
	store := refdata.NewStore("USD")
	start := at("2026-01-01T00:00:00Z")
	for i := range 100 {
		from := start.Add(time.Duration(i) * time.Hour).UnixMilli()
		store.PutRate("EUR", from, decimal.New(108000000+int64(i)*1234, -8))
		store.PutRate("GBP", from, decimal.New(127000000-int64(i)*4321, -8))
	}
	tr := build(b, []string{"currency"}, Env{Schema: loadSchema(b, "order"), Store: store})[0]
	curs := []string{"EUR", "GBP", "USD"}
	rows := make([]record.Row, 1000)
	for i := range rows {
		rows[i] = order(curs[i%3], fmt.Sprintf("%d.%02d", 10+i*7, i%100),
			start.Add(time.Duration(i)*5*time.Minute).Format(time.RFC3339))
	}
	batch := batchOf(0, rows...)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		apply(b, batch, tr)
	}
	b.StopTimer()
	if batch.Good() != len(rows) {
		b.Fatalf("%d of %d rows converted", batch.Good(), len(rows))
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(rows)), "ns/row")
}

// mulHalfEven's 64-bit path must agree with shopspring's exact product and
// banker's rounding, the definition. Random coefficients of every length,
// amounts at scales 0 to 6, and products built to land on a tie.
func TestMulHalfEvenAgrees(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	randCoef := func() int64 {
		c := rng.Int64N(int64(pow10u[1+rng.IntN(18)]))
		if rng.IntN(2) == 0 {
			c = -c
		}
		return c
	}
	fast := 0
	check := func(a, r decimal.Decimal) {
		t.Helper()
		want := a.Mul(r).RoundBank(2)
		got := mulHalfEven(a, r, 2)
		if !got.Equal(want) || got.Exponent() != -2 {
			t.Fatalf("%s * %s = %s (exponent %d), want %s", a, r, got, got.Exponent(), want)
		}
		if _, ok := mulHalfEven64(a, r, 2); ok {
			fast++
		}
	}
	for range 200_000 {
		check(decimal.New(randCoef(), -int32(rng.IntN(7))), decimal.New(randCoef(), -8))
	}
	// Ties: amount * 0.5 with an odd last digit, at every magnitude.
	for range 20_000 {
		a := randCoef()/10*10 + int64(1+2*rng.IntN(5))
		check(decimal.New(a, -2), decimal.New(5e7, -8))
		check(decimal.New(-a, -2), decimal.New(5e7, -8))
	}
	if fast < 200_000 {
		t.Errorf("only %d cases took the 64-bit path", fast)
	}
}

// The general path: values the 64-bit one does not take.
func TestMulHalfEvenGeneral(t *testing.T) {
	tests := []struct{ a, r, want string }{
		{"2E+6", "1.5", "3000000.00"},                                          // nothing to drop (k = 0)
		{"123456789012345678901.23", "1.00000000", "123456789012345678901.23"}, // 23 digits
		{"0.125", "1", "0.12"},
		{"-0.135", "1", "-0.14"},
		{"0.000000000000000000005", "1.00000000", "0.00"}, // 29 digits dropped
	}
	for _, tt := range tests {
		a, r := dec(tt.a), dec(tt.r)
		if got := mulHalfEven(a, r, 2); got.StringFixed(2) != tt.want || got.Exponent() != -2 {
			t.Errorf("%s * %s = %s (exponent %d), want %s", tt.a, tt.r, got, got.Exponent(), tt.want)
		}
	}
}

func FuzzMulHalfEven(f *testing.F) {
	f.Add(int64(125), int8(3), int64(100000000))
	f.Add(int64(-999999999999999999), int8(2), int64(999999999999999999))
	f.Add(int64(5), int8(0), int64(50000000))
	f.Fuzz(func(t *testing.T, a int64, ea int8, r int64) {
		x, y := decimal.New(a, -int32(ea)), decimal.New(r, -8)
		want := x.Mul(y).RoundBank(2)
		if got := mulHalfEven(x, y, 2); !got.Equal(want) {
			t.Fatalf("%s * %s = %s, want %s", x, y, got, want)
		}
	})
}
