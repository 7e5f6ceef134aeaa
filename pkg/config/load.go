package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"
)

// EnvPrefix prefixes every environment override: SLUICE_KAFKA_BROKERS.
const EnvPrefix = "SLUICE"

// defaults are the values of every scalar key a config file may leave out.
// Registering them also lets viper see the SLUICE_* variable of each key.
var defaults = map[string]any{
	"kafka.brokers":           []string{"127.0.0.1:9092"},
	"kafka.group":             "sluice",
	"kafka.client_id":         "sluice",
	"kafka.dlq_topic":         "sluice-dlq",
	"kafka.dlq_partitions":    3,
	"kafka.session_timeout":   "45s",
	"kafka.rebalance_timeout": "60s",
	// Records removed by retention before they were loaded are a loss an
	// operator must see: stop the partition unless told otherwise.
	"kafka.on_offset_out_of_range": "stop",
	// Dynamic membership unless a stable name per process is given.
	"kafka.instance_id": "",
	// Not franz-go's 5s: a partition resumed after backpressure waits for
	// the fetch in flight, and with the others caught up that fetch is
	// held this long (3M JSON orders over 6 partitions, by hand: 68k rows/s
	// at 5s, 171k at 500ms; docs/DESIGN.md, invariant 9).
	"kafka.fetch_max_wait":    "500ms",
	"clickhouse.addr":         []string{"127.0.0.1:9000"},
	"clickhouse.database":     "sluice",
	"clickhouse.username":     "default",
	"clickhouse.password":     "",
	"clickhouse.dial_timeout": "5s",
	// An insert of one 12 MiB batch takes well under a second on loopback;
	// 60 s leaves room for a loaded server before the attempt is retried.
	"clickhouse.insert_timeout": "60s",
	// On loopback or a LAN an abandoned INSERT's bytes arrive within
	// milliseconds or never; 2 s covers a congested link and costs only
	// the retry of a failed INSERT.
	"clickhouse.unknown_outcome_wait": "2s",
	// clickhouse-go until the native writer has run the exactly-once
	// suites as long as the driver has.
	"clickhouse.insert_protocol": "auto",
	// A backlog's batches share an INSERT for up to 5 s: parts of up to
	// 64 MiB (about 200,000 orders) instead of one per 20,000-row batch
	// (docs/DESIGN.md, "INSERT streams").
	"clickhouse.insert_stream_wait":  "5s",
	"clickhouse.insert_stream_rows":  1000000,
	"clickhouse.insert_stream_bytes": "64MiB",
	// No cluster: one server (clickhouse.addr).
	"clickhouse.cluster.name":          "",
	"clickhouse.cluster.shards":        []string{},
	"clickhouse.cluster.local_suffix":  "_local",
	"clickhouse.cluster.insert_quorum": 0,
	// A replica fetches a part in milliseconds; 30 s rides out a replica
	// restart before the read is retried.
	"clickhouse.cluster.sync_timeout": "30s",
	"admin.listen":                    "127.0.0.1:8080",
	"admin.lagging_after":             "30s", // above max_wait: a backlog, or loads not getting through
	"admin.pprof":                     false,
	"log.level":                       "info",
	"log.format":                      "text",
	// Every 1 s or 20,000 rows or 12 MiB, whichever comes first. 20,000
	// rows load as fast as 50,000 here (make bench, E2E) with about 40 %
	// less peak memory: decoded rows, not Kafka bytes, dominate memory.
	// 12 MiB is above 20,000 rows of the demo's events (an order is
	// ~350 B) and keeps the default memory bound at 256 MiB on two cores
	// with four max_bytes terms per batch processed at once.
	"batch.max_rows":  20000,
	"batch.max_bytes": "12MiB",
	"batch.max_wait":  "1s",
	// Each batch its own INSERT unless configured: 2 cuts the server's
	// CPU per row and the parts here (make bench case a, docs/DESIGN.md,
	// "Shared INSERTs"), but makes the default memory bound 280 MiB, and
	// a rolling upgrade from a version without sharing must run with 1.
	"batch.combine": 1,
	// Keeps the default memory bound at 256 MiB on two cores. It holds
	// about one full batch of JSON orders per partition of six (an order
	// holds ~540 B) besides the batches in process, whose records leave
	// it once their rows are in the block: make bench case (a) drained
	// 266-313k rows/s with it, 329k with 96 MiB (RSS 256 MB), README
	// "Performance". Raise it where memory allows.
	"inflight_bytes":            "64MiB",
	"reference.customers_topic": "customers",
	"reference.fx_rates_topic":  "fx-rates",
	// Empty: the customer.avsc and fx_rate.avsc built into the binary.
	"reference.customers_schema":  "",
	"reference.fx_rates_schema":   "",
	"reference.base_currency":     "USD",
	"reference.bootstrap_timeout": "2m",
	// Rides out a leader election on a reference topic without flapping
	// /readyz; refdata.DefaultMaxStaleness.
	"reference.max_staleness": "30s",
	// Fraud defaults from DESIGN.md: HIGH_AMOUNT at 5000.00 base, VELOCITY
	// above 5 orders in 10 minutes. Weights sum to 100 when all fire.
	"fraud.high_amount":             "5000.00",
	"fraud.high_amount_weight":      40,
	"fraud.country_mismatch_weight": 20,
	"fraud.unknown_customer_weight": 15,
	"fraud.velocity_max_orders":     5,
	"fraud.velocity_window":         "10m",
	"fraud.velocity_weight":         25,
	// 100k customers per partition: a few MB of timestamps at most.
	"fraud.velocity_max_customers": 100000,
	"shutdown_timeout":             "30s",
	// Long enough to ride out a broker or ClickHouse restart, or a pod
	// that starts before its dependencies (each takes 10-30 s to come
	// up), short enough that a real outage is reported within a minute.
	"startup_timeout": "60s",
	// No registry unless an avro-confluent pipeline needs one. A registry
	// answers in milliseconds; 5 s rides out a GC pause or a leader
	// election, and a slower answer holds the batch for a retry.
	"schema_registry.url":     "",
	"schema_registry.timeout": "5s",
	// No credentials, TLS by the URL's scheme (registry.go). Listed so
	// that their SLUICE_SCHEMA_REGISTRY_* variables are seen.
	"schema_registry.username":        "",
	"schema_registry.password":        "",
	"schema_registry.password_file":   "",
	"schema_registry.token":           "",
	"schema_registry.token_file":      "",
	"schema_registry.tls.enabled":     false,
	"schema_registry.tls.ca_file":     "",
	"schema_registry.tls.cert_file":   "",
	"schema_registry.tls.key_file":    "",
	"schema_registry.tls.server_name": "",
	// Plaintext, no SASL, no admin token: the loopback demo. Every key is
	// listed so that its SLUICE_* variable is seen (security.go).
	"kafka.tls.enabled":          false,
	"kafka.tls.ca_file":          "",
	"kafka.tls.cert_file":        "",
	"kafka.tls.key_file":         "",
	"kafka.tls.server_name":      "",
	"kafka.sasl.mechanism":       "",
	"kafka.sasl.username":        "",
	"kafka.sasl.password":        "",
	"kafka.sasl.password_file":   "",
	"clickhouse.password_file":   "",
	"clickhouse.tls.enabled":     false,
	"clickhouse.tls.ca_file":     "",
	"clickhouse.tls.cert_file":   "",
	"clickhouse.tls.key_file":    "",
	"clickhouse.tls.server_name": "",
	"admin.token":                "",
	"admin.token_file":           "",
}

