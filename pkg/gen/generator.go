package gen

import (
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/shopspring/decimal"
)

// Random streams. Each kind of value draws from its own stream, seeded from
// (Seed, stream, position), so that adding a draw to one kind never shifts
// another and every order is computable on its own.
const (
	streamTag uint64 = iota + 1
	streamCustomers
	streamFx
	streamCatalog
	streamOrder
	streamBurst
	streamPayment
	streamShipment
)

// Velocity bursts: in every block of burstEvery orders, one known customer
// places burstSize orders burstSpacing positions apart (70 s at the default
// 1 s step), so Sluice's VELOCITY rule ("more than 5 orders within 10
// minutes") fires for the 6th and 7th of them. Random ordering alone almost
// never triggers it with the default 1,000 customers.
const (
	burstEvery   = 500
	burstSize    = 7
	burstSpacing = 10
)

const catalogSize = 400

// product is a catalog entry; its list price is in US dollars.
type product struct {
	sku   string
	price decimal.Decimal
}

// Generator produces the data set that its [Options] describe. Reference
// data (customers, fx rates) is computed by [New]; orders are computed on
// demand from their position.
//
// A Generator is safe for concurrent use: every method is a pure function
// of the options and its arguments, except NextOrder, which advances an
// atomic cursor.
type Generator struct {
	opts   Options
	codecs *Codecs
	// tag is folded into every id so that data sets of different seeds do
	// not collide when produced into the same topics.
	tag       string
	customers []Customer
	byID      map[string]int
	custW     []weighted[int] // country index weights
	fx        map[string][]FxRate
	fxAll     []FxRate
	catalog   []product
	basePrice decimal.Decimal // value of one US dollar in the base currency
	next      atomic.Int64
}

// New validates opts, applies defaults, loads the Avro schemas from
// opts.SchemaDir and computes the reference data. Errors name the invalid
// option or the schema file that could not be loaded.
func New(opts Options) (*Generator, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	codecs, err := LoadCodecs(o.SchemaDir)
	if err != nil {
		return nil, err
	}
	g := &Generator{opts: o, codecs: codecs}
	g.tag = fmt.Sprintf("%08x", uint32(mix(uint64(o.Seed), streamTag, 0)>>32))
	g.custW = make([]weighted[int], len(countries))
	for i, c := range countries {
		g.custW[i] = weighted[int]{i, c.weight}
	}
	g.basePrice = decimal.NewFromInt(1).DivRound(usdValue(o.BaseCurrency), 16)
	g.makeCustomers()
	g.makeFx()
	g.makeCatalog()
	return g, nil
}

// Options returns the options in effect, with defaults applied.
func (g *Generator) Options() Options {
	o := g.opts
	o.Currencies = slices.Clone(o.Currencies)
	return o
}

// Codecs returns the Avro codecs the generator loaded; use them to encode
// what the generator returns or to decode what was produced.
func (g *Generator) Codecs() *Codecs { return g.codecs }

// Customers returns every customer of the data set, in customer_id order.
// The slice is a copy.
func (g *Generator) Customers() []Customer { return slices.Clone(g.customers) }

// Customer looks a customer up by id; ok is false for ids that are never
// produced, which is what orders of unknown customers carry.
func (g *Generator) Customer(id string) (c Customer, ok bool) {
	i, ok := g.byID[id]
	if !ok {
		return Customer{}, false
	}
	return g.customers[i], true
}

// FxRates returns the whole rate history, ordered by effective_from and
// then currency: one rate of 1 for the base currency, and for every other
// currency an initial rate in force from Start-1h plus FxChanges changes.
// The slice is a copy.
func (g *Generator) FxRates() []FxRate { return slices.Clone(g.fxAll) }

// RateAt returns the rate of currency in force at t: the latest whose
// EffectiveFrom is at or before t, the rule Sluice applies. ok is false when
// there is none (NoRateCurrency, an unknown currency, or t before the
// first rate).
func (g *Generator) RateAt(currency string, t time.Time) (r FxRate, ok bool) {
	hist := g.fx[currency]
	// First rate effective after t; the one before it is in force.
	i, _ := slices.BinarySearchFunc(hist, t, func(r FxRate, t time.Time) int {
		if r.EffectiveFrom.After(t) {
			return 1
		}
		return -1
	})
	if i == 0 {
		return FxRate{}, false
	}
	return hist[i-1], true
}

