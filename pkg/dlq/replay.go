package dlq

// Replay: putting dead letters back into their tables once the cause is
// fixed (a missing FX rate published, a decoder or transform corrected).
//
// A replayed record goes through its pipeline's own stages (decoder,
// transforms, the sink's Prepare and Send) and is stored with its ORIGINAL
// source coordinates, so the table stays keyed by (_topic, _partition,
// _offset) and the exactly-once checks keep holding.
//
// Why only offsets the consumer group has passed: when a worker is
// assigned a partition it asks the table for the highest _offset stored
// and skips every record at or below it. If a replayed row sat above the
// group's committed offset, the next assignment would skip the records
// between the committed offset and that row without loading them. Below
// the committed offset every record has been dealt with already (loaded or
// dead-lettered), so a replayed row there can hide nothing.
//
// Idempotence: before inserting, Replay asks the table which of the
// source offsets are already stored and leaves those out, so running it
// again inserts nothing. A record that still fails is reported and stays
// in the dead-letter topic; it is not dead-lettered again.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-etl/sluice/pkg/record"
	"github.com/sluice-etl/sluice/pkg/sink"
	"github.com/sluice-etl/sluice/pkg/stage"
)

// DefaultChunkRows is the most records Replay sends in one INSERT: well
// inside one ClickHouse block, and a size the existence query's IN list
// handles comfortably.
const DefaultChunkRows = 10_000

// StageReplay is the stage Replay reports for a dead letter it cannot even
// try: malformed headers, or no configured pipeline to take it.
const StageReplay = "replay"

// Index says which source offsets a pipeline's table already holds.
type Index interface {
	// Stored returns the subset of offsets (of topic and partition) that
	// the table holds. Safe for concurrent use.
	Stored(ctx context.Context, topic string, partition int32, offsets []int64) (map[int64]bool, error)
}

// The stages of a pipeline that Replay runs: the decoder and transforms
// as the stage runner takes them (pkg/stage, shared with the workers, so
// dlq depends on neither pipeline nor transform), and the table writer.
type (
	// Decoder turns one record value into a Row.
	Decoder = stage.Decoder
	// Transform works on the good items of a batch, marking the rows it
	// cannot transform failed; an error fails the batch as a whole.
	Transform = stage.Transform
	// TableWriter loads batches into the table: Prepare marks the rows
	// that cannot be stored and readies the rest, Send stores them in one
	// all-or-nothing INSERT.
	TableWriter interface {
		Prepare(b *record.Batch) int
		Send(ctx context.Context, b *record.Batch) error
	}
)

// Target is one configured pipeline as Replay uses it: its own stages and
// its table's Index. Build it with NewTarget.
type Target struct {
	Name       string
	Topic      string
	Decoder    Decoder
	Transforms []Transform
	// NewWriter returns a writer for one source partition's batches.
	NewWriter func() TableWriter
	Index     Index
}

// NewTarget makes the Target of a pipeline from its parts, e.g.
//
//	dlq.NewTarget(p.Name, p.Topic, p.Decoder, p.Transforms, p.Sink.NewWriter, idx)
//
// for a *pipeline.Pipeline p: the decoder, transforms and writers are the
// pipeline's own, so a replayed record is converted exactly as the daemon
// would convert it.
func NewTarget[T Transform, W TableWriter](name, topic string, dec Decoder, ts []T, newWriter func() W, idx Index) Target {
	out := Target{Name: name, Topic: topic, Decoder: dec, Index: idx,
		NewWriter: func() TableWriter { return newWriter() }}
	for _, t := range ts {
		out.Transforms = append(out.Transforms, t)
	}
	return out
}

// Offsets maps topic to partition to the consumer group's committed offset
// (the next offset the group will read).
type Offsets map[string]map[int32]int64

