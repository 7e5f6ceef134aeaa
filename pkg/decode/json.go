package decode

import (
	"errors"
	"math"
	"strconv"
	"time"

	"github.com/shopspring/decimal"

	"github.com/sluice-etl/sluice/pkg/record"
)

// jsonDecoder decodes one JSON object per record, with the field names of
// the schema, and coerces each value to the type the schema declares:
//
//   - int, long: JSON numbers with an integral value in range ("3", "3.0", "3e2");
//   - float, double: JSON numbers;
//   - decimal: a JSON string ("12.34") or number (12.34), parsed exactly; it
//     may have more fractional digits than the scale only if they are zeros,
//     and must fit the precision;
//   - timestamp-millis/micros: an integer count since the epoch, or an RFC 3339
//     string without digits finer than the type holds;
//   - date: an integer count of days, or "2006-01-02";
//   - enum: a string that is one of the symbols;
//   - bytes, fixed: a string whose characters are the bytes (U+0000..U+00FF),
//     as in Avro's own JSON encoding;
//   - nullable fields may be absent or null; absent non-nullable fields are
//     errors (defaults are not applied); keys not in the schema are ignored.
//
// Unions are written as the plain value, not Avro-JSON's {"string": "x"}.
//
// The JSON is read in one pass by a small parser (jsonparse.go) that walks
// the schema's plan: each value is parsed straight into its Row type, keys
// not in the schema are skipped (but checked to be valid JSON). What it
// accepts and returns is what encoding/json into map[string]any (with
// UseNumber) followed by coercion would: invalid UTF-8 and lone surrogates
// in strings become U+FFFD, a repeated key's last value wins, nesting is
// limited to 10000 levels, only whitespace may follow the object, and a
// syntax error anywhere is reported before any type error.
type jsonDecoder struct {
	plan *plan
}

// Decode is safe for concurrent use; the plan is read-only.
func (d *jsonDecoder) Decode(value []byte) (record.Row, error) {
	if err := checkPresent(value); err != nil {
		return nil, err
	}
	s := jsonParser{buf: value}
	s.ws()
	if s.pos >= len(value) || value[s.pos] != '{' {
		return nil, fail("JSON value is not an object")
	}
	m, err := s.record(d.plan)
	if s.bad != nil {
		return nil, s.bad
	}
	s.ws()
	if s.pos != len(value) {
		return nil, fail("trailing data after the JSON object")
	}
	if err != nil {
		return nil, err
	}
	return record.Row(m), nil
}

func (p *plan) wrongType(kind string, as string) *Error {
	want := p.t.baseString()
	if as != "" {
		want += " " + as
	}
	return fail("want " + want + ", got JSON " + kind)
}

func (p *plan) fixedSizeError(n int) *Error {
	return fail("fixed " + shortName(p.t.Name) + " needs " + strconv.Itoa(p.t.Size) +
		" bytes, got " + strconv.Itoa(n))
}

func (p *plan) notSymbol(s string) *Error {
	return fail(strconv.Quote(s) + " is not a symbol of " + shortName(p.t.Name) + " " + symbolList(p.t.Symbols))
}

// intFromText converts a JSON number to an int (int32) or long (int64).
func (p *plan) intFromText(s string) (any, *Error) {
	bits := 64
	if p.t.Kind == KindInt {
		bits = 32
	}
	i, err := integerFromJSON(s, bits)
	if err != nil {
		return nil, err
	}
	if bits == 32 {
		return int32(i), nil
	}
	return i, nil
}

// floatFromText converts a JSON number to a float (float32) or double.
func (p *plan) floatFromText(s string) (any, *Error) {
	bits := 64
	if p.t.Kind == KindFloat {
		bits = 32
	}
	f, err := strconv.ParseFloat(s, bits)
	if err != nil {
		return nil, fail("number " + s + " is out of range for " + p.t.Kind.String())
	}
	if bits == 32 {
		return float32(f), nil
	}
	return f, nil
}