// Load reads the YAML file at path (empty: defaults and environment only),
// applies SLUICE_* overrides, and validates the result. Every problem found
// is returned together as Errors.
func Load(path string) (*Config, error) {
	v := viper.New()
	v.SetEnvPrefix(EnvPrefix)
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()
	for k, d := range defaults {
		v.SetDefault(k, d)
	}
	dir := "."
	if path != "" {
		v.SetConfigFile(path)
		v.SetConfigType("yaml")
		if err := v.ReadInConfig(); err != nil {
			var pe *os.PathError
			if errors.As(err, &pe) {
				return nil, Errors{{Key: "-c", Problem: fmt.Sprintf("cannot read config file %s: %v", path, pe.Err)}}
			}
			return nil, Errors{{Key: "-c", Problem: fmt.Sprintf("%s is not valid YAML: %v", path, err)}}
		}
		dir = filepath.Dir(path)
	}
	settings := v.AllSettings()
	var errs Errors
	errs = append(errs, unknownKeys(settings, reflect.TypeOf(Config{}), "")...)

	var cfg Config
	dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		Result:           &cfg,
		WeaklyTypedInput: false,
		ErrorUnused:      false, // unknownKeys reports these with their path
		DecodeHook: mapstructure.ComposeDecodeHookFunc(
			byteSizeHook,
			secretHook,
			stringToBoolHook,
			stringToIntHook,
			mapstructure.StringToTimeDurationHookFunc(),
			mapstructure.StringToSliceHookFunc(","),
		),
	})
	if err != nil {
		return nil, err
	}
	if err := dec.Decode(settings); err != nil {
		errs = append(errs, decodeErrors(err)...)
	}
	if len(errs) > 0 {
		return nil, errs.sorted()
	}
	cfg.Dir = dir
	cfg.resolve()
	errs = cfg.resolveSecurity()
	errs = append(errs, cfg.resolveRegistry()...)
	if errs = append(errs, cfg.Validate()...); len(errs) > 0 {
		return nil, errs.sorted()
	}
	return &cfg, nil
}

