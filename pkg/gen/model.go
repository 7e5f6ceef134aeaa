package gen

import (
	"strconv"
	"time"

	"github.com/shopspring/decimal"
)

// Money amounts carry exactly MoneyScale decimal places (Avro decimal(18,2))
// and rates exactly RateScale places (Avro decimal(18,8)). Every decimal the
// generator or a decoder returns has exactly that exponent (-MoneyScale or
// -RateScale), so StringFixed(MoneyScale) and Exponent are stable.
const (
	MoneyScale = 2
	RateScale  = 8
)

// Segment is a customer segment (Avro enum Segment).
type Segment string

// Segments, as in customer.avsc.
const (
	SegmentConsumer Segment = "CONSUMER"
	SegmentBusiness Segment = "BUSINESS"
	SegmentVIP      Segment = "VIP"
)

// OrderStatus is an order's status (Avro enum OrderStatus).
type OrderStatus string

// Order statuses, as in order.avsc.
const (
	OrderCreated   OrderStatus = "CREATED"
	OrderConfirmed OrderStatus = "CONFIRMED"
	OrderCancelled OrderStatus = "CANCELLED"
)

// Channel is where an order was placed (Avro enum Channel).
type Channel string

// Channels, as in order.avsc.
const (
	ChannelWeb    Channel = "WEB"
	ChannelMobile Channel = "MOBILE"
	ChannelStore  Channel = "STORE"
)

// PaymentMethod is how a payment was attempted (Avro enum PaymentMethod).
type PaymentMethod string

// Payment methods, as in payment.avsc.
const (
	MethodCard         PaymentMethod = "CARD"
	MethodPayPal       PaymentMethod = "PAYPAL"
	MethodBankTransfer PaymentMethod = "BANK_TRANSFER"
	MethodWallet       PaymentMethod = "WALLET"
)

// PaymentStatus is a payment attempt's outcome (Avro enum PaymentStatus).
type PaymentStatus string

// Payment statuses, as in payment.avsc.
const (
	PaymentAuthorized PaymentStatus = "AUTHORIZED"
	PaymentCaptured   PaymentStatus = "CAPTURED"
	PaymentFailed     PaymentStatus = "FAILED"
	PaymentRefunded   PaymentStatus = "REFUNDED"
)

// Succeeded reports whether the attempt counts as a success on the payment
// dashboard (AUTHORIZED or CAPTURED), as DESIGN.md defines `succeeded`.
func (s PaymentStatus) Succeeded() bool {
	return s == PaymentAuthorized || s == PaymentCaptured
}

// ShipmentStatus is a step of a delivery (Avro enum ShipmentStatus).
type ShipmentStatus string

// Shipment statuses, as in shipment.avsc.
const (
	ShipmentLabelCreated   ShipmentStatus = "LABEL_CREATED"
	ShipmentPickedUp       ShipmentStatus = "PICKED_UP"
	ShipmentInTransit      ShipmentStatus = "IN_TRANSIT"
	ShipmentOutForDelivery ShipmentStatus = "OUT_FOR_DELIVERY"
	ShipmentDelivered      ShipmentStatus = "DELIVERED"
	ShipmentException      ShipmentStatus = "EXCEPTION"
	ShipmentReturned       ShipmentStatus = "RETURNED"
)

// Customer is a customers-topic record (customer.avsc); its Kafka key is
// CustomerID.
type Customer struct {
	CustomerID string
	Name       string
	Email      string
	Country    string // ISO 3166 alpha-2
	Segment    Segment
	CreatedAt  time.Time // UTC, millisecond precision
}

// FxRate is an fx-rates-topic record (fx_rate.avsc): Rate units of the base
// currency buy one unit of Currency from EffectiveFrom on. Its Kafka key is
// Key().
type FxRate struct {
	Currency      string
	Rate          decimal.Decimal // scale RateScale
	EffectiveFrom time.Time       // UTC, millisecond precision
}

// Key is the record's Kafka key, `<CURRENCY>@<effective_from millis>`.
func (r FxRate) Key() string {
	return r.Currency + "@" + strconv.FormatInt(r.EffectiveFrom.UnixMilli(), 10)
}

// LineItem is one line of an order.
type LineItem struct {
	SKU       string
	Quantity  int32
	UnitPrice decimal.Decimal // scale MoneyScale, in the order's currency
}

// Order is an orders-topic record (order.avsc); its Kafka key is CustomerID.
type Order struct {
	OrderID         string
	CustomerID      string
	CreatedAt       time.Time       // UTC, millisecond precision
	Currency        string          // ISO 4217
	Total           decimal.Decimal // scale MoneyScale; exactly the sum of Quantity*UnitPrice
	Status          OrderStatus
	Channel         Channel
	ShippingCountry string // ISO 3166 alpha-2
	Items           []LineItem
	Coupon          *string // nil when no coupon was used
}

// Payment is a payments-topic record (payment.avsc), one attempt to pay an
// order; its Kafka key is OrderID.
type Payment struct {
	PaymentID     string
	OrderID       string
	CreatedAt     time.Time // UTC, millisecond precision
	Method        PaymentMethod
	Status        PaymentStatus
	Amount        decimal.Decimal // scale MoneyScale; equals the order's Total
	Currency      string          // equals the order's Currency
	FailureReason *string         // non-nil exactly when Status is FAILED
}

// Shipment is a shipments-topic record (shipment.avsc, record
// ShipmentEvent): one step of an order's delivery. All steps of one
// delivery share ShipmentID. Its Kafka key is OrderID.
type Shipment struct {
	ShipmentID     string
	OrderID        string
	EventTime      time.Time // UTC, millisecond precision
	Status         ShipmentStatus
	Carrier        string
	Country        string  // ISO 3166 alpha-2
	TrackingNumber *string // nil when the carrier gave none (yet)
}
