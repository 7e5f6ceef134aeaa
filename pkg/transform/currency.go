package transform

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"time"

	"github.com/shopspring/decimal"

	"github.com/sluice-etl/sluice/pkg/record"
	"github.com/sluice-etl/sluice/pkg/refdata"
)

func init() {
	Register("currency", newCurrency)
}

// The target columns: amount_base Nullable(Decimal(18,2)), fx_rate
// Nullable(Decimal(18,8)). A value at or beyond these limits cannot be
// stored; it fails the item here, with a reason, rather than being wrapped
// or rejected later by the sink.
const (
	baseScale = 2
	rateScale = 8
)

var (
	// 10^16 and 10^10, the first values the columns cannot hold, built at
	// the columns' scales so that comparing a rounded value with them does
	// not rescale (and allocate).
	maxBase = decimal.New(1e18, -baseScale)
	minBase = maxBase.Neg()
	maxRate = decimal.New(1e18, -rateScale)
	minRate = maxRate.Neg()
	// baseRate is the base currency's rate, 1.00000000.
	baseRate          = decimal.New(1e8, -rateScale)
	baseRateBoxed any = baseRate
)

// currency converts an amount into the base currency at the rate in force
// when the event happened (DESIGN.md, "Reference data"):
//
//	<amount>_base = round_half_even(amount * rate, 2)   exact decimals, no float
//	fx_rate       = rate (scale 8)
//
// The rate is the Store's latest entry for the row's currency whose
// effective_from is at or before the row's event time; the base currency
// converts at 1. A row without such a rate, or whose converted amount does
// not fit Decimal(18,2), is failed (stage transform) with the reason and
// dead-lettered; the rest of the batch goes on. A null amount (nullable
// amount field) leaves both columns NULL.
//
// A missing rate is only final when the Store is current: at the batch's
// first miss Apply asks refdata's Store.AwaitCurrent, and while the
// follower is failing or behind it returns that error for the whole batch
// (the worker retries it) instead of dead-lettering valid records whose
// rate is on its way.
//
// Safe for concurrent use: it holds no state beyond the Store, which has
// its own lock.
type currency struct {
	store                  *refdata.Store
	base                   string // the base currency, converted without a lookup
	amount, currency, time string // fields read
	amountBase, rate       string // columns written
	// reads are amount, currency and time on the columnar path.
	reads [3]cellRead
}

func newCurrency(env Env) (Transform, error) {
	if env.Store == nil {
		return nil, errors.New("needs the reference data (customers and FX rates), but none is loaded")
	}
	if err := needSchema(env); err != nil {
		return nil, err
	}
	c := &currency{store: env.Store, base: env.Store.Base()}
	var err error
	if c.amount, err = amountField(env); err != nil {
		return nil, err
	}
	if c.currency, err = pickField(env.Schema, "currency", env.Fields.Currency, defaultCurrency, isString); err != nil {
		return nil, err
	}
	if c.time, err = timeField(env); err != nil {
		return nil, err
	}
	c.amountBase = amountBaseColumn(env, c.amount)
	c.rate = env.Fields.Rate
	if c.rate == "" {
		c.rate = defaultRateColumn
	}
	if err := notInSchema(env.Schema, c.amountBase, c.rate); err != nil {
		return nil, err
	}
	c.reads = [3]cellRead{
		readOf(env.Schema, c.amount, record.CellDecimal),
		readOf(env.Schema, c.currency, record.CellString),
		readOf(env.Schema, c.time, record.CellTime),
	}
	return c, nil
}

func (c *currency) Outputs() []string { return []string{c.amountBase, c.rate} }

// Apply converts every good row of b; rows it cannot convert are failed.
// Its only error wraps refdata.ErrNotCurrent (or is ctx's): a rate missed
// while the reference data could not be confirmed current; no row was
// failed for it, and the batch is to be retried.
func (c *currency) Apply(ctx context.Context, b *record.Batch) error {
	current := false // the Store was confirmed current after a miss
	for i := range b.Items {
		it := &b.Items[i]
		if it.Failed != nil {
			continue
		}
		reason, missed := c.convert(it.Row)
		if missed && !current {
			if err := c.store.AwaitCurrent(ctx, refdata.FxRates); err != nil {
				return fmt.Errorf("currency: %s[%d] %d..%d: %w", b.Topic, b.Partition, b.First, b.Last, err)
			}
			current = true
			reason, _ = c.convert(it.Row) // the rate may have arrived meanwhile
		}
		if reason != "" {
			it.Fail(record.StageTransform, "currency: "+reason)
		}
	}
	return nil
}

