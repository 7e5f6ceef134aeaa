package transform

import (
	"fmt"
	"slices"
	"strings"

	"github.com/sluice-etl/sluice/pkg/decode"
)

// Field resolution shared by the enrichment transforms (currency, customer,
// fraud): a configured name (pipelines.<n>.fields.<key>) must be a field of
// the pipeline's schema; an unset one falls back to the first usual
// e-commerce name the schema has. Everything is decided at build time, so
// a pipeline whose schema does not fit fails at start-up (exit code 2), not
// on its first batch.

// Usual names, in order of preference.
var (
	defaultAmount          = []string{"total", "amount"}
	defaultCurrency        = []string{"currency"}
	defaultTime            = []string{"created_at", "event_time"}
	defaultCustomerID      = []string{"customer_id"}
	defaultShippingCountry = []string{"shipping_country"}
)

const (
	defaultRateColumn = "fx_rate"
	// defaultAmountBaseColumn is used by fraud when the schema has no amount
	// to derive <amount>_base from.
	defaultAmountBaseColumn = "total_base"
)

// needSchema fails the build of a transform that reads fields when the
// pipeline's schema is unknown.
func needSchema(env Env) error {
	if env.Schema == nil {
		return fmt.Errorf("needs the pipeline's schema to resolve its fields")
	}
	return nil
}

// pickField resolves the field read for fields.<key>: the configured name,
// else the first of defaults present in the schema. ok checks its type and
// returns what was wanted ("a decimal", ...) when the type does not fit.
func pickField(s *decode.Schema, key, configured string, defaults []string, ok func(*decode.Type) (string, bool)) (string, error) {
	name := configured
	if name == "" {
		for _, d := range defaults {
			if _, found := s.Field(d); found {
				name = d
				break
			}
		}
		if name == "" {
			return "", fmt.Errorf("schema %s has no field %s; name one with fields.%s",
				s.Name, strings.Join(defaults, " or "), key)
		}
	}
	f, found := s.Field(name)
	if !found {
		return "", fmt.Errorf("fields.%s: %q is not a field of schema %s", key, name, s.Name)
	}
	if want, fits := ok(f.Type); !fits {
		return "", fmt.Errorf("fields.%s: field %q is %s, want %s", key, name, f.Type, want)
	}
	return name, nil
}

func isDecimal(t *decode.Type) (string, bool) {
	return "a decimal", t.Logical == decode.LogicalDecimal
}

func isString(t *decode.Type) (string, bool) {
	return "a string or enum", (t.Kind == decode.KindString || t.Kind == decode.KindEnum) &&
		(t.Logical == decode.LogicalNone || t.Logical == decode.LogicalUUID)
}

// isTime accepts the logical types the decoders turn into time.Time.
func isTime(t *decode.Type) (string, bool) {
	switch t.Logical {
	case decode.LogicalTimestampMillis, decode.LogicalTimestampMicros, decode.LogicalDate:
		return "", true
	}
	return "a timestamp", false
}

func amountField(env Env) (string, error) {
	return pickField(env.Schema, "amount", env.Fields.Amount, defaultAmount, isDecimal)
}

func timeField(env Env) (string, error) {
	return pickField(env.Schema, "time", env.Fields.Time, defaultTime, isTime)
}

func customerIDField(env Env) (string, error) {
	return pickField(env.Schema, "customer_id", env.Fields.CustomerID, defaultCustomerID, isString)
}

// amountBaseColumn is the converted amount's column: fields.amount_base,
// else <amount>_base.
func amountBaseColumn(env Env, amount string) string {
	if env.Fields.AmountBase != "" {
		return env.Fields.AmountBase
	}
	return amount + "_base"
}

// notInSchema fails when a column a transform writes is also a field of the
// schema: the transform would silently overwrite the event's own value.
func notInSchema(s *decode.Schema, cols ...string) error {
	for i, c := range cols {
		if _, found := s.Field(c); found {
			return fmt.Errorf("column %q is also a field of schema %s; writing it would overwrite the event's value", c, s.Name)
		}
		if slices.Contains(cols[:i], c) {
			return fmt.Errorf("column %q is written twice", c)
		}
	}
	return nil
}

// runsBefore says whether transform dep is listed before the first "self"
// in the pipeline's transforms.
func runsBefore(transforms []string, dep, self string) bool {
	d, s := slices.Index(transforms, dep), slices.Index(transforms, self)
	return d >= 0 && s >= 0 && d < s
}
