package stage_test

import (
	"context"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-etl/sluice/pkg/decode"
	"github.com/sluice-etl/sluice/pkg/record"
	"github.com/sluice-etl/sluice/pkg/registry"
	"github.com/sluice-etl/sluice/pkg/stage"
)

const readerSchema = `{"type":"record","name":"E","fields":[{"name":"id","type":"string"},{"name":"n","type":"long"}]}`

// fetcher is a schema registry that knows one id.
type fetcher map[int32]string

func (f fetcher) SchemaByID(_ context.Context, id int32) (string, error) {
	if s, ok := f[id]; ok {
		return s, nil
	}
	return "", registry.ErrUnknownSchema
}

// TestReasonClassOfRealFailures runs records the decoders refuse through
// Run and checks the class of each dead letter's reason, so the classes
// follow the decoders' errors (record.Failure.ReasonClass).
func TestReasonClassOfRealFailures(t *testing.T) {
	s, err := decode.ParseSchema([]byte(readerSchema))
	if err != nil {
		t.Fatal(err)
	}
	avro, err := decode.NewFromSchema(decode.FormatAvro, s)
	if err != nil {
		t.Fatal(err)
	}
	jsonDec, err := decode.NewFromSchema(decode.FormatJSON, s)
	if err != nil {
		t.Fatal(err)
	}
	// Schema 1 is the reader's; schema 2 has id as an int, which a
	// string cannot be read from.
	reg := fetcher{1: readerSchema, 2: `{"type":"record","name":"E","fields":[{"name":"id","type":"int"},{"name":"n","type":"long"}]}`}
	confluent, err := decode.NewFromSchemaWith(decode.FormatAvroConfluent, s, reg)
	if err != nil {
		t.Fatal(err)
	}
	good := []byte{0x04, 'a', 'b', 0x02} // id "ab", n 1
	framed := func(id byte, body []byte) []byte { return append([]byte{0, 0, 0, 0, id}, body...) }
	for _, c := range []struct {
		name  string
		dec   stage.Decoder
		value []byte
		want  string
	}{
		{"avro empty", avro, []byte{}, record.ReasonEmpty},
		{"avro tombstone", avro, nil, record.ReasonEmpty},
		{"avro truncated", avro, good[:2], record.ReasonTruncated},
		{"avro trailing bytes", avro, append(append([]byte{}, good...), 0x00, 0x00), record.ReasonSchemaMismatch},
		{"json wrong type", jsonDec, []byte(`{"id": 5, "n": 1}`), record.ReasonInvalidValue},
		{"json not json", jsonDec, []byte(`{"id"`), record.ReasonInvalidValue},
		{"confluent no magic", confluent, []byte{1, 2}, record.ReasonWireFormat},
		{"confluent unknown id", confluent, framed(9, good), record.ReasonUnknownSchemaID},
		{"confluent incompatible writer", confluent, framed(2, []byte{0x02, 0x02}), record.ReasonSchemaMismatch},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := &record.Batch{Topic: "t", Items: []record.Item{{Rec: &kgo.Record{Value: c.value}}}}
			retry := func(what string, fn func() error) bool { return fn() == nil }
			if !stage.Run(context.Background(), b, c.dec, nil, retry) {
				t.Fatal("Run gave up")
			}
			f := b.Items[0].Failed
			if f == nil {
				t.Fatalf("%x decoded", c.value)
			}
			if f.Stage != record.StageDecode || f.Class != c.want {
				t.Errorf("failure %+v: class %q, want %q at decode", f, f.Class, c.want)
			}
			// A letter read back from the topic has only its stage and
			// reason headers: the text gives the same class.
			if got := (&record.Failure{Stage: f.Stage, Reason: f.Reason}).ReasonClass(); got != c.want {
				t.Errorf("reason %q alone: class %q, want %q", f.Reason, got, c.want)
			}
		})
	}
	// The control: a good record is not failed.
	b := &record.Batch{Topic: "t", Items: []record.Item{{Rec: &kgo.Record{Value: framed(1, good)}}}}
	if !stage.Run(context.Background(), b, confluent, nil, func(_ string, fn func() error) bool { return fn() == nil }) {
		t.Fatal("Run gave up")
	}
	if b.Items[0].Failed != nil || b.Items[0].Row["id"] != "ab" {
		t.Fatalf("a good record failed: %+v", b.Items[0].Failed)
	}
}
