package gen

import (
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"github.com/linkedin/goavro/v2"
	"github.com/shopspring/decimal"
)

// Schema file names inside a schema directory.
const (
	OrderSchemaFile    = "order.avsc"
	PaymentSchemaFile  = "payment.avsc"
	ShipmentSchemaFile = "shipment.avsc"
	CustomerSchemaFile = "customer.avsc"
	FxRateSchemaFile   = "fx_rate.avsc"
)

// decimalPrecision is the precision of every decimal in the schemas
// (DESIGN.md: decimal(18,2) and decimal(18,8)). goavro does not enforce it
// on encode, so this package does.
const decimalPrecision = 18

// ErrDecimal is wrapped by encode errors for an amount or rate that does not
// fit its Avro decimal: more decimal places than the scale (encoding would
// silently truncate) or more digits than the precision.
var ErrDecimal = errors.New("decimal does not fit the schema")

// Codecs encode the generator's types to plain Avro (no framing: the
// writer schema is the .avsc file) with the Kafka key DESIGN.md gives each
// topic, and decode them back. A Codecs is immutable and safe for
// concurrent use.
type Codecs struct {
	order, payment, shipment, customer, fxRate *goavro.Codec
}

// LoadCodecs compiles the five schemas found in dir (see the *SchemaFile
// constants). The error names the file that is missing or invalid.
func LoadCodecs(dir string) (*Codecs, error) {
	c := &Codecs{}
	for _, s := range []struct {
		file string
		dst  **goavro.Codec
	}{
		{OrderSchemaFile, &c.order},
		{PaymentSchemaFile, &c.payment},
		{ShipmentSchemaFile, &c.shipment},
		{CustomerSchemaFile, &c.customer},
		{FxRateSchemaFile, &c.fxRate},
	} {
		path := filepath.Join(dir, s.file)
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("gen: load schema: %w", err)
		}
		codec, err := goavro.NewCodec(string(b))
		if err != nil {
			return nil, fmt.Errorf("gen: compile schema %s: %w", path, err)
		}
		*s.dst = codec
	}
	return c, nil
}

