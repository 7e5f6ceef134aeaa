package decode

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/linkedin/goavro/v2"

	"github.com/sluice-etl/sluice/pkg/record"
)

// avroDecoder decodes plain Avro binary written with the pipeline's schema.
//
// goavro is given the schema with its logicalType attributes removed, so it
// returns the wire values (int64 millis, the decimal's unscaled bytes) and
// the plan does every logical conversion, the same code as the JSON path.
// goavro's own decimal decoding builds a *big.Rat through several big.Int
// allocations per value (and its encoder truncates silently); skipping it
// is both faster and trivially exact: the bytes are the unscaled integer.
type avroDecoder struct {
	codec *goavro.Codec
	plan  *plan
	tree  any // the schema goavro was given, as parsed JSON
}

func newAvro(s *Schema) (*avroDecoder, error) {
	tree := stripLogical(s.tree)
	text, err := json.Marshal(tree)
	if err != nil {
		return nil, fmt.Errorf("decode: schema %s: %w", s.Name, err)
	}
	codec, err := goavro.NewCodec(string(text))
	if err != nil {
		return nil, fmt.Errorf("decode: schema %s: goavro: %w", s.Name, err)
	}
	return &avroDecoder{codec: codec, plan: newPlan(s.root), tree: tree}, nil
}

// topFields returns the record schema goavro was given and its fields,
// nil when it is not a record of n fields.
func (d *avroDecoder) topFields(n int) (map[string]any, []any) {
	root, ok := d.tree.(map[string]any)
	if !ok {
		return nil, nil
	}
	fields, ok := root["fields"].([]any)
	if !ok || len(fields) != n {
		return nil, nil
	}
	return root, fields
}

// without returns goavro's codec for the record schema minus the top-level
// fields drop marks (by index), or nil when goavro refuses it (a named
// type defined in a dropped field and used by a kept one).
func (d *avroDecoder) without(drop []bool) *goavro.Codec {
	root, fields := d.topFields(len(drop))
	if fields == nil {
		return nil
	}
	out := make(map[string]any, len(root))
	for k, v := range root {
		out[k] = v
	}
	kept := make([]any, 0, len(fields))
	for i, f := range fields {
		if !drop[i] {
			kept = append(kept, f)
		}
	}
	out["fields"] = kept
	text, err := json.Marshal(out)
	if err != nil {
		return nil
	}
	codec, err := goavro.NewCodec(string(text))
	if err != nil {
		return nil
	}
	return codec
}

// fieldCodecs returns goavro's codec of each top-level field's type alone
// (nil for the fields drop marks), or nil when a kept field's type is not
// self-contained (selfContained) or goavro refuses one. A field's bytes
// are then decoded by its own codec, and no record map is built.
func (d *avroDecoder) fieldCodecs(drop []bool) []*goavro.Codec {
	_, fields := d.topFields(len(drop))
	if fields == nil {
		return nil
	}
	out := make([]*goavro.Codec, len(fields))
	for i, f := range fields {
		if drop[i] {
			continue
		}
		fm, ok := f.(map[string]any)
		if !ok || !selfContained(fm["type"]) {
			return nil
		}
		text, err := json.Marshal(fm["type"])
		if err != nil {
			return nil
		}
		if out[i], err = goavro.NewCodec(string(text)); err != nil {
			return nil
		}
	}
	return out
}

// selfContained says whether the schema t (parsed JSON) can be compiled
// alone with the same values: primitives, enums, fixed, and unions, arrays
// and maps of those. A record (its native form is a map, what the field
// codecs avoid) or a name (a type defined elsewhere) is not.
func selfContained(t any) bool {
	switch x := t.(type) {
	case string:
		switch x {
		case "null", "boolean", "int", "long", "float", "double", "bytes", "string":
			return true
		}
		return false
	case []any:
		for _, m := range x {
			if !selfContained(m) {
				return false
			}
		}
		return true
	case map[string]any:
		switch y := x["type"].(type) {
		case string:
			switch y {
			case "enum", "fixed":
				return true
			case "array":
				return selfContained(x["items"])
			case "map":
				return selfContained(x["values"])
			case "record", "error":
				return false
			}
			return selfContained(y)
		default:
			return selfContained(y)
		}
	}
	return false
}

// Decode is safe for concurrent use: the codec and the plan are read-only,
// and goavro builds a fresh map per record, which becomes the Row.
func (d *avroDecoder) Decode(value []byte) (record.Row, error) {
	if err := checkPresent(value); err != nil {
		return nil, err
	}
	row, err := d.decodeBody(value)
	if err != nil {
		return nil, err
	}
	return row, nil
}

// decodeBody decodes one Avro body that is known to be present: the whole
// value for plain Avro, the bytes after the 5-byte header for Confluent
// (where an empty body is a valid record of no fields).
func (d *avroDecoder) decodeBody(value []byte) (record.Row, *Error) {
	m, e := d.native(value)
	if e != nil {
		return nil, e
	}
	if e := d.plan.recordFromAvro(m); e != nil {
		return nil, e
	}
	return record.Row(m), nil
}

