package decode

import (
	"math"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/sluice-etl/sluice/pkg/record"
)

// ColumnJSON decodes JSON records straight into the columns of a
// record.Block (the columnar path), without a Row per record.
//
// Its fast parser handles the common shapes — primitives, enums,
// decimals given as strings or plain numbers, timestamps given as counts,
// nullable values, arrays of records of those — and gives up on anything
// else: a repeated key, an escape it would have to copy, a timestamp as
// text, a nested map, a value that does not fit. A record it gives up on
// is decoded by the row decoder (jsonDecoder), which is the reference: its
// Row goes into the block through the row path's conversions, its error
// is the record's. So both paths accept the same records and store the
// same values, and the fast path only has to be right when it succeeds.
//
// Strings point into the record's value (no copy): the Block copies them
// (the native writer's String columns, pkg/sink/nativestr.go) or holds
// them only while the batch, which holds the records, lives.
type ColumnJSON struct {
	row    *jsonDecoder
	fields []colField // per field of the top-level record
	needs  []string
	pool   sync.Pool // *colScratch
}

type colField struct {
	name string
	plan *plan
	col  int // block column, -1 when the table has none
	// list: the side list (Block.Ints) this array-of-records field fills
	// with the integer subfield sub, "" when none.
	list string
	sub  int
}

// NewColumnJSON binds the schema's top-level fields to the table's
// columns (column gives the index of a name, -1 if absent); needs names
// the side lists the transforms read, as "field.subfield" of an array of
// records with an int subfield (order_items: "items.quantity").
// It says false when the schema is not a record.
func NewColumnJSON(s *Schema, column func(string) int, needs []string) (*ColumnJSON, bool) {
	p := newPlan(s.root)
	if p.op != opRecord {
		return nil, false
	}
	d := &ColumnJSON{row: &jsonDecoder{plan: p}}
	for _, f := range p.fields {
		cf := colField{name: f.name, plan: f.plan, col: column(f.name), sub: -1}
		for _, n := range needs {
			field, sub, _ := strings.Cut(n, ".")
			if field != f.name || f.plan.op != opArray || f.plan.elem.op != opRecord {
				continue
			}
			for j, sf := range f.plan.elem.fields {
				if sf.name == sub && !sf.plan.nullable && sf.plan.t.Kind == KindInt {
					cf.list, cf.sub = n, j
				}
			}
		}
		if cf.list == "" && f.plan.op == opArray && f.plan.elem.op == opRecord {
			cf.sub = -1
		}
		d.fields = append(d.fields, cf)
	}
	for _, n := range needs {
		if !d.fills(n) {
			return nil, false
		}
	}
	d.needs = append([]string(nil), needs...)
	d.pool.New = func() any { return &colScratch{} }
	return d, true
}

func (d *ColumnJSON) fills(list string) bool {
	for _, f := range d.fields {
		if f.list == list {
			return true
		}
	}
	return false
}

// Needs returns the side lists DecodeInto fills.
func (d *ColumnJSON) Needs() []string { return d.needs }

// Decode is the row path (the Decoder interface), for replay and tests.
func (d *ColumnJSON) Decode(value []byte) (record.Row, error) { return d.row.Decode(value) }

// slot is one parsed value.
type slot struct {
	set   bool
	null  bool
	kind  uint8 // slotString, slotInt, ...
	s     string
	i     int64 // also where a list's values start in colScratch.list
	end   int   // where they end
	scale int32
	t     time.Time
}

const (
	slotString uint8 = iota + 1
	slotInt
	slotBool
	slotDecimal
	slotTime
	slotList // an array whose values went to a side list (or were checked)
)

type colScratch struct {
	slots []slot
	sub   []slot
	list  []int64 // the side list values of the current record
}

