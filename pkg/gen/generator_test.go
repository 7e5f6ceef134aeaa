package gen

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io/fs"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

const testSchemaDir = "../../schemas/avro"

func newGen(t testing.TB, o Options) *Generator {
	t.Helper()
	if o.SchemaDir == "" {
		o.SchemaDir = testSchemaDir
	}
	g, err := New(o)
	if err != nil {
		t.Fatalf("New(%+v): %v", o, err)
	}
	return g
}

// digest encodes the whole data set of n orders (reference data, orders,
// payments, shipments, keys and values) into one hash.
func digest(t *testing.T, g *Generator, n int) [32]byte {
	t.Helper()
	h := sha256.New()
	c := g.Codecs()
	add := func(k, v []byte, err error) {
		if err != nil {
			t.Fatal(err)
		}
		h.Write(k)
		h.Write([]byte{0})
		h.Write(v)
		h.Write([]byte{0})
	}
	for _, cu := range g.Customers() {
		add(c.EncodeCustomer(cu))
	}
	for _, r := range g.FxRates() {
		add(c.EncodeFxRate(r))
	}
	for i := 0; i < n; i++ {
		o := g.NextOrder()
		add(c.EncodeOrder(o))
		for _, p := range g.Payments(o) {
			add(c.EncodePayment(p))
		}
		for _, s := range g.Shipments(o) {
			add(c.EncodeShipment(s))
		}
	}
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}

func TestDeterminism(t *testing.T) {
	a := digest(t, newGen(t, Options{Seed: 42}), 3000)
	b := digest(t, newGen(t, Options{Seed: 42}), 3000)
	if a != b {
		t.Fatal("same seed produced different bytes")
	}
	c := digest(t, newGen(t, Options{Seed: 43}), 3000)
	if a == c {
		t.Fatal("different seeds produced identical bytes")
	}

	// Different seeds must not share ids, so that their data sets can be
	// produced into the same topics.
	g1, g2 := newGen(t, Options{Seed: 42}), newGen(t, Options{Seed: 43})
	if g1.Order(0).OrderID == g2.Order(0).OrderID {
		t.Errorf("order ids collide across seeds: %s", g1.Order(0).OrderID)
	}
	if g1.Customers()[0].CustomerID == g2.Customers()[0].CustomerID {
		t.Errorf("customer ids collide across seeds: %s", g1.Customers()[0].CustomerID)
	}
	// Reference data of one seed is identical whatever else is asked.
	for i := range 3 {
		if x, y := g1.Order(i), newGen(t, Options{Seed: 42}).Order(i); x.OrderID != y.OrderID || !x.Total.Equal(y.Total) {
			t.Errorf("Order(%d) differs between generators of one seed", i)
		}
	}
}

func TestOrderIsRandomAccess(t *testing.T) {
	g := newGen(t, Options{Seed: 7})
	c := g.Codecs()
	var seq []Order
	for range 50 {
		seq = append(seq, g.NextOrder())
	}
	if got := g.Cursor(); got != 50 {
		t.Fatalf("Cursor = %d after 50 NextOrder, want 50", got)
	}
	// Backwards, from a fresh generator: the same bytes.
	g2 := newGen(t, Options{Seed: 7})
	for i := len(seq) - 1; i >= 0; i-- {
		_, v1, err := c.EncodeOrder(seq[i])
		if err != nil {
			t.Fatal(err)
		}
		_, v2, err := c.EncodeOrder(g2.Order(i))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(v1, v2) {
			t.Fatalf("Order(%d) differs from the %dth NextOrder", i, i)
		}
		if g2.OrderID(i) != seq[i].OrderID {
			t.Fatalf("OrderID(%d) = %s, order has %s", i, g2.OrderID(i), seq[i].OrderID)
		}
	}
}

func isMillisUTC(t time.Time) bool {
	return t.Location() == time.UTC && t.Nanosecond()%int(time.Millisecond) == 0
}

