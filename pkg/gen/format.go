package gen

import (
	"fmt"
	"strings"
)

// Format is the wire format of the event records (orders, payments,
// shipments): the value of a Sluice pipeline's "format" key that reads
// them. Reference data (customers, fx rates) is plain Avro in every
// format, because that is how Sluice reads it.
type Format string

// Formats, as Sluice's config spells them.
const (
	// FormatAvro is plain Avro binary; the writer schema is the .avsc.
	// It is the default (DESIGN.md: "plain Avro by default").
	FormatAvro Format = "avro"
	// FormatAvroConfluent is Confluent's wire format: magic byte 0, the
	// 4-byte big-endian schema id, then the Avro body (ConfluentEncoder).
	FormatAvroConfluent Format = "avro-confluent"
	// FormatJSON is one JSON object per record (JSONEncoder).
	FormatJSON Format = "json"
)

// Formats returns every format, the default first.
func Formats() []Format { return []Format{FormatAvro, FormatAvroConfluent, FormatJSON} }

// ParseFormat returns the Format named s, or an error listing the known
// ones.
func ParseFormat(s string) (Format, error) {
	for _, f := range Formats() {
		if string(f) == s {
			return f, nil
		}
	}
	names := make([]string, 0, 3)
	for _, f := range Formats() {
		names = append(names, string(f))
	}
	return "", fmt.Errorf("gen: format %q is not one of %s", s, strings.Join(names, ", "))
}

// EventEncoder turns the generator's events into Kafka keys and values of
// one format; the key is the same in every format (DESIGN.md: orders by
// customer_id, payments and shipments by order_id). [Produce] calls it from
// one goroutine; the implementations of this package are also safe for
// concurrent use. *Codecs is the plain Avro one.
type EventEncoder interface {
	EncodeOrder(Order) (key, value []byte, err error)
	EncodePayment(Payment) (key, value []byte, err error)
	EncodeShipment(Shipment) (key, value []byte, err error)
}

var (
	_ EventEncoder = (*Codecs)(nil)
	_ EventEncoder = JSONEncoder{}
	_ EventEncoder = (*ConfluentEncoder)(nil)
)
