package config_test

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-etl/sluice/pkg/config"
)

// reloadBase is a running config: two pipelines, one inheriting the batch
// defaults, one overriding max_rows.
const reloadBase = `kafka:
  brokers: [127.0.0.1:9092]
  group: g
clickhouse:
  addr: [127.0.0.1:9000]
admin:
  listen: 127.0.0.1:8080
batch:
  max_rows: 1000
  max_wait: 500ms
pipelines:
  - {name: orders, topic: orders, schema: order.avsc, transforms: [order_items]}
  - {name: payments, topic: payments, schema: payment.avsc, batch: {max_rows: 50}}
`

// loadIn writes yaml as sluice.yaml into dir (with the two schemas) and
// loads it.
func loadIn(t *testing.T, dir, yaml string) *config.Config {
	t.Helper()
	for _, f := range []string{"order.avsc", "payment.avsc"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("..", "..", "schemas", "avro", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "sluice.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("load: %v\n%s", err, yaml)
	}
	return cfg
}

func sums(c *config.Config) map[string][32]byte {
	out := map[string][32]byte{}
	for _, p := range c.Pipelines {
		out[p.Name] = config.FileSum(p.Schema)
	}
	return out
}

func TestDiff(t *testing.T) {
	edit := func(old, new string) func(string) string {
		return func(s string) string { return strings.Replace(s, old, new, 1) }
	}
	const shipments = "  - {name: shipments, topic: shipments, schema: order.avsc}\n"
	cases := []struct {
		name   string
		edit   func(string) string
		schema string // new content of order.avsc, if any
		want   config.Change
	}{
		{name: "nothing", edit: func(s string) string { return s }},
		{name: "only formatting and order of keys", edit: edit("{name: orders, topic: orders, schema: order.avsc, transforms: [order_items]}",
			"{topic: orders, name: orders, transforms: [order_items], schema: ./order.avsc}")},
		{name: "a pipeline added", edit: func(s string) string { return s + shipments }, want: config.Change{Added: []string{"shipments"}}},
		{name: "a pipeline removed", edit: edit("  - {name: payments, topic: payments, schema: payment.avsc, batch: {max_rows: 50}}\n", ""),
			want: config.Change{Removed: []string{"payments"}}},
		{name: "a pipeline's transforms", edit: edit("transforms: [order_items]", "transforms: []"), want: config.Change{Changed: []string{"orders"}}},
		{name: "a pipeline's topic", edit: edit("topic: orders,", "topic: orders2,"), want: config.Change{Changed: []string{"orders"}}},
		{name: "a pipeline's own batch limit", edit: edit("max_rows: 50}", "max_rows: 60}"), want: config.Change{Changed: []string{"payments"}}},
		{name: "an inherited default changes only the pipelines that inherit it", edit: edit("max_rows: 1000", "max_rows: 2000"),
			want: config.Change{Changed: []string{"orders"}}},
		{name: "an inherited default both inherit", edit: edit("max_wait: 500ms", "max_wait: 2s"),
			want: config.Change{Changed: []string{"orders", "payments"}}},
		{name: "an override made explicit at the inherited value", edit: edit("transforms: [order_items]}", "transforms: [order_items], batch: {max_rows: 1000}}")},
		{name: "renamed: one removed, one added", edit: edit("name: orders,", "name: orders_v2,"),
			want: config.Change{Added: []string{"orders_v2"}, Removed: []string{"orders"}}},
		{name: "the schema file's content", edit: func(s string) string { return s }, schema: `{"type":"record","name":"O","fields":[]}`,
			want: config.Change{Changed: []string{"orders"}}},
		{name: "restart keys", edit: func(s string) string {
			s = edit("brokers: [127.0.0.1:9092]", "brokers: [127.0.0.1:9093]")(s)
			s = edit("addr: [127.0.0.1:9000]", "addr: [127.0.0.1:9001]")(s)
			s = edit("listen: 127.0.0.1:8080", "listen: 127.0.0.1:8081")(s)
			return s + "fraud:\n  high_amount: \"100.00\"\n"
		}, want: config.Change{Restart: []string{"kafka.brokers", "clickhouse.addr", "admin.listen", "fraud.high_amount"}}},
		{name: "restart keys beside a pipeline change", edit: func(s string) string {
			return edit("group: g", "group: h")(s) + shipments
		}, want: config.Change{Added: []string{"shipments"}, Restart: []string{"kafka.group"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			runDir := t.TempDir()
			running := loadIn(t, runDir, reloadBase)
			runSums := sums(running)
			// The new config lives in the same directory as the running
			// one (the same file, edited), so schema paths are equal.
			if c.schema != "" {
				if err := os.WriteFile(filepath.Join(runDir, "order.avsc"), []byte(c.schema), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			next := loadIn(t, runDir, c.edit(reloadBase))
			got := config.Diff(running, next, runSums)
			for _, f := range []struct {
				what      string
				got, want []string
			}{
				{"added", got.Added, c.want.Added}, {"removed", got.Removed, c.want.Removed},
				{"changed", got.Changed, c.want.Changed}, {"restart", got.Restart, c.want.Restart},
			} {
				if !slices.Equal(f.got, f.want) {
					t.Errorf("%s: got %q, want %q", f.what, f.got, f.want)
				}
			}
			if got.Empty() != (len(c.want.Added)+len(c.want.Removed)+len(c.want.Changed) == 0) {
				t.Errorf("Empty() = %v for %+v", got.Empty(), got)
			}
		})
	}
}

func TestMergeKeepsRunningValues(t *testing.T) {
	dir := t.TempDir()
	running := loadIn(t, dir, reloadBase)
	next := loadIn(t, dir, strings.Replace(strings.Replace(reloadBase, "group: g", "group: h", 1),
		"transforms: [order_items]", "transforms: []", 1)+
		"  - {name: shipments, topic: shipments, schema: order.avsc}\n"+
		"  - {name: kept_new, topic: kept_new, schema: order.avsc}\n")

	eff := config.Merge(running, next, map[string]bool{"orders": true, "kept_new": true})
	if eff.Kafka.Group != "g" {
		t.Errorf("kafka.group = %q, want the running g", eff.Kafka.Group)
	}
	var names []string
	for _, p := range eff.Pipelines {
		names = append(names, p.Name)
	}
	if want := []string{"orders", "payments", "shipments"}; !slices.Equal(names, want) {
		t.Fatalf("pipelines %q, want %q (kept_new is new and kept: left out)", names, want)
	}
	if got := eff.Pipelines[0].Transforms; !slices.Equal(got, []string{"order_items"}) {
		t.Errorf("kept pipeline orders has transforms %q, want the running [order_items]", got)
	}
	if errs := eff.Validate(); len(errs) > 0 {
		t.Errorf("merged config invalid: %v", errs)
	}
	if running.Kafka.Group != "g" || len(running.Pipelines) != 2 {
		t.Errorf("Merge changed the running config: %+v", running)
	}
}

func TestWatchCallsOnContentChanges(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sluice.yaml")
	if err := os.WriteFile(path, []byte("a: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	files := map[string][32]byte{path: config.FileSum(path)}
	go func() {
		done <- config.WatchFiles(ctx, func() map[string][32]byte { return files }, nil, func([]string) { calls.Add(1) })
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	waitCalls := func(want int32, what string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for calls.Load() < want {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d calls after 10s, want %d", what, calls.Load(), want)
			}
			time.Sleep(20 * time.Millisecond)
		}
		// Nothing more arrives for a while (a settle and then some).
		time.Sleep(3 * config.WatchSettle)
		if n := calls.Load(); n != want {
			t.Fatalf("%s: %d calls, want %d", what, n, want)
		}
	}
	time.Sleep(100 * time.Millisecond) // the watch is set up
	// An edit in place.
	if err := os.WriteFile(path, []byte("a: 2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitCalls(1, "write")
	// The same content written again, and another file: no call.
	if err := os.WriteFile(path, []byte("a: 2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "other"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitCalls(1, "same content")
	// An editor's save: a new file renamed over the old one.
	tmp := filepath.Join(dir, ".sluice.yaml.swp")
	if err := os.WriteFile(tmp, []byte("a: 3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	waitCalls(2, "rename")
	// Kubernetes: the file is a symlink into a directory swapped by
	// replacing another symlink.
	for i, content := range []string{"a: 4\n", "a: 5\n"} {
		data := filepath.Join(dir, "..data"+string(rune('0'+i)))
		if err := os.Mkdir(data, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(data, "sluice.yaml"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		link := filepath.Join(dir, "..data")
		_ = os.Symlink(filepath.Base(data), link+".tmp")
		if err := os.Rename(link+".tmp", link); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(filepath.Join("..data", "sluice.yaml"), path); err != nil {
				t.Fatal(err)
			}
		}
		waitCalls(int32(3+i), "symlink swap")
	}
}

// TestWatchFilesNamesWhatChanged: files in two directories; an edit of
// one calls changed with it alone; a file the set gains on a rescan is
// compared with the digest of its read, so an edit made before the rescan
// is seen; a file the set lost is no longer watched.
func TestWatchFilesNamesWhatChanged(t *testing.T) {
	d1, d2 := t.TempDir(), t.TempDir()
	cfg, schema, late := filepath.Join(d1, "sluice.yaml"), filepath.Join(d2, "order.avsc"), filepath.Join(d2, "payment.avsc")
	write := func(path, content string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(cfg, "a: 1\n")
	write(schema, `{"type": "record"}`)
	write(late, `{"type": "record", "name": "p"}`)
	lateRead := config.FileSum(late)

	var mu sync.Mutex
	set := map[string][32]byte{cfg: config.FileSum(cfg), schema: config.FileSum(schema)}
	var calls [][]string
	files := func() map[string][32]byte {
		mu.Lock()
		defer mu.Unlock()
		return maps.Clone(set)
	}
	rescan := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- config.WatchFiles(ctx, files, rescan, func(paths []string) {
			mu.Lock()
			calls = append(calls, paths)
			mu.Unlock()
		})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	expect := func(what string, want ...[]string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			mu.Lock()
			n := len(calls)
			mu.Unlock()
			if n >= len(want) || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(3 * config.WatchSettle) // and nothing more
		mu.Lock()
		defer mu.Unlock()
		if !slices.EqualFunc(calls, want, slices.Equal) {
			t.Fatalf("%s: changed called with %q, want %q", what, calls, want)
		}
	}
	time.Sleep(100 * time.Millisecond) // the watch is set up

	write(schema, `{"type": "record", "doc": "edited"}`)
	expect("schema edited", []string{schema})

	// late joins the set (a reload named it) after an edit since its read.
	write(late, `{"type": "record", "name": "p", "doc": "edited"}`)
	mu.Lock()
	set[late] = lateRead
	delete(set, schema)
	mu.Unlock()
	rescan <- struct{}{}
	expect("late file edited before the rescan", []string{schema}, []string{late})

	// schema left the set: its edits call nothing; cfg's still do.
	write(schema, `{"type": "record", "doc": "edited again"}`)
	write(cfg, "a: 2\n")
	expect("config edited, schema no longer watched", []string{schema}, []string{late}, []string{cfg})
}
