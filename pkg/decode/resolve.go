package decode

import (
	"bytes"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"time"
)

// Schema resolution: a record written with one schema (the writer's, named
// by the record's schema id) is read as another (the reader's: the
// pipeline's .avsc), field by field by name, as the Avro specification
// prescribes, so the Row always has the reader's shape:
//
//   - a field of both is kept, its value resolved recursively;
//   - a writer field the reader lacks is dropped;
//   - a reader field the writer lacks takes the reader's default; when it
//     has none it is nil if nullable, else the writer cannot be read at all;
//   - types must match in kind and logical type, except the exact
//     promotions int -> long, int -> double and float -> double (the lossy
//     ones Avro also allows, long -> float/double and int -> float, would
//     break "values are exact"); a decimal needs the same scale and at
//     most the reader's precision (bytes and fixed bases are
//     interchangeable); a fixed needs the same size;
//   - names of records, enums and fixed are not compared: the pipeline
//     reads by field name, whatever the producer called its types;
//   - an enum symbol the reader lacks becomes the reader enum's "default"
//     symbol when it declares one; without one, it fails only the records
//     that carry it, as does a null from a nullable writer type into a
//     non-nullable reader type.
//
// The check runs once per schema id and compiles to a resolver; the
// per-record work is nothing at all when the writer's schema reads
// unchanged, and otherwise only touches the fields that differ.

type resolveOp uint8

const (
	resKeep          resolveOp = iota // the writer's Row value is already the reader's
	resIntToLong                      // int32 -> int64
	resIntToDouble                    // int32 -> float64
	resFloatToDouble                  // float32 -> float64
	resEnum                           // check the symbol is one of the reader's
	resArray
	resMap
	resRecord
)

// resolver turns a Row value decoded with a writer type into the Row value
// of the reader type. Immutable once built; shared by every goroutine.
type resolver struct {
	op resolveOp
	// rejectNull: the writer's type is nullable, the reader's is not.
	rejectNull bool
	// work: apply must be called; false means the value is kept as is.
	work   bool
	reader *Type
	// symbols of the reader's enum, when the writer has symbols it lacks;
	// enumDefault replaces those when hasEnumDefault.
	symbols        map[string]struct{}
	enumDefault    string
	hasEnumDefault bool
	elem           *resolver
	// fields lists only the reader fields that need something done.
	fields []fieldResolver
	// drop lists the writer fields the reader lacks.
	drop []string
}

type fieldResolver struct {
	name string
	res  *resolver // nil: absent from the writer, def is the value
	def  any
}

// fieldDefault is a reader field's default, already in its Row type.
type fieldDefault struct {
	value any
	ok    bool
}

// readerDefaults holds the defaults of the reader schema: of record
// fields, keyed by record full name then field name, and of enums (the
// symbol that stands in for one the reader lacks), keyed by full name.
type readerDefaults struct {
	fields map[string]map[string]fieldDefault
	enums  map[string]string
}

// rawDefaults are the defaults as written in the schema's JSON.
type rawDefaults struct {
	fields map[string]map[string]any
	enums  map[string]string
}

// newReaderDefaults reads and converts every default of s. An invalid
// default is a schema error, reported at start-up rather than on the day a
// writer first omits the field.
func newReaderDefaults(s *Schema) (readerDefaults, error) {
	raw := rawDefaults{fields: map[string]map[string]any{}, enums: map[string]string{}}
	collectDefaults(s.tree, "", raw)
	defs := readerDefaults{fields: map[string]map[string]fieldDefault{}, enums: map[string]string{}}
	var visit func(t *Type) error
	visit = func(t *Type) error {
		switch t.Kind {
		case KindArray:
			return visit(t.Items)
		case KindMap:
			return visit(t.Values)
		case KindEnum:
			if d, ok := raw.enums[t.Name]; ok {
				if !slices.Contains(t.Symbols, d) {
					return fmt.Errorf("enum %s: default %q is not one of its symbols", t.Name, d)
				}
				defs.enums[t.Name] = d
			}
			return nil
		case KindRecord:
		default:
			return nil
		}
		if _, seen := defs.fields[t.Name]; seen {
			return nil
		}
		fields := map[string]fieldDefault{}
		defs.fields[t.Name] = fields
		for _, f := range t.Fields {
			if rv, ok := raw.fields[t.Name][f.Name]; ok {
				v, err := defaultValue(f.Type, rv, raw)
				if err != nil {
					return fmt.Errorf("record %s: field %q: invalid default: %w", t.Name, f.Name, err)
				}
				fields[f.Name] = fieldDefault{value: v, ok: true}
			}
			if err := visit(f.Type); err != nil {
				return err
			}
		}
		return nil
	}
	if err := visit(s.root); err != nil {
		return readerDefaults{}, err
	}
	return defs, nil
}

