package decode

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/linkedin/goavro/v2"

	"github.com/sluice-etl/sluice/pkg/record"
)

// ColumnAvro decodes Avro records — format avro, or avro-confluent with
// its writer schemas resolved into the reader's — straight into the
// columns of a record.Block (the columnar path), without a Row per record.
//
// A record's bytes go through the row decoder's first half unchanged: the
// pre-scan (avroscan.go) and goavro on the schema without logical types
// (avroDecoder.native), and for avro-confluent its framing and its writer
// decoder per schema id (confluent.go). Then, instead of normalising
// goavro's map into a Row, each top-level field is put into the block
// with the typed puts: strings as they are, a long as an int, a decimal's
// unscaled bytes as an int64 at the field's scale, timestamps and dates as
// times, a null as a null. What is unusual (bytes, floats, an int, which a
// Row boxes as an int32, a decimal wider than an int64, arrays and maps
// that have a column) goes in through PutValue as the row path converts
// it, so both paths store the same values.
//
// Only what would fail the row path's normalisation is checked before the
// puts (a decimal beyond its precision, a null that the reader schema
// refuses, an enum symbol the reader lacks, a Go type goavro should not
// have returned); when a check fails, or the writer schema needs a
// resolution of nested values, the record is normalised and resolved by
// the row path's own code, whose error is the record's and whose Row goes
// in through PutValue. Errors are therefore the row decoder's, text and
// sentinel.
//
// Safe for concurrent use (each call appends to the block it is given).
type ColumnAvro struct {
	row    Decoder           // the row decoder: Decode, DecodeContext
	plain  *avroLayout       // format avro
	conf   *confluentDecoder // format avro-confluent
	reader *plan
	column func(string) int
	needs  []string
	// lists binds the reader's array fields to the side lists they fill.
	lists map[string]sideList

	// layouts maps schema ids to their layouts (avro-confluent); replaced,
	// never changed, as confluentDecoder.ids is.
	layouts atomic.Pointer[map[int32]*avroLayout]
	mu      sync.Mutex
}

// sideList is a side list (Block.Ints) an array-of-records field fills
// with the int subfield sub of each element.
type sideList struct {
	name, sub string
}

// avroLayout is how the records of one writer schema go into the block:
// per reader field, where its value comes from and how it is put. Built
// once per schema id; immutable.
type avroLayout struct {
	dec  *avroDecoder // the writer's decoder (scan, goavro)
	res  *resolver    // the writer's resolution into the reader, nil when none
	fail *Error       // every record of this id fails with this
	// slow: the resolution changes values inside arrays, maps or records,
	// so every record is normalised and resolved as a Row.
	slow   bool
	fields []avroCol
	// checks are the writer's fields (by index) whose normalisation can
	// fail (the fields the reader drops included: the row path
	// normalises those too).
	checks []int

	// part, when not nil, is goavro's codec for the writer schema without
	// the fields no column takes (drop marks them, by writer index): the
	// scan checks those as the row path would (a decimal beyond its
	// precision), and fills the side list ints feeds (list, by its int
	// subfield's plan in the writer's) on its way, so goavro never builds
	// what nothing reads: for orders, the items and their maps.
	// partChecks are the checks of the fields part keeps.
	part       *goavro.Codec
	drop       []bool
	partChecks []int
	ints       *plan
	list       string
	// codecs, when not nil, has goavro's codec of each kept writer field's
	// type alone (nil for a dropped one): when every kept field's type is
	// self-contained (no record, no reference to a named type defined
	// elsewhere), the walk hands each kept field's bytes to its codec
	// where it finds them, and no record map is built at all (fieldCodecs).
	// Then part is used only when this is nil.
	codecs []*goavro.Codec
}

// avroCol is one reader field of a layout.
type avroCol struct {
	name string // the reader's field (and the writer's, when it has it)
	col  int    // block column, -1 when the table has none
	wp   *plan  // the writer's type; nil: absent from the writer, def is the value
	wi   int    // the writer's field index, when wp is not nil
	def  any
	res  *resolver // the field's scalar resolution, nil when none
	list string    // the side list it fills, "" when none
	sub  string
}

