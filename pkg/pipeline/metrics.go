package pipeline

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-etl/sluice/pkg/record"
)

// Metrics are the engine's Prometheus series. Labels are bounded: pipeline
// names come from config, partitions from the topics' partition counts
// (a revoked partition's series is deleted), stages, reason classes
// (record.ReasonClasses), retried operations (retryOps) and error types
// (logx.ErrorTypes) are closed sets. The README's metrics catalogue lists
// every series; pkg/service's TestMetricsCatalogue keeps the two equal.
type Metrics struct {
	Consumed      *prometheus.CounterVec
	Loaded        *prometheus.CounterVec
	DeadLetters   *prometheus.CounterVec
	Batches       *prometheus.CounterVec
	BatchSeconds  *prometheus.HistogramVec
	BatchRows     *prometheus.HistogramVec
	InsertErrors  *prometheus.CounterVec
	ViewFailures  *prometheus.CounterVec
	Skipped       *prometheus.CounterVec
	CommitErrors  prometheus.Counter
	InflightBytes prometheus.Gauge
	Paused        prometheus.Gauge
	Assigned      *prometheus.GaugeVec
	DataLoss      prometheus.Counter
	Lag           *prometheus.GaugeVec
	// OutOfRange counts partitions whose committed offset fell out of
	// the log (below its start: retention removed unloaded records);
	// SkippedOffsets counts the offsets given up when such a partition
	// resumes from the log start; Stalled is the partitions stopped.
	OutOfRange     *prometheus.CounterVec
	SkippedOffsets *prometheus.CounterVec
	Stalled        prometheus.Gauge
	// TruncatedLetters counts dead letters whose value was cut to fit the
	// dead-letter topic's max.message.bytes (also in DeadLetters).
	TruncatedLetters *prometheus.CounterVec
	// Pressure counts INSERTs refused for the server's own load, by code
	// ("241" memory, "252" too many parts); the Effective* gauges are the
	// limits the pipeline's batches are cut at now (adapt.go).
	Pressure          *prometheus.CounterVec
	EffectiveMaxRows  *prometheus.GaugeVec
	EffectiveMaxBytes *prometheus.GaugeVec
	EffectiveMaxWait  *prometheus.GaugeVec
	// DeadLetterReasons counts the same letters as DeadLetters, by the
	// class of their reason too (record.Failure.ReasonClass): counted by
	// the engine's dead-letter writer (countLetters) as each is
	// acknowledged.
	DeadLetterReasons *prometheus.CounterVec
	// Retries counts the failed attempts a worker retries, by operation
	// and error type (retry.go).
	Retries *prometheus.CounterVec
	// StoredReads counts the batches' stored-offsets steps (settle and
	// read) by what they did: "read" asked the table, "skipped" did not,
	// the batch lying wholly in the worker's clean region (load.go).
	StoredReads *prometheus.CounterVec
	// Streams counts the INSERT streams that ended, by outcome: "ok" (its
	// batches committed) or "failed" (the partition started again from
	// its last commit; stream.go).
	Streams *prometheus.CounterVec
}