// convert fills the two columns of one row, or returns why it cannot;
// missed says the reason is a rate the Store lacks.
func (c *currency) convert(row record.Row) (reason string, missed bool) {
	raw := row[c.amount]
	var amount decimal.Decimal
	switch v := raw.(type) {
	case decimal.Decimal:
		amount = v
	case nil:
		row[c.amountBase], row[c.rate] = nil, nil
		return "", false
	default:
		return fmt.Sprintf("field %s is %T, want a decimal", c.amount, v), false
	}
	cur, ok := row[c.currency].(string)
	if !ok {
		return fmt.Sprintf("field %s is %s, want a currency code", c.currency, describe(row[c.currency])), false
	}
	at, ok := row[c.time].(time.Time)
	if !ok {
		return fmt.Sprintf("field %s is %s, want a timestamp", c.time, describe(row[c.time])), false
	}

	var based decimal.Decimal
	var basedBoxed, rateBoxed any
	switch {
	case cur == c.base && amount.Exponent() == -baseScale:
		// amount * 1 at the column's scale is amount itself: reuse the
		// row's boxed value, nothing to compute or allocate.
		based, basedBoxed, rateBoxed = amount, raw, baseRateBoxed
	case cur == c.base:
		based, rateBoxed = mulHalfEven(amount, baseRate, baseScale), baseRateBoxed
	default:
		r, found := c.store.RateAt(cur, at)
		if !found {
			return "no FX rate for " + cur + " at " + formatTime(at), true
		}
		rate, ok := toRateScale(r.Rate)
		if !ok {
			return fmt.Sprintf("FX rate %s for %s (effective from %s) does not fit Decimal(18,8)",
				r.Rate, cur, formatTime(time.UnixMilli(r.EffectiveFrom))), false
		}
		based, rateBoxed = mulHalfEven(amount, rate, baseScale), rate
	}
	if based.Cmp(maxBase) >= 0 || based.Cmp(minBase) <= 0 {
		return fmt.Sprintf("%s %s overflows Decimal(18,2) (%s %s %s)", c.amountBase, based, c.amount, amount, cur), false
	}
	if basedBoxed == nil {
		basedBoxed = based
	}
	row[c.amountBase], row[c.rate] = basedBoxed, rateBoxed
	return "", false
}

// Needs is nil: currency reads only columns (stage.ColumnTransform).
func (c *currency) Needs() []string { return nil }

// currencyCols are the block columns of one batch.
type currencyCols struct{ amount, currency, time, amountBase, rate int }

// ApplyBlock is Apply on a batch whose rows are in its Block: the same
// conversion on scaled integers (mulHalfEvenInt), the same reasons, the
// same AwaitCurrent at the first miss. Its errors are Apply's, and one
// more: the block's table cannot serve the fields read (see columns.go).
// A converted value its column cannot hold fails the row at stage load,
// as Prepare would.
func (c *currency) ApplyBlock(ctx context.Context, b *record.Batch) error {
	blk := b.Block
	var cols currencyCols
	for i, p := range []*int{&cols.amount, &cols.currency, &cols.time} {
		col, err := c.reads[i].column(blk)
		if err != nil {
			return fmt.Errorf("currency: %s[%d] %d..%d: %w", b.Topic, b.Partition, b.First, b.Last, err)
		}
		*p = col
	}
	cols.amountBase, cols.rate = blk.Column(c.amountBase), blk.Column(c.rate)
	current := false
	for i := range b.Items {
		it := &b.Items[i]
		if it.Failed != nil {
			continue
		}
		r := b.Base + i
		reason, missed, err := c.convertCell(blk, &cols, r)
		if missed && !current {
			if err := c.store.AwaitCurrent(ctx, refdata.FxRates); err != nil {
				return fmt.Errorf("currency: %s[%d] %d..%d: %w", b.Topic, b.Partition, b.First, b.Last, err)
			}
			current = true
			reason, _, err = c.convertCell(blk, &cols, r)
		}
		switch {
		case reason != "":
			it.Fail(record.StageTransform, "currency: "+reason)
		case err != nil:
			it.Fail(record.StageLoad, err.Error())
		}
	}
	return nil
}

// convertCell is convert for row r of blk: the reason it cannot convert
// (missed: a rate the Store lacks), or the error of a column that does not
// take the result.
func (c *currency) convertCell(blk record.Block, cols *currencyCols, r int) (reason string, missed bool, err error) {
	u, scale, ok := blk.Decimal(cols.amount, r)
	if !ok {
		return "", false, firstInTable([]int{cols.amountBase, cols.rate},
			[]error{blk.SetNull(cols.amountBase, r), blk.SetNull(cols.rate, r)})
	}
	cur, ok := blk.String(cols.currency, r)
	if !ok {
		return fmt.Sprintf("field %s is null, want a currency code", c.currency), false, nil
	}
	at, ok := blk.Time(cols.time, r)
	if !ok {
		return fmt.Sprintf("field %s is null, want a timestamp", c.time), false, nil
	}
	rate := int64(1e8) // the base currency's 1 at scale 8
	if cur != c.base {
		rt, found := c.store.RateAt(cur, at)
		if !found {
			return "no FX rate for " + cur + " at " + formatTime(at), true, nil
		}
		if rate, ok = rateInt(rt.Rate); !ok {
			return fmt.Sprintf("FX rate %s for %s (effective from %s) does not fit Decimal(18,8)",
				rt.Rate, cur, formatTime(time.UnixMilli(rt.EffectiveFrom))), false, nil
		}
	}
	based, ok := mulHalfEvenInt(u, scale, rate, rateScale, baseScale)
	if !ok || based >= max18 || based <= -max18 {
		// The decimal path, for the reason's values and for what the
		// integers do not cover (a product past 64 bits).
		amount := decimal.New(u, -scale)
		d := mulHalfEven(amount, decimal.New(rate, -rateScale), baseScale)
		if d.Cmp(maxBase) >= 0 || d.Cmp(minBase) <= 0 {
			return fmt.Sprintf("%s %s overflows Decimal(18,2) (%s %s %s)", c.amountBase, d, c.amount, amount, cur), false, nil
		}
		based = d.CoefficientInt64() // exponent -baseScale, under 10^16
	}
	return "", false, firstInTable([]int{cols.amountBase, cols.rate},
		[]error{blk.SetDecimal(cols.amountBase, r, based, baseScale), blk.SetDecimal(cols.rate, r, rate, rateScale)})
}