// NewColumnAvro binds the reader schema's top-level fields to the table's
// columns (column gives the index of a name, -1 if absent) for format avro
// or avro-confluent (reg: the schema registry, as for NewConfluent); needs
// names the side lists the transforms read, as "field.subfield" of a
// non-nullable array of records with a non-nullable int subfield
// (order_items: "items.quantity"). It says false when the schema is not a
// record, a side list cannot be filled, or format is another; err is a
// configuration error, as NewFromSchemaWith's. Called once per pipeline at
// start-up; it does not contact the registry.
func NewColumnAvro(format string, s *Schema, reg SchemaFetcher, column func(string) int, needs []string) (*ColumnAvro, bool, error) {
	if format != FormatAvro && format != FormatAvroConfluent {
		return nil, false, nil
	}
	row, err := NewFromSchemaWith(format, s, reg)
	if err != nil {
		return nil, false, err
	}
	d := &ColumnAvro{row: row, reader: newPlan(s.root), column: column, lists: map[string]sideList{}}
	if d.reader.op != opRecord || d.reader.nullable {
		return nil, false, nil
	}
	for _, n := range needs {
		field, sub, _ := strings.Cut(n, ".")
		i, ok := d.reader.fieldIndex[field]
		if !ok {
			return nil, false, nil
		}
		if d.reader.fields[i].plan.intSubfield(sub) == nil {
			return nil, false, nil
		}
		if _, dup := d.lists[field]; dup {
			return nil, false, nil // one list per field is all DecodeInto fills
		}
		d.lists[field] = sideList{name: n, sub: sub}
	}
	d.needs = append([]string(nil), needs...)
	switch a := row.(type) {
	case *avroDecoder:
		d.plain = d.layout(a, nil)
	case *confluentDecoder:
		d.conf = a
	}
	return d, true, nil
}

// layout compiles how records written with dec's schema (resolved by res
// into the reader's, when not nil) go into the block.
func (d *ColumnAvro) layout(dec *avroDecoder, res *resolver) *avroLayout {
	l := &avroLayout{dec: dec, res: res}
	wp := dec.plan
	for i, f := range wp.fields {
		if f.plan.avroWork {
			l.checks = append(l.checks, i)
		}
	}
	var fres map[string]*fieldResolver
	if res != nil {
		if res.op != resRecord {
			l.slow = true // cannot happen: both are records
		}
		fres = map[string]*fieldResolver{}
		for i := range res.fields {
			fres[res.fields[i].name] = &res.fields[i]
		}
	}
	for _, rf := range d.reader.fields {
		c := avroCol{name: rf.name, col: d.column(rf.name)}
		if sl, ok := d.lists[rf.name]; ok {
			c.list, c.sub = sl.name, sl.sub
		}
		fr := fres[rf.name]
		switch {
		case fr != nil && fr.res == nil: // absent from the writer
			c.def = fr.def
			if c.list != "" {
				l.slow = true
			}
		case fr != nil:
			switch fr.res.op {
			case resKeep, resIntToLong, resIntToDouble, resFloatToDouble, resEnum:
				c.res = fr.res
			default:
				l.slow = true
			}
			fallthrough
		default:
			i, ok := wp.fieldIndex[rf.name]
			if !ok {
				l.slow = true // cannot happen: the resolver has a default for it
				continue
			}
			c.wp, c.wi = wp.fields[i].plan, i
		}
		l.fields = append(l.fields, c)
	}
	if !l.slow {
		l.project(wp)
	}
	return l
}

