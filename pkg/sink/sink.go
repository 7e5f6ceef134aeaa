// Package sink loads batches into ClickHouse.
//
// Place in the flow: after decode and transforms, before the offset commit.
// A Table is one pipeline's target table; Insert writes the good items of a
// batch as ONE INSERT with an explicit column list and columnar appends, so
// the batch lands all-or-nothing (see config.MaxInsertRows). Values are
// converted exactly to the column types; a row whose value cannot be stored
// (wrong type, decimal overflow, timestamp out of range) is marked failed at
// stage "load" and left out of the insert rather than failing its batch.
//
// Every table carries the source coordinates _topic, _partition, _offset and
// _ingested_at, which Insert fills from the Kafka record; MaxOffset reads
// them back so a partition resumes after what is already loaded.
package sink

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/sluice-etl/sluice/pkg/config"
	"github.com/sluice-etl/sluice/pkg/record"
)

// Source columns every target table must have.
const (
	ColTopic      = "_topic"
	ColPartition  = "_partition"
	ColOffset     = "_offset"
	ColIngestedAt = "_ingested_at"
)

// SourceColumns are filled by the sink, not by the decoded record.
var SourceColumns = []string{ColTopic, ColPartition, ColOffset, ColIngestedAt}

// Open connects to ClickHouse over the native protocol and pings it.
func Open(ctx context.Context, c config.ClickHouse) (driver.Conn, error) {
	conn, err := clickhouse.Open(&clickhouse.Options{
		Addr: c.Addr,
		Auth: clickhouse.Auth{Database: c.Database, Username: c.Username, Password: c.Password},
		// The Debian 18.16 server speaks only the native protocol to
		// clickhouse-go (the HTTP interface rejects its settings).
		Protocol:    clickhouse.Native,
		DialTimeout: c.DialTimeout,
		// One connection per loading partition plus lookups; more only
		// queue inside the server.
		MaxOpenConns:    16,
		MaxIdleConns:    8,
		ConnMaxLifetime: time.Hour,
	})
	if err != nil {
		return nil, fmt.Errorf("sink: open clickhouse %s: %w", strings.Join(c.Addr, ","), err)
	}
	pctx, cancel := context.WithTimeout(ctx, c.DialTimeout+time.Second)
	defer cancel()
	if err := conn.Ping(pctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("sink: ping clickhouse %s: %w", strings.Join(c.Addr, ","), err)
	}
	return conn, nil
}

// Column is one insertable column of a target table.
type Column struct {
	Name string
	Type string
	// Nullable columns may be absent from a row (NULL); NOT NULL ones get
	// the type's zero value.
	Nullable bool
	// Default says the column has a DEFAULT expression: when nothing of the
	// pipeline fills it, Bind leaves it to ClickHouse.
	Default bool
}

// Table is a pipeline's target table. Insert and MaxOffset may be called
// concurrently for different partitions; the column buffers are per call.
type Table struct {
	conn    driver.Conn
	db      string
	name    string
	cols    []Column
	types   []*colType
	insert  string
	timeout time.Duration
	now     func() time.Time
}

// ErrMissingColumn says the table lacks a column Sluice needs.
var ErrMissingColumn = errors.New("missing column")

