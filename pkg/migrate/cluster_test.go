package migrate

import (
	"strings"
	"testing"

	"github.com/sluice-etl/sluice/schemas"
)

func TestClusterStatementsRewriteEveryTableAndView(t *testing.T) {
	stmts, err := Statements(schemas.ClickHouse, "clickhouse", "shop")
	if err != nil {
		t.Fatal(err)
	}
	out, err := ClusterStatements(stmts, Cluster{Name: "two", LocalSuffix: "_local"})
	if err != nil {
		t.Fatal(err)
	}
	var locals, dists, views int
	for _, s := range out {
		if !strings.Contains(s, " ON CLUSTER `two`") {
			t.Errorf("statement not ON CLUSTER: %s", firstLine(s))
		}
		switch {
		case strings.Contains(s, "ENGINE = ReplicatedMergeTree("):
			locals++
			if strings.Contains(s, "ENGINE = MergeTree") {
				t.Errorf("a plain MergeTree is left: %s", s)
			}
		case strings.Contains(s, "ENGINE = Distributed("):
			dists++
		case strings.HasPrefix(s, "CREATE VIEW"):
			views++
		default:
			t.Errorf("unexpected statement: %s", s)
		}
	}
	if locals != 3 || dists != 3 || views != 2 {
		t.Fatalf("got %d local tables, %d distributed, %d views; want 3, 3, 2:\n%s", locals, dists, views, strings.Join(out, "\n---\n"))
	}
	// The orders table: its columns, key and partitioning kept, replicated
	// per shard, and a Distributed table of the same name over it.
	var local, dist string
	for _, s := range out {
		if strings.Contains(s, "`shop`.orders_local ON CLUSTER") {
			local = s
		}
		if strings.HasPrefix(s, "CREATE TABLE IF NOT EXISTS `shop`.orders ON CLUSTER") {
			dist = s
		}
	}
	for _, want := range []string{
		"ReplicatedMergeTree('/clickhouse/tables/{shard}/shop/orders_local', '{replica}')",
		"_offset           UInt64",
		"PARTITION BY toYYYYMM(created_at)",
		"ORDER BY (_topic, _partition, _offset)",
	} {
		if !strings.Contains(local, want) {
			t.Errorf("orders_local lacks %q:\n%s", want, local)
		}
	}
	if want := "AS `shop`.orders_local ENGINE = Distributed(`two`, `shop`, orders_local, _partition)"; !strings.Contains(dist, want) {
		t.Errorf("orders: want %q in\n%s", want, dist)
	}
}

func TestClusterStatementsRefuseOtherShapes(t *testing.T) {
	for _, s := range []string{
		"ALTER TABLE `shop`.orders ADD COLUMN x String",
		"CREATE TABLE IF NOT EXISTS `shop`.t (a String) ENGINE = Log",
		"CREATE MATERIALIZED VIEW `shop`.mv TO `shop`.t AS SELECT 1",
	} {
		if _, err := ClusterStatements([]string{s}, Cluster{Name: "c", LocalSuffix: "_local"}); err == nil {
			t.Errorf("%s: accepted", s)
		}
	}
}
