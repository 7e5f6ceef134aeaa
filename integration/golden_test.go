//go:build integration

package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-etl/sluice/internal/itest"
	"github.com/sluice-etl/sluice/pkg/dlq"
	"github.com/sluice-etl/sluice/pkg/gen"
)

// The golden dataset: customers, rate histories and events whose enriched
// columns are computed by hand below. T0 is the base of every timestamp.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

type goldenOrder struct {
	id, customer, currency, total, ship string
	created                             time.Time
	// expectations; dead != "" means the order is dead-lettered with a
	// reason containing it.
	base, rate         string
	name, country, seg string // "" = NULL
	score              int
	reasons            string // comma-separated, rule order
	dead               string
}

func goldenOrders(phase int) []goldenOrder {
	if phase == 2 {
		return []goldenOrder{
			// Eve was produced after o16: now she is known.
			{id: "o17", customer: "C5", currency: "USD", total: "10.00", ship: "FR", created: at(4 * time.Hour),
				base: "10.00", rate: "1.00000000", name: "Eve Late", country: "FR", seg: "CONSUMER"},
			// Carol was deleted by a tombstone: a miss from then on.
			{id: "o18", customer: "C3", currency: "USD", total: "10.00", ship: "GB", created: at(4 * time.Hour),
				base: "10.00", rate: "1.00000000", score: 15, reasons: "UNKNOWN_CUSTOMER"},
		}
	}
	alice := func(o goldenOrder) goldenOrder { o.name, o.country, o.seg = "Alice Smith", "US", "CONSUMER"; return o }
	bob := func(o goldenOrder) goldenOrder { o.name, o.country, o.seg = "Bob Meyer", "DE", "VIP"; return o }
	dan := func(o goldenOrder) goldenOrder { o.name, o.country, o.seg = "Dan Fast", "US", "BUSINESS"; return o }
	return []goldenOrder{
		// EUR is 1.10 from T0, 1.20 from T0+1h.
		alice(goldenOrder{id: "o1", customer: "C1", currency: "EUR", total: "100.00", ship: "US", created: at(30 * time.Minute), base: "110.00", rate: "1.10000000"}),
		alice(goldenOrder{id: "o2", customer: "C1", currency: "EUR", total: "100.00", ship: "US", created: at(time.Hour), base: "120.00", rate: "1.20000000"}),
		alice(goldenOrder{id: "o3", customer: "C1", currency: "EUR", total: "100.00", ship: "US", created: at(time.Hour - time.Millisecond), base: "110.00", rate: "1.10000000"}),
		// GBP 1.25: 0.02*1.25 = 0.025 -> 0.02 and 0.06*1.25 = 0.075 -> 0.08 (half-even ties).
		bob(goldenOrder{id: "o4", customer: "C2", currency: "GBP", total: "0.02", ship: "DE", created: at(time.Hour), base: "0.02", rate: "1.25000000"}),
		bob(goldenOrder{id: "o5", customer: "C2", currency: "GBP", total: "0.06", ship: "DE", created: at(80 * time.Minute), base: "0.08", rate: "1.25000000"}),
		// JPY 0.0067: 1234.00*0.0067 = 8.2678 -> 8.27.
		bob(goldenOrder{id: "o6", customer: "C2", currency: "JPY", total: "1234.00", ship: "DE", created: at(100 * time.Minute), base: "8.27", rate: "0.00670000"}),
		// The base currency converts at 1; HIGH_AMOUNT fires at 5000.00 and above.
		bob(goldenOrder{id: "o7", customer: "C2", currency: "USD", total: "5000.00", ship: "DE", created: at(120 * time.Minute), base: "5000.00", rate: "1.00000000", score: 40, reasons: "HIGH_AMOUNT"}),
		bob(goldenOrder{id: "o8", customer: "C2", currency: "USD", total: "4999.99", ship: "DE", created: at(140 * time.Minute), base: "4999.99", rate: "1.00000000"}),
		// The largest Decimal(18,2).
		bob(goldenOrder{id: "o9", customer: "C2", currency: "USD", total: "9999999999999999.99", ship: "DE", created: at(160 * time.Minute), base: "9999999999999999.99", rate: "1.00000000", score: 40, reasons: "HIGH_AMOUNT"}),
		// Dead letters: overflow after conversion, a currency without any
		// rate, and an event before the currency's first rate.
		{id: "o10", customer: "C2", currency: "EUR", total: "9999999999999999.99", ship: "DE", created: at(2 * time.Hour), dead: "overflows"},
		{id: "o11", customer: "C2", currency: "XTS", total: "10.00", ship: "DE", created: at(time.Hour), dead: "no FX rate for XTS"},
		{id: "o12", customer: "C2", currency: "EUR", total: "10.00", ship: "DE", created: at(-time.Millisecond), dead: "no FX rate for EUR at 2026-03-01T11:59:59.999Z"},
		bob(goldenOrder{id: "o13", customer: "C2", currency: "USD", total: "10.00", ship: "FR", created: at(180 * time.Minute), base: "10.00", rate: "1.00000000", score: 20, reasons: "COUNTRY_MISMATCH"}),
		{id: "o14", customer: "C9", currency: "USD", total: "10.00", ship: "US", created: at(time.Hour), base: "10.00", rate: "1.00000000", score: 15, reasons: "UNKNOWN_CUSTOMER"},
		{id: "o15", customer: "C3", currency: "USD", total: "10.00", ship: "GB", created: at(time.Hour), base: "10.00", rate: "1.00000000", name: "Carol Tomb", country: "GB", seg: "BUSINESS"},
		// Eve does not exist yet.
		{id: "o16", customer: "C5", currency: "USD", total: "10.00", ship: "FR", created: at(time.Hour), base: "10.00", rate: "1.00000000", score: 15, reasons: "UNKNOWN_CUSTOMER"},
		// Bob's orders above are 20 minutes apart, so VELOCITY stays quiet
		// for him. VELOCITY: more than 5 orders within (t-10m, t]. v6 at +10m has
		// v2..v6 (v1 is exactly 10m before, outside); v7 at +10m30s has 6.
		dan(goldenOrder{id: "v1", customer: "C4", currency: "USD", total: "1.00", ship: "US", created: at(3 * time.Hour), base: "1.00", rate: "1.00000000"}),
		dan(goldenOrder{id: "v2", customer: "C4", currency: "USD", total: "1.00", ship: "US", created: at(3*time.Hour + 6*time.Minute), base: "1.00", rate: "1.00000000"}),
		dan(goldenOrder{id: "v3", customer: "C4", currency: "USD", total: "1.00", ship: "US", created: at(3*time.Hour + 7*time.Minute), base: "1.00", rate: "1.00000000"}),
		dan(goldenOrder{id: "v4", customer: "C4", currency: "USD", total: "1.00", ship: "US", created: at(3*time.Hour + 8*time.Minute), base: "1.00", rate: "1.00000000"}),
		dan(goldenOrder{id: "v5", customer: "C4", currency: "USD", total: "1.00", ship: "US", created: at(3*time.Hour + 9*time.Minute), base: "1.00", rate: "1.00000000"}),
		dan(goldenOrder{id: "v6", customer: "C4", currency: "USD", total: "1.00", ship: "US", created: at(3*time.Hour + 10*time.Minute), base: "1.00", rate: "1.00000000"}),
		dan(goldenOrder{id: "v7", customer: "C4", currency: "USD", total: "1.00", ship: "US", created: at(3*time.Hour + 10*time.Minute + 30*time.Second), base: "1.00", rate: "1.00000000", score: 25, reasons: "VELOCITY"}),
	}
}

