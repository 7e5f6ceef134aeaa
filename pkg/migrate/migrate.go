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
	"regexp"
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

// Cluster is where ClusterStatements puts the tables (clickhouse.cluster).
type Cluster struct {
	// Name is the remote_servers cluster that runs the DDL (ON CLUSTER).
	Name string
	// LocalSuffix names each shard's replicated table.
	LocalSuffix string
}

// createTable matches the head of a table's DDL: CREATE TABLE IF NOT
// EXISTS `db`.name ( ... ) ENGINE = MergeTree ...
var (
	createTable = regexp.MustCompile("(?s)^CREATE TABLE IF NOT EXISTS (`[^`]+`)\\.([A-Za-z_][A-Za-z0-9_]*) \\((.*)\\) ENGINE = MergeTree\\b(.*)$")
	createView  = regexp.MustCompile("(?s)^CREATE VIEW IF NOT EXISTS (`[^`]+`)\\.([A-Za-z_][A-Za-z0-9_]*) AS\\b(.*)$")
)

// ClusterStatements rewrites the statements of Statements for a cluster of
// shards × replicas, every one ON CLUSTER: a table becomes its local
// ReplicatedMergeTree on each shard (name + LocalSuffix, replicated under
// /clickhouse/tables/{shard}/<db>/<local>, the servers' macros naming
// shard and replica) and a Distributed table of the original name over
// them, sharded by _partition: what Sluice writes itself, partition p on
// shard p mod shards (sink.Cluster), Distributed would send to the same
// shard. Views read the Distributed tables, as they read the tables on
// one server. A statement of another shape is an error: it is not known
// to be safe to run on every server.
func ClusterStatements(stmts []string, c Cluster) ([]string, error) {
	on := " ON CLUSTER `" + c.Name + "`"
	var out []string
	for _, s := range stmts {
		body := stripComments(s)
		if m := createTable.FindStringSubmatch(body); m != nil {
			db, name, cols, rest := m[1], m[2], m[3], m[4]
			local := name + c.LocalSuffix
			path := "/clickhouse/tables/{shard}/" + strings.Trim(db, "`") + "/" + local
			out = append(out,
				fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s.%s%s (%s) ENGINE = ReplicatedMergeTree('%s', '{replica}')%s",
					db, local, on, cols, path, rest),
				fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s.%s%s AS %s.%s ENGINE = Distributed(`%s`, %s, %s, _partition)",
					db, name, on, db, local, c.Name, db, local))
			continue
		}
		if m := createView.FindStringSubmatch(body); m != nil {
			out = append(out, fmt.Sprintf("CREATE VIEW IF NOT EXISTS %s.%s%s AS%s", m[1], m[2], on, m[3]))
			continue
		}
		return nil, fmt.Errorf("migrate: %s: not a CREATE TABLE ... ENGINE = MergeTree or CREATE VIEW, which a cluster needs", firstLine(s))
	}
	return out, nil
}

// stripComments drops the comment lines of a statement.
func stripComments(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "--") {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(l)
	}
	return strings.TrimSpace(b.String())
}

// ApplyCluster is Apply on a cluster: the database and every statement
// ON CLUSTER (ClusterStatements), so that each server gets them through
// the cluster's distributed DDL queue, also one that is down now (it runs
// them when it is back).
func ApplyCluster(ctx context.Context, conn driver.Conn, db string, c Cluster, fsys fs.FS, dir string, log *slog.Logger) error {
	stmts, err := Statements(fsys, dir, db)
	if err != nil {
		return err
	}
	if stmts, err = ClusterStatements(stmts, c); err != nil {
		return err
	}
	if err := conn.Exec(ctx, "CREATE DATABASE IF NOT EXISTS `"+db+"` ON CLUSTER `"+c.Name+"`"); err != nil {
		return fmt.Errorf("migrate: create database %s on cluster %s: %w", db, c.Name, err)
	}
	for _, s := range stmts {
		if err := conn.Exec(ctx, s); err != nil {
			return fmt.Errorf("migrate: %s: %w", firstLine(s), err)
		}
		log.Info("applied", "statement", firstLine(s), "cluster", c.Name)
	}
	return nil
}
