package dlq

// Reading the dead-letter topic back: `sluice dlq inspect` and the input
// of Replay. Read is a plain consumer (no group, no commits): it reads every
// partition of the topic from its start up to the high watermark it had
// when Read began, so a dead letter produced meanwhile is not waited for.

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-etl/sluice/pkg/record"
)

// ErrNoTopic says the dead-letter topic does not exist: nothing was ever
// dead-lettered there (or the config names another topic).
var ErrNoTopic = errors.New("dead-letter topic does not exist")

// DeadLetter is one dead letter read back from the topic, its headers parsed.
type DeadLetter struct {
	// Topic, Partition and Offset locate the dead letter itself.
	Topic     string
	Partition int32
	Offset    int64
	// Timestamp is when it was dead-lettered (the DLQ record's timestamp).
	Timestamp time.Time

	Pipeline string
	Stage    record.Stage
	Reason   string
	// SourceTopic, SourcePartition and SourceOffset are the coordinates
	// of the original record; -1 when the header is missing or malformed.
	SourceTopic     string
	SourcePartition int32
	SourceOffset    int64

	// Key and Value are the original record's bytes, unchanged.
	Key, Value []byte
	// Headers are all the dead letter's headers, in order.
	Headers []kgo.RecordHeader
	// Invalid says why the source coordinates cannot be used ("" when
	// they can): such a letter can be inspected but not replayed.
	Invalid string
	// Truncated says the value was cut to fit the dead-letter topic
	// (HeaderTruncated): Value is a prefix of the original, whose length
	// and SHA-256 (hex) are ValueBytes and ValueSHA256. It is not replayed.
	Truncated   bool
	ValueBytes  int64
	ValueSHA256 string
}

// Source is the original record's coordinates, as "topic[partition]@offset".
func (l *DeadLetter) Source() string {
	return fmt.Sprintf("%s[%d]@%d", l.SourceTopic, l.SourcePartition, l.SourceOffset)
}

// Parse turns a record of the dead-letter topic into a DeadLetter. A letter
// with missing or malformed source headers is returned with Invalid set,
// not dropped: it is still a record someone has to look at.
func Parse(r *kgo.Record) DeadLetter {
	l := DeadLetter{
		Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Timestamp: r.Timestamp,
		Pipeline:        Header(r, HeaderPipeline),
		Stage:           record.Stage(Header(r, HeaderStage)),
		Reason:          Header(r, HeaderReason),
		SourceTopic:     Header(r, HeaderTopic),
		SourcePartition: -1,
		SourceOffset:    -1,
		Key:             r.Key,
		Value:           r.Value,
		Headers:         r.Headers,
	}
	var problems []string
	if l.SourceTopic == "" {
		problems = append(problems, "no "+HeaderTopic+" header")
	}
	if p, err := strconv.ParseInt(Header(r, HeaderPartition), 10, 32); err != nil || p < 0 {
		problems = append(problems, fmt.Sprintf("bad %s header %q", HeaderPartition, Header(r, HeaderPartition)))
	} else {
		l.SourcePartition = int32(p)
	}
	if o, err := strconv.ParseInt(Header(r, HeaderOffset), 10, 64); err != nil || o < 0 {
		problems = append(problems, fmt.Sprintf("bad %s header %q", HeaderOffset, Header(r, HeaderOffset)))
	} else {
		l.SourceOffset = o
	}
	l.Invalid = strings.Join(problems, "; ")
	if Header(r, HeaderTruncated) == "true" {
		l.Truncated, l.ValueSHA256 = true, Header(r, HeaderValueSHA256)
		l.ValueBytes, _ = strconv.ParseInt(Header(r, HeaderValueBytes), 10, 64)
	}
	return l
}

// Filter selects dead letters by their headers. The zero Filter selects
// every one; each set field narrows the selection.
type Filter struct {
	// Pipeline and Stage match the headers exactly.
	Pipeline string
	Stage    record.Stage
	// SourceTopic matches the source topic header exactly.
	SourceTopic string
	// SourcePartition, when set, matches the source partition.
	SourcePartition *int32
	// FromOffset and ToOffset, when set, bound the source offset
	// (both inclusive).
	FromOffset, ToOffset *int64
	// Reason matches a substring of the reason, ignoring case.
	Reason string
	// Limit, when positive, keeps only the first Limit matches in the
	// order Read returns them.
	Limit int
}

// Match says whether the letter passes every set field of f (Limit aside).
func (f *Filter) Match(l *DeadLetter) bool {
	switch {
	case f.Pipeline != "" && l.Pipeline != f.Pipeline,
		f.Stage != "" && l.Stage != f.Stage,
		f.SourceTopic != "" && l.SourceTopic != f.SourceTopic,
		f.SourcePartition != nil && l.SourcePartition != *f.SourcePartition,
		f.FromOffset != nil && (l.SourceOffset < 0 || l.SourceOffset < *f.FromOffset),
		f.ToOffset != nil && (l.SourceOffset < 0 || l.SourceOffset > *f.ToOffset),
		f.Reason != "" && !strings.Contains(strings.ToLower(l.Reason), strings.ToLower(f.Reason)):
		return false
	}
	return true
}