// resolve fills each pipeline's inherited batch limits and makes schema
// paths absolute against the config file's directory.
func (c *Config) resolve() {
	// "a:1, b:2" from SLUICE_KAFKA_BROKERS splits into "a:1" and " b:2";
	// Validate trims before it checks, so the clients must get trimmed
	// addresses too (franz-go would dial the host " b").
	if c.ClickHouse.Cluster.Enabled() {
		// On a cluster every replica serves what reads the Distributed
		// tables (clickhouse.addr is not a key of its own there).
		c.ClickHouse.Addr = nil
		for _, rs := range c.ClickHouse.Cluster.Replicas() {
			c.ClickHouse.Addr = append(c.ClickHouse.Addr, rs...)
		}
	}
	for _, list := range [][]string{c.Kafka.Brokers, c.ClickHouse.Addr} {
		for i := range list {
			list[i] = strings.TrimSpace(list[i])
		}
	}
	for _, p := range []*string{&c.Reference.CustomersSchema, &c.Reference.FxRatesSchema} {
		if *p != "" && !filepath.IsAbs(*p) {
			if abs, err := filepath.Abs(filepath.Join(c.Dir, *p)); err == nil {
				*p = abs
			}
		}
	}
	for i := range c.Pipelines {
		p := &c.Pipelines[i]
		if p.Batch.MaxRows == 0 {
			p.Batch.MaxRows = c.Batch.MaxRows
		}
		if p.Batch.MaxBytes == 0 {
			p.Batch.MaxBytes = c.Batch.MaxBytes
		}
		if p.Batch.MaxWait == 0 {
			p.Batch.MaxWait = c.Batch.MaxWait
		}
		if p.Batch.Combine == 0 {
			p.Batch.Combine = c.Batch.Combine
		}
		if p.Format == "" {
			p.Format = "avro"
		}
		if p.Table == "" {
			p.Table = p.Name
		}
		if p.Schema != "" && !filepath.IsAbs(p.Schema) {
			if abs, err := filepath.Abs(filepath.Join(c.Dir, p.Schema)); err == nil {
				p.Schema = abs
			}
		}
	}
}

var (
	byteSizeType = reflect.TypeOf(ByteSize(0))
	secretType   = reflect.TypeOf(Secret(""))
)

// secretHook lets a password that YAML reads as a number (password: 1234)
// be a Secret; anything else that is not a string is left for the decoder
// to refuse (keyedLine keeps its value out of the message).
func secretHook(from, to reflect.Type, data any) (any, error) {
	if to != secretType {
		return data, nil
	}
	switch from.Kind() {
	case reflect.Int, reflect.Int64, reflect.Uint64, reflect.Float64:
		return fmt.Sprint(data), nil
	}
	return data, nil
}

// byteSizeHook lets a ByteSize be written as a number or "16MiB".
func byteSizeHook(from, to reflect.Type, data any) (any, error) {
	if to != byteSizeType {
		return data, nil
	}
	switch d := data.(type) {
	case string:
		return ParseByteSize(d)
	case int:
		return ByteSize(d), nil
	case int64:
		return ByteSize(d), nil
	case uint64:
		return ByteSize(d), nil
	case float64:
		if d != float64(int64(d)) {
			return nil, fmt.Errorf("%v is not a whole number of bytes", d)
		}
		return ByteSize(d), nil
	}
	return data, nil
}

