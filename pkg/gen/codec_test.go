package gen

import (
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/linkedin/goavro/v2"
	"github.com/shopspring/decimal"
)

// rawCodec compiles a schema straight from the repository, independent of
// LoadCodecs, so the round trip below checks the encoding against the
// contract rather than against itself.
func rawCodec(t *testing.T, file string) *goavro.Codec {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testSchemaDir, file))
	if err != nil {
		t.Fatal(err)
	}
	c, err := goavro.NewCodec(string(b))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func ratOf(t *testing.T, v any) *big.Rat {
	t.Helper()
	r, ok := v.(*big.Rat)
	if !ok {
		t.Fatalf("decimal decoded as %T", v)
	}
	return r
}

func sameRat(r *big.Rat, d decimal.Decimal) bool { return r.Cmp(d.Rat()) == 0 }

func unionString(v any) *string {
	m, ok := v.(map[string]any)
	if !ok {
		return nil
	}
	s := m["string"].(string)
	return &s
}

func strPtrEq(a, b *string) bool {
	return (a == nil) == (b == nil) && (a == nil || *a == *b)
}

// findOrder returns the first order that satisfies pred.
func findOrder(t *testing.T, g *Generator, pred func(Order) bool) Order {
	t.Helper()
	for seq := range 10000 {
		if o := g.Order(seq); pred(o) {
			return o
		}
	}
	t.Fatal("no such order in 10000")
	return Order{}
}

func TestOrderAvroRoundTrip(t *testing.T) {
	g := newGen(t, Options{Seed: 1})
	raw := rawCodec(t, OrderSchemaFile)
	withCoupon := findOrder(t, g, func(o Order) bool { return o.Coupon != nil && len(o.Items) >= 3 })
	noCoupon := findOrder(t, g, func(o Order) bool { return o.Coupon == nil })
	jpy := findOrder(t, g, func(o Order) bool { return o.Currency == "JPY" })
	for _, o := range []Order{withCoupon, noCoupon, jpy} {
		key, value, err := g.Codecs().EncodeOrder(o)
		if err != nil {
			t.Fatal(err)
		}
		if string(key) != o.CustomerID {
			t.Errorf("order key %q, want customer_id %q", key, o.CustomerID)
		}
		native, rest, err := raw.NativeFromBinary(value)
		if err != nil || len(rest) != 0 {
			t.Fatalf("goavro decode: %v (%d trailing bytes)", err, len(rest))
		}
		m := native.(map[string]any)
		if m["order_id"] != o.OrderID || m["customer_id"] != o.CustomerID || m["currency"] != o.Currency ||
			m["status"] != string(o.Status) || m["channel"] != string(o.Channel) || m["shipping_country"] != o.ShippingCountry {
			t.Errorf("decoded %v, want %+v", m, o)
		}
		if ts := m["created_at"].(time.Time); !ts.Equal(o.CreatedAt) || ts.UnixMilli() != o.CreatedAt.UnixMilli() {
			t.Errorf("created_at %v, want %v", ts, o.CreatedAt)
		}
		if r := ratOf(t, m["total"]); !sameRat(r, o.Total) {
			t.Errorf("total %s, want %s", r.FloatString(2), o.Total)
		}
		if got := unionString(m["coupon"]); !strPtrEq(got, o.Coupon) {
			t.Errorf("coupon %v, want %v", m["coupon"], o.Coupon)
		}
		items := m["items"].([]any)
		if len(items) != len(o.Items) {
			t.Fatalf("%d items decoded, want %d", len(items), len(o.Items))
		}
		for i, it := range items {
			im := it.(map[string]any)
			want := o.Items[i]
			if im["sku"] != want.SKU || im["quantity"] != want.Quantity || !sameRat(ratOf(t, im["unit_price"]), want.UnitPrice) {
				t.Errorf("item %d = %v, want %+v", i, im, want)
			}
		}

		// And the package's own decoder gives back the struct exactly.
		back, err := g.Codecs().DecodeOrder(value)
		if err != nil {
			t.Fatal(err)
		}
		if !sameOrder(back, o) {
			t.Errorf("DecodeOrder = %+v, want %+v", back, o)
		}
	}
}

func sameOrder(a, b Order) bool {
	if a.OrderID != b.OrderID || a.CustomerID != b.CustomerID || !a.CreatedAt.Equal(b.CreatedAt) ||
		a.Currency != b.Currency || !sameDec(a.Total, b.Total) || a.Status != b.Status || a.Channel != b.Channel ||
		a.ShippingCountry != b.ShippingCountry || !strPtrEq(a.Coupon, b.Coupon) || len(a.Items) != len(b.Items) {
		return false
	}
	for i := range a.Items {
		x, y := a.Items[i], b.Items[i]
		if x.SKU != y.SKU || x.Quantity != y.Quantity || !sameDec(x.UnitPrice, y.UnitPrice) {
			return false
		}
	}
	return true
}