// Orders returns Order(seq) for first <= seq < end, e.g. for a Summary's
// FirstSeq and EndSeq.
func (g *Generator) Orders(first, end int) []Order {
	out := make([]Order, 0, max(end-first, 0))
	for seq := first; seq < end; seq++ {
		out = append(out, g.Order(seq))
	}
	return out
}

// ToBase converts amount in currency at event time at into the base
// currency the way DESIGN.md specifies: the rate in force at that time
// (see RateAt), then round half to even to MoneyScale places. ok is false
// when no rate is in force, where Sluice dead-letters the record. Tests
// use it to compute the expected total_base and amount_base columns.
func (g *Generator) ToBase(amount decimal.Decimal, currency string, at time.Time) (base decimal.Decimal, rate FxRate, ok bool) {
	rate, ok = g.RateAt(currency, at)
	if !ok {
		return decimal.Decimal{}, FxRate{}, false
	}
	return rescale(amount.Mul(rate.Rate).RoundBank(MoneyScale), MoneyScale), rate, true
}

// NextOrder returns Order(n) for the next n of an internal cursor that
// starts at 0, and advances it. Safe for concurrent use: concurrent callers
// get distinct orders.
func (g *Generator) NextOrder() Order {
	return g.Order(int(g.next.Add(1) - 1))
}

// Cursor is the seq the next call of NextOrder returns.
func (g *Generator) Cursor() int { return int(g.next.Load()) }

// OrderID is the order_id of Order(seq), without computing the order.
func (g *Generator) OrderID(seq int) string {
	return "ord-" + g.tag + "-" + pad(seq+1, 8)
}

// Order returns the order at position seq (seq >= 0) of the data set. It
// is a pure function of the options and seq. Its CreatedAt lies in
// [Start+seq*Step, Start+(seq+1)*Step), so orders are in event-time order.
func (g *Generator) Order(seq int) Order {
	if seq < 0 {
		panic(fmt.Sprintf("gen: Order called with negative seq %d", seq))
	}
	o := &g.opts
	r := g.rng(streamOrder, uint64(seq))
	base := o.Start.Add(time.Duration(seq) * o.Step)
	created := base.Add(time.Duration(r.Int64N(int64(o.Step)))).Truncate(time.Millisecond)

	// Customer: a velocity burst, an unknown customer, or any known one.
	var (
		custID  string
		ctry    int // index into countries
		segment = SegmentConsumer
	)
	if ci, ok := g.burstCustomer(seq); ok {
		c := g.customers[ci]
		custID, ctry, segment = c.CustomerID, countryIndex(c.Country), c.Segment
	} else if r.Float64() < o.UnknownCustomerRatio {
		// Ids past the produced range look like any other but never join.
		custID = g.customerID(o.Customers + r.IntN(o.Customers))
		ctry = pick(r, g.custW)
	} else {
		c := g.customers[r.IntN(len(g.customers))]
		custID, ctry, segment = c.CustomerID, countryIndex(c.Country), c.Segment
	}

	ord := Order{
		OrderID:    g.OrderID(seq),
		CustomerID: custID,
		CreatedAt:  created,
		Status:     pick(r, statusWeights),
		Channel:    pick(r, channelWeights),
	}

	// Currency: mostly the customer's local one.
	local := countries[ctry].currency
	switch {
	case o.NoRateCurrencyRatio > 0 && r.Float64() < o.NoRateCurrencyRatio:
		ord.Currency = o.NoRateCurrency
	case slices.Contains(o.Currencies, local) && r.IntN(100) < 85:
		ord.Currency = local
	default:
		ord.Currency = o.Currencies[r.IntN(len(o.Currencies))]
	}

	// Shipping country: the customer's, except some gifts and forwarders
	// (what COUNTRY_MISMATCH looks for). A store order ships nowhere else.
	ord.ShippingCountry = countries[ctry].code
	if ord.Channel != ChannelStore && r.IntN(100) < 6 {
		other := r.IntN(len(countries) - 1)
		if other >= ctry {
			other++
		}
		ord.ShippingCountry = countries[other].code
	}

	// Items: distinct products; businesses buy in bulk.
	n := pick(r, itemsWeights)
	ord.Items = make([]LineItem, 0, n)
	used := make([]int, 0, n)
	total := decimal.New(0, -MoneyScale)
	for len(ord.Items) < n {
		p := r.IntN(len(g.catalog))
		if slices.Contains(used, p) {
			continue
		}
		used = append(used, p)
		q := quantity(r, segment)
		price := g.localPrice(g.catalog[p].price, ord.Currency, created)
		ord.Items = append(ord.Items, LineItem{SKU: g.catalog[p].sku, Quantity: q, UnitPrice: price})
		total = total.Add(price.Mul(decimal.New(int64(q), 0)))
	}
	ord.Total = rescale(total, MoneyScale)

	if r.IntN(100) < 10 {
		c := coupons[r.IntN(len(coupons))]
		ord.Coupon = &c
	}
	return ord
}

