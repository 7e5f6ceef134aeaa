package audit

// The audit's result, per partition, and its two renderings: a text
// report for people and one JSON document for machines.

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Defect names, as PartitionReport.Defects lists them.
const (
	DefectDuplicates       = "duplicates"
	DefectGaps             = "gaps"
	DefectBoth             = "both"
	DefectDuplicateLetters = "duplicate_letters"
	DefectOutOfRange       = "out_of_range"
	DefectBeyondEnd        = "beyond_end"
)

// Report is the result of one audit.
type Report struct {
	Group    string `json:"group"`
	DLQTopic string `json:"dlq_topic"`
	// DLQMissing says the dead-letter topic does not exist (no letters).
	DLQMissing bool `json:"dlq_missing"`
	// UnattributedLetters are letters whose source headers cannot be
	// read; ForeignLetters are letters of topics no pipeline reads.
	UnattributedLetters int64 `json:"unattributed_letters"`
	ForeignLetters      int64 `json:"foreign_letters"`

	// ReplayedOK: offsets both stored and dead-lettered are reported as
	// replayed, not as a defect.
	ReplayedOK bool `json:"replayed_ok"`

	Partitions []*PartitionReport `json:"partitions"`
	// Defective counts the partitions with a defect; Clean says none has.
	Defective int  `json:"defective_partitions"`
	Clean     bool `json:"clean"`

	BucketWidth int64  `json:"bucket_width"`
	MaxDrill    int    `json:"max_drill"`
	MaxRanges   int    `json:"max_ranges"`
	Elapsed     string `json:"elapsed"`
}

// PartitionReport is one topic-partition's audit. Offsets in ranges are
// inclusive.
type PartitionReport struct {
	Pipeline  string `json:"pipeline"`
	Topic     string `json:"topic"`
	Table     string `json:"table"`
	Partition int32  `json:"partition"`

	LogStart int64 `json:"log_start"`
	// Committed is the group's committed offset, -1 when it has none.
	Committed     int64 `json:"committed"`
	HighWatermark int64 `json:"high_watermark"`
	// Lag is HighWatermark - Committed (- LogStart without a commit).
	Lag int64 `json:"lag"`

	// Checked is the range checked, [log start, committed - 1]; nil when
	// empty. Rows and DeadLetters are the rows and the distinct
	// dead-lettered offsets in it.
	Checked     *Range `json:"checked"`
	Rows        uint64 `json:"rows"`
	DeadLetters int64  `json:"dead_letters"`

	// Exact counts over the checked range: offsets with neither a row
	// nor a letter, rows beyond one per offset, offsets with both.
	MissingOffsets int64  `json:"missing_offsets"`
	DuplicateRows  uint64 `json:"duplicate_rows"`
	BothOffsets    int64  `json:"both_offsets"`

	// Where the defects are: the offsets of every defective bucket
	// drilled into (Extra of Duplicates: rows beyond one). Undrilled
	// holds the defective buckets past the drill cap, whose counts
	// above are exact but whose offsets are not listed.
	Duplicates Ranges `json:"duplicates"`
	Gaps       Ranges `json:"gaps"`
	Both       Ranges `json:"both"`
	// Replayed holds what Both would with Options.ReplayedOK.
	Replayed  Ranges `json:"replayed"`
	Undrilled Ranges `json:"undrilled"`
	// DuplicateLetters are offsets dead-lettered more than once (Extra:
	// letters beyond one).
	DuplicateLetters Ranges `json:"duplicate_letters"`

	// AcceptedGaps are offsets below the log start skipped by the group,
	// as far as derivable (see the package comment); never a defect.
	AcceptedGaps []Range `json:"accepted_gaps"`
	// OutOfRange is set when the committed offset is below the log start.
	OutOfRange *Range `json:"out_of_range"`

	// Pending are the rows at or above the committed offset, and
	// PendingLetters the letters there: loaded, commit pending.
	Pending        Tail  `json:"pending"`
	PendingLetters int64 `json:"pending_letters"`
	// BeyondEnd is set when rows are stored at or above the high
	// watermark: from it to the highest such offset.
	BeyondEnd *Range `json:"beyond_end"`

	Defects []string `json:"defects"`
	Clean   bool     `json:"clean"`
}

// Tail is a count of rows and the range they lie in (nil when none).
type Tail struct {
	Rows  uint64 `json:"rows"`
	Range *Range `json:"range"`
}

func (p *PartitionReport) init(maxRanges int) {
	for _, r := range []*Ranges{&p.Duplicates, &p.Gaps, &p.Both, &p.Replayed, &p.Undrilled, &p.DuplicateLetters} {
		r.Max = maxRanges
	}
}

func (p *PartitionReport) both(replayedOK bool) *Ranges {
	if replayedOK {
		return &p.Replayed
	}
	return &p.Both
}

// end completes p with the high watermark, read after everything else.
func (p *PartitionReport) end(hwm int64) {
	p.HighWatermark = hwm
	if p.Committed >= 0 {
		p.Lag = hwm - p.Committed
	} else {
		p.Lag = hwm - p.LogStart
	}
	if r := p.Pending.Range; r != nil && r.To >= hwm {
		p.BeyondEnd = &Range{From: hwm, To: r.To}
	}
}