// collectDefaults walks a schema tree as ParseSchema does (same namespace
// rules) and records each record field's "default" as written, and each
// enum's. A JSON null default is recorded as a nil value, present.
func collectDefaults(node any, ns string, out rawDefaults) {
	switch n := node.(type) {
	case []any:
		for _, b := range n {
			collectDefaults(b, ns, out)
		}
	case map[string]any:
		typ, ok := n["type"].(string)
		if !ok {
			collectDefaults(n["type"], ns, out) // a wrapped schema
			return
		}
		switch typ {
		case "record", "error":
			full, err := fullName(n, ns)
			if err != nil {
				return
			}
			defs := map[string]any{}
			out.fields[full] = defs
			fields, _ := n["fields"].([]any)
			for _, f := range fields {
				fm, ok := f.(map[string]any)
				if !ok {
					continue
				}
				name, _ := fm["name"].(string)
				if d, ok := fm["default"]; ok {
					defs[name] = d
				}
				collectDefaults(fm["type"], namespaceOf(full), out)
			}
		case "enum":
			if full, err := fullName(n, ns); err == nil {
				if d, ok := n["default"].(string); ok {
					out.enums[full] = d
				}
			}
		case "array":
			collectDefaults(n["items"], ns, out)
		case "map":
			collectDefaults(n["values"], ns, out)
		}
	}
}

// defaultValue converts a default as the Avro specification writes it in
// JSON into the Row type of t: bytes, fixed and decimals are strings whose
// code points are the bytes (a decimal's being its unscaled two's
// complement), timestamps and dates are numbers, a union's default is a
// plain value. The non-null branch of a ["null", T] union is accepted even
// when null comes first, which the specification forbids and producers do.
func defaultValue(t *Type, v any, raw rawDefaults) (any, error) {
	if v == nil {
		if t.Nullable || t.Kind == KindNull {
			return nil, nil
		}
		return nil, fmt.Errorf("null is not a value of %s", t)
	}
	switch t.Logical {
	case LogicalDecimal:
		b, err := defaultBytes(t, v)
		if err != nil {
			return nil, err
		}
		d, e := newPlan(t).decimalFromAvro(b)
		if e != nil {
			return nil, e
		}
		return d, nil
	case LogicalTimestampMillis, LogicalTimestampMicros:
		n, err := defaultInt(t, v, math.MinInt64, math.MaxInt64)
		if err != nil {
			return nil, err
		}
		if t.Logical == LogicalTimestampMillis {
			return time.UnixMilli(n).UTC(), nil
		}
		return time.UnixMicro(n).UTC(), nil
	case LogicalDate:
		n, err := defaultInt(t, v, math.MinInt32, math.MaxInt32)
		if err != nil {
			return nil, err
		}
		return dateFromDays(n), nil
	}
	wrong := func() (any, error) { return nil, fmt.Errorf("%s is not a value of %s", jsonKind(v), t) }
	switch t.Kind {
	case KindBoolean:
		if b, ok := v.(bool); ok {
			return b, nil
		}
	case KindInt:
		n, err := defaultInt(t, v, math.MinInt32, math.MaxInt32)
		if err != nil {
			return nil, err
		}
		return int32(n), nil
	case KindLong:
		return defaultInt(t, v, math.MinInt64, math.MaxInt64)
	case KindFloat:
		if f, ok := v.(float64); ok {
			return float32(f), nil
		}
	case KindDouble:
		if f, ok := v.(float64); ok {
			return f, nil
		}
	case KindString:
		if s, ok := v.(string); ok {
			return s, nil
		}
	case KindBytes, KindFixed:
		return defaultBytes(t, v)
	case KindEnum:
		if s, ok := v.(string); ok {
			if !slices.Contains(t.Symbols, s) {
				return nil, fmt.Errorf("%q is not a symbol of %s", s, t)
			}
			return s, nil
		}
	case KindArray:
		if s, ok := v.([]any); ok {
			out := make([]any, len(s))
			for i, x := range s {
				y, err := defaultValue(t.Items, x, raw)
				if err != nil {
					return nil, fmt.Errorf("[%d]: %w", i, err)
				}
				out[i] = y
			}
			return out, nil
		}
	case KindMap:
		if m, ok := v.(map[string]any); ok {
			out := make(map[string]any, len(m))
			for k, x := range m {
				y, err := defaultValue(t.Values, x, raw)
				if err != nil {
					return nil, fmt.Errorf("[%s]: %w", k, err)
				}
				out[k] = y
			}
			return out, nil
		}
	case KindRecord:
		if m, ok := v.(map[string]any); ok {
			out := make(map[string]any, len(t.Fields))
			for _, f := range t.Fields {
				x, ok := m[f.Name]
				if !ok {
					// A record default may leave out fields that have
					// their own default.
					if x, ok = raw.fields[t.Name][f.Name]; !ok {
						return nil, fmt.Errorf("%s: missing, and the field has no default", f.Name)
					}
				}
				y, err := defaultValue(f.Type, x, raw)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", f.Name, err)
				}
				out[f.Name] = y
			}
			return out, nil
		}
	}
	return wrong()
}