// DecodeInto appends the record's row to blk: nil, a decode error (the
// row is a placeholder; the item is a dead letter at stage decode), or an
// error of Block.EndRow (a value did not fit its column: stage load).
func (d *ColumnJSON) DecodeInto(value []byte, blk record.Block) (decodeErr, loadErr error) {
	sc := d.pool.Get().(*colScratch)
	defer d.pool.Put(sc)
	if d.fast(value, sc) {
		for i := range d.fields {
			f := &d.fields[i]
			sl := &sc.slots[i]
			if f.list != "" && sl.kind == slotList {
				if l := blk.Ints(f.list); l != nil {
					l.Vals = append(l.Vals, sc.list[sl.i:sl.end]...)
				}
			}
			if f.col < 0 || sl.kind == slotList {
				continue
			}
			switch {
			case sl.null:
				blk.PutNull(f.col)
			case sl.kind == slotString:
				blk.PutString(f.col, sl.s)
			case sl.kind == slotInt && f.plan.t.Kind == KindInt:
				// An int is an int32 in a Row: boxed as one, a column
				// that refuses it says so as the row path does.
				blk.PutValue(f.col, int32(sl.i))
			case sl.kind == slotInt:
				blk.PutInt(f.col, sl.i)
			case sl.kind == slotDecimal:
				blk.PutDecimal(f.col, sl.i, sl.scale)
			case sl.kind == slotTime:
				blk.PutTime(f.col, sl.t)
			case sl.kind == slotBool:
				blk.PutValue(f.col, sl.i == 1)
			}
		}
		return nil, blk.EndRow()
	}
	row, err := d.row.Decode(value)
	if err != nil {
		blk.FailRow()
		return err, nil
	}
	for i := range d.fields {
		f := &d.fields[i]
		if f.list != "" {
			if l := blk.Ints(f.list); l != nil {
				items, _ := row[f.name].([]any)
				sub := f.plan.elem.fields[f.sub].name
				for _, e := range items {
					m, _ := e.(map[string]any)
					switch v := m[sub].(type) {
					case int32:
						l.Vals = append(l.Vals, int64(v))
					case int64:
						l.Vals = append(l.Vals, v)
					}
				}
			}
		}
		if f.col >= 0 {
			blk.PutValue(f.col, row[f.name])
		}
	}
	return nil, blk.EndRow()
}

// fast parses a whole record into sc.slots; false when it gave up.
func (d *ColumnJSON) fast(value []byte, sc *colScratch) bool {
	n := len(d.fields)
	if cap(sc.slots) < n {
		sc.slots = make([]slot, n)
	}
	sc.slots = sc.slots[:n]
	clear(sc.slots)
	sc.list = sc.list[:0]
	s := jsonParser{buf: value}
	s.ws()
	if s.pos >= len(value) || value[s.pos] != '{' || s.open() != nil {
		return false
	}
	if !s.empty('}') {
		hint := 0
		for {
			k, err := s.key()
			if err != nil {
				return false
			}
			i := -1
			if hint < n && string(k) == d.fields[hint].name {
				i = hint
			} else if j, ok := d.row.plan.fieldIndex[string(k)]; ok {
				i = j
			}
			if i < 0 {
				if s.skip() != nil {
					return false
				}
			} else {
				hint = i + 1
				f := &d.fields[i]
				if sc.slots[i].set {
					return false // a repeated key: the row decoder's rules
				}
				if f.plan.op == opArray {
					start := len(sc.list)
					if !s.fastArray(f.plan, f.sub, sc) {
						return false
					}
					sc.slots[i] = slot{set: true, kind: slotList, i: int64(start), end: len(sc.list)}
				} else if !s.fastValue(f.plan, &sc.slots[i]) {
					return false
				}
			}
			more, err := s.next('}')
			if err != nil {
				return false
			}
			if !more {
				break
			}
		}
	}
	s.ws()
	if s.pos != len(value) {
		return false
	}
	for i := range d.fields {
		if !sc.slots[i].set {
			if !d.fields[i].plan.nullable {
				return false // missing: the row decoder's error
			}
			sc.slots[i] = slot{set: true, null: true}
		}
	}
	return true
}