// classify names p's defects.
func (p *PartitionReport) classify(replayedOK bool) {
	p.Defects = []string{}
	add := func(cond bool, name string) {
		if cond {
			p.Defects = append(p.Defects, name)
		}
	}
	add(p.DuplicateRows > 0, DefectDuplicates)
	add(p.MissingOffsets > 0, DefectGaps)
	add(p.BothOffsets > 0 && !replayedOK, DefectBoth)
	add(!p.DuplicateLetters.Empty(), DefectDuplicateLetters)
	add(p.OutOfRange != nil, DefectOutOfRange)
	add(p.BeyondEnd != nil, DefectBeyondEnd)
	p.Clean = len(p.Defects) == 0
	if p.AcceptedGaps == nil {
		p.AcceptedGaps = []Range{}
	}
	for _, r := range []*Ranges{&p.Duplicates, &p.Gaps, &p.Both, &p.Replayed, &p.Undrilled, &p.DuplicateLetters} {
		if r.List == nil {
			r.List = []Range{}
		}
	}
}

func (r *Report) finish() {
	r.Defective = 0
	for _, p := range r.Partitions {
		p.classify(r.ReplayedOK)
		if !p.Clean {
			r.Defective++
		}
	}
	r.Clean = r.Defective == 0
	if r.Partitions == nil {
		r.Partitions = []*PartitionReport{}
	}
}

// WriteJSON writes the report as one indented JSON document.
func WriteJSON(w io.Writer, r *Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText writes one line per partition, the defects and notes of each
// partition below the table, and a last line with the verdict.
func WriteText(w io.Writer, r *Report) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PIPELINE\tPARTITION\tLOG START\tCOMMITTED\tEND\tLAG\tROWS\tLETTERS\tDUPLICATES\tGAPS\tBOTH\tPENDING\tSTATUS")
	for _, p := range r.Partitions {
		committed := "-"
		if p.Committed >= 0 {
			committed = fmt.Sprint(p.Committed)
		}
		status := "ok"
		if !p.Clean {
			status = "DEFECT: " + strings.Join(p.Defects, ", ")
		}
		fmt.Fprintf(tw, "%s\t%s[%d]\t%d\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\n",
			p.Pipeline, p.Topic, p.Partition, p.LogStart, committed, p.HighWatermark, p.Lag,
			p.Rows, p.DeadLetters, p.DuplicateRows, p.MissingOffsets, p.BothOffsets, p.Pending.Rows, status)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, p := range r.Partitions {
		where := fmt.Sprintf("%s[%d]", p.Topic, p.Partition)
		line := func(format string, args ...any) {
			fmt.Fprintf(w, "  %s %s\n", where, fmt.Sprintf(format, args...))
		}
		if p.OutOfRange != nil {
			line("committed offset %d is below the log start %d: the group cannot resume (offsets %s are no longer in Kafka)", p.Committed, p.LogStart, p.OutOfRange)
		}
		if p.DuplicateRows > 0 {
			line("duplicates: %d extra row%s%s", p.DuplicateRows, plural(int64(p.DuplicateRows)), at(&p.Duplicates))
		}
		if p.MissingOffsets > 0 {
			line("gaps (neither stored nor dead-lettered): %d offset%s%s", p.MissingOffsets, plural(p.MissingOffsets), at(&p.Gaps))
		}
		if p.BothOffsets > 0 {
			if r.ReplayedOK {
				line("replayed (stored and dead-lettered, accepted): %d offset%s%s", p.BothOffsets, plural(p.BothOffsets), at(&p.Replayed))
			} else {
				line("both stored and dead-lettered: %d offset%s%s", p.BothOffsets, plural(p.BothOffsets), at(&p.Both))
			}
		}
		if !p.Undrilled.Empty() {
			line("not drilled into (over --max-drill; counts above are exact): %s", p.Undrilled.String())
		}
		if !p.DuplicateLetters.Empty() {
			line("dead-lettered more than once: %d offset%s (%d extra letter%s) at %s", p.DuplicateLetters.Offsets, plural(p.DuplicateLetters.Offsets),
				p.DuplicateLetters.Extra, plural(int64(p.DuplicateLetters.Extra)), p.DuplicateLetters.String())
		}
		if p.BeyondEnd != nil {
			line("rows above the log end %d (up to offset %d): not records of this topic (recreated?)", p.HighWatermark, p.BeyondEnd.To)
		}
		for _, g := range p.AcceptedGaps {
			line("accepted gap below the log start (skipped by the group): %s", g)
		}
		if p.Pending.Rows > 0 || p.PendingLetters > 0 {
			s := fmt.Sprintf("pending (loaded, commit pending): %d row%s", p.Pending.Rows, plural(int64(p.Pending.Rows)))
			if p.Pending.Range != nil {
				s += " at " + p.Pending.Range.String()
			}
			if p.PendingLetters > 0 {
				s += fmt.Sprintf(", %d dead letter%s", p.PendingLetters, plural(p.PendingLetters))
			}
			line("%s", s)
		}
	}
	if r.DLQMissing {
		fmt.Fprintf(w, "dead-letter topic %s does not exist: no dead letters\n", r.DLQTopic)
	}
	if r.UnattributedLetters > 0 {
		fmt.Fprintf(w, "%d dead letter%s without readable source headers (not attributed to any partition)\n", r.UnattributedLetters, plural(r.UnattributedLetters))
	}
	verdict := "clean"
	if !r.Clean {
		verdict = fmt.Sprintf("%d defective", r.Defective)
	}
	_, err := fmt.Fprintf(w, "audit: %d partition%s, group %s: %s (%s)\n", len(r.Partitions), plural(int64(len(r.Partitions))), r.Group, verdict, r.Elapsed)
	return err
}

// at renders where the offsets of s are: " at 5, 100-109" when it found
// any; past the drill cap it may have found none.
func at(s *Ranges) string {
	if s.Empty() {
		return ""
	}
	return " at " + s.String()
}