// EncodeCustomer returns the customers-topic key (customer_id) and value.
func (c *Codecs) EncodeCustomer(cu Customer) (key, value []byte, err error) {
	value, err = c.customer.BinaryFromNative(nil, map[string]any{
		"customer_id": cu.CustomerID,
		"name":        cu.Name,
		"email":       cu.Email,
		"country":     cu.Country,
		"segment":     string(cu.Segment),
		"created_at":  cu.CreatedAt,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("gen: encode customer %s: %w", cu.CustomerID, err)
	}
	return []byte(cu.CustomerID), value, nil
}

// EncodeFxRate returns the fx-rates-topic key (`<CURRENCY>@<millis>`) and
// value.
func (c *Codecs) EncodeFxRate(r FxRate) (key, value []byte, err error) {
	rate, err := toRat(r.Rate, RateScale)
	if err != nil {
		return nil, nil, fmt.Errorf("gen: encode fx rate %s: rate: %w", r.Key(), err)
	}
	value, err = c.fxRate.BinaryFromNative(nil, map[string]any{
		"currency":       r.Currency,
		"rate":           rate,
		"effective_from": r.EffectiveFrom,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("gen: encode fx rate %s: %w", r.Key(), err)
	}
	return []byte(r.Key()), value, nil
}

// EncodeOrder returns the orders-topic key (customer_id) and value.
func (c *Codecs) EncodeOrder(o Order) (key, value []byte, err error) {
	return c.appendOrder(nil, o)
}

// appendOrder is EncodeOrder with the value appended to buf (a wire
// format's header, see ConfluentEncoder).
func (c *Codecs) appendOrder(buf []byte, o Order) (key, value []byte, err error) {
	total, err := toRat(o.Total, MoneyScale)
	if err != nil {
		return nil, nil, fmt.Errorf("gen: encode order %s: total: %w", o.OrderID, err)
	}
	items := make([]any, len(o.Items))
	for i, it := range o.Items {
		price, err := toRat(it.UnitPrice, MoneyScale)
		if err != nil {
			return nil, nil, fmt.Errorf("gen: encode order %s: item %d unit_price: %w", o.OrderID, i, err)
		}
		items[i] = map[string]any{"sku": it.SKU, "quantity": it.Quantity, "unit_price": price}
	}
	value, err = c.order.BinaryFromNative(buf, map[string]any{
		"order_id":         o.OrderID,
		"customer_id":      o.CustomerID,
		"created_at":       o.CreatedAt,
		"currency":         o.Currency,
		"total":            total,
		"status":           string(o.Status),
		"channel":          string(o.Channel),
		"shipping_country": o.ShippingCountry,
		"items":            items,
		"coupon":           optString(o.Coupon),
	})
	if err != nil {
		return nil, nil, fmt.Errorf("gen: encode order %s: %w", o.OrderID, err)
	}
	return []byte(o.CustomerID), value, nil
}

// EncodePayment returns the payments-topic key (order_id) and value.
func (c *Codecs) EncodePayment(p Payment) (key, value []byte, err error) {
	return c.appendPayment(nil, p)
}

// appendPayment is EncodePayment with the value appended to buf.
func (c *Codecs) appendPayment(buf []byte, p Payment) (key, value []byte, err error) {
	amount, err := toRat(p.Amount, MoneyScale)
	if err != nil {
		return nil, nil, fmt.Errorf("gen: encode payment %s: amount: %w", p.PaymentID, err)
	}
	value, err = c.payment.BinaryFromNative(buf, map[string]any{
		"payment_id":     p.PaymentID,
		"order_id":       p.OrderID,
		"created_at":     p.CreatedAt,
		"method":         string(p.Method),
		"status":         string(p.Status),
		"amount":         amount,
		"currency":       p.Currency,
		"failure_reason": optString(p.FailureReason),
	})
	if err != nil {
		return nil, nil, fmt.Errorf("gen: encode payment %s: %w", p.PaymentID, err)
	}
	return []byte(p.OrderID), value, nil
}

// EncodeShipment returns the shipments-topic key (order_id) and value.
func (c *Codecs) EncodeShipment(s Shipment) (key, value []byte, err error) {
	return c.appendShipment(nil, s)
}

// appendShipment is EncodeShipment with the value appended to buf.
func (c *Codecs) appendShipment(buf []byte, s Shipment) (key, value []byte, err error) {
	value, err = c.shipment.BinaryFromNative(buf, map[string]any{
		"shipment_id":     s.ShipmentID,
		"order_id":        s.OrderID,
		"event_time":      s.EventTime,
		"status":          string(s.Status),
		"carrier":         s.Carrier,
		"country":         s.Country,
		"tracking_number": optString(s.TrackingNumber),
	})
	if err != nil {
		return nil, nil, fmt.Errorf("gen: encode shipment %s %s: %w", s.ShipmentID, s.Status, err)
	}
	return []byte(s.OrderID), value, nil
}

// DecodeCustomer decodes a customers-topic value.
func (c *Codecs) DecodeCustomer(value []byte) (Customer, error) {
	f, err := decode(c.customer, "customer", value)
	if err != nil {
		return Customer{}, err
	}
	cu := Customer{
		CustomerID: f.str("customer_id"),
		Name:       f.str("name"),
		Email:      f.str("email"),
		Country:    f.str("country"),
		Segment:    Segment(f.str("segment")),
		CreatedAt:  f.time("created_at"),
	}
	return cu, f.err
}

// DecodeFxRate decodes an fx-rates-topic value.
func (c *Codecs) DecodeFxRate(value []byte) (FxRate, error) {
	f, err := decode(c.fxRate, "fx rate", value)
	if err != nil {
		return FxRate{}, err
	}
	r := FxRate{
		Currency:      f.str("currency"),
		Rate:          f.dec("rate", RateScale),
		EffectiveFrom: f.time("effective_from"),
	}
	return r, f.err
}

// DecodeOrder decodes an orders-topic value.
func (c *Codecs) DecodeOrder(value []byte) (Order, error) {
	f, err := decode(c.order, "order", value)
	if err != nil {
		return Order{}, err
	}
	o := Order{
		OrderID:         f.str("order_id"),
		CustomerID:      f.str("customer_id"),
		CreatedAt:       f.time("created_at"),
		Currency:        f.str("currency"),
		Total:           f.dec("total", MoneyScale),
		Status:          OrderStatus(f.str("status")),
		Channel:         Channel(f.str("channel")),
		ShippingCountry: f.str("shipping_country"),
		Coupon:          f.optStr("coupon"),
	}
	items, ok := f.m["items"].([]any)
	if !ok && f.err == nil {
		f.err = fmt.Errorf("gen: decode order: field items: unexpected %T", f.m["items"])
	}
	for _, it := range items {
		m, ok := it.(map[string]any)
		if !ok {
			f.err = fmt.Errorf("gen: decode order: item: unexpected %T", it)
			break
		}
		fi := fields{rec: "order item", m: m}
		o.Items = append(o.Items, LineItem{SKU: fi.str("sku"), Quantity: fi.int32("quantity"), UnitPrice: fi.dec("unit_price", MoneyScale)})
		if fi.err != nil && f.err == nil {
			f.err = fi.err
		}
	}
	return o, f.err
}

// DecodePayment decodes a payments-topic value.
func (c *Codecs) DecodePayment(value []byte) (Payment, error) {
	f, err := decode(c.payment, "payment", value)
	if err != nil {
		return Payment{}, err
	}
	p := Payment{
		PaymentID:     f.str("payment_id"),
		OrderID:       f.str("order_id"),
		CreatedAt:     f.time("created_at"),
		Method:        PaymentMethod(f.str("method")),
		Status:        PaymentStatus(f.str("status")),
		Amount:        f.dec("amount", MoneyScale),
		Currency:      f.str("currency"),
		FailureReason: f.optStr("failure_reason"),
	}
	return p, f.err
}

// DecodeShipment decodes a shipments-topic value.
func (c *Codecs) DecodeShipment(value []byte) (Shipment, error) {
	f, err := decode(c.shipment, "shipment", value)
	if err != nil {
		return Shipment{}, err
	}
	s := Shipment{
		ShipmentID:     f.str("shipment_id"),
		OrderID:        f.str("order_id"),
		EventTime:      f.time("event_time"),
		Status:         ShipmentStatus(f.str("status")),
		Carrier:        f.str("carrier"),
		Country:        f.str("country"),
		TrackingNumber: f.optStr("tracking_number"),
	}
	return s, f.err
}

func decode(codec *goavro.Codec, rec string, value []byte) (*fields, error) {
	native, rest, err := codec.NativeFromBinary(value)
	if err != nil {
		return nil, fmt.Errorf("gen: decode %s: %w", rec, err)
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("gen: decode %s: %d trailing bytes", rec, len(rest))
	}
	m, ok := native.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("gen: decode %s: unexpected %T", rec, native)
	}
	return &fields{rec: rec, m: m}, nil
}

// fields reads typed values out of a goavro record, keeping the first
// error so that decoders read every field and check once.
type fields struct {
	rec string
	m   map[string]any
	err error
}

func (f *fields) fail(name string, v any) {
	if f.err == nil {
		f.err = fmt.Errorf("gen: decode %s: field %s: unexpected %T", f.rec, name, v)
	}
}

func (f *fields) str(name string) string {
	s, ok := f.m[name].(string)
	if !ok {
		f.fail(name, f.m[name])
	}
	return s
}

func (f *fields) int32(name string) int32 {
	n, ok := f.m[name].(int32)
	if !ok {
		f.fail(name, f.m[name])
	}
	return n
}

func (f *fields) time(name string) time.Time {
	t, ok := f.m[name].(time.Time)
	if !ok {
		f.fail(name, f.m[name])
	}
	return t.UTC()
}

func (f *fields) dec(name string, scale int32) decimal.Decimal {
	r, ok := f.m[name].(*big.Rat)
	if !ok {
		f.fail(name, f.m[name])
		return decimal.Decimal{}
	}
	d, err := fromRat(r, scale)
	if err != nil && f.err == nil {
		f.err = fmt.Errorf("gen: decode %s: field %s: %w", f.rec, name, err)
	}
	return d
}

func (f *fields) optStr(name string) *string {
	switch v := f.m[name].(type) {
	case nil:
		return nil
	case map[string]any:
		if s, ok := v["string"].(string); ok {
			return &s
		}
	}
	f.fail(name, f.m[name])
	return nil
}

// optString is the goavro form of a ["null","string"] union value.
func optString(s *string) any {
	if s == nil {
		return nil
	}
	return goavro.Union("string", *s)
}

func pow10(n int32) *big.Int {
	return new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(n)), nil)
}

