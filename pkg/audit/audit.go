// Package audit checks Sluice's delivery promise on a live system:
// `sluice audit`.
//
// Place in the flow: none — it runs beside the pipelines, reading what
// they leave behind (the consumer group's committed offsets, the tables'
// source columns _topic/_partition/_offset, the dead-letter topic) and
// writing nothing. It is safe to run while Sluice runs.
//
// Contract. For every partition of every configured pipeline's topic,
// every offset in the checked range [log start, committed offset) is
// stored in the pipeline's table exactly once or dead-lettered exactly
// once: never both, never neither. A partition is defective when the
// table holds an offset more than once (duplicates), holds neither a row
// nor a letter for one (gaps), holds both (both), the dead-letter topic
// holds a letter twice (duplicate letters), the group's committed offset
// is below the log start (out of range: it cannot resume), or the table
// holds rows above the log end (beyond end, e.g. of a deleted and
// recreated topic). Not defects, but reported: rows and letters at or
// above the committed offset (loaded, commit pending), the lag (high
// watermark - committed), and accepted gaps (below). Rows below the log
// start are not checked: Kafka no longer has those records (retention).
//
// Why the order of the reads makes a live audit sound: the committed
// offsets are read first; Sluice commits an offset only after every row
// below it is in the table and every letter below it acknowledged, so the
// table and the dead-letter topic, read afterwards, hold all of them. The
// high watermarks are read last, after the rows above the committed
// offset were seen, so a row above a high watermark is never a record
// produced during the audit.
//
// Accepted gaps are offsets below the log start that the group moved past
// without loading them (kafka.on_offset_out_of_range =
// resume_from_log_start). Sluice records the latest such skip of a
// partition in its commits' metadata (dlq.WithSkipped), and the audit
// reports it. It also derives one: the offsets after the highest one
// stored or dead-lettered below the log start, up to the log start (empty
// when nothing below the log start was ever stored); a derived gap can
// also be the trace of rows removed from the table or of letters removed
// by the dead-letter topic's retention.
//
// Bounds. Memory in Go: 8 bytes per dead letter of the audited partitions
// at or above their log start (the dead-letter topic is read once, in
// full, keeping only source offsets), plus at most MaxRanges ranges per
// kind and partition; never a table's rows. Memory in ClickHouse: one
// window of WindowBuckets × BucketWidth offsets (1,048,576 by default) is
// aggregated per query, so uniqExact holds at most that many offsets,
// whatever the table's size (under 60 MB per query on 18.16 with two
// threads). Time: ClickHouse reads the _offset column of the checked range
// once (one GROUP BY per window, bounded by the primary key prefix
// _topic, _partition, _offset), plus one bucket (BucketWidth offsets)
// again for each of at most MaxDrill defective buckets per partition, one
// IN query per 10,000 dead letters, and a few one-row queries; Kafka
// serves the dead-letter topic once. BenchmarkAudit100M: a 100,000,000-row
// partition is 96 queries, about 5 s here (2 shared cores), under a 64 MB
// max_memory_usage, with about 9 MB allocated in Go.
//
// Assumptions: one pipeline per topic; topics are neither compacted nor
// written in transactions (a transaction marker or a compacted-away
// record occupies an offset no consumer sees, which the audit reports as
// a gap); the dead-letter topic keeps its letters at least as long as the
// source topics keep their records (a letter lost to retention shows as a
// gap); after `sluice dlq replay` a replayed offset is both stored and
// dead-lettered (the letter stays), which Options.ReplayedOK reports as
// replayed instead of as a defect.
package audit

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-etl/sluice/pkg/dlq"
)

// Defaults of Options.
const (
	// DefaultBucketWidth is the offsets per bucket: small enough that
	// drilling into one defective bucket reads few rows, large enough
	// that a clean 100M-row partition is ~1,500 result rows.
	DefaultBucketWidth = 65_536
	// DefaultWindowBuckets is the buckets aggregated per query:
	// 1,048,576 offsets, so the server's uniqExact states (one per
	// bucket and thread) stay under 60 MB whatever the table's size; 64
	// buckets needed 160 MB on 18.16 and were no faster.
	DefaultWindowBuckets = 16
	// DefaultMaxDrill is the defective buckets per partition whose
	// offsets are listed; the counts of the others stay exact.
	DefaultMaxDrill = 32
)

