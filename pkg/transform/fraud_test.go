package transform

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-etl/sluice/pkg/config"
	"github.com/sluice-etl/sluice/pkg/decode"
	"github.com/sluice-etl/sluice/pkg/record"
	"github.com/sluice-etl/sluice/pkg/refdata"
)

// newFraudT builds currency, customer, fraud for orders and returns fraud.
func newFraudT(t *testing.T, cfg config.Fraud) *fraud {
	t.Helper()
	ts := build(t, []string{"currency", "customer", "fraud"},
		Env{Schema: loadSchema(t, "order"), Store: refdata.NewStore("USD"), Fraud: cfg})
	return ts[2].(*fraud)
}

// velocityOnly is a fraud transform with only VELOCITY on (max 5 orders in
// 10 minutes), which needs no other transform.
func velocityOnly(t *testing.T, maxCustomers int) *fraud {
	t.Helper()
	cfg := config.Fraud{VelocityMaxOrders: 5, VelocityWindow: 10 * time.Minute, VelocityWeight: 25, VelocityMaxCustomers: maxCustomers}
	return build(t, []string{"fraud"}, Env{Schema: loadSchema(t, "order"), Fraud: cfg})[0].(*fraud)
}

// scored is an order row as customer and currency leave it. found nil
// means the customer join did not run.
func scored(customerID string, created time.Time, totalBase any, found any, customerCountry any, shipping string) record.Row {
	r := record.Row{
		"order_id": "o", "customer_id": customerID, "created_at": created, "shipping_country": shipping,
		"total_base": totalBase, "customer_country": customerCountry,
	}
	if found != nil {
		r[customerFound] = found
	}
	return r
}

func checkScore(t *testing.T, row record.Row, score int64, reasons ...string) {
	t.Helper()
	if got, ok := row["fraud_score"].(int64); !ok || got != score {
		t.Errorf("fraud_score = %#v, want int64(%d)", row["fraud_score"], score)
	}
	got, ok := row["fraud_reasons"].([]string)
	if !ok || got == nil {
		t.Fatalf("fraud_reasons = %#v, want a non-nil []string", row["fraud_reasons"])
	}
	if !slices.Equal(got, reasons) {
		t.Errorf("fraud_reasons = %q, want %q", got, reasons)
	}
}

var t0 = at("2026-01-01T12:00:00Z")

// Each rule alone and in pairs, with the shipped weights (HIGH_AMOUNT 40,
// COUNTRY_MISMATCH 20, UNKNOWN_CUSTOMER 15). Every row is another
// customer, so VELOCITY stays quiet.
func TestFraudRules(t *testing.T) {
	tests := []struct {
		name    string
		row     record.Row
		score   int64
		reasons []string
	}{
		{"nothing fires", scored("a", t0, dec("4999.99"), true, "DE", "DE"), 0, []string{}},
		{"HIGH_AMOUNT at the threshold", scored("b", t0, dec("5000.00"), true, "DE", "DE"), 40, []string{"HIGH_AMOUNT"}},
		{"HIGH_AMOUNT above", scored("c", t0, dec("123456.78"), true, "DE", "DE"), 40, []string{"HIGH_AMOUNT"}},
		{"a cent below", scored("d", t0, dec("4999.99"), true, "DE", "DE"), 0, []string{}},
		{"negative amount", scored("e", t0, dec("-9000.00"), true, "DE", "DE"), 0, []string{}},
		{"NULL total_base", scored("f", t0, nil, true, "DE", "DE"), 0, []string{}},
		{"COUNTRY_MISMATCH", scored("g", t0, dec("1.00"), true, "DE", "FR"), 20, []string{"COUNTRY_MISMATCH"}},
		{"UNKNOWN_CUSTOMER, no mismatch without a country", scored("h", t0, dec("1.00"), false, nil, "FR"), 15, []string{"UNKNOWN_CUSTOMER"}},
		{"no join marker: neither customer rule", scored("k", t0, dec("1.00"), nil, "DE", "FR"), 0, []string{}},
		{"HIGH_AMOUNT and UNKNOWN_CUSTOMER", scored("i", t0, dec("5000.01"), false, nil, "FR"), 55, []string{"HIGH_AMOUNT", "UNKNOWN_CUSTOMER"}},
		{"HIGH_AMOUNT and COUNTRY_MISMATCH", scored("j", t0, dec("7500.00"), true, "DE", "AT"), 60, []string{"HIGH_AMOUNT", "COUNTRY_MISMATCH"}},
	}
	f := newFraudT(t, defaultFraud())
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := batchOf(0, tt.row)
			apply(t, b, f)
			checkScore(t, tt.row, tt.score, tt.reasons...)
		})
	}
}

