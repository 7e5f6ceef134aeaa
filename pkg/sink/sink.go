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
// _ingested_at, which Insert fills from the Kafka record; Stored reads the
// offsets back so a partition never loads a record the table already holds.
package sink

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync/atomic"
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

// ColTopicID, when a table has it (String), holds the Kafka topic ID of
// the record's topic (base64, as kadm prints it). It tells the incarnations
// of a topic apart: a topic deleted and created again under its name starts
// again at offset 0, where the table holds the old incarnation's rows.
// Optional; a table without it cannot tell them apart (sluice migrate
// creates it).
const ColTopicID = "_topic_id"

// Open connects to ClickHouse over the native protocol and pings it, over
// TLS when clickhouse.tls is enabled. An error never holds the password.
func Open(ctx context.Context, c config.ClickHouse) (driver.Conn, error) {
	conn, err := dial(c)
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, c.DialTimeout+time.Second)
	defer cancel()
	if err := conn.Ping(pctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("sink: ping clickhouse %s: %w", strings.Join(c.Addr, ","), err)
	}
	return conn, nil
}

// dial makes the connection pool to c.Addr without using it.
func dial(c config.ClickHouse) (driver.Conn, error) {
	tc, err := c.TLS.ClientConfig("clickhouse.tls")
	if err != nil {
		return nil, err
	}
	conn, err := clickhouse.Open(&clickhouse.Options{
		Addr: c.Addr,
		Auth: clickhouse.Auth{Database: c.Database, Username: c.Username, Password: string(c.Password)},
		TLS:  tc,
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

// Table is a pipeline's target table. Send, Stored and Running may be called
// concurrently for different partitions; the column buffers are per call.
type Table struct {
	conn    driver.Conn
	db      string
	name    string
	cols    []Column
	types   []*colType
	insert  string
	timeout time.Duration
	// views says materialized views read the table (at start-up): its
	// INSERTs are not held open across batches, so a view that fails
	// loses one batch's rows, not a stream's (docs/DESIGN.md,
	// "Materialized views").
	views bool
	now   func() time.Time
	// cluster, when set, replaces conn for the writes and the reads of
	// the load protocol (cluster.go); syncs holds each replica's
	// catch-up checks for this table.
	cluster *Cluster
	syncs   map[*Replica]*syncPoint
	// native, when set, sends the INSERTs instead of conn (UseNative,
	// nativewriter.go); the buffers then hold the wire representation.
	native *NativeWriter
	// prewhere: the engine was of the MergeTree family at NewTable, so the
	// stored offsets read filters on _partition and _offset in PREWHERE
	// (storedQuery); cleared for good when the server refuses PREWHERE
	// (the table was replaced by, say, a view since).
	prewhere atomic.Bool
}

// illegalPrewhere is ClickHouse's ILLEGAL_PREWHERE: the storage has no
// PREWHERE.
const illegalPrewhere = 182

// ErrMissingColumn says the table lacks a column Sluice needs.
var ErrMissingColumn = errors.New("missing column")

// NewTable reads the table's columns from system.columns (leaving out
// MATERIALIZED and ALIAS ones, which cannot be inserted) and checks that
// the source columns are there and every type is one Sluice can write.
func NewTable(ctx context.Context, conn driver.Conn, db, table string, insertTimeout time.Duration) (*Table, error) {
	// The engine first: the columns' rows below hold a connection until
	// the function returns.
	var engine string
	var views uint64
	switch err := conn.QueryRow(ctx, "SELECT engine, length(dependencies_table) FROM system.tables WHERE database = ? AND name = ?", db, table).Scan(&engine, &views); {
	case errors.Is(err, sql.ErrNoRows):
		return nil, fmt.Errorf("sink: table %s.%s does not exist (run sluice migrate)", db, table)
	case err != nil:
		return nil, fmt.Errorf("sink: read the engine of %s.%s: %w", db, table, err)
	}
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
	t := &Table{conn: conn, db: db, name: table, timeout: insertTimeout, now: time.Now, views: views > 0}
	t.prewhere.Store(strings.HasSuffix(engine, "MergeTree"))
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
		isSource := c.Name == ColTopicID
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
	// The columnar path (block.go): the block over cols, the rows picked
	// for the INSERT and their columns.
	block  *Block
	picked []int
	send   []any
	src    []int // the source columns' indexes (sourceColumns)
}

// column is the values of column i to send: the rows picked from the
// block (the columnar path), else the buffer's own.
func (b *Buffers) column(i int) any {
	if len(b.send) > 0 {
		return b.send[i]
	}
	return b.cols[i].slice()
}

// isSourceString says column name is a source column that holds a string
// (the same for every row of a batch).
func isSourceString(name string) bool { return name == ColTopic || name == ColTopicID }

// NewBuffers makes the column buffers for this table.
func (t *Table) NewBuffers() *Buffers {
	b := &Buffers{cols: make([]colbuf, len(t.types))}
	for i, ct := range t.types {
		if t.native != nil {
			b.cols[i], _ = newNativeColbuf(ct) // checked in UseNative
			if isSourceString(t.cols[i].Name) && ct.base == "String" {
				// One string for every row (setSource, addRow), not
				// a copy of it per row.
				b.cols[i] = nmk(ct.nullable, toString, "", stringAsIs)
			}
		} else {
			b.cols[i], _ = newColbuf(ct) // checked in NewTable
		}
	}
	return b
}

// Prepare converts the batch's good items into the column buffers. Rows
// whose values do not fit their columns are marked failed (stage load) and
// left out, so they can be dead-lettered before the insert. It returns the
// number of rows prepared.
func (t *Table) Prepare(bufs *Buffers, b *record.Batch) int {
	if b.Block != nil && b.Block == record.Block(bufs.block) {
		return t.prepareBlock(bufs, b)
	}
	bufs.send = bufs.send[:0]
	for _, c := range bufs.cols {
		c.reset()
	}
	var ingested any = t.ingested(b)
	n := 0
	for i := range b.Items {
		it := &b.Items[i]
		if !it.Pending() {
			continue
		}
		if err := t.addRow(bufs, it, b.TopicID, ingested); err != nil {
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

// ingested is the _ingested_at of the batch's rows: the time of its first
// Prepare, the same for every retry (Batch.Ingested).
func (t *Table) ingested(b *record.Batch) time.Time {
	if b.Ingested.IsZero() {
		b.Ingested = t.now().UTC().Truncate(time.Second)
	}
	return b.Ingested
}

// Send inserts the prepared rows as one INSERT, named with a query_id that
// starts with the partition's prefix (see Running), so the server's process
// list shows whether it still executes. On error the caller cannot know
// whether the rows are stored: an acknowledgement may be lost, the server
// may still be executing it, and an INSERT whose rows fall into several
// table partitions may have committed some of them. The caller waits until
// Running reports nothing for the partition, then reads Stored.
func (t *Table) Send(ctx context.Context, bufs *Buffers, b *record.Batch) error {
	return t.SendMany(ctx, []Part{{Bufs: bufs, Batch: b}})
}

// Part is one partition's prepared batch in an INSERT (SendMany).
type Part struct {
	Bufs  *Buffers
	Batch *record.Batch
}

// SendMany inserts the prepared rows of several partitions' batches of one
// topic as one INSERT: one block, so ClickHouse makes one part per table
// partition for all of them instead of one per batch. Its query_id lists
// every partition ("sluice:<db>.<table>:<topic>:3,5,8:…"), so Running finds
// it for each of them; an INSERT of one batch keeps the single-partition
// form. The outcome is the same for every part: on error, each partition
// settles and reads what is stored, as after Send.
func (t *Table) SendMany(ctx context.Context, parts []Part) error {
	rows := 0
	for _, p := range parts {
		rows += p.Bufs.rows
	}
	if rows == 0 {
		return nil
	}
	first := parts[0].Batch
	ictx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	var id, what string
	if len(parts) == 1 {
		id = t.queryPrefix(first.Topic, first.Partition) + strconv.FormatInt(first.First, 10) + "-" + strconv.FormatUint(rand.Uint64(), 36)
		what = fmt.Sprintf("%s[%d] %d..%d", first.Topic, first.Partition, first.First, first.Last)
	} else {
		ps := make([]string, len(parts))
		for i, p := range parts {
			ps[i] = strconv.Itoa(int(p.Batch.Partition))
		}
		list := strings.Join(ps, ",")
		id = t.topicPrefix(first.Topic) + list + ":" + strconv.FormatUint(rand.Uint64(), 36)
		what = fmt.Sprintf("%s[%s] (%d batches)", first.Topic, list, len(parts))
	}
	conn := t.conn
	var rep *Replica
	if t.cluster != nil {
		shard := t.cluster.ShardOf(first.Partition)
		for _, p := range parts[1:] {
			if t.cluster.ShardOf(p.Batch.Partition) != shard {
				return fmt.Errorf("sink: %s %s: partitions of different shards in one INSERT", t.name, what)
			}
		}
		rep = t.cluster.Writer(ctx, shard)
		conn = rep.conn
		what += " on " + rep.Addr
		ictx = clickhouse.Context(ictx, clickhouse.WithQueryID(id), clickhouse.WithSettings(t.cluster.settings()))
	} else {
		ictx = clickhouse.Context(ictx, clickhouse.WithQueryID(id))
	}
	var err error
	switch {
	case t.native != nil && rep != nil:
		err = t.sendNative(ictx, rep.Addr, parts, id, what, t.cluster.nativeSettings())
	case t.native != nil:
		err = t.sendNative(ictx, "", parts, id, what, nil)
	default:
		err = t.sendOn(ictx, conn, parts, id, what)
	}
	if rep != nil && err != nil && ctx.Err() == nil {
		rep.fail(err, t.cluster.now())
	}
	return err
}

func (t *Table) sendOn(ictx context.Context, conn driver.Conn, parts []Part, id, what string) error {
	// One connection from prepare to send: with WithReleaseConnection
	// clickhouse-go would send the INSERT twice under the same query_id
	// (once to read the block structure, once with the data), which costs
	// a round trip and now and then 216 QUERY_WITH_SAME_ID_IS_ALREADY_RUNNING.
	bt, err := conn.PrepareBatch(ictx, t.insert)
	if err != nil {
		return fmt.Errorf("sink: %s %s: prepare insert: %w", t.name, what, err)
	}
	for _, p := range parts {
		if p.Bufs.rows == 0 {
			continue
		}
		for i := range p.Bufs.cols {
			if err := bt.Column(i).Append(p.Bufs.column(i)); err != nil {
				_ = bt.Abort()
				return fmt.Errorf("sink: %s column %s: %w: %w", t.name, t.cols[i].Name, errAppend, err)
			}
		}
	}
	if err := bt.Send(); err != nil {
		return fmt.Errorf("sink: %s %s: insert %s: %w", t.name, what, id, err)
	}
	return nil
}

func (t *Table) addRow(bufs *Buffers, it *record.Item, topicID string, ingested any) error {
	for j, c := range t.cols {
		var v any
		switch c.Name {
		case ColTopicID:
			if b, ok := bufs.cols[j].(*buf[string]); ok {
				b.vals = append(b.vals, topicID)
				continue
			}
			v = topicID
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

// queryPrefix starts the query_id of every INSERT of the partition alone
// into this table: "sluice:<db>.<table>:<topic>:<partition>:". Whoever loads
// the partition (this process, a previous owner, a zombie) uses the same
// prefix. An INSERT of several partitions' batches (SendMany) lists them
// instead: "sluice:<db>.<table>:<topic>:<p>,<p>,…:". A topic name has no
// ':' or ',' (Kafka allows letters, digits, '.', '_' and '-').
func (t *Table) queryPrefix(topic string, partition int32) string {
	return t.topicPrefix(topic) + strconv.Itoa(int(partition)) + ":"
}

func (t *Table) topicPrefix(topic string) string {
	return "sluice:" + t.db + "." + t.name + ":" + topic + ":"
}

// loads says whether a query_id that starts with the topic's prefix is an
// INSERT of partition (alone or with others).
func loads(rest string, partition int32) bool {
	list, _, ok := strings.Cut(rest, ":")
	if !ok {
		return false
	}
	want := strconv.Itoa(int(partition))
	for list != "" {
		var p string
		p, list, _ = strings.Cut(list, ",")
		if p == want {
			return true
		}
	}
	return false
}

// Stored returns the offsets of the partition in [from, to] that the table
// holds for the topic incarnation topicID, ascending (an offset stored
// twice comes twice), and how many rows of the range belong to another
// incarnation (another non-empty _topic_id). Rows without a topic ID
// (loaded before the column existed) count for every incarnation; so does
// every row when the table has no _topic_id column or topicID is "". The
// primary key starts with (_topic, _partition, _offset), so the server
// reads only the granules of that range: the cost follows the batch, not
// the table (see bench/maxoffset_bench_test.go). Reading the offsets
// themselves, not their maximum, is what makes a partly stored batch safe
// to resume: an INSERT whose rows span several table partitions commits one
// part per partition, and a crash between them keeps any subset.
func (t *Table) Stored(ctx context.Context, topic string, partition int32, topicID string, from, to int64) ([]int64, int, error) {
	if t.cluster != nil {
		return t.storedCluster(ctx, topic, partition, topicID, from, to)
	}
	return t.storedOn(ctx, t.conn, topic, partition, topicID, from, to)
}

func (t *Table) storedOn(ctx context.Context, conn driver.Conn, topic string, partition int32, topicID string, from, to int64) ([]int64, int, error) {
	rows, err := t.readPartition(ctx, conn, topicID, t.storedQuery, partition, uint64(max(from, 0)), uint64(max(to, 0)), topic)
	if err != nil {
		return nil, 0, fmt.Errorf("sink: %s: stored offsets of %s[%d] %d..%d: %w", t.name, topic, partition, from, to, err)
	}
	defer rows.Close()
	var out []int64
	foreign := 0
	for rows.Next() {
		var off int64
		var ours uint8
		if err := rows.Scan(&off, &ours); err != nil {
			return nil, 0, fmt.Errorf("sink: %s: stored offsets of %s[%d]: %w", t.name, topic, partition, err)
		}
		if ours == 0 {
			foreign++
			continue
		}
		out = append(out, off)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("sink: %s: stored offsets of %s[%d]: %w", t.name, topic, partition, err)
	}
	return out, foreign, nil
}

// Highest returns the highest offset of the partition above after that
// the table holds for the topic incarnation topicID (rows without a topic
// ID count as it, as in Stored), -1 when it holds none, and how many rows
// above after belong to another incarnation. Like Stored it is final only
// while Running reports 0. A worker asks it once per ownership, beside its
// first Stored read: above the answer nothing is stored that it did not
// write itself (docs/DESIGN.md, invariant 3), so its later batches need
// no read of their own. The primary key bounds it as it bounds Stored: the
// server reads the granules from after to the partition's end.
func (t *Table) Highest(ctx context.Context, topic string, partition int32, topicID string, after int64) (int64, int, error) {
	if t.cluster != nil {
		return t.highestCluster(ctx, topic, partition, topicID, after)
	}
	return t.highestOn(ctx, t.conn, topic, partition, topicID, after)
}

func (t *Table) highestOn(ctx context.Context, conn driver.Conn, topic string, partition int32, topicID string, after int64) (int64, int, error) {
	// after is at least -1; the column is unsigned, so "above -1" is
	// "at least 0".
	rows, err := t.readPartition(ctx, conn, topicID, t.highestQuery, partition, uint64(after+1), topic)
	if err != nil {
		return 0, 0, fmt.Errorf("sink: %s: highest stored offset of %s[%d] above %d: %w", t.name, topic, partition, after, err)
	}
	defer rows.Close()
	highest, foreign := int64(-1), 0
	for rows.Next() {
		var ours uint8
		var top int64
		var n uint64
		if err := rows.Scan(&ours, &top, &n); err != nil {
			return 0, 0, fmt.Errorf("sink: %s: highest stored offset of %s[%d]: %w", t.name, topic, partition, err)
		}
		if ours == 0 {
			foreign += int(n)
			continue
		}
		highest = top
	}
	if err := rows.Err(); err != nil {
		return 0, 0, fmt.Errorf("sink: %s: highest stored offset of %s[%d]: %w", t.name, topic, partition, err)
	}
	return highest, foreign, nil
}

// highestQuery is Highest's read, its parameters (after the topic ID, if
// mine has one) the partition, the first offset above the bound and the
// topic: a row per incarnation class found, none on an empty range.
func (t *Table) highestQuery(mine string, prewhere bool) string {
	first, then := "WHERE", "AND"
	if prewhere {
		first, then = "PREWHERE", "WHERE"
	}
	return fmt.Sprintf("SELECT %s AS ours, toInt64(max(%s)), count() FROM %s.%s %s %s = ? AND %s >= ? %s %s = ? GROUP BY ours",
		mine, ColOffset, quoteIdent(t.db), quoteIdent(t.name),
		first, ColPartition, ColOffset, then, ColTopic)
}

// readPartition runs a read of a partition's rows (Stored, Highest): the
// query build makes for mine (whether a row is the incarnation topicID's,
// or has no ID: computed by the server so that only a byte per row
// travels) and for PREWHERE, with args after topicID's. A table that
// refuses PREWHERE (ILLEGAL_PREWHERE: not a MergeTree, or a view since
// start-up) is read with WHERE from then on.
func (t *Table) readPartition(ctx context.Context, conn driver.Conn, topicID string, build func(mine string, prewhere bool) string, args ...any) (driver.Rows, error) {
	mine := "toUInt8(1)"
	if t.HasTopicID() && topicID != "" {
		mine = fmt.Sprintf("toUInt8(%s = ? OR %s = '')", ColTopicID, ColTopicID)
		args = append([]any{topicID}, args...)
	}
	prewhere := t.prewhere.Load()
	rows, err := conn.Query(ctx, build(mine, prewhere), args...)
	var ex *clickhouse.Exception
	if prewhere && errors.As(err, &ex) && ex.Code == illegalPrewhere {
		t.prewhere.Store(false)
		rows, err = conn.Query(ctx, build(mine, false), args...)
	}
	return rows, err
}

// storedQuery is the stored offsets read, its parameters the partition,
// the range's first and last offset and the topic. On a MergeTree table
// the partition and the range go in PREWHERE: the server then reads the
// two numeric columns of the granules the primary key cannot rule out (in
// each part, the one where the partition's rows end, which may hold the
// range's start) and _topic and _topic_id only for the rows in the range,
// none while a range is loaded the first time. With every condition in
// WHERE (perf: most of the read's time in LZ4 decompression under
// MergeTreeReader) it cost about twice as much. Server CPU per read, 450 reads of empty
// ranges by clickhouse-client (2026-12-07): 4.9 ms against 2.9 on make
// bench's case (a) table after its load (3M orders, 13 parts), 16.3
// against 8.9 with 64 parts; a read per batch, and the cost grows with
// the table's parts. make bench's case (a) itself shows no difference
// (server 1.78 and 1.81 µs/row against 1.77 and 1.85, alternating).
func (t *Table) storedQuery(mine string, prewhere bool) string {
	first, then := "WHERE", "AND"
	if prewhere {
		first, then = "PREWHERE", "WHERE"
	}
	return fmt.Sprintf("SELECT toInt64(%s), %s FROM %s.%s %s %s = ? AND %s >= ? AND %s <= ? %s %s = ? ORDER BY %s",
		ColOffset, mine, quoteIdent(t.db), quoteIdent(t.name),
		first, ColPartition, ColOffset, ColOffset, then, ColTopic, ColOffset)
}

// HasTopicID says whether the table records topic IDs (ColTopicID).
func (t *Table) HasTopicID() bool {
	for _, c := range t.cols {
		if c.Name == ColTopicID {
			return true
		}
	}
	return false
}

// Running counts the INSERTs of the partition into this table that the
// server is executing now (system.processes, by query_id prefix); with kill
// it also asks the server to cancel them (KILL QUERY ... ASYNC, best
// effort). The ClickHouse user needs to read system.processes (every user
// may by default). A count of
// 0 means no attempt can still commit rows, so what Stored reads next is
// final — unless an attempt's bytes are still on their way to the server,
// which the caller covers by waiting before it asks (docs/DESIGN.md).
func (t *Table) Running(ctx context.Context, topic string, partition int32, kill bool) (int, error) {
	if t.cluster != nil {
		return t.runningCluster(ctx, topic, partition, kill)
	}
	return t.runningOn(ctx, t.conn, topic, partition, kill)
}

func (t *Table) runningOn(ctx context.Context, conn driver.Conn, topic string, partition int32, kill bool) (int, error) {
	prefix := t.topicPrefix(topic)
	rows, err := conn.Query(ctx, "SELECT query_id FROM system.processes WHERE substring(query_id, 1, length(?)) = ?", prefix, prefix)
	if err != nil {
		return 0, fmt.Errorf("sink: %s: running inserts of %s[%d]: %w", t.name, topic, partition, err)
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return 0, fmt.Errorf("sink: %s: running inserts of %s[%d]: %w", t.name, topic, partition, err)
		}
		if loads(id[len(prefix):], partition) {
			ids = append(ids, id)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("sink: %s: running inserts of %s[%d]: %w", t.name, topic, partition, err)
	}
	if kill {
		for _, id := range ids {
			// Best effort: the caller waits until none runs either way.
			// It fails with 380 CANNOT_KILL while an INSERT is in a
			// stage that cannot be cancelled (18.16 says so for most of
			// an INSERT), and with an access error for another user's
			// query. An INSERT of several partitions is cancelled for
			// all of them: each settles and reads what is stored.
			_ = conn.Exec(ctx, "KILL QUERY WHERE query_id = ? ASYNC", id)
		}
	}
	return len(ids), nil
}

// Column returns the index of the named column among those Send writes
// (after Bind), -1 when it is not one of them.
func (t *Table) Column(name string) int {
	for i, c := range t.cols {
		if c.Name == name {
			return i
		}
	}
	return -1
}
