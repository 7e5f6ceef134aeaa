// Package dlq sends the records Sluice cannot load to the dead-letter topic.
//
// Place in the flow: after transforms and conversion, before the INSERT and
// the commit. A dead letter keeps the original key and value bytes and
// carries headers naming the pipeline, the stage that failed (decode,
// transform, load), the reason, and the source topic, partition and offset.
// A batch's offsets are committed only after its dead letters are
// acknowledged, so produced = loaded + dead-lettered holds across crashes.
//
// Exactly once in the dead-letter topic: all dead letters of one source
// partition go to one dead-letter partition, chosen once (by hashing the
// source topic and partition over the partition count of the time) and
// then named in every offset commit's metadata together with the
// dead-letter offset to read from (a position, "p<partition>@<offset>"). A
// new owner of the partition reads that dead-letter partition from there
// (Resume), even if the topic has gained partitions since, and does not
// produce again the letters a previous owner produced before crashing
// between its dead letters and its commit. Send reports every letter the
// topic acknowledged, also when others failed, so that only the failed ones
// are produced again. A letter larger than the topic's max.message.bytes
// has its value cut to fit, with headers giving the original value's size
// and SHA-256 (HeaderTruncated): it is stored, traceable, and never retried
// forever. docs/DESIGN.md (invariant 8) has the reasoning.
package dlq

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-etl/sluice/pkg/record"
)

// Header names on every dead letter.
const (
	HeaderPipeline  = "sluice.pipeline"
	HeaderStage     = "sluice.stage"
	HeaderReason    = "sluice.reason"
	HeaderTopic     = "sluice.source.topic"
	HeaderPartition = "sluice.source.partition"
	HeaderOffset    = "sluice.source.offset"
)

// Headers of a letter whose value was cut to fit the dead-letter topic's
// max.message.bytes: HeaderTruncated is "true", HeaderValueBytes the
// original value's length and HeaderValueSHA256 its SHA-256 in hex. The key
// and the other headers are kept; the value is a prefix of the original
// (possibly empty). Such a letter can be inspected but not replayed: the
// original is in the source topic at the letter's source offset.
const (
	HeaderTruncated   = "sluice.truncated"
	HeaderValueBytes  = "sluice.value.bytes"
	HeaderValueSHA256 = "sluice.value.sha256"
)

// Producer is the part of *kgo.Client the writer needs. Its partitioner
// must be Partitioner(topic): Send pins each letter to its partition
// through it.
type Producer interface {
	ProduceSync(ctx context.Context, rs ...*kgo.Record) kgo.ProduceResults
}

// DefaultResumeStall bounds how long Resume waits for its read of the
// dead-letter partition to make progress before it fails (and is retried).
const DefaultResumeStall = 30 * time.Second

// kafkaDefaultMaxMessageBytes is Kafka's default message.max.bytes, the
// limit assumed when the topic's configuration may not be described.
const kafkaDefaultMaxMessageBytes = 1048588

// Writer produces dead letters. Safe for concurrent use.
type Writer struct {
	p       Producer
	topic   string
	brokers []string
	opts    []kgo.Opt
	// producerMax is the producer's own bound on a record batch
	// (SetProducerMaxBytes; 0: none known).
	producerMax int
	// limit caches the largest letter the topic takes (0: not read yet).
	limit atomic.Int64
	// stall is Resume's bound on a read that makes no progress.
	stall time.Duration
	// originalsRead, when set (tests), runs between Originals' read and
	// its second look at the topic's ID.
	originalsRead func()
}

// New returns a writer to topic. brokers and opts (e.g. TLS) serve the
// short-lived clients of Resume and of reading the topic's
// max.message.bytes.
func New(p Producer, topic string, brokers []string, opts ...kgo.Opt) *Writer {
	return &Writer{p: p, topic: topic, brokers: brokers, opts: opts, stall: DefaultResumeStall}
}

// SetProducerMaxBytes tells the writer the producer's
// kgo.ProducerBatchMaxBytes, which bounds a letter as the topic's
// max.message.bytes does. Call it before the first Send.
func (w *Writer) SetProducerMaxBytes(n int) { w.producerMax = n }

