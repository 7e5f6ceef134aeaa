package decode

import (
	"errors"
	"fmt"
	"math/rand"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/linkedin/goavro/v2"
	"github.com/shopspring/decimal"

	"github.com/sluice-etl/sluice/pkg/record"
)

// A reader schema with every kind of field ColumnAvro puts, and a writer
// schema that resolves into it at the top level: promotions (int -> long,
// int -> double, float -> double), an enum with a symbol the reader lacks
// (its default stands in), a field the reader drops and one it defaults.
const (
	colsReader = `{"type": "record", "name": "R", "fields": [
		{"name": "id", "type": "string"},
		{"name": "n", "type": "long"},
		{"name": "x", "type": "double"},
		{"name": "y", "type": "double"},
		{"name": "f", "type": "float"},
		{"name": "b", "type": "boolean"},
		{"name": "i32", "type": "int"},
		{"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A", "B", "Z"], "default": "Z"}},
		{"name": "d", "type": ["null", {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 3}], "default": null},
		{"name": "wide", "type": {"type": "bytes", "logicalType": "decimal", "precision": 30, "scale": 2}},
		{"name": "fx", "type": {"type": "fixed", "name": "F4", "size": 4}},
		{"name": "raw", "type": "bytes"},
		{"name": "day", "type": {"type": "int", "logicalType": "date"}},
		{"name": "us", "type": {"type": "long", "logicalType": "timestamp-micros"}},
		{"name": "ms", "type": ["null", {"type": "long", "logicalType": "timestamp-millis"}], "default": null},
		{"name": "tags", "type": {"type": "map", "values": "string"}},
		{"name": "sub", "type": {"type": "record", "name": "S", "fields": [{"name": "k", "type": "string"}]}},
		{"name": "items", "type": {"type": "array", "items": {"type": "record", "name": "I", "fields": [
			{"name": "q", "type": "int"},
			{"name": "p", "type": {"type": "bytes", "logicalType": "decimal", "precision": 5, "scale": 2}}]}}},
		{"name": "added", "type": "string", "default": "dflt"},
		{"name": "nocol", "type": "string"}
	]}`
	colsWriter = `{"type": "record", "name": "W", "fields": [
		{"name": "id", "type": "string"},
		{"name": "n", "type": "int"},
		{"name": "x", "type": "int"},
		{"name": "y", "type": "float"},
		{"name": "f", "type": "float"},
		{"name": "b", "type": "boolean"},
		{"name": "i32", "type": "int"},
		{"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A", "B", "C"]}},
		{"name": "d", "type": ["null", {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 3}], "default": null},
		{"name": "wide", "type": {"type": "bytes", "logicalType": "decimal", "precision": 30, "scale": 2}},
		{"name": "fx", "type": {"type": "fixed", "name": "F4", "size": 4}},
		{"name": "raw", "type": "bytes"},
		{"name": "day", "type": {"type": "int", "logicalType": "date"}},
		{"name": "us", "type": {"type": "long", "logicalType": "timestamp-micros"}},
		{"name": "ms", "type": ["null", {"type": "long", "logicalType": "timestamp-millis"}], "default": null},
		{"name": "tags", "type": {"type": "map", "values": "string"}},
		{"name": "sub", "type": {"type": "record", "name": "S", "fields": [{"name": "k", "type": "string"}]}},
		{"name": "items", "type": {"type": "array", "items": {"type": "record", "name": "I", "fields": [
			{"name": "q", "type": "int"},
			{"name": "p", "type": {"type": "bytes", "logicalType": "decimal", "precision": 5, "scale": 2}}]}}},
		{"name": "gone", "type": ["null", {"type": "bytes", "logicalType": "decimal", "precision": 4, "scale": 0}]},
		{"name": "nocol", "type": "string"}
	]}`
)

// TestColumnAvroPutsTheRowPathsValues decodes random records, good and
// bad, through the row decoder and ColumnAvro (into a Block that records
// every put) and wants, for each record, the same error (text and
// sentinel) or, cell by cell, puts that mean the Row's values: PutString
// a string, PutInt an int64, PutDecimal a decimal of that coefficient and
// exponent, PutTime a UTC time, PutNull a nil, PutValue the Row's value
// itself; and the side list of the quantities the Row's items hold. Plain
// Avro (reader = writer) and avro-confluent with the same schema and with
// the resolving writer. Each with one field that no column takes, and
// again with the side list's array, a nullable decimal and a map left
// without columns too: then the scan, not goavro, checks those and fills
// the side list (avroLayout.part); and with the side list's array and the
// record field left without columns, so that every field goavro is given
// is self-contained: then each goes to a codec of its own type, and no
// record map is built (avroLayout.codecs).
func TestColumnAvroPutsTheRowPathsValues(t *testing.T) {
	reader := parseText(t, colsReader)
	cases := []struct {
		format string
		id     int32
		writer string
	}{
		{FormatAvro, 0, colsReader},
		{FormatAvroConfluent, 1, colsReader},
		{FormatAvroConfluent, 2, colsWriter},
	}
	reg := mapFetcher{1: colsReader, 2: colsWriter}
	n := 3000
	if testing.Short() {
		n = 300
	}
	unloaded := [][]string{{"nocol"}, {"nocol", "items", "d", "tags"}, {"nocol", "items", "sub"}}
	for _, c := range cases {
		for _, un := range unloaded {
			t.Run(fmt.Sprintf("%s/%d/%s", c.format, c.id, strings.Join(un, ",")), func(t *testing.T) {
				testColumnAvro(t, reader, reg, c.format, c.id, c.writer, un, n)
			})
		}
	}
}

