package decode

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/linkedin/goavro/v2"
	"github.com/shopspring/decimal"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/sluice-etl/sluice/pkg/record"
	"github.com/sluice-etl/sluice/pkg/registry"
)

// fakeRegistry is franz-go's in-memory schema registry (srfake) with an
// interceptor that counts the requests per id and can slow them down.
type fakeRegistry struct {
	*srfake.Registry
	mu    sync.Mutex
	hits  map[int32]int
	delay time.Duration // per request, to make concurrent callers overlap
}

func newFakeRegistry(t testing.TB, schemas map[int32]string) *fakeRegistry {
	t.Helper()
	f := &fakeRegistry{Registry: srfake.New(), hits: map[int32]int{}}
	t.Cleanup(f.Close)
	f.Intercept(f.count1)
	for id, s := range schemas {
		f.register(id, s)
	}
	return f
}

// count1 counts a schema-by-id request and lets srfake answer it.
func (f *fakeRegistry) count1(_ http.ResponseWriter, r *http.Request) bool {
	rest, ok := strings.CutPrefix(r.URL.Path, "/schemas/ids/")
	n, err := strconv.ParseInt(rest, 10, 32)
	if !ok || err != nil {
		return false
	}
	f.mu.Lock()
	f.hits[int32(n)]++
	delay := f.delay
	f.mu.Unlock()
	time.Sleep(delay)
	return false
}

func (f *fakeRegistry) register(id int32, schema string) {
	f.SeedSchema("s"+strconv.Itoa(int(id))+"-value", 1, int(id), sr.Schema{Schema: schema})
}

func (f *fakeRegistry) count(id int32) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.hits[id]
}

func (f *fakeRegistry) client(opts ...registry.Option) *registry.Client {
	return registry.New(f.URL(), append([]registry.Option{registry.WithTimeout(2 * time.Second)}, opts...)...)
}

// mapFetcher is an in-memory SchemaFetcher for the fuzzer.
type mapFetcher map[int32]string

func (m mapFetcher) SchemaByID(_ context.Context, id int32) (string, error) {
	if s, ok := m[id]; ok {
		return s, nil
	}
	return "", &registry.UnknownSchemaError{ID: id}
}

// frame writes the Confluent wire format: magic byte, schema id, body.
func frame(id int32, body []byte) []byte {
	out := make([]byte, 5, 5+len(body))
	binary.BigEndian.PutUint32(out[1:], uint32(id))
	return append(out, body...)
}

func codecOf(t testing.TB, schema string) *goavro.Codec {
	t.Helper()
	c, err := goavro.NewCodec(schema)
	if err != nil {
		t.Fatalf("goavro.NewCodec(%s): %v", schema, err)
	}
	return c
}

