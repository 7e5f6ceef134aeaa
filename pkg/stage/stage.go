// Package stage runs a batch through a pipeline's decode and transform
// stages: the one sequence that the partition workers (pkg/pipeline) and
// `sluice dlq replay` (pkg/dlq) share, so that a replayed record is
// converted exactly as the daemon converts it.
//
// Place in the flow: after the batcher, before the sink's Prepare. Run
// marks single records failed (a value that does not decode, a row a
// transform cannot handle); what fails the step as a whole — a decoder
// that cannot reach what it depends on (decode.ErrUnavailable: the schema
// registry) or a transform's own error (reference data not current) — is
// never a record's fault, so it is never a dead letter: the caller's retry
// decides whether the step is tried again.
package stage

import (
	"context"
	"errors"

	"github.com/sluice-etl/sluice/pkg/decode"
	"github.com/sluice-etl/sluice/pkg/record"
)

// Decoder turns one record value into a Row (pkg/pipeline's Decoder). A
// decoder that also implements decode.ContextDecoder is given the batch's
// context.
type Decoder interface {
	Decode(value []byte) (record.Row, error)
}

// Transform works on a whole batch and may mark single items failed; an
// error fails the step (pkg/transform's Transform).
type Transform interface {
	Apply(ctx context.Context, b *record.Batch) error
}

// Retry runs fn until it succeeds or the caller gives up, and says
// whether it succeeded; what names the step for the caller's logs and
// errors. The worker's retries until it is stopped; replay's a few times.
type Retry func(what string, fn func() error) bool

// Run decodes every item of b and applies ts in order, each step under
// retry. Only the failing step is tried again: a transform that already
// ran is not run twice (transforms may keep state, like fraud velocity).
// It returns false when retry gave up, with b partly processed.
func Run(ctx context.Context, b *record.Batch, dec Decoder, ts []Transform, retry Retry) bool {
	cd, _ := dec.(decode.ContextDecoder)
	for i := range b.Items {
		it := &b.Items[i]
		if !retry("decode", func() error {
			var row record.Row
			var err error
			if cd != nil {
				row, err = cd.DecodeContext(ctx, it.Rec.Value)
			} else {
				row, err = dec.Decode(it.Rec.Value)
			}
			if errors.Is(err, decode.ErrUnavailable) {
				return err
			}
			if err != nil {
				it.Fail(record.StageDecode, err.Error())
				return nil
			}
			it.Row = row
			return nil
		}) {
			return false
		}
	}
	for _, t := range ts {
		if !retry("transform", func() error { return t.Apply(ctx, b) }) {
			return false
		}
	}
	return true
}
