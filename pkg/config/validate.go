package config

import (
	"fmt"
	"net"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/shopspring/decimal"
)

var identifier = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// kafkaTopic is Kafka's own rule for topic names.
var kafkaTopic = regexp.MustCompile(`^[A-Za-z0-9._-]{1,249}$`)

// Validate checks every key and returns all problems found (nil if none).
// Load calls it; callers that build a Config by hand should too.
func (c *Config) Validate() Errors {
	var errs Errors
	add := func(key, format string, args ...any) {
		errs = append(errs, &Error{Key: key, Problem: fmt.Sprintf(format, args...)})
	}
	hostPorts := func(key string, list []string) {
		if len(list) == 0 {
			add(key, "must name at least one host:port")
		}
		for _, a := range list {
			if _, port, err := net.SplitHostPort(strings.TrimSpace(a)); err != nil || port == "" {
				add(key, "%q is not host:port", a)
			}
		}
	}
	positive := func(key string, d time.Duration) {
		if d <= 0 {
			add(key, "must be a positive duration (e.g. 1s, 500ms), got %v", d)
		}
	}

	hostPorts("kafka.brokers", c.Kafka.Brokers)
	if strings.TrimSpace(c.Kafka.Group) == "" {
		add("kafka.group", "must not be empty")
	}
	if !kafkaTopic.MatchString(c.Kafka.DLQTopic) {
		add("kafka.dlq_topic", "%q is not a valid topic name", c.Kafka.DLQTopic)
	}
	if c.Kafka.DLQPartitions < 1 || c.Kafka.DLQPartitions > 1000 {
		add("kafka.dlq_partitions", "must be between 1 and 1000, got %d", c.Kafka.DLQPartitions)
	}
	positive("kafka.session_timeout", c.Kafka.SessionTimeout)
	positive("kafka.rebalance_timeout", c.Kafka.RebalanceTimeout)
	if c.Kafka.FetchMaxWait < time.Millisecond || c.Kafka.FetchMaxWait > time.Minute {
		add("kafka.fetch_max_wait", "must be between 1ms and 1m, got %v", c.Kafka.FetchMaxWait)
	}
	if !slices.Contains([]string{"stop", "resume_from_log_start"}, c.Kafka.OnOffsetOutOfRange) {
		add("kafka.on_offset_out_of_range", "%q is not one of stop, resume_from_log_start", c.Kafka.OnOffsetOutOfRange)
	}
	if c.Kafka.InstanceID != "" && !kafkaTopic.MatchString(c.Kafka.InstanceID) {
		add("kafka.instance_id", "%q may hold only letters, digits, '.', '_' and '-'", c.Kafka.InstanceID)
	}

	hostPorts("clickhouse.addr", c.ClickHouse.Addr)
	if !identifier.MatchString(c.ClickHouse.Database) {
		add("clickhouse.database", "%q is not a valid identifier", c.ClickHouse.Database)
	}
	positive("clickhouse.dial_timeout", c.ClickHouse.DialTimeout)
	positive("clickhouse.insert_timeout", c.ClickHouse.InsertTimeout)
	positive("clickhouse.unknown_outcome_wait", c.ClickHouse.UnknownOutcomeWait)
	if c.ClickHouse.InsertStreamWait < 0 || c.ClickHouse.InsertStreamWait > 10*time.Minute {
		add("clickhouse.insert_stream_wait", "must be between 0 (one INSERT per batch) and 10m, got %v", c.ClickHouse.InsertStreamWait)
	}
	if c.ClickHouse.InsertStreamRows < 1 || c.ClickHouse.InsertStreamRows > 100_000_000 {
		add("clickhouse.insert_stream_rows", "must be between 1 and 100000000, got %d", c.ClickHouse.InsertStreamRows)
	}
	if c.ClickHouse.InsertStreamBytes < 1 || c.ClickHouse.InsertStreamBytes > 16<<30 {
		add("clickhouse.insert_stream_bytes", "must be between 1B and 16GiB, got %d", c.ClickHouse.InsertStreamBytes)
	}
	if !slices.Contains([]string{"auto", "native", "driver"}, c.ClickHouse.InsertProtocol) {
		add("clickhouse.insert_protocol", "%q is not one of auto, native, driver", c.ClickHouse.InsertProtocol)
	}
	if cl := c.ClickHouse.Cluster; cl.Enabled() {
		if !identifier.MatchString(cl.Name) {
			add("clickhouse.cluster.name", "%q is not a valid identifier (the remote_servers cluster of the shards)", cl.Name)
		}
		if !identifier.MatchString("t" + cl.LocalSuffix) {
			add("clickhouse.cluster.local_suffix", "%q does not make valid table names", cl.LocalSuffix)
		}
		seen := map[string]bool{}
		least := 0
		for i, reps := range cl.Replicas() {
			key := fmt.Sprintf("clickhouse.cluster.shards[%d]", i)
			if len(reps) == 0 {
				add(key, "lists no replica")
				continue
			}
			hostPorts(key, reps)
			for _, a := range reps {
				if seen[a] {
					add(key, "%s is listed twice (a server is one replica of one shard)", a)
				}
				seen[a] = true
			}
			if least == 0 || len(reps) < least {
				least = len(reps)
			}
		}
		if cl.InsertQuorum < 0 || (least > 0 && cl.InsertQuorum > least) {
			add("clickhouse.cluster.insert_quorum", "must be between 0 and the replicas of the smallest shard (%d), got %d", least, cl.InsertQuorum)
		}
		positive("clickhouse.cluster.sync_timeout", cl.SyncTimeout)
	}

	if c.Admin.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Admin.Listen); err != nil {
			add("admin.listen", "%q is not host:port", c.Admin.Listen)
		}
	}
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.Log.Level) {
		add("log.level", "%q is not one of debug, info, warn, error", c.Log.Level)
	}
	if !slices.Contains([]string{"text", "json"}, c.Log.Format) {
		add("log.format", "%q is not one of text, json", c.Log.Format)
	}
	errs = append(errs, c.Batch.validate("batch")...)
	if c.InflightBytes < c.Batch.MaxBytes {
		add("inflight_bytes", "must be at least batch.max_bytes (%v), got %v", c.Batch.MaxBytes, c.InflightBytes)
	}
	positive("shutdown_timeout", c.ShutdownTimeout)
	positive("startup_timeout", c.StartupTimeout)

	errs = append(errs, c.validateEnrichment()...)
	errs = append(errs, c.validateRegistry()...)
	errs = append(errs, c.validateSecurity()...)

	if len(c.Pipelines) == 0 {
		add("pipelines", "must list at least one pipeline")
	}
	names, topics := map[string]int{}, map[string]int{}
	for i, p := range c.Pipelines {
		key := fmt.Sprintf("pipelines[%d]", i)
		switch {
		case p.Name == "":
			add(key+".name", "must not be empty")
		case !identifier.MatchString(p.Name):
			add(key+".name", "%q must be letters, digits and _ (it labels metrics)", p.Name)
		default:
			if j, dup := names[p.Name]; dup {
				add(key+".name", "%q is also the name of pipelines[%d]", p.Name, j)
			}
			names[p.Name] = i
		}
		switch {
		case p.Topic == "":
			add(key+".topic", "missing: every pipeline reads one topic")
		case !kafkaTopic.MatchString(p.Topic):
			add(key+".topic", "%q is not a valid topic name", p.Topic)
		default:
			if j, dup := topics[p.Topic]; dup {
				add(key+".topic", "%q is also read by pipelines[%d]", p.Topic, j)
			}
			topics[p.Topic] = i
		}
		if p.Topic != "" && p.Topic == c.Kafka.DLQTopic {
			add(key+".topic", "%q is the dead-letter topic", p.Topic)
		}
		if !slices.Contains(Formats, p.Format) {
			add(key+".format", "%q is not one of %s", p.Format, strings.Join(Formats, ", "))
		}
		if p.Schema == "" {
			add(key+".schema", "missing: the .avsc file of the topic's records")
		} else if st, err := os.Stat(p.Schema); err != nil {
			add(key+".schema", "cannot read %s: %v", p.Schema, errRoot(err))
		} else if st.IsDir() {
			add(key+".schema", "%s is a directory, not an .avsc file", p.Schema)
		}
		if !identifier.MatchString(p.Table) {
			add(key+".table", "%q is not a valid table name", p.Table)
		}
		errs = append(errs, p.Batch.validate(key+".batch")...)
	}
	// Every record waits up to max_wait for its batch: a threshold at or
	// below it would call a stream that keeps up lagging.
	waitKey, wait := "batch.max_wait", c.Batch.MaxWait
	for i, p := range c.Pipelines {
		if p.Batch.MaxWait > wait {
			waitKey, wait = fmt.Sprintf("pipelines[%d].batch.max_wait", i), p.Batch.MaxWait
		}
	}
	if c.Admin.LaggingAfter <= wait {
		add("admin.lagging_after", "must be longer than %s (%v): every record waits that long for its batch, got %v", waitKey, wait, c.Admin.LaggingAfter)
	}
	return errs
}

