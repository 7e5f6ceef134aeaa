package sink

import (
	"fmt"
	"time"

	"github.com/sluice-etl/sluice/pkg/record"
)

// The columnar path: a decoder writes a batch's rows straight into the
// table's column buffers (a Block), transforms overwrite cells, and
// Prepare only fills the source columns and picks the rows to send. Rows
// are converted exactly as the row path's Prepare converts a Row (the same
// range checks and messages), so the two paths store the same data.

// Block is one partition writer's columns, implementing record.Block. It
// is reset for every batch (Buffers.Block).
type Block struct {
	t      *Table
	bufs   *Buffers
	rows   int
	rowErr error
	errCol int // the column of rowErr: the first in table order is reported, as the row path does
	ints   map[string]*record.IntList
	lists  []*record.IntList // this batch's side lists (needs), closed by every row
	// Padding: EndRow pads only the columns put at least once in this
	// batch (active); the others (lazy: transforms' outputs, the source
	// columns, fields the schema lacks) are padded in one go by sync when
	// something reads or writes a cell, or a row fails. behind says that
	// some lazy column is shorter than rows.
	lazy   []bool
	active []colbuf
	behind bool
	// The transforms' side (blockcells.go): the buffers as cellbufs, and
	// the per-row marks (record.Cells.Marks).
	cells []cellbuf
	marks map[string][]uint8
}

// Block resets the buffers and returns them as the block of the next
// batch; needs names the side lists its decoder fills (Block.Ints).
func (t *Table) Block(bufs *Buffers, needs []string) *Block {
	if bufs.block == nil || bufs.block.t != t {
		bufs.block = &Block{t: t, bufs: bufs, ints: map[string]*record.IntList{}}
	}
	bl := bufs.block
	for _, c := range bufs.cols {
		c.reset()
	}
	bl.rows, bl.rowErr = 0, nil
	for k, m := range bl.marks {
		bl.marks[k] = m[:0]
	}
	bl.lists = bl.lists[:0]
	for _, n := range needs {
		l := bl.ints[n]
		if l == nil {
			l = &record.IntList{}
			bl.ints[n] = l
		}
		l.Offsets, l.Vals = append(l.Offsets[:0], 0), l.Vals[:0]
		bl.lists = append(bl.lists, l)
	}
	if len(bl.lazy) != len(bufs.cols) {
		bl.lazy = make([]bool, len(bufs.cols))
	}
	for i := range bl.lazy {
		bl.lazy[i] = true
	}
	clear(bl.active)
	bl.active, bl.behind = bl.active[:0], false
	return bl
}

// use returns column col's buffer for a put, making it active first: it
// is padded to the rows before this one, and EndRow pads it from now on.
func (b *Block) use(col int) colbuf {
	c := b.bufs.cols[col]
	if b.lazy[col] {
		c.padTo(b.rows)
		b.lazy[col] = false
		b.active = append(b.active, c)
	}
	return c
}

// sync pads the lazy columns to rows, so that every column holds a value
// for every completed row.
func (b *Block) sync() {
	if !b.behind {
		return
	}
	for i, lz := range b.lazy {
		if lz {
			b.bufs.cols[i].padTo(b.rows)
		}
	}
	b.behind = false
}

// Release empties bufs (the columnar path's strings may point into the
// batch's records, which must not outlive it), keeping their capacity.
func (t *Table) Release(bufs *Buffers) {
	for _, c := range bufs.cols {
		c.reset()
	}
	clear(bufs.send)
	bufs.send, bufs.picked, bufs.rows = bufs.send[:0], bufs.picked[:0], 0
	if bufs.block != nil {
		bufs.block.rows, bufs.block.rowErr, bufs.block.behind = 0, nil, false
	}
}

func (b *Block) Rows() int { return b.rows }

func (b *Block) Column(name string) int { return b.t.Column(name) }

func (b *Block) fail(col int, err error) {
	if err != nil && (b.rowErr == nil || col < b.errCol) {
		c := b.t.cols[col]
		b.rowErr, b.errCol = fmt.Errorf("column %s (%s): %w", c.Name, c.Type, err), col
	}
}

func (b *Block) PutString(col int, s string) {
	if col >= 0 {
		b.fail(col, b.use(col).putString(s))
	}
}

func (b *Block) PutInt(col int, v int64) {
	if col >= 0 {
		b.fail(col, b.use(col).putInt(v))
	}
}

func (b *Block) PutDecimal(col int, unscaled int64, scale int32) {
	if col >= 0 {
		b.fail(col, b.use(col).putDecimal(unscaled, scale))
	}
}

func (b *Block) PutTime(col int, t time.Time) {
	if col >= 0 {
		b.fail(col, b.use(col).putTime(t))
	}
}

func (b *Block) PutNull(col int) {
	if col >= 0 {
		b.fail(col, b.use(col).add(nil))
	}
}

func (b *Block) PutValue(col int, v any) {
	if col >= 0 {
		b.fail(col, b.use(col).add(v))
	}
}

