package pipeline

import (
	"errors"

	"github.com/sluice-etl/sluice/pkg/sink"
)

// This file is the one classification of the errors a worker meets, and
// so of what it does about them. Each step of a batch (decode, transform,
// dead letters, fence, the stored-offsets read, the INSERT) reports its
// errors; classify says which of four things they mean. There is no
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
	// classFenced: the group refused this member's commit, or the
	// member's identity changed: another member may own the partition.
	// Never write. While the worker stops, give the batch up (the next
	// owner has it); otherwise retry until the poll loop confirms the
	// assignment or the partition is lost.
	classFenced
)

func (c errClass) String() string {
	switch c {
	case classBadRecord:
		return "bad_record"
	case classSplit:
		return "split"
	case classFenced:
		return "fenced"
	}
	return "retry"
}

// classify says what err means for the worker.
func classify(err error) errClass {
	if errors.Is(err, errFenced) {
		return classFenced
	}
	switch sink.Classify(err) {
	case sink.BadData:
		return classBadRecord
	case sink.Split:
		return classSplit
	}
	return classRetry
}
