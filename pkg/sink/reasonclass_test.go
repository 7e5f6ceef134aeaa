package sink

import (
	"fmt"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/sluice-etl/sluice/pkg/record"
)

// The classes of the load stage's conversion failures, from the errors the
// column conversions make (record.Failure.ReasonClass derives them from
// the reason's text, which Prepare writes as "column NAME (TYPE): err").
func TestReasonClassOfConversionFailures(t *testing.T) {
	dec18 := decimalIn(18, 2)
	dt := timeIn(time.Unix(0, 0), time.Unix(1<<32, 0))
	u8 := intIn[uint8](0, 255)
	enum := enumIn([]string{"CREATED", "CONFIRMED"})
	errOf := func(_ any, err error) error { return err }
	for _, c := range []struct {
		err  error
		want string
	}{
		{errOf(dec18(decimal.RequireFromString("1000000000000000000"))), record.ReasonUnrepresentable},
		{errOf(dec18(decimal.RequireFromString("1.005"))), record.ReasonUnrepresentable},
		{errOf(dt(time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC))), record.ReasonUnrepresentable},
		{errOf(u8(int64(300))), record.ReasonUnrepresentable},
		{errOf(enum("SHIPPED")), record.ReasonUnrepresentable},
		{errOf(dec18("12.00")), record.ReasonInvalidValue},
		{errOf(dt("2026-01-01")), record.ReasonInvalidValue},
		{errOf(toString(5)), record.ReasonInvalidValue},
		{errOf(stringsIn([]any{"a", 1})), record.ReasonInvalidValue},
	} {
		if c.err == nil {
			t.Fatalf("no error for the case wanting %s", c.want)
		}
		f := record.Failure{Stage: record.StageLoad, Reason: fmt.Sprintf("column x (T): %v", c.err)}
		if got := f.ReasonClass(); got != c.want {
			t.Errorf("reason %q: class %q, want %q", f.Reason, got, c.want)
		}
	}
}