// Topic is the dead-letter topic.
func (w *Writer) Topic() string { return w.topic }

// Send produces, to the dead-letter partition of pos (a position from
// Resume), one dead letter per failed item of the batch except those skip
// says are already in the topic, and waits for every acknowledgement.
//
// It calls acked, in the caller's goroutine, for each letter the topic
// acknowledged: with its item, its position (at+1 is the position after
// it) and whether its value was cut to fit the topic (HeaderTruncated) —
// also when it returns an error. An error means the other letters may not
// be stored: the batch must not be committed, and the next Send must skip
// the acknowledged ones.
//
// A letter the topic refuses as too large (kerr.MessageTooLarge: the
// topic's max.message.bytes was lowered, or the estimate was short) is
// produced once more right away with no value at all; only a letter that
// does not fit even so is an error.
func (w *Writer) Send(ctx context.Context, b *record.Batch, pos int64, skip func(offset int64) bool, acked func(it *record.Item, at int64, truncated bool)) error {
	part, _ := SplitPosition(pos)
	if part < 0 {
		return fmt.Errorf("dlq: %s[%d]: no dead-letter partition for the letters (Resume first)", b.Topic, b.Partition)
	}
	var items []*record.Item
	for i := range b.Items {
		it := &b.Items[i]
		if it.Failed != nil && (skip == nil || !skip(it.Offset())) {
			items = append(items, it)
		}
	}
	if len(items) == 0 {
		return nil
	}
	limit, err := w.maxBytes(ctx, false)
	if err != nil {
		return fmt.Errorf("dlq: %s[%d] %d..%d: %w", b.Topic, b.Partition, b.First, b.Last, err)
	}
	pinned := context.WithValue(ctx, pinKey{}, part)
	// produce sends the letters of items; it returns those refused as too
	// large (with the first such error) apart from every other failure.
	produce := func(items []*record.Item, strict bool) (tooLarge []*record.Item, tooLargeErr, err error) {
		recs := make([]*kgo.Record, len(items))
		cut := make(map[*kgo.Record]bool, len(items))
		of := make(map[*kgo.Record]*record.Item, len(items))
		for i, it := range items {
			r := Letter(w.topic, b.Pipeline, it)
			r.Context = pinned
			cut[r] = fit(r, limit, strict)
			recs[i], of[r] = r, it
		}
		for _, res := range w.p.ProduceSync(ctx, recs...) {
			switch it := of[res.Record]; {
			case res.Err == nil:
				acked(it, Position(res.Record.Partition, res.Record.Offset), cut[res.Record])
			case errors.Is(res.Err, kerr.MessageTooLarge) || errors.Is(res.Err, kerr.RecordListTooLarge):
				tooLarge = append(tooLarge, it)
				tooLargeErr = cmp.Or(tooLargeErr, res.Err)
			default:
				err = cmp.Or(err, res.Err)
			}
		}
		return tooLarge, tooLargeErr, err
	}
	tooLarge, tlErr, err := produce(items, false)
	if len(tooLarge) > 0 {
		// The topic's limit may have been lowered since it was read:
		// read it again, and send these letters without their values.
		var lerr error
		if limit, lerr = w.maxBytes(ctx, true); lerr == nil {
			var oerr error
			tooLarge, tlErr, oerr = produce(tooLarge, true)
			lerr = oerr
			if len(tooLarge) > 0 {
				lerr = cmp.Or(lerr, fmt.Errorf("%d letters do not fit in the topic's %d bytes even without their values (first: offset %d): %w",
					len(tooLarge), limit, tooLarge[0].Offset(), tlErr))
			}
		}
		err = cmp.Or(err, lerr)
	}
	if err != nil {
		if r, ok := w.p.(interface{ ForceMetadataRefresh() }); ok {
			// A partition the client does not know yet (the topic
			// grew) fails the letter until its metadata is fresh.
			r.ForceMetadataRefresh()
		}
		return fmt.Errorf("dlq: %s[%d] %d..%d: produce dead letters to %s[%d]: %w",
			b.Topic, b.Partition, b.First, b.Last, w.topic, part, err)
	}
	return nil
}

