package pipeline

import (
	"errors"

	"github.com/sluice-etl/sluice/pkg/sink"
)

// This file is the one classification of the errors a worker meets, and
// so of what it does about them. Each step of a batch (decode, transform,
// dead letters, fence, the stored-offsets read, the INSERT) reports its
// errors; classify says which of seven things they mean. There is no
// "fatal": nothing one partition meets ends the process (a stall is
// visible in /readyz and the metrics; an exit would only move the stall to
// the next owner). Which ClickHouse codes blame the rows is sink.Classify's
// table; which decode errors are outages is decode.ErrUnavailable (the
// stage runner retries those, pkg/stage).

type errClass int

const (
	// classRetry: something the worker depends on failed (ClickHouse,
	// Kafka, the schema registry, the reference data); nothing blames
	// the records. Wait and try the step again. An INSERT that failed
	// this way has an unknown outcome: abandon it first (load.go).
	classRetry errClass = iota
	// classBadRecord: the server rejected a row's content. Bisect down
	// to the rows refused alone and dead-letter those.
	classBadRecord
	// classSplit: the batch's shape is refused (more table partitions
	// than one INSERT may write); no row is to blame. Load it in halves.
	classSplit
	// classMemory: the server ran out of memory for the INSERT; no row
	// is to blame. Some parts may be stored. Load the batch in smaller
	// pieces and cut the partition's next batches smaller (adapt.go);
	// at the floor, retry with backoff.
	classMemory
	// classParts: the table has too many active parts; refused before a
	// part was written (but a view's table refuses after the table's
	// parts). Back off so merges catch up, send the same rows whole, and
	// cut the next batches later rather than smaller (adapt.go).
	classParts
	// classFenced: the group refused this member's commit, or the
	// member's identity changed: another member may own the partition.
	// Never write. While the worker stops, give the batch up (the next
	// owner has it); otherwise retry until the poll loop confirms the
	// assignment or the partition is lost.
	classFenced
	// classShared: the server refused an INSERT that carried other
	// partitions' batches too (combine.go): it answered, so nothing of it
	// runs. Go again at once, the batch alone, whose own refusal is then
	// classified.
	classShared
)

func (c errClass) String() string {
	switch c {
	case classBadRecord:
		return "bad_record"
	case classSplit:
		return "split"
	case classMemory:
		return "memory"
	case classParts:
		return "too_many_parts"
	case classFenced:
		return "fenced"
	case classShared:
		return "shared_refused"
	}
	return "retry"
}

// classify says what err means for the worker.
func classify(err error) errClass {
	if errors.Is(err, errFenced) {
		return classFenced
	}
	if se := (*sharedError)(nil); errors.As(err, &se) && se.refused {
		return classShared
	}
	switch sink.Classify(err) {
	case sink.BadData:
		return classBadRecord
	case sink.Split:
		return classSplit
	case sink.Memory:
		return classMemory
	case sink.TooManyParts:
		return classParts
	}
	return classRetry
}