func TestReferentialConsistency(t *testing.T) {
	const n = 20000
	g := newGen(t, Options{Seed: 3})
	o := g.Options()
	known := map[string]bool{}
	for _, c := range countries {
		known[c.code] = true
	}

	orderIDs := map[string]Order{}
	paymentIDs := map[string]bool{}
	var (
		nPayments, nFailed, nRefunded, nRetried    int
		nShipments, nNullTracking, nReturned       int
		nCoupons, nMismatch, nUnknown, nHighAmount int
	)
	prevCreated := time.Time{}
	for seq := range n {
		ord := g.Order(seq)
		if _, dup := orderIDs[ord.OrderID]; dup {
			t.Fatalf("duplicate order id %s", ord.OrderID)
		}
		orderIDs[ord.OrderID] = ord

		// Time: in its step, ordered, millisecond UTC.
		lo := o.Start.Add(time.Duration(seq) * o.Step)
		if ord.CreatedAt.Before(lo) || !ord.CreatedAt.Before(lo.Add(o.Step)) || !isMillisUTC(ord.CreatedAt) {
			t.Fatalf("order %d created_at %v outside [%v, +%v) or not ms UTC", seq, ord.CreatedAt, lo, o.Step)
		}
		if ord.CreatedAt.Before(prevCreated) {
			t.Fatalf("order %d created_at %v before previous %v", seq, ord.CreatedAt, prevCreated)
		}
		prevCreated = ord.CreatedAt

		// Items and total.
		if len(ord.Items) < 1 || len(ord.Items) > 5 {
			t.Fatalf("order %s has %d items", ord.OrderID, len(ord.Items))
		}
		sum := decimal.Zero
		skus := map[string]bool{}
		for _, it := range ord.Items {
			if it.Quantity < 1 || it.UnitPrice.Sign() <= 0 || it.UnitPrice.Exponent() != -MoneyScale {
				t.Fatalf("order %s: bad item %+v", ord.OrderID, it)
			}
			if skus[it.SKU] {
				t.Fatalf("order %s: sku %s twice", ord.OrderID, it.SKU)
			}
			skus[it.SKU] = true
			sum = sum.Add(it.UnitPrice.Mul(decimal.NewFromInt(int64(it.Quantity))))
		}
		if !ord.Total.Equal(sum) || ord.Total.Exponent() != -MoneyScale {
			t.Fatalf("order %s: total %s (exp %d) != sum of items %s", ord.OrderID, ord.Total, ord.Total.Exponent(), sum)
		}

		// Enums, countries, currency.
		if !slices.Contains([]OrderStatus{OrderCreated, OrderConfirmed, OrderCancelled}, ord.Status) ||
			!slices.Contains([]Channel{ChannelWeb, ChannelMobile, ChannelStore}, ord.Channel) {
			t.Fatalf("order %s: bad enum %s/%s", ord.OrderID, ord.Status, ord.Channel)
		}
		if !known[ord.ShippingCountry] {
			t.Fatalf("order %s: shipping country %q", ord.OrderID, ord.ShippingCountry)
		}
		if !slices.Contains(o.Currencies, ord.Currency) {
			t.Fatalf("order %s: currency %s not in %v (no-rate orders were not asked for)", ord.OrderID, ord.Currency, o.Currencies)
		}
		rate, ok := g.RateAt(ord.Currency, ord.CreatedAt)
		if !ok {
			t.Fatalf("order %s: no %s rate at %v", ord.OrderID, ord.Currency, ord.CreatedAt)
		}
		if ord.Total.Mul(rate.Rate).GreaterThanOrEqual(decimal.NewFromInt(5000)) {
			nHighAmount++
		}
		if ord.Coupon != nil {
			nCoupons++
		}
		if c, ok := g.Customer(ord.CustomerID); !ok {
			nUnknown++
		} else if c.Country != ord.ShippingCountry {
			nMismatch++
			if ord.Channel == ChannelStore {
				t.Fatalf("store order %s ships to %s, customer in %s", ord.OrderID, ord.ShippingCountry, c.Country)
			}
		}

		// Payments.
		pays := g.Payments(ord)
		if len(pays) < 1 || len(pays) > 2 {
			t.Fatalf("order %s has %d payments", ord.OrderID, len(pays))
		}
		if len(pays) == 2 {
			nRetried++
			if pays[0].Status != PaymentFailed || !pays[1].CreatedAt.After(pays[0].CreatedAt) {
				t.Fatalf("order %s: retry after %s at %v/%v", ord.OrderID, pays[0].Status, pays[0].CreatedAt, pays[1].CreatedAt)
			}
		}
		for _, p := range pays {
			nPayments++
			if paymentIDs[p.PaymentID] {
				t.Fatalf("duplicate payment id %s", p.PaymentID)
			}
			paymentIDs[p.PaymentID] = true
			if p.OrderID != ord.OrderID || !p.Amount.Equal(ord.Total) || p.Amount.Exponent() != -MoneyScale || p.Currency != ord.Currency {
				t.Fatalf("payment %+v does not match order %s %s %s", p, ord.OrderID, ord.Total, ord.Currency)
			}
			if !p.CreatedAt.After(ord.CreatedAt) || !isMillisUTC(p.CreatedAt) {
				t.Fatalf("payment %s at %v, order at %v", p.PaymentID, p.CreatedAt, ord.CreatedAt)
			}
			if (p.Status == PaymentFailed) != (p.FailureReason != nil) {
				t.Fatalf("payment %s: status %s with failure reason %v", p.PaymentID, p.Status, p.FailureReason)
			}
			switch p.Status {
			case PaymentFailed:
				nFailed++
			case PaymentRefunded:
				nRefunded++
			}
		}

		// Shipments.
		ships := g.Shipments(ord)
		if (ord.Status == OrderCancelled || ord.Channel == ChannelStore) != (len(ships) == 0) {
			t.Fatalf("order %s (%s, %s) has %d shipment events", ord.OrderID, ord.Status, ord.Channel, len(ships))
		}
		for i, s := range ships {
			nShipments++
			if s.OrderID != ord.OrderID || s.ShipmentID != ships[0].ShipmentID || s.Country != ord.ShippingCountry || s.Carrier == "" {
				t.Fatalf("shipment %+v does not match order %s", s, ord.OrderID)
			}
			if !isMillisUTC(s.EventTime) || !s.EventTime.After(ord.CreatedAt) || (i > 0 && !s.EventTime.After(ships[i-1].EventTime)) {
				t.Fatalf("shipment %s step %d at %v out of order", s.ShipmentID, i, s.EventTime)
			}
			if s.TrackingNumber == nil {
				nNullTracking++
			}
			if s.Status == ShipmentReturned {
				nReturned++
			}
		}
		if len(ships) > 0 && ships[0].Status != ShipmentLabelCreated {
			t.Fatalf("order %s: first shipment step %s", ord.OrderID, ships[0].Status)
		}
	}

	// The mix is realistic: every interesting case happens, none dominates.
	for _, c := range []struct {
		what     string
		got, of  int
		min, max float64
	}{
		{"orders of unknown customers", nUnknown, n, 0.012, 0.028},
		{"orders shipped abroad", nMismatch, n, 0.02, 0.10},
		{"orders with a coupon", nCoupons, n, 0.05, 0.15},
		{"orders of 5000 or more in base currency", nHighAmount, n, 0.002, 0.05},
		{"orders with a retried payment", nRetried, n, 0.02, 0.08},
		{"failed payments", nFailed, nPayments, 0.04, 0.12},
		{"refunded payments", nRefunded, nPayments, 0.01, 0.08},
		{"returned deliveries", nReturned, n, 0.0005, 0.03},
		{"shipment events without tracking number", nNullTracking, nShipments, 0.05, 0.3},
	} {
		share := float64(c.got) / float64(c.of)
		if share < c.min || share > c.max {
			t.Errorf("%s: %d of %d (%.4f), want between %v and %v", c.what, c.got, c.of, share, c.min, c.max)
		}
	}
	if nPayments < n || nShipments < n {
		t.Errorf("only %d payments and %d shipment events for %d orders", nPayments, nShipments, n)
	}
}