// project sets the layout's part up: a writer field is left to the scan
// when the reader lacks it or no column takes it, its value needs no
// resolution, and it fills no side list but for one array of records
// whose int subfield the scan can collect.
func (l *avroLayout) project(wp *plan) {
	byName := make(map[string]*avroCol, len(l.fields))
	for i := range l.fields {
		byName[l.fields[i].name] = &l.fields[i]
	}
	drop, n := make([]bool, len(wp.fields)), 0
	var ints *plan
	var list string
	for i, f := range wp.fields {
		c := byName[f.name]
		if c != nil && (c.col >= 0 || c.res != nil && c.res.work) {
			continue
		}
		if c != nil && c.list != "" {
			sp := f.plan.intSubfield(c.sub)
			if ints != nil || sp == nil {
				continue
			}
			ints, list = sp, c.list
		}
		drop[i], n = true, n+1
	}
	codecs := l.dec.fieldCodecs(drop)
	if codecs == nil {
		if n == 0 {
			return
		}
		if l.part = l.dec.without(drop); l.part == nil {
			return
		}
	}
	l.codecs, l.drop, l.ints, l.list = codecs, drop, ints, list
	for i, f := range wp.fields {
		if !drop[i] && f.plan.avroWork {
			l.partChecks = append(l.partChecks, i)
		}
	}
}

// dropped says whether reader field c's writer field is left to the scan
// (not given to goavro) when the record goes by the part or field codecs.
func (l *avroLayout) dropped(c *avroCol) bool { return c.wp != nil && l.drop[c.wi] }

// intSubfield is the plan of subfield sub of p, a non-nullable array of
// non-nullable records, when it is a non-nullable plain int (a side list
// can be filled from it); nil otherwise.
func (p *plan) intSubfield(sub string) *plan {
	if p.op != opArray || p.nullable || p.elem.op != opRecord || p.elem.nullable {
		return nil
	}
	j, ok := p.elem.fieldIndex[sub]
	if !ok {
		return nil
	}
	if sp := p.elem.fields[j].plan; !sp.nullable && sp.t.Kind == KindInt && sp.t.Logical == LogicalNone {
		return sp
	}
	return nil
}

// partBufs hold the kept fields' bytes a layout's part decodes.
var partBufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// partNative decodes body for a layout with a part or field codecs: the
// scan walks the whole body (its errors are native's), checking the
// dropped fields and appending the side list's values to blk's list; the
// kept fields are decoded by their own codecs where the walk finds them
// (codecs), or else their bytes are copied into *buf and decoded by the
// part codec. vals[i] is writer field i's goavro value (nil for a
// dropped one). whole: the record must go the whole way instead (a
// dropped decimal beyond its precision, or goavro refused a part), and
// the list is as it was.
func (l *avroLayout) partNative(body []byte, buf *[]byte, vals []any, blk record.Block) (e *Error, whole bool) {
	var sink scanSink
	var lst *record.IntList
	if l.ints != nil {
		if lst = blk.Ints(l.list); lst != nil {
			sink.ints, sink.vals = l.ints, lst.Vals
		}
	}
	var kept []byte
	if buf != nil {
		kept = (*buf)[:0]
	}
	pos := 0
	for i := range l.dec.plan.fields {
		f := &l.dec.plan.fields[i]
		var next int
		var err *Error
		if l.drop[i] {
			next, err = f.plan.scan(body, pos, &sink)
		} else {
			next, err = f.plan.scan(body, pos, nil)
			if err == nil && l.codecs != nil {
				v, rest, gerr := l.codecs[i].NativeFromBinary(body[pos:next])
				if gerr != nil || len(rest) != 0 {
					return nil, true
				}
				vals[i] = v
			} else if err == nil {
				kept = append(kept, body[pos:next]...)
			}
		}
		if err != nil {
			e = err.in(f.name)
			break
		}
		pos = next
	}
	if buf != nil {
		*buf = kept
	}
	if e == nil && pos != len(body) {
		e = trailing(len(body) - pos)
	}
	if e != nil || sink.wide {
		return e, e == nil
	}
	if l.codecs == nil {
		native, rest, err := l.part.NativeFromBinary(kept)
		m, ok := native.(map[string]any)
		if err != nil || len(rest) != 0 || !ok {
			return nil, true
		}
		for i := range l.dec.plan.fields {
			if !l.drop[i] {
				vals[i] = m[l.dec.plan.fields[i].name]
			}
		}
	}
	if lst != nil {
		lst.Vals = sink.vals
	}
	return nil, false
}

// Needs returns the side lists DecodeInto fills.
func (d *ColumnAvro) Needs() []string { return d.needs }