// Read returns the dead letters of topic that f selects, ordered by
// dead-letter partition, then offset. It reads each partition from its
// start up to the high watermark listed when Read began.
//
// cl must be a plain client: not a group member, consuming nothing else
// (Read adds the topic's partitions and removes them before it returns).
// It must not be shared with another Read at the same time. ctx bounds
// the whole read; its error is returned if it ends first.
//
// Errors: ErrNoTopic when the topic does not exist; listing or fetch
// errors naming the topic and partition.
func Read(ctx context.Context, cl *kgo.Client, topic string, f Filter) ([]DeadLetter, error) {
	adm := kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if errors.Is(err, kerr.UnknownTopicOrPartition) {
		return nil, fmt.Errorf("dlq: %s: %w", topic, ErrNoTopic)
	}
	if err != nil {
		return nil, fmt.Errorf("dlq: list end offsets of %s: %w", topic, err)
	}
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("dlq: list start offsets of %s: %w", topic, err)
	}

	// end is the offset after the last record to read, per partition.
	end := map[int32]int64{}
	consume := map[int32]kgo.Offset{}
	ends.Each(func(o kadm.ListedOffset) {
		s, ok := starts.Lookup(topic, o.Partition)
		if ok && s.Offset >= o.Offset {
			return // empty: nothing retained
		}
		end[o.Partition] = o.Offset
		consume[o.Partition] = kgo.NewOffset().AtStart()
	})
	if len(end) == 0 {
		return nil, nil
	}
	cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{topic: consume})
	parts := make([]int32, 0, len(consume))
	for p := range consume {
		parts = append(parts, p)
	}
	defer cl.RemoveConsumePartitions(map[string][]int32{topic: parts})

	perPartition := map[int32][]DeadLetter{}
	for len(end) > 0 {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("dlq: read %s: %w (partitions not read to their end: %s)", topic, err, behind(end))
		}
		var ferr error
		fetches.EachError(func(t string, p int32, err error) {
			// The client retries these itself (a leader moving, a
			// partition not yet known); ctx bounds the wait.
			if ferr == nil && !kerr.IsRetriable(err) {
				ferr = fmt.Errorf("dlq: read %s[%d]: %w", t, p, err)
			}
		})
		if ferr != nil {
			return nil, ferr
		}
		fetches.EachRecord(func(r *kgo.Record) {
			e, reading := end[r.Partition]
			if r.Topic != topic || !reading || r.Offset >= e {
				return // produced after Read began
			}
			if r.Offset+1 >= e {
				delete(end, r.Partition)
			}
			if f.Limit > 0 && len(perPartition[r.Partition]) >= f.Limit {
				return // the result is cut at Limit in partition order
			}
			if l := Parse(r); f.Match(&l) {
				perPartition[r.Partition] = append(perPartition[r.Partition], l)
			}
		})
	}

	var out []DeadLetter
	for _, p := range slices.Sorted(maps.Keys(perPartition)) {
		out = append(out, perPartition[p]...)
	}
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out, nil
}

func behind(end map[int32]int64) string {
	var s []string
	for _, p := range slices.Sorted(maps.Keys(end)) {
		s = append(s, fmt.Sprintf("%d (end %d)", p, end[p]))
	}
	return strings.Join(s, ", ")
}