type goldenPayment struct {
	id, currency, amount, status string
	created                      time.Time
	base, rate                   string
	succeeded                    uint8
	dead                         string
}

// Refunds are negative amounts: they convert with the same rounding.
var goldenPayments = []goldenPayment{
	{id: "p1", currency: "EUR", amount: "100.00", status: "CAPTURED", created: at(30 * time.Minute), base: "110.00", rate: "1.10000000", succeeded: 1},
	{id: "p2", currency: "GBP", amount: "0.02", status: "FAILED", created: at(30 * time.Minute), base: "0.02", rate: "1.25000000"},
	// -100.05 * 1.10 = -110.055 -> -110.06 (half-even: 5 is odd).
	{id: "p3", currency: "EUR", amount: "-100.05", status: "REFUNDED", created: at(30 * time.Minute), base: "-110.06", rate: "1.10000000"},
	{id: "p4", currency: "XTS", amount: "5.00", status: "AUTHORIZED", created: at(30 * time.Minute), dead: "no FX rate for XTS"},
	{id: "p5", currency: "USD", amount: "20.00", status: "AUTHORIZED", created: at(31 * time.Minute), base: "20.00", rate: "1.00000000", succeeded: 1},
}

// TestGoldenDataset loads the golden orders (as Avro, then as JSON: both
// through the columnar path with every transform) and payments, with the
// reference data changing while it runs (Eve created, Carol deleted), and
// checks every enriched column, dead letter and KPI computed by hand.
func TestGoldenDataset(t *testing.T) {
	for _, format := range []string{"avro", "json"} {
		t.Run(format, func(t *testing.T) { goldenDataset(t, format) })
	}
}