func defaultInt(t *Type, v any, lo, hi float64) (int64, error) {
	f, ok := v.(float64)
	if !ok {
		return 0, fmt.Errorf("%s is not a value of %s", jsonKind(v), t)
	}
	// hi+1 is exact for int32 and is 2^63 for int64 (float64(MaxInt64)
	// already rounds up to 2^63), so ">= hi+1" is "out of range" for both.
	if f != math.Trunc(f) || f < lo || f >= hi+1 {
		return 0, fmt.Errorf("%v is not an integer in range", v)
	}
	return int64(f), nil
}

// defaultBytes reads Avro's JSON form of bytes: one code point per byte.
func defaultBytes(t *Type, v any) ([]byte, error) {
	s, ok := v.(string)
	if !ok {
		return nil, fmt.Errorf("%s is not a value of %s (bytes are written as a string)", jsonKind(v), t)
	}
	b := make([]byte, 0, len(s))
	for _, r := range s {
		if r > 0xff {
			return nil, fmt.Errorf("code point U+%04X is not a byte", r)
		}
		b = append(b, byte(r))
	}
	if t.Kind == KindFixed && len(b) != t.Size {
		return nil, fmt.Errorf("%d bytes for fixed %s of %d", len(b), shortName(t.Name), t.Size)
	}
	return b, nil
}

// resolver builds the resolution of writer type w into reader type r. The
// error names the reader's field path and what does not match; it carries
// ErrIncompatibleSchema.
func (defs readerDefaults) resolver(w, r *Type) (*resolver, *Error) {
	res := &resolver{reader: r}
	if w.Kind == KindNull {
		if r.Kind == KindNull || r.Nullable {
			return res, nil // always nil, which the reader accepts
		}
		return nil, incompatible(w, r)
	}
	if r.Kind == KindNull {
		return nil, incompatible(w, r)
	}
	if w.Nullable && !r.Nullable {
		res.rejectNull, res.work = true, true
	}
	switch {
	case w.Logical == LogicalDecimal || r.Logical == LogicalDecimal:
		if w.Logical != r.Logical || w.Scale != r.Scale || w.Precision > r.Precision {
			return nil, incompatible(w, r)
		}
		return res, nil
	case timeLike(w.Logical) || timeLike(r.Logical):
		if w.Logical != r.Logical {
			return nil, incompatible(w, r)
		}
		return res, nil
	}
	// Past here the only logical type is uuid, whose Row type is string
	// like its base: it is compatible with string both ways.
	switch {
	case w.Kind == r.Kind:
	case w.Kind == KindInt && r.Kind == KindLong:
		res.op = resIntToLong
	case w.Kind == KindInt && r.Kind == KindDouble:
		res.op = resIntToDouble
	case w.Kind == KindFloat && r.Kind == KindDouble:
		res.op = resFloatToDouble
	default:
		return nil, incompatible(w, r)
	}
	if res.op != resKeep {
		res.work = true
		return res, nil
	}
	switch r.Kind {
	case KindFixed:
		if w.Size != r.Size {
			e := incompatible(w, r)
			e.Reason += " (" + strconv.Itoa(w.Size) + " bytes, want " + strconv.Itoa(r.Size) + ")"
			return nil, e
		}
	case KindEnum:
		for _, s := range w.Symbols {
			if !slices.Contains(r.Symbols, s) {
				res.op, res.work = resEnum, true
				res.symbols = make(map[string]struct{}, len(r.Symbols))
				for _, s := range r.Symbols {
					res.symbols[s] = struct{}{}
				}
				res.enumDefault, res.hasEnumDefault = defs.enums[r.Name]
				break
			}
		}
	case KindArray, KindMap:
		wi, ri, op := w.Items, r.Items, resArray
		if r.Kind == KindMap {
			wi, ri, op = w.Values, r.Values, resMap
		}
		elem, err := defs.resolver(wi, ri)
		if err != nil {
			return nil, err.at("")
		}
		if elem.work {
			res.op, res.elem, res.work = op, elem, true
		}
	case KindRecord:
		return defs.record(w, r, res)
	}
	return res, nil
}