func parseText(t testing.TB, schema string) *Schema {
	t.Helper()
	s, err := ParseSchema([]byte(schema))
	if err != nil {
		t.Fatalf("ParseSchema(%s): %v", schema, err)
	}
	return s
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mustConfluent(t testing.TB, reader *Schema, reg SchemaFetcher) ContextDecoder {
	t.Helper()
	d, err := NewFromSchemaWith(FormatAvroConfluent, reader, reg)
	if err != nil {
		t.Fatalf("NewFromSchemaWith: %v", err)
	}
	return d.(ContextDecoder)
}

// event builds a test record schema from field declarations.
func event(fields ...string) string {
	return `{"type":"record","name":"Event","namespace":"test","fields":[` + strings.Join(fields, ",") + `]}`
}

const (
	fID        = `{"name":"id","type":"string"}`
	fQtyInt    = `{"name":"qty","type":"int"}`
	fQtyLong   = `{"name":"qty","type":"long"}`
	fQtyDouble = `{"name":"qty","type":"double"}`
	fCoupon    = `{"name":"coupon","type":["null","string"],"default":null}`
	fPrice     = `{"name":"price","type":{"type":"bytes","logicalType":"decimal","precision":18,"scale":2}}`
	fAt        = `{"name":"at","type":{"type":"long","logicalType":"timestamp-millis"}}`
	fStatus    = `{"name":"status","type":{"type":"enum","name":"Status","symbols":["NEW","DONE"]}}`
)

// orderVariant is order.avsc changed by edit, as a producer's other version.
func orderVariant(t testing.TB, edit func(fields []any) []any) string {
	t.Helper()
	var tree map[string]any
	if err := json.Unmarshal([]byte(readFile(t, schemaFile("order"))), &tree); err != nil {
		t.Fatal(err)
	}
	tree["fields"] = edit(tree["fields"].([]any))
	b, err := json.Marshal(tree)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func withoutField(name string) func([]any) []any {
	return func(fields []any) []any {
		var out []any
		for _, f := range fields {
			if f.(map[string]any)["name"] != name {
				out = append(out, f)
			}
		}
		return out
	}
}

func withField(decl string) func([]any) []any {
	return func(fields []any) []any {
		var f any
		if err := json.Unmarshal([]byte(decl), &f); err != nil {
			panic(err)
		}
		return append(fields, f)
	}
}

// The order written with order.avsc itself decodes exactly as plain Avro.
func TestConfluentSameSchema(t *testing.T) {
	reader := mustSchema(t, "order")
	reg := newFakeRegistry(t, map[int32]string{42: readFile(t, schemaFile("order"))})
	d := mustConfluent(t, reader, reg.client())
	body := validOrder(t)
	got, err := d.Decode(frame(42, body))
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	want, err := mustDecoder(t, FormatAvro, "order").Decode(body)
	if err != nil {
		t.Fatal(err)
	}
	assertRow(t, got, want)
	if err := checkShape(reader.root, got); err != nil {
		t.Fatal(err)
	}
}

// The DESIGN's evolution: orders written before and after `coupon`, and
// with a field this pipeline does not know yet, all land in one shape.
func TestConfluentOrderEvolution(t *testing.T) {
	v1 := orderVariant(t, withoutField("coupon"))
	v3 := orderVariant(t, withField(`{"name":"gift_note","type":["null","string"],"default":null}`))
	reg := newFakeRegistry(t, map[int32]string{1: v1, 2: readFile(t, schemaFile("order")), 3: v3})

	native := func() map[string]any {
		return map[string]any{
			"order_id": "o-1", "customer_id": "c-1", "created_at": time.UnixMilli(1_795_000_000_123),
			"currency": "EUR", "total": rat("10.00"), "status": "CREATED", "channel": "WEB",
			"shipping_country": "DE",
			"items":            []any{map[string]any{"sku": "s", "quantity": int32(2), "unit_price": rat("5.00")}},
		}
	}
	want := func(coupon any) record.Row {
		return record.Row{
			"order_id": "o-1", "customer_id": "c-1", "created_at": ms(1_795_000_000_123),
			"currency": "EUR", "total": dec("10.00"), "status": "CREATED", "channel": "WEB",
			"shipping_country": "DE",
			"items":            []any{map[string]any{"sku": "s", "quantity": int32(2), "unit_price": dec("5.00")}},
			"coupon":           coupon,
		}
	}
	v2n := native()
	v2n["coupon"] = goavro.Union("string", "SAVE")
	v3n := native()
	v3n["coupon"] = goavro.Union("string", "GIFT")
	v3n["gift_note"] = goavro.Union("string", "happy birthday")

	d := mustConfluent(t, mustSchema(t, "order"), reg.client())
	for _, tt := range []struct {
		name string
		id   int32
		body []byte
		want record.Row
	}{
		{"v1 without coupon", 1, encode(t, codecOf(t, v1), native()), want(nil)},
		{"v2 as the reader", 2, encode(t, writerCodec(t, "order"), v2n), want("SAVE")},
		{"v3 with gift_note", 3, encode(t, codecOf(t, v3), v3n), want("GIFT")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := d.Decode(frame(tt.id, tt.body))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			assertRow(t, got, tt.want)
		})
	}

	// And the other way round: a pipeline still on v1 reads v2 and v3,
	// dropping what it does not know.
	old := mustConfluent(t, parseText(t, v1), reg.client())
	got, err := old.Decode(frame(3, encode(t, codecOf(t, v3), v3n)))
	if err != nil {
		t.Fatalf("v1 reader, v3 writer: %v", err)
	}
	w := want(nil)
	delete(w, "coupon")
	assertRow(t, got, w)
}

func TestConfluentResolution(t *testing.T) {
	tests := []struct {
		name           string
		reader, writer string
		native         map[string]any
		want           record.Row
	}{
		{
			name:   "missing nullable field is nil",
			reader: event(fID, fCoupon), writer: event(fID),
			native: map[string]any{"id": "a"},
			want:   record.Row{"id": "a", "coupon": nil},
		},
		{
			name:   "nullable field without default is nil",
			reader: event(fID, `{"name":"coupon","type":["null","string"]}`), writer: event(fID),
			native: map[string]any{"id": "a"},
			want:   record.Row{"id": "a", "coupon": nil},
		},
		{
			name: "missing fields take the reader's defaults",
			reader: event(fID,
				`{"name":"source","type":"string","default":"web"}`,
				`{"name":"prio","type":"int","default":3}`,
				`{"name":"big","type":"long","default":-9007199254740992}`,
				`{"name":"ratio","type":"float","default":0.5}`,
				`{"name":"ok","type":"boolean","default":true}`,
				`{"name":"fee","type":{"type":"bytes","logicalType":"decimal","precision":9,"scale":2},"default":"\u0001\u0000"}`,
				`{"name":"neg","type":{"type":"fixed","name":"F","size":2,"logicalType":"decimal","precision":4,"scale":1},"default":"\u00ff\u00ff"}`,
				`{"name":"raw","type":"bytes","default":"\u00ffA"}`,
				`{"name":"at","type":{"type":"long","logicalType":"timestamp-millis"},"default":1000}`,
				`{"name":"day","type":{"type":"int","logicalType":"date"},"default":1}`,
				`{"name":"status","type":{"type":"enum","name":"Status","symbols":["NEW","DONE"]},"default":"DONE"}`,
				`{"name":"note","type":["string","null"],"default":"n/a"}`,
				`{"name":"tags","type":{"type":"array","items":"string"},"default":["a","b"]}`,
				`{"name":"attrs","type":{"type":"map","values":"long"},"default":{"k":7}}`,
				`{"name":"addr","type":{"type":"record","name":"Addr","fields":[
					{"name":"city","type":"string"},{"name":"zip","type":"string","default":"00000"}]},
				  "default":{"city":"Berlin"}}`,
			),
			writer: event(fID),
			native: map[string]any{"id": "a"},
			want: record.Row{
				"id": "a", "source": "web", "prio": int32(3), "big": int64(-9007199254740992), "ratio": float32(0.5),
				"ok": true, "fee": dec("2.56"), "neg": decimal.New(-1, -1), "raw": []byte{0xff, 'A'},
				"at": ms(1000), "day": time.Date(1970, 1, 2, 0, 0, 0, 0, time.UTC), "status": "DONE", "note": "n/a",
				"tags": []any{"a", "b"}, "attrs": map[string]any{"k": int64(7)},
				"addr": map[string]any{"city": "Berlin", "zip": "00000"},
			},
		},
		{
			name:   "writer fields the reader lacks are dropped",
			reader: event(fID),
			writer: event(fID, fCoupon, fPrice, `{"name":"extra","type":{"type":"record","name":"X","fields":[{"name":"y","type":"int"}]}}`,
				`{"name":"list","type":{"type":"array","items":"string"}}`),
			native: map[string]any{"id": "a", "coupon": goavro.Union("string", "c"), "price": rat("1.00"),
				"extra": map[string]any{"y": int32(1)}, "list": []any{"x"}},
			want: record.Row{"id": "a"},
		},
		{
			name:   "field order does not matter",
			reader: event(fID, fQtyLong, fCoupon), writer: event(fCoupon, fQtyLong, fID),
			native: map[string]any{"id": "a", "qty": int64(2), "coupon": goavro.Union("string", "c")},
			want:   record.Row{"id": "a", "qty": int64(2), "coupon": "c"},
		},
		{
			name:   "int to long",
			reader: event(fID, fQtyLong), writer: event(fID, fQtyInt),
			native: map[string]any{"id": "a", "qty": int32(-2147483648)},
			want:   record.Row{"id": "a", "qty": int64(-2147483648)},
		},
		{
			name:   "int to double",
			reader: event(fQtyDouble), writer: event(fQtyInt),
			native: map[string]any{"qty": int32(7)},
			want:   record.Row{"qty": float64(7)},
		},
		{
			name:   "float to double",
			reader: event(`{"name":"x","type":"double"}`), writer: event(`{"name":"x","type":"float"}`),
			native: map[string]any{"x": float32(0.25)},
			want:   record.Row{"x": 0.25},
		},
		{
			name:   "nullable int to nullable long",
			reader: event(`{"name":"x","type":["null","long"]}`), writer: event(`{"name":"x","type":["null","int"]}`),
			native: map[string]any{"x": goavro.Union("int", int32(5))},
			want:   record.Row{"x": int64(5)},
		},
		{
			name:   "nullable writer, non-null reader, value present",
			reader: event(fID), writer: event(`{"name":"id","type":["null","string"]}`),
			native: map[string]any{"id": goavro.Union("string", "a")},
			want:   record.Row{"id": "a"},
		},
		{
			name:   "non-null writer, nullable reader",
			reader: event(`{"name":"id","type":["string","null"]}`), writer: event(fID),
			native: map[string]any{"id": "a"},
			want:   record.Row{"id": "a"},
		},
		{
			name: "nested records in arrays and maps resolve by name",
			reader: event(`{"name":"items","type":{"type":"array","items":{"type":"record","name":"Item","fields":[
					{"name":"sku","type":"string"},{"name":"qty","type":"long"},{"name":"note","type":"string","default":"-"}]}}}`,
				`{"name":"counts","type":{"type":"map","values":"long"}}`),
			writer: event(`{"name":"items","type":{"type":"array","items":{"type":"record","name":"LineItem","namespace":"other","fields":[
					{"name":"discount","type":"double"},{"name":"qty","type":"int"},{"name":"sku","type":"string"}]}}}`,
				`{"name":"counts","type":{"type":"map","values":"int"}}`),
			native: map[string]any{
				"items":  []any{map[string]any{"sku": "a", "qty": int32(1), "discount": 0.1}, map[string]any{"sku": "b", "qty": int32(2), "discount": 0.0}},
				"counts": map[string]any{"x": int32(3)},
			},
			want: record.Row{
				"items":  []any{map[string]any{"sku": "a", "qty": int64(1), "note": "-"}, map[string]any{"sku": "b", "qty": int64(2), "note": "-"}},
				"counts": map[string]any{"x": int64(3)},
			},
		},
		{
			name:   "decimal of smaller precision, fixed base",
			reader: event(fPrice),
			writer: event(`{"name":"price","type":{"type":"fixed","name":"P","size":8,"logicalType":"decimal","precision":10,"scale":2}}`),
			native: map[string]any{"price": rat("-12.34")},
			want:   record.Row{"price": dec("-12.34")},
		},
		{
			name:   "timestamps and enums with a subset of symbols",
			reader: event(fAt, fStatus),
			writer: event(fAt, `{"name":"status","type":{"type":"enum","name":"S","symbols":["DONE"]}}`),
			native: map[string]any{"at": time.UnixMilli(5), "status": "DONE"},
			want:   record.Row{"at": ms(5), "status": "DONE"},
		},
		{
			name:   "enum with a new symbol, record using an old one",
			reader: event(fStatus),
			writer: event(`{"name":"status","type":{"type":"enum","name":"Status","symbols":["NEW","DONE","LOST"]}}`),
			native: map[string]any{"status": "NEW"},
			want:   record.Row{"status": "NEW"},
		},
		{
			name:   "enum with a new symbol, the reader's enum default stands in",
			reader: event(`{"name":"status","type":{"type":"enum","name":"Status","symbols":["NEW","DONE","UNKNOWN"],"default":"UNKNOWN"}}`),
			writer: event(`{"name":"status","type":{"type":"enum","name":"Status","symbols":["NEW","DONE","LOST"]}}`),
			native: map[string]any{"status": "LOST"},
			want:   record.Row{"status": "UNKNOWN"},
		},
		{
			name:   "uuid and string",
			reader: event(`{"name":"u","type":{"type":"string","logicalType":"uuid"}}`, `{"name":"s","type":"string"}`),
			writer: event(`{"name":"u","type":"string"}`, `{"name":"s","type":{"type":"string","logicalType":"uuid"}}`),
			native: map[string]any{"u": "x", "s": "y"},
			want:   record.Row{"u": "x", "s": "y"},
		},
		{
			name:   "writer of no fields, empty body",
			reader: event(fCoupon), writer: event(),
			native: map[string]any{},
			want:   record.Row{"coupon": nil},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reader := parseText(t, tt.reader)
			reg := newFakeRegistry(t, map[int32]string{7: tt.writer})
			d := mustConfluent(t, reader, reg.client())
			value := frame(7, encode(t, codecOf(t, tt.writer), tt.native))
			got, err := d.Decode(value)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			assertRow(t, got, tt.want)
			if err := checkShape(reader.root, got); err != nil {
				t.Fatalf("shape: %v", err)
			}
		})
	}
}

