package service

import (
	"context"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/sluice-etl/sluice/pkg/config"
	"github.com/sluice-etl/sluice/pkg/sink"
)

// clusterConn is a process's ClickHouse on a cluster (clickhouse.cluster):
// its Conn reaches any replica, for what reads the Distributed tables and
// their views (the dashboard, sluice audit); cluster reaches each replica,
// for the load protocol (sink.NewClusterTable).
type clusterConn struct {
	driver.Conn
	cluster *sink.Cluster
}

func (c *clusterConn) Close() error {
	c.cluster.Close()
	return c.Conn.Close()
}

// openCluster opens both halves of a clusterConn. The Conn lists every
// replica (config.Load sets clickhouse.addr to them, in the shards'
// order): clickhouse-go takes the first that answers.
func openCluster(ctx context.Context, c config.ClickHouse) (driver.Conn, error) {
	conn, err := sink.Open(ctx, c)
	if err != nil {
		return nil, err
	}
	cl, err := sink.OpenCluster(ctx, c)
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	return &clusterConn{Conn: conn, cluster: cl}, nil
}

// ClusterOf returns the per-replica connections of a conn opened on a
// cluster, nil for one server.
func ClusterOf(conn driver.Conn) *sink.Cluster {
	if cc, ok := conn.(*clusterConn); ok {
		return cc.cluster
	}
	return nil
}

// openTable is the pipeline's table: on a cluster the local table on
// every shard (the pipeline's table is then the Distributed one readers
// query).
func openTable(ctx context.Context, conn driver.Conn, cfg *config.Config, table string) (*sink.Table, error) {
	if cl := ClusterOf(conn); cl != nil {
		return sink.NewClusterTable(ctx, cl, cfg.ClickHouse.Database, table+cfg.ClickHouse.Cluster.LocalSuffix, cfg.ClickHouse.InsertTimeout)
	}
	return sink.NewTable(ctx, conn, cfg.ClickHouse.Database, table, cfg.ClickHouse.InsertTimeout)
}