// All rules at once: the sixth order in five minutes of a customer, high
// and shipped abroad, scores 40+20+25 with the names in rule order; the
// same for an unknown customer scores 40+15+25.
func TestFraudAllRules(t *testing.T) {
	f := newFraudT(t, defaultFraud())
	var rows []record.Row
	for i := range 5 {
		rows = append(rows, scored("known", t0.Add(time.Duration(i)*time.Minute), dec("10.00"), true, "DE", "DE"))
	}
	for i := range 5 {
		rows = append(rows, scored("ghost", t0.Add(time.Duration(i)*time.Minute), dec("10.00"), false, nil, "DE"))
	}
	known := scored("known", t0.Add(5*time.Minute), dec("9000.00"), true, "DE", "FR")
	ghost := scored("ghost", t0.Add(5*time.Minute), dec("9000.00"), false, nil, "FR")
	b := batchOf(0, append(rows, known, ghost)...)
	apply(t, b, f)
	for _, r := range rows[:5] {
		checkScore(t, r, 0)
	}
	for _, r := range rows[5:] {
		checkScore(t, r, 15, "UNKNOWN_CUSTOMER")
	}
	checkScore(t, known, 85, "HIGH_AMOUNT", "COUNTRY_MISMATCH", "VELOCITY")
	checkScore(t, ghost, 80, "HIGH_AMOUNT", "UNKNOWN_CUSTOMER", "VELOCITY")
}

func TestFraudWeights(t *testing.T) {
	t.Run("weight 0 turns a rule off", func(t *testing.T) {
		cfg := defaultFraud()
		cfg.CountryMismatchWeight = 0
		row := scored("a", t0, dec("5000.00"), true, "DE", "FR")
		apply(t, batchOf(0, row), newFraudT(t, cfg))
		checkScore(t, row, 40, "HIGH_AMOUNT")
	})
	t.Run("score capped at the column's 65535", func(t *testing.T) {
		cfg := defaultFraud()
		cfg.HighAmountWeight, cfg.CountryMismatchWeight = 40000, 40000
		row := scored("a", t0, dec("5000.00"), true, "DE", "FR")
		apply(t, batchOf(0, row), newFraudT(t, cfg))
		checkScore(t, row, 65535, "HIGH_AMOUNT", "COUNTRY_MISMATCH")
	})
	t.Run("threshold with more decimals than the column", func(t *testing.T) {
		cfg := defaultFraud()
		cfg.HighAmount = "5000.005"
		f := newFraudT(t, cfg)
		lo, hi := scored("a", t0, dec("5000.00"), true, "DE", "DE"), scored("b", t0, dec("5000.01"), true, "DE", "DE")
		apply(t, batchOf(0, lo, hi), f)
		checkScore(t, lo, 0)
		checkScore(t, hi, 40, "HIGH_AMOUNT")
	})
}

// velocitySteps runs orders (customer, offset from t0) through f in one
// batch of partition p and returns whether VELOCITY fired for each.
func velocitySteps(t *testing.T, f *fraud, p int32, firstOffset int64, steps []velStep) []bool {
	t.Helper()
	rows := make([]record.Row, len(steps))
	for i, s := range steps {
		rows[i] = record.Row{"customer_id": s.customer, "created_at": t0.Add(s.after)}
	}
	b := batchOf(p, rows...)
	for i := range b.Items {
		b.Items[i].Rec.Offset = firstOffset + int64(i)
	}
	apply(t, b, f)
	fired := make([]bool, len(rows))
	for i, r := range rows {
		fired[i] = slices.Contains(r["fraud_reasons"].([]string), "VELOCITY")
	}
	return fired
}

type velStep struct {
	customer string
	after    time.Duration
}