// testColumnAvro is one case of TestColumnAvroPutsTheRowPathsValues: n
// records of writer, framed with id for avro-confluent, into a table
// without the columns unloaded names.
func testColumnAvro(t *testing.T, reader *Schema, reg SchemaFetcher, format string, id int32, writer string, unloaded []string, n int) {
	row, err := NewFromSchemaWith(format, reader, reg)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]int{}
	for i, f := range reader.Fields {
		if !slices.Contains(unloaded, f.Name) {
			names[f.Name] = i
		}
	}
	column := func(name string) int {
		if i, ok := names[name]; ok {
			return i
		}
		return -1
	}
	cols, ok, err := NewColumnAvro(format, reader, reg, column, []string{"items.q"})
	if err != nil || !ok {
		t.Fatalf("NewColumnAvro: %v %v", ok, err)
	}
	wc := rawWriter(t, writer)
	r := rand.New(rand.NewSource(int64(id) + 1))
	stats := map[string]int{}
	for i := 0; i < n; i++ {
		v, err := wc.BinaryFromNative(nil, randomColsRecord(r, writer == colsWriter))
		if err != nil {
			t.Fatal(err)
		}
		if format == FormatAvroConfluent {
			v = append(frame(id, nil), v...)
		}
		switch r.Intn(40) {
		case 0:
			v = v[:r.Intn(len(v))] // truncated
		case 1:
			v = append(v, 0)
		case 2:
			if format == FormatAvroConfluent {
				v = append([]byte{1}, v[1:]...)
			}
		case 3:
			if format == FormatAvroConfluent {
				v = append(frame(77, nil), v[5:]...)
			}
		}
		stats[compareColumnAvro(t, i, row, cols, reader, v, unloaded)]++
	}
	t.Logf("%v", stats)
	if stats["ok"] < n/2 || stats["error"] < n/20 {
		t.Errorf("outcomes %v: want mostly good records and some bad", stats)
	}
	l := cols.plain
	if l == nil {
		l = (*cols.layouts.Load())[id]
	}
	perField := slices.Contains(unloaded, "items") && slices.Contains(unloaded, "sub")
	if (l.codecs != nil) != perField || (l.part != nil) == perField || l.drop[l.dec.plan.fieldIndex["items"]] != slices.Contains(unloaded, "items") {
		t.Errorf("goavro is given every field but those without a column (%v), by field codecs %v: part %v, field codecs %v, drop %v",
			unloaded, perField, l.part != nil, l.codecs != nil, l.drop)
	}
}

// compareColumnAvro decodes v on both paths and reports a difference; it
// returns "ok" or "error" (both failed alike).
func compareColumnAvro(t *testing.T, i int, row Decoder, cols *ColumnAvro, reader *Schema, v []byte, unloaded []string) string {
	t.Helper()
	want, werr := row.Decode(v)
	blk := &putBlock{lists: map[string]*record.IntList{"items.q": {Offsets: []int32{0}}}}
	derr, lerr := cols.DecodeInto(v, blk)
	if lerr != nil {
		t.Fatalf("record %d: load error %v from a block that refuses nothing", i, lerr)
	}
	if len(blk.rows) != 1 {
		t.Fatalf("record %d: %d rows appended, want 1", i, len(blk.rows))
	}
	if werr != nil || derr != nil {
		if fmt.Sprint(werr) != fmt.Sprint(derr) || errors.Unwrap(werr) != errors.Unwrap(derr) {
			t.Errorf("record %d: row path %v (%v), columnar %v (%v)", i, werr, errors.Unwrap(werr), derr, errors.Unwrap(derr))
		}
		if _, ok := derr.(*Error); !ok {
			t.Errorf("record %d: columnar error %T, want *Error", i, derr)
		}
		if blk.rows[0] != nil {
			t.Errorf("record %d: failed, but its row is not a placeholder", i)
		}
		return "error"
	}
	got := blk.rows[0]
	if got == nil {
		t.Fatalf("record %d: a placeholder row for a good record", i)
	}
	for j, f := range reader.Fields {
		c, put := got[j]
		if slices.Contains(unloaded, f.Name) {
			if put {
				t.Errorf("record %d: field %s has no column but was put", i, f.Name)
			}
			continue
		}
		if !put {
			t.Errorf("record %d: field %s not put", i, f.Name)
			continue
		}
		if err := c.means(want[f.Name]); err != nil {
			t.Errorf("record %d: field %s: %v", i, f.Name, err)
		}
	}
	var qs []int64
	for _, it := range want["items"].([]any) {
		qs = append(qs, int64(it.(map[string]any)["q"].(int32)))
	}
	l := blk.lists["items.q"]
	if fmt.Sprint(l.Row(0)) != fmt.Sprint(qs) && len(qs)+len(l.Row(0)) > 0 {
		t.Errorf("record %d: side list %v, want %v", i, l.Row(0), qs)
	}
	return "ok"
}