// stringToIntHook lets an int key be overridden from the environment, where
// every value is a string (SLUICE_BATCH_MAX_ROWS=1000). A string that is not
// a number is passed on unchanged, so the decoder reports it as a wrong type.
func stringToIntHook(from, to reflect.Type, data any) (any, error) {
	if from.Kind() != reflect.String || to.Kind() != reflect.Int {
		return data, nil
	}
	if n, err := strconv.Atoi(strings.TrimSpace(data.(string))); err == nil {
		return n, nil
	}
	return data, nil
}

// stringToBoolHook is stringToIntHook for bool keys
// (SLUICE_KAFKA_TLS_ENABLED=true).
func stringToBoolHook(from, to reflect.Type, data any) (any, error) {
	if from.Kind() != reflect.String || to.Kind() != reflect.Bool {
		return data, nil
	}
	if b, err := strconv.ParseBool(strings.TrimSpace(data.(string))); err == nil {
		return b, nil
	}
	return data, nil
}

// unknownKeys walks the settings against the Config struct and reports every
// key the struct does not have, with its full path (pipelines[1].tranforms).
func unknownKeys(settings map[string]any, t reflect.Type, prefix string) Errors {
	fields := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("mapstructure")
		if tag == "" || tag == "-" {
			continue
		}
		fields[tag] = f.Type
	}
	var errs Errors
	for k, val := range settings {
		path := k
		if prefix != "" {
			path = prefix + "." + k
		}
		ft, ok := fields[k]
		if !ok {
			errs = append(errs, &Error{Key: path, Problem: "unknown key" + suggest(k, fields)})
			continue
		}
		switch {
		case ft.Kind() == reflect.Struct && ft != reflect.TypeOf(time.Duration(0)):
			if m, ok := val.(map[string]any); ok {
				errs = append(errs, unknownKeys(m, ft, path)...)
			}
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			if list, ok := val.([]any); ok {
				for i, item := range list {
					if m, ok := item.(map[string]any); ok {
						errs = append(errs, unknownKeys(m, ft.Elem(), fmt.Sprintf("%s[%d]", path, i))...)
					}
				}
			}
		}
	}
	return errs
}

// suggest names the known key nearest to a misspelt one.
func suggest(k string, fields map[string]reflect.Type) string {
	best, bestD := "", 3
	for f := range fields {
		if d := editDistance(k, f); d < bestD {
			best, bestD = f, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

var quotedKey = regexp.MustCompile(`'([^']*)'`)

// decodeErrors turns mapstructure's joined type errors into keyed Errors.
func decodeErrors(err error) Errors {
	var errs Errors
	var joined interface{ Unwrap() []error }
	list := []error{err}
	if errors.As(err, &joined) {
		list = joined.Unwrap()
	}
	for _, e := range list {
		msg := e.Error()
		if strings.HasPrefix(msg, "decoding failed due to the following error(s):") {
			for _, line := range strings.Split(msg, "\n") {
				if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "decoding failed") {
					errs = append(errs, keyedLine(line))
				}
			}
			continue
		}
		errs = append(errs, keyedLine(msg))
	}
	return errs
}

func keyedLine(line string) *Error {
	if m := quotedKey.FindStringSubmatchIndex(line); m != nil {
		key := line[m[2]:m[3]]
		rest := strings.TrimSpace(line[m[1]:])
		if IsSecretKey(key) {
			// mapstructure quotes the value it could not convert.
			if i := strings.Index(rest, ", value:"); i >= 0 {
				rest = rest[:i]
			}
		}
		return &Error{Key: key, Problem: "wrong type: " + rest}
	}
	return &Error{Key: "?", Problem: line}
}

// Error is one problem with one key.
type Error struct {
	Key     string
	Problem string
}

func (e *Error) Error() string { return e.Key + ": " + e.Problem }

// Errors is every problem found in one config; the CLI exits 2 on it.
type Errors []*Error

func (es Errors) Error() string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.Error()
	}
	return "invalid config: " + strings.Join(parts, "; ")
}

func (es Errors) sorted() Errors {
	sort.SliceStable(es, func(i, j int) bool { return es[i].Key < es[j].Key })
	return es
}