func TestRoundTripOtherTypes(t *testing.T) {
	g := newGen(t, Options{Seed: 4})
	c := g.Codecs()

	for _, cu := range g.Customers()[:50] {
		k, v, err := c.EncodeCustomer(cu)
		if err != nil {
			t.Fatal(err)
		}
		back, err := c.DecodeCustomer(v)
		if err != nil || string(k) != cu.CustomerID || back != cu {
			t.Fatalf("customer round trip: key %q, %+v, %v; want %+v", k, back, err, cu)
		}
	}
	raw := rawCodec(t, FxRateSchemaFile)
	for _, r := range g.FxRates() {
		k, v, err := c.EncodeFxRate(r)
		if err != nil {
			t.Fatal(err)
		}
		back, err := c.DecodeFxRate(v)
		if err != nil || string(k) != r.Key() || !sameRate(back, r) {
			t.Fatalf("fx round trip: key %q, %+v, %v; want %+v", k, back, err, r)
		}
		native, _, err := raw.NativeFromBinary(v)
		if err != nil {
			t.Fatal(err)
		}
		if got := ratOf(t, native.(map[string]any)["rate"]); !sameRat(got, r.Rate) {
			t.Fatalf("raw rate %s, want %s", got.FloatString(8), r.Rate)
		}
	}

	var sawFailed, sawNilTracking bool
	for seq := range 500 {
		o := g.Order(seq)
		for _, p := range g.Payments(o) {
			k, v, err := c.EncodePayment(p)
			if err != nil {
				t.Fatal(err)
			}
			back, err := c.DecodePayment(v)
			if err != nil || string(k) != o.OrderID || !samePayment(back, p) {
				t.Fatalf("payment round trip: key %q, %+v, %v; want %+v", k, back, err, p)
			}
			sawFailed = sawFailed || p.FailureReason != nil
		}
		for _, s := range g.Shipments(o) {
			k, v, err := c.EncodeShipment(s)
			if err != nil {
				t.Fatal(err)
			}
			back, err := c.DecodeShipment(v)
			if err != nil || string(k) != o.OrderID || !sameShipment(back, s) {
				t.Fatalf("shipment round trip: key %q, %+v, %v; want %+v", k, back, err, s)
			}
			sawNilTracking = sawNilTracking || s.TrackingNumber == nil
		}
	}
	if !sawFailed || !sawNilTracking {
		t.Errorf("round trip never covered a failure reason (%v) or a null tracking number (%v)", sawFailed, sawNilTracking)
	}
}

func samePayment(a, b Payment) bool {
	return a.PaymentID == b.PaymentID && a.OrderID == b.OrderID && a.CreatedAt.Equal(b.CreatedAt) &&
		a.Method == b.Method && a.Status == b.Status && sameDec(a.Amount, b.Amount) &&
		a.Currency == b.Currency && strPtrEq(a.FailureReason, b.FailureReason)
}

func sameShipment(a, b Shipment) bool {
	return a.ShipmentID == b.ShipmentID && a.OrderID == b.OrderID && a.EventTime.Equal(b.EventTime) &&
		a.Status == b.Status && a.Carrier == b.Carrier && a.Country == b.Country &&
		strPtrEq(a.TrackingNumber, b.TrackingNumber)
}

func TestEncodeRejects(t *testing.T) {
	g := newGen(t, Options{Seed: 1})
	c := g.Codecs()
	base := g.Order(1)

	tooPrecise := base
	tooPrecise.Total = decimal.RequireFromString("10.005")
	if _, _, err := c.EncodeOrder(tooPrecise); !errors.Is(err, ErrDecimal) || !strings.Contains(err.Error(), base.OrderID) {
		t.Errorf("total with 3 decimals: err = %v, want ErrDecimal naming the order", err)
	}
	tooBig := base
	tooBig.Total = decimal.RequireFromString("12345678901234567.00") // 19 digits at scale 2
	if _, _, err := c.EncodeOrder(tooBig); !errors.Is(err, ErrDecimal) {
		t.Errorf("total beyond precision 18: err = %v, want ErrDecimal", err)
	}
	// A value with fewer places than the scale is fine and exact.
	short := base
	short.Total = decimal.NewFromInt(12)
	_, v, err := c.EncodeOrder(short)
	if err != nil {
		t.Fatal(err)
	}
	if back, _ := c.DecodeOrder(v); back.Total.StringFixed(2) != "12.00" || back.Total.Exponent() != -2 {
		t.Errorf("12 decoded as %s (exp %d)", back.Total, back.Total.Exponent())
	}
	badEnum := base
	badEnum.Status = "SHIPPED"
	if _, _, err := c.EncodeOrder(badEnum); err == nil {
		t.Error("order with status SHIPPED encoded")
	}
	rate := g.FxRates()[0]
	rate.Rate = decimal.RequireFromString("1.000000001")
	if _, _, err := c.EncodeFxRate(rate); !errors.Is(err, ErrDecimal) {
		t.Errorf("rate with 9 decimals: err = %v, want ErrDecimal", err)
	}

	if _, err := c.DecodeOrder([]byte{0x02, 'x'}); err == nil {
		t.Error("DecodeOrder of garbage succeeded")
	}
}

func BenchmarkEncodeOrder(b *testing.B) {
	g := newGen(b, Options{Seed: 1})
	orders := make([]Order, 1000)
	for i := range orders {
		orders[i] = g.Order(i)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, _, err := g.Codecs().EncodeOrder(orders[i%len(orders)]); err != nil {
			b.Fatal(err)
		}
	}
}