// randomColsRecord is a native value for the raw (logical types
// stripped) writer codec: mostly valid, now and then a decimal beyond its
// precision; resolving, the writer's types.
func randomColsRecord(r *rand.Rand, resolving bool) map[string]any {
	pick := func(s ...string) string { return s[r.Intn(len(s))] }
	dec := func(limit int64, bad bool) []byte {
		v := r.Int63n(2*limit-1) - limit + 1
		if bad {
			v = limit + r.Int63n(10)
			if r.Intn(2) == 0 {
				v = -v
			}
		}
		b := unscaledBE(v)
		if r.Intn(5) == 0 { // padded beyond 8 bytes: the wide path
			pad := byte(0)
			if v < 0 {
				pad = 0xff
			}
			b = append([]byte{pad, pad, pad, pad, pad, pad, pad, pad}, b...)
		}
		return b
	}
	var items []any
	for k := r.Intn(4); k > 0; k-- {
		items = append(items, map[string]any{"q": int32(r.Intn(20) - 5), "p": dec(100000, r.Intn(60) == 0)})
	}
	m := map[string]any{
		"id": pick("a", "", "é", "long id value"), "f": float32(r.NormFloat64()), "b": r.Intn(2) == 0,
		"i32": int32(r.Uint32()), "e": pick("A", "B"),
		"d": nil, "wide": dec(1e18, false), "fx": []byte{1, 2, 3, byte(r.Intn(256))}, "raw": []byte(pick("", "x", "\x00\xff")),
		"day": int32(r.Intn(40000) - 1000), "us": r.Int63n(1<<55) - 1<<54, "ms": nil,
		"tags": map[string]any{pick("k", "l"): pick("v", "w")}, "sub": map[string]any{"k": pick("s", "t")},
		"items": items, "nocol": "nc",
	}
	if r.Intn(3) != 0 {
		m["d"] = goavro.Union("bytes", dec(1e9, r.Intn(30) == 0))
	}
	if r.Intn(2) == 0 {
		m["ms"] = goavro.Union("long", r.Int63n(1<<45))
	}
	if resolving {
		m["n"], m["x"], m["y"] = int32(r.Uint32()), int32(r.Uint32()), float32(r.NormFloat64())
		m["e"] = pick("A", "B", "C")
		m["gone"] = nil
		if r.Intn(2) == 0 {
			m["gone"] = goavro.Union("bytes", dec(1e4, r.Intn(30) == 0)) // dropped, but normalised first
		}
	} else {
		m["n"], m["x"], m["y"] = r.Int63(), r.NormFloat64(), r.NormFloat64()
		m["added"] = pick("p", "q")
	}
	return m
}

