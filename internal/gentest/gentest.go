// Package gentest reads what sluice-gen produced with Sluice's own
// decoders (pkg/decode), back into the generator's types, so that tests can
// check each wire format the generator writes against the orders, payments
// and shipments it generated: what Sluice would load is what was meant.
package gentest

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/shopspring/decimal"

	"github.com/sluice-etl/sluice/pkg/decode"
	"github.com/sluice-etl/sluice/pkg/gen"
)

// Decoders decode the three event topics of one format.
type Decoders struct {
	order, payment, shipment decode.Decoder
}

// NewDecoders builds the pipelines' decoders of format for the .avsc
// files in schemaDir, as Sluice builds them from its config; reg is the
// schema registry avro-confluent reads writer schemas from (nil for the
// other formats).
func NewDecoders(format gen.Format, schemaDir string, reg decode.SchemaFetcher) (*Decoders, error) {
	d := &Decoders{}
	for _, s := range []struct {
		file string
		dst  *decode.Decoder
	}{
		{gen.OrderSchemaFile, &d.order},
		{gen.PaymentSchemaFile, &d.payment},
		{gen.ShipmentSchemaFile, &d.shipment},
	} {
		schema, err := decode.LoadSchema(filepath.Join(schemaDir, s.file))
		if err != nil {
			return nil, fmt.Errorf("gentest: %w", err)
		}
		dec, err := decode.NewFromSchemaWith(string(format), schema, reg)
		if err != nil {
			return nil, fmt.Errorf("gentest: decoder of %s for %s: %w", format, s.file, err)
		}
		*s.dst = dec
	}
	return d, nil
}

// Order decodes an orders-topic value.
func (d *Decoders) Order(value []byte) (gen.Order, error) {
	row, err := d.order.Decode(value)
	if err != nil {
		return gen.Order{}, fmt.Errorf("gentest: decode order: %w", err)
	}
	f := fields{rec: "order", row: row}
	o := gen.Order{
		OrderID:         f.str("order_id"),
		CustomerID:      f.str("customer_id"),
		CreatedAt:       f.time("created_at"),
		Currency:        f.str("currency"),
		Total:           f.dec("total"),
		Status:          gen.OrderStatus(f.str("status")),
		Channel:         gen.Channel(f.str("channel")),
		ShippingCountry: f.str("shipping_country"),
		Coupon:          f.optStr("coupon"),
	}
	items, ok := row["items"].([]any)
	if !ok {
		f.fail("items", row["items"])
	}
	for i, it := range items {
		m, ok := it.(map[string]any)
		if !ok {
			f.fail(fmt.Sprintf("items[%d]", i), it)
			break
		}
		fi := fields{rec: fmt.Sprintf("order items[%d]", i), row: m}
		o.Items = append(o.Items, gen.LineItem{SKU: fi.str("sku"), Quantity: fi.int32("quantity"), UnitPrice: fi.dec("unit_price")})
		if fi.err != nil && f.err == nil {
			f.err = fi.err
		}
	}
	return o, f.err
}

// Payment decodes a payments-topic value.
func (d *Decoders) Payment(value []byte) (gen.Payment, error) {
	row, err := d.payment.Decode(value)
	if err != nil {
		return gen.Payment{}, fmt.Errorf("gentest: decode payment: %w", err)
	}
	f := fields{rec: "payment", row: row}
	p := gen.Payment{
		PaymentID:     f.str("payment_id"),
		OrderID:       f.str("order_id"),
		CreatedAt:     f.time("created_at"),
		Method:        gen.PaymentMethod(f.str("method")),
		Status:        gen.PaymentStatus(f.str("status")),
		Amount:        f.dec("amount"),
		Currency:      f.str("currency"),
		FailureReason: f.optStr("failure_reason"),
	}
	return p, f.err
}

// Shipment decodes a shipments-topic value.
func (d *Decoders) Shipment(value []byte) (gen.Shipment, error) {
	row, err := d.shipment.Decode(value)
	if err != nil {
		return gen.Shipment{}, fmt.Errorf("gentest: decode shipment: %w", err)
	}
	f := fields{rec: "shipment", row: row}
	s := gen.Shipment{
		ShipmentID:     f.str("shipment_id"),
		OrderID:        f.str("order_id"),
		EventTime:      f.time("event_time"),
		Status:         gen.ShipmentStatus(f.str("status")),
		Carrier:        f.str("carrier"),
		Country:        f.str("country"),
		TrackingNumber: f.optStr("tracking_number"),
	}
	return s, f.err
}

// fields reads a decoded Row strictly: a value of another Go type than
// pkg/decode's contract gives the field's schema type is an error.
type fields struct {
	rec string
	row map[string]any // a record.Row or a nested record
	err error
}

func (f *fields) fail(name string, v any) {
	if f.err == nil {
		f.err = fmt.Errorf("gentest: %s field %s: unexpected %T (%v)", f.rec, name, v, v)
	}
}

func (f *fields) str(name string) string {
	s, ok := f.row[name].(string)
	if !ok {
		f.fail(name, f.row[name])
	}
	return s
}

func (f *fields) int32(name string) int32 {
	n, ok := f.row[name].(int32)
	if !ok {
		f.fail(name, f.row[name])
	}
	return n
}

func (f *fields) time(name string) time.Time {
	t, ok := f.row[name].(time.Time)
	if !ok || t.Location() != time.UTC {
		f.fail(name, f.row[name])
	}
	return t
}

func (f *fields) dec(name string) decimal.Decimal {
	d, ok := f.row[name].(decimal.Decimal)
	if !ok {
		f.fail(name, f.row[name])
	}
	return d
}

func (f *fields) optStr(name string) *string {
	switch v := f.row[name].(type) {
	case nil:
		return nil
	case string:
		return &v
	}
	f.fail(name, f.row[name])
	return nil
}

// SameOrder reports whether a and b are the same order: equal fields,
// instants and decimals, each decimal at the same scale.
func SameOrder(a, b gen.Order) bool {
	if a.OrderID != b.OrderID || a.CustomerID != b.CustomerID || !a.CreatedAt.Equal(b.CreatedAt) ||
		a.Currency != b.Currency || !sameDec(a.Total, b.Total) || a.Status != b.Status || a.Channel != b.Channel ||
		a.ShippingCountry != b.ShippingCountry || !sameStr(a.Coupon, b.Coupon) || len(a.Items) != len(b.Items) {
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

// SamePayment is SameOrder for payments.
func SamePayment(a, b gen.Payment) bool {
	return a.PaymentID == b.PaymentID && a.OrderID == b.OrderID && a.CreatedAt.Equal(b.CreatedAt) &&
		a.Method == b.Method && a.Status == b.Status && sameDec(a.Amount, b.Amount) &&
		a.Currency == b.Currency && sameStr(a.FailureReason, b.FailureReason)
}

// SameShipment is SameOrder for shipment events.
func SameShipment(a, b gen.Shipment) bool {
	return a.ShipmentID == b.ShipmentID && a.OrderID == b.OrderID && a.EventTime.Equal(b.EventTime) &&
		a.Status == b.Status && a.Carrier == b.Carrier && a.Country == b.Country &&
		sameStr(a.TrackingNumber, b.TrackingNumber)
}

func sameDec(a, b decimal.Decimal) bool { return a.Equal(b) && a.Exponent() == b.Exponent() }

func sameStr(a, b *string) bool { return (a == nil) == (b == nil) && (a == nil || *a == *b) }
