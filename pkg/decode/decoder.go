package decode

import (
	"errors"
	"fmt"

	"github.com/sluice-etl/sluice/pkg/record"
)

// Decoder turns one Kafka record value into a Row. Safe for concurrent use.
//
// Decode is called by a partition worker once per record of a batch. The
// returned Row is the caller's (nothing in it aliases value). Every error is
// an *Error: the record is bad, not the pipeline, so the caller dead-letters
// it with Error() as the reason and goes on; retrying cannot help.
type Decoder interface {
	Decode(value []byte) (record.Row, error)
}

// Formats, as written in a pipeline's "format" key.
const (
	FormatAvro          = "avro"           // plain Avro binary, writer schema = the .avsc
	FormatAvroConfluent = "avro-confluent" // Confluent wire format (schema registry)
	FormatJSON          = "json"           // one JSON object per record, typed by the .avsc
)

// ErrUnsupportedFormat is returned by New for a format it does not know or
// does not support yet.
var ErrUnsupportedFormat = errors.New("unsupported format")

// New builds the decoder for a pipeline. format is "avro" (plain Avro binary,
// writer schema = the .avsc at schemaPath) or "json" (one JSON object per
// record, same field names, typed by the same .avsc). "avro-confluent" is not
// supported yet. It is called once per pipeline at start-up; errors are
// configuration errors (unreadable or unsupported schema, unknown format).
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
	if err := checkFormat(format); err != nil {
		return nil, err
	}
	switch format {
	case FormatAvro:
		return newAvro(s)
	default: // FormatJSON
		return &jsonDecoder{plan: newPlan(s.root)}, nil
	}
}

func checkFormat(format string) error {
	switch format {
	case FormatAvro, FormatJSON:
		return nil
	case FormatAvroConfluent:
		return fmt.Errorf("decode: format %q: %w: not supported yet", format, ErrUnsupportedFormat)
	default:
		return fmt.Errorf("decode: format %q: %w (want %q or %q)", format, ErrUnsupportedFormat, FormatAvro, FormatJSON)
	}
}
