package transform

import (
	"context"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-etl/sluice/pkg/config"
	"github.com/sluice-etl/sluice/pkg/decode"
	"github.com/sluice-etl/sluice/pkg/record"
	"github.com/sluice-etl/sluice/pkg/refdata"
)

func loadSchema(t testing.TB, name string) *decode.Schema {
	t.Helper()
	s, err := decode.LoadSchema("../../schemas/avro/" + name + ".avsc")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

// at parses an RFC 3339 time (UTC).
func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t.UTC()
}

func ms(s string) int64 { return at(s).UnixMilli() }

// batchOf wraps rows into a batch of partition p, offsets from 100 on.
func batchOf(p int32, rows ...record.Row) *record.Batch {
	b := &record.Batch{Pipeline: "orders", Topic: "orders", Partition: p, First: 100}
	for i, r := range rows {
		b.Items = append(b.Items, record.Item{
			Rec: &kgo.Record{Topic: "orders", Partition: p, Offset: int64(100 + i)},
			Row: r,
		})
	}
	b.Last = b.First + int64(len(rows)) - 1
	return b
}

// defaultFraud is the shipped configuration (config/load.go), with a small
// customer bound.
func defaultFraud() config.Fraud {
	return config.Fraud{
		HighAmount: "5000.00", HighAmountWeight: 40,
		CountryMismatchWeight: 20, UnknownCustomerWeight: 15,
		VelocityMaxOrders: 5, VelocityWindow: 10 * time.Minute, VelocityWeight: 25,
		VelocityMaxCustomers: 100,
	}
}

// build builds names and fails the test on error.
func build(t testing.TB, names []string, env Env) []Transform {
	t.Helper()
	ts, err := Build(names, env)
	if err != nil {
		t.Fatalf("Build(%v): %v", names, err)
	}
	return ts
}

func apply(t testing.TB, b *record.Batch, ts ...Transform) {
	t.Helper()
	for _, tr := range ts {
		if err := tr.Apply(context.Background(), b); err != nil {
			t.Fatalf("Apply: %v", err)
		}
	}
}

// storeWith returns a USD store holding rates: currency -> effective_from
// (RFC 3339) -> rate.
func storeWith(rates map[string]map[string]string) *refdata.Store {
	s := refdata.NewStore("USD")
	for cur, h := range rates {
		for from, r := range h {
			s.PutRate(cur, ms(from), dec(r))
		}
	}
	return s
}
