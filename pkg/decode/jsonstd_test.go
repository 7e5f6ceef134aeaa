package decode

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/sluice-etl/sluice/pkg/record"
)

// decodeJSONStd is the JSON decoder as it was before the single-pass parser
// (json.go, jsonparse.go): encoding/json into map[string]any with
// UseNumber, then a coercion pass over the generic map. It is kept as the
// reference that FuzzJSONDifferential compares the new decoder with.
func (d *jsonDecoder) decodeJSONStd(value []byte) (record.Row, error) {
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
			return nil, p.wrongType(jsonKind(v), "as a string or number")
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
			return nil, p.wrongType(jsonKind(v), "as a string")
		}
		b, err := bytesFromJSON(s)
		if err != nil {
			return nil, err
		}
		if p.t.Kind == KindFixed && len(b) != p.t.Size {
			return nil, p.fixedSizeError(len(b))
		}
		return b, nil
	case opArray:
		s, ok := v.([]any)
		if !ok {
			return nil, p.wrongType(jsonKind(v), "")
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
			return nil, p.wrongType(jsonKind(v), "as an object")
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
			return nil, p.wrongType(jsonKind(v), "as an object")
		}
		if err := p.recordFromJSON(m); err != nil {
			return nil, err
		}
		return m, nil
	}
	// opKeep: primitives, enums and uuids.
	switch p.t.Kind {
	case KindNull:
		return nil, p.wrongType(jsonKind(v), "")
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
			return nil, p.wrongType(jsonKind(v), "as a string")
		}
		for _, sym := range p.t.Symbols {
			if s == sym {
				return sym, nil
			}
		}
		return nil, p.notSymbol(s)
	case KindInt, KindLong:
		n, ok := v.(json.Number)
		if !ok {
			return nil, p.wrongType(jsonKind(v), "as a number")
		}
		return p.intFromText(string(n))
	case KindFloat, KindDouble:
		n, ok := v.(json.Number)
		if !ok {
			return nil, p.wrongType(jsonKind(v), "as a number")
		}
		return p.floatFromText(string(n))
	}
	return nil, p.wrongType(jsonKind(v), "")
}

// timeFromJSON accepts an integer count of the type's unit since the epoch
// or a string (RFC 3339 for timestamps, yyyy-mm-dd for dates).
func (p *plan) timeFromJSON(v any) (any, *Error) {
	switch x := v.(type) {
	case json.Number:
		n, err := integerFromJSON(string(x), p.timeBits())
		if err != nil {
			return nil, err
		}
		return p.timeFromCount(n), nil
	case string:
		return p.timeFromString(x)
	}
	return nil, p.timeWrongType(jsonKind(v))
}

// FuzzJSONDifferential checks the single-pass decoder against the
// encoding/json one it replaced, on the order schema and on the
// kitchen-sink schema (every kind): for every input both succeed with
// reflect.DeepEqual rows, or both fail the same way. Type errors must be
// identical, except under a map, where the old decoder picked one of
// several bad values at random; syntax errors need only both be syntax
// errors.
func FuzzJSONDifferential(f *testing.F) {
	for _, seed := range jsonDiffSeeds {
		f.Add([]byte(seed))
	}
	f.Add([]byte(jsonOrder))
	for _, kv := range orderFields {
		f.Add(jsonWith(kv[0], ""))
	}
	f.Add(jsonWith("items", `[{"sku": "a", "quantity": 3.0e0, "unit_price": 0.10, "x": [1]}]`))
	f.Add(jsonWith("total", `"1\u0032.50"`))
	// (Documents at the nesting limit are compared in
	// TestJSONDifferentialRandom: as seeds they are slow to mutate.)
	order, err := NewFromSchema(FormatJSON, mustSchema(f, "order"))
	if err != nil {
		f.Fatal(err)
	}
	ks, err := ParseSchema([]byte(kitchenSink))
	if err != nil {
		f.Fatal(err)
	}
	sink, err := NewFromSchema(FormatJSON, ks)
	if err != nil {
		f.Fatal(err)
	}
	decoders := []*jsonDecoder{order.(*jsonDecoder), sink.(*jsonDecoder)}
	f.Fuzz(func(t *testing.T, value []byte) {
		for _, d := range decoders {
			compareJSONDecoders(t, d, value)
		}
	})
}

