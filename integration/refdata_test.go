//go:build integration

package integration

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-etl/sluice/pkg/dlq"
	"github.com/sluice-etl/sluice/pkg/gen"
	"github.com/sluice-etl/sluice/pkg/service"
)

// refLink is the reference loader's network, cut at will: a kgo.Dialer
// that refuses to connect while the link is down and closes the
// connections it made when it goes down. Only the client that reads the
// reference topics uses it; the consumer group and the producer of dead
// letters keep their own connections.
type refLink struct {
	down  atomic.Bool
	mu    sync.Mutex
	conns []net.Conn
}

func (l *refLink) dial(ctx context.Context, network, host string) (net.Conn, error) {
	if l.down.Load() {
		return nil, &net.OpError{Op: "dial", Net: network, Err: errors.New("injected: reference link down")}
	}
	c, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, host)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.conns = append(l.conns, c)
	l.mu.Unlock()
	return c, nil
}

func (l *refLink) cut() {
	l.down.Store(true)
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		_ = c.Close()
	}
	l.conns = nil
}

func (l *refLink) restore() { l.down.Store(false) }

// readyz is GET /readyz: the status code and the body.
func (r *runningSluice) readyz(t *testing.T) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + r.svc.AdminAddr() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// refMetrics reads the series of /metrics that start with prefix: by the
// series as printed (with its labels), and summed by name.
func (r *runningSluice) refMetrics(t *testing.T, prefix string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + r.svc.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		series, v, ok := strings.Cut(line, " ")
		f, err := strconv.ParseFloat(v, 64)
		if !ok || err != nil {
			t.Fatalf("metrics line %q", line)
		}
		name, _, labelled := strings.Cut(series, "{")
		out[name] += f
		if labelled {
			out[series] = f
		}
	}
	return out
}

