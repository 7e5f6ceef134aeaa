package transform

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/shopspring/decimal"

	"github.com/sluice-etl/sluice/pkg/record"
)

func init() {
	Register("fraud", newFraud)
}

// The columns fraud writes.
const (
	colFraudScore   = "fraud_score"
	colFraudReasons = "fraud_reasons"
)

// The rules, in the order their names appear in fraud_reasons.
const (
	ruleHighAmount = iota
	ruleCountryMismatch
	ruleUnknownCustomer
	ruleVelocity
	numRules
)

var ruleNames = [numRules]string{"HIGH_AMOUNT", "COUNTRY_MISMATCH", "UNKNOWN_CUSTOMER", "VELOCITY"}

// maxScore is the largest fraud_score the column (UInt16) holds.
const maxScore = math.MaxUint16

// fraud scores each row by the rules of DESIGN.md:
//
//	HIGH_AMOUNT       <amount>_base (written by currency) >= fraud.high_amount;
//	                  a NULL amount does not fire
//	COUNTRY_MISMATCH  the customer is known and shipping_country differs
//	                  from the customer's country (exact comparison)
//	UNKNOWN_CUSTOMER  the customer join missed
//	VELOCITY          the customer has more than fraud.velocity_max_orders
//	                  orders in (t - fraud.velocity_window, t], t this
//	                  order's event time, this order included (velocity.go)
//
// fraud_score is the sum of the fired rules' weights (capped at 65535, the
// column being UInt16), fraud_reasons their names in the order above, an
// empty array when none fires. A rule whose weight is 0 is off: it neither
// scores nor is named, and what it reads is not required.
//
// fraud needs the transforms that write what it reads to run before it;
// the build checks the pipeline's list (Env.Transforms): customer for
// COUNTRY_MISMATCH and UNKNOWN_CUSTOMER, currency for HIGH_AMOUNT unless the
// schema itself has the <amount>_base field.
//
// VELOCITY keeps state per partition (see velocity.go for its bounds and
// what a rebalance does to it); fraud implements PartitionState so the
// engine can drop a revoked or lost partition's state. Orders of rows that
// failed an earlier stage are not counted: they are dead-lettered, not
// loaded. Apply never fails a row and never returns an error, so a retried
// step cannot leave the state half-updated.
//
// Safe for concurrent use on batches of different partitions.
type fraud struct {
	on [numRules]bool

	highAmount decimal.Decimal
	amountBase string // HIGH_AMOUNT reads it
	shipping   string // COUNTRY_MISMATCH reads it
	customerID string // VELOCITY reads them
	time       string
	vel        *velocity

	// Indexed by the bit set of fired rules: the row values (int64 and
	// []string), boxed once at build so that scoring a row allocates
	// nothing. The reason slices are shared between rows and must be
	// treated as read-only; their capacity equals their length, so an
	// append copies.
	scores  [1 << numRules]any
	reasons [1 << numRules]any
	// The same unboxed, for the columnar path.
	scoreVals  [1 << numRules]int64
	reasonVals [1 << numRules][]string

	// The columnar path: what each rule reads (columns.go), and the
	// threshold unscaled when it fits an int64 (highOK).
	amountRead, shippingRead, countryRead, idRead, timeRead cellRead
	highUnscaled                                            int64
	highScale                                               int32
	highOK                                                  bool
}

