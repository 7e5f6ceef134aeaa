package transform

import (
	"context"
	"errors"
	"fmt"

	"github.com/sluice-etl/sluice/pkg/record"
	"github.com/sluice-etl/sluice/pkg/refdata"
)

func init() {
	Register("customer", newCustomer)
}

// The columns customer writes, fixed by the target tables' contract.
const (
	colCustomerName    = "customer_name"
	colCustomerCountry = "customer_country"
	colCustomerSegment = "customer_segment"
)

// customerFound is a private row key, not a column: true when the customer
// join hit, false when it missed. fraud reads it (UNKNOWN_CUSTOMER,
// COUNTRY_MISMATCH); the sink ignores keys that are not columns of its
// table, so it is never loaded.
const customerFound = "__customer_found"

// customer joins the row's customer_id against the customers reference
// table (DESIGN.md, "Reference data"). A hit writes the customer's name,
// country and segment; a miss, including a null customer_id and a customer
// deleted by a tombstone (it is simply absent from the Store), loads the
// row with the three columns NULL. No row fails here.
//
// The join reads the Store as it is when the batch is transformed: a
// customer created after the event but before the batch is joined; one
// deleted in between is a miss. A miss is only final when the Store is
// current: at the batch's first miss Apply asks refdata's
// Store.AwaitCurrent, and while the follower is failing or behind it
// returns that error for the whole batch (the worker retries it) rather
// than load NULLs (and UNKNOWN_CUSTOMER) for a customer on its way.
//
// Safe for concurrent use: it holds no state beyond the Store.
type customer struct {
	store *refdata.Store
	key   string   // field read
	read  cellRead // key on the columnar path
}

func newCustomer(env Env) (Transform, error) {
	if env.Store == nil {
		return nil, errors.New("needs the reference data (customers and FX rates), but none is loaded")
	}
	if err := needSchema(env); err != nil {
		return nil, err
	}
	key, err := customerIDField(env)
	if err != nil {
		return nil, err
	}
	if err := notInSchema(env.Schema, colCustomerName, colCustomerCountry, colCustomerSegment); err != nil {
		return nil, err
	}
	return &customer{store: env.Store, key: key, read: readOf(env.Schema, key, record.CellString)}, nil
}

func (c *customer) Outputs() []string {
	return []string{colCustomerName, colCustomerCountry, colCustomerSegment}
}

// Apply joins every good row of b. It never fails a row. Its only error
// wraps refdata.ErrNotCurrent (or is ctx's): a customer missed while the
// reference data could not be confirmed current; the batch is to be
// retried.
func (c *customer) Apply(ctx context.Context, b *record.Batch) error {
	current := false // the Store was confirmed current after a miss
	for i := range b.Items {
		it := &b.Items[i]
		if it.Failed != nil {
			continue
		}
		row := it.Row
		// The schema says string; a null (nullable field) is no string.
		id, ok := row[c.key].(string)
		cu, ok, err := c.lookup(ctx, b, id, ok, &current)
		if err != nil {
			return err
		}
		if !ok {
			row[colCustomerName], row[colCustomerCountry], row[colCustomerSegment] = nil, nil, nil
			row[customerFound] = false
			continue
		}
		row[colCustomerName], row[colCustomerCountry], row[colCustomerSegment] = cu.Name, cu.Country, cu.Segment
		row[customerFound] = true
	}
	return nil
}

// lookup joins customer id (has: the row has one; a null is a miss, and
// final: no reference record can fill it). At the batch's first miss
// (*current false) it waits for the Store to be current and looks again:
// the customer may have arrived meanwhile; the error is that wait's.
func (c *customer) lookup(ctx context.Context, b *record.Batch, id string, has bool, current *bool) (refdata.Customer, bool, error) {
	if !has {
		return refdata.Customer{}, false, nil
	}
	cu, ok := c.store.Customer(id)
	if !ok && !*current {
		if err := c.store.AwaitCurrent(ctx, refdata.Customers); err != nil {
			return cu, false, fmt.Errorf("customer: %s[%d] %d..%d: %w", b.Topic, b.Partition, b.First, b.Last, err)
		}
		*current = true
		cu, ok = c.store.Customer(id)
	}
	return cu, ok, nil
}

// Needs is nil: customer reads only columns (stage.ColumnTransform).
func (c *customer) Needs() []string { return nil }

// ApplyBlock is Apply on a batch whose rows are in its Block: the same
// join, the same NULLs on a miss, the same AwaitCurrent at the first miss;
// the join's result goes to the block's marks (customerFound: markFound
// or markMissed), which fraud reads and nothing loads. Its errors are
// Apply's, and one more: the block's table cannot serve the key field (see
// columns.go). A name its column cannot hold fails the row at stage load,
// as Prepare would.
func (c *customer) ApplyBlock(ctx context.Context, b *record.Batch) error {
	blk := b.Block
	key, err := c.read.column(blk)
	if err != nil {
		return fmt.Errorf("customer: %s[%d] %d..%d: %w", b.Topic, b.Partition, b.First, b.Last, err)
	}
	name, country, segment := blk.Column(colCustomerName), blk.Column(colCustomerCountry), blk.Column(colCustomerSegment)
	marks := blk.Marks(customerFound)
	current := false
	for i := range b.Items {
		it := &b.Items[i]
		if it.Failed != nil {
			continue
		}
		r := b.Base + i
		id, ok := blk.String(key, r)
		cu, ok, err := c.lookup(ctx, b, id, ok, &current)
		if err != nil {
			return err
		}
		var errs [3]error
		if ok {
			marks[r] = markFound
			errs = [3]error{blk.SetString(name, r, cu.Name), blk.SetString(country, r, cu.Country), blk.SetString(segment, r, cu.Segment)}
		} else {
			marks[r] = markMissed
			errs = [3]error{blk.SetNull(name, r), blk.SetNull(country, r), blk.SetNull(segment, r)}
		}
		if err := firstInTable([]int{name, country, segment}, errs[:]); err != nil {
			it.Fail(record.StageLoad, err.Error())
		}
	}
	return nil
}