// Pipeline is one configured pipeline to audit.
type Pipeline struct {
	Name  string
	Topic string
	// TableName is the table's name, for the report; Table reads it.
	TableName string
	Table     Table
}

// Options configure Run.
type Options struct {
	Pipelines []Pipeline
	// Group is the consumer group whose committed offsets bound the
	// checked ranges (kafka.group).
	Group string
	// DLQTopic is the dead-letter topic (kafka.dlq_topic).
	DLQTopic string
	// Kafka is a plain client (not a group member, consuming nothing);
	// Run consumes the dead-letter topic with it and lists offsets.
	Kafka *kgo.Client

	// BucketWidth, WindowBuckets, MaxDrill, MaxRanges: 0 takes the
	// default; a negative MaxDrill lists no defective bucket's offsets.
	BucketWidth   int64
	WindowBuckets int
	MaxDrill      int
	MaxRanges     int
	// ReplayedOK reports offsets both stored and dead-lettered as
	// replayed (what `sluice dlq replay` leaves), not as a defect.
	ReplayedOK bool
	// BeforeRows, when set, runs after the committed offsets are read and
	// before any table is: on a cluster it waits until the replicas hold
	// every part acknowledged so far (sink.Cluster.AwaitCaughtUp), which
	// the order of the reads relies on.
	BeforeRows func(context.Context) error

	Log *slog.Logger
}

// NoTopicError says a pipeline's topic does not exist.
type NoTopicError struct {
	Pipeline, Topic string
}

func (e *NoTopicError) Error() string {
	return fmt.Sprintf("audit: pipeline %s: topic %s does not exist", e.Pipeline, e.Topic)
}

