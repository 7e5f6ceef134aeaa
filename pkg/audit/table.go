package audit

// What the audit asks a pipeline's table, and the ClickHouse queries that
// answer it. Every query is bounded by (_topic, _partition, _offset
// range), the prefix of the tables' primary key, so ClickHouse reads only
// the granules of that range; and every answer is small: one row per
// bucket, one row per offset of one bucket, or one row.

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Table is the part of a pipeline's table the audit reads. Offsets are of
// one topic-partition; ranges are half-open, [from, to). Implementations
// must be safe for use by one audit at a time; ctx bounds each call.
type Table interface {
	// Buckets returns, for each bucket (offset / width) holding rows in
	// [from, to), its row count and distinct offsets. Buckets without
	// rows may be left out.
	Buckets(ctx context.Context, topic string, partition int32, from, to, width int64) ([]BucketStats, error)
	// Offsets calls fn for every distinct offset stored in [from, to),
	// in ascending order, with its number of rows.
	Offsets(ctx context.Context, topic string, partition int32, from, to int64, fn func(offset int64, rows uint64)) error
	// RowsAt returns the number of rows of each of offsets that has any.
	RowsAt(ctx context.Context, topic string, partition int32, offsets []int64) (map[int64]uint64, error)
	// Span returns the number of rows in [from, to) and their lowest and
	// highest offsets; to < 0 means no upper bound.
	Span(ctx context.Context, topic string, partition int32, from, to int64) (rows uint64, lo, hi int64, err error)
}

// Querier is the part of a ClickHouse connection the audit needs.
type Querier interface {
	Query(ctx context.Context, query string, args ...any) (driver.Rows, error)
	QueryRow(ctx context.Context, query string, args ...any) driver.Row
}

// ErrNoTable says the pipeline's table does not exist or lacks the source
// columns the audit reads.
var ErrNoTable = errors.New("no audit-able table")

// Source columns, as every Sluice table has them (see pkg/sink).
const (
	colTopic     = "_topic"
	colPartition = "_partition"
	colOffset    = "_offset"
)

// ClickHouseTable is the Table db.name on a ClickHouse server. It checks
// that the table exists and has _topic, _partition and _offset; an error
// wrapping ErrNoTable says it does not, any other error that the server
// could not be asked.
func ClickHouseTable(ctx context.Context, q Querier, db, name string) (Table, error) {
	rows, err := q.Query(ctx, `SELECT name FROM system.columns WHERE database = ? AND table = ?`, db, name)
	if err != nil {
		return nil, fmt.Errorf("audit: columns of %s.%s: %w", db, name, err)
	}
	defer rows.Close()
	have := map[string]bool{}
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			return nil, fmt.Errorf("audit: columns of %s.%s: %w", db, name, err)
		}
		have[c] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("audit: columns of %s.%s: %w", db, name, err)
	}
	if len(have) == 0 {
		return nil, fmt.Errorf("audit: table %s.%s does not exist: %w", db, name, ErrNoTable)
	}
	for _, c := range []string{colTopic, colPartition, colOffset} {
		if !have[c] {
			return nil, fmt.Errorf("audit: table %s.%s has no column %s: %w", db, name, c, ErrNoTable)
		}
	}
	return &chTable{q: q, db: db, name: name, from: quoteIdent(db) + "." + quoteIdent(name), hasTopicID: have[colTopicID]}, nil
}

type chTable struct {
	q        Querier
	db, name string
	from     string // `db`.`name`
	// hasTopicID says the table records topic IDs; topicID is then the
	// current incarnation's (set by Run through Incarnation), and rows of
	// other incarnations are not this topic's rows.
	hasTopicID bool
	topicID    string
}

// colTopicID tells a topic's incarnations apart (see pkg/sink).
const colTopicID = "_topic_id"

// Incarnation is implemented by tables that tell a topic's incarnations
// apart: Run gives them the topic's current ID (base64, as kadm prints it)
// before it reads them, and they count only that incarnation's rows and
// rows without an ID.
type Incarnation interface {
	SetTopicID(id string)
}

// SetTopicID implements Incarnation.
func (t *chTable) SetTopicID(id string) {
	for _, c := range id { // base64: nothing to escape, checked anyway
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '=') {
			return
		}
	}
	t.topicID = id
}

