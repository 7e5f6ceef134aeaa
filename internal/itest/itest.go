// Package itest holds what the integration tests and the benchmarks share
// about the real services `make up` starts: their addresses, the
// repository's root, and Kafka topic and offset helpers. A missing service
// fails the caller; nothing here skips.
package itest

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// Env is the environment variable k, or def when it is unset or empty.
func Env(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// Brokers is SLUICE_KAFKA_BROKERS or the broker `make up` starts.
func Brokers() []string { return strings.Split(Env("SLUICE_KAFKA_BROKERS", "127.0.0.1:9092"), ",") }

// ClickHouseAddr is SLUICE_CLICKHOUSE_ADDR or the server `make up` starts.
func ClickHouseAddr() string { return Env("SLUICE_CLICKHOUSE_ADDR", "127.0.0.1:9000") }

// RepoRoot is the repository's root directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(filepath.Dir(file)))
}

// CreateTopic creates a topic for one test, deleted afterwards unless the
// test failed (its data is then kept for a look).
func CreateTopic(tb testing.TB, adm *kadm.Client, name string, partitions int32) {
	tb.Helper()
	resp, err := adm.CreateTopics(context.Background(), partitions, 1, nil, name)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		tb.Fatalf("create topic %s: %v", name, err)
	}
	tb.Cleanup(func() {
		if !tb.Failed() {
			_, _ = adm.DeleteTopics(context.Background(), name)
		}
	})
}

// EndOffsets returns the log end offset per partition of topic.
func EndOffsets(tb testing.TB, adm *kadm.Client, topic string) map[int32]int64 {
	tb.Helper()
	resp, err := adm.ListEndOffsets(context.Background(), topic)
	if err != nil {
		tb.Fatal(err)
	}
	out := map[int32]int64{}
	resp.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	return out
}

// Committed returns the group's committed offset per partition of topic
// (empty before the group's first commit).
func Committed(tb testing.TB, adm *kadm.Client, group, topic string) map[int32]int64 {
	tb.Helper()
	out := map[int32]int64{}
	resp, err := adm.FetchOffsets(context.Background(), group)
	for i := 0; i < 100 && kerr.IsRetriable(err); i++ {
		// A fresh broker may still be loading the offsets topic.
		time.Sleep(100 * time.Millisecond)
		resp, err = adm.FetchOffsets(context.Background(), group)
	}
	if errors.Is(err, kerr.GroupIDNotFound) {
		return out
	}
	if err != nil {
		tb.Fatal(err)
	}
	resp.Each(func(o kadm.OffsetResponse) {
		if o.Topic == topic && o.Err == nil {
			out[o.Partition] = o.At
		}
	})
	return out
}

// EqualOffsets says whether two offset maps are the same.
func EqualOffsets(a, b map[int32]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