// max18 is 10^18, the first unscaled value a Decimal(18,s) cannot hold
// (maxBase and maxRate unscaled).
const max18 = 1e18

// rateInt is toRateScale as an integer at scale 8; its fast path takes a
// rate already at scale 8, as the fx-rates topic's decimal(18,8) gives.
func rateInt(r decimal.Decimal) (int64, bool) {
	if r.Exponent() == -rateScale && r.NumDigits() <= 18 {
		v := r.CoefficientInt64()
		return v, v < max18 && v > -max18
	}
	d, ok := toRateScale(r)
	if !ok {
		return 0, false
	}
	return d.CoefficientInt64(), true
}

// mulHalfEven returns round_half_even(a * r, scale), exactly. The result's
// exponent is -scale.
//
// It is shopspring's a.Mul(r).RoundBank(scale) (exact product, one
// rounding), computed without big.Int when both coefficients fit 18 digits:
// their product fits 128 bits, and dropping k <= 19 digits is one 128-by-64
// bit division. That is every Decimal(18,s) amount times a Decimal(18,8)
// rate; it saves most of the conversion's allocations. The general path
// serves the rest (wider values, fewer dropped digits). Tests check the two
// agree.
func mulHalfEven(a, r decimal.Decimal, scale int32) decimal.Decimal {
	if d, ok := mulHalfEven64(a, r, scale); ok {
		return d
	}
	return a.Mul(r).RoundBank(scale)
}

// pow10u[k] is 10^k; 10^19 is the largest that fits 64 bits.
var pow10u = func() (p [20]uint64) {
	p[0] = 1
	for i := 1; i < len(p); i++ {
		p[i] = p[i-1] * 10
	}
	return p
}()

// mulHalfEven64 is mulHalfEven's fast path; ok is false when it does not
// apply.
func mulHalfEven64(a, r decimal.Decimal, scale int32) (d decimal.Decimal, ok bool) {
	// The product's exponent is a's plus r's; k digits are dropped.
	k := -int64(scale) - int64(a.Exponent()) - int64(r.Exponent())
	if k < 1 || k >= int64(len(pow10u)) || a.NumDigits() > 18 || r.NumDigits() > 18 {
		return d, false
	}
	x, y := a.CoefficientInt64(), r.CoefficientInt64()
	neg := (x < 0) != (y < 0)
	hi, lo := bits.Mul64(absU64(x), absU64(y))
	div := pow10u[k]
	if hi >= div { // the quotient would not fit 64 bits
		return d, false
	}
	q, rem := bits.Div64(hi, lo, div)
	// Half to even: up past the half, and at it when q is odd. rem < div,
	// so div-rem does not wrap where 2*rem could.
	if rem > div-rem || rem == div-rem && q&1 == 1 {
		q++
	}
	if q > math.MaxInt64 {
		return d, false
	}
	v := int64(q)
	if neg {
		v = -v
	}
	return decimal.New(v, -scale), true
}

func absU64(x int64) uint64 {
	if x < 0 {
		return uint64(-x) // also right for MinInt64, as an unsigned
	}
	return uint64(x)
}

// toRateScale returns r at scale 8, exactly, or false when r has more than
// 8 decimal places or 10 integer digits (it would not fit fx_rate).
func toRateScale(r decimal.Decimal) (decimal.Decimal, bool) {
	if r.Exponent() != -rateScale {
		if r.Exponent() < -rateScale && !r.Equal(r.Truncate(rateScale)) {
			return r, false
		}
		r = r.Round(rateScale) // exact: only zeros are added or dropped
	}
	return r, r.Cmp(maxRate) < 0 && r.Cmp(minRate) > 0
}

// formatTime renders an event time for a reason: UTC, milliseconds.
func formatTime(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}

// describe names a row value's type for a reason ("null", "int64").
func describe(v any) string {
	if v == nil {
		return "null"
	}
	return fmt.Sprintf("%T", v)
}