// Payments returns the payment attempts for o, in time order: one or two,
// the amount and currency always the order's. Most succeed (CAPTURED or
// AUTHORIZED); about 7% of first attempts fail with a failure_reason, and
// most of those are retried; a few orders are REFUNDED (cancelled ones
// mostly). It is a pure function of the options and o.OrderID.
func (g *Generator) Payments(o Order) []Payment {
	r := g.rngKey(streamPayment, o.OrderID)
	idPart := strings.TrimPrefix(o.OrderID, "ord-")
	t := o.CreatedAt.Add(time.Second + time.Duration(r.Int64N(int64(2*time.Minute))))
	method := pick(r, methodWeights)

	mk := func(attempt int, status PaymentStatus) Payment {
		p := Payment{
			PaymentID: "pay-" + idPart + "-" + strconv.Itoa(attempt),
			OrderID:   o.OrderID,
			CreatedAt: t.Truncate(time.Millisecond),
			Method:    method,
			Status:    status,
			Amount:    o.Total,
			Currency:  o.Currency,
		}
		if status == PaymentFailed {
			reason := failureReasons[r.IntN(len(failureReasons))]
			p.FailureReason = &reason
		}
		return p
	}
	success := func() PaymentStatus {
		switch x := r.IntN(100); {
		case o.Status == OrderCancelled && x < 60:
			return PaymentRefunded
		case o.Status == OrderCancelled:
			return PaymentAuthorized
		case x < 2:
			return PaymentRefunded
		case x < 34:
			return PaymentAuthorized
		default:
			return PaymentCaptured
		}
	}

	if r.IntN(100) >= 7 {
		return []Payment{mk(1, success())}
	}
	out := []Payment{mk(1, PaymentFailed)}
	if r.IntN(100) < 75 {
		t = t.Add(30*time.Second + time.Duration(r.Int64N(int64(10*time.Minute))))
		if r.IntN(100) < 40 {
			method = pick(r, methodWeights)
		}
		status := PaymentFailed
		if r.IntN(100) < 85 {
			status = success()
		}
		out = append(out, mk(2, status))
	}
	return out
}

// Shipments returns the delivery steps of o, in time order, all with the
// same shipment_id: none for cancelled and in-store orders, otherwise from
// LABEL_CREATED up to DELIVERED (some deliveries are still under way at the
// end of the data set, a few hit an EXCEPTION and some of those are
// RETURNED). Steps are hours apart, starting up to a day after the order.
// Some deliveries have no tracking number at all and a label often has
// none yet. It is a pure function of the options and o.
func (g *Generator) Shipments(o Order) []Shipment {
	if o.Status == OrderCancelled || o.Channel == ChannelStore {
		return nil
	}
	r := g.rngKey(streamShipment, o.OrderID)
	ci := countryIndex(o.ShippingCountry)
	carrier := "DHL"
	if ci >= 0 {
		carrier = countries[ci].carriers[r.IntN(len(countries[ci].carriers))]
	}
	var tracking *string
	if r.IntN(100) >= 7 {
		tn := trackingPrefix(carrier) + pad(int(r.Int64N(1e12)), 12)
		tracking = &tn
	}
	steps := []ShipmentStatus{ShipmentLabelCreated, ShipmentPickedUp, ShipmentInTransit, ShipmentOutForDelivery, ShipmentDelivered}
	steps = steps[:pick(r, stepsWeights)]
	if len(steps) >= 3 && r.IntN(100) < 5 {
		rest := slices.Clone(steps[3:])
		steps = append(steps[:3:3], ShipmentException)
		if r.IntN(100) < 40 {
			steps = append(steps, ShipmentReturned)
		} else {
			steps = append(steps, rest...)
		}
	}

	id := "shp-" + strings.TrimPrefix(o.OrderID, "ord-")
	t := o.CreatedAt.Add(30*time.Minute + time.Duration(r.Int64N(int64(24*time.Hour))))
	out := make([]Shipment, len(steps))
	for i, st := range steps {
		if i > 0 {
			t = t.Add(2*time.Hour + time.Duration(r.Int64N(int64(34*time.Hour))))
		}
		s := Shipment{
			ShipmentID:     id,
			OrderID:        o.OrderID,
			EventTime:      t.Truncate(time.Millisecond),
			Status:         st,
			Carrier:        carrier,
			Country:        o.ShippingCountry,
			TrackingNumber: tracking,
		}
		if st == ShipmentLabelCreated && tracking != nil && r.IntN(100) < 30 {
			s.TrackingNumber = nil
		}
		out[i] = s
	}
	return out
}