// timeBits is the size of the integer count a date or timestamp is given as.
func (p *plan) timeBits() int {
	if p.op == opDate {
		return 32
	}
	return 64
}

// timeFromCount converts an integer count of the type's unit since the
// epoch (in range for timeBits).
func (p *plan) timeFromCount(n int64) time.Time {
	switch p.op {
	case opTimestampMillis:
		return time.UnixMilli(n).UTC()
	case opTimestampMicros:
		return time.UnixMicro(n).UTC()
	default:
		return dateFromDays(n)
	}
}

// timeFromString parses RFC 3339 for timestamps, yyyy-mm-dd for dates. A
// value finer than the unit is an error: a timestamp-millis cannot hold
// microseconds, and truncating would change the data.
func (p *plan) timeFromString(x string) (any, *Error) {
	if p.op == opDate {
		t, err := time.Parse(time.DateOnly, x)
		if err != nil {
			return nil, fail(strconv.Quote(x) + " is not a date (yyyy-mm-dd)")
		}
		return dateFromDays(t.Unix() / 86400), nil
	}
	t, err := time.Parse(time.RFC3339Nano, x)
	if err != nil {
		return nil, fail(strconv.Quote(x) + " is not an RFC 3339 timestamp")
	}
	if p.op == opTimestampMillis {
		if t.Nanosecond()%int(time.Millisecond) != 0 {
			return nil, fail(strconv.Quote(x) + " has digits finer than milliseconds")
		}
		return time.UnixMilli(t.UnixMilli()).UTC(), nil
	}
	if t.Nanosecond()%int(time.Microsecond) != 0 {
		return nil, fail(strconv.Quote(x) + " has digits finer than microseconds")
	}
	return time.UnixMicro(t.UnixMicro()).UTC(), nil
}

// timeWrongType is the error for a date or timestamp given as neither a
// number nor a string.
func (p *plan) timeWrongType(kind string) *Error {
	switch p.op {
	case opTimestampMicros:
		return p.wrongType(kind, "as integer microseconds or an RFC 3339 string")
	case opDate:
		return p.wrongType(kind, "as integer days or a yyyy-mm-dd string")
	}
	return p.wrongType(kind, "as integer milliseconds or an RFC 3339 string")
}

// integerFromJSON parses a JSON number that must be an integer of the given
// size. "3.0" and "3e2" are integers; "3.5" is not.
func integerFromJSON(s string, bits int) (int64, *Error) {
	n, err := strconv.ParseInt(s, 10, bits)
	if err == nil {
		return n, nil
	}
	if errors.Is(err, strconv.ErrRange) {
		return 0, fail("number " + s + " is out of range for a " + strconv.Itoa(bits) + "-bit integer")
	}
	// Not plain digits: a fraction or an exponent.
	if !isDecimalSyntax(s) {
		return 0, fail(strconv.Quote(s) + " is not a number")
	}
	d, derr := decimal.NewFromString(s)
	if derr != nil {
		return 0, fail(strconv.Quote(s) + " is not a number")
	}
	u, misfit := unscaledAt(d, 0, 19)
	if misfit == fitFraction {
		return 0, fail("number " + s + " is not an integer")
	}
	if misfit != fitOK || !u.IsInt64() || bits == 32 && (u.Int64() < math.MinInt32 || u.Int64() > math.MaxInt32) {
		return 0, fail("number " + s + " is out of range for a " + strconv.Itoa(bits) + "-bit integer")
	}
	return u.Int64(), nil
}

// bytesFromJSON maps each character to one byte, as Avro's JSON encoding
// does for bytes and fixed.
func bytesFromJSON(s string) ([]byte, *Error) {
	b := make([]byte, 0, len(s))
	for _, r := range s {
		if r > 0xff {
			return nil, fail("bytes must be written as characters U+0000..U+00FF")
		}
		b = append(b, byte(r))
	}
	return b, nil
}

func symbolList(symbols []string) string {
	var b []byte
	b = append(b, '{')
	for i, s := range symbols {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = append(b, s...)
	}
	return string(append(b, '}'))
}
