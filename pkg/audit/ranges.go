package audit

// Offset ranges: how the audit reports sets of offsets (duplicates, gaps,
// offsets both stored and dead-lettered) without holding them. Offsets are
// added in ascending order; adjacent ones merge into one range; past a cap
// only the number of further ranges is kept.

import (
	"fmt"
	"strings"
)

// Range is the offsets From..To, both inclusive.
type Range struct {
	From int64 `json:"from"`
	To   int64 `json:"to"`
	// Extra is, for duplicates, the rows beyond one per offset in the
	// range; for duplicate dead letters, the letters beyond one.
	Extra uint64 `json:"extra,omitempty"`
}

// Len is the number of offsets in r.
func (r Range) Len() int64 { return r.To - r.From + 1 }

func (r Range) String() string {
	if r.From == r.To {
		return fmt.Sprintf("%d", r.From)
	}
	return fmt.Sprintf("%d-%d", r.From, r.To)
}

// Ranges collects offsets, added in ascending order, as merged ranges. It
// keeps the first Max ranges (0: DefaultMaxRanges) and, past them, only
// counts: memory stays bounded by Max whatever the number of offsets.
// The zero value is ready to use.
type Ranges struct {
	// Offsets is how many offsets were added, kept in List or not.
	Offsets int64 `json:"offsets"`
	// Extra is the sum of the Extra of every offset added.
	Extra uint64 `json:"extra,omitempty"`
	// List holds the first ranges, at most Max of them.
	List []Range `json:"ranges"`
	// More is the number of ranges after List that were not kept.
	More int64 `json:"more_ranges"`

	// Max caps List; 0 means DefaultMaxRanges.
	Max int `json:"-"`
	// last is the highest offset added, valid when Offsets > 0.
	last int64
}

// DefaultMaxRanges is how many ranges of one kind a partition's report
// keeps when no cap is given.
const DefaultMaxRanges = 100

// Add adds one offset carrying extra (rows or letters beyond one).
func (s *Ranges) Add(offset int64, extra uint64) { s.AddRange(offset, offset, extra) }

// AddRange adds the offsets from..to (inclusive), carrying extra in total.
// from must be above every offset added before; a range that does not
// keep that order is a bug of the caller and panics, because silently
// mis-merged ranges would be a wrong audit.
func (s *Ranges) AddRange(from, to int64, extra uint64) {
	if to < from {
		return
	}
	if s.Offsets > 0 && from <= s.last {
		panic(fmt.Sprintf("audit: offsets out of order: %d..%d after %d", from, to, s.last))
	}
	adjacent := s.Offsets > 0 && from == s.last+1
	s.Offsets += to - from + 1
	s.Extra += extra
	s.last = to
	switch {
	case adjacent && s.More == 0:
		// Extends the last kept range, even when List is full: a range
		// is never cut at the cap.
		r := &s.List[len(s.List)-1]
		r.To = to
		r.Extra += extra
	case adjacent:
		// Extends a range beyond the cap: already counted in More.
	case len(s.List) < s.max():
		s.List = append(s.List, Range{From: from, To: to, Extra: extra})
	default:
		s.More++
	}
}

func (s *Ranges) max() int {
	if s.Max > 0 {
		return s.Max
	}
	return DefaultMaxRanges
}

// Empty says nothing was added.
func (s *Ranges) Empty() bool { return s.Offsets == 0 }

// String lists the kept ranges, comma separated, and how many more there
// are: "5, 100-109 and 3 more ranges".
func (s *Ranges) String() string {
	parts := make([]string, len(s.List))
	for i, r := range s.List {
		parts[i] = r.String()
	}
	out := strings.Join(parts, ", ")
	if s.More > 0 {
		out += fmt.Sprintf(" and %d more range%s", s.More, plural(s.More))
	}
	return out
}

func plural(n int64) string {
	if n == 1 {
		return ""
	}
	return "s"
}
