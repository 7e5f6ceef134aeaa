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

// ColumnDecoder decodes a record straight into a batch's Block (the
// columnar path, decode.ColumnJSON and decode.ColumnAvro): a decode error
// (stage decode) or an error of a value that does not fit its column
// (stage load).
type ColumnDecoder interface {
	Needs() []string
	DecodeInto(value []byte, blk record.Block) (decodeErr, loadErr error)
}

// ContextColumnDecoder is a ColumnDecoder whose decode may wait on what it
// depends on (avro-confluent: the schema registry), the columnar
// counterpart of decode.ContextDecoder: DecodeIntoContext is DecodeInto
// with that wait bounded by ctx. A decodeErr that wraps
// decode.ErrUnavailable says nothing about the record and appended no row
// to blk: Run tries the record again, under its retry.
type ContextColumnDecoder interface {
	ColumnDecoder
	DecodeIntoContext(ctx context.Context, value []byte, blk record.Block) (decodeErr, loadErr error)
}

// ColumnTransform is a transform that also works on a Block.
type ColumnTransform interface {
	Needs() []string
	ApplyBlock(ctx context.Context, b *record.Batch) error
}

// Columnar says whether dec and ts can run on a Block, and the side lists
// the block must hold for them.
func Columnar(dec Decoder, ts []Transform) ([]string, bool) {
	cd, ok := dec.(ColumnDecoder)
	if !ok {
		return nil, false
	}
	have := map[string]bool{}
	for _, n := range cd.Needs() {
		have[n] = true
	}
	for _, t := range ts {
		ct, ok := t.(ColumnTransform)
		if !ok {
			return nil, false
		}
		for _, n := range ct.Needs() {
			if !have[n] {
				return nil, false
			}
		}
	}
	return cd.Needs(), true
}

// Run decodes every item of b and applies ts in order, each step under
// retry. Only the failing step is tried again: a transform that already
// ran is not run twice (transforms may keep state, like fraud velocity).
// It returns false when retry gave up, with b partly processed.
//
// When b has a Block (the caller checked Columnar), the rows go into it,
// with the same retry of a decoder that cannot reach its registry
// (ContextColumnDecoder).
func Run(ctx context.Context, b *record.Batch, dec Decoder, ts []Transform, retry Retry) bool {
	if b.Block != nil {
		return runColumns(ctx, b, dec.(ColumnDecoder), ts, retry)
	}
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
				it.FailClass(record.StageDecode, decodeClass(err), err.Error())
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

func runColumns(ctx context.Context, b *record.Batch, dec ColumnDecoder, ts []Transform, retry Retry) bool {
	cd, _ := dec.(ContextColumnDecoder)
	for i := range b.Items {
		it := &b.Items[i]
		derr, lerr := decodeInto(ctx, dec, cd, it.Rec.Value, b.Block)
		if errors.Is(derr, decode.ErrUnavailable) {
			var ok bool
			if derr, lerr, ok = retryInto(ctx, dec, cd, it.Rec.Value, b.Block, derr, retry); !ok {
				return false
			}
		}
		switch {
		case derr != nil:
			it.FailClass(record.StageDecode, decodeClass(derr), derr.Error())
		case lerr != nil:
			it.Fail(record.StageLoad, lerr.Error())
		}
	}
	for _, t := range ts {
		ct := t.(ColumnTransform)
		if !retry("transform", func() error { return ct.ApplyBlock(ctx, b) }) {
			return false
		}
	}
	return true
}

func decodeInto(ctx context.Context, dec ColumnDecoder, cd ContextColumnDecoder, value []byte, blk record.Block) (error, error) {
	if cd != nil {
		return cd.DecodeIntoContext(ctx, value, blk)
	}
	return dec.DecodeInto(value, blk)
}

// retryInto decodes a record whose decode returned ErrUnavailable (derr,
// the first attempt's) under retry, as the row path retries Decode: the
// failed attempts appended no row. False when retry gave up. (Apart from
// runColumns' loop so that only this rare case builds a closure.)
func retryInto(ctx context.Context, dec ColumnDecoder, cd ContextColumnDecoder, value []byte, blk record.Block, derr error, retry Retry) (decodeErr, loadErr error, ok bool) {
	first := true
	ok = retry("decode", func() error {
		if !first {
			decodeErr, loadErr = decodeInto(ctx, dec, cd, value, blk)
		} else {
			decodeErr, first = derr, false
		}
		if errors.Is(decodeErr, decode.ErrUnavailable) {
			return decodeErr
		}
		return nil
	})
	return decodeErr, loadErr, ok
}

// decodeClass is the dead-letter reason class of a decoder's per-record
// error, by its sentinel (pkg/decode's errors.go).
func decodeClass(err error) string {
	switch {
	case errors.Is(err, decode.ErrEmptyValue), errors.Is(err, decode.ErrTombstone):
		return record.ReasonEmpty
	case errors.Is(err, decode.ErrTruncated):
		return record.ReasonTruncated
	case errors.Is(err, decode.ErrTrailingBytes), errors.Is(err, decode.ErrIncompatibleSchema):
		return record.ReasonSchemaMismatch
	case errors.Is(err, decode.ErrUnknownSchemaID):
		return record.ReasonUnknownSchemaID
	case errors.Is(err, decode.ErrNotConfluent):
		return record.ReasonWireFormat
	}
	return record.ReasonInvalidValue
}
