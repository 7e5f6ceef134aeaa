package decode

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
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
type jsonDecoder struct {
	plan *plan
}

// Decode is safe for concurrent use; the plan is read-only.
func (d *jsonDecoder) Decode(value []byte) (record.Row, error) {
	if err := checkPresent(value); err != nil {
		return nil, err
	}
	trimmed := bytes.TrimLeft(value, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, fail("JSON value is not an object")
	}
	dec := json.NewDecoder(bytes.NewReader(value))
	dec.UseNumber() // numbers stay text, so decimals and longs are exact
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, fail("invalid JSON: " + err.Error())
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fail("trailing data after the JSON object")
	}
	if e := d.plan.recordFromJSON(m); e != nil {
		return nil, e
	}
	return record.Row(m), nil
}

// recordFromJSON coerces a decoded JSON object in place: every schema field
// is set (absent nullable ones to nil), unknown keys are deleted.
func (p *plan) recordFromJSON(m map[string]any) *Error {
	for i := range p.fields {
		f := &p.fields[i]
		v, ok := m[f.name]
		if !ok {
			if f.plan.nullable {
				m[f.name] = nil
				continue
			}
			return fail("missing required field").in(f.name)
		}
		v, err := f.plan.fromJSON(v)
		if err != nil {
			return err.in(f.name)
		}
		m[f.name] = v
	}
	if len(m) > len(p.fields) {
		for k := range m {
			if _, ok := p.fieldIndex[k]; !ok {
				delete(m, k)
			}
		}
	}
	return nil
}

// fromJSON turns one encoding/json value (decoded with UseNumber) into its
// Row type.
func (p *plan) fromJSON(v any) (any, *Error) {
	if v == nil {
		if p.nullable || p.t.Kind == KindNull {
			return nil, nil
		}
		return nil, fail("null is not allowed, want " + p.t.String())
	}
	switch p.op {
	case opDecimal:
		var s string
		switch x := v.(type) {
		case string:
			s = x
		case json.Number:
			s = string(x)
		default:
			return nil, p.wrongType(v, "as a string or number")
		}
		d, err := p.decimalFromText(s)
		if err != nil {
			return nil, err
		}
		return d, nil
	case opTimestampMillis, opTimestampMicros, opDate:
		return p.timeFromJSON(v)
	case opBytes:
		s, ok := v.(string)
		if !ok {
			return nil, p.wrongType(v, "as a string")
		}
		b, err := bytesFromJSON(s)
		if err != nil {
			return nil, err
		}
		if p.t.Kind == KindFixed && len(b) != p.t.Size {
			return nil, fail("fixed " + shortName(p.t.Name) + " needs " + strconv.Itoa(p.t.Size) +
				" bytes, got " + strconv.Itoa(len(b)))
		}
		return b, nil
	case opArray:
		s, ok := v.([]any)
		if !ok {
			return nil, p.wrongType(v, "")
		}
		for i, x := range s {
			y, err := p.elem.fromJSON(x)
			if err != nil {
				return nil, err.at(strconv.Itoa(i))
			}
			s[i] = y
		}
		return s, nil
	case opMap:
		m, ok := v.(map[string]any)
		if !ok {
			return nil, p.wrongType(v, "as an object")
		}
		for k, x := range m {
			y, err := p.elem.fromJSON(x)
			if err != nil {
				return nil, err.at(k)
			}
			m[k] = y
		}
		return m, nil
	case opRecord:
		m, ok := v.(map[string]any)
		if !ok {
			return nil, p.wrongType(v, "as an object")
		}
		if err := p.recordFromJSON(m); err != nil {
			return nil, err
		}
		return m, nil
	}
	// opKeep: primitives, enums and uuids.
	switch p.t.Kind {
	case KindNull:
		return nil, p.wrongType(v, "")
	case KindBoolean:
		if b, ok := v.(bool); ok {
			return b, nil
		}
	case KindString:
		if s, ok := v.(string); ok {
			return s, nil
		}
	case KindEnum:
		s, ok := v.(string)
		if !ok {
			return nil, p.wrongType(v, "as a string")
		}
		for _, sym := range p.t.Symbols {
			if s == sym {
				return sym, nil
			}
		}
		return nil, fail(strconv.Quote(s) + " is not a symbol of " + shortName(p.t.Name) + " " + symbolList(p.t.Symbols))
	case KindInt, KindLong:
		n, ok := v.(json.Number)
		if !ok {
			return nil, p.wrongType(v, "as a number")
		}
		bits := 64
		if p.t.Kind == KindInt {
			bits = 32
		}
		i, err := integerFromJSON(string(n), bits)
		if err != nil {
			return nil, err
		}
		if bits == 32 {
			return int32(i), nil
		}
		return i, nil
	case KindFloat, KindDouble:
		n, ok := v.(json.Number)
		if !ok {
			return nil, p.wrongType(v, "as a number")
		}
		bits := 64
		if p.t.Kind == KindFloat {
			bits = 32
		}
		f, err := strconv.ParseFloat(string(n), bits)
		if err != nil {
			return nil, fail("number " + string(n) + " is out of range for " + p.t.Kind.String())
		}
		if bits == 32 {
			return float32(f), nil
		}
		return f, nil
	}
	return nil, p.wrongType(v, "")
}

func (p *plan) wrongType(v any, as string) *Error {
	want := p.t.baseString()
	if as != "" {
		want += " " + as
	}
	return fail("want " + want + ", got JSON " + jsonKind(v))
}

// timeFromJSON accepts an integer count of the type's unit since the epoch
// or a string (RFC 3339 for timestamps, yyyy-mm-dd for dates). A value finer
// than the unit is an error: a timestamp-millis cannot hold microseconds,
// and truncating would change the data.
func (p *plan) timeFromJSON(v any) (any, *Error) {
	switch x := v.(type) {
	case json.Number:
		bits := 64
		if p.op == opDate {
			bits = 32
		}
		n, err := integerFromJSON(string(x), bits)
		if err != nil {
			return nil, err
		}
		switch p.op {
		case opTimestampMillis:
			return time.UnixMilli(n).UTC(), nil
		case opTimestampMicros:
			return time.UnixMicro(n).UTC(), nil
		default:
			return dateFromDays(n), nil
		}
	case string:
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
	unit := "milliseconds"
	switch p.op {
	case opTimestampMicros:
		unit = "microseconds"
	case opDate:
		return nil, p.wrongType(v, "as integer days or a yyyy-mm-dd string")
	}
	return nil, p.wrongType(v, "as integer "+unit+" or an RFC 3339 string")
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
