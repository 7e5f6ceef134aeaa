package config

import "time"

// Reference configures the reference topics every Sluice process reads in
// full (not as part of the group) and keeps in memory: customers and FX
// rates.
type Reference struct {
	// CustomersTopic: compacted, key customer_id, a null value deletes.
	CustomersTopic string `mapstructure:"customers_topic"`
	// FxRatesTopic: compacted, key <CURRENCY>@<effective_from millis>.
	FxRatesTopic string `mapstructure:"fx_rates_topic"`
	// CustomersSchema and FxRatesSchema are the .avsc files of their
	// values; empty means the schemas built into the binary.
	CustomersSchema string `mapstructure:"customers_schema"`
	FxRatesSchema   string `mapstructure:"fx_rates_schema"`
	// BaseCurrency is what amounts are converted into; its rate is 1.
	BaseCurrency string `mapstructure:"base_currency"`
	// BootstrapTimeout bounds the start-up read of both topics up to their
	// high watermarks; no event batch is transformed before it completes.
	BootstrapTimeout time.Duration `mapstructure:"bootstrap_timeout"`
	// MaxStaleness: once following the topics has failed, or a topic has
	// not been read up to its high watermark, for longer than this,
	// /readyz says not ready (and why). Whatever its value, a lookup that
	// misses while the follower is failing or behind fails its batch
	// (retried), never the row.
	MaxStaleness time.Duration `mapstructure:"max_staleness"`
}

// Fraud configures the fraud rules; a rule's weight adds to fraud_score
// when it fires, and its name is appended to fraud_reasons in rule order
// (HIGH_AMOUNT, COUNTRY_MISMATCH, UNKNOWN_CUSTOMER, VELOCITY).
type Fraud struct {
	// HighAmount: total_base at or above it fires HIGH_AMOUNT. A decimal
	// string, e.g. "5000.00".
	HighAmount       string `mapstructure:"high_amount"`
	HighAmountWeight int    `mapstructure:"high_amount_weight"`
	// CountryMismatchWeight: shipping_country differs from the customer's.
	CountryMismatchWeight int `mapstructure:"country_mismatch_weight"`
	// UnknownCustomerWeight: the customer join missed.
	UnknownCustomerWeight int `mapstructure:"unknown_customer_weight"`
	// Velocity fires when a customer has more than VelocityMaxOrders orders
	// within VelocityWindow of event time (this one included).
	VelocityMaxOrders int           `mapstructure:"velocity_max_orders"`
	VelocityWindow    time.Duration `mapstructure:"velocity_window"`
	VelocityWeight    int           `mapstructure:"velocity_weight"`
	// VelocityMaxCustomers bounds the velocity state of one partition; the
	// least recently seen customers are forgotten past it.
	VelocityMaxCustomers int `mapstructure:"velocity_max_customers"`
}

// Fields names the event fields a pipeline's transforms read and the
// columns they write. Every key is optional: the transforms infer the usual
// e-commerce names from the pipeline's schema.
type Fields struct {
	// Amount is the decimal to convert (default: total, else amount).
	Amount string `mapstructure:"amount"`
	// Currency is the ISO 4217 code field (default: currency).
	Currency string `mapstructure:"currency"`
	// Time is the event timestamp (default: created_at, else event_time).
	Time string `mapstructure:"time"`
	// AmountBase is the converted amount's column (default: <amount>_base).
	AmountBase string `mapstructure:"amount_base"`
	// Rate is the applied rate's column (default: fx_rate).
	Rate string `mapstructure:"rate"`
	// CustomerID is the join key (default: customer_id).
	CustomerID string `mapstructure:"customer_id"`
	// ShippingCountry is compared with the customer's country by the fraud
	// rules (default: shipping_country).
	ShippingCountry string `mapstructure:"shipping_country"`
}
