package gen

import (
	"encoding/json"
	"fmt"
)

// The json format's encoding of the generated events: one object per
// record with the .avsc's field names, decimals as strings at the schema's
// scale, timestamps as epoch milliseconds, a ["null","string"] union as
// null or the bare string (what pkg/decode's json format reads). Keys are
// the Avro encodings' keys. Reference data (customers, fx rates) has no
// JSON form: Sluice reads it as plain Avro whatever the pipelines' format.

type jsonOrder struct {
	OrderID         string     `json:"order_id"`
	CustomerID      string     `json:"customer_id"`
	CreatedAt       int64      `json:"created_at"`
	Currency        string     `json:"currency"`
	Total           string     `json:"total"`
	Status          string     `json:"status"`
	Channel         string     `json:"channel"`
	ShippingCountry string     `json:"shipping_country"`
	Items           []jsonItem `json:"items"`
	Coupon          *string    `json:"coupon"`
}

type jsonItem struct {
	SKU       string `json:"sku"`
	Quantity  int32  `json:"quantity"`
	UnitPrice string `json:"unit_price"`
}

type jsonPayment struct {
	PaymentID     string  `json:"payment_id"`
	OrderID       string  `json:"order_id"`
	CreatedAt     int64   `json:"created_at"`
	Method        string  `json:"method"`
	Status        string  `json:"status"`
	Amount        string  `json:"amount"`
	Currency      string  `json:"currency"`
	FailureReason *string `json:"failure_reason"`
}

type jsonShipment struct {
	ShipmentID     string  `json:"shipment_id"`
	OrderID        string  `json:"order_id"`
	EventTime      int64   `json:"event_time"`
	Status         string  `json:"status"`
	Carrier        string  `json:"carrier"`
	Country        string  `json:"country"`
	TrackingNumber *string `json:"tracking_number"`
}

// EncodeOrderJSON returns the orders-topic key (customer_id) and the
// order as JSON.
func EncodeOrderJSON(o Order) (key, value []byte, err error) {
	j := jsonOrder{
		OrderID: o.OrderID, CustomerID: o.CustomerID, CreatedAt: o.CreatedAt.UnixMilli(),
		Currency: o.Currency, Total: o.Total.StringFixed(MoneyScale), Status: string(o.Status),
		Channel: string(o.Channel), ShippingCountry: o.ShippingCountry, Coupon: o.Coupon,
		Items: make([]jsonItem, len(o.Items)),
	}
	for i, it := range o.Items {
		j.Items[i] = jsonItem{SKU: it.SKU, Quantity: it.Quantity, UnitPrice: it.UnitPrice.StringFixed(MoneyScale)}
	}
	value, err = json.Marshal(j)
	if err != nil {
		return nil, nil, fmt.Errorf("gen: encode order %s as json: %w", o.OrderID, err)
	}
	return []byte(o.CustomerID), value, nil
}

// EncodePaymentJSON returns the payments-topic key (order_id) and the
// payment as JSON.
func EncodePaymentJSON(p Payment) (key, value []byte, err error) {
	value, err = json.Marshal(jsonPayment{
		PaymentID: p.PaymentID, OrderID: p.OrderID, CreatedAt: p.CreatedAt.UnixMilli(),
		Method: string(p.Method), Status: string(p.Status), Amount: p.Amount.StringFixed(MoneyScale),
		Currency: p.Currency, FailureReason: p.FailureReason,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("gen: encode payment %s as json: %w", p.PaymentID, err)
	}
	return []byte(p.OrderID), value, nil
}

// EncodeShipmentJSON returns the shipments-topic key (order_id) and the
// shipment event as JSON.
func EncodeShipmentJSON(s Shipment) (key, value []byte, err error) {
	value, err = json.Marshal(jsonShipment{
		ShipmentID: s.ShipmentID, OrderID: s.OrderID, EventTime: s.EventTime.UnixMilli(),
		Status: string(s.Status), Carrier: s.Carrier, Country: s.Country, TrackingNumber: s.TrackingNumber,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("gen: encode shipment %s %s as json: %w", s.ShipmentID, s.Status, err)
	}
	return []byte(s.OrderID), value, nil
}

// JSONEncoder is the EventEncoder of format json. Its zero value is ready
// to use; it is safe for concurrent use.
type JSONEncoder struct{}

// EncodeOrder is EncodeOrderJSON.
func (JSONEncoder) EncodeOrder(o Order) (key, value []byte, err error) { return EncodeOrderJSON(o) }

// EncodePayment is EncodePaymentJSON.
func (JSONEncoder) EncodePayment(p Payment) (key, value []byte, err error) {
	return EncodePaymentJSON(p)
}

// EncodeShipment is EncodeShipmentJSON.
func (JSONEncoder) EncodeShipment(s Shipment) (key, value []byte, err error) {
	return EncodeShipmentJSON(s)
}