// native checks one Avro body (present, as in decodeBody) with the scan
// and has goavro decode it: its record map, not yet normalised (the wire
// values of the stripped schema). Both paths start here: the row path
// normalises the map into the Row (recordFromAvro), the columnar path
// (ColumnAvro) puts its values into a Block.
func (d *avroDecoder) native(value []byte) (map[string]any, *Error) {
	end, e := d.plan.scan(value, 0, nil)
	if e != nil {
		return nil, e
	}
	if end != len(value) {
		return nil, trailing(len(value) - end)
	}
	native, rest, err := d.codec.NativeFromBinary(value)
	if err != nil {
		// The scan accepted what goavro refused: the two disagree about the
		// format, which is worth a clear message rather than a guess.
		return nil, fail("avro: " + err.Error())
	}
	if len(rest) != 0 {
		return nil, trailing(len(rest))
	}
	m, ok := native.(map[string]any)
	if !ok {
		return nil, fail(fmt.Sprintf("avro: goavro returned %T for a record", native))
	}
	return m, nil
}

func checkPresent(value []byte) *Error {
	if value == nil {
		return &Error{Reason: ErrTombstone.Error(), Err: ErrTombstone}
	}
	if len(value) == 0 {
		return &Error{Reason: ErrEmptyValue.Error(), Err: ErrEmptyValue}
	}
	return nil
}

func trailing(n int) *Error {
	return &Error{Reason: strconv.Itoa(n) + " trailing bytes", Err: ErrTrailingBytes}
}

// recordFromAvro normalises goavro's record map in place; fields whose
// values are already Row types are not touched.
func (p *plan) recordFromAvro(m map[string]any) *Error {
	for i := range p.fields {
		f := &p.fields[i]
		if !f.plan.avroWork {
			continue
		}
		v, err := f.plan.fromAvro(m[f.name])
		if err != nil {
			return err.in(f.name)
		}
		m[f.name] = v
	}
	return nil
}

// fromAvro turns one goavro value into its Row type. The scan has already
// checked the bytes, so a Go type other than the expected one would be a
// goavro change; it is reported, never a panic.
func (p *plan) fromAvro(v any) (any, *Error) {
	if p.nullable {
		if v == nil {
			return nil, nil
		}
		u, ok := v.(map[string]any)
		if !ok || len(u) != 1 {
			return nil, p.unexpected(v)
		}
		for _, x := range u {
			v = x
		}
	}
	switch p.op {
	case opKeep:
		return v, nil
	case opBytes:
		if b, ok := v.([]byte); ok {
			return bytes.Clone(b), nil // goavro's slice aliases the record value
		}
	case opDecimal:
		if b, ok := v.([]byte); ok {
			d, err := p.decimalFromAvro(b)
			if err != nil {
				return nil, err
			}
			return d, nil
		}
	case opTimestampMillis:
		if n, ok := v.(int64); ok {
			return time.UnixMilli(n).UTC(), nil
		}
	case opTimestampMicros:
		if n, ok := v.(int64); ok {
			return time.UnixMicro(n).UTC(), nil
		}
	case opDate:
		if n, ok := v.(int32); ok {
			return dateFromDays(int64(n)), nil
		}
	case opArray:
		if s, ok := v.([]any); ok {
			if p.elem.avroWork {
				for i, x := range s {
					y, err := p.elem.fromAvro(x)
					if err != nil {
						return nil, err.at(strconv.Itoa(i))
					}
					s[i] = y
				}
			}
			return s, nil
		}
	case opMap:
		if m, ok := v.(map[string]any); ok {
			if p.elem.avroWork {
				for k, x := range m {
					y, err := p.elem.fromAvro(x)
					if err != nil {
						return nil, err.at(k)
					}
					m[k] = y
				}
			}
			return m, nil
		}
	case opRecord:
		if m, ok := v.(map[string]any); ok {
			if err := p.recordFromAvro(m); err != nil {
				return nil, err
			}
			return m, nil
		}
	}
	return nil, p.unexpected(v)
}

func (p *plan) unexpected(v any) *Error {
	return fail(fmt.Sprintf("avro: goavro returned %T for %s", v, p.t))
}

func dateFromDays(days int64) time.Time {
	return time.Unix(days*86400, 0).UTC()
}

// stripLogical copies a schema tree without the logicalType attributes of
// its types, leaving everything else (names, defaults, docs) as it was.
// Only type positions are visited, so a default value that happens to hold
// a "logicalType" key is left alone.
func stripLogical(node any) any {
	switch n := node.(type) {
	case []any:
		out := make([]any, len(n))
		for i, b := range n {
			out[i] = stripLogical(b)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(n))
		for k, v := range n {
			if k != "logicalType" {
				out[k] = v
			}
		}
		switch t := n["type"].(type) {
		case map[string]any, []any:
			out["type"] = stripLogical(t)
		case string:
			switch t {
			case "record", "error":
				if fields, ok := n["fields"].([]any); ok {
					fs := make([]any, len(fields))
					for i, f := range fields {
						if fm, ok := f.(map[string]any); ok {
							c := make(map[string]any, len(fm))
							for k, v := range fm {
								c[k] = v
							}
							c["type"] = stripLogical(fm["type"])
							f = c
						}
						fs[i] = f
					}
					out["fields"] = fs
				}
			case "array":
				out["items"] = stripLogical(n["items"])
			case "map":
				out["values"] = stripLogical(n["values"])
			}
		}
		return out
	default:
		return node
	}
}
