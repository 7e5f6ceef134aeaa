package decode

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"os"
	"strconv"
	"strings"
)

// Kind is the Avro type of a value once a ["null", T] union is unwrapped
// (the union itself shows as Type.Nullable).
type Kind uint8

// The Avro kinds. Unions other than ["null", T] are rejected by ParseSchema,
// so there is no KindUnion.
const (
	KindNull Kind = iota + 1
	KindBoolean
	KindInt
	KindLong
	KindFloat
	KindDouble
	KindBytes
	KindString
	KindFixed
	KindEnum
	KindArray
	KindMap
	KindRecord
)

var kindNames = [...]string{
	KindNull: "null", KindBoolean: "boolean", KindInt: "int", KindLong: "long",
	KindFloat: "float", KindDouble: "double", KindBytes: "bytes", KindString: "string",
	KindFixed: "fixed", KindEnum: "enum", KindArray: "array", KindMap: "map", KindRecord: "record",
}

// String returns the Avro name of the kind ("long", "record", ...).
func (k Kind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Logical is an Avro logical type that Sluice interprets. Logical types it
// does not interpret (time-millis, local-timestamp-millis, ...) are carried
// as their underlying type, as the Avro specification prescribes, and show
// here as LogicalNone.
type Logical string

// The interpreted logical types and the Row type each decodes to.
const (
	LogicalNone            Logical = ""
	LogicalDecimal         Logical = "decimal"          // bytes or fixed -> decimal.Decimal
	LogicalTimestampMillis Logical = "timestamp-millis" // long -> time.Time (UTC)
	LogicalTimestampMicros Logical = "timestamp-micros" // long -> time.Time (UTC)
	LogicalDate            Logical = "date"             // int -> time.Time (UTC midnight)
	LogicalUUID            Logical = "uuid"             // string -> string
)

// maxPrecision bounds decimal precision: ClickHouse's widest Decimal (256
// bits) holds 76 digits, and the bound keeps 10^precision small to compute.
const maxPrecision = 76

// Type describes one Avro type as the decoders use it. Types are immutable
// once ParseSchema returns; named types used in several places share one
// *Type (a nullable use gets its own copy with Nullable set).
type Type struct {
	Kind Kind
	// Nullable: the schema said ["null", T] or [T, "null"].
	Nullable bool
	// nullIndex is the union branch index of "null" when Nullable (0 or 1).
	nullIndex int8
	Logical   Logical
	// Precision and Scale of a decimal.
	Precision, Scale int
	// Size of a fixed, in bytes.
	Size int
	// Name is the full name of a record, enum or fixed.
	Name string
	// Symbols of an enum, in index order.
	Symbols []string
	// Items of an array, Values of a map.
	Items, Values *Type
	// Fields of a record, in schema (and Avro binary) order.
	Fields []Field
}

// Field is one field of a record.
type Field struct {
	Name string
	Type *Type
}

// String renders the type for messages: "string", "decimal(18,2)",
// "enum OrderStatus", "array<record LineItem>", "nullable timestamp-millis".
func (t *Type) String() string {
	if t.Nullable {
		return "nullable " + t.baseString()
	}
	return t.baseString()
}

// baseString is String without the nullability.
func (t *Type) baseString() string {
	var s string
	switch {
	case t.Logical == LogicalDecimal:
		s = "decimal(" + strconv.Itoa(t.Precision) + "," + strconv.Itoa(t.Scale) + ")"
	case t.Logical != LogicalNone:
		s = string(t.Logical)
	case t.Kind == KindArray:
		s = "array<" + t.Items.String() + ">"
	case t.Kind == KindMap:
		s = "map<" + t.Values.String() + ">"
	case t.Kind == KindRecord || t.Kind == KindEnum || t.Kind == KindFixed:
		s = t.Kind.String() + " " + shortName(t.Name)
	default:
		s = t.Kind.String()
	}
	return s
}

func shortName(full string) string {
	return full[strings.LastIndexByte(full, '.')+1:]
}

// Schema is a parsed .avsc whose top level is a record: the unit a pipeline
// decodes. It is immutable and safe for concurrent use.
type Schema struct {
	// Name is the full name of the top-level record, e.g.
	// "io.sluice.ecommerce.Order".
	Name string
	// Fields are the top-level fields, in schema order; every decoded Row
	// has exactly these keys.
	Fields []Field

	root *Type
	// tree is the schema JSON as parsed, kept to derive the schema that
	// goavro is given (see avro.go).
	tree any
}

// Field returns the top-level field called name.
func (s *Schema) Field(name string) (Field, bool) {
	for _, f := range s.Fields {
		if f.Name == name {
			return f, true
		}
	}
	return Field{}, false
}

// LoadSchema reads and parses the .avsc file at path; see ParseSchema. It
// is called once per pipeline at start-up (and by config validation); the
// error names the file and the offending place in the schema.
func LoadSchema(path string) (*Schema, error) {
	text, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("decode: schema: %w", err)
	}
	s, err := ParseSchema(text)
	if err != nil {
		return nil, fmt.Errorf("decode: schema %s: %w", path, err)
	}
	return s, nil
}

