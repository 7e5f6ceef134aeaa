package refdata

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/shopspring/decimal"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-etl/sluice/pkg/decode"
)

// Bad-record kinds: the bounded error_type of the Warn log and why a
// reference record was skipped.
const (
	badDecode      = "decode"       // the value is not a record of the schema
	badKey         = "bad_key"      // the key is missing or not of the topic's form
	badKeyMismatch = "key_mismatch" // the key names another entity than the value
	badValue       = "bad_value"    // decoded, but unusable (e.g. a rate <= 0)
)

// errBadRecord is wrapped by every *badRecord, for errors.Is in tests.
var errBadRecord = errors.New("bad reference record")

// badRecord says why one reference record was skipped. It is data, not a
// fault: the loader logs it, counts it and goes on.
type badRecord struct {
	kind string // one of the bad* constants
	err  error
}

func (b *badRecord) Error() string { return b.kind + ": " + b.err.Error() }
func (b *badRecord) Unwrap() []error {
	return []error{errBadRecord, b.err}
}

func bad(kind string, format string, args ...any) *badRecord {
	return &badRecord{kind: kind, err: fmt.Errorf(format, args...)}
}

// applier turns reference records into Store updates, one record at a time
// in offset order. It is used by the one goroutine that polls (Bootstrap,
// then Follow) and is not safe for concurrent use; the Store is.
type applier struct {
	store          *Store
	customersTopic string
	fxRatesTopic   string
	customers      decode.Decoder
	fxRates        decode.Decoder
}

// apply applies r to the store, or returns why it was skipped. Records of
// topics other than the two reference topics are ignored.
func (a *applier) apply(r *kgo.Record) *badRecord {
	switch r.Topic {
	case a.customersTopic:
		return a.customer(r.Key, r.Value)
	case a.fxRatesTopic:
		return a.fxRate(r.Key, r.Value)
	}
	return nil
}

// customer applies one customers record: key customer_id, a null value
// deletes. Only a null value is a tombstone (what compaction removes); an
// empty value is a bad record.
func (a *applier) customer(key, value []byte) *badRecord {
	if len(key) == 0 {
		return bad(badKey, "customer record without a key")
	}
	if value == nil {
		a.store.DeleteCustomer(string(key))
		return nil
	}
	row, err := a.customers.Decode(value)
	if err != nil {
		return &badRecord{kind: badDecode, err: err}
	}
	// The schema was checked by NewLoader, so these are strings; a failed
	// assertion leaves "" and is caught as a mismatch or stored as empty.
	id, _ := row["customer_id"].(string)
	if string(key) != id {
		return bad(badKeyMismatch, "key %q but customer_id %q", key, id)
	}
	c := Customer{}
	c.Name, _ = row["name"].(string)
	c.Country, _ = row["country"].(string)
	c.Segment, _ = row["segment"].(string)
	a.store.PutCustomer(id, c)
	return nil
}

// fxRate applies one fx-rates record: key <CURRENCY>@<effective_from
// millis>, a null value deletes that history entry.
func (a *applier) fxRate(key, value []byte) *badRecord {
	cur, ms, ok := parseRateKey(key)
	if !ok {
		return bad(badKey, "fx rate key %q is not <CURRENCY>@<effective_from millis>", key)
	}
	if value == nil {
		a.store.DeleteRate(cur, ms)
		return nil
	}
	row, err := a.fxRates.Decode(value)
	if err != nil {
		return &badRecord{kind: badDecode, err: err}
	}
	vcur, _ := row["currency"].(string)
	rate, _ := row["rate"].(decimal.Decimal)
	from, _ := row["effective_from"].(time.Time)
	if vcur != cur || from.UnixMilli() != ms {
		return bad(badKeyMismatch, "key %q but value %s@%d", key, vcur, from.UnixMilli())
	}
	// A zero or negative rate would convert every amount to a wrong but
	// plausible-looking number; no currency is worth that.
	if rate.Sign() <= 0 {
		return bad(badValue, "fx rate %s: rate %s is not positive", key, rate)
	}
	a.store.PutRate(vcur, ms, rate)
	return nil
}

// parseRateKey splits `<CURRENCY>@<millis>`. The number must be in its
// canonical form (what strconv.FormatInt writes, as the producers do), so
// that one history entry has exactly one key.
func parseRateKey(key []byte) (currency string, millis int64, ok bool) {
	at := bytes.LastIndexByte(key, '@')
	if at <= 0 {
		return "", 0, false
	}
	num := string(key[at+1:])
	ms, err := strconv.ParseInt(num, 10, 64)
	if err != nil || strconv.FormatInt(ms, 10) != num {
		return "", 0, false
	}
	return string(key[:at]), ms, true
}

// checkSchemas verifies, once at start-up, that the reference schemas have
// the fields the applier reads, with types that decode to what it asserts.
func checkSchemas(customers, fxRates *decode.Schema) error {
	type want struct {
		name  string
		ok    func(t *decode.Type) bool
		types string
	}
	isString := func(t *decode.Type) bool {
		return t.Kind == decode.KindString || t.Kind == decode.KindEnum
	}
	check := func(s *decode.Schema, what string, ws []want) error {
		for _, w := range ws {
			f, found := s.Field(w.name)
			switch {
			case !found:
				return fmt.Errorf("%s schema %s has no field %q", what, s.Name, w.name)
			case f.Type.Nullable || !w.ok(f.Type):
				return fmt.Errorf("%s schema %s: field %q is %s, want %s", what, s.Name, w.name, f.Type, w.types)
			}
		}
		return nil
	}
	if err := check(customers, "customers", []want{
		{"customer_id", isString, "string"},
		{"name", isString, "string"},
		{"country", isString, "string"},
		{"segment", isString, "string or enum"},
	}); err != nil {
		return err
	}
	return check(fxRates, "fx rates", []want{
		{"currency", isString, "string"},
		{"rate", func(t *decode.Type) bool { return t.Logical == decode.LogicalDecimal }, "decimal"},
		{"effective_from", func(t *decode.Type) bool {
			return t.Logical == decode.LogicalTimestampMillis || t.Logical == decode.LogicalTimestampMicros
		}, "timestamp-millis"},
	})
}
