//go:build integration

package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-etl/sluice/internal/itest"
	"github.com/sluice-etl/sluice/internal/sluicerun"
	"github.com/sluice-etl/sluice/pkg/config"
	"github.com/sluice-etl/sluice/pkg/gen"
	"github.com/sluice-etl/sluice/pkg/service"
	"github.com/sluice-etl/sluice/pkg/sink"
)

// TestInsertProtocolAutoFallsBackPerTable: a table with a column the
// native writer has no buffer for (Decimal(38, 2)) is a config error
// naming clickhouse.insert_protocol with native; with auto (the default)
// that table's INSERTs go through clickhouse-go, logged once naming it,
// the other tables' through the native writer, and its orders load
// exactly once.
func TestInsertProtocolAutoFallsBackPerTable(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	w.wideOrdersTable()
	wide, plain := w.name("orders_wide"), w.name("orders_plain")
	w.createTopic(wide, 2)
	w.createTopic(plain, 2)
	pipes := strings.Replace(ordersPipeline(wide), "table: orders", "table: orders_wide", 1) +
		strings.Replace(ordersPipeline(plain), "name: orders", "name: orders_plain", 1)
	group := w.name("g_proto")

	build := func(protocol string) (string, error) {
		t.Helper()
		cfg := w.sluiceConfig(group, pipes)
		cfg.ClickHouse.InsertProtocol = protocol
		conn, err := sink.Open(ctx, cfg.ClickHouse)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		var logs bytes.Buffer
		nw, err := service.NativeWriterFor(cfg, slog.New(slog.NewTextHandler(&logs, nil)))
		if err != nil {
			t.Fatal(err)
		}
		defer nw.Close()
		_, err = service.BuildPipelines(ctx, cfg, conn, nil, nw)
		return logs.String(), err
	}
	_, err := build("native")
	var ce config.Errors
	if !errors.As(err, &ce) || len(ce) != 1 || ce[0].Key != "clickhouse.insert_protocol" || !strings.Contains(ce[0].Problem, "Decimal(38, 2)") {
		t.Fatalf("native with a Decimal(38, 2) column: %v, want one config error naming clickhouse.insert_protocol and the type", err)
	}
	logs, err := build("auto")
	if err != nil {
		t.Fatalf("auto: %v", err)
	}
	if !strings.Contains(logs, "orders_wide") || strings.Count(logs, "go through clickhouse-go") != 1 {
		t.Fatalf("auto: want one line saying orders_wide goes through clickhouse-go, got:\n%s", logs)
	}

	cfg := w.sluiceConfig(group, pipes)
	if os.Getenv("SLUICE_CLICKHOUSE_INSERT_PROTOCOL") == "" && cfg.ClickHouse.InsertProtocol != "auto" {
		t.Fatalf("the default insert_protocol is %q, want auto", cfg.ClickHouse.InsertProtocol)
	}
	cfg.ClickHouse.InsertProtocol = "auto"
	w.produceOrders(wide, 21, 500)
	w.produceOrders(plain, 22, 500)
	s := w.startSluice(cfg)
	w.waitCommitted(group, wide, 2*time.Minute)
	w.waitCommitted(group, plain, 2*time.Minute)
	s.stop(t)
	w.exactlyOnceIn(wide, "orders_wide")
	w.exactlyOnceIn(plain, "orders")
	if n := w.count(fmt.Sprintf("SELECT count() FROM %s.orders_wide WHERE total > 0", w.db)); n != 500 {
		t.Fatalf("orders_wide holds %d orders with a total, want 500", n)
	}
}

// TestColumnarTransformsOnATableTheyCannotRead: currency reads the amount
// from the table's column of its name; a table whose total is
// Decimal(38, 2) cannot serve that to the columnar path (no cell reads
// beyond 18 digits), so the pipeline takes the row path from the start
// instead of failing every batch, and says so in one warning naming the
// pipeline: each order loads once, converted.
func TestColumnarTransformsOnATableTheyCannotRead(t *testing.T) {
	w := newWorld(t)
	w.wideOrdersTable()
	g, err := gen.New(gen.Options{Seed: 4, SchemaDir: filepath.Join(repoRoot(), "schemas", "avro")})
	if err != nil {
		t.Fatal(err)
	}
	topic := w.name("orders_wide")
	w.createTopic(topic, 2)
	ref := w.referenceData(g.Codecs())
	const n = 200
	w.produceEUROrders(g.Codecs(), topic, n)
	group := w.name("g_wide")
	pipes := strings.Replace(strings.Replace(ordersPipeline(topic), "table: orders", "table: orders_wide", 1),
		"[order_items]", "[order_items, currency, customer, fraud]", 1)
	var logged itest.LogBuffer
	s := sluicerun.StartLogging(t, w.sluiceConfig(group, pipes, ref), io.MultiWriter(os.Stderr, &logged), slog.LevelWarn)
	w.waitCommitted(group, topic, 2*time.Minute)
	s.Stop(t)
	w.exactlyOnceIn(topic, "orders_wide")
	var fallbacks []string
	for _, line := range strings.Split(logged.String(), "\n") {
		if strings.Contains(line, "takes the row path") {
			fallbacks = append(fallbacks, line)
		}
	}
	if len(fallbacks) != 1 || !strings.Contains(fallbacks[0], "pipeline=orders") || !strings.Contains(fallbacks[0], "level=WARN") {
		t.Fatalf("want one WARN naming pipeline orders that it takes the row path, logged %q", fallbacks)
	}
	if got := w.count(fmt.Sprintf("SELECT countIf(total_base = toDecimal64(125, 2) AND customer_name = 'Alice Secure') FROM %s.orders_wide", w.db)); got != n {
		t.Fatalf("%d of %d orders converted at 1.25 and joined", got, n)
	}
}

// wideOrdersTable creates orders_wide: the orders table with total as
// Decimal(38, 2), which neither the native writer nor the columnar
// transforms' cell reads take (more than 18 digits).
func (w *world) wideOrdersTable() {
	w.t.Helper()
	for _, q := range []string{
		fmt.Sprintf("CREATE TABLE %s.orders_wide AS %s.orders", w.db, w.db),
		fmt.Sprintf("ALTER TABLE %s.orders_wide MODIFY COLUMN total Decimal(38, 2)", w.db),
	} {
		if err := w.ch.Exec(context.Background(), q); err != nil {
			w.t.Fatal(err)
		}
	}
}