// ParseSchema parses an Avro schema whose top level is a record. Beyond
// checking the schema is valid Avro it rejects what Sluice cannot turn into
// table rows: unions other than ["null", T], recursive types, decimals
// without a sane precision/scale, and logical types on the wrong base type.
func ParseSchema(text []byte) (*Schema, error) {
	var tree any
	if err := json.Unmarshal(text, &tree); err != nil {
		return nil, fmt.Errorf("not JSON: %w", err)
	}
	p := schemaParser{named: map[string]*Type{}, open: map[string]bool{}}
	root, err := p.parse(tree, "")
	if err != nil {
		return nil, err
	}
	if root.Kind != KindRecord || root.Nullable {
		return nil, fmt.Errorf("top-level type is %s, want a record", root)
	}
	return &Schema{Name: root.Name, Fields: root.Fields, root: root, tree: tree}, nil
}

type schemaParser struct {
	named map[string]*Type // full name -> named type, registered when complete
	open  map[string]bool  // records being parsed: a reference to one is recursion
}

var primitives = map[string]Kind{
	"null": KindNull, "boolean": KindBoolean, "int": KindInt, "long": KindLong,
	"float": KindFloat, "double": KindDouble, "bytes": KindBytes, "string": KindString,
}

// parse turns one schema node into a Type; ns is the enclosing namespace.
func (p *schemaParser) parse(node any, ns string) (*Type, error) {
	switch n := node.(type) {
	case string:
		return p.reference(n, ns)
	case []any:
		return p.union(n, ns)
	case map[string]any:
		return p.complex(n, ns)
	default:
		return nil, fmt.Errorf("a type must be a name, a union or an object, got %s", jsonKind(node))
	}
}

func (p *schemaParser) reference(name, ns string) (*Type, error) {
	if k, ok := primitives[name]; ok {
		return &Type{Kind: k}, nil
	}
	candidates := []string{name}
	if !strings.Contains(name, ".") && ns != "" {
		candidates = []string{ns + "." + name, name}
	}
	for _, full := range candidates {
		if p.open[full] {
			return nil, fmt.Errorf("recursive type %q is not supported", full)
		}
		if t, ok := p.named[full]; ok {
			return t, nil
		}
	}
	return nil, fmt.Errorf("unknown type %q", name)
}

func (p *schemaParser) union(branches []any, ns string) (*Type, error) {
	if len(branches) == 2 {
		for i, b := range branches {
			if b != "null" {
				continue
			}
			other, err := p.parse(branches[1-i], ns)
			if err != nil {
				return nil, err
			}
			if other.Kind == KindNull || other.Nullable {
				break
			}
			t := *other
			t.Nullable, t.nullIndex = true, int8(i)
			return &t, nil
		}
	}
	return nil, errors.New(`only unions of "null" and one other type are supported`)
}

