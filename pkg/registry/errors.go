package registry

import (
	"errors"
	"strconv"
)

// The sentinels of the permanent errors; test with errors.Is. Any other
// error from SchemaByID means the registry could not be asked (see the
// package comment): retry later, do not blame the record.
var (
	// ErrUnknownSchema: the registry does not know the id (404, error
	// code 40403). The error is an *UnknownSchemaError carrying the id.
	ErrUnknownSchema = errors.New("unknown schema id")
	// ErrUnsupportedSchema: the id exists but holds a schema Sluice cannot
	// use (Protobuf or JSON Schema, or Avro with schema references). The
	// error is an *UnsupportedSchemaError.
	ErrUnsupportedSchema = errors.New("unsupported schema")
)

// IsPermanent says err is about the schema id itself (unknown or
// unsupported), so asking again for the same id cannot help.
func IsPermanent(err error) bool {
	return errors.Is(err, ErrUnknownSchema) || errors.Is(err, ErrUnsupportedSchema)
}

func isUnknown(err error) bool { return errors.Is(err, ErrUnknownSchema) }

// UnknownSchemaError is the registry's "schema not found" for an id.
type UnknownSchemaError struct {
	ID int32
	// Message is the registry's own words, when it gave any.
	Message string
}

func (e *UnknownSchemaError) Error() string {
	return "registry: unknown schema id " + strconv.Itoa(int(e.ID))
}

// Is makes errors.Is(err, ErrUnknownSchema) true.
func (e *UnknownSchemaError) Is(target error) bool { return target == ErrUnknownSchema }

// UnsupportedSchemaError is an id whose schema Sluice cannot decode with.
type UnsupportedSchemaError struct {
	ID     int32
	Reason string
}

func (e *UnsupportedSchemaError) Error() string {
	return "registry: schema id " + strconv.Itoa(int(e.ID)) + " is unsupported: " + e.Reason
}

// Is makes errors.Is(err, ErrUnsupportedSchema) true.
func (e *UnsupportedSchemaError) Is(target error) bool { return target == ErrUnsupportedSchema }

// FetchError is a failure to get an answer about an id: the request could
// not be made or completed, or the answer was not a usable one. It is never
// permanent; Err is the cause: an *sr.ResponseError (the registry's error
// answer: status, error code, message), a net, TLS or url error, a context
// error, or a malformed body.
type FetchError struct {
	ID  int32
	Err error
}

func (e *FetchError) Error() string {
	return "registry: fetching schema id " + strconv.Itoa(int(e.ID)) + ": " + describe(e.Err)
}

func (e *FetchError) Unwrap() error { return e.Err }

// requestError is a failed request other than a schema fetch (Ping),
// worded by describe and unwrapping to the cause.
type requestError struct {
	what string
	err  error
}

func (e *requestError) Error() string { return e.what + ": " + describe(e.err) }

func (e *requestError) Unwrap() error { return e.err }
