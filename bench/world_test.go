//go:build integration

package bench

import (
	"context"
	"fmt"
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
	"github.com/sluice-etl/sluice/pkg/config"
	"github.com/sluice-etl/sluice/pkg/sink"
)

// world is one benchmark's clients and unique names.
type world struct {
	b      *testing.B
	suffix string
	ch     driver.Conn
	kcl    *kgo.Client
	adm    *kadm.Client
}

func newWorld(b *testing.B) *world {
	b.Helper()
	w := &world{b: b, suffix: fmt.Sprintf("%d_%04d", time.Now().Unix()%1_000_000, rand.IntN(10000))}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ch, err := sink.Open(ctx, config.ClickHouse{Addr: []string{clickHouseAddr()}, Database: "default", Username: "default", DialTimeout: 5 * time.Second})
	if err != nil {
		b.Fatalf("ClickHouse is not reachable at %s (run `make up`): %v", clickHouseAddr(), err)
	}
	b.Cleanup(func() { ch.Close() })
	kcl, err := kgo.NewClient(kgo.SeedBrokers(brokers()...))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(kcl.Close)
	if err := kcl.Ping(ctx); err != nil {
		b.Fatalf("Kafka is not reachable at %v (run `make up`): %v", brokers(), err)
	}
	w.ch, w.kcl, w.adm = ch, kcl, kadm.NewClient(kcl)
	return w
}

func (w *world) name(base string) string { return "bench_" + base + "_" + w.suffix }

func (w *world) createTopic(name string, partitions int32) {
	w.b.Helper()
	itest.CreateTopic(w.b, w.adm, name, partitions)
}

func (w *world) endOffsets(topic string) map[int32]int64 {
	w.b.Helper()
	return itest.EndOffsets(w.b, w.adm, topic)
}

func (w *world) committed(group, topic string) map[int32]int64 {
	w.b.Helper()
	return itest.Committed(w.b, w.adm, group, topic)
}

func env(k, def string) string { return itest.Env(k, def) }

func brokers() []string      { return itest.Brokers() }
func clickHouseAddr() string { return itest.ClickHouseAddr() }

func repoRoot() string { return itest.RepoRoot() }

// buildSluice compiles ./cmd/sluice into a temporary directory.
func buildSluice(b *testing.B) string {
	b.Helper()
	return buildCmd(b, "./cmd/sluice")
}

// buildCmd compiles a main package of the module into a temporary
// directory and returns the binary's path.
func buildCmd(b *testing.B, pkg string) string {
	b.Helper()
	bin := filepath.Join(b.TempDir(), filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", bin, pkg)
	cmd.Dir = repoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	return bin
}

// tail returns the end of a log file for a failure message.
func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// ordersConfig is a sluice.yaml with one orders pipeline at the default
// limits, against this package's services; extra goes before `pipelines:`
// (reference data, batch limits).
func ordersConfig(db, group, dlq, topic, format, transforms, extra string) string {
	return fmt.Sprintf(`kafka:
  brokers: [%s]
  group: %s
  dlq_topic: %s
clickhouse:
  addr: [%s]
  database: %s
admin:
  listen: 127.0.0.1:0
log:
  level: warn
%spipelines:
  - name: orders
    topic: %s
    format: %s
    schema: %s
    table: orders
    transforms: %s
`, strings.Join(brokers(), ", "), group, dlq, clickHouseAddr(), db, extra, topic, format,
		filepath.Join(repoRoot(), "schemas", "avro", "order.avsc"), transforms)
}
