package record

import "time"

// Block holds a batch's rows in the columns of the pipeline's table, one
// row per item of the batch in item order (Batch.Base is the row of
// Items[0]): the columnar data plane. Decoders append the rows (Put*,
// then EndRow, or FailRow for an item that did not decode); transforms
// read and overwrite cells by row; the sink hands the columns to the
// INSERT. An item's Failed and Stored still say whether its row is
// loaded: a row is never removed, only left out.
//
// Column numbers are fixed for a table (Column finds them once, at
// start-up); a Put to column -1 is ignored, so a field the table lacks
// costs nothing. Columns a row did not Put are zero (NULL when nullable),
// as an absent field of a Row is.
type Block interface {
	Rows() int
	Column(name string) int
	PutString(col int, s string)
	PutInt(col int, v int64)
	// PutDecimal puts unscaled × 10^-scale.
	PutDecimal(col int, unscaled int64, scale int32)
	PutTime(col int, t time.Time)
	PutNull(col int)
	// PutValue puts a Row value (the conversions of the row path).
	PutValue(col int, v any)
	// EndRow completes the row; a value that did not fit its column makes
	// it an error naming the column (the item fails at stage load, as in
	// the row path), and the row stays as a placeholder.
	EndRow() error
	// FailRow completes the row as a placeholder of zero values.
	FailRow()
	// SetInt overwrites a cell of a completed row.
	SetInt(col, row int, v int64) error
	// Cells reads and overwrites cells of completed rows (transforms).
	Cells
	// Ints is a side list of integers per row that a decoder fills for a
	// transform (for example items.quantity for order_items): values of
	// row r are Vals[Offsets[r]:Offsets[r+1]]. Nil when nobody asked for
	// it (see Need).
	Ints(name string) *IntList
}

// IntList is a list of int64 per row, stored flat.
type IntList struct {
	Offsets []int32 // len rows+1, Offsets[0] = 0
	Vals    []int64
}

// Row returns the values of row r.
func (l *IntList) Row(r int) []int64 { return l.Vals[l.Offsets[r]:l.Offsets[r+1]] }
