package gen

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// Defaults applied by [New] to zero-valued [Options] fields.
const (
	// DefaultSchemaDir is where the .avsc files live, relative to the
	// repository root (the working directory of `go run ./cmd/sluice-gen`).
	DefaultSchemaDir = "schemas/avro"
	// DefaultCustomers gives each customer a few orders per hour at the
	// default step, so joins hit often and VELOCITY stays rare.
	DefaultCustomers = 1000
	// DefaultUnknownCustomerRatio: 2% of orders name a customer that is
	// never produced, enough for UNKNOWN_CUSTOMER to show on a dashboard.
	DefaultUnknownCustomerRatio = 0.02
	// DefaultBaseCurrency is the currency whose rate is 1.
	DefaultBaseCurrency = "USD"
	// DefaultNoRateCurrency is ISO 4217's code reserved for testing; no
	// rate is ever produced for it.
	DefaultNoRateCurrency = "XTS"
	// DefaultStep: one order per second of event time (86,400 a day).
	DefaultStep = time.Second
	// DefaultFxChanges is how many times each rate changes after its
	// initial value.
	DefaultFxChanges = 6
	// defaultFxIntervalSteps: a rate change every 500 orders by default,
	// so even a 1,000-order test crosses a change.
	defaultFxIntervalSteps = 500
)

// DefaultStart returns the default event-time base, 2026-01-01T00:00:00Z,
// fixed so that output does not depend on the wall clock.
func DefaultStart() time.Time {
	return time.Date(2026, time.January, 1, 0, 0, 0, 0, time.UTC)
}

// DefaultCurrencies returns the currencies orders use by default.
func DefaultCurrencies() []string {
	return []string{"USD", "EUR", "GBP", "JPY", "CHF", "CAD"}
}

// Options configure a [Generator]. The zero value is valid: every zero
// field takes the default named in its comment.
type Options struct {
	// Seed selects the data set; the same Options give byte-identical
	// output. It is also folded into every id, so runs with different
	// seeds do not collide on order or customer ids.
	Seed int64
	// SchemaDir holds order.avsc, payment.avsc, shipment.avsc,
	// customer.avsc and fx_rate.avsc. Default DefaultSchemaDir.
	SchemaDir string
	// Customers is the number of customers produced. Default 1000.
	Customers int
	// UnknownCustomerRatio is the share of orders whose customer_id is
	// never produced. 0 means the default 0.02; a negative value means none.
	UnknownCustomerRatio float64
	// Currencies are the ISO 4217 codes orders use, each with a rate
	// history. Default DefaultCurrencies(). Every code must be one the
	// generator has a reference rate for (see KnownCurrencies).
	Currencies []string
	// BaseCurrency is the currency rates are expressed in; its rate is
	// 1.00000000. Default "USD". It need not be in Currencies.
	BaseCurrency string
	// NoRateCurrency is a currency that has no rate at all. Default "XTS".
	NoRateCurrency string
	// NoRateCurrencyRatio is the share of orders in NoRateCurrency, which
	// Sluice must dead-letter. Default 0 (none).
	NoRateCurrencyRatio float64
	// Start is the event-time base: order seq is created in
	// [Start+seq*Step, Start+(seq+1)*Step). Default DefaultStart(). Customers
	// were created before Start; the first rate of every currency is in
	// force from Start-1h, so every order in a known currency has a rate.
	Start time.Time
	// Step is the event time between consecutive orders. Default 1s.
	// Payments follow their order by seconds to minutes, shipments by
	// hours to days.
	Step time.Duration
	// FxChanges is how many times each non-base rate changes after its
	// initial value. 0 means the default 6; a negative value means never.
	FxChanges int
	// FxInterval is the event time between rate changes (each change is
	// jittered by up to a quarter of it). Default 500*Step.
	FxInterval time.Duration
}

// withDefaults returns o with defaults applied, or an error naming the
// first invalid field.
func (o Options) withDefaults() (Options, error) {
	if o.SchemaDir == "" {
		o.SchemaDir = DefaultSchemaDir
	}
	switch {
	case o.Customers == 0:
		o.Customers = DefaultCustomers
	case o.Customers < 0:
		return o, fmt.Errorf("gen: Customers must be positive, got %d", o.Customers)
	}
	switch {
	case o.UnknownCustomerRatio == 0:
		o.UnknownCustomerRatio = DefaultUnknownCustomerRatio
	case o.UnknownCustomerRatio < 0:
		o.UnknownCustomerRatio = 0
	case o.UnknownCustomerRatio > 1:
		return o, fmt.Errorf("gen: UnknownCustomerRatio must be at most 1, got %v", o.UnknownCustomerRatio)
	}
	if o.NoRateCurrencyRatio < 0 || o.NoRateCurrencyRatio > 1 {
		return o, fmt.Errorf("gen: NoRateCurrencyRatio must be in [0, 1], got %v", o.NoRateCurrencyRatio)
	}
	if o.Currencies == nil {
		o.Currencies = DefaultCurrencies()
	} else {
		o.Currencies = slices.Clone(o.Currencies)
	}
	if len(o.Currencies) == 0 {
		return o, errors.New("gen: Currencies must not be empty")
	}
	if o.BaseCurrency == "" {
		o.BaseCurrency = DefaultBaseCurrency
	}
	if o.NoRateCurrency == "" {
		o.NoRateCurrency = DefaultNoRateCurrency
	}
	if _, ok := currencyInfo(o.BaseCurrency); !ok {
		return o, fmt.Errorf("gen: base currency %q has no reference rate (known: %v)", o.BaseCurrency, KnownCurrencies())
	}
	seen := make(map[string]bool, len(o.Currencies)+1)
	for _, c := range o.Currencies {
		if _, ok := currencyInfo(c); !ok {
			return o, fmt.Errorf("gen: currency %q has no reference rate (known: %v)", c, KnownCurrencies())
		}
		if seen[c] {
			return o, fmt.Errorf("gen: currency %q listed twice", c)
		}
		seen[c] = true
	}
	seen[o.BaseCurrency] = true
	if seen[o.NoRateCurrency] {
		return o, fmt.Errorf("gen: NoRateCurrency %q has rates (it is a currency or the base currency)", o.NoRateCurrency)
	}
	if !isCurrencyCode(o.NoRateCurrency) {
		return o, fmt.Errorf("gen: NoRateCurrency %q is not a three-letter upper-case code", o.NoRateCurrency)
	}
	if o.Start.IsZero() {
		o.Start = DefaultStart()
	}
	o.Start = o.Start.UTC().Truncate(time.Millisecond)
	switch {
	case o.Step == 0:
		o.Step = DefaultStep
	case o.Step < 0:
		return o, fmt.Errorf("gen: Step must be positive, got %v", o.Step)
	}
	switch {
	case o.FxChanges == 0:
		o.FxChanges = DefaultFxChanges
	case o.FxChanges < 0:
		o.FxChanges = 0
	}
	switch {
	case o.FxInterval == 0:
		o.FxInterval = defaultFxIntervalSteps * o.Step
	case o.FxInterval < 0:
		return o, fmt.Errorf("gen: FxInterval must be positive, got %v", o.FxInterval)
	}
	return o, nil
}

func isCurrencyCode(c string) bool {
	if len(c) != 3 {
		return false
	}
	for i := 0; i < 3; i++ {
		if c[i] < 'A' || c[i] > 'Z' {
			return false
		}
	}
	return true
}