// EndRow pads the columns the row did not put (zero or NULL), or turns
// the row into a placeholder when a value did not fit.
func (b *Block) EndRow() error {
	if err := b.rowErr; err != nil {
		b.FailRow()
		return err
	}
	for _, c := range b.active {
		if c.len() == b.rows {
			_ = c.add(nil) // never fails
		}
	}
	b.rows++
	b.behind = len(b.active) < len(b.bufs.cols)
	b.closeLists()
	return nil
}

func (b *Block) FailRow() {
	b.sync()
	for _, c := range b.bufs.cols {
		c.truncate(b.rows)
		_ = c.add(nil)
	}
	for _, l := range b.ints {
		l.Vals = l.Vals[:l.Offsets[b.rows]]
	}
	b.rows++
	b.rowErr = nil
	b.closeLists()
}

func (b *Block) closeLists() {
	for _, l := range b.lists {
		l.Offsets = append(l.Offsets, int32(len(l.Vals)))
	}
}

func (b *Block) SetInt(col, row int, v int64) error {
	if col < 0 {
		return nil
	}
	b.sync()
	if err := b.bufs.cols[col].setInt(row, v); err != nil {
		c := b.t.cols[col]
		return fmt.Errorf("column %s (%s): %w", c.Name, c.Type, err)
	}
	return nil
}

func (b *Block) Ints(name string) *record.IntList { return b.ints[name] }

var _ record.Block = (*Block)(nil)

// prepareBlock is Prepare for a batch whose rows are in bufs' block: it
// fills the source columns of the pending rows and selects them; the
// columns are sent as they are when every row of the batch's range is
// pending, else gathered.
func (t *Table) prepareBlock(bufs *Buffers, b *record.Batch) int {
	bufs.block.sync()
	ingested := t.ingested(b)
	src := sourceColumns(bufs.src[:0], t.cols)
	bufs.src = src
	ingestedV := any(ingested) // boxed once per batch, for a column without a typed setter
	bufs.picked = bufs.picked[:0]
	for i := range b.Items {
		it := &b.Items[i]
		if !it.Pending() {
			continue
		}
		r := b.Base + i
		if err := t.setSource(bufs, src, r, b, it, ingested, ingestedV); err != nil {
			it.Fail(record.StageLoad, err.Error())
			continue
		}
		bufs.picked = append(bufs.picked, r)
	}
	n := len(bufs.picked)
	bufs.send = bufs.send[:0]
	if n > 0 {
		lo, hi := bufs.picked[0], bufs.picked[n-1]+1
		for _, c := range bufs.cols {
			if hi-lo == n {
				bufs.send = append(bufs.send, c.view(lo, hi))
			} else {
				bufs.send = append(bufs.send, c.gather(bufs.picked))
			}
		}
	}
	bufs.rows = n
	return n
}

// sourceColumns appends to dst the indexes in cols of the source columns
// (setSource fills them; the others are the block's).
func sourceColumns(dst []int, cols []Column) []int {
	for j, c := range cols {
		switch c.Name {
		case ColTopicID, ColTopic, ColPartition, ColOffset, ColIngestedAt:
			dst = append(dst, j)
		}
	}
	return dst
}

// setSource fills row r's source columns (src: sourceColumns) for item it
// of b; ingestedV is ingested boxed.
func (t *Table) setSource(bufs *Buffers, src []int, r int, b *record.Batch, it *record.Item, ingested time.Time, ingestedV any) error {
	// A released item (record.Item.Release) has the batch's topic and
	// partition.
	topic, partition, topicID := b.Topic, b.Partition, b.TopicID
	if it.Rec != nil {
		topic, partition = it.Rec.Topic, it.Rec.Partition
	}
	for _, j := range src {
		c := t.cols[j]
		var v any
		switch c.Name {
		case ColTopicID, ColTopic:
			s := topicID
			if c.Name == ColTopic {
				s = topic
			}
			if sb, ok := bufs.cols[j].(*buf[string]); ok {
				sb.vals[r] = s
				continue
			}
			v = s
		case ColPartition:
			if err := bufs.cols[j].setInt(r, int64(partition)); err != nil {
				return fmt.Errorf("column %s (%s): %w", c.Name, c.Type, err)
			}
			continue
		case ColOffset:
			if err := bufs.cols[j].setInt(r, it.Offset()); err != nil {
				return fmt.Errorf("column %s (%s): %w", c.Name, c.Type, err)
			}
			continue
		case ColIngestedAt:
			if tb, ok := bufs.cols[j].(*buf[time.Time]); ok {
				tb.vals[r] = ingested
				continue
			}
			if nt, ok := bufs.cols[j].(*ntime); ok {
				if err := nt.setTime(r, ingested); err != nil {
					return fmt.Errorf("column %s (%s): %w", c.Name, c.Type, err)
				}
				continue
			}
			v = ingestedV
		default:
			continue
		}
		if err := bufs.cols[j].set(r, v); err != nil {
			return fmt.Errorf("column %s (%s): %w", c.Name, c.Type, err)
		}
	}
	return nil
}