func (p *schemaParser) complex(m map[string]any, ns string) (*Type, error) {
	typ, ok := m["type"].(string)
	if !ok {
		if inner, ok := m["type"]; ok && inner != nil {
			// {"type": {...}} or {"type": [...]}: a wrapped schema.
			return p.parse(inner, ns)
		}
		return nil, errors.New(`type object without "type"`)
	}
	var t *Type
	var err error
	switch typ {
	case "record", "error":
		return p.record(m, ns)
	case "enum":
		t, err = p.enum(m, ns)
	case "fixed":
		t, err = p.fixed(m, ns)
	case "array":
		var items *Type
		if items, err = p.parse(m["items"], ns); err != nil {
			return nil, fmt.Errorf("array items: %w", err)
		}
		t = &Type{Kind: KindArray, Items: items}
	case "map":
		var values *Type
		if values, err = p.parse(m["values"], ns); err != nil {
			return nil, fmt.Errorf("map values: %w", err)
		}
		t = &Type{Kind: KindMap, Values: values}
	default:
		k, ok := primitives[typ]
		if !ok {
			// {"type": "SomeNamedType"} refers to a named type.
			return p.reference(typ, ns)
		}
		t = &Type{Kind: k}
	}
	if err != nil {
		return nil, err
	}
	return p.logical(t, m)
}

// logical applies a logicalType attribute to t, which this schema node has
// just defined (a primitive or a new named fixed), so mutating it is safe.
func (p *schemaParser) logical(t *Type, m map[string]any) (*Type, error) {
	lt, _ := m["logicalType"].(string)
	switch Logical(lt) {
	case LogicalDecimal:
		if t.Kind != KindBytes && t.Kind != KindFixed {
			return nil, fmt.Errorf("logicalType decimal needs bytes or fixed, not %s", t.Kind)
		}
		prec, err := intAttr(m, "precision", -1)
		if err != nil {
			return nil, fmt.Errorf("decimal: %w", err)
		}
		scale, err := intAttr(m, "scale", 0)
		if err != nil {
			return nil, fmt.Errorf("decimal: %w", err)
		}
		if prec < 1 || prec > maxPrecision {
			return nil, fmt.Errorf("decimal precision %d is outside 1..%d", prec, maxPrecision)
		}
		if scale < 0 || scale > prec {
			return nil, fmt.Errorf("decimal scale %d is outside 0..precision (%d)", scale, prec)
		}
		if t.Kind == KindFixed {
			if max := maxFixedDigits(t.Size); prec > max {
				return nil, fmt.Errorf("decimal precision %d does not fit fixed %s of %d bytes (at most %d digits)", prec, t.Name, t.Size, max)
			}
		}
		t.Logical, t.Precision, t.Scale = LogicalDecimal, prec, scale
	case LogicalTimestampMillis, LogicalTimestampMicros:
		if t.Kind != KindLong {
			return nil, fmt.Errorf("logicalType %s needs long, not %s", lt, t.Kind)
		}
		t.Logical = Logical(lt)
	case LogicalDate:
		if t.Kind != KindInt {
			return nil, fmt.Errorf("logicalType date needs int, not %s", t.Kind)
		}
		t.Logical = LogicalDate
	case LogicalUUID:
		if t.Kind == KindString {
			t.Logical = LogicalUUID
		}
	}
	return t, nil
}

// maxFixedDigits is the largest precision whose values all fit a signed
// two's-complement integer of size bytes.
func maxFixedDigits(size int) int {
	if size <= 0 {
		return 0
	}
	if size > 32 { // 2^255 already has 77 digits, beyond maxPrecision
		return maxPrecision
	}
	max := new(big.Int).Lsh(big.NewInt(1), uint(8*size-1))
	max.Sub(max, big.NewInt(1))
	return len(max.String()) - 1
}

func (p *schemaParser) record(m map[string]any, ns string) (*Type, error) {
	full, err := fullName(m, ns)
	if err != nil {
		return nil, fmt.Errorf("record: %w", err)
	}
	if err := p.free(full); err != nil {
		return nil, err
	}
	raw, ok := m["fields"].([]any)
	if !ok {
		return nil, fmt.Errorf("record %s: \"fields\" must be an array", full)
	}
	p.open[full] = true
	defer delete(p.open, full)
	inner := namespaceOf(full)
	t := &Type{Kind: KindRecord, Name: full, Fields: make([]Field, 0, len(raw))}
	seen := make(map[string]bool, len(raw))
	for i, rf := range raw {
		fm, ok := rf.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("record %s: field %d is not an object", full, i)
		}
		name, _ := fm["name"].(string)
		if err := checkName(name); err != nil {
			return nil, fmt.Errorf("record %s: field %d: %w", full, i, err)
		}
		if seen[name] {
			return nil, fmt.Errorf("record %s: duplicate field %q", full, name)
		}
		seen[name] = true
		ft, err := p.parse(fm["type"], inner)
		if err != nil {
			return nil, fmt.Errorf("record %s: field %q: %w", full, name, err)
		}
		t.Fields = append(t.Fields, Field{Name: name, Type: ft})
	}
	p.named[full] = t
	return t, nil
}