func (g *Generator) customerID(i int) string {
	return "cus-" + g.tag + "-" + pad(i+1, 6)
}

func (g *Generator) makeCustomers() {
	o := &g.opts
	r := g.rng(streamCustomers, 0)
	g.customers = make([]Customer, o.Customers)
	g.byID = make(map[string]int, o.Customers)
	const history = 3 * 365 * 24 * time.Hour
	for i := range g.customers {
		first := firstNames[r.IntN(len(firstNames))]
		last := lastNames[r.IntN(len(lastNames))]
		seg := pick(r, segmentWeights)
		c := Customer{
			CustomerID: g.customerID(i),
			Country:    countries[pick(r, g.custW)].code,
			Segment:    seg,
			CreatedAt:  o.Start.Add(-time.Hour - time.Duration(r.Int64N(int64(history)))).Truncate(time.Millisecond),
		}
		domain := emailDomains[r.IntN(len(emailDomains))]
		if seg == SegmentBusiness {
			c.Name = last.display + " " + companySuffixes[r.IntN(len(companySuffixes))]
			c.Email = "billing." + last.ascii + strconv.Itoa(i+1) + "@" + domain
		} else {
			c.Name = first.display + " " + last.display
			c.Email = first.ascii + "." + last.ascii + strconv.Itoa(i+1) + "@" + domain
		}
		g.customers[i] = c
		g.byID[c.CustomerID] = i
	}
}

func (g *Generator) makeFx() {
	o := &g.opts
	origin := o.Start.Add(-time.Hour)
	g.fx = make(map[string][]FxRate, len(o.Currencies)+1)
	g.fx[o.BaseCurrency] = []FxRate{{Currency: o.BaseCurrency, Rate: decimal.New(100000000, -RateScale), EffectiveFrom: origin}}
	for ci, cur := range o.Currencies {
		if cur == o.BaseCurrency {
			continue
		}
		r := g.rng(streamFx, uint64(ci))
		// A random walk from the reference cross rate, in whole basis
		// points so that the values never depend on float rounding.
		rate := usdValue(cur).DivRound(usdValue(o.BaseCurrency), RateScale)
		hist := []FxRate{{Currency: cur, Rate: rescale(rate, RateScale), EffectiveFrom: origin}}
		for k := 1; k <= o.FxChanges; k++ {
			jitter := time.Duration(r.Int64N(int64(o.FxInterval/2)+1)) - o.FxInterval/4
			at := o.Start.Add(time.Duration(k)*o.FxInterval + jitter).Truncate(time.Millisecond)
			if prev := hist[len(hist)-1].EffectiveFrom; !at.After(prev) {
				at = prev.Add(time.Millisecond)
			}
			bp := int64(r.IntN(81) - 40) // -0.40% .. +0.40%
			rate = rate.Mul(decimal.New(10000+bp, -4)).Round(RateScale)
			hist = append(hist, FxRate{Currency: cur, Rate: rescale(rate, RateScale), EffectiveFrom: at})
		}
		g.fx[cur] = hist
	}
	for _, h := range g.fx {
		g.fxAll = append(g.fxAll, h...)
	}
	slices.SortFunc(g.fxAll, func(a, b FxRate) int {
		if c := a.EffectiveFrom.Compare(b.EffectiveFrom); c != 0 {
			return c
		}
		return strings.Compare(a.Currency, b.Currency)
	})
}

