package record

import "strings"

// The classes of dead-letter reasons: the reason_class label of
// sluice_dead_letter_reasons_total. A reason is free text (it names the
// field, the value, the currency); its class is one of this fixed set, so
// a dashboard can show why records fail without a series per reason.
const (
	// Decode stage.
	ReasonEmpty           = "empty"             // no bytes, or a tombstone on an event topic
	ReasonTruncated       = "truncated"         // the bytes end inside a field
	ReasonSchemaMismatch  = "schema_mismatch"   // written with another schema (bytes left over, an incompatible writer schema)
	ReasonUnknownSchemaID = "unknown_schema_id" // a Confluent schema id the registry does not know
	ReasonWireFormat      = "wire_format"       // not the Confluent framing (magic byte, header)
	// Transform stage.
	ReasonNoFxRate = "no_fx_rate" // no FX rate for the currency at the event's time
	// Load stage.
	ReasonRejectedByServer = "rejected_by_server" // ClickHouse refused the row in an INSERT of its own
	// Any stage.
	ReasonUnrepresentable = "unrepresentable" // a value the target type cannot hold exactly (overflow, range, scale, enum symbol)
	ReasonInvalidValue    = "invalid_value"   // a value of the wrong type or form
	ReasonOther           = "other"           // a stage outside the three
)

// ReasonClasses lists every class ReasonClass returns.
var ReasonClasses = []string{
	ReasonEmpty, ReasonTruncated, ReasonSchemaMismatch, ReasonUnknownSchemaID, ReasonWireFormat,
	ReasonNoFxRate, ReasonRejectedByServer, ReasonUnrepresentable, ReasonInvalidValue, ReasonOther,
}

// ReasonClass is the class of f: the one its stage gave (FailClass), else
// one derived from the reason's text for the stages that do not give one
// yet (the sink's column conversions, the INSERT bisection; a transform's
// per-row error). Always one of ReasonClasses.
func (f *Failure) ReasonClass() string {
	if f.Class != "" {
		for _, c := range ReasonClasses {
			if c == f.Class {
				return c
			}
		}
	}
	r := f.Reason
	has := func(subs ...string) bool {
		for _, s := range subs {
			if strings.Contains(r, s) {
				return true
			}
		}
		return false
	}
	// The phrases below are the ones the stages' errors use (the decode
	// sentinels, pkg/transform's currency, pkg/sink's conversions and the
	// worker's bisection); TestReasonClassOfRealFailures in pkg/stage
	// checks them against the errors the code makes.
	switch f.Stage {
	case StageDecode:
		switch {
		case has("empty value", "tombstone"):
			return ReasonEmpty
		case has("truncated record"):
			return ReasonTruncated
		case has("unknown schema id"):
			return ReasonUnknownSchemaID
		case has("not Confluent wire format"):
			return ReasonWireFormat
		case has("trailing bytes", "cannot be read as"):
			return ReasonSchemaMismatch
		}
		return ReasonInvalidValue
	case StageTransform:
		switch {
		case has("no FX rate"):
			return ReasonNoFxRate
		case has(unrepresentable...):
			return ReasonUnrepresentable
		}
		return ReasonInvalidValue
	case StageLoad:
		switch {
		case strings.HasPrefix(r, "clickhouse rejected") || strings.HasPrefix(r, "clickhouse refused"):
			return ReasonRejectedByServer
		case has(unrepresentable...):
			return ReasonUnrepresentable
		}
		return ReasonInvalidValue
	}
	return ReasonOther
}

// unrepresentable are the phrases of a value that exists but does not fit
// its target type.
var unrepresentable = []string{"out of range", "overflows", "outside the column's range", "decimal places", "does not fit", "is not a symbol of the column's enum"}