// A writer schema that cannot be read as the reader fails every record of
// its id, with the same reason, and costs one registry request.
func TestConfluentIncompatibleWriter(t *testing.T) {
	tests := []struct {
		name           string
		reader, writer string
		native         map[string]any
		field          string
		fragments      []string
	}{
		{"string for decimal", event(fPrice), event(`{"name":"price","type":"string"}`), map[string]any{"price": "1.00"},
			"price", []string{"schema id 9: writer type string cannot be read as decimal(18,2)"}},
		{"decimal scale", event(fPrice),
			event(`{"name":"price","type":{"type":"bytes","logicalType":"decimal","precision":18,"scale":3}}`),
			map[string]any{"price": rat("1")}, "price", []string{"decimal(18,3) cannot be read as decimal(18,2)"}},
		{"decimal precision narrows", event(fPrice),
			event(`{"name":"price","type":{"type":"bytes","logicalType":"decimal","precision":20,"scale":2}}`),
			map[string]any{"price": rat("1")}, "price", []string{"decimal(20,2)"}},
		{"long for int", event(fQtyInt), event(fQtyLong), map[string]any{"qty": int64(1)}, "qty", []string{"writer type long cannot be read as int"}},
		{"long for double is lossy", event(fQtyDouble), event(fQtyLong), map[string]any{"qty": int64(1)}, "qty", []string{"long cannot be read as double"}},
		{"plain long for timestamp", event(fAt), event(`{"name":"at","type":"long"}`), map[string]any{"at": int64(1)},
			"at", []string{"writer type long cannot be read as timestamp-millis"}},
		{"micros for millis", event(fAt), event(`{"name":"at","type":{"type":"long","logicalType":"timestamp-micros"}}`),
			map[string]any{"at": time.UnixMilli(1)}, "at", []string{"timestamp-micros cannot be read as timestamp-millis"}},
		{"string for enum", event(fStatus), event(`{"name":"status","type":"string"}`), map[string]any{"status": "NEW"},
			"status", []string{"cannot be read as enum Status"}},
		{"fixed size", event(`{"name":"h","type":{"type":"fixed","name":"H","size":16}}`),
			event(`{"name":"h","type":{"type":"fixed","name":"H","size":8}}`), map[string]any{"h": make([]byte, 8)},
			"h", []string{"(8 bytes, want 16)"}},
		{"required field missing", event(fID, `{"name":"channel","type":"string"}`), event(fID), map[string]any{"id": "a"},
			"channel", []string{"schema id 9", "no such field", "no default"}},
		{"nested", event(`{"name":"items","type":{"type":"array","items":{"type":"record","name":"I","fields":[` + fQtyInt + `]}}}`),
			event(`{"name":"items","type":{"type":"array","items":{"type":"record","name":"I","fields":[` + fQtyLong + `]}}}`),
			map[string]any{"items": []any{}}, "items[].qty", []string{"long cannot be read as int"}},
		{"null type for string", event(fID), event(`{"name":"id","type":"null"}`), map[string]any{"id": nil},
			"id", []string{"writer type null cannot be read as string"}},
		{"writer schema Sluice rejects", event(fID), event(fID, `{"name":"u","type":["int","string"]}`),
			map[string]any{"id": "a", "u": goavro.Union("int", int32(1))}, "", []string{"schema id 9: writer schema: ", "unions"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := newFakeRegistry(t, map[int32]string{9: tt.writer, 1: tt.reader})
			d := mustConfluent(t, parseText(t, tt.reader), reg.client())
			value := frame(9, encode(t, codecOf(t, tt.writer), tt.native))
			for i := 0; i < 3; i++ {
				_, err := d.Decode(value)
				e := checkErr(t, err, tt.field, tt.fragments...)
				if !errors.Is(e, ErrIncompatibleSchema) {
					t.Fatalf("error %q does not wrap ErrIncompatibleSchema", e)
				}
			}
			if n := reg.count(9); n != 1 {
				t.Fatalf("%d registry requests for id 9, want 1", n)
			}
		})
	}
}

