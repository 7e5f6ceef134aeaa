// Command bench-limits is the loader process of the two limit cases of the
// side-by-side suite (bench/sidebyside_bench_test.go, `make bench`). Each
// runs as its own process so that its CPU and peak RSS are read from
// /proc/<pid> like Sluice's, without the bench's own producing and polling.
//
//	bench-limits consume -brokers B -topic T -group G -rows N
//	    (e) a franz-go group consumer draining T from the start and
//	    discarding every record.
//	bench-limits insert -addr A -src DB.T -dst DB.T -block N
//	    (d) reads the rows of the source table into memory, grouped by
//	    _partition in _offset order, then inserts them into the
//	    destination table with clickhouse-go, N rows per INSERT (columnar
//	    appends, as pkg/sink sends them), one goroutine per Kafka
//	    partition like Sluice's partition workers.
//
// Protocol, one line per event on stdout, read by the bench:
//
//	ready <rows>   insert only: the rows are in memory; it then waits for a
//	               line "go" on stdin before the first INSERT
//	first          the first record was consumed / the first INSERT returned
//	done <rows>    everything was consumed / inserted
//
// After "done" the process waits for stdin to close before it exits, so
// the bench reads /proc/<pid> of a live process. Errors go to stderr with
// exit code 1.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/shopspring/decimal"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-etl/sluice/pkg/config"
	"github.com/sluice-etl/sluice/pkg/sink"
)

func main() {
	if len(os.Args) < 2 {
		fail(fmt.Errorf("usage: bench-limits consume|insert [flags]"))
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	var err error
	stdin := bufio.NewScanner(os.Stdin)
	switch os.Args[1] {
	case "consume":
		brokers := fs.String("brokers", "127.0.0.1:9092", "comma-separated seed brokers")
		topic := fs.String("topic", "", "topic to drain")
		group := fs.String("group", "", "consumer group (new)")
		rows := fs.Int64("rows", 0, "records to consume")
		_ = fs.Parse(os.Args[2:])
		err = consume(strings.Split(*brokers, ","), *topic, *group, *rows)
	case "insert":
		addr := fs.String("addr", "127.0.0.1:9000", "ClickHouse native address")
		src := fs.String("src", "", "source table db.table")
		dst := fs.String("dst", "", "destination table db.table")
		block := fs.Int("block", 20000, "rows per INSERT")
		_ = fs.Parse(os.Args[2:])
		err = insert(*addr, *src, *dst, *block, stdin)
	default:
		err = fmt.Errorf("unknown command %q (consume or insert)", os.Args[1])
	}
	if err != nil {
		fail(err)
	}
	for stdin.Scan() {
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bench-limits:", err)
	os.Exit(1)
}

// consume drains topic with a new group from the log start until rows
// records arrived, and discards them.
func consume(brokers []string, topic, group string, rows int64) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit())
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var n int64
	for n < rows {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("consumed %d of %d records: %w", n, rows, err)
		}
		var ferr error
		fetches.EachError(func(t string, p int32, err error) { ferr = fmt.Errorf("fetch %s[%d]: %w", t, p, err) })
		if ferr != nil {
			return ferr
		}
		before := n
		fetches.EachRecord(func(*kgo.Record) { n++ })
		if before == 0 && n > 0 {
			fmt.Println("first")
		}
	}
	fmt.Println("done", n)
	return nil
}