// letterOverhead over-estimates what Kafka adds around a record's key,
// value and headers in a batch of one: the batch header with the log
// overhead (61 bytes), the record's own varints (at most 36), and headroom.
// Each header adds at most 10 bytes of varints.
const letterOverhead = 61 + 36 + 32

// letterSize over-estimates the bytes r takes as a batch of one, the size
// the broker compares with max.message.bytes.
func letterSize(r *kgo.Record) int {
	n := letterOverhead + len(r.Key) + len(r.Value)
	for _, h := range r.Headers {
		n += 10 + len(h.Key) + len(h.Value)
	}
	return n
}

// fit cuts r's value so that r takes at most limit bytes (strict: drops the
// whole value) and marks it with the truncation headers; it says whether it
// cut anything. The key and the other headers are kept whatever their size.
func fit(r *kgo.Record, limit int, strict bool) bool {
	if !strict && letterSize(r) <= limit {
		return false
	}
	orig := r.Value
	sum := sha256.Sum256(orig)
	r.Headers = append(r.Headers,
		kgo.RecordHeader{Key: HeaderTruncated, Value: []byte("true")},
		kgo.RecordHeader{Key: HeaderValueBytes, Value: []byte(strconv.Itoa(len(orig)))},
		kgo.RecordHeader{Key: HeaderValueSHA256, Value: []byte(hex.EncodeToString(sum[:]))},
	)
	keep := 0
	if !strict {
		keep = min(len(orig), max(0, limit-(letterSize(r)-len(orig))))
	}
	r.Value = orig[:keep:keep]
	return true
}

// maxBytes is the largest letter the topic takes: its max.message.bytes
// (read once, and again with reload), within the producer's own bound.
func (w *Writer) maxBytes(ctx context.Context, reload bool) (int, error) {
	if n := w.limit.Load(); n > 0 && !reload {
		return int(n), nil
	}
	cl, err := w.client()
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	n, err := MaxMessageBytes(ctx, kadm.NewClient(cl), w.topic)
	if errors.Is(err, kerr.TopicAuthorizationFailed) || errors.Is(err, kerr.ClusterAuthorizationFailed) {
		n, err = kafkaDefaultMaxMessageBytes, nil // not allowed to look: assume Kafka's default
	}
	if err != nil {
		return 0, fmt.Errorf("max.message.bytes of %s: %w", w.topic, err)
	}
	if w.producerMax > 0 {
		n = min(n, w.producerMax)
	}
	w.limit.Store(int64(n))
	return n, nil
}

// MaxMessageBytes reads the effective max.message.bytes of topic: its own
// setting, else the broker's default.
func MaxMessageBytes(ctx context.Context, adm *kadm.Client, topic string) (int, error) {
	rcs, err := adm.DescribeTopicConfigs(ctx, topic)
	if err != nil {
		return 0, err
	}
	rc, err := rcs.On(topic, nil)
	if err == nil {
		err = rc.Err
	}
	if err != nil {
		return 0, err
	}
	for _, c := range rc.Configs {
		if c.Key == "max.message.bytes" && c.Value != nil {
			n, err := strconv.Atoi(*c.Value)
			if err != nil || n <= 0 {
				return 0, fmt.Errorf("max.message.bytes of %s is %q", topic, *c.Value)
			}
			return n, nil
		}
	}
	return 0, fmt.Errorf("%s has no max.message.bytes in its configuration", topic)
}

func (w *Writer) client() (*kgo.Client, error) {
	return kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(w.brokers...)}, w.opts...)...)
}