// steps makes velSteps of customer c at the given minutes after t0.
func steps(c string, minutes ...float64) []velStep {
	out := make([]velStep, len(minutes))
	for i, m := range minutes {
		out[i] = velStep{c, time.Duration(m * float64(time.Minute))}
	}
	return out
}

// F and T spell expected firings.
const F, T = false, true

// VELOCITY: more than 5 orders of a customer in (t-10m, t].
func TestFraudVelocity(t *testing.T) {
	ms := time.Millisecond.Minutes()
	tests := []struct {
		name  string
		steps []velStep
		want  []bool
	}{
		{"the sixth in the window fires", steps("a", 0, 1, 2, 3, 4, 5), []bool{F, F, F, F, F, T}},
		{"and the seventh", steps("a", 0, 1, 2, 3, 4, 5, 6), []bool{F, F, F, F, F, T, T}},
		{"exactly a window apart is outside", steps("a", 0, 2, 4, 6, 8, 10, 10), []bool{F, F, F, F, F, F, T}},
		{"1 ms inside the window", steps("a", 0, 2, 4, 6, 8, 10-ms), []bool{F, F, F, F, F, T}},
		{"spread out never fires", steps("a", 0, 3, 6, 9, 12, 15, 18, 21, 24), []bool{F, F, F, F, F, F, F, F, F}},
		{"same instant, six orders", steps("a", 0, 0, 0, 0, 0, 0), []bool{F, F, F, F, F, T}},
		{"window slides past a burst", steps("a", 0, 1, 2, 3, 4, 5, 15, 15.5), []bool{F, F, F, F, F, T, F, F}},
		// Late orders count the kept orders at or before them: the late
		// 4m sees 0,1,2,3 (+itself) = 5; the late 4.5m sees six; 21m sees
		// only 20 (+itself).
		{"out of order", steps("a", 0, 1, 2, 3, 20, 4, 4.5, 21), []bool{F, F, F, F, F, F, T, F}},
		{"customers do not mix", append(steps("a", 0, 1, 2, 3, 4), steps("b", 0, 1, 2, 3, 4)...), []bool{F, F, F, F, F, F, F, F, F, F}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := velocitySteps(t, velocityOnly(t, 100), 0, 0, tt.steps)
			if !slices.Equal(got, tt.want) {
				t.Errorf("fired %v, want %v", got, tt.want)
			}
		})
	}
}

func TestFraudVelocityState(t *testing.T) {
	t.Run("spans batches", func(t *testing.T) {
		f := velocityOnly(t, 100)
		got := velocitySteps(t, f, 0, 0, steps("a", 0, 1, 2))
		got = append(got, velocitySteps(t, f, 0, 3, steps("a", 3, 4, 5))...)
		if want := []bool{F, F, F, F, F, T}; !slices.Equal(got, want) {
			t.Errorf("fired %v, want %v", got, want)
		}
	})
	t.Run("a re-delivered batch is not counted twice", func(t *testing.T) {
		f := velocityOnly(t, 100)
		first := velocitySteps(t, f, 0, 0, steps("a", 0, 1, 2, 3))
		again := velocitySteps(t, f, 0, 0, steps("a", 0, 1, 2, 3))
		if want := []bool{F, F, F, F}; !slices.Equal(first, want) || !slices.Equal(again, want) {
			t.Errorf("fired %v then %v, want %v twice", first, again, want)
		}
		// Two new orders: the sixth fires, counting each order once.
		if got, want := velocitySteps(t, f, 0, 4, steps("a", 4, 5)), []bool{F, T}; !slices.Equal(got, want) {
			t.Errorf("fired %v, want %v", got, want)
		}
	})
	t.Run("partitions are isolated", func(t *testing.T) {
		f := velocityOnly(t, 100)
		velocitySteps(t, f, 0, 0, steps("a", 0, 1, 2, 3, 4))
		if got := velocitySteps(t, f, 1, 0, steps("a", 5)); got[0] {
			t.Error("partition 1 counted partition 0's orders")
		}
		if got := velocitySteps(t, f, 0, 5, steps("a", 5)); !got[0] {
			t.Error("partition 0's sixth order did not fire")
		}
	})
	t.Run("Forget clears a partition", func(t *testing.T) {
		f := velocityOnly(t, 100)
		velocitySteps(t, f, 0, 0, steps("a", 0, 1, 2, 3, 4))
		velocitySteps(t, f, 1, 0, steps("a", 0, 1, 2, 3, 4))
		var ps PartitionState = f
		ps.Forget(0)
		ps.Forget(7) // never seen: a no-op
		if _, ok := f.vel.parts[0]; ok {
			t.Fatal("partition 0's state survived Forget")
		}
		if got := velocitySteps(t, f, 0, 5, steps("a", 5)); got[0] {
			t.Error("partition 0 counted orders from before Forget")
		}
		if got := velocitySteps(t, f, 1, 5, steps("a", 5)); !got[0] {
			t.Error("Forget(0) cleared partition 1")
		}
	})
	t.Run("Forget without VELOCITY", func(t *testing.T) {
		cfg := defaultFraud()
		cfg.VelocityWeight = 0
		f := newFraudT(t, cfg)
		f.Forget(0)
		if f.vel != nil {
			t.Error("VELOCITY state kept with weight 0")
		}
	})
}

