package gen

import "encoding/json"

// The json format's encoding of the generated events: one object per
// record with the .avsc's field names, decimals as strings at the schema's
// scale, timestamps as epoch milliseconds (what pkg/decode's json format
// reads). Keys are the Avro encodings' keys.

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
	return []byte(o.CustomerID), value, err
}