// NewTable reads the table's columns from system.columns (leaving out
// MATERIALIZED and ALIAS ones, which cannot be inserted) and checks that
// the source columns are there and every type is one Sluice can write.
func NewTable(ctx context.Context, conn driver.Conn, db, table string, insertTimeout time.Duration) (*Table, error) {
	rows, err := conn.Query(ctx,
		`SELECT name, type, default_kind FROM system.columns WHERE database = ? AND table = ? ORDER BY position`, db, table)
	if err != nil {
		// 18.16 has no "position" column in system.columns; it lists
		// columns in table order anyway.
		rows, err = conn.Query(ctx,
			`SELECT name, type, default_kind FROM system.columns WHERE database = ? AND table = ?`, db, table)
		if err != nil {
			return nil, fmt.Errorf("sink: read columns of %s.%s: %w", db, table, err)
		}
	}
	defer rows.Close()
	t := &Table{conn: conn, db: db, name: table, timeout: insertTimeout, now: time.Now}
	for rows.Next() {
		var name, typ, kind string
		if err := rows.Scan(&name, &typ, &kind); err != nil {
			return nil, fmt.Errorf("sink: read columns of %s.%s: %w", db, table, err)
		}
		if kind == "MATERIALIZED" || kind == "ALIAS" {
			continue
		}
		ct, err := parseType(typ)
		if err != nil {
			return nil, fmt.Errorf("sink: %s.%s column %s: %w", db, table, name, err)
		}
		if _, err := newColbuf(ct); err != nil {
			return nil, fmt.Errorf("sink: %s.%s column %s: %w", db, table, name, err)
		}
		t.cols = append(t.cols, Column{Name: name, Type: typ, Nullable: ct.nullable, Default: kind == "DEFAULT"})
		t.types = append(t.types, ct)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sink: read columns of %s.%s: %w", db, table, err)
	}
	if len(t.cols) == 0 {
		return nil, fmt.Errorf("sink: table %s.%s does not exist (run sluice migrate)", db, table)
	}
	for _, want := range SourceColumns {
		if !t.Has(want) {
			return nil, fmt.Errorf("sink: table %s.%s: %w %s (every target table needs %s)",
				db, table, ErrMissingColumn, want, strings.Join(SourceColumns, ", "))
		}
	}
	t.setInsert()
	return t, nil
}

func (t *Table) setInsert() {
	names := make([]string, len(t.cols))
	for i, c := range t.cols {
		names[i] = quoteIdent(c.Name)
	}
	t.insert = fmt.Sprintf("INSERT INTO %s.%s (%s)", quoteIdent(t.db), quoteIdent(t.name), strings.Join(names, ", "))
}

// Bind fits the table to what a pipeline fills (its schema's fields and its
// transforms' outputs; source columns are always filled). Columns with a
// DEFAULT that nothing fills are left out of the INSERT so ClickHouse
// computes them. A NOT NULL column without a default that nothing fills is
// an error: a typo in a field or column name would otherwise load zeros.
// Call it once, before the first Prepare.
func (t *Table) Bind(filled func(column string) bool) error {
	var missing []string
	var cols []Column
	var types []*colType
	for i, c := range t.cols {
		isSource := false
		for _, s := range SourceColumns {
			isSource = isSource || s == c.Name
		}
		switch {
		case isSource || filled(c.Name):
		case c.Default:
			continue
		case !c.Nullable:
			missing = append(missing, c.Name)
		}
		cols = append(cols, c)
		types = append(types, t.types[i])
	}
	if len(missing) > 0 {
		return fmt.Errorf("table %s: %w(s) %s: NOT NULL without a DEFAULT, and neither the schema nor the transforms fill them",
			t.name, ErrMissingColumn, strings.Join(missing, ", "))
	}
	t.cols, t.types = cols, types
	t.setInsert()
	return nil
}

// Name is the table's name.
func (t *Table) Name() string { return t.name }

// Columns lists the insertable columns in table order.
func (t *Table) Columns() []Column { return t.cols }

// Has says whether the table has an insertable column of that name.
func (t *Table) Has(name string) bool {
	for _, c := range t.cols {
		if c.Name == name {
			return true
		}
	}
	return false
}

func quoteIdent(s string) string { return "`" + strings.ReplaceAll(s, "`", "\\`") + "`" }

// Buffers are the reusable column buffers of one partition worker. A worker
// keeps one Buffers for its table across batches so the column slices are
// allocated once. Not safe for concurrent use.
type Buffers struct {
	cols []colbuf
	rows int
}

// NewBuffers makes the column buffers for this table.
func (t *Table) NewBuffers() *Buffers {
	b := &Buffers{cols: make([]colbuf, len(t.types))}
	for i, ct := range t.types {
		b.cols[i], _ = newColbuf(ct) // checked in NewTable
	}
	return b
}

