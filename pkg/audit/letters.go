package audit

// Reading the dead-letter topic into per-source-partition offset lists:
// the only state the audit holds in Go that grows with the data, and it
// grows with the dead letters (8 bytes each), never with the table.

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-etl/sluice/pkg/dlq"
)

// tp names a source topic-partition.
type tp struct {
	topic     string
	partition int32
}

// partitionLetters are one source partition's dead letters.
type partitionLetters struct {
	// offsets are the source offsets at or above the partition's log
	// start, one entry per letter (a repeat is a duplicate letter);
	// sorted by sortLetters.
	offsets []int64
	// below is the highest source offset below the log start that has a
	// letter, -1 when none has.
	below int64
}

// letterIndex is every dead letter of the audited source partitions.
type letterIndex struct {
	parts map[tp]*partitionLetters
	// Unattributed counts letters whose source headers cannot be read;
	// foreign counts letters of topics no audited pipeline reads.
	unattributed, foreign int64
	// missing says the dead-letter topic does not exist.
	missing bool
}

func (ix *letterIndex) of(t string, p int32) *partitionLetters {
	if pl := ix.parts[tp{t, p}]; pl != nil {
		return pl
	}
	return &partitionLetters{below: -1}
}

// readLetters reads every partition of the dead-letter topic from its
// start to the high watermark it has when the read begins, keeping the
// source offsets of the letters of the partitions in logStart (source
// topic -> partition -> log start). Letters of one source partition go to
// one dead-letter partition, but the whole topic is read anyway: a change
// of its partition count moves them, and the audit must not miss one.
//
// cl must be a plain client (no group); readLetters adds the topic's
// partitions to it and removes them before it returns.
func readLetters(ctx context.Context, cl *kgo.Client, topic string, logStart map[string]map[int32]int64) (*letterIndex, error) {
	ix := &letterIndex{parts: map[tp]*partitionLetters{}}
	adm := kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if errors.Is(err, kerr.UnknownTopicOrPartition) {
		ix.missing = true
		return ix, nil
	}
	if err != nil {
		return nil, fmt.Errorf("audit: end offsets of dead-letter topic %s: %w", topic, err)
	}
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("audit: start offsets of dead-letter topic %s: %w", topic, err)
	}
	end := map[int32]int64{}
	consume := map[int32]kgo.Offset{}
	ends.Each(func(o kadm.ListedOffset) {
		if s, ok := starts.Lookup(topic, o.Partition); ok && s.Offset >= o.Offset {
			return // empty
		}
		end[o.Partition] = o.Offset
		consume[o.Partition] = kgo.NewOffset().AtStart()
	})
	if len(end) == 0 {
		return ix, nil
	}
	cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{topic: consume})
	defer cl.RemoveConsumePartitions(map[string][]int32{topic: slices.Collect(maps.Keys(consume))})

	for len(end) > 0 {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("audit: read dead-letter topic %s: %w (%d partitions not read to their end)", topic, err, len(end))
		}
		var ferr error
		fetches.EachError(func(t string, p int32, err error) {
			if ferr == nil && !kerr.IsRetriable(err) {
				ferr = fmt.Errorf("audit: read dead-letter topic %s[%d]: %w", t, p, err)
			}
		})
		if ferr != nil {
			return nil, ferr
		}
		fetches.EachRecord(func(r *kgo.Record) {
			e, reading := end[r.Partition]
			if r.Topic != topic || !reading || r.Offset >= e {
				return // produced after the read began
			}
			if r.Offset+1 >= e {
				delete(end, r.Partition)
			}
			ix.add(r, logStart)
		})
	}
	for _, pl := range ix.parts {
		slices.Sort(pl.offsets)
	}
	return ix, nil
}

// add files one letter under its source partition. Only its coordinates
// are kept; its key and value are dropped with the fetch.
func (ix *letterIndex) add(r *kgo.Record, logStart map[string]map[int32]int64) {
	t := dlq.Header(r, dlq.HeaderTopic)
	p, perr := strconv.ParseInt(dlq.Header(r, dlq.HeaderPartition), 10, 32)
	o, oerr := strconv.ParseInt(dlq.Header(r, dlq.HeaderOffset), 10, 64)
	if t == "" || perr != nil || oerr != nil || p < 0 || o < 0 {
		ix.unattributed++
		return
	}
	starts, ok := logStart[t]
	if !ok {
		ix.foreign++
		return
	}
	start, ok := starts[int32(p)]
	if !ok {
		ix.foreign++ // a partition the topic does not have (any more)
		return
	}
	k := tp{t, int32(p)}
	pl := ix.parts[k]
	if pl == nil {
		pl = &partitionLetters{below: -1}
		ix.parts[k] = pl
	}
	if o < start {
		pl.below = max(pl.below, o)
		return
	}
	pl.offsets = append(pl.offsets, o)
}

// distinct splits sorted letter offsets (with repeats) into the distinct
// offsets in [from, to) and the duplicates among them, added to dups with
// Extra = the letters beyond one.
func distinct(sorted []int64, from, to int64, dups *Ranges) []int64 {
	var out []int64
	for i := 0; i < len(sorted); {
		o := sorted[i]
		j := i + 1
		for j < len(sorted) && sorted[j] == o {
			j++
		}
		if o >= from && o < to {
			out = append(out, o)
			if j-i > 1 {
				dups.Add(o, uint64(j-i-1))
			}
		}
		i = j
	}
	return out
}
