package config_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/sluice-etl/sluice/pkg/config"
)

func TestClusterFromTheEnvironment(t *testing.T) {
	t.Setenv("SLUICE_CLICKHOUSE_CLUSTER_NAME", "two")
	t.Setenv("SLUICE_CLICKHOUSE_CLUSTER_SHARDS", "a:1 a:2, b:1 b:2")
	cfg, err := config.Load(demoConfig)
	if err != nil {
		t.Fatal(err)
	}
	got := cfg.ClickHouse.Cluster.Replicas()
	if len(got) != 2 || !slices.Equal(got[0], []string{"a:1", "a:2"}) || !slices.Equal(got[1], []string{"b:1", "b:2"}) {
		t.Fatalf("replicas %q", got)
	}
	// Everything that reads the Distributed tables may use any replica.
	if want := []string{"a:1", "a:2", "b:1", "b:2"}; !slices.Equal(cfg.ClickHouse.Addr, want) {
		t.Fatalf("clickhouse.addr %q, want %q", cfg.ClickHouse.Addr, want)
	}
	if cfg.ClickHouse.Cluster.LocalSuffix != "_local" || cfg.ClickHouse.Cluster.SyncTimeout <= 0 {
		t.Fatalf("defaults: %+v", cfg.ClickHouse.Cluster)
	}
}

func TestClusterBadConfigs(t *testing.T) {
	for _, tt := range []struct {
		env      map[string]string
		key, msg string
	}{
		{map[string]string{"SLUICE_CLICKHOUSE_CLUSTER_SHARDS": "a:1"}, "clickhouse.cluster.name", "not a valid identifier"},
		{map[string]string{"SLUICE_CLICKHOUSE_CLUSTER_NAME": "c", "SLUICE_CLICKHOUSE_CLUSTER_SHARDS": "a:1 a:2,a:2"}, "clickhouse.cluster.shards[1]", "a:2 is listed twice"},
		{map[string]string{"SLUICE_CLICKHOUSE_CLUSTER_NAME": "c", "SLUICE_CLICKHOUSE_CLUSTER_SHARDS": "a a:2"}, "clickhouse.cluster.shards[0]", `"a" is not host:port`},
		{map[string]string{"SLUICE_CLICKHOUSE_CLUSTER_NAME": "c", "SLUICE_CLICKHOUSE_CLUSTER_SHARDS": "a:1 a:2,b:1", "SLUICE_CLICKHOUSE_CLUSTER_INSERT_QUORUM": "2"},
			"clickhouse.cluster.insert_quorum", "smallest shard (1), got 2"},
		{map[string]string{"SLUICE_CLICKHOUSE_CLUSTER_NAME": "c", "SLUICE_CLICKHOUSE_CLUSTER_SHARDS": "a:1", "SLUICE_CLICKHOUSE_CLUSTER_LOCAL_SUFFIX": "-x"},
			"clickhouse.cluster.local_suffix", "does not make valid table names"},
	} {
		t.Run(tt.key, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			_, err := config.Load(demoConfig)
			var errs config.Errors
			if !errors.As(err, &errs) {
				t.Fatalf("got %v, want config errors", err)
			}
			for _, e := range errs {
				if e.Key == tt.key && strings.Contains(e.Problem, tt.msg) {
					return
				}
			}
			t.Fatalf("errors %v: none names %s with %q", errs, tt.key, tt.msg)
		})
	}
}