func (p *schemaParser) enum(m map[string]any, ns string) (*Type, error) {
	full, err := fullName(m, ns)
	if err != nil {
		return nil, fmt.Errorf("enum: %w", err)
	}
	if err := p.free(full); err != nil {
		return nil, err
	}
	raw, ok := m["symbols"].([]any)
	if !ok || len(raw) == 0 {
		return nil, fmt.Errorf("enum %s: \"symbols\" must be a non-empty array", full)
	}
	t := &Type{Kind: KindEnum, Name: full, Symbols: make([]string, len(raw))}
	seen := make(map[string]bool, len(raw))
	for i, r := range raw {
		s, _ := r.(string)
		if err := checkName(s); err != nil {
			return nil, fmt.Errorf("enum %s: symbol %d: %w", full, i, err)
		}
		if seen[s] {
			return nil, fmt.Errorf("enum %s: duplicate symbol %q", full, s)
		}
		seen[s] = true
		t.Symbols[i] = s
	}
	p.named[full] = t
	return t, nil
}

func (p *schemaParser) fixed(m map[string]any, ns string) (*Type, error) {
	full, err := fullName(m, ns)
	if err != nil {
		return nil, fmt.Errorf("fixed: %w", err)
	}
	if err := p.free(full); err != nil {
		return nil, err
	}
	size, err := intAttr(m, "size", -1)
	if err != nil || size < 0 {
		return nil, fmt.Errorf("fixed %s: \"size\" must be a non-negative integer", full)
	}
	t := &Type{Kind: KindFixed, Name: full, Size: size}
	p.named[full] = t
	return t, nil
}

func (p *schemaParser) free(full string) error {
	if _, ok := primitives[shortName(full)]; ok && !strings.Contains(full, ".") {
		return fmt.Errorf("type name %q is a primitive type", full)
	}
	if p.named[full] != nil || p.open[full] {
		return fmt.Errorf("type %q is defined twice", full)
	}
	return nil
}

// fullName resolves a named type's full name by the Avro rules: a dotted
// name is full; else the "namespace" attribute, else the enclosing one.
func fullName(m map[string]any, ns string) (string, error) {
	name, _ := m["name"].(string)
	if name == "" {
		return "", errors.New(`"name" must be a non-empty string`)
	}
	if !strings.Contains(name, ".") {
		if own, ok := m["namespace"].(string); ok {
			ns = own
		}
		if ns != "" {
			name = ns + "." + name
		}
	}
	for _, part := range strings.Split(name, ".") {
		if err := checkName(part); err != nil {
			return "", err
		}
	}
	return name, nil
}

func namespaceOf(full string) string {
	if i := strings.LastIndexByte(full, '.'); i >= 0 {
		return full[:i]
	}
	return ""
}

// checkName enforces the Avro name grammar [A-Za-z_][A-Za-z0-9_]*.
func checkName(s string) error {
	if s == "" {
		return errors.New("name must be a non-empty string")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9' {
			continue
		}
		return fmt.Errorf("invalid name %q", s)
	}
	return nil
}

// intAttr reads a non-fractional numeric attribute; def is used when absent.
func intAttr(m map[string]any, key string, def int) (int, error) {
	v, ok := m[key]
	if !ok {
		if def < 0 {
			return 0, fmt.Errorf("%q is required", key)
		}
		return def, nil
	}
	f, ok := v.(float64)
	if !ok || f != math.Trunc(f) || math.Abs(f) > 1<<30 {
		return 0, fmt.Errorf("%q must be an integer, got %v", key, v)
	}
	return int(f), nil
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case float64, json.Number:
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}