func (g *Generator) makeCatalog() {
	r := g.rng(streamCatalog, 0)
	cw := make([]weighted[int], len(categories))
	for i, c := range categories {
		cw[i] = weighted[int]{i, c.weight}
	}
	g.catalog = make([]product, catalogSize)
	for i := range g.catalog {
		c := categories[pick(r, cw)]
		cents := c.min + r.Int64N(c.max-c.min+1)
		cents = cents/100*100 + 99 // charm pricing: x.99
		g.catalog[i] = product{sku: c.code + "-" + pad(i+1, 5), price: decimal.New(cents, -MoneyScale)}
	}
}

// localPrice converts a US-dollar list price into cur at the rate in force
// at t and rounds it the way shops do: x.99, or tens for currencies without
// minor units. NoRateCurrency has no rate; its prices are the dollar ones.
func (g *Generator) localPrice(usd decimal.Decimal, cur string, t time.Time) decimal.Decimal {
	info, ok := currencyInfo(cur)
	rate, hasRate := g.RateAt(cur, t)
	if !ok || !hasRate {
		return usd
	}
	p := usd.Mul(g.basePrice).DivRound(rate.Rate, 4)
	if info.digits == 0 {
		p = p.DivRound(decimal.NewFromInt(10), 0).Mul(decimal.NewFromInt(10))
		if p.Sign() <= 0 {
			p = decimal.NewFromInt(10)
		}
		return rescale(p, MoneyScale)
	}
	return rescale(p.Floor().Add(decimal.New(99, -2)), MoneyScale)
}

// burstCustomer says whether order seq is part of a velocity burst, and
// whose.
func (g *Generator) burstCustomer(seq int) (int, bool) {
	pos := seq % burstEvery
	if pos%burstSpacing != 0 || pos/burstSpacing >= burstSize {
		return 0, false
	}
	r := g.rng(streamBurst, uint64(seq/burstEvery))
	return r.IntN(len(g.customers)), true
}

func quantity(r *rand.Rand, s Segment) int32 {
	if s == SegmentBusiness && r.IntN(100) < 40 {
		return int32(2 + r.IntN(23))
	}
	switch x := r.IntN(100); {
	case x < 75:
		return 1
	case x < 92:
		return 2
	case x < 97:
		return 3
	default:
		return int32(4 + r.IntN(2))
	}
}

func (g *Generator) rng(stream, pos uint64) *rand.Rand {
	s := uint64(g.opts.Seed)
	return rand.New(rand.NewPCG(mix(s, stream, pos), mix(s, stream^0xa5a5a5a5, pos)))
}

func (g *Generator) rngKey(stream uint64, key string) *rand.Rand {
	h := fnv.New64a()
	h.Write([]byte(key)) // never fails
	return g.rng(stream, h.Sum64())
}

// mix derives a well-spread 64-bit seed from its inputs (splitmix64).
func mix(seed, stream, pos uint64) uint64 {
	x := seed ^ stream*0x9e3779b97f4a7c15 ^ pos*0xd1b54a32d192ed03
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

func pick[T any](r *rand.Rand, ws []weighted[T]) T {
	total := 0
	for _, w := range ws {
		total += w.w
	}
	x := r.IntN(total)
	for _, w := range ws {
		if x < w.w {
			return w.v
		}
		x -= w.w
	}
	return ws[len(ws)-1].v
}

func countryIndex(code string) int {
	for i := range countries {
		if countries[i].code == code {
			return i
		}
	}
	return -1
}

// rescale returns d with exactly -scale as exponent; d must have at most
// scale decimal places (callers round first).
func rescale(d decimal.Decimal, scale int32) decimal.Decimal {
	u, err := unscaled(d, scale)
	if err != nil {
		panic("gen: internal rounding error: " + err.Error())
	}
	return decimal.NewFromBigInt(u, -scale)
}

func trackingPrefix(carrier string) string {
	var b strings.Builder
	for _, c := range strings.ToUpper(carrier) {
		if c >= 'A' && c <= 'Z' {
			b.WriteRune(c)
			if b.Len() == 2 {
				break
			}
		}
	}
	return b.String()
}

// pad formats n in decimal with at least width digits.
func pad(n, width int) string {
	s := strconv.Itoa(n)
	if len(s) >= width {
		return s
	}
	return strings.Repeat("0", width-len(s)) + s
}