// fastArray parses an array of records whose fields fastValue handles,
// appending subfield sub of each (when >= 0) to sc.list.
func (s *jsonParser) fastArray(p *plan, sub int, sc *colScratch) bool {
	s.ws()
	if s.pos >= len(s.buf) || s.buf[s.pos] != '[' || p.elem.op != opRecord || s.open() != nil {
		return false
	}
	if s.empty(']') {
		return true
	}
	ep := p.elem
	m := len(ep.fields)
	for {
		s.ws()
		if s.pos >= len(s.buf) || s.buf[s.pos] != '{' || s.open() != nil {
			return false
		}
		if cap(sc.sub) < m {
			sc.sub = make([]slot, m)
		}
		sc.sub = sc.sub[:m]
		clear(sc.sub)
		if !s.empty('}') {
			// Keys usually come in schema order: try the next field's
			// name before the map.
			hint := 0
			for {
				k, err := s.key()
				if err != nil {
					return false
				}
				j, ok := hint, hint < m && string(k) == ep.fields[hint].name
				if !ok {
					j, ok = ep.fieldIndex[string(k)]
				}
				hint = j + 1
				if !ok {
					if s.skip() != nil {
						return false
					}
				} else if sc.sub[j].set || ep.fields[j].plan.op != opKeep && ep.fields[j].plan.op != opDecimal ||
					!s.fastValue(ep.fields[j].plan, &sc.sub[j]) {
					return false
				}
				more, err := s.next('}')
				if err != nil {
					return false
				}
				if !more {
					break
				}
			}
		}
		for j := range sc.sub {
			if !sc.sub[j].set && !ep.fields[j].plan.nullable {
				return false
			}
		}
		if sub >= 0 {
			sl := &sc.sub[sub]
			if !sl.set || sl.null || sl.kind != slotInt {
				return false
			}
			sc.list = append(sc.list, sl.i)
		}
		more, err := s.next(']')
		if err != nil {
			return false
		}
		if !more {
			return true
		}
	}
}

// fastValue parses one value of a primitive, enum, decimal or timestamp
// plan into sl; false when it gives up (the value is then the row
// decoder's to judge).
func (s *jsonParser) fastValue(p *plan, sl *slot) bool {
	s.ws()
	if s.pos >= len(s.buf) {
		return false
	}
	c := s.buf[s.pos]
	if c == 'n' {
		if !p.nullable || s.literal("null") != nil {
			return false
		}
		*sl = slot{set: true, null: true}
		return true
	}
	switch p.op {
	case opDecimal:
		text, ok, err := s.decimalText(c)
		if !ok || err != nil {
			return false
		}
		v, ok := p.smallUnscaled(text)
		if !ok {
			return false
		}
		*sl = slot{set: true, kind: slotDecimal, i: v, scale: p.scale}
		return true
	case opTimestampMillis, opTimestampMicros, opDate:
		if !isNumberStart(c) {
			return false
		}
		text, err := s.number()
		if err != nil {
			return false
		}
		v, ok := smallInt(text)
		if !ok || (p.timeBits() == 32 && (v < math.MinInt32 || v > math.MaxInt32)) {
			return false
		}
		*sl = slot{set: true, kind: slotTime, t: p.timeFromCount(v)}
		return true
	case opKeep:
	default:
		return false
	}
	switch p.t.Kind {
	case KindString, KindEnum:
		if c != '"' {
			return false
		}
		start := s.pos + 1
		text, err := s.str()
		// Only text read in place (no escapes, ASCII): a copied one would
		// not outlive the parser's buffer rules.
		if err != nil || len(text) > 0 && &text[0] != &s.buf[start] {
			return false
		}
		str := ""
		if len(text) > 0 {
			str = unsafe.String(&text[0], len(text))
		}
		if p.t.Kind == KindEnum {
			found := false
			for _, sym := range p.t.Symbols {
				if sym == str {
					str, found = sym, true
					break
				}
			}
			if !found {
				return false
			}
		}
		*sl = slot{set: true, kind: slotString, s: str}
		return true
	case KindInt, KindLong:
		if !isNumberStart(c) {
			return false
		}
		text, err := s.number()
		if err != nil {
			return false
		}
		v, ok := smallInt(text)
		if !ok || p.t.Kind == KindInt && (v < math.MinInt32 || v > math.MaxInt32) {
			return false
		}
		*sl = slot{set: true, kind: slotInt, i: v}
		return true
	case KindBoolean:
		switch {
		case c == 't' && s.literal("true") == nil:
			*sl = slot{set: true, kind: slotBool, i: 1}
			return true
		case c == 'f' && s.literal("false") == nil:
			*sl = slot{set: true, kind: slotBool}
			return true
		}
	}
	return false
}