// WriteTable prints the letters as a table, one line each, then the
// summary. A reason longer than what fits in width columns is cut (width
// 0: never cut). With no letters it prints "no dead letters".
func WriteTable(w io.Writer, letters []DeadLetter, width int) error {
	if len(letters) == 0 {
		_, err := fmt.Fprintln(w, "no dead letters")
		return err
	}
	head := []string{"DLQ", "TIME", "PIPELINE", "STAGE", "SOURCE", "KEY", "SIZE"}
	rows := make([][]string, len(letters))
	for i := range letters {
		l := &letters[i]
		src := l.Source()
		if l.Invalid != "" {
			src = "? (" + l.Invalid + ")"
		}
		size := strconv.Itoa(len(l.Value))
		if l.Truncated {
			size += " of " + strconv.FormatInt(l.ValueBytes, 10)
		}
		rows[i] = []string{
			fmt.Sprintf("%d/%d", l.Partition, l.Offset),
			l.Timestamp.UTC().Format("2006-01-02T15:04:05Z"),
			orDash(l.Pipeline),
			orDash(string(l.Stage)),
			src,
			printable(l.Key, 24),
			size,
		}
	}
	// Column widths from the data, capped so one odd value cannot push
	// the reason off the screen.
	caps := []int{0, 0, 24, 0, 48, 24, 0}
	widths := make([]int, len(head))
	for c, h := range head {
		widths[c] = len(h)
		for _, r := range rows {
			widths[c] = max(widths[c], utf8.RuneCountInString(r[c]))
		}
		if caps[c] > 0 {
			widths[c] = min(widths[c], caps[c])
		}
	}
	used := 0
	for _, cw := range widths {
		used += cw + 2
	}
	reasonWidth := 0 // no cut
	if width > 0 {
		reasonWidth = max(width-used, 20)
	}
	line := func(cells []string, reason string) error {
		var b strings.Builder
		for c, cell := range cells {
			cell = cut(cell, widths[c])
			if c == len(cells)-1 { // SIZE: right-aligned
				b.WriteString(strings.Repeat(" ", widths[c]-utf8.RuneCountInString(cell)))
				b.WriteString(cell)
			} else {
				b.WriteString(cell)
				b.WriteString(strings.Repeat(" ", widths[c]-utf8.RuneCountInString(cell)))
			}
			b.WriteString("  ")
		}
		b.WriteString(cut(oneLine(reason), reasonWidth))
		_, err := fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
		return err
	}
	if err := line(head, "REASON"); err != nil {
		return err
	}
	for i, r := range rows {
		if err := line(r, letters[i].Reason); err != nil {
			return err
		}
	}
	if _, err := fmt.Fprintln(w); err != nil {
		return err
	}
	return WriteSummary(w, letters)
}

// WriteSummary prints how many letters there are, per pipeline and stage.
func WriteSummary(w io.Writer, letters []DeadLetter) error {
	type ps struct{ pipeline, stage string }
	counts := map[ps]int{}
	for i := range letters {
		counts[ps{orDash(letters[i].Pipeline), orDash(string(letters[i].Stage))}]++
	}
	keys := make([]ps, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b ps) int {
		if c := strings.Compare(a.pipeline, b.pipeline); c != 0 {
			return c
		}
		return strings.Compare(a.stage, b.stage)
	})
	noun := "dead letters"
	if len(letters) == 1 {
		noun = "dead letter"
	}
	fmt.Fprintf(w, "%d %s\n", len(letters), noun)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PIPELINE\tSTAGE\tCOUNT")
	for _, k := range keys {
		fmt.Fprintf(tw, "%s\t%s\t%d\n", k.pipeline, k.stage, counts[k])
	}
	return tw.Flush()
}

// jsonLetter is one line of `sluice dlq inspect --json`.
type jsonLetter struct {
	Topic     string            `json:"dlq_topic"`
	Partition int32             `json:"dlq_partition"`
	Offset    int64             `json:"dlq_offset"`
	Timestamp time.Time         `json:"timestamp"`
	Pipeline  string            `json:"pipeline"`
	Stage     string            `json:"stage"`
	Reason    string            `json:"reason"`
	Source    jsonSource        `json:"source"`
	Invalid   string            `json:"invalid,omitempty"`
	Headers   map[string]string `json:"headers"`
	Key       []byte            `json:"key"`   // base64; null when the record had none
	Value     []byte            `json:"value"` // base64; null for a tombstone
}

type jsonSource struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
}

// WriteJSON prints one JSON object per letter, one per line: its
// coordinates, every header (as text), and key and value in base64.
func WriteJSON(w io.Writer, letters []DeadLetter) error {
	enc := json.NewEncoder(w)
	for i := range letters {
		l := &letters[i]
		j := jsonLetter{
			Topic: l.Topic, Partition: l.Partition, Offset: l.Offset, Timestamp: l.Timestamp.UTC(),
			Pipeline: l.Pipeline, Stage: string(l.Stage), Reason: l.Reason,
			Source:  jsonSource{l.SourceTopic, l.SourcePartition, l.SourceOffset},
			Invalid: l.Invalid,
			Headers: make(map[string]string, len(l.Headers)),
			Key:     l.Key, Value: l.Value,
		}
		for _, h := range l.Headers {
			j.Headers[h.Key] = string(h.Value)
		}
		if err := enc.Encode(j); err != nil {
			return err
		}
	}
	return nil
}

// printable shows a key as text when it is printable UTF-8, else as hex;
// nil shows as "-". Either is cut to n runes.
func printable(b []byte, n int) string {
	if b == nil {
		return "-"
	}
	s := string(b)
	ok := utf8.ValidString(s)
	for _, r := range s {
		if !ok || !unicode.IsPrint(r) {
			ok = false
			break
		}
	}
	if !ok {
		if len(b) > n/2 {
			return "0x" + hex.EncodeToString(b[:max(n/2-2, 1)]) + "…"
		}
		return "0x" + hex.EncodeToString(b)
	}
	return cut(s, n)
}

// cut shortens s to n runes, ending in "…" when it had more; n <= 0 keeps s.
func cut(s string, n int) string {
	if n <= 0 || utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
