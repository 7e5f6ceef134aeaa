package decode

import (
	"math/big"
)

// op is what the decoders do with one value of a type; chosen once per
// schema so the per-record work is a switch on a small integer.
type op uint8

const (
	opKeep            op = iota // the wire value already has its Row type
	opBytes                     // bytes, fixed: copy, never alias the Kafka buffer
	opDecimal                   // two's-complement unscaled bytes -> decimal.Decimal
	opTimestampMillis           // int64 millis -> time.Time UTC
	opTimestampMicros           // int64 micros -> time.Time UTC
	opDate                      // int32 days -> time.Time UTC midnight
	opArray
	opMap
	opRecord
)

// plan is the compiled form of a Type: the Avro scanner, the Avro
// normaliser and the JSON coercer all walk it. It is immutable after
// newPlan, so one plan serves every goroutine.
type plan struct {
	t         *Type
	op        op
	nullable  bool
	nullIndex int64
	// avroWork says goavro's value for this type must be changed (unwrapped,
	// converted or copied) or contains something that must; fields and
	// elements without work are not even looked up.
	avroWork bool
	// minSize is the fewest bytes any value of this type takes in Avro
	// binary; it bounds how many array items a block can honestly claim.
	minSize int

	// decimal: the Row value is unscaled × 10^-scale, |unscaled| < 10^precision.
	scale     int32
	precision int
	limit64   int64    // 10^precision when precision <= 18, else 0
	limitBig  *big.Int // 10^precision when precision > 18, else nil

	elem   *plan // array items, map values
	fields []fieldPlan
	// fieldIndex finds a record's fields by name: the JSON parser's lookup
	// of a key that is not the field after the previous key's (keys usually
	// come in schema order, which it tries first).
	fieldIndex map[string]int
}

type fieldPlan struct {
	name string
	plan *plan
}

var pow10 = func() [19]int64 {
	var p [19]int64
	p[0] = 1
	for i := 1; i < len(p); i++ {
		p[i] = p[i-1] * 10
	}
	return p
}()

func newPlan(t *Type) *plan {
	p := &plan{t: t, nullable: t.Nullable, nullIndex: int64(t.nullIndex)}
	switch t.Kind {
	case KindNull:
		p.minSize = 0
	case KindBoolean, KindInt, KindLong, KindBytes, KindString, KindEnum:
		p.minSize = 1
	case KindFloat:
		p.minSize = 4
	case KindDouble:
		p.minSize = 8
	case KindFixed:
		p.minSize = t.Size
	case KindArray, KindMap:
		p.minSize = 1 // the terminating zero block count
	}
	switch {
	case t.Logical == LogicalDecimal:
		p.op = opDecimal
		p.scale, p.precision = int32(t.Scale), t.Precision
		if t.Precision <= 18 {
			p.limit64 = pow10[t.Precision]
		} else {
			p.limitBig = new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(t.Precision)), nil)
		}
	case t.Logical == LogicalTimestampMillis:
		p.op = opTimestampMillis
	case t.Logical == LogicalTimestampMicros:
		p.op = opTimestampMicros
	case t.Logical == LogicalDate:
		p.op = opDate
	case t.Kind == KindBytes || t.Kind == KindFixed:
		p.op = opBytes
	case t.Kind == KindArray:
		p.op = opArray
		p.elem = newPlan(t.Items)
	case t.Kind == KindMap:
		p.op = opMap
		p.elem = newPlan(t.Values)
	case t.Kind == KindRecord:
		p.op = opRecord
		p.fields = make([]fieldPlan, len(t.Fields))
		p.fieldIndex = make(map[string]int, len(t.Fields))
		for i, f := range t.Fields {
			fp := newPlan(f.Type)
			p.fields[i] = fieldPlan{name: f.Name, plan: fp}
			p.fieldIndex[f.Name] = i
			p.minSize += fp.minSize
			p.avroWork = p.avroWork || fp.avroWork
		}
	}
	switch p.op {
	case opKeep, opRecord:
		// opRecord's work was summed over its fields above.
	case opArray, opMap:
		p.avroWork = p.elem.avroWork
	default:
		p.avroWork = true
	}
	if p.nullable {
		p.avroWork = true
		p.minSize = 1 // the branch index; the null branch adds nothing
	}
	return p
}