// Letter builds the dead letter of a failed item.
func Letter(topic, pipeline string, it *record.Item) *kgo.Record {
	src := it.Rec
	return &kgo.Record{
		Topic: topic,
		Key:   src.Key,
		Value: src.Value,
		Headers: []kgo.RecordHeader{
			{Key: HeaderPipeline, Value: []byte(pipeline)},
			{Key: HeaderStage, Value: []byte(it.Failed.Stage)},
			{Key: HeaderReason, Value: []byte(it.Failed.Reason)},
			{Key: HeaderTopic, Value: []byte(src.Topic)},
			{Key: HeaderPartition, Value: []byte(strconv.FormatInt(int64(src.Partition), 10))},
			{Key: HeaderOffset, Value: []byte(strconv.FormatInt(src.Offset, 10))},
		},
	}
}

// Header returns the value of the named header of a dead letter.
func Header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// Partitioner places dead letters: a letter Send produces goes to the
// dead-letter partition Send pins it to (its source partition's, from
// Resume); any other letter of the dead-letter topic to the partition
// PartitionFor names; records of other topics keep franz-go's default
// placement. Use it as the producing client's kgo.RecordPartitioner.
func Partitioner(dlqTopic string) kgo.Partitioner {
	return partitioner{topic: dlqTopic, other: kgo.StickyKeyPartitioner(nil)}
}

type partitioner struct {
	topic string
	other kgo.Partitioner
}

func (p partitioner) ForTopic(t string) kgo.TopicPartitioner {
	if t != p.topic {
		return p.other.ForTopic(t)
	}
	return sourcePartitioner{}
}

// pinKey is the context key of a letter's pinned dead-letter partition.
type pinKey struct{}

type sourcePartitioner struct{}

func (sourcePartitioner) RequiresConsistency(*kgo.Record) bool { return true }

// Partition returns a pinned partition even when n says the client does
// not know it yet (the topic just grew): franz-go then fails the record,
// Send reports it and refreshes the metadata, and the retry finds it.
func (sourcePartitioner) Partition(r *kgo.Record, n int) int {
	if r.Context != nil {
		if p, ok := r.Context.Value(pinKey{}).(int32); ok {
			return int(p)
		}
	}
	return PartitionFor(Header(r, HeaderTopic), Header(r, HeaderPartition), n)
}

// PartitionFor is the dead-letter partition of a source partition when the
// dead-letter topic has n partitions: where a source partition's letters go
// when no commit names their partition yet.
func PartitionFor(topic, partition string, n int) int {
	h := fnv.New32a()
	h.Write([]byte(topic))
	h.Write([]byte{0})
	h.Write([]byte(partition))
	return int(h.Sum32() % uint32(n))
}

// A position says where a source partition stands in the dead-letter
// topic: the dead-letter partition its letters go to and an offset in it.
// The engine carries it as an opaque int64, which Metadata turns into the
// commit's metadata: the low offsetBits bits are the offset, the bits above
// them the partition plus one (zero: metadata of the earlier format, which
// named no partition). Positions of one partition compare as their offsets
// do.
const offsetBits = 47

// MaxPartitions bounds the dead-letter topic's partition count (a position
// has 16 bits for the partition).
const MaxPartitions = 1<<(63-offsetBits) - 1

// Position packs a dead-letter partition (-1: none named) and an offset.
func Position(partition int32, offset int64) int64 {
	return int64(partition+1)<<offsetBits | offset&(1<<offsetBits-1)
}

// SplitPosition unpacks what Position packed; partition is -1 when the
// position names none.
func SplitPosition(pos int64) (partition int32, offset int64) {
	return int32(pos>>offsetBits) - 1, pos & (1<<offsetBits - 1)
}

// MetadataPrefix marks Sluice's part of an offset commit's metadata.
const MetadataPrefix = "sluice:dlq="

// Metadata encodes a position for an offset commit's metadata:
// "sluice:dlq=p<partition>@<offset>" (a position naming no partition keeps
// the earlier format, "sluice:dlq=<offset>").
func Metadata(pos int64) string {
	p, off := SplitPosition(pos)
	if p < 0 {
		return MetadataPrefix + strconv.FormatInt(off, 10)
	}
	return MetadataPrefix + "p" + strconv.FormatInt(int64(p), 10) + "@" + strconv.FormatInt(off, 10)
}

