// Package tablefake answers the two queries sink.NewTable makes (the
// table's engine from system.tables, its columns from system.columns), for
// unit tests and benchmarks that build a sink.Table without a server.
package tablefake

import (
	"context"
	"fmt"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Conn answers QueryRow with Engine (and no views) and Query with Cols (name, type,
// default_kind); nothing else of driver.Conn may be called.
type Conn struct {
	driver.Conn
	Engine string
	Cols   [][3]string
}

func (c *Conn) QueryRow(context.Context, string, ...any) driver.Row { return engineRow(c.Engine) }

func (c *Conn) Query(context.Context, string, ...any) (driver.Rows, error) {
	return &colRows{cols: c.Cols, i: -1}, nil
}

type engineRow string

func (r engineRow) Err() error { return nil }

// Scan answers the engine and the number of materialized views reading
// the table (none).
func (r engineRow) Scan(dest ...any) error {
	if len(dest) != 2 {
		return fmt.Errorf("scan into %d values, want 2 (engine, views)", len(dest))
	}
	*dest[0].(*string) = string(r)
	*dest[1].(*uint64) = 0
	return nil
}
func (r engineRow) ScanStruct(any) error { return fmt.Errorf("tablefake: ScanStruct not answered") }

type colRows struct {
	driver.Rows
	cols [][3]string
	i    int
}

func (r *colRows) Next() bool { r.i++; return r.i < len(r.cols) }
func (r *colRows) Scan(dest ...any) error {
	if len(dest) != 3 {
		return fmt.Errorf("scan into %d values, want 3", len(dest))
	}
	for j, d := range dest {
		*d.(*string) = r.cols[r.i][j]
	}
	return nil
}
func (r *colRows) Close() error { return nil }
func (r *colRows) Err() error   { return nil }