func newFraud(env Env) (Transform, error) {
	if err := needSchema(env); err != nil {
		return nil, err
	}
	cfg := env.Fraud
	weights := [numRules]int{cfg.HighAmountWeight, cfg.CountryMismatchWeight, cfg.UnknownCustomerWeight, cfg.VelocityWeight}
	f := &fraud{}
	for r, w := range weights {
		if w < 0 {
			return nil, fmt.Errorf("%s weight is %d, must not be negative", ruleNames[r], w)
		}
		f.on[r] = w > 0
	}

	if f.on[ruleHighAmount] {
		if err := f.buildHighAmount(env); err != nil {
			return nil, err
		}
	}
	if (f.on[ruleCountryMismatch] || f.on[ruleUnknownCustomer]) && !runsBefore(env.Transforms, "customer", "fraud") {
		return nil, errors.New(`COUNTRY_MISMATCH and UNKNOWN_CUSTOMER read the customer join: list "customer" before "fraud" in transforms (or set their weights to 0)`)
	}
	if f.on[ruleCountryMismatch] {
		var err error
		if f.shipping, err = pickField(env.Schema, "shipping_country", env.Fields.ShippingCountry, defaultShippingCountry, isString); err != nil {
			return nil, fmt.Errorf("COUNTRY_MISMATCH: %w", err)
		}
	}
	if f.on[ruleVelocity] {
		if err := f.buildVelocity(env); err != nil {
			return nil, err
		}
	}
	if err := notInSchema(env.Schema, colFraudScore, colFraudReasons); err != nil {
		return nil, err
	}

	for mask := range 1 << numRules {
		score, names := 0, []string{}
		for r := range numRules {
			if mask&(1<<r) != 0 {
				score += weights[r]
				names = append(names, ruleNames[r])
			}
		}
		f.scores[mask] = int64(min(score, maxScore))
		f.reasons[mask] = names[:len(names):len(names)]
		f.scoreVals[mask] = int64(min(score, maxScore))
		f.reasonVals[mask] = names[:len(names):len(names)]
	}
	f.countryRead = cellRead{name: colCustomerCountry, kind: record.CellString} // read only when the join hit, never NULL then
	if f.on[ruleCountryMismatch] {
		f.shippingRead = readOf(env.Schema, f.shipping, record.CellString)
	}
	if f.on[ruleVelocity] {
		f.idRead = readOf(env.Schema, f.customerID, record.CellString)
		f.timeRead = readOf(env.Schema, f.time, record.CellTime)
	}
	return f, nil
}

func (f *fraud) buildHighAmount(env Env) error {
	d, err := decimal.NewFromString(env.Fraud.HighAmount)
	if err != nil {
		return fmt.Errorf("HIGH_AMOUNT: threshold %q is not a decimal", env.Fraud.HighAmount)
	}
	// At scale 2, like the column, comparing needs no rescaling; only when
	// that is exact.
	if d.Equal(d.Truncate(baseScale)) {
		d = d.Round(baseScale)
	}
	f.highAmount = d
	if d.Exponent() <= 0 && d.NumDigits() <= 18 {
		f.highUnscaled, f.highScale, f.highOK = d.CoefficientInt64(), -d.Exponent(), true
	}

	f.amountBase = defaultAmountBaseColumn
	if env.Fields.AmountBase != "" {
		f.amountBase = env.Fields.AmountBase
	} else if amount, err := amountField(env); err == nil {
		f.amountBase = amountBaseColumn(env, amount)
	}
	// On the columnar path the column must hold NULLs when the value can
	// be NULL: the field's own, or currency's for a NULL amount.
	f.amountRead = readOf(env.Schema, f.amountBase, record.CellDecimal)
	if _, ok := env.Schema.Field(f.amountBase); !ok {
		if amount, err := amountField(env); err == nil {
			f.amountRead.nullable = readOf(env.Schema, amount, record.CellDecimal).nullable
		}
	}
	if runsBefore(env.Transforms, "currency", "fraud") {
		return nil
	}
	if field, ok := env.Schema.Field(f.amountBase); ok {
		if want, fits := isDecimal(field.Type); !fits {
			return fmt.Errorf("HIGH_AMOUNT: field %q is %s, want %s", f.amountBase, field.Type, want)
		}
		return nil
	}
	return fmt.Errorf(`HIGH_AMOUNT reads %s, which "currency" writes: list "currency" before "fraud" in transforms (or set its weight to 0)`, f.amountBase)
}