func TestVelocityBursts(t *testing.T) {
	g := newGen(t, Options{Seed: 5})
	var times = map[string][]time.Time{}
	for seq := range 2000 {
		o := g.Order(seq)
		times[o.CustomerID] = append(times[o.CustomerID], o.CreatedAt)
	}
	flagged := 0
	for _, ts := range times {
		for i := range ts {
			// More than 5 orders within 10 minutes, ending with this one.
			j := i
			for j > 0 && ts[i].Sub(ts[j-1]) <= 10*time.Minute {
				j--
			}
			if i-j+1 > 5 {
				flagged++
			}
		}
	}
	// 4 blocks of 500 orders, each with a burst of 7: 2 flagged orders each.
	if flagged < 8 || flagged > 20 {
		t.Errorf("%d orders would trip VELOCITY in 2000, want a handful (8..20)", flagged)
	}
}

func TestUnknownCustomerRatio(t *testing.T) {
	for _, c := range []struct {
		ratio    float64
		min, max float64
	}{
		{-1, 0, 0},
		{0.2, 0.18, 0.22},
		{1, 0.98, 1}, // bursts always use known customers
	} {
		g := newGen(t, Options{Seed: 11, UnknownCustomerRatio: c.ratio})
		unknown := 0
		const n = 10000
		for seq := range n {
			o := g.Order(seq)
			_, ok := g.Customer(o.CustomerID)
			if !ok {
				unknown++
				if !strings.HasPrefix(o.CustomerID, "cus-") {
					t.Fatalf("unknown customer id %q does not look like a customer id", o.CustomerID)
				}
			}
		}
		share := float64(unknown) / n
		if share < c.min || share > c.max {
			t.Errorf("UnknownCustomerRatio %v: %.4f of orders unknown, want in [%v, %v]", c.ratio, share, c.min, c.max)
		}
	}
}