// Problems that only some records of an id have fail only those records.
func TestConfluentPerRecordResolutionErrors(t *testing.T) {
	writer := event(`{"name":"status","type":{"type":"enum","name":"Status","symbols":["NEW","DONE","LOST"]}}`,
		`{"name":"id","type":["null","string"]}`)
	reader := event(fStatus, fID)
	reg := newFakeRegistry(t, map[int32]string{3: writer})
	d := mustConfluent(t, parseText(t, reader), reg.client())
	c := codecOf(t, writer)

	if _, err := d.Decode(frame(3, encode(t, c, map[string]any{"status": "NEW", "id": goavro.Union("string", "a")}))); err != nil {
		t.Fatalf("good record: %v", err)
	}
	_, err := d.Decode(frame(3, encode(t, c, map[string]any{"status": "LOST", "id": goavro.Union("string", "a")})))
	checkErr(t, err, "status", `enum symbol "LOST" is not a symbol of Status in the reader schema`)
	_, err = d.Decode(frame(3, encode(t, c, map[string]any{"status": "DONE", "id": nil})))
	checkErr(t, err, "id", "null, but the reader schema's string is not nullable")
}

func TestConfluentWireErrors(t *testing.T) {
	reg := newFakeRegistry(t, map[int32]string{1: readFile(t, schemaFile("order"))})
	d := mustConfluent(t, mustSchema(t, "order"), reg.client())
	body := validOrder(t)
	tests := []struct {
		name      string
		value     []byte
		field     string
		sentinel  error
		fragments []string
	}{
		{"tombstone", nil, "", ErrTombstone, nil},
		{"empty", []byte{}, "", ErrEmptyValue, nil},
		{"too short", []byte{0, 0, 0, 1}, "", ErrNotConfluent, []string{"not Confluent wire format: 4 bytes, want at least 5"}},
		{"magic byte", append([]byte{1}, frame(1, body)[1:]...), "", ErrNotConfluent, []string{"magic byte 0x01, want 0x00"}},
		{"plain avro", body, "", ErrNotConfluent, []string{"magic byte"}},
		{"json", []byte(`{"order_id":"x"}`), "", ErrNotConfluent, []string{"magic byte 0x7b"}},
		{"unknown id", frame(99, body), "", ErrUnknownSchemaID, []string{"decode: unknown schema id 99"}},
		{"negative id", frame(-5, body), "", ErrUnknownSchemaID, []string{"unknown schema id -5"}},
		{"truncated body", frame(1, body[:len(body)-3]), "coupon", ErrTruncated, nil},
		{"trailing bytes", frame(1, append(append([]byte{}, body...), 0, 0)), "", ErrTrailingBytes, []string{"2 trailing bytes"}},
		{"header only", frame(1, nil), "order_id", ErrTruncated, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := d.Decode(tt.value)
			e := checkErr(t, err, tt.field, tt.fragments...)
			if !errors.Is(e, tt.sentinel) {
				t.Fatalf("error %q does not wrap %v", e, tt.sentinel)
			}
			if errors.Is(e, ErrUnavailable) {
				t.Fatalf("error %q wraps ErrUnavailable", e)
			}
		})
	}
}