// skippedKey records, in a commit's metadata after the position, the
// source offsets a partition gave up because retention removed them before
// they were loaded (kafka.on_offset_out_of_range: resume_from_log_start):
// "sluice:dlq=p0@12;skipped=10-100", offsets 10 to 99. Every later commit
// of the partition carries it on, so `sluice audit` can report it as an
// accepted gap; only the latest skip is kept.
const skippedKey = ";skipped="

// WithSkipped adds the skipped source offsets [from, to) to metadata md.
func WithSkipped(md string, from, to int64) string {
	return md + skippedKey + strconv.FormatInt(from, 10) + "-" + strconv.FormatInt(to, 10)
}

// Skipped reads the skipped source offsets [from, to) that WithSkipped
// wrote into md; false when md records none.
func Skipped(md string) (from, to int64, ok bool) {
	_, v, found := strings.Cut(md, skippedKey)
	if !found {
		return 0, 0, false
	}
	v, _, _ = strings.Cut(v, ";")
	a, b, found := strings.Cut(v, "-")
	if !found {
		return 0, 0, false
	}
	from, err1 := strconv.ParseInt(a, 10, 64)
	to, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil || from < 0 || to <= from {
		return 0, 0, false
	}
	return from, to, true
}

// ParseMetadata reads what Metadata wrote, in either format; false when s
// holds no position (absent or foreign).
func ParseMetadata(s string) (pos int64, ok bool) {
	s, _, _ = strings.Cut(s, ";") // what follows is not the position (WithSkipped)
	v, found := strings.CutPrefix(s, MetadataPrefix)
	if !found {
		return 0, false
	}
	part := int64(-1)
	if ps, offs, named := strings.Cut(v, "@"); named {
		n, err := strconv.ParseInt(strings.TrimPrefix(ps, "p"), 10, 32)
		if err != nil || !strings.HasPrefix(ps, "p") || n < 0 || n >= MaxPartitions {
			return 0, false
		}
		part, v = n, offs
	}
	off, err := strconv.ParseInt(v, 10, 64)
	if err != nil || off < 0 || off >= 1<<offsetBits {
		return 0, false
	}
	return Position(int32(part), off), true
}