// Decode is the row path (the Decoder interface): the decoder the
// pipeline would have without a Block (replay, a transform without a
// columnar form).
func (d *ColumnAvro) Decode(value []byte) (record.Row, error) { return d.row.Decode(value) }

// DecodeContext is the row path with a context (decode.ContextDecoder).
func (d *ColumnAvro) DecodeContext(ctx context.Context, value []byte) (record.Row, error) {
	if cd, ok := d.row.(ContextDecoder); ok {
		return cd.DecodeContext(ctx, value)
	}
	return d.row.Decode(value)
}

// DecodeInto is DecodeIntoContext without a deadline of its own.
func (d *ColumnAvro) DecodeInto(value []byte, blk record.Block) (decodeErr, loadErr error) {
	return d.DecodeIntoContext(context.Background(), value, blk)
}

// DecodeIntoContext appends the record's row to blk and returns nil, a
// decode error (the row is a placeholder; the item is a dead letter at
// stage decode: the row decoder's *Error for the record), or an error of
// Block.EndRow (a value did not fit its column: stage load). One error
// appends nothing: one that wraps ErrUnavailable (avro-confluent: the
// schema registry could not be asked for the record's schema id, within
// ctx), which says nothing about the record; the caller tries the record
// again later, as with DecodeContext.
func (d *ColumnAvro) DecodeIntoContext(ctx context.Context, value []byte, blk record.Block) (decodeErr, loadErr error) {
	l, body := d.plain, value
	if l == nil {
		id, e := confluentID(value)
		if e != nil {
			blk.FailRow()
			return e, nil
		}
		var err error
		if l, err = d.confluentLayout(ctx, id); err != nil {
			if errors.Is(err, ErrUnavailable) {
				return err, nil // nothing appended
			}
			blk.FailRow()
			return err, nil
		}
		if l.fail != nil {
			e := *l.fail
			blk.FailRow()
			return &e, nil
		}
		body = value[confluentHeader:]
	} else if e := checkPresent(value); e != nil {
		blk.FailRow()
		return e, nil
	}
	wfields := l.dec.plan.fields
	var small [24]any
	vals := small[:0]
	if len(wfields) <= len(small) {
		vals = small[:len(wfields)]
	} else {
		vals = make([]any, len(wfields))
	}
	var (
		m    map[string]any
		e    *Error
		part bool
	)
	if l.codecs != nil || l.part != nil {
		var buf *[]byte
		if l.codecs == nil {
			buf = partBufs.Get().(*[]byte)
			defer partBufs.Put(buf) // goavro's []byte values alias it: put copies them
		}
		var whole bool
		e, whole = l.partNative(body, buf, vals, blk)
		part = !whole
	}
	if !part {
		if m, e = l.dec.native(body); e == nil && !l.slow {
			for i := range wfields {
				vals[i] = m[wfields[i].name]
			}
		}
	}
	if e != nil {
		blk.FailRow()
		return e, nil
	}
	if l.slow || !l.ok(vals, part) {
		if part {
			// A kept field the row path must handle (a null or an enum
			// symbol the reader refuses: the resolver's error; a decimal
			// beyond its precision): the whole record again, its list
			// values once.
			if lst := blk.Ints(l.list); lst != nil {
				lst.Vals = lst.Vals[:lst.Offsets[len(lst.Offsets)-1]]
			}
			if m, e = l.dec.native(body); e != nil {
				blk.FailRow()
				return e, nil
			}
		}
		return d.rowInto(l, m, blk)
	}
	for i := range l.fields {
		c := &l.fields[i]
		if part && l.dropped(c) {
			continue
		}
		if c.wp == nil {
			if c.col >= 0 {
				blk.PutValue(c.col, cloneValue(c.def))
			}
			continue
		}
		v := vals[c.wi]
		if c.list != "" {
			if lst := blk.Ints(c.list); lst != nil {
				items, _ := v.([]any)
				for _, x := range items {
					e, _ := x.(map[string]any)
					q, _ := e[c.sub].(int32) // checked by ok
					lst.Vals = append(lst.Vals, int64(q))
				}
			}
		}
		if c.col >= 0 {
			c.put(v, blk)
		}
	}
	return nil, blk.EndRow()
}

