package record

import "testing"

func TestReasonClass(t *testing.T) {
	for _, c := range []struct {
		f    Failure
		want string
	}{
		// A class the stage gave wins; one outside the set is ignored.
		{Failure{Stage: StageDecode, Reason: "decode: field \"x\": whatever", Class: ReasonTruncated}, ReasonTruncated},
		{Failure{Stage: StageDecode, Reason: "decode: empty value", Class: "made_up"}, ReasonEmpty},
		// Derived from the text, by stage.
		{Failure{Stage: StageDecode, Reason: "decode: tombstone (null value) on an event topic"}, ReasonEmpty},
		{Failure{Stage: StageDecode, Reason: "decode: field \"items\": truncated record"}, ReasonTruncated},
		{Failure{Stage: StageDecode, Reason: "decode: 3 trailing bytes"}, ReasonSchemaMismatch},
		{Failure{Stage: StageDecode, Reason: "decode: unknown schema id 7"}, ReasonUnknownSchemaID},
		{Failure{Stage: StageDecode, Reason: "decode: not Confluent wire format: 2 bytes"}, ReasonWireFormat},
		{Failure{Stage: StageDecode, Reason: "decode: field \"total\": number is not a value of bytes"}, ReasonInvalidValue},
		{Failure{Stage: StageTransform, Reason: "currency: no FX rate for XTS at 2026-01-01T00:00:00.000Z"}, ReasonNoFxRate},
		{Failure{Stage: StageTransform, Reason: "currency: total_base 1e20 overflows Decimal(18,2) (total 1e20 EUR)"}, ReasonUnrepresentable},
		{Failure{Stage: StageTransform, Reason: "order_items: items[0].quantity is 0, must be positive"}, ReasonInvalidValue},
		// The worker's and replay's bisection (pkg/pipeline/load.go, pkg/dlq/replay.go).
		{Failure{Stage: StageLoad, Reason: "clickhouse refused an INSERT of this row alone: code: 53, message: Type mismatch"}, ReasonRejectedByServer},
		{Failure{Stage: StageLoad, Reason: "clickhouse rejected the row: code: 27, message: Cannot parse input"}, ReasonRejectedByServer},
		{Failure{Stage: StageLoad, Reason: "column total (Decimal(18, 2)): 1e30 overflows Decimal(18, 2)"}, ReasonUnrepresentable},
		{Failure{Stage: StageLoad, Reason: "column created_at (DateTime): want a timestamp, got string"}, ReasonInvalidValue},
		{Failure{Stage: "elsewhere", Reason: "x"}, ReasonOther},
	} {
		if got := c.f.ReasonClass(); got != c.want {
			t.Errorf("%+v: ReasonClass() = %q, want %q", c.f, got, c.want)
		}
	}
}

func TestFailClassKeepsTheFirstFailure(t *testing.T) {
	var it Item
	it.FailClass(StageDecode, ReasonTruncated, "first")
	it.FailClass(StageLoad, ReasonUnrepresentable, "second")
	it.Fail(StageTransform, "third")
	if f := it.Failed; f.Stage != StageDecode || f.Reason != "first" || f.ReasonClass() != ReasonTruncated {
		t.Errorf("Failed = %+v, want the first failure", f)
	}
}