// With room for 2 customers, the least recently seen one is forgotten.
func TestFraudVelocityLRU(t *testing.T) {
	f := velocityOnly(t, 2)
	var got []bool
	off := int64(0)
	run := func(s []velStep) {
		got = append(got, velocitySteps(t, f, 0, off, s)...)
		off += int64(len(s))
	}
	run(steps("a", 0, 1, 2, 3, 4))
	run(steps("b", 4.5))
	run(steps("a", 5))   // sixth of a: fires, and a is now the most recent
	run(steps("c", 5.5)) // evicts b, not a
	run(steps("a", 6))   // a's history survived
	run(steps("d", 6.5)) // evicts c
	run(steps("e", 7))   // evicts a
	run(steps("a", 7.5)) // a starts afresh: an under-count, by design
	if want := []bool{F, F, F, F, F, F, T, F, T, F, F, F}; !slices.Equal(got, want) {
		t.Errorf("fired %v, want %v", got, want)
	}
	ps := f.vel.parts[0]
	if ids := lruIDs(ps); !slices.Equal(ids, []string{"a", "e"}) {
		t.Errorf("customers kept, most recent first: %v, want [a e]", ids)
	}
}

// lruIDs walks ps's LRU list, most recent first, checking it against the
// map.
func lruIDs(ps *partVelocity) []string {
	var ids []string
	for c := ps.lru.next; c != &ps.lru; c = c.next {
		if ps.byID[c.id] != c || c.next.prev != c {
			panic("LRU list and map disagree at " + c.id)
		}
		ids = append(ids, c.id)
	}
	return ids
}

// Many customers and orders: the state never holds more than
// VelocityMaxCustomers customers nor more than max+1 timestamps each, and
// scoring known customers allocates nothing.
func TestFraudVelocityBounded(t *testing.T) {
	const maxCustomers = 50
	f := velocityOnly(t, maxCustomers)
	off := int64(0)
	for batch := range 40 {
		rows := make([]record.Row, 500)
		for i := range rows {
			n := batch*500 + i
			// 5000 customers, times jumping back and forth.
			rows[i] = record.Row{"customer_id": fmt.Sprintf("c%d", n*7919%5000), "created_at": t0.Add(time.Duration(n*37%600) * time.Second)}
		}
		b := batchOf(0, rows...)
		for i := range b.Items {
			b.Items[i].Rec.Offset = off
			off++
		}
		apply(t, b, f)

		ps := f.vel.parts[0]
		if n := len(ps.byID); n > maxCustomers {
			t.Fatalf("batch %d: %d customers kept, bound %d", batch, n, maxCustomers)
		}
		if n := len(lruIDs(ps)); n != len(ps.byID) {
			t.Fatalf("batch %d: LRU list has %d customers, map %d", batch, n, len(ps.byID))
		}
		for id, c := range ps.byID {
			if len(c.orders) > 6 || cap(c.orders) != 6 {
				t.Fatalf("batch %d: customer %s keeps %d orders (capacity %d), bound 6", batch, id, len(c.orders), cap(c.orders))
			}
			if !slices.IsSortedFunc(c.orders, func(a, b velOrder) int { return int(a.at - b.at) }) {
				t.Fatalf("batch %d: customer %s's orders out of order: %v", batch, id, c.orders)
			}
		}
	}

	// A batch of kept customers, scored again and again (re-deliveries):
	// no allocation at all.
	ps := f.vel.parts[0]
	var rows []record.Row
	for id := range ps.byID {
		rows = append(rows, record.Row{"customer_id": id, "created_at": t0})
	}
	b := batchOf(0, rows...)
	apply(t, b, f)
	if n := testing.AllocsPerRun(20, func() { _ = f.Apply(context.Background(), b) }); n != 0 {
		t.Errorf("scoring a batch of known customers allocates %v times", n)
	}
}

