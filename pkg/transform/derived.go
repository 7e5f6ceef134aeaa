package transform

import (
	"context"
	"fmt"

	"github.com/sluice-etl/sluice/pkg/record"
)

func init() {
	Register("order_items", func(Env) (Transform, error) {
		return orderItemsT{rowFunc{outputs: []string{"item_count"}, fn: orderItems}}, nil
	})
	Register("payment_status", func(Env) (Transform, error) {
		return rowFunc{outputs: []string{"succeeded"}, fn: paymentStatus}, nil
	})
}

// orderItems derives item_count: the sum of the line items' quantities.
// A negative quantity is not an order line and fails the row.
func orderItems(row record.Row) error {
	items, ok := row["items"].([]any)
	if !ok {
		return fmt.Errorf("order_items: field items is %T, want an array", row["items"])
	}
	var n int64
	for i, e := range items {
		li, ok := e.(map[string]any)
		if !ok {
			return fmt.Errorf("order_items: items[%d] is %T, want a record", i, e)
		}
		q, ok := li["quantity"].(int32)
		if !ok {
			return fmt.Errorf("order_items: items[%d].quantity is %T, want int", i, li["quantity"])
		}
		if q <= 0 {
			return fmt.Errorf("order_items: items[%d].quantity is %d, must be positive", i, q)
		}
		n += int64(q)
	}
	row["item_count"] = n
	return nil
}

// paymentStatus derives succeeded: 1 for AUTHORIZED and CAPTURED, 0 for
// FAILED and REFUNDED (a refund is not a successful payment attempt).
// orderItemsT is order_items on both paths: the row path's orderItems,
// and on a columnar batch the same rules over the quantities the decoder
// listed per row (Block.Ints("items.quantity")).
type orderItemsT struct{ rowFunc }

func (orderItemsT) Needs() []string { return []string{"items.quantity"} }

func (orderItemsT) ApplyBlock(_ context.Context, b *record.Batch) error {
	qs := b.Block.Ints("items.quantity")
	if qs == nil {
		return fmt.Errorf("order_items: the block has no items.quantity list")
	}
	col := b.Block.Column("item_count")
next:
	for i := range b.Items {
		it := &b.Items[i]
		if it.Failed != nil {
			continue
		}
		r := b.Base + i
		var n int64
		for j, q := range qs.Row(r) {
			if q <= 0 {
				it.Fail(record.StageTransform, fmt.Sprintf("order_items: items[%d].quantity is %d, must be positive", j, q))
				continue next
			}
			n += q
		}
		if err := b.Block.SetInt(col, r, n); err != nil {
			it.Fail(record.StageLoad, err.Error())
		}
	}
	return nil
}

func paymentStatus(row record.Row) error {
	st, ok := row["status"].(string)
	if !ok {
		return fmt.Errorf("payment_status: field status is %T, want a string", row["status"])
	}
	switch st {
	case "AUTHORIZED", "CAPTURED":
		row["succeeded"] = int32(1)
	case "FAILED", "REFUNDED":
		row["succeeded"] = int32(0)
	default:
		return fmt.Errorf("payment_status: unknown status %q", st)
	}
	return nil
}