// A registry that cannot be asked is not the record's fault: the error is
// ErrUnavailable, never an *Error, and decoding recovers with the registry.
func TestConfluentRegistryUnavailable(t *testing.T) {
	schema := readFile(t, schemaFile("order"))
	value := frame(1, validOrder(t))
	assertUnavailable := func(t *testing.T, err error) {
		t.Helper()
		var e *Error
		if !errors.Is(err, ErrUnavailable) || errors.As(err, &e) {
			t.Fatalf("err = %v (%T), want ErrUnavailable and no *Error", err, err)
		}
	}

	t.Run("server closed", func(t *testing.T) {
		reg := newFakeRegistry(t, map[int32]string{1: schema})
		d := mustConfluent(t, mustSchema(t, "order"), reg.client())
		reg.Close()
		_, err := d.Decode(value)
		assertUnavailable(t, err)
		if !strings.Contains(err.Error(), "schema id 1") {
			t.Fatalf("err %q does not name the id", err)
		}
	})

	t.Run("500 then recovery", func(t *testing.T) {
		reg := newFakeRegistry(t, map[int32]string{1: schema})
		var down atomic.Bool
		down.Store(true)
		reg.Intercept(func(w http.ResponseWriter, r *http.Request) bool {
			if !down.Load() {
				return false
			}
			w.WriteHeader(http.StatusInternalServerError)
			w.Write([]byte(`{"error_code":50001,"message":"store down"}`))
			return true
		})
		d := mustConfluent(t, mustSchema(t, "order"), reg.client())
		_, err := d.Decode(value)
		assertUnavailable(t, err)
		down.Store(false)
		if _, err := d.Decode(value); err != nil {
			t.Fatalf("after recovery: %v", err)
		}
	})

	t.Run("context ended", func(t *testing.T) {
		reg := newFakeRegistry(t, map[int32]string{1: schema})
		reg.delay = 200 * time.Millisecond
		d := mustConfluent(t, mustSchema(t, "order"), reg.client())
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		defer cancel()
		_, err := d.DecodeContext(ctx, value)
		assertUnavailable(t, err)
	})

	t.Run("other fetcher errors", func(t *testing.T) {
		d := mustConfluent(t, mustSchema(t, "order"), failingFetcher{errors.New("boom")})
		_, err := d.Decode(value)
		assertUnavailable(t, err)
	})
}

