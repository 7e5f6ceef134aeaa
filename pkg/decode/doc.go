// Package decode is the first stage after the batcher: it turns the value
// bytes of one Kafka record into a record.Row, or says precisely why it
// cannot, so that the pipeline can dead-letter that record (stage "decode")
// and carry on with the rest of the batch.
//
// # Contract
//
// Every decoder produces the normalised Row types of package record, driven
// by the pipeline's Avro schema (.avsc), whatever the wire format:
//
//	string, enum, uuid     -> string
//	int / long             -> int32 / int64
//	float / double         -> float32 / float64
//	boolean                -> bool
//	bytes / fixed          -> []byte (a copy, never aliasing the Kafka buffer)
//	timestamp-millis/micros-> time.Time in UTC
//	date                   -> time.Time in UTC at midnight
//	decimal(p, s)          -> decimal.Decimal with exponent exactly -s
//	["null", T]            -> nil or the T value
//	array / map / record   -> []any / map[string]any / map[string]any
//
// A Row holds every top-level field of the schema (nullable ones as nil),
// and nothing else. Values are exact: a decimal or timestamp that does not
// fit its declared type is an error, never rounded. The same content in Avro
// and in JSON yields reflect.DeepEqual Rows.
//
// Every error returned by a Decoder about a record is an *Error naming the
// field (as a path like "items[2].unit_price") and the reason; its text is
// what the dead letter's "reason" header carries. The one exception is an
// error wrapping ErrUnavailable (avro-confluent only: the schema registry
// could not be asked), which is never an *Error: retry the batch, do not
// dead-letter (see Decoder).
//
// avro-confluent reads each record with the writer schema its schema id
// names in the registry and maps it onto the .avsc (the reader schema) by
// field name, as Avro schema resolution does: see resolve.go.
//
// # Files
//
//	decoder.go   Decoder, New and the format names, ErrUnavailable
//	errors.go    *Error and the sentinels callers may test with errors.Is
//	schema.go    LoadSchema/ParseSchema: the .avsc as a Schema descriptor
//	plan.go      the per-schema normalisation plan, built once
//	avroscan.go  bounds-checked walk of Avro binary before goavro sees it
//	avro.go      plain Avro binary via goavro, normalised by the plan
//	confluent.go Confluent wire format: header, per-schema-id decoders
//	resolve.go   writer-to-reader schema resolution and reader defaults
//	decimal.go   exact decimal conversions and precision checks
//	json.go      one JSON object per record, coerced by the plan
//	jsonparse.go the single-pass JSON parser that json.go walks the plan with
//	jsoncols.go  ColumnJSON: JSON straight into a batch's Block
//	avrocols.go  ColumnAvro: goavro's output straight into a batch's Block
package decode
