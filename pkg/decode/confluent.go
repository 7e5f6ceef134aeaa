package decode

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/sluice-etl/sluice/pkg/record"
	"github.com/sluice-etl/sluice/pkg/registry"
)

// SchemaFetcher is what the avro-confluent decoder needs of a schema
// registry; *registry.Client implements it. SchemaByID is called once per
// schema id the decoder meets (and again for an id the registry did not
// know, on the record after), from any worker goroutine, with the
// context of the Decode call. Its errors are classified with the sentinels
// of package registry: errors.Is(err, registry.ErrUnknownSchema) is an
// unknown id (the records are dead-lettered), errors.Is(err,
// registry.ErrUnsupportedSchema) an id that holds something other than
// plain Avro (likewise); any other error means the registry could not be
// asked, and Decode reports it as ErrUnavailable.
type SchemaFetcher interface {
	SchemaByID(ctx context.Context, id int32) (string, error)
}

// confluentHeader is the magic byte 0 and the 4-byte big-endian schema id.
const confluentHeader = 5

// confluentDecoder decodes the Confluent wire format: magic byte 0, a
// 4-byte big-endian schema id, then an Avro body written with the schema
// registered under that id (the writer schema). The pipeline's .avsc is the
// reader schema: every Row has its fields (see resolve.go).
//
// Per schema id it builds, once, the plain Avro decoder of the writer
// schema (pre-scan included, see avroscan.go) and the resolver into the
// reader schema; an id whose schema cannot be read as the reader schema
// is remembered as such, so its records fail fast with the same reason.
type confluentDecoder struct {
	reader   *Schema
	defaults readerDefaults
	reg      SchemaFetcher

	// ids maps schema ids to their decoders. It is replaced, never
	// changed, so the hot path is one atomic load and a map lookup with no
	// lock; mu serialises the rare writers.
	ids atomic.Pointer[map[int32]*writerDecoder]
	mu  sync.Mutex
}

// writerDecoder reads the records of one schema id.
type writerDecoder struct {
	avro *avroDecoder
	res  *resolver // nil: the writer's Rows are already the reader's
	// fail, when set, is why this id's records cannot be read; each record
	// gets its own copy.
	fail *Error
}

// NewConfluent returns the avro-confluent decoder that reads every record
// as reader, fetching writer schemas from reg. It does not contact the
// registry. It is called once per pipeline at start-up; errors are
// configuration errors (no registry, or a reader schema whose defaults do
// not fit their fields).
//
// The Decoder's Decode may block on the registry the first time it meets a
// schema id (bounded by the fetcher's own timeout); it also implements
// ContextDecoder, to bound that by the caller's context instead.
func NewConfluent(reader *Schema, reg SchemaFetcher) (Decoder, error) {
	if reader == nil {
		return nil, errors.New("decode: avro-confluent: no reader schema")
	}
	if isNil(reg) {
		return nil, fmt.Errorf("decode: format %q: %w (set schema_registry.url)", FormatAvroConfluent, ErrNoRegistry)
	}
	defs, err := newReaderDefaults(reader)
	if err != nil {
		return nil, fmt.Errorf("decode: schema %s: %w", reader.Name, err)
	}
	return &confluentDecoder{reader: reader, defaults: defs, reg: reg}, nil
}

// isNil also catches a typed nil pointer in the interface (a nil
// *registry.Client), which would only fail on the first record.
func isNil(reg SchemaFetcher) bool {
	if reg == nil {
		return true
	}
	v := reflect.ValueOf(reg)
	switch v.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Func, reflect.Interface, reflect.Slice, reflect.Chan:
		return v.IsNil()
	}
	return false
}

// Decode is DecodeContext without a deadline of its own: a registry
// request is bounded by the fetcher's timeout. Safe for concurrent use.
func (d *confluentDecoder) Decode(value []byte) (record.Row, error) {
	return d.DecodeContext(context.Background(), value)
}

// DecodeContext decodes one record; ctx bounds a registry request, if the
// record's schema id needs one. Errors are *Error, except when the
// registry cannot be asked: then the error wraps ErrUnavailable and says
// nothing about the record (see Decoder). Safe for concurrent use.
func (d *confluentDecoder) DecodeContext(ctx context.Context, value []byte) (record.Row, error) {
	id, e := confluentID(value)
	if e != nil {
		return nil, e
	}
	w, err := d.writer(ctx, id)
	if err != nil {
		return nil, err
	}
	if w.fail != nil {
		e := *w.fail
		return nil, &e
	}
	row, e := w.avro.decodeBody(value[confluentHeader:])
	if e != nil {
		return nil, e
	}
	if w.res != nil {
		if e := w.res.record(row); e != nil {
			return nil, e
		}
	}
	return row, nil
}