// Run audits every partition of every pipeline and returns the report.
// ctx bounds the whole audit. An error means the audit could not be done
// (a *NoTopicError for a missing topic, or a Kafka or ClickHouse error
// naming what was asked); defects are not errors, they are in the report.
func Run(ctx context.Context, o Options) (*Report, error) {
	o.defaults()
	start := time.Now()
	adm := kadm.NewClient(o.Kafka)
	topics := make([]string, len(o.Pipelines))
	for i, p := range o.Pipelines {
		topics[i] = p.Topic
	}

	// 1. Log starts: the partitions to audit and the lower bounds.
	starts, err := adm.ListStartOffsets(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("audit: start offsets of %v: %w", topics, err)
	}
	logStart := map[string]map[int32]int64{}
	for _, p := range o.Pipelines {
		ps, ok := starts[p.Topic]
		if _, unknown := ps[-1]; !ok || unknown {
			// kadm lists a missing topic as partition -1 with
			// UNKNOWN_TOPIC_OR_PARTITION.
			return nil, &NoTopicError{Pipeline: p.Name, Topic: p.Topic}
		}
		logStart[p.Topic] = map[int32]int64{}
		for part, lo := range ps {
			if lo.Err != nil {
				return nil, fmt.Errorf("audit: start offset of %s[%d]: %w", p.Topic, part, lo.Err)
			}
			logStart[p.Topic][part] = lo.Offset
		}
	}

	// The topics' current incarnations, for tables that tell them apart.
	details, err := adm.ListTopics(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("audit: topic IDs of %v: %w", topics, err)
	}
	for _, p := range o.Pipelines {
		if inc, ok := p.Table.(Incarnation); ok {
			if d, ok := details[p.Topic]; ok && d.Err == nil {
				inc.SetTopicID(d.ID.String())
			}
		}
	}

	// 2. Committed offsets, before the table and the letters are read.
	committed := map[tp]int64{}
	// skipped: source offsets a partition gave up to retention, recorded
	// in its commits' metadata (dlq.WithSkipped): accepted gaps.
	skipped := map[tp]Range{}
	offs, err := adm.FetchOffsets(ctx, o.Group)
	switch {
	case errors.Is(err, kerr.GroupIDNotFound):
	case err != nil:
		return nil, fmt.Errorf("audit: committed offsets of group %s: %w", o.Group, err)
	default:
		var perr error
		offs.Each(func(r kadm.OffsetResponse) {
			if r.Err != nil {
				perr = errors.Join(perr, fmt.Errorf("audit: committed offset of group %s, %s[%d]: %w", o.Group, r.Topic, r.Partition, r.Err))
				return
			}
			if r.At >= 0 {
				committed[tp{r.Topic, r.Partition}] = r.At
			}
			if from, to, ok := dlq.Skipped(r.Metadata); ok {
				skipped[tp{r.Topic, r.Partition}] = Range{From: from, To: to - 1}
			}
		})
		if perr != nil {
			return nil, perr
		}
	}

	if o.BeforeRows != nil {
		if err := o.BeforeRows(ctx); err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
	}

	// 3. The dead letters, up to the topic's current end.
	letters, err := readLetters(ctx, o.Kafka, o.DLQTopic, logStart)
	if err != nil {
		return nil, err
	}

	rep := &Report{
		Group: o.Group, DLQTopic: o.DLQTopic, DLQMissing: letters.missing,
		UnattributedLetters: letters.unattributed, ForeignLetters: letters.foreign,
		BucketWidth: o.BucketWidth, MaxDrill: o.MaxDrill, MaxRanges: o.MaxRanges, ReplayedOK: o.ReplayedOK,
	}
	a := &auditor{width: o.BucketWidth, window: o.BucketWidth * int64(o.WindowBuckets), maxDrill: max(o.MaxDrill, 0), replayedOK: o.ReplayedOK}
	// 4. Each partition's checked range and what lies above it.
	for _, pipe := range o.Pipelines {
		for _, part := range slices.Sorted(maps.Keys(logStart[pipe.Topic])) {
			c, ok := committed[tp{pipe.Topic, part}]
			if !ok {
				c = -1
			}
			pr := &PartitionReport{
				Pipeline: pipe.Name, Topic: pipe.Topic, Table: pipe.TableName, Partition: part,
				LogStart: logStart[pipe.Topic][part], Committed: c,
			}
			pr.init(o.MaxRanges)
			t0 := time.Now()
			if err := a.partition(ctx, pipe.Table, pr, letters.of(pipe.Topic, part)); err != nil {
				return nil, err
			}
			if g, ok := skipped[tp{pipe.Topic, part}]; ok && !slices.Contains(pr.AcceptedGaps, g) {
				pr.AcceptedGaps = append(pr.AcceptedGaps, g)
				slices.SortFunc(pr.AcceptedGaps, func(x, y Range) int { return cmp.Compare(x.From, y.From) })
			}
			o.Log.Debug("partition audited", "topic", pipe.Topic, "partition", part, "rows", pr.Rows, "elapsed", time.Since(t0))
			rep.Partitions = append(rep.Partitions, pr)
		}
	}

	// 5. High watermarks, last (see the package comment).
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("audit: end offsets of %v: %w", topics, err)
	}
	for _, pr := range rep.Partitions {
		e, ok := ends.Lookup(pr.Topic, pr.Partition)
		if !ok || e.Err != nil {
			return nil, fmt.Errorf("audit: end offset of %s[%d]: %v", pr.Topic, pr.Partition, cmpErr(e.Err, "not listed"))
		}
		pr.end(e.Offset)
	}
	rep.finish()
	rep.Elapsed = time.Since(start).Round(time.Millisecond).String()
	return rep, nil
}

func cmpErr(err error, otherwise string) any {
	if err != nil {
		return err
	}
	return otherwise
}

func (o *Options) defaults() {
	if o.BucketWidth <= 0 {
		o.BucketWidth = DefaultBucketWidth
	}
	if o.WindowBuckets <= 0 {
		o.WindowBuckets = DefaultWindowBuckets
	}
	if o.MaxDrill == 0 {
		o.MaxDrill = DefaultMaxDrill // negative: drill into none
	}
	if o.MaxRanges <= 0 {
		o.MaxRanges = DefaultMaxRanges
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
}