type failingFetcher struct{ err error }

func (f failingFetcher) SchemaByID(context.Context, int32) (string, error) { return "", f.err }

// An id that holds a Protobuf schema fails its records, permanently.
func TestConfluentUnsupportedSchemaType(t *testing.T) {
	reg := newFakeRegistry(t, nil)
	reg.SeedSchema("orders-value", 1, 4, sr.Schema{Schema: `syntax = "proto3";`, Type: sr.TypeProtobuf})
	d := mustConfluent(t, mustSchema(t, "order"), reg.client())
	_, err := d.Decode(frame(4, validOrder(t)))
	e := checkErr(t, err, "", `schema id 4 is unsupported: schemaType "PROTOBUF", want AVRO`)
	if !errors.Is(e, ErrIncompatibleSchema) {
		t.Fatalf("error %q does not wrap ErrIncompatibleSchema", e)
	}
}

// Each id is fetched once, however many records and goroutines decode it.
func TestConfluentCachesPerID(t *testing.T) {
	v1 := orderVariant(t, withoutField("coupon"))
	reg := newFakeRegistry(t, map[int32]string{1: readFile(t, schemaFile("order")), 2: v1,
		3: orderVariant(t, withoutField("channel"))}) // 3 cannot be read: channel has no default
	reg.delay = 20 * time.Millisecond
	d := mustConfluent(t, mustSchema(t, "order"), reg.client())
	values := map[int32][]byte{
		1: frame(1, validOrder(t)),
		2: frame(2, encode(t, codecOf(t, v1), map[string]any{
			"order_id": "o", "customer_id": "c", "created_at": time.UnixMilli(1), "currency": "EUR",
			"total": rat("1.00"), "status": "CREATED", "channel": "WEB", "shipping_country": "DE", "items": []any{},
		})),
		3: frame(3, []byte{0}),
	}

	const goroutines, rounds = 16, 50
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < rounds; i++ {
				for id := int32(1); id <= 3; id++ {
					row, err := d.Decode(values[id])
					switch {
					case id == 3 && err == nil:
						errs <- errors.New("id 3 decoded")
						return
					case id == 3:
						var e *Error
						if !errors.As(err, &e) || e.Field != "channel" {
							errs <- err
							return
						}
					case err != nil:
						errs <- err
						return
					case len(row) != 10:
						errs <- errors.New("row of " + strconv.Itoa(len(row)) + " fields")
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for id := int32(1); id <= 3; id++ {
		if n := reg.count(id); n != 1 {
			t.Errorf("id %d: %d registry requests, want 1", id, n)
		}
	}
}

// An unknown id is asked again only once the registry's negative cache
// expires; then a schema registered meanwhile is found.
func TestConfluentNegativeCacheExpiry(t *testing.T) {
	reg := newFakeRegistry(t, nil)
	var mu sync.Mutex
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	d := mustConfluent(t, mustSchema(t, "order"),
		reg.client(registry.WithClock(clock), registry.WithNegativeTTL(30*time.Second)))
	value := frame(5, validOrder(t))

	for i := 0; i < 10; i++ {
		if _, err := d.Decode(value); !errors.Is(err, ErrUnknownSchemaID) {
			t.Fatalf("err = %v, want unknown schema id", err)
		}
	}
	reg.register(5, readFile(t, schemaFile("order")))
	advance(29 * time.Second)
	if _, err := d.Decode(value); !errors.Is(err, ErrUnknownSchemaID) {
		t.Fatalf("within the TTL: err = %v, want the cached unknown", err)
	}
	if n := reg.count(5); n != 1 {
		t.Fatalf("within the TTL: %d requests, want 1", n)
	}
	advance(time.Second)
	if _, err := d.Decode(value); err != nil {
		t.Fatalf("after the TTL: %v", err)
	}
	if n := reg.count(5); n != 2 {
		t.Fatalf("after the TTL: %d requests, want 2", n)
	}
}

// Defaults are copied into each Row: changing one Row's default list or
// bytes does not change the next Row's.
func TestConfluentDefaultsNotShared(t *testing.T) {
	reader := event(fID, `{"name":"tags","type":{"type":"array","items":"string"},"default":["a"]}`,
		`{"name":"raw","type":"bytes","default":"x"}`)
	reg := newFakeRegistry(t, map[int32]string{1: event(fID)})
	d := mustConfluent(t, parseText(t, reader), reg.client())
	value := frame(1, encode(t, codecOf(t, event(fID)), map[string]any{"id": "a"}))
	first, err := d.Decode(value)
	if err != nil {
		t.Fatal(err)
	}
	first["tags"].([]any)[0] = "changed"
	first["raw"].([]byte)[0] = 'y'
	second, err := d.Decode(value)
	if err != nil {
		t.Fatal(err)
	}
	assertRow(t, second, record.Row{"id": "a", "tags": []any{"a"}, "raw": []byte("x")})
}

func TestNewConfluentErrors(t *testing.T) {
	order := mustSchema(t, "order")
	if _, err := New(FormatAvroConfluent, schemaFile("order")); !errors.Is(err, ErrNoRegistry) ||
		!strings.Contains(err.Error(), "schema_registry.url") {
		t.Errorf("New(avro-confluent) = %v, want ErrNoRegistry naming schema_registry.url", err)
	}
	if _, err := NewFromSchema(FormatAvroConfluent, order); !errors.Is(err, ErrNoRegistry) {
		t.Errorf("NewFromSchema(avro-confluent) = %v, want ErrNoRegistry", err)
	}
	var typedNil *registry.Client
	if _, err := NewFromSchemaWith(FormatAvroConfluent, order, typedNil); !errors.Is(err, ErrNoRegistry) {
		t.Errorf("NewFromSchemaWith(typed nil) = %v, want ErrNoRegistry", err)
	}
	for _, format := range []string{FormatAvro, FormatJSON} {
		if _, err := NewFromSchemaWith(format, order, nil); err != nil {
			t.Errorf("NewFromSchemaWith(%s, nil registry) = %v", format, err)
		}
	}
	if _, err := NewFromSchemaWith("xml", order, mapFetcher{}); !errors.Is(err, ErrUnsupportedFormat) {
		t.Errorf("NewFromSchemaWith(xml) = %v", err)
	}

	for _, tt := range []struct{ field, fragment string }{
		{`{"name":"n","type":"int","default":"x"}`, `field "n": invalid default: string is not a value of int`},
		{`{"name":"n","type":"int","default":1.5}`, "1.5 is not an integer"},
		{`{"name":"n","type":"int","default":2147483648}`, "not an integer in range"},
		{`{"name":"s","type":"string","default":null}`, "null is not a value of string"},
		{`{"name":"e","type":{"type":"enum","name":"E","symbols":["A"]},"default":"B"}`, `"B" is not a symbol`},
		{`{"name":"f","type":{"type":"fixed","name":"F","size":2},"default":"x"}`, "1 bytes for fixed F of 2"},
		{`{"name":"e","type":{"type":"enum","name":"E","symbols":["A"],"default":"Z"}}`, `enum test.E: default "Z" is not one of its symbols`},
		{`{"name":"b","type":"bytes","default":"\u0100"}`, "U+0100 is not a byte"},
		{`{"name":"d","type":{"type":"bytes","logicalType":"decimal","precision":2,"scale":0},"default":"\u0001\u0000"}`, "more than 2 digits"},
		{`{"name":"r","type":{"type":"record","name":"R","fields":[{"name":"x","type":"int"}]},"default":{}}`, "x: missing"},
	} {
		_, err := NewConfluent(parseText(t, event(tt.field)), mapFetcher{})
		if err == nil || !strings.Contains(err.Error(), tt.fragment) {
			t.Errorf("NewConfluent(%s) = %v, want an error containing %q", tt.field, err, tt.fragment)
		}
	}
}

func FuzzConfluent(f *testing.F) {
	orderText := readFile(f, schemaFile("order"))
	v1 := orderVariant(f, withoutField("coupon"))
	v3 := orderVariant(f, withField(`{"name":"gift_note","type":["null","string"],"default":null}`))
	fetcher := mapFetcher{1: orderText, 2: v1, 3: v3, 4: orderVariant(f, withoutField("channel"))}
	base := map[string]any{
		"order_id": "o", "customer_id": "c", "created_at": time.UnixMilli(1_795_000_000_000), "currency": "EUR",
		"total": rat("-0.01"), "status": "CONFIRMED", "channel": "STORE", "shipping_country": "DE",
		"items": []any{map[string]any{"sku": "a", "quantity": int32(3), "unit_price": rat("9.99")}},
	}
	f.Add(frame(1, validOrder(f)))
	f.Add(frame(2, encode(f, codecOf(f, v1), base)))
	withNote := map[string]any{"coupon": nil, "gift_note": goavro.Union("string", "hi")}
	for k, v := range base {
		withNote[k] = v
	}
	f.Add(frame(3, encode(f, codecOf(f, v3), withNote)))
	f.Add(frame(4, []byte{2, 'o'}))
	f.Add(frame(99, validOrder(f)))
	f.Add([]byte{0, 0, 0})
	f.Add([]byte{1, 0, 0, 0, 1, 0})

	reader := mustSchema(f, "order")
	d := mustConfluent(f, reader, fetcher)
	w := writerCodec(f, "order")
	plain := mustDecoder(f, FormatAvro, "order")
	f.Fuzz(func(t *testing.T, value []byte) {
		row, err := d.Decode(value)
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error %T is not *Error: %v", err, err)
			}
			return
		}
		fresh, err := d.Decode(value)
		if err != nil {
			t.Fatalf("second decode failed: %v", err)
		}
		checkDecoded(t, reader, w, plain, row, fresh)
	})
}

func BenchmarkDecodeOrderConfluent(b *testing.B) {
	for _, tt := range []struct {
		name   string
		writer string
	}{
		{"same schema", readFile(b, schemaFile("order"))},
		{"resolved", orderVariant(b, withField(`{"name":"gift_note","type":["null","string"],"default":null}`))},
	} {
		b.Run(tt.name, func(b *testing.B) {
			native := map[string]any{
				"order_id": "ord-000000123456", "customer_id": "cus-000042", "created_at": ms(1_795_000_000_123),
				"currency": "EUR", "total": rat("259.47"), "status": "CONFIRMED", "channel": "WEB",
				"shipping_country": "DE", "coupon": goavro.Union("string", "WINTER10"), "gift_note": nil,
				"items": []any{
					map[string]any{"sku": "SKU-RED-SHOE-42", "quantity": int32(1), "unit_price": rat("89.99")},
					map[string]any{"sku": "SKU-BLUE-SOCK-M", "quantity": int32(3), "unit_price": rat("4.50")},
				},
			}
			value := frame(1, encode(b, codecOf(b, tt.writer), native))
			d := mustConfluent(b, mustSchema(b, "order"), mapFetcher{1: tt.writer})
			b.SetBytes(int64(len(value)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := d.Decode(value); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