// Resume finds where a newly assigned source partition stands with its dead
// letters. It reads the group's committed offset and metadata for the
// partition; the metadata's position names the dead-letter partition (a
// position of the earlier format, or none, means the partition PartitionFor
// names for today's partition count) and where to read it from. It reads
// that partition from there up to the end offset it had when Resume began,
// and returns the source offsets (at or above the committed offset) that
// already have a dead letter, each with its letter's position, plus the
// position to store with the next commit: the same dead-letter partition,
// at that end offset.
//
// The read has no deadline of its own (a backlog takes as long as it
// takes); it fails when it makes no progress for DefaultResumeStall, and
// never returns a partial read as complete. Errors: the dead-letter topic
// is missing or has more than MaxPartitions partitions, or Kafka could not
// be read; the caller retries.
func (w *Writer) Resume(ctx context.Context, group, topic string, partition int32) (seen map[int64]int64, pos int64, err error) {
	cl, err := w.client()
	if err != nil {
		return nil, 0, fmt.Errorf("dlq: resume %s[%d]: %w", topic, partition, err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	committed := int64(0)
	stored, named := int64(0), false
	offs, err := adm.FetchOffsets(ctx, group)
	if err == nil {
		if o, ok := offs.Lookup(topic, partition); ok && o.Err == nil {
			committed = o.At
			stored, named = ParseMetadata(o.Metadata)
		}
	} else if !errors.Is(err, kerr.GroupIDNotFound) {
		return nil, 0, fmt.Errorf("dlq: resume %s[%d]: committed offsets of %s: %w", topic, partition, group, err)
	}
	topics, err := adm.ListTopics(ctx, w.topic)
	if err != nil {
		return nil, 0, fmt.Errorf("dlq: resume: describe %s: %w", w.topic, err)
	}
	td, ok := topics[w.topic]
	if !ok || td.Err != nil || len(td.Partitions) == 0 {
		return nil, 0, fmt.Errorf("dlq: dead-letter topic %s does not exist (create it, or enable auto-creation)", w.topic)
	}
	n := len(td.Partitions)
	if n > MaxPartitions {
		return nil, 0, fmt.Errorf("dlq: dead-letter topic %s has %d partitions, more than %d", w.topic, n, MaxPartitions)
	}
	src := strconv.FormatInt(int64(partition), 10)
	dp, from := int32(PartitionFor(topic, src, n)), int64(0)
	if named {
		switch p, off := SplitPosition(stored); {
		case p < 0:
			// The earlier format: the partition of the hash, if the
			// partition count has not changed since (DESIGN.md 8).
			from = off
		case int(p) < n:
			dp, from = p, off
		default:
			// Fewer partitions than the position names: the topic was
			// created again, its letters are gone.
		}
	}
	ends, err := adm.ListEndOffsets(ctx, w.topic)
	if err != nil {
		return nil, 0, fmt.Errorf("dlq: resume: end offsets of %s: %w", w.topic, err)
	}
	lo, ok := ends.Lookup(w.topic, dp)
	if !ok || lo.Err != nil {
		return nil, 0, fmt.Errorf("dlq: resume: end offset of %s[%d]: %v", w.topic, dp, cmp.Or(lo.Err, errors.New("not listed")))
	}
	end := lo.Offset
	if end >= 1<<offsetBits {
		return nil, 0, fmt.Errorf("dlq: resume: %s[%d] ends at %d, past what a position holds", w.topic, dp, end)
	}
	seen = map[int64]int64{}
	if from >= end {
		return seen, Position(dp, end), nil
	}
	if err := w.read(ctx, cl, w.topic, dp, from, end, func(r *kgo.Record) {
		if Header(r, HeaderTopic) != topic || Header(r, HeaderPartition) != src {
			return
		}
		off, err := strconv.ParseInt(Header(r, HeaderOffset), 10, 64)
		if _, dup := seen[off]; err == nil && off >= committed && !dup {
			seen[off] = Position(dp, r.Offset)
		}
	}); err != nil {
		return nil, 0, fmt.Errorf("dlq: resume %s[%d]: %w", topic, partition, err)
	}
	return seen, Position(dp, end), nil
}

// read hands each record of partition dp of topic in [from, end) to fn.
// It fails when no record arrives for w.stall, or on a fetch error that
// retrying cannot cure; a read that returns nil read everything.
func (w *Writer) read(ctx context.Context, cl *kgo.Client, topic string, dp int32, from, end int64, fn func(*kgo.Record)) error {
	cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{topic: {dp: kgo.NewOffset().At(from)}})
	pos, progress := from, time.Now()
	for pos < end {
		pctx, cancel := context.WithDeadline(ctx, progress.Add(w.stall))
		fs := cl.PollFetches(pctx)
		cancel()
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("read %s[%d] %d..%d: stopped at %d: %w", topic, dp, from, end, pos, err)
		}
		var ferr error
		fs.EachError(func(t string, p int32, err error) {
			if ferr == nil && !errors.Is(err, context.DeadlineExceeded) && !kerr.IsRetriable(err) {
				ferr = fmt.Errorf("read %s[%d]: %w", t, p, err)
			}
		})
		if ferr != nil {
			return ferr
		}
		before := pos
		fs.EachRecord(func(r *kgo.Record) {
			if r.Topic != topic || r.Partition != dp || r.Offset < pos {
				return
			}
			if r.Offset >= end {
				// Offsets come in order: the range holds nothing more
				// (its last offsets may have been compacted away).
				pos = end
				return
			}
			pos = r.Offset + 1
			fn(r)
		})
		if pos > before {
			progress = time.Now()
		} else if time.Since(progress) >= w.stall {
			return fmt.Errorf("read %s[%d] %d..%d: no progress at %d for %v", topic, dp, from, end, pos, w.stall)
		}
	}
	return nil
}