func TestNoRateCurrency(t *testing.T) {
	count := func(g *Generator, n int) int {
		cur := g.Options().NoRateCurrency
		k := 0
		for seq := range n {
			o := g.Order(seq)
			if o.Currency == cur {
				k++
				if _, ok := g.RateAt(o.Currency, o.CreatedAt); ok {
					t.Fatalf("no-rate currency %s has a rate", cur)
				}
				for _, p := range g.Payments(o) {
					if p.Currency != cur {
						t.Fatalf("payment %s currency %s, order %s", p.PaymentID, p.Currency, cur)
					}
				}
			}
		}
		return k
	}
	if k := count(newGen(t, Options{Seed: 1}), 10000); k != 0 {
		t.Errorf("%d orders in the no-rate currency by default, want 0", k)
	}
	g := newGen(t, Options{Seed: 1, NoRateCurrencyRatio: 0.05, NoRateCurrency: "XXX"})
	if k := count(g, 10000); k < 400 || k > 600 {
		t.Errorf("%d of 10000 orders in XXX at ratio 0.05", k)
	}
	for _, r := range g.FxRates() {
		if r.Currency == "XXX" {
			t.Fatalf("rate produced for the no-rate currency: %+v", r)
		}
	}
}

func TestFxRates(t *testing.T) {
	g := newGen(t, Options{Seed: 9, Currencies: []string{"EUR", "JPY", "USD"}, FxChanges: 4})
	o := g.Options()
	byCur := map[string][]FxRate{}
	keys := map[string]bool{}
	for i, r := range g.FxRates() {
		if i > 0 && r.EffectiveFrom.Before(g.FxRates()[i-1].EffectiveFrom) {
			t.Fatalf("FxRates not ordered by effective_from at %d", i)
		}
		if keys[r.Key()] {
			t.Fatalf("duplicate fx key %s", r.Key())
		}
		keys[r.Key()] = true
		want := r.Currency + "@" + decimal.NewFromInt(r.EffectiveFrom.UnixMilli()).String()
		if r.Key() != want {
			t.Fatalf("Key() = %s, want %s", r.Key(), want)
		}
		if r.Rate.Exponent() != -RateScale || r.Rate.Sign() <= 0 || !isMillisUTC(r.EffectiveFrom) {
			t.Fatalf("bad rate %+v", r)
		}
		byCur[r.Currency] = append(byCur[r.Currency], r)
	}
	if usd := byCur["USD"]; len(usd) != 1 || usd[0].Rate.StringFixed(RateScale) != "1.00000000" {
		t.Fatalf("base currency rates = %+v, want one rate of 1.00000000", usd)
	}
	for _, cur := range []string{"EUR", "JPY"} {
		h := byCur[cur]
		if len(h) != 1+4 {
			t.Fatalf("%s has %d rates, want 5", cur, len(h))
		}
		if h[0].EffectiveFrom.After(o.Start) {
			t.Errorf("%s first rate from %v, after Start %v", cur, h[0].EffectiveFrom, o.Start)
		}
		end := o.Start.Add(5 * o.FxInterval)
		for _, r := range h[1:] {
			if !r.EffectiveFrom.After(o.Start) || r.EffectiveFrom.After(end) {
				t.Errorf("%s change at %v outside (%v, %v]", cur, r.EffectiveFrom, o.Start, end)
			}
		}
		changed := false
		for i := 1; i < len(h); i++ {
			changed = changed || !h[i].Rate.Equal(h[i-1].Rate)
		}
		if !changed {
			t.Errorf("%s rate never changes", cur)
		}
		// RateAt picks the latest rate at or before t.
		for i, r := range h {
			if got, ok := g.RateAt(cur, r.EffectiveFrom); !ok || !sameRate(got, r) {
				t.Errorf("RateAt(%s, %v) = %+v, want %+v", cur, r.EffectiveFrom, got, r)
			}
			if i > 0 {
				if got, _ := g.RateAt(cur, r.EffectiveFrom.Add(-time.Millisecond)); !sameRate(got, h[i-1]) {
					t.Errorf("RateAt just before change %d = %+v, want %+v", i, got, h[i-1])
				}
			}
		}
		if _, ok := g.RateAt(cur, h[0].EffectiveFrom.Add(-time.Millisecond)); ok {
			t.Errorf("RateAt(%s) before the first rate found one", cur)
		}
	}
	// JPY prices are whole yen.
	for seq := range 2000 {
		ord := g.Order(seq)
		if ord.Currency != "JPY" {
			continue
		}
		for _, it := range ord.Items {
			if !it.UnitPrice.Equal(it.UnitPrice.Truncate(0)) {
				t.Fatalf("JPY unit price %s has a fraction", it.UnitPrice)
			}
		}
	}
}