// ok says whether the row path would normalise and resolve the record
// (vals: goavro's value of each writer field, by index) without an error,
// and that the side lists' values are where put expects them. It
// allocates nothing (but for a decimal wider than 8 bytes).
func (l *avroLayout) ok(vals []any, part bool) bool {
	checks := l.checks
	if part {
		checks = l.partChecks // the scan checked the others
	}
	for _, i := range checks {
		if !l.dec.plan.fields[i].plan.avroOK(vals[i]) {
			return false
		}
	}
	for i := range l.fields {
		c := &l.fields[i]
		if c.wp == nil || part && l.dropped(c) {
			continue
		}
		v := vals[c.wi]
		if c.res != nil && !c.res.scalarOK(c.wp, v) {
			return false
		}
		if c.list != "" {
			items, ok := v.([]any)
			if !ok {
				return false
			}
			for _, x := range items {
				e, ok := x.(map[string]any)
				if !ok {
					return false
				}
				if _, ok := e[c.sub].(int32); !ok {
					return false
				}
			}
		}
	}
	return true
}

// put puts goavro's value v of the field (checked by ok) into column
// c.col, as the row path would load the field's Row value.
func (c *avroCol) put(v any, blk record.Block) {
	p, orig := c.wp, v
	if p.nullable {
		if v == nil {
			blk.PutNull(c.col)
			return
		}
		for _, x := range v.(map[string]any) { // one branch: checked by ok
			v = x
		}
	}
	switch p.op {
	case opKeep:
		switch x := v.(type) {
		case string:
			if c.res != nil && c.res.op == resEnum {
				if _, ok := c.res.symbols[x]; !ok {
					x = c.res.enumDefault // checked by ok: it has one
				}
			}
			blk.PutString(c.col, x)
			return
		case int64:
			blk.PutInt(c.col, x)
			return
		case int32:
			switch {
			case c.res == nil || c.res.op == resKeep:
				blk.PutValue(c.col, v) // a Row's int32, already boxed
			case c.res.op == resIntToLong:
				blk.PutInt(c.col, int64(x))
			case c.res.op == resIntToDouble:
				blk.PutValue(c.col, float64(x))
			}
			return
		case float32:
			if c.res != nil && c.res.op == resFloatToDouble {
				blk.PutValue(c.col, float64(x))
				return
			}
		}
		blk.PutValue(c.col, v) // bool, float64, float32, nil
		return
	case opDecimal:
		if b, _ := v.([]byte); len(b) <= 8 {
			blk.PutDecimal(c.col, unscaled64(b), p.scale)
			return
		}
	case opTimestampMillis:
		blk.PutTime(c.col, time.UnixMilli(v.(int64)).UTC())
		return
	case opTimestampMicros:
		blk.PutTime(c.col, time.UnixMicro(v.(int64)).UTC())
		return
	case opDate:
		blk.PutTime(c.col, dateFromDays(int64(v.(int32))))
		return
	}
	// Bytes, arrays, maps, records, wide decimals: the Row value.
	x, _ := p.fromAvro(orig) // checked by ok
	blk.PutValue(c.col, x)
}

// rowInto is the row path for one record whose map is m: normalised and
// resolved by the row decoder's code, its error the record's, its Row put
// value by value.
func (d *ColumnAvro) rowInto(l *avroLayout, m map[string]any, blk record.Block) (decodeErr, loadErr error) {
	if e := l.dec.plan.recordFromAvro(m); e != nil {
		blk.FailRow()
		return e, nil
	}
	if l.res != nil {
		if e := l.res.record(m); e != nil {
			blk.FailRow()
			return e, nil
		}
	}
	for _, f := range d.reader.fields {
		v := m[f.name]
		if sl, ok := d.lists[f.name]; ok {
			if lst := blk.Ints(sl.name); lst != nil {
				items, _ := v.([]any)
				for _, x := range items {
					e, _ := x.(map[string]any)
					switch q := e[sl.sub].(type) {
					case int32:
						lst.Vals = append(lst.Vals, int64(q))
					case int64:
						lst.Vals = append(lst.Vals, q)
					}
				}
			}
		}
		if col := d.column(f.name); col >= 0 {
			blk.PutValue(col, v)
		}
	}
	return nil, blk.EndRow()
}