// Originals reads the records at offsets (ascending) of a source partition
// again, for the dead letters of items whose records were released
// (record.Item.Release) before their rows failed at the load. It returns
// those it found; an offset the partition no longer holds is absent: it is
// below the log start (retention), at or past the log end (the partition
// was truncated), compacted away, or the topic is another incarnation now
// (topicID, when not "", differs). An error means Kafka could not be read;
// the caller retries.
func (w *Writer) Originals(ctx context.Context, topic string, partition int32, topicID string, offsets []int64) (map[int64]*kgo.Record, error) {
	found := map[int64]*kgo.Record{}
	if len(offsets) == 0 {
		return found, nil
	}
	cl, err := w.client()
	if err != nil {
		return nil, fmt.Errorf("dlq: read the originals of %s[%d]: %w", topic, partition, err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	td, err := describeTopic(ctx, adm, topic)
	if err != nil {
		return nil, fmt.Errorf("dlq: read the originals of %s[%d]: describe the topic: %w", topic, partition, err)
	}
	if topicID != "" && td.ID.String() != topicID {
		return found, nil // created again: these offsets hold other records
	}
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("dlq: read the originals of %s[%d]: start offsets: %w", topic, partition, err)
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("dlq: read the originals of %s[%d]: end offsets: %w", topic, partition, err)
	}
	so, sok := starts.Lookup(topic, partition)
	eo, eok := ends.Lookup(topic, partition)
	if !sok || !eok || so.Err != nil || eo.Err != nil {
		return nil, fmt.Errorf("dlq: read the originals of %s[%d]: offsets not listed: %v", topic, partition, cmp.Or(so.Err, eo.Err))
	}
	want := map[int64]bool{}
	lo, hi := int64(-1), int64(-1)
	for _, o := range offsets {
		if o >= so.Offset && o < eo.Offset {
			want[o] = true
			if lo < 0 {
				lo = o
			}
			hi = o
		}
	}
	if lo < 0 {
		return found, nil
	}
	if err := w.read(ctx, cl, topic, partition, lo, hi+1, func(r *kgo.Record) {
		if want[r.Offset] {
			found[r.Offset] = r
		}
	}); err != nil {
		return nil, fmt.Errorf("dlq: read the originals: %w", err)
	}
	// The fetch names the topic, not its incarnation: one created again
	// meanwhile would have answered with its own records. A fresh client
	// asks, since a client answers metadata from its cache for a while.
	if w.originalsRead != nil {
		w.originalsRead()
	}
	if topicID != "" && len(found) > 0 {
		same, err := w.sameIncarnation(ctx, topic, topicID)
		if err != nil {
			return nil, fmt.Errorf("dlq: read the originals of %s[%d]: describe the topic again: %w", topic, partition, err)
		}
		if !same {
			return map[int64]*kgo.Record{}, nil
		}
	}
	return found, nil
}

// sameIncarnation says whether topic still has the ID topicID, asked
// through a client of its own.
func (w *Writer) sameIncarnation(ctx context.Context, topic, topicID string) (bool, error) {
	cl, err := w.client()
	if err != nil {
		return false, err
	}
	defer cl.Close()
	td, err := describeTopic(ctx, kadm.NewClient(cl), topic)
	if err != nil {
		return false, err
	}
	return td.ID.String() == topicID, nil
}

// describeTopic is topic's metadata, or why there is none. A topic the
// broker does not know is an error too (UnknownTopicOrPartition): Originals
// is asked about a topic a worker consumes now, and a broker that does not
// know it yet (or a deletion the group has not seen) is no proof its
// records are gone; a worker whose topic is really gone loses its
// partition, which ends the retries.
func describeTopic(ctx context.Context, adm *kadm.Client, topic string) (kadm.TopicDetail, error) {
	topics, err := adm.ListTopics(ctx, topic)
	if err != nil {
		return kadm.TopicDetail{}, err
	}
	td, ok := topics[topic]
	if !ok {
		td.Err = kerr.UnknownTopicOrPartition
	}
	return td, td.Err
}