// CommittedOffsets fetches the group's committed offsets. A group that
// does not exist (nothing committed yet) gives empty Offsets.
func CommittedOffsets(ctx context.Context, adm *kadm.Client, group string) (Offsets, error) {
	resp, err := adm.FetchOffsets(ctx, group)
	if errors.Is(err, kerr.GroupIDNotFound) {
		return Offsets{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("dlq: committed offsets of group %s: %w", group, err)
	}
	out := Offsets{}
	var perr error
	resp.Each(func(o kadm.OffsetResponse) {
		if o.Err != nil {
			perr = cmp.Or(perr, fmt.Errorf("dlq: committed offset of group %s, %s[%d]: %w", group, o.Topic, o.Partition, o.Err))
			return
		}
		if o.At < 0 {
			return
		}
		if out[o.Topic] == nil {
			out[o.Topic] = map[int32]int64{}
		}
		out[o.Topic][o.Partition] = o.At
	})
	if perr != nil {
		return nil, perr
	}
	return out, nil
}

// ReplayOptions configure Replay.
type ReplayOptions struct {
	// Targets are the configured pipelines. A dead letter goes to the one
	// its pipeline header names, else to the only one reading its source
	// topic.
	Targets []Target
	// Committed are the consumer group's committed offsets; only dead
	// letters whose source offset is below them are replayed.
	Committed Offsets
	// DryRun does everything (existence query, decode, transforms,
	// Prepare) except the insert.
	DryRun bool
	// ChunkRows bounds one INSERT; 0 means DefaultChunkRows.
	ChunkRows int
}

// Outcome is what Replay did with one dead letter.
type Outcome int

const (
	// Replayed: inserted into the table (in a dry run: would be).
	Replayed Outcome = iota
	// AlreadyLoaded: the table holds its source offset already.
	AlreadyLoaded
	// StillFailing: a stage failed again (Result.Stage and Reason say
	// which and why), or the letter cannot be replayed at all (stage
	// "replay"). It stays in the dead-letter topic.
	StillFailing
	// NotPassed: the consumer group has not committed past its source
	// offset yet; replay it later.
	NotPassed
	// Duplicate: another selected dead letter carries the same source
	// record (a record dead-lettered twice, e.g. re-delivered after a
	// crash); that one is replayed instead.
	Duplicate
)

func (o Outcome) String() string {
	switch o {
	case Replayed:
		return "replayed"
	case AlreadyLoaded:
		return "already loaded"
	case StillFailing:
		return "still failing"
	case NotPassed:
		return "not yet passed by the consumer group; replay later"
	case Duplicate:
		return "duplicate"
	}
	return "outcome(" + strconv.Itoa(int(o)) + ")"
}

// Result is the outcome of one dead letter.
type Result struct {
	Letter *DeadLetter
	// Pipeline is the pipeline it was given to ("" when none).
	Pipeline string
	Outcome  Outcome
	// Stage and Reason explain StillFailing.
	Stage  string
	Reason string
	// Committed is the group's committed offset of the source partition
	// for NotPassed (-1: the group committed nothing there).
	Committed int64
}

// Report is what Replay did, letter by letter and in total.
type Report struct {
	DryRun  bool
	Results []Result
	// Counts per outcome; Selected is the number of dead letters given.
	Selected, Replayed, AlreadyLoaded, Failing, NotPassed, Duplicates int
}

func (r *Report) add(res Result) {
	r.Results = append(r.Results, res)
	switch res.Outcome {
	case Replayed:
		r.Replayed++
	case AlreadyLoaded:
		r.AlreadyLoaded++
	case StillFailing:
		r.Failing++
	case NotPassed:
		r.NotPassed++
	case Duplicate:
		r.Duplicates++
	}
}

// group is the letters of one pipeline's source partition.
type group struct {
	target    *Target
	topic     string
	partition int32
	letters   []*DeadLetter
}

// Replay re-injects letters into their pipelines' tables (see the file
// comment for the rules). Dead letters are grouped by pipeline and source
// partition and sent in source-offset order, at most ChunkRows per INSERT.
//
// It is called once per command; ctx bounds it. The report covers every
// letter handled so far even when an error is returned. An error means
// replay stopped: the existence query or an INSERT failed for a reason
// that is not the rows' content (ClickHouse unreachable, a timeout), ctx
// ended, or a transform failed as a whole (like an unreachable lookup).
// After an INSERT error the rows may or may not be stored; running the
// replay again is safe either way, as stored offsets are skipped.
func Replay(ctx context.Context, letters []DeadLetter, o ReplayOptions) (*Report, error) {
	if o.ChunkRows <= 0 {
		o.ChunkRows = DefaultChunkRows
	}
	rep := &Report{DryRun: o.DryRun, Selected: len(letters)}
	byName := map[string]*Target{}
	byTopic := map[string][]*Target{}
	for i := range o.Targets {
		t := &o.Targets[i]
		byName[t.Name] = t
		byTopic[t.Topic] = append(byTopic[t.Topic], t)
	}

	type key struct {
		pipeline  string
		topic     string
		partition int32
	}
	groups := map[key]*group{}
	for i := range letters {
		l := &letters[i]
		if l.Invalid != "" {
			rep.add(Result{Letter: l, Outcome: StillFailing, Stage: StageReplay, Reason: "cannot replay: " + l.Invalid})
			continue
		}
		if l.Truncated {
			rep.add(Result{Letter: l, Outcome: StillFailing, Stage: StageReplay, Reason: fmt.Sprintf(
				"cannot replay: the value was cut to fit the dead-letter topic (%d of %d bytes, sha256 %s); the original is at %s",
				len(l.Value), l.ValueBytes, l.ValueSHA256, l.Source())})
			continue
		}
		t := byName[l.Pipeline]
		if t == nil {
			switch ts := byTopic[l.SourceTopic]; len(ts) {
			case 1:
				t = ts[0]
			case 0:
				rep.add(Result{Letter: l, Outcome: StillFailing, Stage: StageReplay,
					Reason: fmt.Sprintf("no configured pipeline is named %q or reads topic %q", l.Pipeline, l.SourceTopic)})
				continue
			default:
				rep.add(Result{Letter: l, Outcome: StillFailing, Stage: StageReplay,
					Reason: fmt.Sprintf("no configured pipeline is named %q and %d read topic %q", l.Pipeline, len(ts), l.SourceTopic)})
				continue
			}
		}
		c, ok := o.Committed[l.SourceTopic][l.SourcePartition]
		if !ok || l.SourceOffset >= c {
			if !ok {
				c = -1
			}
			rep.add(Result{Letter: l, Pipeline: t.Name, Outcome: NotPassed, Committed: c})
			continue
		}
		k := key{t.Name, l.SourceTopic, l.SourcePartition}
		g := groups[k]
		if g == nil {
			g = &group{target: t, topic: l.SourceTopic, partition: l.SourcePartition}
			groups[k] = g
		}
		g.letters = append(g.letters, l)
	}

	keys := slices.SortedFunc(maps.Keys(groups), func(a, b key) int {
		return cmp.Or(strings.Compare(a.pipeline, b.pipeline), strings.Compare(a.topic, b.topic), cmp.Compare(a.partition, b.partition))
	})
	for _, k := range keys {
		if err := replayGroup(ctx, groups[k], o, rep); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// replayGroup replays the letters of one pipeline's source partition.
func replayGroup(ctx context.Context, g *group, o ReplayOptions, rep *Report) error {
	p := g.target
	// Source-offset order; of several letters for one record the latest
	// dead letter (highest DLQ partition/offset) is kept.
	slices.SortStableFunc(g.letters, func(a, b *DeadLetter) int {
		return cmp.Or(cmp.Compare(a.SourceOffset, b.SourceOffset), cmp.Compare(a.Partition, b.Partition), cmp.Compare(a.Offset, b.Offset))
	})
	uniq := g.letters[:0:0]
	for i, l := range g.letters {
		if i+1 < len(g.letters) && g.letters[i+1].SourceOffset == l.SourceOffset {
			rep.add(Result{Letter: l, Pipeline: p.Name, Outcome: Duplicate})
			continue
		}
		uniq = append(uniq, l)
	}

	w := p.NewWriter()
	for lo := 0; lo < len(uniq); lo += o.ChunkRows {
		chunk := uniq[lo:min(lo+o.ChunkRows, len(uniq))]
		offsets := make([]int64, len(chunk))
		for i, l := range chunk {
			offsets[i] = l.SourceOffset
		}
		stored, err := g.target.Index.Stored(ctx, g.topic, g.partition, offsets)
		if err != nil {
			return fmt.Errorf("dlq: replay %s %s[%d]: which offsets are loaded: %w", p.Name, g.topic, g.partition, err)
		}
		b := &record.Batch{Pipeline: p.Name, Topic: g.topic, Partition: g.partition, Epoch: -1}
		var todo []*DeadLetter
		for _, l := range chunk {
			if stored[l.SourceOffset] {
				rep.add(Result{Letter: l, Pipeline: p.Name, Outcome: AlreadyLoaded})
				continue
			}
			todo = append(todo, l)
			// The record as the pipeline first saw it: source
			// coordinates from the headers, key and value unchanged.
			b.Items = append(b.Items, record.Item{Rec: &kgo.Record{
				Topic: l.SourceTopic, Partition: l.SourcePartition, Offset: l.SourceOffset,
				Key: l.Key, Value: l.Value,
			}})
			b.Bytes += len(l.Key) + len(l.Value)
		}
		if len(b.Items) == 0 {
			continue
		}
		b.First, b.Last = b.Items[0].Rec.Offset, b.Items[len(b.Items)-1].Rec.Offset
		if err := runStages(ctx, p, w, b, o.DryRun); err != nil {
			return err
		}
		for i, l := range todo {
			if f := b.Items[i].Failed; f != nil {
				rep.add(Result{Letter: l, Pipeline: p.Name, Outcome: StillFailing, Stage: string(f.Stage), Reason: f.Reason})
			} else {
				rep.add(Result{Letter: l, Pipeline: p.Name, Outcome: Replayed})
			}
		}
	}
	return nil
}

// replayAttempts bounds how often replay tries a step that failed as a
// whole (the schema registry or the reference data unavailable) before it
// gives up with an error: a one-shot command waits a little, not forever.
const replayAttempts = 3

// runStages takes b through the pipeline as a worker would: the same
// stage runner (decode, transforms), then Prepare and (unless dryRun)
// Send, marking the items that fail. An error means the batch as a whole
// could not be processed; its letters are then not reported at all, never
// as "still failing" for an outage.
func runStages(ctx context.Context, p *Target, w TableWriter, b *record.Batch, dryRun bool) error {
	var failed error
	retry := func(what string, fn func() error) bool {
		for attempt := 1; ; attempt++ {
			err := fn()
			if err == nil {
				return true
			}
			if attempt == replayAttempts || ctx.Err() != nil {
				failed = fmt.Errorf("%s failed %d times: %w", what, attempt, err)
				return false
			}
			t := time.NewTimer(time.Duration(attempt) * 500 * time.Millisecond)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			}
		}
	}
	if !stage.Run(ctx, b, p.Decoder, p.Transforms, retry) {
		return fmt.Errorf("dlq: replay %s %s[%d] %d..%d: %w (nothing replayed from here on; replay again once it is back)",
			p.Name, b.Topic, b.Partition, b.First, b.Last, failed)
	}
	if w.Prepare(b) == 0 || dryRun {
		return nil
	}
	return send(ctx, p, w, b, true)
}

// send inserts the good items of b. A rejection of the rows' content
// splits the batch to find the rows the server refuses, which are marked
// failed (stage load); any other error is returned.
func send(ctx context.Context, p *Target, w TableWriter, b *record.Batch, prepared bool) error {
	good := b.Good()
	if !prepared {
		good = w.Prepare(b)
	}
	if good == 0 {
		return nil
	}
	err := w.Send(ctx, b)
	if err == nil {
		return nil
	}
	// A content rejection (BadData) or a batch over the server's limit
	// of partitions per INSERT (Split) is halved, as the worker does.
	if c := sink.Classify(err); c != sink.BadData && c != sink.Split {
		return fmt.Errorf("dlq: replay %s %s[%d] %d..%d: %w", p.Name, b.Topic, b.Partition, b.First, b.Last, err)
	}
	if good == 1 {
		for i := range b.Items {
			if b.Items[i].Pending() {
				b.Items[i].Fail(record.StageLoad, "clickhouse rejected the row: "+err.Error())
			}
		}
		return nil
	}
	mid := b.SplitGood()
	if err := send(ctx, p, w, b.Slice(0, mid), false); err != nil {
		return err
	}
	return send(ctx, p, w, b.Slice(mid, len(b.Items)), false)
}

// Querier is the part of a ClickHouse connection TableIndex needs.
type Querier interface {
	Query(ctx context.Context, query string, args ...any) (driver.Rows, error)
}

// TableIndex is the Index of a Sluice target table (db.table), read from
// its _topic, _partition and _offset columns.
func TableIndex(q Querier, db, table string) Index { return tableIndex{q, db, table} }

type tableIndex struct {
	q         Querier
	db, table string
}

func (t tableIndex) Stored(ctx context.Context, topic string, partition int32, offsets []int64) (map[int64]bool, error) {
	out := map[int64]bool{}
	if len(offsets) == 0 {
		return out, nil
	}
	// Offsets are integers, written into the query as literals; the
	// primary key starts with (_topic, _partition), so ClickHouse reads
	// only that partition's granules.
	var in strings.Builder
	for i, o := range offsets {
		if i > 0 {
			in.WriteByte(',')
		}
		in.WriteString(strconv.FormatInt(o, 10))
	}
	q := fmt.Sprintf("SELECT DISTINCT toInt64(%s) FROM %s.%s WHERE %s = ? AND %s = %d AND %s IN (%s)",
		sink.ColOffset, quoteIdent(t.db), quoteIdent(t.table), sink.ColTopic, sink.ColPartition, partition, sink.ColOffset, in.String())
	rows, err := t.q.Query(ctx, q, topic)
	if err != nil {
		return nil, fmt.Errorf("%s.%s: stored offsets of %s[%d]: %w", t.db, t.table, topic, partition, err)
	}
	defer rows.Close()
	for rows.Next() {
		var o int64
		if err := rows.Scan(&o); err != nil {
			return nil, fmt.Errorf("%s.%s: stored offsets of %s[%d]: %w", t.db, t.table, topic, partition, err)
		}
		out[o] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s.%s: stored offsets of %s[%d]: %w", t.db, t.table, topic, partition, err)
	}
	return out, nil
}

func quoteIdent(s string) string { return "`" + strings.ReplaceAll(s, "`", "\\`") + "`" }

// WriteReport prints one line per dead letter that was not replayed
// (still failing, not yet passed, malformed), then the totals.
func WriteReport(w io.Writer, r *Report) error {
	for _, res := range r.Results {
		l := res.Letter
		where := fmt.Sprintf("%s (dlq %d/%d)", l.Source(), l.Partition, l.Offset)
		if l.Invalid != "" {
			where = fmt.Sprintf("dlq %d/%d", l.Partition, l.Offset)
		}
		var err error
		switch res.Outcome {
		case StillFailing:
			_, err = fmt.Fprintf(w, "%s: still failing at %s: %s\n", where, res.Stage, oneLine(res.Reason))
		case NotPassed:
			committed := "nothing committed"
			if res.Committed >= 0 {
				committed = "committed " + strconv.FormatInt(res.Committed, 10)
			}
			_, err = fmt.Fprintf(w, "%s: not yet passed by the consumer group (%s); replay later\n", where, committed)
		}
		if err != nil {
			return err
		}
	}
	replayed := "replayed"
	if r.DryRun {
		replayed = "would replay"
		fmt.Fprintln(w, "dry run: nothing was inserted")
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "selected\t%d\n", r.Selected)
	fmt.Fprintf(tw, "%s\t%d\n", replayed, r.Replayed)
	fmt.Fprintf(tw, "already loaded\t%d\n", r.AlreadyLoaded)
	fmt.Fprintf(tw, "still failing\t%d\n", r.Failing)
	fmt.Fprintf(tw, "skipped (not yet passed)\t%d\n", r.NotPassed)
	if r.Duplicates > 0 {
		fmt.Fprintf(tw, "duplicates\t%d\n", r.Duplicates)
	}
	return tw.Flush()
}