func (f *fraud) buildVelocity(env Env) error {
	cfg := env.Fraud
	switch {
	case cfg.VelocityMaxOrders < 1:
		return fmt.Errorf("VELOCITY: max orders is %d, must be at least 1", cfg.VelocityMaxOrders)
	case cfg.VelocityWindow < time.Microsecond:
		return fmt.Errorf("VELOCITY: window is %v, must be at least 1µs", cfg.VelocityWindow)
	case cfg.VelocityMaxCustomers < 1:
		return fmt.Errorf("VELOCITY: max customers is %d, must be at least 1", cfg.VelocityMaxCustomers)
	}
	var err error
	if f.customerID, err = customerIDField(env); err != nil {
		return fmt.Errorf("VELOCITY: %w", err)
	}
	if f.time, err = timeField(env); err != nil {
		return fmt.Errorf("VELOCITY: %w", err)
	}
	f.vel = newVelocity(cfg.VelocityMaxOrders, cfg.VelocityWindow, cfg.VelocityMaxCustomers)
	return nil
}

func (f *fraud) Outputs() []string { return []string{colFraudScore, colFraudReasons} }

// StateBytes is the heap VELOCITY's state takes; see StateHolder.
func (f *fraud) StateBytes() int64 {
	if f.vel == nil {
		return 0
	}
	return f.vel.heldBytes()
}

// Forget drops partition's VELOCITY state; see PartitionState. Call it once
// the partition's worker has stopped (revoked or lost).
func (f *fraud) Forget(partition int32) {
	if f.vel != nil {
		f.vel.forget(partition)
	}
}

// lockPart is b's partition's VELOCITY state, locked for the batch (nil
// without the rule); the caller unlocks it.
func (f *fraud) lockPart(b *record.Batch) *partVelocity {
	if f.vel == nil {
		return nil
	}
	ps := f.vel.part(b.Partition)
	ps.mu.Lock()
	return ps
}

// Apply scores every good row of b. It holds b's partition's VELOCITY
// state for the whole batch.
func (f *fraud) Apply(_ context.Context, b *record.Batch) error {
	ps := f.lockPart(b)
	if ps != nil {
		defer ps.mu.Unlock()
	}
	for i := range b.Items {
		it := &b.Items[i]
		if it.Failed != nil {
			continue
		}
		mask := f.fired(it, ps)
		it.Row[colFraudScore], it.Row[colFraudReasons] = f.scores[mask], f.reasons[mask]
	}
	return nil
}

// fired returns the bit set of the rules that fire for it.
func (f *fraud) fired(it *record.Item, ps *partVelocity) int {
	row := it.Row
	mask := 0
	if f.on[ruleHighAmount] {
		if d, ok := row[f.amountBase].(decimal.Decimal); ok && d.Cmp(f.highAmount) >= 0 {
			mask |= 1 << ruleHighAmount
		}
	}
	// joined is false only when customer did not run, which the build
	// rules out; then neither customer rule fires.
	found, joined := row[customerFound].(bool)
	if f.on[ruleCountryMismatch] && found {
		ship, ok1 := row[f.shipping].(string)
		country, ok2 := row[colCustomerCountry].(string)
		if ok1 && ok2 && ship != country {
			mask |= 1 << ruleCountryMismatch
		}
	}
	if f.on[ruleUnknownCustomer] && joined && !found {
		mask |= 1 << ruleUnknownCustomer
	}
	if ps != nil {
		// A null customer_id or time cannot be attributed: not counted.
		id, ok1 := row[f.customerID].(string)
		at, ok2 := row[f.time].(time.Time)
		if ok1 && ok2 && f.observe(ps, it, id, at) {
			mask |= 1 << ruleVelocity
		}
	}
	return mask
}

// Needs is nil: fraud reads only columns and customer's marks
// (stage.ColumnTransform).
func (f *fraud) Needs() []string { return nil }

// fraudCols are the block columns of one batch; -1 for a rule that is off.
type fraudCols struct{ amountBase, shipping, country, customerID, time, score, reasons int }