// insert loads src into memory, waits for "go", then inserts it into dst.
func insert(addr, src, dst string, block int, stdin *bufio.Scanner) error {
	ctx := context.Background()
	conn, err := sink.Open(ctx, config.ClickHouse{Addr: []string{addr}, Database: "default", Username: "default", DialTimeout: 5 * time.Second})
	if err != nil {
		return err
	}
	defer conn.Close()
	names, cols, err := readTable(ctx, conn, src)
	if err != nil {
		return err
	}
	part := cols[indexOf(names, sink.ColPartition)].(*typed[uint32])
	var total int
	for _, p := range part.byPart {
		total += len(p)
	}
	// The clock starts on a clean heap: reading's garbage is not collected
	// on the INSERTs' time.
	runtime.GC()
	fmt.Println("ready", total)
	if !stdin.Scan() || stdin.Text() != "go" {
		return fmt.Errorf("expected \"go\" on stdin")
	}
	query := fmt.Sprintf("INSERT INTO %s (%s)", dst, strings.Join(names, ", "))
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		once     sync.Once
	)
	for p := range part.byPart {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := len(part.byPart[p])
			for lo := 0; lo < n; lo += block {
				if err := send(ctx, conn, query, cols, p, lo, min(lo+block, n)); err != nil {
					mu.Lock()
					firstErr = cmpErr(firstErr, err)
					mu.Unlock()
					return
				}
				once.Do(func() { fmt.Println("first") })
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	fmt.Println("done", total)
	return nil
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// send inserts rows lo..hi of partition p as one INSERT.
func send(ctx context.Context, conn driver.Conn, query string, cols []col, p, lo, hi int) error {
	bt, err := conn.PrepareBatch(ctx, query)
	if err != nil {
		return fmt.Errorf("prepare %s: %w", query, err)
	}
	for i, c := range cols {
		if err := bt.Column(i).Append(c.block(p, lo, hi)); err != nil {
			_ = bt.Abort()
			return fmt.Errorf("column %d: %w", i, err)
		}
	}
	if err := bt.Send(); err != nil {
		return fmt.Errorf("insert partition %d rows %d..%d: %w", p, lo, hi, err)
	}
	return nil
}

func indexOf(names []string, name string) int {
	for i, n := range names {
		if n == name {
			return i
		}
	}
	return -1
}

// col is one column read from the source table, its values kept per Kafka
// partition (the index is the _partition value).
type col interface {
	// dest is where Scan writes the current row's value.
	dest() any
	// keep appends the current row's value to partition p.
	keep(p int)
	// block is partition p's values lo..hi, for batch.Column.Append.
	block(p, lo, hi int) any
}

type typed[T any] struct {
	cur    T
	byPart [][]T
}

func (c *typed[T]) dest() any { return &c.cur }
func (c *typed[T]) keep(p int) {
	for len(c.byPart) <= p {
		c.byPart = append(c.byPart, nil)
	}
	c.byPart[p] = append(c.byPart[p], c.cur)
	var zero T
	c.cur = zero // a pointer or slice the next Scan must not overwrite
}
func (c *typed[T]) block(p, lo, hi int) any { return c.byPart[p][lo:hi] }

// maxIntern bounds the values a string column interns: low-cardinality
// columns (topic, currency, enums, countries, names) share their strings,
// which keeps 3M rows in a few GB; ids stop being interned past it.
const maxIntern = 10_000

// strCol is a String or Enum column whose repeated values share one string.
type strCol struct {
	typed[string]
	seen map[string]string
}

func (c *strCol) keep(p int) {
	if c.seen != nil {
		if v, ok := c.seen[c.cur]; ok {
			c.cur = v
		} else if len(c.seen) < maxIntern {
			c.seen[c.cur] = c.cur
		} else {
			c.seen = nil
		}
	}
	c.typed.keep(p)
}

// nullStrCol is a Nullable(String) column whose repeated values share one
// pointer.
type nullStrCol struct {
	typed[*string]
	seen map[string]*string
}

func (c *nullStrCol) keep(p int) {
	if c.seen != nil && c.cur != nil {
		if v, ok := c.seen[*c.cur]; ok {
			c.cur = v
		} else if len(c.seen) < maxIntern {
			c.seen[*c.cur] = c.cur
		} else {
			c.seen = nil
		}
	}
	c.typed.keep(p)
}

// newCol picks the Go type clickhouse-go scans and appends for a column.
func newCol(typ string) (col, error) {
	switch {
	case typ == "String", strings.HasPrefix(typ, "Enum8("), strings.HasPrefix(typ, "Enum16("):
		return &strCol{seen: map[string]string{}}, nil
	case typ == "Nullable(String)":
		return &nullStrCol{seen: map[string]*string{}}, nil
	case strings.HasPrefix(typ, "DateTime"):
		return &typed[time.Time]{}, nil
	case strings.HasPrefix(typ, "Decimal("):
		return &typed[decimal.Decimal]{}, nil
	case strings.HasPrefix(typ, "Nullable(Decimal("):
		return &typed[*decimal.Decimal]{}, nil
	case typ == "UInt8":
		return &typed[uint8]{}, nil
	case typ == "UInt16":
		return &typed[uint16]{}, nil
	case typ == "UInt32":
		return &typed[uint32]{}, nil
	case typ == "UInt64":
		return &typed[uint64]{}, nil
	case typ == "Int32":
		return &typed[int32]{}, nil
	case typ == "Int64":
		return &typed[int64]{}, nil
	case typ == "Array(String)":
		return &typed[[]string]{}, nil
	}
	return nil, fmt.Errorf("column type %s: not supported by bench-limits", typ)
}

// readTable reads every insertable column of table (db.table), grouped by
// _partition in _offset order.
func readTable(ctx context.Context, conn driver.Conn, table string) ([]string, []col, error) {
	db, tbl, ok := strings.Cut(table, ".")
	if !ok {
		return nil, nil, fmt.Errorf("table %q: want db.table", table)
	}
	rows, err := conn.Query(ctx, "SELECT name, type FROM system.columns WHERE database = ? AND table = ? AND default_kind NOT IN ('MATERIALIZED', 'ALIAS')", db, tbl)
	if err != nil {
		return nil, nil, err
	}
	var names []string
	var cols []col
	for rows.Next() {
		var name, typ string
		if err := rows.Scan(&name, &typ); err != nil {
			return nil, nil, err
		}
		c, err := newCol(typ)
		if err != nil {
			return nil, nil, fmt.Errorf("%s.%s: %w", table, name, err)
		}
		names, cols = append(names, name), append(cols, c)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, err
	}
	pi := indexOf(names, sink.ColPartition)
	if pi < 0 {
		return nil, nil, fmt.Errorf("%s has no column %s", table, sink.ColPartition)
	}
	part, ok := cols[pi].(*typed[uint32])
	if !ok {
		return nil, nil, fmt.Errorf("%s.%s is not UInt32", table, sink.ColPartition)
	}
	rows, err = conn.Query(ctx, fmt.Sprintf("SELECT %s FROM %s ORDER BY %s, %s", strings.Join(names, ", "), table, sink.ColPartition, sink.ColOffset))
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	dest := make([]any, len(cols))
	for i, c := range cols {
		dest[i] = c.dest()
	}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return nil, nil, err
		}
		p := int(part.cur)
		for _, c := range cols {
			c.keep(p)
		}
	}
	return names, cols, rows.Err()
}
