package decode

import (
	"errors"
	"strconv"
)

// Sentinels for the failures a caller may want to tell apart; every
// per-record Decoder error is an *Error whose Unwrap returns one of these
// when it applies. (ErrUnavailable, in decoder.go, is the one that is not
// about a record and never comes in an *Error.)
var (
	// ErrEmptyValue: the record value has zero bytes.
	ErrEmptyValue = errors.New("empty value")
	// ErrTombstone: the record value is null. On an event topic that is a
	// producer bug; on a compacted reference topic the caller should have
	// handled it as a delete before decoding.
	ErrTombstone = errors.New("tombstone (null value) on an event topic")
	// ErrTruncated: the Avro body ends inside a field.
	ErrTruncated = errors.New("truncated record")
	// ErrTrailingBytes: a whole record was read and bytes are left over,
	// which means the writer used a different schema.
	ErrTrailingBytes = errors.New("trailing bytes")

	// The avro-confluent decoder's per-record failures:

	// ErrNotConfluent: the value is shorter than the 5-byte header or does
	// not start with the magic byte 0.
	ErrNotConfluent = errors.New("not Confluent wire format")
	// ErrUnknownSchemaID: the registry does not know the record's schema
	// id (Reason "unknown schema id N").
	ErrUnknownSchemaID = errors.New("unknown schema id")
	// ErrIncompatibleSchema: the record's writer schema cannot be read as
	// the pipeline's schema (a type that does not match, a field the
	// reader requires that the writer lacks, a schema that is not plain
	// Avro). Every record of that schema id fails with the same reason.
	ErrIncompatibleSchema = errors.New("writer schema cannot be read as the reader schema")
)

// Error is a record that could not be decoded. It is data, not a fault of
// the pipeline: the record goes to the dead-letter topic with Error() as its
// reason, and retrying cannot help.
type Error struct {
	// Field is the path of the offending field, e.g. "total" or
	// "items[2].unit_price"; empty when the problem is the value as a whole.
	Field string
	// Reason says what is wrong, in words fit for a dead-letter header.
	Reason string
	// Err is one of the sentinels above when one applies, else nil.
	Err error
}

func (e *Error) Error() string {
	if e.Field == "" {
		return "decode: " + e.Reason
	}
	return "decode: field " + strconv.Quote(e.Field) + ": " + e.Reason
}

// Unwrap returns the sentinel, so errors.Is(err, ErrTruncated) works.
func (e *Error) Unwrap() error { return e.Err }

// in prefixes the error's field path with the enclosing field name, as the
// error travels up out of nested records. Only failures pay for the string.
func (e *Error) in(name string) *Error {
	switch {
	case e.Field == "":
		e.Field = name
	case e.Field[0] == '[':
		e.Field = name + e.Field
	default:
		e.Field = name + "." + e.Field
	}
	return e
}

// at prefixes the path with an array index or map key.
func (e *Error) at(index string) *Error {
	if e.Field == "" || e.Field[0] == '[' {
		e.Field = "[" + index + "]" + e.Field
	} else {
		e.Field = "[" + index + "]." + e.Field
	}
	return e
}

func fail(reason string) *Error { return &Error{Reason: reason} }

func truncated() *Error { return &Error{Reason: ErrTruncated.Error(), Err: ErrTruncated} }