// ApplyBlock is Apply on a batch whose rows are in its Block: every rule
// as fired does, in item order, under the partition's VELOCITY lock; the
// join's result comes from customer's marks. Its only error is a block
// whose table cannot serve what the rules read (see columns.go), returned
// before any row is scored, so a retry cannot count an order twice. A
// score its column cannot hold fails the row at stage load, as Prepare
// would.
func (f *fraud) ApplyBlock(_ context.Context, b *record.Batch) error {
	blk := b.Block
	cols := fraudCols{-1, -1, -1, -1, -1, blk.Column(colFraudScore), blk.Column(colFraudReasons)}
	reads := []struct {
		on  bool
		r   cellRead
		col *int
	}{
		{f.on[ruleHighAmount], f.amountRead, &cols.amountBase},
		{f.on[ruleCountryMismatch], f.shippingRead, &cols.shipping},
		{f.on[ruleCountryMismatch], f.countryRead, &cols.country},
		{f.vel != nil, f.idRead, &cols.customerID},
		{f.vel != nil, f.timeRead, &cols.time},
	}
	for _, rd := range reads {
		if !rd.on {
			continue
		}
		col, err := rd.r.column(blk)
		if err != nil {
			return fmt.Errorf("fraud: %s[%d] %d..%d: %w", b.Topic, b.Partition, b.First, b.Last, err)
		}
		*rd.col = col
	}
	var marks []uint8
	if f.on[ruleCountryMismatch] || f.on[ruleUnknownCustomer] {
		marks = blk.Marks(customerFound)
	}
	ps := f.lockPart(b)
	if ps != nil {
		defer ps.mu.Unlock()
	}
	for i := range b.Items {
		it := &b.Items[i]
		if it.Failed != nil {
			continue
		}
		r := b.Base + i
		mask := f.firedCell(blk, &cols, marks, r, it, ps)
		if err := firstInTable([]int{cols.score, cols.reasons}, []error{
			blk.SetInt(cols.score, r, f.scoreVals[mask]), blk.SetStrings(cols.reasons, r, f.reasonVals[mask]),
		}); err != nil {
			it.Fail(record.StageLoad, err.Error())
		}
	}
	return nil
}

// firedCell is fired for row r of blk.
func (f *fraud) firedCell(blk record.Block, cols *fraudCols, marks []uint8, r int, it *record.Item, ps *partVelocity) int {
	mask := 0
	if f.on[ruleHighAmount] {
		if u, scale, ok := blk.Decimal(cols.amountBase, r); ok && f.atLeastHigh(u, scale) {
			mask |= 1 << ruleHighAmount
		}
	}
	var found, joined bool
	if marks != nil {
		found, joined = marks[r] == markFound, marks[r] != 0
	}
	if f.on[ruleCountryMismatch] && found {
		ship, ok1 := blk.String(cols.shipping, r)
		country, ok2 := blk.String(cols.country, r)
		if ok1 && ok2 && ship != country {
			mask |= 1 << ruleCountryMismatch
		}
	}
	if f.on[ruleUnknownCustomer] && joined && !found {
		mask |= 1 << ruleUnknownCustomer
	}
	if ps != nil {
		id, ok1 := blk.String(cols.customerID, r)
		at, ok2 := blk.Time(cols.time, r)
		if ok1 && ok2 && f.observe(ps, it, id, at) {
			mask |= 1 << ruleVelocity
		}
	}
	return mask
}

// observe counts item it's order of customer id at time at in the
// partition's velocity state and says whether VELOCITY fires.
func (f *fraud) observe(ps *partVelocity, it *record.Item, id string, at time.Time) bool {
	off := int64(-1)
	if it.Rec != nil {
		off = it.Rec.Offset
	}
	return f.vel.observe(ps, id, at.UnixMicro(), off)
}

// atLeastHigh says whether unscaled × 10^-scale >= fraud.high_amount:
// integers at the threshold's scale (the column's, 2), else decimals.
func (f *fraud) atLeastHigh(u int64, scale int32) bool {
	if f.highOK && scale == f.highScale {
		return u >= f.highUnscaled
	}
	return decimal.New(u, -scale).Cmp(f.highAmount) >= 0
}

var _ PartitionState = (*fraud)(nil)
