package record

import "time"

// Cells reads and overwrites single cells of a Block's completed rows: what
// a transform on the columnar path does where the row path reads and
// writes a Row's keys (pkg/transform's currency, customer and fraud).
//
// Reads say false for a NULL. They give the cell as the column holds it,
// which is the field's value only when the column holds the field exactly:
// a transform checks ColumnKind (and that a nullable field has a Nullable
// column, since a NOT NULL column holds a NULL as zero) before it reads.
// Writes convert as the row path's Prepare converts a Row value, with the
// same checks and messages; a value the column cannot hold is an error
// naming the column (the row fails at stage load, as it would in
// Prepare). A write to column -1 is ignored, as a Row key the table lacks
// is. None of them allocates, except where the column's buffer boxes its
// values (clickhouse-go's Decimal columns hold shopspring values) and
// where a native String column's bytes grow by an overwrite.
//
// Rows are numbered as the block numbers them (Batch.Base + item index).
type Cells interface {
	// ColumnKind says how column col can be read and whether it holds
	// NULLs; CellOther for col -1.
	ColumnKind(col int) (kind CellKind, nullable bool)
	// String reads a String, FixedString or Enum cell (an enum's symbol).
	// The string may point into the batch's records or into the column
	// buffers, which the next batch reuses: copy it to keep it past the
	// batch.
	String(col, row int) (string, bool)
	// Decimal reads a Decimal cell as unscaled × 10^-scale.
	Decimal(col, row int) (unscaled int64, scale int32, ok bool)
	// Time reads a DateTime or Date cell at the precision it was put with,
	// which may be finer than the column's unit (the row path's transforms
	// see the field's milliseconds; so do these).
	Time(col, row int) (time.Time, bool)

	SetString(col, row int, s string) error
	// SetDecimal writes unscaled × 10^-scale.
	SetDecimal(col, row int, unscaled int64, scale int32) error
	// SetStrings writes an Array(String) cell; the block keeps ss (the
	// caller must not change it afterwards).
	SetStrings(col, row int, ss []string) error
	// SetNull writes NULL, or the zero value in a NOT NULL column (as an
	// absent Row value is loaded).
	SetNull(col, row int) error

	// Marks is a byte per row that the block keeps for its transforms and
	// never loads, for what one transform tells a later one and no column
	// holds (customer's join result, which fraud reads). Its length is
	// Rows(); every byte is 0 at the start of a batch.
	Marks(name string) []uint8
}

// CellKind is how a column's cells are read (Cells).
type CellKind uint8

const (
	// CellOther: not readable as a cell (numbers, arrays, Decimal wider
	// than 18 digits), or no column.
	CellOther CellKind = iota
	// CellString: String, FixedString, Enum8, Enum16 (Cells.String).
	CellString
	// CellDecimal: Decimal of precision at most 18 (Cells.Decimal).
	CellDecimal
	// CellTime: DateTime, Date (Cells.Time).
	CellTime
)
