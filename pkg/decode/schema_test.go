package decode

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestLoadSchemaOrder(t *testing.T) {
	s := mustSchema(t, "order")
	if s.Name != "io.sluice.ecommerce.Order" {
		t.Errorf("Name = %q", s.Name)
	}
	var names []string
	for _, f := range s.Fields {
		names = append(names, f.Name)
	}
	wantNames := []string{"order_id", "customer_id", "created_at", "currency", "total", "status", "channel", "shipping_country", "items", "coupon"}
	if !reflect.DeepEqual(names, wantNames) {
		t.Fatalf("fields %v, want %v", names, wantNames)
	}
	field := func(name string) *Type {
		f, ok := s.Field(name)
		if !ok {
			t.Fatalf("no field %q", name)
		}
		return f.Type
	}
	if ft := field("created_at"); ft.Kind != KindLong || ft.Logical != LogicalTimestampMillis || ft.Nullable {
		t.Errorf("created_at = %+v", ft)
	}
	if ft := field("total"); ft.Kind != KindBytes || ft.Logical != LogicalDecimal || ft.Precision != 18 || ft.Scale != 2 {
		t.Errorf("total = %+v", ft)
	}
	if ft := field("status"); ft.Kind != KindEnum || ft.Name != "io.sluice.ecommerce.OrderStatus" ||
		!reflect.DeepEqual(ft.Symbols, []string{"CREATED", "CONFIRMED", "CANCELLED"}) {
		t.Errorf("status = %+v", ft)
	}
	items := field("items")
	if items.Kind != KindArray || items.Items.Kind != KindRecord || items.Items.Name != "io.sluice.ecommerce.LineItem" {
		t.Fatalf("items = %+v", items)
	}
	if up := items.Items.Fields[2]; up.Name != "unit_price" || up.Type.Logical != LogicalDecimal || up.Type.Scale != 2 {
		t.Errorf("items[].unit_price = %+v", up)
	}
	if q := items.Items.Fields[1].Type; q.Kind != KindInt {
		t.Errorf("items[].quantity = %+v", q)
	}
	if ft := field("coupon"); ft.Kind != KindString || !ft.Nullable || ft.String() != "nullable string" {
		t.Errorf("coupon = %+v", ft)
	}
	if _, ok := s.Field("nope"); ok {
		t.Error("Field(nope) found something")
	}
	if got := items.String(); got != "array<record LineItem>" {
		t.Errorf("items.String() = %q", got)
	}
}

func TestLoadSchemaFxRate(t *testing.T) {
	f, ok := mustSchema(t, "fx_rate").Field("rate")
	if !ok || f.Type.Logical != LogicalDecimal || f.Type.Precision != 18 || f.Type.Scale != 8 || f.Type.String() != "decimal(18,8)" {
		t.Fatalf("rate = %+v", f)
	}
}

func TestLoadSchemaMissingFile(t *testing.T) {
	_, err := LoadSchema("testdata/does-not-exist.avsc")
	if err == nil || !strings.Contains(err.Error(), "does-not-exist.avsc") {
		t.Fatalf("err = %v", err)
	}
}

func TestParseSchemaRejects(t *testing.T) {
	rec := func(fieldType string) string {
		return `{"type": "record", "name": "R", "fields": [{"name": "f", "type": ` + fieldType + `}]}`
	}
	tests := []struct {
		name, schema, contains string
	}{
		{"not JSON", `{`, "not JSON"},
		{"top level not a record", `"string"`, "top-level type is string, want a record"},
		{"top level nullable", `["null", ` + rec(`"string"`) + `]`, "want a record"},
		{"wide union", rec(`["null", "string", "long"]`), `only unions of "null" and one other type`},
		{"union without null", rec(`["string", "long"]`), `only unions of "null"`},
		{"single-branch union", rec(`["string"]`), `only unions of "null"`},
		{"recursive record", `{"type": "record", "name": "Node", "fields": [{"name": "next", "type": ["null", "Node"]}]}`, `recursive type "Node"`},
		{"decimal without precision", rec(`{"type": "bytes", "logicalType": "decimal", "scale": 2}`), `"precision" is required`},
		{"decimal scale above precision", rec(`{"type": "bytes", "logicalType": "decimal", "precision": 2, "scale": 3}`), "scale 3 is outside"},
		{"decimal fractional precision", rec(`{"type": "bytes", "logicalType": "decimal", "precision": 18.5}`), "must be an integer"},
		{"decimal too wide", rec(`{"type": "bytes", "logicalType": "decimal", "precision": 77}`), "precision 77 is outside 1..76"},
		{"decimal on string", rec(`{"type": "string", "logicalType": "decimal", "precision": 5}`), "needs bytes or fixed"},
		{"decimal too wide for fixed", rec(`{"type": "fixed", "name": "F", "size": 8, "logicalType": "decimal", "precision": 19}`), "does not fit fixed"},
		{"timestamp on int", rec(`{"type": "int", "logicalType": "timestamp-millis"}`), "needs long, not int"},
		{"unknown type", rec(`"Money"`), `unknown type "Money"`},
		{"duplicate field", `{"type": "record", "name": "R", "fields": [{"name": "a", "type": "int"}, {"name": "a", "type": "int"}]}`, `duplicate field "a"`},
		{"bad field name", `{"type": "record", "name": "R", "fields": [{"name": "1a", "type": "int"}]}`, `invalid name "1a"`},
		{"enum without symbols", rec(`{"type": "enum", "name": "E", "symbols": []}`), "non-empty array"},
		{"duplicate symbol", rec(`{"type": "enum", "name": "E", "symbols": ["A", "A"]}`), `duplicate symbol "A"`},
		{"type defined twice", `{"type": "record", "name": "R", "fields": [{"name": "a", "type": {"type": "enum", "name": "E", "symbols": ["A"]}}, {"name": "b", "type": {"type": "enum", "name": "E", "symbols": ["B"]}}]}`, `type "E" is defined twice`},
		{"fixed without size", rec(`{"type": "fixed", "name": "F"}`), `"size" must be`},
		{"array without items", rec(`{"type": "array"}`), "array items"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ParseSchema([]byte(tt.schema))
			if err == nil {
				t.Fatalf("accepted: %+v", s)
			}
			if !strings.Contains(err.Error(), tt.contains) {
				t.Fatalf("error %q does not contain %q", err, tt.contains)
			}
		})
	}
}