// NewMetrics creates the series and registers them with reg (nil: not
// registered, as in tests).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Consumed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_records_consumed_total", Help: "Records taken from Kafka into batches.",
		}, []string{"pipeline"}),
		Loaded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_rows_loaded_total", Help: "Rows inserted into ClickHouse.",
		}, []string{"pipeline"}),
		DeadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_dead_letters_total", Help: "Records sent to the dead-letter topic.",
		}, []string{"pipeline", "stage"}),
		TruncatedLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_dead_letters_truncated_total", Help: "Dead letters whose value was cut to fit the dead-letter topic (the original stays in the source topic).",
		}, []string{"pipeline"}),
		Batches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_batches_total", Help: "Batches loaded and committed.",
		}, []string{"pipeline"}),
		BatchSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sluice_batch_duration_seconds", Help: "Time from a batch being cut to its commit.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
		}, []string{"pipeline"}),
		BatchRows: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sluice_batch_rows", Help: "Records per batch.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 10),
		}, []string{"pipeline"}),
		InsertErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_insert_errors_total", Help: "Failed INSERT attempts (each is retried).",
		}, []string{"pipeline"}),
		ViewFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_view_failures_total", Help: "Failed INSERTs whose error came from a materialized view of the table: the view's table lacks the rows the table stored.",
		}, []string{"pipeline"}),
		Skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_records_skipped_total", Help: "Re-delivered records skipped because they were already loaded.",
		}, []string{"pipeline"}),
		CommitErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_commit_errors_total", Help: "Failed offset commits.",
		}),
		InflightBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_inflight_bytes", Help: "Bytes fetched and not yet committed.",
		}),
		Paused: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_paused_partitions", Help: "Partitions held back by backpressure: fetching paused, or holding records while the in-flight budget is spent.",
		}),
		Assigned: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_assigned_partitions", Help: "Partitions this process owns.",
		}, []string{"pipeline"}),
		DataLoss: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_kafka_data_loss_total", Help: "Times the Kafka client detected lost data on a broker.",
		}),
		Lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_partition_lag", Help: "Records between the last committed offset and the high watermark.",
		}, []string{"pipeline", "partition"}),
		OutOfRange: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_offset_out_of_range_total", Help: "Partitions whose position fell out of the Kafka log (records lost to retention before they were loaded).",
		}, []string{"pipeline"}),
		SkippedOffsets: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_offsets_skipped_total", Help: "Offsets given up by kafka.on_offset_out_of_range: resume_from_log_start (data loss).",
		}, []string{"pipeline"}),
		Pressure: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_insert_pressure_total", Help: "INSERTs ClickHouse refused for its own load, by code: 241 MEMORY_LIMIT_EXCEEDED (loaded in smaller pieces, later batches cut smaller) and 252 TOO_MANY_PARTS (sent whole again after a pause, later batches cut later).",
		}, []string{"pipeline", "code"}),
		EffectiveMaxRows: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_batch_effective_max_rows", Help: "The smallest max_rows a partition of the pipeline cuts its batches at now: below the configured value after ClickHouse ran short of memory (241).",
		}, []string{"pipeline"}),
		EffectiveMaxBytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_batch_effective_max_bytes", Help: "The smallest max_bytes a partition of the pipeline cuts its batches at now: below the configured value after ClickHouse ran short of memory (241).",
		}, []string{"pipeline"}),
		EffectiveMaxWait: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_batch_effective_max_wait_seconds", Help: "The longest max_wait a partition of the pipeline cuts its batches at now: above the configured value after the table had too many parts (252).",
		}, []string{"pipeline"}),
		DeadLetterReasons: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_dead_letter_reasons_total", Help: "Records sent to the dead-letter topic, by stage and the class of their reason (the same letters as sluice_dead_letters_total).",
		}, []string{"pipeline", "stage", "reason_class"}),
		Retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_retries_total", Help: "Failed attempts a partition worker retries with backoff, by operation and error type (INSERTs are in sluice_insert_errors_total).",
		}, []string{"pipeline", "op", "error_type"}),
		StoredReads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_stored_reads_total", Help: "Stored-offsets steps before a batch's INSERT, by outcome: read (ClickHouse was asked which offsets of the batch it holds), skipped (the batch lies above everything the table held when the partition was first read under this assignment and above everything this worker sent since).",
		}, []string{"pipeline", "outcome"}),
		Streams: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_insert_streams_total", Help: "INSERTs held open across a partition's batches (clickhouse.insert_stream_wait) that ended, by outcome: ok (their batches committed) or failed (outcome unknown: the partition started again from its last commit).",
		}, []string{"pipeline", "outcome"}),
		Stalled: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_stalled_partitions", Help: "Partitions stopped because their position is out of the Kafka log (kafka.on_offset_out_of_range: stop).",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.DeadLetterReasons, m.Retries, m.StoredReads, m.Streams)
		reg.MustRegister(m.ViewFailures)
		reg.MustRegister(m.TruncatedLetters)
		reg.MustRegister(m.Pressure, m.EffectiveMaxRows, m.EffectiveMaxBytes, m.EffectiveMaxWait)
		reg.MustRegister(m.Consumed, m.Loaded, m.DeadLetters, m.Batches, m.BatchSeconds, m.BatchRows,
			m.InsertErrors, m.Skipped, m.CommitErrors, m.InflightBytes, m.Paused, m.Assigned, m.DataLoss, m.Lag,
			m.OutOfRange, m.SkippedOffsets, m.Stalled)
	}
	return m
}

// startPipeline makes the pipeline's counters exist at 0 before anything
// happens to them. A counter series that first appears at 3 is read by
// Prometheus's increase() and rate() as 0 until it moves again: without
// this, a dashboard's "dead letters (1h)" hid the first letters of every
// pipeline and stage (found by TestGrafanaDashboardQueriesOnARealPrometheus).
// The label sets are the closed ones: stages and reason classes.
func (m *Metrics) startPipeline(name string) {
	for _, c := range []*prometheus.CounterVec{m.Consumed, m.Loaded, m.Batches, m.InsertErrors, m.ViewFailures,
		m.Skipped, m.TruncatedLetters, m.OutOfRange, m.SkippedOffsets} {
		c.WithLabelValues(name)
	}
	for _, o := range []string{"read", "skipped"} {
		m.StoredReads.WithLabelValues(name, o)
	}
	for _, r := range []string{"ok", "failed"} {
		m.Streams.WithLabelValues(name, r)
	}
	for _, s := range []record.Stage{record.StageDecode, record.StageTransform, record.StageLoad} {
		m.DeadLetters.WithLabelValues(name, string(s))
		for _, class := range record.ReasonClasses {
			m.DeadLetterReasons.WithLabelValues(name, string(s), class)
		}
	}
}
