// Package gen generates realistic, referentially consistent e-commerce
// events for Sluice and produces them to Kafka. It sits before the whole
// flow: it is what feeds the `orders`, `payments`, `shipments`, `customers`
// and `fx-rates` topics in demos, benchmarks and tests, and its output is
// the reference against which tests check what Sluice loaded.
//
// # Contract
//
// Every value follows DESIGN.md and is encoded as plain Avro with the
// repository's .avsc files (see [LoadCodecs]), or, for the event records,
// in another [Format] Sluice reads: JSON ([JSONEncoder]) or Confluent's
// wire format with the schemas registered in a schema registry
// ([ConfluentEncoder], [Codecs.RegisterEventSchemas]). Output is a pure function of
// [Options]: the same options (in particular the same Seed) give the same
// customers, fx rates and orders, byte for byte. Orders are random-access:
// [Generator.Order] (seq) is the order at position seq whatever was asked
// before, and [Generator.Payments] and [Generator.Shipments] derive an
// order's follow-up events from the order alone. A test can therefore
// regenerate exactly what [Produce] wrote from the Summary it returned.
//
// Referential consistency: every payment and shipment refers to a generated
// order, payment amounts and currencies equal their order's, every order's
// total is the exact sum of quantity*unit_price of its items, and every
// order's currency has a rate in force at the order's time, except for two
// deliberate faults that Sluice must handle: orders of unknown customers
// ([Options.UnknownCustomerRatio]) and orders in a currency without any
// rate ([Options.NoRateCurrencyRatio]).
//
// # Files
//
//	model.go     domain types (Customer, FxRate, Order, LineItem, Payment, Shipment) and enums
//	options.go   Options, defaults and validation
//	tables.go    static reference tables: countries, currencies, names, carriers, ...
//	generator.go Generator: customers, fx history, orders, payments, shipments
//	codec.go     Codecs: Avro encoding/decoding and the Kafka keys of each type
//	format.go    Format and EventEncoder: the event records' wire formats
//	json.go      the json format of orders, payments and shipments
//	confluent.go the avro-confluent format and the schema registration it needs
//	produce.go   Produce: writes a Plan to Kafka with franz-go, bounded in flight
package gen