// confluentID checks that value is present and framed (magic byte 0)
// and returns its schema id; the body is value[confluentHeader:].
func confluentID(value []byte) (int32, *Error) {
	if e := checkPresent(value); e != nil {
		return 0, e
	}
	if len(value) < confluentHeader {
		return 0, &Error{Err: ErrNotConfluent, Reason: ErrNotConfluent.Error() + ": " + strconv.Itoa(len(value)) +
			" bytes, want at least 5 (magic byte 0 and a 4-byte schema id)"}
	}
	if value[0] != 0 {
		return 0, &Error{Err: ErrNotConfluent, Reason: fmt.Sprintf("%s: magic byte 0x%02x, want 0x00", ErrNotConfluent, value[0])}
	}
	return int32(binary.BigEndian.Uint32(value[1:confluentHeader])), nil
}

// writer returns the decoder of schema id, building it on first use. The
// error is an *Error for an unknown id, or wraps ErrUnavailable.
func (d *confluentDecoder) writer(ctx context.Context, id int32) (*writerDecoder, error) {
	if m := d.ids.Load(); m != nil {
		if w := (*m)[id]; w != nil {
			return w, nil
		}
	}
	text, err := d.reg.SchemaByID(ctx, id)
	var w *writerDecoder
	switch {
	case err == nil:
		w = d.build(id, text)
	case errors.Is(err, registry.ErrUnknownSchema):
		// Not remembered here: the registry caches it briefly, so a schema
		// registered late is found.
		return nil, &Error{Reason: "unknown schema id " + strconv.Itoa(int(id)), Err: ErrUnknownSchemaID}
	case errors.Is(err, registry.ErrUnsupportedSchema):
		reason := err.Error()
		var ue *registry.UnsupportedSchemaError
		if errors.As(err, &ue) {
			reason = ue.Reason
		}
		w = &writerDecoder{fail: &Error{Err: ErrIncompatibleSchema,
			Reason: "schema id " + strconv.Itoa(int(id)) + " is unsupported: " + reason}}
	default:
		return nil, fmt.Errorf("decode: schema id %d: %w: %w", id, ErrUnavailable, err)
	}
	return d.store(id, w), nil
}

// build compiles the decoder of one writer schema. Whatever goes wrong is
// about the id, not the pipeline: it becomes the id's fail reason.
func (d *confluentDecoder) build(id int32, text string) *writerDecoder {
	prefix := "schema id " + strconv.Itoa(int(id)) + ": "
	ws, err := ParseSchema([]byte(text))
	if err != nil {
		return &writerDecoder{fail: &Error{Reason: prefix + "writer schema: " + err.Error(), Err: ErrIncompatibleSchema}}
	}
	ad, err := newAvro(ws)
	if err != nil {
		return &writerDecoder{fail: &Error{Reason: prefix + "writer schema: " + err.Error(), Err: ErrIncompatibleSchema}}
	}
	res, e := d.defaults.resolver(ws.root, d.reader.root)
	if e != nil {
		e.Reason = prefix + e.Reason
		return &writerDecoder{fail: e}
	}
	w := &writerDecoder{avro: ad}
	if res.work {
		w.res = res
	}
	return w
}

// store publishes w for id, unless another goroutine got there first (then
// that one is kept, so every record of an id uses one decoder).
func (d *confluentDecoder) store(id int32, w *writerDecoder) *writerDecoder {
	return publish(&d.mu, &d.ids, id, w)
}

// publish adds v for id to the copy-on-write map in p (readers Load it
// without a lock; writers hold mu), unless the map has one already: that
// one is returned, so every record of an id sees the same value.
func publish[V any](mu *sync.Mutex, p *atomic.Pointer[map[int32]*V], id int32, v *V) *V {
	mu.Lock()
	defer mu.Unlock()
	old := p.Load()
	n := 1
	if old != nil {
		if v0 := (*old)[id]; v0 != nil {
			return v0
		}
		n += len(*old)
	}
	m := make(map[int32]*V, n)
	if old != nil {
		for k, x := range *old {
			m[k] = x
		}
	}
	m[id] = v
	p.Store(&m)
	return v
}