func TestCustomers(t *testing.T) {
	g := newGen(t, Options{Seed: 2, Customers: 300})
	cs := g.Customers()
	if len(cs) != 300 {
		t.Fatalf("%d customers, want 300", len(cs))
	}
	ids, emails := map[string]bool{}, map[string]bool{}
	countriesSeen := map[string]bool{}
	segs := map[Segment]int{}
	for _, c := range cs {
		if ids[c.CustomerID] || emails[c.Email] {
			t.Fatalf("duplicate customer id or email: %+v", c)
		}
		ids[c.CustomerID], emails[c.Email] = true, true
		if countryIndex(c.Country) < 0 || c.Name == "" || !strings.Contains(c.Email, "@example.") {
			t.Fatalf("bad customer %+v", c)
		}
		if !c.CreatedAt.Before(g.Options().Start) || !isMillisUTC(c.CreatedAt) {
			t.Fatalf("customer %s created %v, not before Start", c.CustomerID, c.CreatedAt)
		}
		if got, ok := g.Customer(c.CustomerID); !ok || got != c {
			t.Fatalf("Customer(%s) = %+v, %v", c.CustomerID, got, ok)
		}
		countriesSeen[c.Country] = true
		segs[c.Segment]++
	}
	if len(countriesSeen) < 10 || segs[SegmentConsumer] == 0 || segs[SegmentBusiness] == 0 || segs[SegmentVIP] == 0 {
		t.Errorf("too little variety: %d countries, segments %v", len(countriesSeen), segs)
	}
	// Customers() is a copy.
	cs[0].Name = "changed"
	if g.Customers()[0].Name == "changed" {
		t.Error("Customers() exposes internal state")
	}
}