func (defs readerDefaults) record(w, r *Type, res *resolver) (*resolver, *Error) {
	written := make(map[string]*Type, len(w.Fields))
	for _, f := range w.Fields {
		written[f.Name] = f.Type
	}
	for _, f := range r.Fields {
		wt, ok := written[f.Name]
		if !ok {
			d := defs.fields[r.Name][f.Name]
			if !d.ok && !f.Type.Nullable && f.Type.Kind != KindNull {
				return nil, &Error{Field: f.Name, Err: ErrIncompatibleSchema,
					Reason: "the writer schema has no such field and the reader schema gives it no default"}
			}
			res.fields = append(res.fields, fieldResolver{name: f.Name, def: d.value})
			continue
		}
		delete(written, f.Name)
		fr, err := defs.resolver(wt, f.Type)
		if err != nil {
			return nil, err.in(f.Name)
		}
		if fr.work {
			res.fields = append(res.fields, fieldResolver{name: f.Name, res: fr})
		}
	}
	for _, f := range w.Fields { // in schema order, for a stable resolver
		if _, extra := written[f.Name]; extra {
			res.drop = append(res.drop, f.Name)
		}
	}
	if len(res.fields) > 0 || len(res.drop) > 0 {
		res.op, res.work = resRecord, true
	}
	return res, nil
}

func timeLike(l Logical) bool {
	return l == LogicalTimestampMillis || l == LogicalTimestampMicros || l == LogicalDate
}

func incompatible(w, r *Type) *Error {
	return &Error{Reason: "writer type " + w.String() + " cannot be read as " + r.String(), Err: ErrIncompatibleSchema}
}

// apply resolves one value in place where it can (records, arrays and maps
// are goavro's fresh containers, owned by this Row).
func (r *resolver) apply(v any) (any, *Error) {
	if v == nil {
		if r.rejectNull {
			return nil, fail("null, but the reader schema's " + r.reader.String() + " is not nullable")
		}
		return nil, nil
	}
	switch r.op {
	case resKeep:
		return v, nil
	case resIntToLong:
		if n, ok := v.(int32); ok {
			return int64(n), nil
		}
	case resIntToDouble:
		if n, ok := v.(int32); ok {
			return float64(n), nil
		}
	case resFloatToDouble:
		if f, ok := v.(float32); ok {
			return float64(f), nil
		}
	case resEnum:
		if s, ok := v.(string); ok {
			if _, ok := r.symbols[s]; !ok {
				if r.hasEnumDefault {
					return r.enumDefault, nil
				}
				return nil, fail("enum symbol " + strconv.Quote(s) + " is not a symbol of " +
					shortName(r.reader.Name) + " in the reader schema")
			}
			return s, nil
		}
	case resArray:
		if s, ok := v.([]any); ok {
			for i, x := range s {
				y, err := r.elem.apply(x)
				if err != nil {
					return nil, err.at(strconv.Itoa(i))
				}
				s[i] = y
			}
			return s, nil
		}
	case resMap:
		if m, ok := v.(map[string]any); ok {
			for k, x := range m {
				y, err := r.elem.apply(x)
				if err != nil {
					return nil, err.at(k)
				}
				m[k] = y
			}
			return m, nil
		}
	case resRecord:
		if m, ok := v.(map[string]any); ok {
			if err := r.record(m); err != nil {
				return nil, err
			}
			return m, nil
		}
	}
	return nil, fail(fmt.Sprintf("resolve: %T for %s", v, r.reader))
}

// record resolves a record's map in place: it ends with exactly the
// reader's fields.
func (r *resolver) record(m map[string]any) *Error {
	for i := range r.fields {
		f := &r.fields[i]
		if f.res == nil {
			m[f.name] = cloneValue(f.def)
			continue
		}
		v, err := f.res.apply(m[f.name])
		if err != nil {
			return err.in(f.name)
		}
		m[f.name] = v
	}
	for _, name := range r.drop {
		delete(m, name)
	}
	return nil
}

// cloneValue copies the mutable parts of a default, so that no two Rows
// share a slice or map a later stage might change.
func cloneValue(v any) any {
	switch x := v.(type) {
	case []byte:
		return bytes.Clone(x)
	case []any:
		out := make([]any, len(x))
		for i, y := range x {
			out[i] = cloneValue(y)
		}
		return out
	case map[string]any:
		out := maps.Clone(x)
		for k, y := range out {
			out[k] = cloneValue(y)
		}
		return out
	}
	return v
}
