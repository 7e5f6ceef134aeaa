package audit

// One partition's audit: the checked range bucket by bucket, drilling
// into defective buckets, then what lies above the committed offset and
// below the log start.

import (
	"context"
	"maps"
	"slices"
	"sort"
)

// auditor holds the settings of one Run.
type auditor struct {
	width      int64 // offsets per bucket
	window     int64 // offsets per Buckets query, a multiple of width
	maxDrill   int   // defective buckets drilled into per partition
	replayedOK bool
}

// partition fills p (LogStart and Committed set) from the table and the
// partition's letters.
func (a *auditor) partition(ctx context.Context, tbl Table, p *PartitionReport, pl *partitionLetters) error {
	lo, hi := p.LogStart, p.Committed // the checked range, [lo, hi)
	switch {
	case p.Committed < 0:
		hi = lo // nothing committed yet: nothing to check
	case p.Committed < lo:
		// The group cannot resume: the records it would read next are
		// gone from Kafka.
		p.OutOfRange = &Range{From: p.Committed, To: lo - 1}
		hi = lo
	}
	letters := distinct(pl.offsets, lo, hi, &p.DuplicateLetters)
	p.DeadLetters = int64(len(letters))
	p.PendingLetters = int64(len(pl.offsets) - sort.Search(len(pl.offsets), func(i int) bool { return pl.offsets[i] >= hi }))
	if hi > lo {
		p.Checked = &Range{From: lo, To: hi - 1}
		if err := a.check(ctx, tbl, p, lo, hi, letters); err != nil {
			return err
		}
	}

	// Rows at or above the committed offset: loaded, commit pending.
	n, first, last, err := tbl.Span(ctx, p.Topic, p.Partition, hi, -1)
	if err != nil {
		return err
	}
	p.Pending.Rows = n
	if n > 0 {
		p.Pending.Range = &Range{From: first, To: last}
	}

	if lo > 0 && p.Committed >= lo {
		below, err := a.lastBelow(ctx, tbl, p.Topic, p.Partition, lo)
		if err != nil {
			return err
		}
		if below = max(below, pl.below); below >= 0 && below+1 < lo {
			p.AcceptedGaps = append(p.AcceptedGaps, Range{From: below + 1, To: lo - 1})
		}
	}
	return nil
}

// check audits [lo, hi) of p against its distinct, sorted letters there.
func (a *auditor) check(ctx context.Context, tbl Table, p *PartitionReport, lo, hi int64, letters []int64) error {
	rowsAt, err := tbl.RowsAt(ctx, p.Topic, p.Partition, letters)
	if err != nil {
		return err
	}
	// both: the dead-lettered offsets that have rows, ascending.
	both := slices.Sorted(maps.Keys(rowsAt))
	drilled := 0
	for wlo := lo; wlo < hi; {
		whi := min(wlo-wlo%a.width+a.window, hi)
		stats, err := tbl.Buckets(ctx, p.Topic, p.Partition, wlo, whi, a.width)
		if err != nil {
			return err
		}
		byBucket := make(map[int64]BucketStats, len(stats))
		for _, st := range stats {
			byBucket[st.Bucket] = st
		}
		for b := wlo / a.width; b*a.width < whi; b++ {
			blo, bhi := bucketSpan(b, a.width, wlo, whi)
			st := byBucket[b]
			bothIn := slice(both, blo, bhi)
			v := judge(bhi-blo, countIn(letters, blo, bhi), st, int64(len(bothIn)))
			p.Rows += st.Rows
			p.MissingOffsets += v.Missing
			p.DuplicateRows += v.Extra
			p.BothOffsets += v.Both
			if v.Clean() {
				continue
			}
			if drilled < a.maxDrill {
				drilled++
				if err := a.drill(ctx, tbl, p, blo, bhi, slice(letters, blo, bhi)); err != nil {
					return err
				}
				continue
			}
			// Over the cap: the counts above are exact; say where, as
			// far as is known without reading the bucket's offsets.
			p.Undrilled.AddRange(blo, bhi-1, 0)
			for _, o := range bothIn {
				p.both(a.replayedOK).Add(o, 0)
			}
		}
		wlo = whi
	}
	return nil
}

// drill lists the defects of the bucket [blo, bhi), whose dead-lettered
// offsets are letters, from its stored offsets.
func (a *auditor) drill(ctx context.Context, tbl Table, p *PartitionReport, blo, bhi int64, letters []int64) error {
	next := blo // offsets below next are classified
	li := 0     // letters[:li] are below next
	// gapsTo classifies [next, to), where nothing is stored: a gap
	// except where a letter is.
	gapsTo := func(to int64) {
		for next < to {
			for li < len(letters) && letters[li] < next {
				li++
			}
			if li < len(letters) && letters[li] == next {
				next++
				continue
			}
			end := to
			if li < len(letters) && letters[li] < to {
				end = letters[li]
			}
			p.Gaps.AddRange(next, end-1, 0)
			next = end
		}
	}
	err := tbl.Offsets(ctx, p.Topic, p.Partition, blo, bhi, func(o int64, rows uint64) {
		if o < next || o >= bhi {
			return // not in ascending order inside the bucket: not ours to trust
		}
		gapsTo(o)
		for li < len(letters) && letters[li] < o {
			li++
		}
		if li < len(letters) && letters[li] == o {
			p.both(a.replayedOK).Add(o, 0)
		}
		if rows > 1 {
			p.Duplicates.Add(o, rows-1)
		}
		next = o + 1
	})
	if err != nil {
		return err
	}
	gapsTo(bhi)
	return nil
}

// lastBelow is the highest offset stored below lo, -1 when none is. It
// looks back in windows doubling from one bucket, so what it reads is
// about the distance from lo to that offset, not the partition's history.
func (a *auditor) lastBelow(ctx context.Context, tbl Table, topic string, partition int32, lo int64) (int64, error) {
	for w := a.width; ; w *= 2 {
		from := max(lo-w, 0)
		n, _, last, err := tbl.Span(ctx, topic, partition, from, lo)
		if err != nil {
			return 0, err
		}
		if n > 0 {
			return last, nil
		}
		if from == 0 {
			return -1, nil
		}
	}
}

// slice is the part of sorted in [from, to).
func slice(sorted []int64, from, to int64) []int64 {
	i := sort.Search(len(sorted), func(i int) bool { return sorted[i] >= from })
	j := sort.Search(len(sorted), func(i int) bool { return sorted[i] >= to })
	return sorted[i:j]
}
