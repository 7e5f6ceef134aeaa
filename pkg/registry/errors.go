package registry

import (
	"errors"
	"net/http"
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

var errNotHTTP = errors.New("not an http:// or https:// URL with a host")

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
// permanent; Err is the cause (a *StatusError, a net or url error, a
// context error).
type FetchError struct {
	ID  int32
	Err error
}

func (e *FetchError) Error() string {
	return "registry: fetching schema id " + strconv.Itoa(int(e.ID)) + ": " + e.Err.Error()
}

func (e *FetchError) Unwrap() error { return e.Err }

// StatusError is an HTTP answer other than 200 that is not "unknown id".
type StatusError struct {
	StatusCode int
	// ErrorCode and Message are from the registry's JSON error body, when
	// it sent one ({"error_code": 50001, "message": "..."}).
	ErrorCode int
	Message   string
}

func (e *StatusError) Error() string {
	s := "HTTP " + strconv.Itoa(e.StatusCode) + " " + http.StatusText(e.StatusCode)
	if e.ErrorCode != 0 {
		s += ", error code " + strconv.Itoa(e.ErrorCode)
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}