// where is the primary-key-prefix condition of a query. The topic is a
// bound argument; partition and offsets are integers written as literals
// (they are ints, nothing to escape), which lets the server use the
// primary key whatever the columns' integer types (UInt32 or Int32,
// UInt64 or Int64). With a topic ID, rows of other incarnations are left
// out.
func (t *chTable) where(partition int32, from, to int64) string {
	w := fmt.Sprintf("%s = ? AND %s = %d AND %s >= %d", colTopic, colPartition, partition, colOffset, max(from, 0))
	if to >= 0 {
		w += fmt.Sprintf(" AND %s < %d", colOffset, to)
	}
	if t.hasTopicID && t.topicID != "" {
		w += fmt.Sprintf(" AND (%s = '%s' OR %s = '')", colTopicID, t.topicID, colTopicID)
	}
	return w
}

func (t *chTable) errf(what, topic string, partition int32, err error) error {
	return fmt.Errorf("audit: %s.%s: %s of %s[%d]: %w", t.db, t.name, what, topic, partition, err)
}

func (t *chTable) Buckets(ctx context.Context, topic string, partition int32, from, to, width int64) ([]BucketStats, error) {
	q := fmt.Sprintf("SELECT toInt64(intDiv(%s, %d)) AS b, count(), uniqExact(%s) FROM %s WHERE %s GROUP BY b",
		colOffset, width, colOffset, t.from, t.where(partition, from, to))
	rows, err := t.q.Query(ctx, q, topic)
	if err != nil {
		return nil, t.errf("buckets", topic, partition, err)
	}
	defer rows.Close()
	var out []BucketStats
	for rows.Next() {
		var b BucketStats
		if err := rows.Scan(&b.Bucket, &b.Rows, &b.Distinct); err != nil {
			return nil, t.errf("buckets", topic, partition, err)
		}
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, t.errf("buckets", topic, partition, err)
	}
	return out, nil
}

func (t *chTable) Offsets(ctx context.Context, topic string, partition int32, from, to int64, fn func(int64, uint64)) error {
	q := fmt.Sprintf("SELECT toInt64(%s) AS o, count() FROM %s WHERE %s GROUP BY o ORDER BY o",
		colOffset, t.from, t.where(partition, from, to))
	rows, err := t.q.Query(ctx, q, topic)
	if err != nil {
		return t.errf("offsets", topic, partition, err)
	}
	defer rows.Close()
	for rows.Next() {
		var o int64
		var n uint64
		if err := rows.Scan(&o, &n); err != nil {
			return t.errf("offsets", topic, partition, err)
		}
		fn(o, n)
	}
	if err := rows.Err(); err != nil {
		return t.errf("offsets", topic, partition, err)
	}
	return nil
}

// rowsAtChunk is how many offsets one RowsAt query names: a size the
// server's IN set and the query text handle comfortably.
const rowsAtChunk = 10_000

func (t *chTable) RowsAt(ctx context.Context, topic string, partition int32, offsets []int64) (map[int64]uint64, error) {
	out := map[int64]uint64{}
	for len(offsets) > 0 {
		chunk := offsets[:min(len(offsets), rowsAtChunk)]
		offsets = offsets[len(chunk):]
		lo, hi := chunk[0], chunk[0]
		var in strings.Builder
		for i, o := range chunk {
			if i > 0 {
				in.WriteByte(',')
			}
			in.WriteString(strconv.FormatInt(o, 10))
			lo, hi = min(lo, o), max(hi, o)
		}
		// The range condition lets the primary key skip to the chunk's
		// granules; the IN set picks the offsets.
		q := fmt.Sprintf("SELECT toInt64(%s) AS o, count() FROM %s WHERE %s AND %s IN (%s) GROUP BY o",
			colOffset, t.from, t.where(partition, lo, hi+1), colOffset, in.String())
		rows, err := t.q.Query(ctx, q, topic)
		if err != nil {
			return nil, t.errf("rows at dead-lettered offsets", topic, partition, err)
		}
		for rows.Next() {
			var o int64
			var n uint64
			if err := rows.Scan(&o, &n); err != nil {
				rows.Close()
				return nil, t.errf("rows at dead-lettered offsets", topic, partition, err)
			}
			out[o] = n
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, t.errf("rows at dead-lettered offsets", topic, partition, err)
		}
	}
	return out, nil
}

func (t *chTable) Span(ctx context.Context, topic string, partition int32, from, to int64) (uint64, int64, int64, error) {
	q := fmt.Sprintf("SELECT count(), toInt64(min(%s)), toInt64(max(%s)) FROM %s WHERE %s",
		colOffset, colOffset, t.from, t.where(partition, from, to))
	var n uint64
	var lo, hi int64
	if err := t.q.QueryRow(ctx, q, topic).Scan(&n, &lo, &hi); err != nil {
		return 0, 0, 0, t.errf("span", topic, partition, err)
	}
	return n, lo, hi, nil
}

func quoteIdent(s string) string { return "`" + strings.ReplaceAll(s, "`", "\\`") + "`" }
