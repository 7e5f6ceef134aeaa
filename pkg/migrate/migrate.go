// Package migrate creates Sluice's ClickHouse database, tables and views.
//
// It runs the DDL files embedded from schemas/clickhouse in name order,
// after CREATE DATABASE IF NOT EXISTS. Every statement is idempotent
// (IF NOT EXISTS), so running it twice is safe. The DDL is written for
// both the Debian 18.16 server and current releases: no DateTime64, Map,
// Bool or LowCardinality, explicit column lists.
package migrate

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"sort"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Statements reads the DDL files of fsys (a directory of *.sql) and returns
// their statements in order, with {db} replaced.
func Statements(fsys fs.FS, dir, db string) ([]string, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("migrate: read %s: %w", dir, err)
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".sql") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	var out []string
	for _, n := range names {
		b, err := fs.ReadFile(fsys, dir+"/"+n)
		if err != nil {
			return nil, fmt.Errorf("migrate: read %s: %w", n, err)
		}
		for _, stmt := range splitStatements(string(b)) {
			out = append(out, strings.ReplaceAll(stmt, "{db}", "`"+db+"`"))
		}
	}
	return out, nil
}

// splitStatements splits on ";" at the end of a line and drops comment-only
// and empty pieces.
func splitStatements(sql string) []string {
	var out []string
	var cur strings.Builder
	flush := func() {
		s := strings.TrimSpace(cur.String())
		cur.Reset()
		code := false
		for _, line := range strings.Split(s, "\n") {
			if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "--") {
				code = true
				break
			}
		}
		if code {
			out = append(out, s)
		}
	}
	for _, line := range strings.Split(sql, "\n") {
		trimmed := strings.TrimRight(line, " \t\r")
		if strings.HasSuffix(trimmed, ";") {
			cur.WriteString(strings.TrimSuffix(trimmed, ";"))
			flush()
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
	}
	flush()
	return out
}

// Apply creates the database and runs every statement. conn must not be
// bound to the target database (it may not exist yet).
func Apply(ctx context.Context, conn driver.Conn, db string, fsys fs.FS, dir string, log *slog.Logger) error {
	stmts, err := Statements(fsys, dir, db)
	if err != nil {
		return err
	}
	if err := conn.Exec(ctx, "CREATE DATABASE IF NOT EXISTS `"+db+"`"); err != nil {
		return fmt.Errorf("migrate: create database %s: %w", db, err)
	}
	for _, s := range stmts {
		if err := conn.Exec(ctx, s); err != nil {
			return fmt.Errorf("migrate: %s: %w", firstLine(s), err)
		}
		log.Info("applied", "statement", firstLine(s))
	}
	return nil
}

func firstLine(s string) string {
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "--") {
			return l
		}
	}
	return s
}