func TestOptionsValidation(t *testing.T) {
	for _, c := range []struct {
		name string
		o    Options
		want string
	}{
		{"negative customers", Options{Customers: -1}, "Customers"},
		{"ratio above 1", Options{UnknownCustomerRatio: 1.5}, "UnknownCustomerRatio"},
		{"no-rate ratio", Options{NoRateCurrencyRatio: -0.1}, "NoRateCurrencyRatio"},
		{"empty currencies", Options{Currencies: []string{}}, "Currencies"},
		{"unknown currency", Options{Currencies: []string{"EUR", "ABC"}}, `"ABC"`},
		{"duplicate currency", Options{Currencies: []string{"EUR", "EUR"}}, "twice"},
		{"unknown base", Options{BaseCurrency: "QQQ"}, `"QQQ"`},
		{"no-rate has rates", Options{NoRateCurrency: "EUR"}, `"EUR"`},
		{"no-rate is base", Options{NoRateCurrency: "USD", Currencies: []string{"EUR"}}, `"USD"`},
		{"bad no-rate code", Options{NoRateCurrency: "xts"}, "three-letter"},
		{"negative step", Options{Step: -time.Second}, "Step"},
		{"negative fx interval", Options{FxInterval: -time.Second}, "FxInterval"},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.o.SchemaDir = testSchemaDir
			_, err := New(c.o)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("New: err = %v, want one mentioning %s", err, c.want)
			}
		})
	}
	_, err := New(Options{SchemaDir: t.TempDir()})
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "order.avsc") {
		t.Errorf("New with an empty schema dir: err = %v, want a not-exist error naming order.avsc", err)
	}
}

func TestOtherBaseCurrency(t *testing.T) {
	g := newGen(t, Options{Seed: 1, BaseCurrency: "EUR", Currencies: []string{"EUR", "USD", "GBP"}})
	r, ok := g.RateAt("EUR", g.Options().Start)
	if !ok || r.Rate.StringFixed(RateScale) != "1.00000000" {
		t.Fatalf("EUR base rate = %+v, %v", r, ok)
	}
	r, _ = g.RateAt("USD", g.Options().Start.Add(-time.Minute))
	// 1 USD = 1/1.08 EUR.
	if r.Rate.StringFixed(RateScale) != "0.92592593" {
		t.Errorf("initial USD rate in EUR = %s, want 0.92592593", r.Rate.StringFixed(RateScale))
	}
}

func BenchmarkOrder(b *testing.B) {
	g := newGen(b, Options{Seed: 1})
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		o := g.Order(i)
		_ = g.Payments(o)
		_ = g.Shipments(o)
	}
}

func sameRate(a, b FxRate) bool {
	return a.Currency == b.Currency && sameDec(a.Rate, b.Rate) && a.EffectiveFrom.Equal(b.EffectiveFrom)
}

// sameDec is value and scale equality: 1.50 and 1.5 differ.
func sameDec(a, b decimal.Decimal) bool {
	return a.Equal(b) && a.Exponent() == b.Exponent()
}

func TestToBaseAndOrders(t *testing.T) {
	g := newGen(t, Options{Seed: 8})
	orders := g.Orders(10, 20)
	if len(orders) != 10 || orders[0].OrderID != g.OrderID(10) || orders[9].OrderID != g.OrderID(19) {
		t.Fatalf("Orders(10, 20) = %d orders from %s", len(orders), orders[0].OrderID)
	}
	if len(g.Orders(5, 5)) != 0 || len(g.Orders(5, 1)) != 0 {
		t.Error("empty ranges are not empty")
	}
	at := g.Options().Start
	eur, _ := g.RateAt("EUR", at)
	for _, c := range []struct {
		amount, rate, want string
	}{
		{"10.00", "1.08000000", "10.80"},
		{"0.05", "1.10000000", "0.06"}, // 0.055 -> half to even: 0.06
		{"0.25", "1.10000000", "0.28"}, // 0.275 -> 0.28
		{"0.45", "1.10000000", "0.50"}, // 0.495 -> 0.50
		{"0.15", "1.50000000", "0.22"}, // 0.225 -> 0.22 (even)
		{"0.05", "0.50000000", "0.02"}, // 0.025 -> 0.02 (even)
	} {
		// Check the rounding rule on a synthetic history.
		g2 := newGen(t, Options{Seed: 8})
		g2.fx = map[string][]FxRate{"EUR": {{Currency: "EUR", Rate: decimal.RequireFromString(c.rate), EffectiveFrom: eur.EffectiveFrom}}}
		got, _, ok := g2.ToBase(decimal.RequireFromString(c.amount), "EUR", at)
		if !ok || got.StringFixed(2) != c.want || got.Exponent() != -2 {
			t.Errorf("ToBase(%s at %s) = %s (exp %d), want %s", c.amount, c.rate, got, got.Exponent(), c.want)
		}
	}
	if _, _, ok := g.ToBase(decimal.NewFromInt(1), "XTS", at); ok {
		t.Error("ToBase found a rate for XTS")
	}
}