func rawWriter(t testing.TB, schema string) *goavro.Codec {
	c, err := goavro.NewCodec(strings.ReplaceAll(schema, `"logicalType"`, `"noLogicalType"`))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// unscaledBE is v as big-endian two's complement in the fewest bytes.
func unscaledBE(v int64) []byte {
	b := []byte{byte(v >> 56), byte(v >> 48), byte(v >> 40), byte(v >> 32), byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}
	i := 0
	for i < 7 && (b[i] == 0 && b[i+1]&0x80 == 0 || b[i] == 0xff && b[i+1]&0x80 != 0) {
		i++
	}
	return b[i:]
}

// putBlock records the puts of each row (nil: a placeholder).
type putBlock struct {
	record.Block
	rows  []map[int]cell
	cur   map[int]cell
	lists map[string]*record.IntList
}

type cell struct {
	kind string
	v    any
}

func (b *putBlock) put(col int, kind string, v any) {
	if col < 0 {
		return
	}
	if b.cur == nil {
		b.cur = map[int]cell{}
	}
	if _, dup := b.cur[col]; dup {
		panic(fmt.Sprintf("column %d put twice", col))
	}
	b.cur[col] = cell{kind, v}
}

func (b *putBlock) Rows() int                   { return len(b.rows) }
func (b *putBlock) PutString(col int, s string) { b.put(col, "string", s) }
func (b *putBlock) PutInt(col int, v int64)     { b.put(col, "int", v) }
func (b *putBlock) PutDecimal(col int, u int64, scale int32) {
	b.put(col, "decimal", decimal.New(u, -scale))
}
func (b *putBlock) PutTime(col int, t time.Time) { b.put(col, "time", t) }
func (b *putBlock) PutNull(col int)              { b.put(col, "null", nil) }
func (b *putBlock) PutValue(col int, v any)      { b.put(col, "value", v) }
func (b *putBlock) Ints(name string) *record.IntList {
	return b.lists[name]
}

func (b *putBlock) EndRow() error {
	if b.cur == nil {
		b.cur = map[int]cell{}
	}
	b.rows, b.cur = append(b.rows, b.cur), nil
	b.closeLists()
	return nil
}

func (b *putBlock) FailRow() {
	b.rows, b.cur = append(b.rows, nil), nil
	for _, l := range b.lists {
		l.Vals = l.Vals[:l.Offsets[len(l.Offsets)-1]]
	}
	b.closeLists()
}

func (b *putBlock) closeLists() {
	for _, l := range b.lists {
		l.Offsets = append(l.Offsets, int32(len(l.Vals)))
	}
}

// means says whether the put stands for the Row value want (the Block's
// typed puts load as PutValue of that value would).
func (c cell) means(want any) error {
	switch c.kind {
	case "string":
		if _, ok := want.(string); !ok {
			return fmt.Errorf("PutString for a %T", want)
		}
	case "int":
		if _, ok := want.(int64); !ok {
			return fmt.Errorf("PutInt for a %T", want)
		}
	case "decimal":
		if _, ok := want.(decimal.Decimal); !ok {
			return fmt.Errorf("PutDecimal for a %T", want)
		}
	case "time":
		if _, ok := want.(time.Time); !ok {
			return fmt.Errorf("PutTime for a %T", want)
		}
	case "null":
		if want != nil {
			return fmt.Errorf("PutNull for %v", want)
		}
		return nil
	}
	if isNaN(c.v) && isNaN(want) && reflect.TypeOf(c.v) == reflect.TypeOf(want) {
		return nil // the same NaN, which == does not see
	}
	return sameValue(c.v, want)
}

func isNaN(v any) bool {
	switch x := v.(type) {
	case float32:
		return x != x
	case float64:
		return x != x
	}
	return false
}

// FuzzColumnAvro feeds arbitrary bytes (seeded with valid records of both
// writer schemas) to the row decoder and ColumnAvro, plain and
// avro-confluent, into a table without the nocol column, one without the
// side list's array, a nullable decimal and a map either (whose values the
// scan checks instead of goavro), and one without the array and the
// record field (each field goavro is given goes to its own codec): the
// same error or the same values, never a panic.
func FuzzColumnAvro(f *testing.F) {
	r := rand.New(rand.NewSource(7))
	for _, w := range []string{colsReader, colsWriter} {
		c := rawWriter(f, w)
		for i := 0; i < 20; i++ {
			v, err := c.BinaryFromNative(nil, randomColsRecord(r, w == colsWriter))
			if err != nil {
				f.Fatal(err)
			}
			id := int32(1)
			if w == colsWriter {
				id = 2
			}
			f.Add(frame(id, v))
		}
	}
	reader := parseText(f, colsReader)
	reg := mapFetcher{1: colsReader, 2: colsWriter}
	type pair struct {
		row      Decoder
		cols     *ColumnAvro
		unloaded []string
		framed   bool
	}
	var pairs []pair
	for _, unloaded := range [][]string{{"nocol"}, {"nocol", "items", "d", "tags"}, {"nocol", "items", "sub"}} {
		column := func(name string) int {
			for i, fl := range reader.Fields {
				if fl.Name == name && !slices.Contains(unloaded, name) {
					return i
				}
			}
			return -1
		}
		for _, format := range []string{FormatAvro, FormatAvroConfluent} {
			row, err := NewFromSchemaWith(format, reader, reg)
			if err != nil {
				f.Fatal(err)
			}
			cols, ok, err := NewColumnAvro(format, reader, reg, column, []string{"items.q"})
			if err != nil || !ok {
				f.Fatal(ok, err)
			}
			pairs = append(pairs, pair{row, cols, unloaded, format == FormatAvroConfluent})
		}
	}
	f.Fuzz(func(t *testing.T, v []byte) {
		for _, p := range pairs {
			switch {
			case p.framed:
				compareColumnAvro(t, 0, p.row, p.cols, reader, v, p.unloaded)
			case len(v) >= 5:
				compareColumnAvro(t, 0, p.row, p.cols, reader, v[5:], p.unloaded)
			}
		}
	})
}