func TestParseSchemaNames(t *testing.T) {
	s, err := ParseSchema([]byte(`{"type": "record", "name": "R", "namespace": "a.b", "fields": [
		{"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["X"]}},
		{"name": "e2", "type": "E"},
		{"name": "e3", "type": "a.b.E"},
		{"name": "o", "type": {"type": "enum", "name": "O", "namespace": "other", "symbols": ["Y"]}},
		{"name": "o2", "type": "other.O"},
		{"name": "t", "type": {"type": "long", "logicalType": "made-up"}},
		{"name": "w", "type": {"type": {"type": "string"}}}
	]}`))
	if err != nil {
		t.Fatal(err)
	}
	f := func(name string) *Type { x, _ := s.Field(name); return x.Type }
	if f("e") != f("e2") || f("e") != f("e3") || f("e").Name != "a.b.E" {
		t.Errorf("E not shared: %+v %+v %+v", f("e"), f("e2"), f("e3"))
	}
	if f("o2").Name != "other.O" {
		t.Errorf("o2 = %+v", f("o2"))
	}
	if tt := f("t"); tt.Kind != KindLong || tt.Logical != LogicalNone {
		t.Errorf("unknown logical type not ignored: %+v", tt)
	}
	if tt := f("w"); tt.Kind != KindString {
		t.Errorf("wrapped type: %+v", tt)
	}
}

func TestNewFormats(t *testing.T) {
	for _, tt := range []struct{ format, contains string }{
		{"xml", `format "xml"`},
		{"", `format ""`},
	} {
		d, err := New(tt.format, schemaFile("order"))
		if d != nil || !errors.Is(err, ErrUnsupportedFormat) || !strings.Contains(err.Error(), tt.contains) {
			t.Errorf("New(%q) = %v, %v", tt.format, d, err)
		}
	}
	for _, format := range []string{FormatAvro, FormatJSON} {
		if _, err := New(format, schemaFile("nope")); err == nil || !strings.Contains(err.Error(), "nope.avsc") {
			t.Errorf("New(%s, missing schema) = %v", format, err)
		}
	}
}

// stripLogical must leave the schema's binary layout alone and drop only
// logical types at type positions.
func TestStripLogical(t *testing.T) {
	s, err := ParseSchema([]byte(`{"type": "record", "name": "R", "fields": [
		{"name": "a", "type": {"type": "bytes", "logicalType": "decimal", "precision": 5, "scale": 1},
		 "default": {"logicalType": "kept"}},
		{"name": "b", "type": {"type": "array", "items": ["null", {"type": "long", "logicalType": "timestamp-millis"}]}}
	]}`))
	if err != nil {
		t.Fatal(err)
	}
	got := stripLogical(s.tree)
	want := map[string]any{"type": "record", "name": "R", "fields": []any{
		map[string]any{"name": "a", "type": map[string]any{"type": "bytes", "precision": 5.0, "scale": 1.0},
			"default": map[string]any{"logicalType": "kept"}},
		map[string]any{"name": "b", "type": map[string]any{"type": "array", "items": []any{"null", map[string]any{"type": "long"}}}},
	}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %#v\nwant %#v", got, want)
	}
	// The parsed tree itself is untouched.
	if _, ok := s.tree.(map[string]any)["fields"].([]any)[0].(map[string]any)["type"].(map[string]any)["logicalType"]; !ok {
		t.Fatal("stripLogical modified the schema tree")
	}
}
