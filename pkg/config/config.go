// Package config loads and validates Sluice's configuration.
//
// It is the only package that knows viper: the YAML file is read, every key
// can be overridden by an environment variable SLUICE_<PATH> (dots become
// underscores: kafka.brokers -> SLUICE_KAFKA_BROKERS), and the result is
// decoded strictly (an unknown key is an error) into the typed Config that
// the other stages receive. Every problem is reported as an *Error that
// names the key, so the CLI can print it and exit with code 2.
package config

import (
	"strings"
	"time"
)

// Config is the whole of a Sluice process's configuration.
type Config struct {
	Kafka      Kafka      `mapstructure:"kafka"`
	ClickHouse ClickHouse `mapstructure:"clickhouse"`
	Admin      Admin      `mapstructure:"admin"`
	Log        Log        `mapstructure:"log"`
	// Batch holds the default batch limits; a pipeline may override each.
	Batch Batch `mapstructure:"batch"`
	// InflightBytes bounds the bytes fetched but not yet committed, across
	// all partitions; past it, fetching pauses (backpressure).
	InflightBytes ByteSize `mapstructure:"inflight_bytes"`
	// ShutdownTimeout bounds the final flush and commit on SIGTERM.
	ShutdownTimeout time.Duration `mapstructure:"shutdown_timeout"`
	// StartupTimeout bounds how long start-up keeps retrying Kafka,
	// ClickHouse and the schema registry while they are unreachable;
	// past it the process exits 1 (a runtime error, not a config one).
	StartupTimeout time.Duration `mapstructure:"startup_timeout"`
	Reference      Reference     `mapstructure:"reference"`
	Fraud          Fraud         `mapstructure:"fraud"`
	// SchemaRegistry serves the writer schemas of avro-confluent pipelines.
	SchemaRegistry SchemaRegistry `mapstructure:"schema_registry"`
	Pipelines      []Pipeline     `mapstructure:"pipelines"`

	// Dir is the directory of the config file; relative schema paths are
	// resolved against it. Not a config key.
	Dir string `mapstructure:"-"`
}

// Kafka is the connection to the Kafka cluster and the consumer group.
type Kafka struct {
	Brokers  []string `mapstructure:"brokers"`
	Group    string   `mapstructure:"group"`
	ClientID string   `mapstructure:"client_id"`
	// DLQTopic receives the records that cannot be loaded; Sluice creates
	// it with DLQPartitions partitions when it is missing.
	DLQTopic      string `mapstructure:"dlq_topic"`
	DLQPartitions int    `mapstructure:"dlq_partitions"`
	// SessionTimeout: how long the group waits for a silent member before
	// moving its partitions.
	SessionTimeout time.Duration `mapstructure:"session_timeout"`
	// RebalanceTimeout: how long a member may take to finish its in-flight
	// batches when partitions move.
	RebalanceTimeout time.Duration `mapstructure:"rebalance_timeout"`
	// OnOffsetOutOfRange: what a partition does when its committed offset
	// is no longer in the log (retention removed records not yet loaded):
	// "stop" (stays stopped, /readyz not ready, until an operator acts) or
	// "resume_from_log_start" (gives the removed range up, counted in
	// sluice_offsets_skipped_total).
	OnOffsetOutOfRange string `mapstructure:"on_offset_out_of_range"`
	// InstanceID makes the process a static group member (KIP-345): a
	// restart within the session timeout takes the same partitions back
	// without a rebalance. Unique per process (a StatefulSet pod name).
	InstanceID string `mapstructure:"instance_id"`
	// FetchMaxWait is how long the broker may hold a fetch that finds no
	// new records. A partition resumed after backpressure is fetched only
	// in the next request, so this is also the longest a resumed
	// partition can wait (docs/DESIGN.md, invariant 9).
	FetchMaxWait time.Duration `mapstructure:"fetch_max_wait"`
	// TLS and SASL apply to every Kafka client Sluice makes: the group
	// consumer, the dead-letter producer, the reference-data readers, the
	// admin requests and `sluice dlq` (see security.go).
	TLS  TLS  `mapstructure:"tls"`
	SASL SASL `mapstructure:"sasl"`
}

// ClickHouse is the connection to the ClickHouse server (native protocol).
type ClickHouse struct {
	Addr     []string `mapstructure:"addr"`
	Database string   `mapstructure:"database"`
	Username string   `mapstructure:"username"`
	Password Secret   `mapstructure:"password"`
	// PasswordFile holds the password instead of Password.
	PasswordFile string        `mapstructure:"password_file"`
	DialTimeout  time.Duration `mapstructure:"dial_timeout"`
	// TLS is for the secure native port (tcp_port_secure, 9440 by
	// ClickHouse's convention).
	TLS TLS `mapstructure:"tls"`
	// InsertTimeout bounds one INSERT; a slower one is cancelled and,
	// once it is known to have ended, retried.
	InsertTimeout time.Duration `mapstructure:"insert_timeout"`
	// UnknownOutcomeWait is the least pause after an INSERT whose outcome
	// is unknown (timeout, cut link) before Sluice reads what is stored:
	// the time an abandoned INSERT's bytes may still take to reach the
	// server (docs/DESIGN.md, invariant 6).
	UnknownOutcomeWait time.Duration `mapstructure:"unknown_outcome_wait"`
	// InsertProtocol is how INSERTs travel: "native" (pkg/sink/native:
	// the block's columns written as they are, without clickhouse-go's
	// per-value conversion; docs/DESIGN.md, "The columnar path"; a table
	// with a column it cannot write is a config error), "auto" (the
	// default: native, except for such a table, which goes through the
	// driver, logged) or "driver" (clickhouse-go). Queries always go
	// through clickhouse-go.
	InsertProtocol string `mapstructure:"insert_protocol"`
	// InsertStreamWait is how long one INSERT of a partition may stay
	// open across its consecutive batches while they are cut full (a
	// backlog): the server squashes them into parts of up to
	// InsertStreamRows rows or InsertStreamBytes bytes instead of a part
	// per batch, and the batches are committed together when the INSERT
	// ends. A batch cut by max_wait (the partition caught up) ends it at
	// once, so latency under a steady flow is unchanged. 0: one INSERT
	// per batch. Native writer on a single server only
	// (docs/DESIGN.md, "INSERT streams").
	InsertStreamWait  time.Duration `mapstructure:"insert_stream_wait"`
	InsertStreamRows  int           `mapstructure:"insert_stream_rows"`
	InsertStreamBytes ByteSize      `mapstructure:"insert_stream_bytes"`
	// Cluster, when it lists shards, replaces Addr: Sluice writes each
	// Kafka partition's rows to one shard's local replicated table and
	// reads the stored offsets from a replica known to be caught up
	// (docs/DESIGN.md, "Replicated and sharded tables").
	Cluster Cluster `mapstructure:"cluster"`
}