// Partitions score concurrently while the engine forgets others; run with
// -race. Each partition's result is what it would be alone.
func TestFraudConcurrentPartitions(t *testing.T) {
	f := velocityOnly(t, 10)
	var wg sync.WaitGroup
	for p := range int32(4) {
		wg.Go(func() {
			for round := range 50 {
				off := int64(round * 6)
				base := time.Duration(round) * time.Hour
				s := steps("a", 0, 1, 2, 3, 4, 5)
				for i := range s {
					s[i].after += base
				}
				if got := velocitySteps(t, f, p, off, s); !slices.Equal(got, []bool{F, F, F, F, F, T}) {
					t.Errorf("partition %d round %d: fired %v", p, round, got)
					return
				}
			}
		})
	}
	wg.Go(func() {
		for i := range 1000 {
			f.Forget(int32(100 + i%3))
			velocitySteps(t, f, int32(100+i%3), int64(i), steps("a", float64(i%10)))
		}
	})
	wg.Wait()
}

func TestFraudBuild(t *testing.T) {
	order, payment := loadSchema(t, "order"), loadSchema(t, "payment")
	// An event that arrives converted already: HIGH_AMOUNT needs no currency.
	converted, err := decode.ParseSchema([]byte(`{"type":"record","name":"Converted","fields":[
		{"name":"customer_id","type":"string"},
		{"name":"created_at","type":{"type":"long","logicalType":"timestamp-millis"}},
		{"name":"total_base","type":{"type":"bytes","logicalType":"decimal","precision":18,"scale":2}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	store := refdata.NewStore("USD")
	with := func(change func(*config.Fraud)) config.Fraud {
		c := defaultFraud()
		change(&c)
		return c
	}
	tests := []struct {
		name  string
		names []string
		env   Env
		err   string
	}{
		{"orders", []string{"currency", "customer", "fraud"}, Env{Schema: order, Store: store, Fraud: defaultFraud()}, ""},
		{"fraud alone", []string{"fraud"}, Env{Schema: order, Fraud: defaultFraud()}, `list "currency" before "fraud"`},
		{"customer after fraud", []string{"currency", "fraud", "customer"}, Env{Schema: order, Store: store, Fraud: defaultFraud()}, `list "customer" before "fraud"`},
		{"the caller's Transforms is not trusted", []string{"fraud"}, Env{Schema: order, Fraud: defaultFraud(), Transforms: []string{"currency", "customer", "fraud"}}, `"currency" before "fraud"`},
		{"no currency", []string{"customer", "fraud"}, Env{Schema: order, Store: store, Fraud: defaultFraud()}, `HIGH_AMOUNT reads total_base, which "currency" writes`},
		{"no currency, HIGH_AMOUNT off", []string{"customer", "fraud"}, Env{Schema: order, Store: store, Fraud: with(func(c *config.Fraud) { c.HighAmountWeight = 0 })}, ""},
		{"total_base in the schema", []string{"fraud"}, Env{Schema: converted, Fraud: with(func(c *config.Fraud) { c.CountryMismatchWeight, c.UnknownCustomerWeight = 0, 0 })}, ""},
		{"only VELOCITY", []string{"fraud"}, Env{Schema: order, Fraud: config.Fraud{VelocityMaxOrders: 1, VelocityWindow: time.Second, VelocityWeight: 1, VelocityMaxCustomers: 1}}, ""},
		{"no schema", []string{"fraud"}, Env{Fraud: defaultFraud()}, "schema"},
		{"bad threshold", []string{"currency", "customer", "fraud"}, Env{Schema: order, Store: store, Fraud: with(func(c *config.Fraud) { c.HighAmount = "5k" })}, `threshold "5k" is not a decimal`},
		{"negative weight", []string{"currency", "customer", "fraud"}, Env{Schema: order, Store: store, Fraud: with(func(c *config.Fraud) { c.VelocityWeight = -1 })}, "VELOCITY weight is -1"},
		{"max orders 0", []string{"currency", "customer", "fraud"}, Env{Schema: order, Store: store, Fraud: with(func(c *config.Fraud) { c.VelocityMaxOrders = 0 })}, "max orders is 0"},
		{"window 0", []string{"currency", "customer", "fraud"}, Env{Schema: order, Store: store, Fraud: with(func(c *config.Fraud) { c.VelocityWindow = 0 })}, "window is 0s"},
		{"max customers 0", []string{"currency", "customer", "fraud"}, Env{Schema: order, Store: store, Fraud: with(func(c *config.Fraud) { c.VelocityMaxCustomers = 0 })}, "max customers is 0"},
		{"payments have no customer", []string{"currency", "fraud"}, Env{Schema: payment, Store: store, Fraud: config.Fraud{HighAmount: "1", HighAmountWeight: 1, VelocityMaxOrders: 1, VelocityWindow: time.Second, VelocityWeight: 1, VelocityMaxCustomers: 1}}, "VELOCITY: schema io.sluice.ecommerce.Payment has no field customer_id"},
		{"payments, HIGH_AMOUNT on amount_base", []string{"currency", "fraud"}, Env{Schema: payment, Store: store, Fraud: config.Fraud{HighAmount: "1", HighAmountWeight: 1}}, ""},
		{"no shipping country", []string{"currency", "customer", "fraud"}, Env{Schema: order, Store: store, Fraud: defaultFraud(), Fields: config.Fields{ShippingCountry: "country"}}, `COUNTRY_MISMATCH: fields.shipping_country: "country" is not a field`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts, err := Build(tt.names, tt.env)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			f := ts[len(ts)-1]
			if got, want := f.Outputs(), []string{"fraud_score", "fraud_reasons"}; !slices.Equal(got, want) {
				t.Errorf("Outputs() = %v, want %v", got, want)
			}
		})
	}
}

// The three transforms in order on decoded orders, as a pipeline runs
// them.
func TestEnrichOrders(t *testing.T) {
	store := storeWith(eurHistory)
	store.PutCustomer("c-1", refdata.Customer{Name: "Ada", Country: "GB", Segment: "VIP"})
	ts := build(t, []string{"currency", "customer", "fraud"}, Env{Schema: loadSchema(t, "order"), Store: store, Fraud: defaultFraud()})

	mk := func(cust, cur, total, ship string) record.Row {
		r := order(cur, total, "2026-01-01T10:00:00Z")
		r["customer_id"], r["shipping_country"] = cust, ship
		return r
	}
	high := mk("c-1", "EUR", "4545.46", "GB")      // * 1.1 = 5000.006 -> 5000.01: HIGH_AMOUNT
	noRate := mk("c-1", "XTS", "1.00", "GB")       // dead-lettered by currency
	unknown := mk("c-9", "USD", "10.00", "GB")     // UNKNOWN_CUSTOMER
	abroad := mk("c-1", "USD", "4999.99", "FR")    // COUNTRY_MISMATCH
	justBelow := mk("c-1", "EUR", "4545.45", "GB") // * 1.1 = 4999.995 -> 5000.00 (tie, 9 odd): HIGH_AMOUNT
	b := batchOf(0, high, noRate, unknown, abroad, justBelow)
	apply(t, b, ts...)

	checkConverted(t, b.Items[0], "5000.01", "1.10000000")
	checkScore(t, high, 40, "HIGH_AMOUNT")
	if b.Items[1].Failed == nil {
		t.Error("XTS order not failed")
	}
	if _, ok := noRate["fraud_score"]; ok {
		t.Error("failed order was scored")
	}
	checkScore(t, unknown, 15, "UNKNOWN_CUSTOMER")
	if unknown["customer_name"] != nil || unknown["total_base"] == nil {
		t.Errorf("unknown customer row: %v", unknown)
	}
	checkScore(t, abroad, 20, "COUNTRY_MISMATCH")
	checkConverted(t, b.Items[4], "5000.00", "1.10000000")
	checkScore(t, justBelow, 40, "HIGH_AMOUNT")
}
