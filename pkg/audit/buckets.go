package audit

// Bucket arithmetic: which offsets a bucket of the checked range should
// hold, and whether what ClickHouse counted there proves it clean. Pure
// functions, no I/O.

import "sort"

// BucketStats is what the table holds in one bucket of offsets: the rows
// and the distinct offsets among them.
type BucketStats struct {
	Bucket   int64 // offset / width
	Rows     uint64
	Distinct uint64
}

// bucketSpan is the part of bucket b of the given width inside [lo, hi).
func bucketSpan(b, width, lo, hi int64) (from, to int64) {
	return max(b*width, lo), min((b+1)*width, hi)
}

// countIn is how many of the sorted, distinct offsets lie in [from, to).
func countIn(sorted []int64, from, to int64) int64 {
	i := sort.Search(len(sorted), func(i int) bool { return sorted[i] >= from })
	j := sort.Search(len(sorted), func(i int) bool { return sorted[i] >= to })
	return int64(j - i)
}

// verdict is one bucket's exact counts, derived from its stats, the dead
// letters inside it and the rows stored at those dead-lettered offsets.
type verdict struct {
	// Expected is the offsets of the bucket that must have exactly one
	// row: all but the dead-lettered ones.
	Expected int64
	// Missing is the expected offsets without a row (gaps).
	Missing int64
	// Extra is the rows beyond one per offset, at any offset of the
	// bucket (duplicates).
	Extra uint64
	// Both is the dead-lettered offsets that also have a row.
	Both int64
}

// Clean says the bucket holds every expected offset exactly once and no
// dead-lettered one.
func (v verdict) Clean() bool { return v.Missing == 0 && v.Extra == 0 && v.Both == 0 }

// judge decides a bucket of span offsets, letters of which are dead
// letters, from its stats st and from both: how many of the
// dead-lettered offsets have rows.
//
// Why it is exact: every distinct stored offset that is not dead-lettered
// is one of the Expected offsets (the query is bounded to the bucket), so
// the expected offsets present are st.Distinct - both, the missing ones
// the rest, and every row beyond one per distinct offset is a duplicate. No offset list is needed for the counts; it is needed only
// to say where the defects are.
func judge(span, letters int64, st BucketStats, both int64) verdict {
	v := verdict{Expected: span - letters, Both: both}
	present := int64(st.Distinct) - both
	v.Missing = v.Expected - present
	v.Extra = st.Rows - st.Distinct
	if v.Missing < 0 {
		// Only a table changing under the audit can get here (rows
		// inserted below the committed offset between the queries, e.g.
		// a replay); report what can be proven.
		v.Missing = 0
	}
	return v
}
