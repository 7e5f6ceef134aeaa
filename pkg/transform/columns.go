package transform

import (
	"fmt"
	"math"
	"math/bits"

	"github.com/sluice-etl/sluice/pkg/decode"
	"github.com/sluice-etl/sluice/pkg/record"
)

// The columnar path of currency, customer and fraud (their ApplyBlock):
// they read the fields of a batch's rows from the block's columns
// (record.Cells) where the row path reads a Row's keys, and overwrite the
// cells of the columns they write. The rules, the order of the items, the
// reasons and the Store's AwaitCurrent are the row path's; only the
// values' representation differs (decimals as scaled int64, no Row).
//
// A field is read from the table column of its name, which holds it only
// when the column is readable as the field's kind and, for a nullable
// field, Nullable (a NOT NULL column holds NULL as zero). ApplyBlock checks
// that once per batch; a table that does not fit is an error for the whole
// batch, naming the column, never a wrong value. The decoders write every
// field that has a column, so the shipped tables fit.

// cellRead is a field a transform reads on the columnar path.
type cellRead struct {
	name     string
	kind     record.CellKind
	nullable bool // the field can be NULL, so its column must hold NULLs
}

// readOf describes field name of s, read as kind.
func readOf(s *decode.Schema, name string, kind record.CellKind) cellRead {
	f, ok := s.Field(name)
	return cellRead{name: name, kind: kind, nullable: ok && f.Type.Nullable}
}

var cellKindNames = [...]string{
	record.CellOther: "other", record.CellString: "a string", record.CellDecimal: "a decimal", record.CellTime: "a time",
}

// column returns r's column in blk, or why blk cannot serve it.
func (r cellRead) column(blk record.Block) (int, error) {
	col := blk.Column(r.name)
	if col < 0 {
		return -1, fmt.Errorf("the table has no column %s, which the columnar path reads the field from", r.name)
	}
	kind, nullable := blk.ColumnKind(col)
	if kind != r.kind {
		return -1, fmt.Errorf("column %s cannot be read as %s, as the columnar path reads it", r.name, cellKindNames[r.kind])
	}
	if r.nullable && !nullable {
		return -1, fmt.Errorf("field %s is nullable but column %s is not, so the block cannot tell a NULL from zero", r.name, r.name)
	}
	return col, nil
}

// Per-row marks of customer's join (record.Cells.Marks under the name
// customerFound), which fraud reads: 0 when customer did not join the row.
const (
	markMissed uint8 = 1
	markFound  uint8 = 2
)

// mulHalfEvenInt is mulHalfEven on scaled integers: round_half_even(
// a×10^-as × r×10^-rs, scale) as an integer at scale, exactly, the
// product in 128 bits (math/bits) and one division. ok is false where it
// does not apply (no digit dropped, more than 19 dropped, or a result past
// int64); the caller then takes the decimal path.
func mulHalfEvenInt(a int64, as int32, r int64, rs int32, scale int32) (v int64, ok bool) {
	k := int64(as) + int64(rs) - int64(scale) // digits dropped
	if k < 1 || k >= int64(len(pow10u)) {
		return 0, false
	}
	neg := (a < 0) != (r < 0)
	hi, lo := bits.Mul64(absU64(a), absU64(r))
	div := pow10u[k]
	if hi >= div { // the quotient would not fit 64 bits
		return 0, false
	}
	q, rem := bits.Div64(hi, lo, div)
	if rem > div-rem || rem == div-rem && q&1 == 1 {
		q++
	}
	if q > math.MaxInt64 {
		return 0, false
	}
	v = int64(q)
	if neg {
		v = -v
	}
	return v, true
}

// firstInTable is the error of the earliest column in table order of
// those whose writes failed (cols[i] got errs[i]): the one Prepare would
// report for the row.
func firstInTable(cols []int, errs []error) error {
	var first error
	at := 0
	for i, err := range errs {
		if err != nil && (first == nil || cols[i] < at) {
			first, at = err, cols[i]
		}
	}
	return first
}
