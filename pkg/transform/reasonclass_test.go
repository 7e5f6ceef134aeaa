package transform

import (
	"testing"

	"github.com/sluice-etl/sluice/pkg/record"
)

// The classes of the transforms' per-row failures, from the reasons they
// write (record.Failure.ReasonClass derives them from the text).
func TestReasonClassOfTransformFailures(t *testing.T) {
	store := storeWith(eurHistory)
	store.PutRate("JPY", ms("2026-01-01T00:00:00Z"), dec("99999999999.00000000"))
	cur := newCurrencyT(t, store)
	noTime := order("EUR", "1.00", "2026-01-02T00:00:00Z")
	delete(noTime, "created_at")
	b := batchOf(0,
		order("XTS", "5.00", "2026-01-02T00:00:00Z"),          // no rate
		order("JPY", "9999999999.00", "2026-01-02T00:00:00Z"), // overflows Decimal(18,2)
		noTime, // no timestamp to look the rate up at
		order("EUR", "10.00", "2026-01-02T00:00:00Z"), // converts
	)
	apply(t, b, cur)
	items := build(t, []string{"order_items"}, Env{Schema: loadSchema(t, "order")})[0]
	qb := batchOf(0, record.Row{"items": []any{map[string]any{"sku": "a", "quantity": int32(0)}}})
	apply(t, qb, items)

	for _, c := range []struct {
		it   record.Item
		want string
	}{
		{b.Items[0], record.ReasonNoFxRate},
		{b.Items[1], record.ReasonUnrepresentable},
		{b.Items[2], record.ReasonInvalidValue},
		{qb.Items[0], record.ReasonInvalidValue},
	} {
		f := c.it.Failed
		if f == nil || f.Stage != record.StageTransform {
			t.Errorf("offset %d: Failed = %+v, want a transform failure", c.it.Rec.Offset, f)
			continue
		}
		if got := f.ReasonClass(); got != c.want {
			t.Errorf("reason %q: class %q, want %q", f.Reason, got, c.want)
		}
	}
	if b.Items[3].Failed != nil {
		t.Errorf("EUR failed: %+v", b.Items[3].Failed)
	}
}