// unscaled returns d*10^scale as an integer, or an error wrapping
// ErrDecimal if that is not exact or exceeds decimalPrecision digits.
func unscaled(d decimal.Decimal, scale int32) (*big.Int, error) {
	u := d.Coefficient()
	switch exp := d.Exponent(); {
	case exp > -scale:
		u.Mul(u, pow10(exp+scale))
	case exp < -scale:
		q, m := new(big.Int).QuoRem(u, pow10(-scale-exp), new(big.Int))
		if m.Sign() != 0 {
			return nil, fmt.Errorf("%w: %s has more than %d decimal places", ErrDecimal, d, scale)
		}
		u = q
	}
	if new(big.Int).Abs(u).Cmp(pow10(decimalPrecision)) >= 0 {
		return nil, fmt.Errorf("%w: %s has more than %d digits", ErrDecimal, d, decimalPrecision)
	}
	return u, nil
}

// toRat is the goavro form of a decimal(18, scale) value.
func toRat(d decimal.Decimal, scale int32) (*big.Rat, error) {
	u, err := unscaled(d, scale)
	if err != nil {
		return nil, err
	}
	return new(big.Rat).SetFrac(u, pow10(scale)), nil
}

// fromRat turns a decoded decimal(18, scale) back into a decimal with
// exponent -scale.
func fromRat(r *big.Rat, scale int32) (decimal.Decimal, error) {
	n := new(big.Int).Mul(r.Num(), pow10(scale))
	q, m := new(big.Int).QuoRem(n, r.Denom(), new(big.Int))
	if m.Sign() != 0 {
		return decimal.Decimal{}, fmt.Errorf("%w: %s is not a multiple of 10^-%d", ErrDecimal, r.RatString(), scale)
	}
	return decimal.NewFromBigInt(q, -scale), nil
}