// Cluster is a sharded, replicated ClickHouse.
type Cluster struct {
	// Name is the cluster of the servers' remote_servers, for the
	// ON CLUSTER DDL of `sluice migrate` and the Distributed tables.
	Name string `mapstructure:"name"`
	// Shards lists, per shard, its replicas' native addresses separated
	// by spaces (or commas, in YAML), in the order of preference: every
	// Sluice process writes to the first one that answers. Kafka
	// partition p goes to shard p mod len(Shards). From the environment:
	// SLUICE_CLICKHOUSE_CLUSTER_SHARDS="h:1 h:2,h:3 h:4" (commas between
	// shards).
	Shards []string `mapstructure:"shards"`
	// LocalSuffix names each shard's local table: a pipeline's table
	// "orders" is the Distributed table readers query, and Sluice writes
	// "orders" + LocalSuffix on the shards.
	LocalSuffix string `mapstructure:"local_suffix"`
	// InsertQuorum, when above 0, is the insert_quorum of every INSERT:
	// it is acknowledged once that many replicas hold it.
	InsertQuorum int `mapstructure:"insert_quorum"`
	// SyncTimeout bounds the wait for a replica to fetch every part
	// committed before a stored-offsets read; past it the read fails and
	// is retried (the partition stalls, visibly).
	SyncTimeout time.Duration `mapstructure:"sync_timeout"`
}

// Enabled says whether a cluster is configured.
func (c Cluster) Enabled() bool { return len(c.Shards) > 0 }

// Replicas splits the shards' replica lists.
func (c Cluster) Replicas() [][]string {
	out := make([][]string, len(c.Shards))
	for i, s := range c.Shards {
		out[i] = strings.Fields(strings.ReplaceAll(s, ",", " "))
	}
	return out
}

// Admin is the HTTP endpoint for metrics, health and the dashboard.
type Admin struct {
	Listen string `mapstructure:"listen"`
	// Token, when set, is required as "Authorization: Bearer <token>"
	// (or as the password of HTTP basic auth, for a browser) on every
	// endpoint but /healthz and /readyz.
	Token Secret `mapstructure:"token"`
	// TokenFile holds the token instead of Token.
	TokenFile string `mapstructure:"token_file"`
	// LaggingAfter is how far behind in time a partition may be before
	// the dashboard and /api/stats call it lagging: behind is the age of
	// the oldest record fetched and not loaded yet (by its Kafka
	// timestamp). It must exceed every batch.max_wait, the time a record
	// waits for its batch in a stream that keeps up.
	LaggingAfter time.Duration `mapstructure:"lagging_after"`
	// Pprof serves Go's runtime profiles under /debug/pprof/ (behind the
	// token when one is set): CPU, heap, goroutines of a running loader.
	Pprof bool `mapstructure:"pprof"`
}

// Log configures the process's structured log.
type Log struct {
	Level  string `mapstructure:"level"`  // debug, info, warn, error
	Format string `mapstructure:"format"` // text or json
}

// Batch bounds one batch: it is flushed when the first limit is reached.
type Batch struct {
	MaxRows  int           `mapstructure:"max_rows"`
	MaxBytes ByteSize      `mapstructure:"max_bytes"`
	MaxWait  time.Duration `mapstructure:"max_wait"`
	// Combine is how many partitions' batches of the table may share one
	// INSERT (fewer, larger parts; docs/DESIGN.md, "Shared INSERTs"); 1
	// sends each batch alone.
	Combine int `mapstructure:"combine"`
}

// MaxCombine bounds batch.combine: the batches of one INSERT are held in
// memory together.
const MaxCombine = 64

// Pipeline is one topic's path to one table.
type Pipeline struct {
	Name  string `mapstructure:"name"`
	Topic string `mapstructure:"topic"`
	// Format is avro, avro-confluent or json.
	Format string `mapstructure:"format"`
	// Schema is the .avsc file (absolute after Load).
	Schema string `mapstructure:"schema"`
	Table  string `mapstructure:"table"`
	// Transforms run in order on every batch.
	Transforms []string `mapstructure:"transforms"`
	// Batch overrides the global limits; zero fields inherit them.
	Batch Batch `mapstructure:"batch"`
	// Fields names what the transforms read and write, where the schema's
	// names differ from the usual ones.
	Fields Fields `mapstructure:"fields"`
}

// MaxInsertRows is the largest batch allowed: one INSERT must stay inside
// one ClickHouse block (min_insert_block_size_rows defaults to 1,048,576),
// because only a single block is all-or-nothing.
const MaxInsertRows = 1_000_000

// Formats are the record formats a pipeline may name.
var Formats = []string{"avro", "avro-confluent", "json"}