// TestReferenceFollowerOutageDeadLettersNothing: the reference loader's
// link to Kafka is cut (its connections closed, new ones refused) while
// orders arrive that need a currency (CHF) and a customer (C7) that do
// not exist yet; the CHF rate and C7 are produced after those orders,
// still during the outage. Asserted: /readyz turns not ready naming the
// reference data, the follower's errors are counted and its gauge is 0;
// nothing of the new orders is committed, loaded or dead-lettered while
// it lasts. After the link is restored every order is loaded exactly once
// with the CHF rate and C7's name, the dead-letter topic is still empty,
// and /readyz is ready again. Finally, with a current follower, an order
// in a currency that never had a rate is still dead-lettered.
func TestReferenceFollowerOutageDeadLettersNothing(t *testing.T) {
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
	customer := func(id, name string) *kgo.Record {
		k, v, err := codecs.EncodeCustomer(gen.Customer{CustomerID: id, Name: name, Email: strings.ToLower(id) + "@example.com",
			Country: "CH", Segment: gen.SegmentConsumer, CreatedAt: t0.Add(-24 * time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		return &kgo.Record{Topic: tp["customers"], Key: k, Value: v}
	}
	rate := func(cur, r string) *kgo.Record {
		k, v, err := codecs.EncodeFxRate(gen.FxRate{Currency: cur, Rate: dec(r), EffectiveFrom: t0})
		if err != nil {
			t.Fatal(err)
		}
		return &kgo.Record{Topic: tp["fx"], Key: k, Value: v}
	}
	order := func(id, cust, cur, total string) *kgo.Record {
		k, v, err := codecs.EncodeOrder(gen.Order{OrderID: id, CustomerID: cust, CreatedAt: t0.Add(time.Hour), Currency: cur,
			Total: dec(total), Status: gen.OrderCreated, Channel: gen.ChannelWeb, ShippingCountry: "CH",
			Items: []gen.LineItem{{SKU: "SKU-1", Quantity: 1, UnitPrice: dec(total)}}})
		if err != nil {
			t.Fatal(err)
		}
		return &kgo.Record{Topic: tp["orders"], Key: k, Value: v}
	}

	produce(customer("C1", "Alice Known"), rate("EUR", "1.10000000"))
	group := w.name("g")
	cfg := w.sluiceConfig(group, fmt.Sprintf(`  - name: orders
    topic: %s
    schema: %s
    table: orders
    transforms: [order_items, currency, customer, fraud]
`, tp["orders"], filepath.Join(repoRoot(), "schemas/avro/order.avsc")))
	cfg.Reference.CustomersTopic = tp["customers"]
	cfg.Reference.FxRatesTopic = tp["fx"]
	cfg.Reference.MaxStaleness = 2 * time.Second
	link := &refLink{}
	s := w.startSluice(cfg, service.WithReferenceClientOpts(kgo.Dialer(link.dial)))
	// Every partition committed up to its end (an empty one has nothing
	// to commit).
	committed := func() bool {
		c := w.committed(group, tp["orders"])
		for p, end := range w.endOffsets(tp["orders"]) {
			if end > 0 && c[p] != end {
				return false
			}
		}
		return true
	}
	produce(order("o0", "C1", "EUR", "10.00"))
	waitUntil(t, "the first order committed", time.Minute, committed)
	waitUntil(t, "ready", 30*time.Second, func() bool { code, _ := s.readyz(t); return code == http.StatusOK })

	// The outage: orders first, then what they need, all while the
	// follower cannot read.
	link.cut()
	const n = 40
	var orders []*kgo.Record
	for i := range n {
		cust := "C1"
		if i%2 == 1 {
			cust = "C7"
		}
		orders = append(orders, order(fmt.Sprintf("chf%02d", i), cust, "CHF", "100.00"))
	}
	produce(orders...)
	time.Sleep(time.Second) // the orders are fetched and transformed before the rate exists
	produce(rate("CHF", "1.25000000"), customer("C7", "Carl Late"))

	waitUntil(t, "/readyz to name the reference data and why", time.Minute, func() bool {
		code, body := s.readyz(t)
		return code == http.StatusServiceUnavailable && strings.Contains(body, "reference data") &&
			strings.Contains(body, "network: ") && strings.Contains(body, "injected: reference link down")
	})
	_, body := s.readyz(t)
	t.Logf("/readyz during the outage: %s", strings.TrimSpace(body))
	waitUntil(t, "the follower's errors counted", time.Minute, func() bool {
		m := s.refMetrics(t, "sluice_refdata_")
		return m[`sluice_refdata_errors_total{error_type="network"}`] > 0 && m["sluice_refdata_following"] == 0
	})
	// Long enough for several transform retries (each miss waits 5s).
	time.Sleep(8 * time.Second)
	if got := w.count(fmt.Sprintf("SELECT count() FROM %s.orders", w.db)); got != 1 {
		t.Fatalf("%d orders loaded during the outage, want only o0", got)
	}
	if committed() {
		t.Fatal("the outage's orders were committed without their rate")
	}
	if ends := w.endOffsets(w.name("dlq")); ends[0] != 0 {
		t.Fatalf("%d dead letters during the outage, want none", ends[0])
	}
	// Nothing can be listed, so how stale the data is grows (summed over
	// both topics here).
	if m := s.refMetrics(t, "sluice_refdata_"); m["sluice_refdata_staleness_seconds"] < 2*cfg.Reference.MaxStaleness.Seconds() {
		t.Fatalf("staleness %vs during the outage, want both topics above max_staleness", m["sluice_refdata_staleness_seconds"])
	}

	link.restore()
	waitUntil(t, "the outage's orders committed", 2*time.Minute, committed)
	waitUntil(t, "ready again", time.Minute, func() bool { code, _ := s.readyz(t); return code == http.StatusOK })
	if m := s.refMetrics(t, "sluice_refdata_"); m["sluice_refdata_following"] != 1 || m["sluice_refdata_lag_records"] != 0 {
		t.Fatalf("after the outage: following %v, lag %v", m["sluice_refdata_following"], m["sluice_refdata_lag_records"])
	}
	if ends := w.endOffsets(w.name("dlq")); ends[0] != 0 {
		t.Fatalf("%d dead letters after the outage, want none", ends[0])
	}
	rows, err := w.ch.Query(context.Background(), fmt.Sprintf(`SELECT order_id, toString(total_base), toString(fx_rate),
		ifNull(customer_name, ''), arrayStringConcat(fraud_reasons, ',') FROM %s.orders WHERE currency = 'CHF'`, w.db))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for rows.Next() {
		var id, base, fx, name, reasons string
		if err := rows.Scan(&id, &base, &fx, &name, &reasons); err != nil {
			t.Fatal(err)
		}
		seen[id]++
		wantName := "Alice Known"
		if id[len(id)-1]%2 == 1 {
			wantName = "Carl Late"
		}
		if !dec(base).Equal(dec("125.00")) || !dec(fx).Equal(dec("1.25")) || name != wantName || strings.Contains(reasons, "UNKNOWN_CUSTOMER") {
			t.Errorf("%s: total_base %s fx_rate %s customer %q fraud [%s], want 125.00 at 1.25 for %q, customer known",
				id, base, fx, name, reasons, wantName)
		}
	}
	rows.Close()
	if len(seen) != n {
		t.Fatalf("%d distinct CHF orders loaded, want %d", len(seen), n)
	}
	for id, c := range seen {
		if c != 1 {
			t.Errorf("%s loaded %d times", id, c)
		}
	}

	// A current follower still dead-letters what no reference data fills.
	produce(order("xts", "C1", "XTS", "1.00"))
	waitUntil(t, "the XTS order committed", time.Minute, committed)
	letters := readAll(t, w, w.name("dlq"))
	if len(letters) != 1 || !strings.Contains(dlq.Header(letters[0], dlq.HeaderReason), "no FX rate for XTS") {
		t.Fatalf("dead letters %d, want one for XTS", len(letters))
	}
}
