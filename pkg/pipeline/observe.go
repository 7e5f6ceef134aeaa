package pipeline

import (
	"context"
	"slices"

	"github.com/sluice-etl/sluice/pkg/logx"
	"github.com/sluice-etl/sluice/pkg/record"
)

// This file is what the engine counts beside the work itself, with
// bounded labels: the retries of the workers by operation and error type,
// and the dead letters by the class of their reason.

// retryOps maps the steps a worker retries (the what of retry) to the op
// label of sluice_retries_total, a closed set; a step not listed counts as
// "other".
var retryOps = map[string]string{
	"decode":              "decode",      // the schema registry was unreachable
	"transform":           "transform",   // e.g. the reference data not confirmed current
	"dead-letter produce": "dead_letter", // producing the batch's dead letters (and the fence before)
	"wait for an INSERT of unknown outcome to end": "insert_wait",
	"read the dead letters of the partition":       "resume",
	// load.go's attempt loop: a settle, fence or stored-offsets read that
	// failed, or an INSERT of unknown outcome, then the batch again.
	"load": "load",
}

// RetryOps lists the op label's values, sorted, "other" last, for the
// metrics catalogue.
func RetryOps() []string {
	var out []string
	for _, op := range retryOps {
		if !slices.Contains(out, op) {
			out = append(out, op)
		}
	}
	slices.Sort(out)
	return append(out, "other")
}

func retryOp(what string) string {
	if op, ok := retryOps[what]; ok {
		return op
	}
	return "other"
}

// errorType is the error_type of an error a worker meets: fenced for the
// group's refusals (classify), else logx's class of the error.
func errorType(err error) string {
	if classify(err) == classFenced {
		return logx.TypeFenced
	}
	return logx.ErrorType(err)
}

// retried counts one failed attempt of op that the worker retries.
func (w *worker) retried(op string, err error) {
	w.e.m.Retries.WithLabelValues(w.p.Name, op, errorType(err)).Inc()
}

// countLetters wraps the dead-letter writer so that every letter the
// topic acknowledged is counted by its reason's class. The acknowledgement
// is the one the worker counts sluice_dead_letters_total at, so the two
// series agree.
func (e *Engine) countLetters(d DeadLetters) DeadLetters {
	if d == nil {
		return nil
	}
	if c, ok := d.(countedLetters); ok {
		d = c.DeadLetters
	}
	return countedLetters{DeadLetters: d, m: e.m}
}

type countedLetters struct {
	DeadLetters
	m *Metrics
}

func (c countedLetters) Send(ctx context.Context, b *record.Batch, pos int64, skip func(offset int64) bool, acked func(it *record.Item, at int64, truncated bool)) error {
	return c.DeadLetters.Send(ctx, b, pos, skip, func(it *record.Item, at int64, truncated bool) {
		c.m.DeadLetterReasons.WithLabelValues(b.Pipeline, string(it.Failed.Stage), it.Failed.ReasonClass()).Inc()
		acked(it, at, truncated)
	})
}

// originals is the dead-letter writer's Originals, nil when it has none
// (then a columnar batch keeps its records until it is committed).
func (e *Engine) originals() Originals {
	d := e.opts.DeadLetters
	if c, ok := d.(countedLetters); ok {
		d = c.DeadLetters
	}
	o, _ := d.(Originals)
	return o
}
