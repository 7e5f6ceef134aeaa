package service

import (
	"github.com/sluice-etl/sluice/pkg/decode"
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