// confluentLayout returns the layout of schema id, building it on first
// use; the error is writer's (an *Error for an unknown id, else it wraps
// ErrUnavailable).
func (d *ColumnAvro) confluentLayout(ctx context.Context, id int32) (*avroLayout, error) {
	if m := d.layouts.Load(); m != nil {
		if l := (*m)[id]; l != nil {
			return l, nil
		}
	}
	w, err := d.conf.writer(ctx, id)
	if err != nil {
		return nil, err
	}
	l := &avroLayout{fail: w.fail}
	if w.fail == nil {
		l = d.layout(w.avro, w.res)
	}
	return publish(&d.mu, &d.layouts, id, l), nil
}

// avroOK says whether fromAvro(v) succeeds, without converting anything.
func (p *plan) avroOK(v any) bool {
	if p.nullable {
		if v == nil {
			return true
		}
		u, ok := v.(map[string]any)
		if !ok || len(u) != 1 {
			return false
		}
		for _, x := range u {
			v = x
		}
	}
	switch p.op {
	case opKeep:
		return true
	case opBytes:
		_, ok := v.([]byte)
		return ok
	case opDecimal:
		b, ok := v.([]byte)
		if !ok {
			return false
		}
		return p.decimalOK(b)
	case opTimestampMillis, opTimestampMicros:
		_, ok := v.(int64)
		return ok
	case opDate:
		_, ok := v.(int32)
		return ok
	case opArray:
		s, ok := v.([]any)
		if !ok {
			return false
		}
		if p.elem.avroWork {
			for _, x := range s {
				if !p.elem.avroOK(x) {
					return false
				}
			}
		}
		return true
	case opMap:
		m, ok := v.(map[string]any)
		if !ok {
			return false
		}
		if p.elem.avroWork {
			for _, x := range m {
				if !p.elem.avroOK(x) {
					return false
				}
			}
		}
		return true
	case opRecord:
		m, ok := v.(map[string]any)
		if !ok {
			return false
		}
		for i := range p.fields {
			f := &p.fields[i]
			if f.plan.avroWork && !f.plan.avroOK(m[f.name]) {
				return false
			}
		}
		return true
	}
	return false
}

// decimalOK says whether the unscaled bytes b of decimal p are within its
// precision (decimalFromAvro succeeds). It allocates only for more than 8
// bytes.
func (p *plan) decimalOK(b []byte) bool {
	if len(b) <= 8 {
		u := unscaled64(b)
		return p.limit64 == 0 || u < p.limit64 && u > -p.limit64
	}
	_, e := p.decimalFromAvro(b)
	return e == nil
}

// scalarOK says whether apply succeeds on the Row value of goavro's v of
// writer type wp (whose normalisation avroOK accepted), for the scalar
// resolutions a layout puts itself.
func (r *resolver) scalarOK(wp *plan, v any) bool {
	if wp.nullable && v != nil {
		for _, x := range v.(map[string]any) { // one branch: avroOK
			v = x
		}
	}
	if v == nil {
		return !r.rejectNull
	}
	switch r.op {
	case resKeep:
		return true
	case resIntToLong, resIntToDouble:
		_, ok := v.(int32)
		return ok && wp.op == opKeep
	case resFloatToDouble:
		_, ok := v.(float32)
		return ok && wp.op == opKeep
	case resEnum:
		s, ok := v.(string)
		if !ok || wp.op != opKeep {
			return false
		}
		_, known := r.symbols[s]
		return known || r.hasEnumDefault
	}
	return false
}

// unscaled64 reads a big-endian two's-complement integer of at most 8
// bytes (decimalFromAvro's).
func unscaled64(b []byte) int64 {
	var v int64
	if len(b) > 0 {
		v = int64(int8(b[0])) // sign-extends
		for _, c := range b[1:] {
			v = v<<8 | int64(c)
		}
	}
	return v
}