func (b Batch) validate(key string) Errors {
	var errs Errors
	if b.MaxRows < 1 || b.MaxRows > MaxInsertRows {
		errs = append(errs, &Error{Key: key + ".max_rows", Problem: fmt.Sprintf(
			"must be between 1 and %d (one INSERT must stay one ClickHouse block), got %d", MaxInsertRows, b.MaxRows)})
	}
	if b.MaxBytes < 1 {
		errs = append(errs, &Error{Key: key + ".max_bytes", Problem: fmt.Sprintf("must be positive, got %d", b.MaxBytes)})
	}
	if b.MaxWait <= 0 {
		errs = append(errs, &Error{Key: key + ".max_wait", Problem: fmt.Sprintf("must be a positive duration, got %v", b.MaxWait)})
	}
	if b.Combine < 1 || b.Combine > MaxCombine {
		errs = append(errs, &Error{Key: key + ".combine", Problem: fmt.Sprintf("must be between 1 and %d (1: each batch its own INSERT), got %d", MaxCombine, b.Combine)})
	}
	return errs
}

// errRoot drops the path that os errors repeat.
func errRoot(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

var currencyCode = regexp.MustCompile(`^[A-Z]{3}$`)

// ReferenceTransforms are the transforms that need the reference topics.
var ReferenceTransforms = []string{"currency", "customer", "fraud"}

// UsesReference says whether any pipeline needs the reference data.
func (c *Config) UsesReference() bool {
	for _, p := range c.Pipelines {
		for _, t := range p.Transforms {
			if slices.Contains(ReferenceTransforms, t) {
				return true
			}
		}
	}
	return false
}

func (c *Config) validateEnrichment() Errors {
	var errs Errors
	add := func(key, format string, args ...any) {
		errs = append(errs, &Error{Key: key, Problem: fmt.Sprintf(format, args...)})
	}
	r := c.Reference
	if !currencyCode.MatchString(r.BaseCurrency) {
		add("reference.base_currency", "%q is not an ISO 4217 code (three capital letters)", r.BaseCurrency)
	}
	for key, topic := range map[string]string{"reference.customers_topic": r.CustomersTopic, "reference.fx_rates_topic": r.FxRatesTopic} {
		if !kafkaTopic.MatchString(topic) {
			add(key, "%q is not a valid topic name", topic)
		}
	}
	if r.BootstrapTimeout <= 0 {
		add("reference.bootstrap_timeout", "must be a positive duration, got %v", r.BootstrapTimeout)
	}
	if r.MaxStaleness < 2*time.Second {
		add("reference.max_staleness", "must be at least 2s (the follower confirms every second that it is current), got %v", r.MaxStaleness)
	}
	if c.UsesReference() {
		for key, path := range map[string]string{"reference.customers_schema": r.CustomersSchema, "reference.fx_rates_schema": r.FxRatesSchema} {
			if path == "" {
				continue // the built-in schema
			}
			if _, err := os.Stat(path); err != nil {
				add(key, "cannot read %s: %v", path, errRoot(err))
			}
		}
	}
	f := c.Fraud
	if d, err := decimal.NewFromString(f.HighAmount); err != nil || d.IsNegative() {
		add("fraud.high_amount", "%q is not a non-negative decimal (e.g. \"5000.00\")", f.HighAmount)
	}
	for key, w := range map[string]int{
		"fraud.high_amount_weight": f.HighAmountWeight, "fraud.country_mismatch_weight": f.CountryMismatchWeight,
		"fraud.unknown_customer_weight": f.UnknownCustomerWeight, "fraud.velocity_weight": f.VelocityWeight,
	} {
		if w < 0 || w > 1000 {
			add(key, "must be between 0 and 1000, got %d", w)
		}
	}
	if f.VelocityMaxOrders < 1 {
		add("fraud.velocity_max_orders", "must be at least 1, got %d", f.VelocityMaxOrders)
	}
	if f.VelocityWindow <= 0 {
		add("fraud.velocity_window", "must be a positive duration, got %v", f.VelocityWindow)
	}
	if f.VelocityMaxCustomers < 1 {
		add("fraud.velocity_max_customers", "must be at least 1, got %d", f.VelocityMaxCustomers)
	}
	return errs
}
