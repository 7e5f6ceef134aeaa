package decode

import (
	"context"
	"errors"
	"fmt"

	"github.com/sluice-etl/sluice/pkg/record"
)

// Decoder turns one Kafka record value into a Row. Safe for concurrent use.
//
// Decode is called by a partition worker once per record of a batch. The
// returned Row is the caller's (nothing in it aliases value).
//
// Every error is an *Error, EXCEPT one that wraps ErrUnavailable:
//
//   - *Error: the record is bad, not the pipeline, so the caller
//     dead-letters it with Error() as the reason and goes on; retrying
//     cannot help.
//   - errors.Is(err, ErrUnavailable) (never an *Error): something the
//     decoder depends on, the schema registry of avro-confluent, could not
//     be asked. It says nothing about the record: the caller must not
//     dead-letter it, but retry the batch later (with backoff), from this
//     record on; records already decoded stay valid.
//
// Only avro-confluent returns ErrUnavailable; avro and json never do.
type Decoder interface {
	Decode(value []byte) (record.Row, error)
}

// ContextDecoder is implemented by decoders whose Decode may wait on I/O
// (avro-confluent, on the first record of each schema id): DecodeContext
// is Decode with that wait bounded by ctx, whose end then shows as an
// ErrUnavailable error. Callers that hold a context should prefer it.
type ContextDecoder interface {
	Decoder
	DecodeContext(ctx context.Context, value []byte) (record.Row, error)
}

// ErrUnavailable is wrapped by the errors that are not about the record
// but about a dependency of the decoder (the schema registry could not be
// reached, timed out, or answered something other than a schema or "no such
// id"). Such an error is never an *Error; retry the batch, do not
// dead-letter.
var ErrUnavailable = errors.New("schema registry unavailable")

// Formats, as written in a pipeline's "format" key.
const (
	FormatAvro          = "avro"           // plain Avro binary, writer schema = the .avsc
	FormatAvroConfluent = "avro-confluent" // Confluent wire format, writer schemas from a registry, read as the .avsc
	FormatJSON          = "json"           // one JSON object per record, typed by the .avsc
)

// ErrUnsupportedFormat is returned by New for a format it does not know.
var ErrUnsupportedFormat = errors.New("unsupported format")

// ErrNoRegistry is returned when format avro-confluent is asked for
// without a schema registry (New, NewFromSchema, or a nil SchemaFetcher).
var ErrNoRegistry = errors.New("needs a schema registry")

// New builds the decoder for a pipeline. format is "avro" (plain Avro binary,
// writer schema = the .avsc at schemaPath) or "json" (one JSON object per
// record, same field names, typed by the same .avsc). "avro-confluent" needs
// a registry: use NewFromSchemaWith. It is called once per pipeline at
// start-up; errors are configuration errors (unreadable or unsupported
// schema, unknown format).
func New(format, schemaPath string) (Decoder, error) {
	if err := checkFormat(format); err != nil {
		return nil, err
	}
	s, err := LoadSchema(schemaPath)
	if err != nil {
		return nil, err
	}
	return NewFromSchema(format, s)
}

// NewFromSchema is New for a schema already loaded (e.g. by config
// validation, or fetched from a registry).
func NewFromSchema(format string, s *Schema) (Decoder, error) {
	return NewFromSchemaWith(format, s, nil)
}

// NewFromSchemaWith is NewFromSchema with the schema registry that format
// avro-confluent needs; s is then the reader schema (see NewConfluent).
// The other formats ignore reg, which may be nil for them. Called once per
// pipeline at start-up; it does not contact the registry.
func NewFromSchemaWith(format string, s *Schema, reg SchemaFetcher) (Decoder, error) {
	if err := checkFormat(format); err != nil {
		return nil, err
	}
	switch format {
	case FormatAvro:
		return newAvro(s)
	case FormatAvroConfluent:
		return NewConfluent(s, reg)
	default: // FormatJSON
		return &jsonDecoder{plan: newPlan(s.root)}, nil
	}
}

func checkFormat(format string) error {
	switch format {
	case FormatAvro, FormatAvroConfluent, FormatJSON:
		return nil
	default:
		return fmt.Errorf("decode: format %q: %w (want %q, %q or %q)", format, ErrUnsupportedFormat,
			FormatAvro, FormatAvroConfluent, FormatJSON)
	}
}
