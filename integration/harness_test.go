//go:build integration

// Package integration tests Sluice end to end against the real Kafka and
// ClickHouse that `make up` starts (integration/up.sh). A missing service
// fails the run; it does not skip. Every test uses its own topics, consumer
// group and ClickHouse database, so reruns never see old data.
package integration

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-etl/sluice/internal/itest"
	"github.com/sluice-etl/sluice/internal/sluicerun"
	"github.com/sluice-etl/sluice/pkg/config"
	"github.com/sluice-etl/sluice/pkg/migrate"
	"github.com/sluice-etl/sluice/pkg/service"
	"github.com/sluice-etl/sluice/pkg/sink"
	"github.com/sluice-etl/sluice/schemas"
)

var (
	brokers    = itest.Brokers()
	clickhouse = itest.ClickHouseAddr()
)

// env is one test's private world: a database with Sluice's tables, Kafka
// clients, and a suffix for topic and group names.
type world struct {
	t      *testing.T
	suffix string
	db     string
	ch     driver.Conn
	kcl    *kgo.Client
	adm    *kadm.Client
}

func newWorld(t *testing.T) *world {
	t.Helper()
	suffix := fmt.Sprintf("%d_%04d", time.Now().Unix()%1_000_000, rand.IntN(10000))
	w := &world{t: t, suffix: suffix, db: "it_" + suffix}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	ch, err := sink.Open(ctx, config.ClickHouse{Addr: []string{clickhouse}, Database: "default", Username: "default", DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("ClickHouse is not reachable at %s (run `make up`): %v", clickhouse, err)
	}
	w.ch = ch
	t.Cleanup(func() { ch.Close() })
	if err := migrate.Apply(ctx, ch, w.db, schemas.ClickHouse, "clickhouse", slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !t.Failed() { // keep the data of a failed test for a look
			_ = w.ch.Exec(context.Background(), "DROP DATABASE IF EXISTS "+w.db)
		}
	})

	kcl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.MaxBufferedRecords(200_000))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kcl.Close)
	if err := kcl.Ping(ctx); err != nil {
		t.Fatalf("Kafka is not reachable at %v (run `make up`): %v", brokers, err)
	}
	w.kcl, w.adm = kcl, kadm.NewClient(kcl)
	return w
}

func (w *world) name(base string) string { return base + "_" + w.suffix }

func repoRoot() string { return itest.RepoRoot() }

func (w *world) createTopic(name string, partitions int32) {
	w.t.Helper()
	itest.CreateTopic(w.t, w.adm, name, partitions)
}

func (w *world) endOffsets(topic string) map[int32]int64 {
	w.t.Helper()
	return itest.EndOffsets(w.t, w.adm, topic)
}

func (w *world) committed(group, topic string) map[int32]int64 {
	w.t.Helper()
	return itest.Committed(w.t, w.adm, group, topic)
}

func (w *world) count(q string, args ...any) uint64 {
	w.t.Helper()
	var n uint64
	if err := w.ch.QueryRow(context.Background(), q, args...).Scan(&n); err != nil {
		w.t.Fatalf("%s: %v", q, err)
	}
	return n
}

// sluiceConfig writes a config file for this world and loads it through
// the same path `sluice run -c` uses.
func (w *world) sluiceConfig(group, pipelines string, extra ...string) *config.Config {
	w.t.Helper()
	yaml := fmt.Sprintf(`kafka:
  brokers: [%s]
  group: %s
  dlq_topic: %s
  session_timeout: 10s
  rebalance_timeout: 20s
clickhouse:
  addr: [%s]
  database: %s
admin:
  listen: 127.0.0.1:0
log:
  level: warn
batch:
  max_rows: 20000
  max_bytes: 8MiB
  max_wait: 300ms
shutdown_timeout: 20s
%s
pipelines:
%s`, strings.Join(brokers, ", "), group, w.name("dlq"), clickhouse, w.db, strings.Join(extra, "\n"), pipelines)
	path := filepath.Join(w.t.TempDir(), "sluice.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		w.t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		w.t.Fatalf("config: %v\n%s", err, yaml)
	}
	return cfg
}

// runningSluice is one Sluice in this process (itest.Sluice).
type runningSluice struct {
	*sluicerun.Sluice
	svc *service.Service
}

// startSluice runs one Sluice in this process.
func (w *world) startSluice(cfg *config.Config, opts ...service.Option) *runningSluice {
	w.t.Helper()
	s := sluicerun.Start(w.t, cfg, opts...)
	return &runningSluice{Sluice: s, svc: s.Svc}
}

func (r *runningSluice) stop(t *testing.T) { r.Stop(t) }

func waitUntil(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// service runs integration/<script> with args (e.g. clickhouse.sh stop).
func runScript(t *testing.T, script string, args ...string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(repoRoot(), "integration", script), args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", script, args, err, out)
	}
}