func compareJSONDecoders(t *testing.T, d *jsonDecoder, value []byte) {
	t.Helper()
	want, werr := d.decodeJSONStd(value)
	got, gerr := d.Decode(value)
	if (werr == nil) != (gerr == nil) {
		t.Fatalf("%s: old: %v, new: %v\ninput %q", d.plan.t.Name, werr, gerr, value)
	}
	if werr == nil {
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: rows differ\nold %#v\nnew %#v\ninput %q", d.plan.t.Name, want, got, value)
		}
		return
	}
	if got != nil {
		t.Fatalf("row %v returned with error %v", got, gerr)
	}
	we, ok1 := werr.(*Error)
	ge, ok2 := gerr.(*Error)
	if !ok1 || !ok2 {
		t.Fatalf("errors %T, %T are not *Error", werr, gerr)
	}
	syntax := func(e *Error) bool { return strings.HasPrefix(e.Reason, "invalid JSON: ") }
	switch {
	case syntax(we) || syntax(ge):
		if !syntax(we) || !syntax(ge) {
			t.Fatalf("%s: old: %v, new: %v\ninput %q", d.plan.t.Name, werr, gerr, value)
		}
	case strings.HasPrefix(we.Field, "attrs["):
		if !strings.HasPrefix(ge.Field, "attrs[") {
			t.Fatalf("%s: old: %v, new: %v\ninput %q", d.plan.t.Name, werr, gerr, value)
		}
	default:
		if we.Error() != ge.Error() || we.Err != ge.Err {
			t.Fatalf("%s: old: %v, new: %v\ninput %q", d.plan.t.Name, werr, gerr, value)
		}
	}
}

var jsonDiffSeeds = []string{
	`{"b": true, "f": 1.5, "d": -2.25, "raw": "\u0000\u0001\u00ff", "fx": "abcd",
	  "money": "-123456789012345678901234.5678", "big": -99999999999999999999999999999999999999,
	  "day": "1969-12-30", "us": "2026-11-18T11:06:40.123456Z",
	  "id": "6ba7b810-9dad-11d1-80b4-00c04fd430c8", "tod": 3723004,
	  "attrs": {"x": "-1234.5", "y": null}, "tags": ["a", "b"],
	  "sub": {"n": -7, "when": 5}, "again": "wxyz", "subs": [{"n": 1}]}`,
	`{"b": false, "f": 1e39, "d": 1e400, "raw": "", "fx": "\u00e9\u00e9\u00e9\u00e9", "money": 0, "big": 0, "day": 0, "us": 0,
	  "id": "", "tod": 0, "attrs": {"x": 1, "x": null, "y": "1.25"}, "tags": [], "sub": null, "again": null, "subs": []}`,
	`{"b": true, "f": 1, "d": 1, "raw": "\ud800", "fx": "abcd", "money": 1e-4, "big": 1E+37, "day": -1, "us": -1,
	  "id": "\ud83d\ude00", "tod": -2147483648, "attrs": {}, "tags": ["\ud83d", "\udc00\ud800x"], "sub": {"n": 9223372036854775807},
	  "again": "wxyz", "subs": [{"n": -9223372036854775808, "when": "1970-01-01T00:00:00Z"}], "zz": [[[{}]]]}`,
	"{\"order_id\": \"o-\xff\xfe\", \"customer_id\": \"\xe2\x82\", \"created_at\": 1, \"currency\": \"\xed\xa0\x80\",\n" +
		"\"total\": 1, \"status\": \"CREATED\", \"channel\": \"WEB\", \"shipping_country\": \"\",\n" +
		"\"items\": [], \"items\": [{\"sku\": \"\\\"\\\\\\/\\b\\f\\n\\r\\t\", \"quantity\": 0, \"unit_price\": \"0\"}]}",
	`{"order_id": 1, "order_id": "a", "customer_id": "c", "created_at": "2026-11-18T11:06:40.123Z", "currency": "",
	  "total": "1.50", "status": "CREATED", "channel": "STORE", "shipping_country": "", "items": [], "coupon": null, "x": {"y": [1, "2", true, false, null, -0.5e-3]}}`,
	`{"order_id": "a", "customer_id": "c", "created_at": 1, "currency": "", "total": "1.5", "status": "X", "channel": "Y",
	  "shipping_country": "", "items": [{"sku": 1}, {"quantity": "x"}]}`,
	`{"a": [1, 2,]}`, `{"a": 01}`, `{"a": "\x"}`, `{"a": "\u12"}`, `{"a" 1}`, `{"a": 1,}`, `{,}`, `{"a": tru}`,
	"{\"a\": \"\t\"}", `{} x`, ` {}  `, `{}{}`, `[]`, `"x"`, ` `, `{"a": -}`, `{"a": 1.}`, `{"a": 1e}`,
	`{"total": "12.345", "created_at": "x"}`, `{"items": [1, {"sku": 2}], "coupon": 3}`,
}