func goldenDataset(t *testing.T, format string) {
	w := newWorld(t)
	tp := map[string]string{}
	for _, n := range []string{"orders", "payments", "customers", "fx"} {
		tp[n] = w.name(n)
	}
	w.createTopic(tp["orders"], 2)
	w.createTopic(tp["payments"], 1)
	w.createTopic(tp["customers"], 1)
	w.createTopic(tp["fx"], 1)
	w.createTopic(w.name("dlq"), 1)
	codecs, err := gen.LoadCodecs(filepath.Join(repoRoot(), "schemas", "avro"))
	if err != nil {
		t.Fatal(err)
	}
	produce := func(recs ...*kgo.Record) {
		t.Helper()
		if err := w.kcl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	customer := func(id, name, country, seg string) *kgo.Record {
		k, v, err := codecs.EncodeCustomer(gen.Customer{CustomerID: id, Name: name, Email: strings.ToLower(id) + "@example.com",
			Country: country, Segment: gen.Segment(seg), CreatedAt: t0.Add(-24 * time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		return &kgo.Record{Topic: tp["customers"], Key: k, Value: v}
	}
	rate := func(cur, r string, from time.Time) *kgo.Record {
		k, v, err := codecs.EncodeFxRate(gen.FxRate{Currency: cur, Rate: dec(r), EffectiveFrom: from})
		if err != nil {
			t.Fatal(err)
		}
		return &kgo.Record{Topic: tp["fx"], Key: k, Value: v}
	}
	encode := codecs.EncodeOrder
	if format == "json" {
		encode = gen.EncodeOrderJSON
	}
	orderRecs := func(os []goldenOrder) []*kgo.Record {
		var out []*kgo.Record
		for _, o := range os {
			k, v, err := encode(gen.Order{OrderID: o.id, CustomerID: o.customer, CreatedAt: o.created, Currency: o.currency,
				Total: dec(o.total), Status: gen.OrderCreated, Channel: gen.ChannelWeb, ShippingCountry: o.ship,
				Items: []gen.LineItem{{SKU: "SKU-1", Quantity: 1, UnitPrice: dec(o.total)}}})
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, &kgo.Record{Topic: tp["orders"], Key: k, Value: v})
		}
		return out
	}

	produce(
		customer("C1", "Alice Smith", "US", "CONSUMER"), customer("C2", "Bob Meyer", "DE", "VIP"),
		customer("C3", "Carol Tomb", "GB", "BUSINESS"), customer("C4", "Dan Fast", "US", "BUSINESS"),
		rate("EUR", "1.10000000", t0), rate("EUR", "1.20000000", t0.Add(time.Hour)),
		rate("GBP", "1.25000000", t0), rate("JPY", "0.00670000", t0),
	)
	produce(orderRecs(goldenOrders(1))...)
	for _, p := range goldenPayments {
		var reason *string
		if p.status == "FAILED" {
			s := "card_declined"
			reason = &s
		}
		k, v, err := codecs.EncodePayment(gen.Payment{PaymentID: p.id, OrderID: "o1", CreatedAt: p.created, Method: gen.MethodCard,
			Status: gen.PaymentStatus(p.status), Amount: dec(p.amount), Currency: p.currency, FailureReason: reason})
		if err != nil {
			t.Fatal(err)
		}
		produce(&kgo.Record{Topic: tp["payments"], Key: k, Value: v})
	}

	group := w.name("g")
	cfg := w.sluiceConfig(group, fmt.Sprintf(`  - name: orders
    topic: %s
    format: %s
    schema: %s
    table: orders
    transforms: [order_items, currency, customer, fraud]
  - name: payments
    topic: %s
    schema: %s
    table: payments
    transforms: [payment_status, currency]
`, tp["orders"], format, filepath.Join(repoRoot(), "schemas/avro/order.avsc"), tp["payments"], filepath.Join(repoRoot(), "schemas/avro/payment.avsc")))
	cfg.Reference.CustomersTopic = tp["customers"]
	cfg.Reference.FxRatesTopic = tp["fx"]
	s := w.startSluice(cfg)
	waitUntil(t, "phase 1 committed", 2*time.Minute, func() bool {
		return itest.EqualOffsets(w.committed(group, tp["orders"]), w.endOffsets(tp["orders"])) &&
			itest.EqualOffsets(w.committed(group, tp["payments"]), w.endOffsets(tp["payments"]))
	})

	// Phase 2: Eve appears, Carol is deleted; the running Sluice follows.
	metric := func(name string) string {
		resp, err := http.Get("http://" + s.svc.AdminAddr() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		for _, line := range strings.Split(string(body), "\n") {
			if strings.HasPrefix(line, name+" ") {
				return strings.TrimPrefix(line, name+" ")
			}
		}
		return ""
	}
	produce(customer("C5", "Eve Late", "FR", "CONSUMER"))
	waitUntil(t, "Eve in the reference store", 30*time.Second, func() bool { return metric("sluice_refdata_customers") == "5" })
	produce(&kgo.Record{Topic: tp["customers"], Key: []byte("C3")}) // tombstone
	waitUntil(t, "Carol deleted from the reference store", 30*time.Second, func() bool { return metric("sluice_refdata_customers") == "4" })
	produce(orderRecs(goldenOrders(2))...)
	waitUntil(t, "phase 2 committed", time.Minute, func() bool {
		return itest.EqualOffsets(w.committed(group, tp["orders"]), w.endOffsets(tp["orders"]))
	})
	s.stop(t)

	// Every loaded order, exactly.
	want := map[string]goldenOrder{}
	deadWant := map[string]string{}
	for _, o := range append(goldenOrders(1), goldenOrders(2)...) {
		if o.dead != "" {
			deadWant[o.id] = o.dead
			continue
		}
		want[o.id] = o
	}
	rows, err := w.ch.Query(context.Background(), fmt.Sprintf(`SELECT order_id, toString(total_base), toString(fx_rate),
		ifNull(customer_name, ''), ifNull(customer_country, ''), ifNull(customer_segment, ''), fraud_score,
		arrayStringConcat(fraud_reasons, ','), item_count FROM %s.orders`, w.db))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for rows.Next() {
		var id, base, rate, name, country, seg, reasons string
		var score uint16
		var items uint32
		if err := rows.Scan(&id, &base, &rate, &name, &country, &seg, &score, &reasons, &items); err != nil {
			t.Fatal(err)
		}
		o, ok := want[id]
		if !ok {
			t.Errorf("order %s loaded; want it dead-lettered (%q)", id, deadWant[id])
			continue
		}
		if got[id] {
			t.Errorf("order %s loaded twice", id)
		}
		got[id] = true
		// toString of a Decimal drops trailing zeros on 18.16 and keeps
		// them on current releases: compare as exact decimals.
		if !dec(base).Equal(dec(o.base)) || !dec(rate).Equal(dec(o.rate)) {
			t.Errorf("%s: total_base %s fx_rate %s, want %s and %s", id, base, rate, o.base, o.rate)
		}
		if name != o.name || country != o.country || seg != o.seg {
			t.Errorf("%s: customer (%q,%q,%q), want (%q,%q,%q)", id, name, country, seg, o.name, o.country, o.seg)
		}
		if int(score) != o.score || reasons != o.reasons {
			t.Errorf("%s: fraud %d [%s], want %d [%s]", id, score, reasons, o.score, o.reasons)
		}
		if items != 1 {
			t.Errorf("%s: item_count %d, want 1", id, items)
		}
	}
	rows.Close()
	for id := range want {
		if !got[id] {
			t.Errorf("order %s missing", id)
		}
	}

	// Payments.
	prow, err := w.ch.Query(context.Background(), fmt.Sprintf(`SELECT payment_id, toString(amount_base), toString(fx_rate), succeeded FROM %s.payments`, w.db))
	if err != nil {
		t.Fatal(err)
	}
	pgot := map[string]bool{}
	for prow.Next() {
		var id, base, rate string
		var ok uint8
		if err := prow.Scan(&id, &base, &rate, &ok); err != nil {
			t.Fatal(err)
		}
		pgot[id] = true
		for _, p := range goldenPayments {
			if p.id != id {
				continue
			}
			if p.dead != "" {
				t.Errorf("payment %s loaded; want it dead-lettered", id)
			} else if !dec(base).Equal(dec(p.base)) || !dec(rate).Equal(dec(p.rate)) || ok != p.succeeded {
				t.Errorf("%s: amount_base %s fx_rate %s succeeded %d, want %s %s %d", id, base, rate, ok, p.base, p.rate, p.succeeded)
			}
		}
	}
	prow.Close()
	for _, p := range goldenPayments {
		if p.dead == "" && !pgot[p.id] {
			t.Errorf("payment %s missing", p.id)
		}
		if p.dead != "" {
			deadWant[p.id] = p.dead
		}
	}

	// Dead letters: one per bad record, original bytes, stage and reason.
	// The orders as produced, by id (the same bytes: the encodings are
	// deterministic), so a letter is known by its value in either format.
	originals := map[string][]byte{}
	for _, o := range append(goldenOrders(1), goldenOrders(2)...) {
		originals[o.id] = orderRecs([]goldenOrder{o})[0].Value
	}
	letters := readAll(t, w, w.name("dlq"))
	var gotDead []string
	for _, l := range letters {
		id := ""
		if dlq.Header(l, dlq.HeaderTopic) == tp["orders"] {
			for oid, v := range originals {
				if string(v) == string(l.Value) {
					id = oid
				}
			}
			if id == "" {
				t.Errorf("a dead letter of the orders topic keeps no order's original bytes: %q", l.Value)
			}
		} else if p, err := codecs.DecodePayment(l.Value); err == nil {
			id = p.PaymentID
		}
		reason := dlq.Header(l, dlq.HeaderReason)
		if dlq.Header(l, dlq.HeaderStage) != "transform" || !strings.Contains(reason, deadWant[id]) || deadWant[id] == "" {
			t.Errorf("dead letter %s: stage %s reason %q, want transform and %q", id, dlq.Header(l, dlq.HeaderStage), reason, deadWant[id])
		}
		if _, err := strconv.ParseInt(dlq.Header(l, dlq.HeaderOffset), 10, 64); err != nil || dlq.Header(l, dlq.HeaderPipeline) == "" {
			t.Errorf("dead letter %s headers %v", id, l.Headers)
		}
		gotDead = append(gotDead, id)
	}
	sort.Strings(gotDead)
	if strings.Join(gotDead, ",") != "o10,o11,o12,p4" {
		t.Errorf("dead letters for %v, want o10,o11,o12,p4", gotDead)
	}

	// KPI views, computed from the tables.
	var orders uint64
	var revenue string
	if err := w.ch.QueryRow(context.Background(), fmt.Sprintf(
		"SELECT sum(orders), toString(sum(revenue_base)) FROM %s.orders_per_minute", w.db)).Scan(&orders, &revenue); err != nil {
		t.Fatal(err)
	}
	sum := decimal.Zero
	for _, o := range want {
		sum = sum.Add(dec(o.base))
	}
	if orders != uint64(len(want)) || !dec(revenue).Equal(sum) {
		t.Errorf("orders_per_minute: %d orders, revenue %s; want %d and %s", orders, revenue, len(want), sum)
	}
	var attempts, successes uint64
	var successRate float64
	if err := w.ch.QueryRow(context.Background(), fmt.Sprintf(
		"SELECT attempts, successes, success_rate FROM %s.payment_success_rate WHERE minute = toDateTime('2026-03-01 12:30:00', 'UTC')", w.db)).Scan(&attempts, &successes, &successRate); err != nil {
		t.Fatal(err)
	}
	// 12:30: p1 CAPTURED, p2 FAILED (p3 is a refund, p4 dead-lettered).
	if attempts != 2 || successes != 1 || successRate != 0.5 {
		t.Errorf("payment_success_rate at 12:30: %d attempts, %d successes, rate %v; want 2, 1, 0.5", attempts, successes, successRate)
	}
}
