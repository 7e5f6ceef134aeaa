//go:build integration

package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-etl/sluice/internal/itest"
	"github.com/sluice-etl/sluice/pkg/dlq"
	"github.com/sluice-etl/sluice/pkg/gen"
)

// TestGoldenDatasetJSON is TestGoldenDataset's orders as JSON: a JSON
// pipeline with [order_items, currency, customer, fraud] takes the
// columnar path (every transform works on the block), so the enriched
// columns and the dead letters computed by hand must come out of it too,
// including the reference data changing while it runs (Eve created, Carol
// deleted).
func TestGoldenDatasetJSON(t *testing.T) {
	w := newWorld(t)
	tp := map[string]string{}
	for _, n := range []string{"orders", "customers", "fx"} {
		tp[n] = w.name(n)
	}
	w.createTopic(tp["orders"], 2)
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
	originals := map[string][]byte{}
	orderRecs := func(os []goldenOrder) []*kgo.Record {
		var out []*kgo.Record
		for _, o := range os {
			k, v, err := gen.EncodeOrderJSON(gen.Order{OrderID: o.id, CustomerID: o.customer, CreatedAt: o.created, Currency: o.currency,
				Total: dec(o.total), Status: gen.OrderCreated, Channel: gen.ChannelWeb, ShippingCountry: o.ship,
				Items: []gen.LineItem{{SKU: "SKU-1", Quantity: 1, UnitPrice: dec(o.total)}}})
			if err != nil {
				t.Fatal(err)
			}
			originals[o.id] = v
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
	group := w.name("g")
	cfg := w.sluiceConfig(group, fmt.Sprintf(`  - name: orders
    topic: %s
    format: json
    schema: %s
    table: orders
    transforms: [order_items, currency, customer, fraud]
`, tp["orders"], filepath.Join(repoRoot(), "schemas/avro/order.avsc")))
	cfg.Reference.CustomersTopic = tp["customers"]
	cfg.Reference.FxRatesTopic = tp["fx"]
	s := w.startSluice(cfg)
	waitUntil(t, "phase 1 committed", 2*time.Minute, func() bool {
		return itest.EqualOffsets(w.committed(group, tp["orders"]), w.endOffsets(tp["orders"]))
	})
	// Phase 2: Eve appears, Carol is deleted; the running Sluice follows.
	// Eve's order would wait for her anyway (a miss awaits a current
	// Store); Carol's would not (a hit), so her deletion is awaited first.
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
	produce(&kgo.Record{Topic: tp["customers"], Key: []byte("C3")}) // tombstone
	waitUntil(t, "Carol deleted from the reference store", 30*time.Second, func() bool { return metric("sluice_refdata_customers") == "4" })
	produce(orderRecs(goldenOrders(2))...)
	waitUntil(t, "phase 2 committed", time.Minute, func() bool {
		return itest.EqualOffsets(w.committed(group, tp["orders"]), w.endOffsets(tp["orders"]))
	})
	s.stop(t)

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

	var gotDead []string
	for _, l := range readAll(t, w, w.name("dlq")) {
		id := ""
		for oid, v := range originals {
			if string(v) == string(l.Value) {
				id = oid
			}
		}
		reason := dlq.Header(l, dlq.HeaderReason)
		if dlq.Header(l, dlq.HeaderStage) != "transform" || deadWant[id] == "" || !strings.Contains(reason, deadWant[id]) {
			t.Errorf("dead letter %q: stage %s reason %q, want transform and %q", id, dlq.Header(l, dlq.HeaderStage), reason, deadWant[id])
		}
		gotDead = append(gotDead, id)
	}
	sort.Strings(gotDead)
	if strings.Join(gotDead, ",") != "o10,o11,o12" {
		t.Errorf("dead letters for %v, want o10,o11,o12", gotDead)
	}
}
