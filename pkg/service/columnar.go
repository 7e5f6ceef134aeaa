package service

import (
	"context"

	"github.com/sluice-etl/sluice/pkg/decode"
	"github.com/sluice-etl/sluice/pkg/record"
	"github.com/sluice-etl/sluice/pkg/sink"
	"github.com/sluice-etl/sluice/pkg/stage"
	"github.com/sluice-etl/sluice/pkg/transform"
)

// columnDecoder returns the columnar form of a pipeline's decoder (the
// columnar path: decode.ColumnJSON, decode.ColumnAvro) bound to its
// table's columns (column), filling the side lists its columnar
// transforms need, or dec itself when the format or the schema has none.
// Whether a batch then takes the columnar path is decided per pipeline by
// stage.Columnar: every transform must have a columnar form too; the
// decoder's Decode serves the row path otherwise. err is a configuration
// error of the format (as decode.NewFromSchemaWith's).
func columnDecoder(format string, schema *decode.Schema, reg decode.SchemaFetcher, dec decode.Decoder, column func(string) int, ts []transform.Transform) (decode.Decoder, error) {
	var needs []string
	for _, tr := range ts {
		if ct, ok := tr.(stage.ColumnTransform); ok {
			needs = append(needs, ct.Needs()...)
		}
	}
	switch format {
	case decode.FormatJSON:
		if cd, ok := decode.NewColumnJSON(schema, column, needs); ok {
			return cd, nil
		}
	case decode.FormatAvro, decode.FormatAvroConfluent:
		cd, ok, err := decode.NewColumnAvro(format, schema, reg, column, needs)
		if err != nil {
			return nil, err
		}
		if ok {
			return cd, nil
		}
	}
	return dec, nil
}

// servesColumns says (nil) whether table can serve the columnar path of
// dec and ts: each columnar transform reads its fields from the table's
// columns of the same names, and a column of another kind, a missing one
// or a NOT NULL column for a nullable field makes its ApplyBlock fail
// every batch (pkg/transform, columns.go). An empty batch on a block of
// the table asks each of them once, at start-up; the caller then keeps
// the row path, which reads the decoded values instead. Nil, too, when
// the pipeline is not columnar at all.
func servesColumns(ctx context.Context, table *sink.Table, dec decode.Decoder, ts []transform.Transform) error {
	st := make([]stage.Transform, len(ts))
	for i, t := range ts {
		st[i] = t
	}
	needs, ok := stage.Columnar(dec, st)
	if !ok {
		return nil
	}
	bufs := table.NewBuffers()
	defer table.Release(bufs)
	b := &record.Batch{Block: table.Block(bufs, needs)}
	for _, t := range st {
		if err := t.(stage.ColumnTransform).ApplyBlock(ctx, b); err != nil {
			return err
		}
	}
	return nil
}