// Prepare converts the batch's good items into the column buffers. Rows
// whose values do not fit their columns are marked failed (stage load) and
// left out, so they can be dead-lettered before the insert. It returns the
// number of rows prepared.
func (t *Table) Prepare(bufs *Buffers, b *record.Batch) int {
	for _, c := range bufs.cols {
		c.reset()
	}
	var ingested any = t.now().UTC().Truncate(time.Second)
	n := 0
	for i := range b.Items {
		it := &b.Items[i]
		if it.Failed != nil {
			continue
		}
		if err := t.addRow(bufs, it, ingested); err != nil {
			for _, c := range bufs.cols {
				c.truncate(n)
			}
			it.Fail(record.StageLoad, err.Error())
			continue
		}
		n++
	}
	bufs.rows = n
	return n
}

// Send inserts the prepared rows as one INSERT. On error the caller cannot
// know whether the rows are stored (an acknowledgement may be lost): it
// checks with MaxOffset before it retries.
func (t *Table) Send(ctx context.Context, bufs *Buffers, b *record.Batch) error {
	if bufs.rows == 0 {
		return nil
	}
	ictx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	bt, err := t.conn.PrepareBatch(ictx, t.insert, driver.WithReleaseConnection())
	if err != nil {
		return fmt.Errorf("sink: %s %s[%d] %d..%d: prepare insert: %w", t.name, b.Topic, b.Partition, b.First, b.Last, err)
	}
	for i, c := range bufs.cols {
		if err := bt.Column(i).Append(c.slice()); err != nil {
			_ = bt.Abort()
			return fmt.Errorf("sink: %s column %s: %w: %w", t.name, t.cols[i].Name, errAppend, err)
		}
	}
	if err := bt.Send(); err != nil {
		return fmt.Errorf("sink: %s %s[%d] %d..%d: insert: %w", t.name, b.Topic, b.Partition, b.First, b.Last, err)
	}
	return nil
}

func (t *Table) addRow(bufs *Buffers, it *record.Item, ingested any) error {
	for j, c := range t.cols {
		var v any
		switch c.Name {
		case ColTopic:
			// The usual column types take the source coordinates without
			// boxing them into an interface per row.
			if b, ok := bufs.cols[j].(*buf[string]); ok {
				b.vals = append(b.vals, it.Rec.Topic)
				continue
			}
			v = it.Rec.Topic
		case ColPartition:
			if b, ok := bufs.cols[j].(*buf[uint32]); ok && it.Rec.Partition >= 0 {
				b.vals = append(b.vals, uint32(it.Rec.Partition))
				continue
			}
			v = it.Rec.Partition
		case ColOffset:
			if b, ok := bufs.cols[j].(*buf[uint64]); ok && it.Rec.Offset >= 0 {
				b.vals = append(b.vals, uint64(it.Rec.Offset))
				continue
			}
			v = it.Rec.Offset
		case ColIngestedAt:
			v = ingested // boxed once per batch
		default:
			v = it.Row[c.Name]
		}
		if err := bufs.cols[j].add(v); err != nil {
			return fmt.Errorf("column %s (%s): %w", c.Name, c.Type, err)
		}
	}
	return nil
}

// MaxOffset returns the highest _offset stored for the partition at or
// above from, and false when none is. The lower bound keeps the lookup's
// cost independent of the table's size: the primary key starts with
// (_topic, _partition, _offset), so ClickHouse reads about one granule per
// part instead of the partition's whole history (on a 50M-row table,
// ~5 ms instead of ~55 ms; see bench/maxoffset_bench_test.go). Callers ask
// about offsets they are about to load, so nothing below from matters.
func (t *Table) MaxOffset(ctx context.Context, topic string, partition int32, from int64) (int64, bool, error) {
	q := fmt.Sprintf("SELECT toInt64(max(%s)), count() FROM %s.%s WHERE %s = ? AND %s = ? AND %s >= ?",
		ColOffset, quoteIdent(t.db), quoteIdent(t.name), ColTopic, ColPartition, ColOffset)
	var maxOff int64
	var n uint64
	if err := t.conn.QueryRow(ctx, q, topic, partition, uint64(max(from, 0))).Scan(&maxOff, &n); err != nil {
		return 0, false, fmt.Errorf("sink: %s: highest loaded offset of %s[%d]: %w", t.name, topic, partition, err)
	}
	return maxOff, n > 0, nil
}
