package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluice-etl/sluice/pkg/config"
)

// demoConfig is the configuration shipped at the repository root.
const demoConfig = "../../sluice.yaml"

func mustAbs(t *testing.T, p string) string {
	t.Helper()
	abs, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

func TestLoadDemoConfig(t *testing.T) {
	cfg, err := config.Load(demoConfig)
	if err != nil {
		t.Fatalf("Load(%s): %v", demoConfig, err)
	}

	checks := []struct {
		name      string
		got, want any
	}{
		{"kafka.brokers", cfg.Kafka.Brokers, []string{"127.0.0.1:9092"}},
		{"kafka.group", cfg.Kafka.Group, "sluice"},
		{"kafka.client_id (default)", cfg.Kafka.ClientID, "sluice"},
		{"kafka.dlq_topic", cfg.Kafka.DLQTopic, "sluice-dlq"},
		{"kafka.session_timeout (default)", cfg.Kafka.SessionTimeout, 45 * time.Second},
		{"kafka.rebalance_timeout (default)", cfg.Kafka.RebalanceTimeout, 60 * time.Second},
		{"kafka.fetch_max_wait (default)", cfg.Kafka.FetchMaxWait, 500 * time.Millisecond},
		{"clickhouse.addr", cfg.ClickHouse.Addr, []string{"127.0.0.1:9000"}},
		{"clickhouse.database", cfg.ClickHouse.Database, "sluice"},
		{"clickhouse.username (default)", cfg.ClickHouse.Username, "default"},
		{"clickhouse.password (default)", string(cfg.ClickHouse.Password), ""},
		{"clickhouse.dial_timeout (default)", cfg.ClickHouse.DialTimeout, 5 * time.Second},
		{"clickhouse.insert_timeout (default)", cfg.ClickHouse.InsertTimeout, 60 * time.Second},
		{"admin.listen", cfg.Admin.Listen, "127.0.0.1:8080"},
		{"admin.lagging_after (default)", cfg.Admin.LaggingAfter, 30 * time.Second},
		{"log.level", cfg.Log.Level, "info"},
		{"log.format (default)", cfg.Log.Format, "text"},
		{"batch", cfg.Batch, config.Batch{MaxRows: 20000, MaxBytes: 12 << 20, MaxWait: time.Second, Combine: 1}},
		{"inflight_bytes", cfg.InflightBytes, config.ByteSize(64 << 20)},
		{"shutdown_timeout", cfg.ShutdownTimeout, 30 * time.Second},
		{"startup_timeout", cfg.StartupTimeout, 60 * time.Second},
		{"reference.max_staleness", cfg.Reference.MaxStaleness, 30 * time.Second},
		{"Dir", cfg.Dir, filepath.Dir(demoConfig)},
		{"len(pipelines)", len(cfg.Pipelines), 3},
	}
	for _, c := range checks {
		if !equal(c.got, c.want) {
			t.Errorf("%s = %#v, want %#v", c.name, c.got, c.want)
		}
	}
	if t.Failed() {
		return
	}

	inherited := config.Batch{MaxRows: 20000, MaxBytes: 12 << 20, MaxWait: time.Second, Combine: 1}
	want := []config.Pipeline{
		{Name: "orders", Topic: "orders", Format: "avro", Table: "orders",
			Schema: mustAbs(t, "../../schemas/avro/order.avsc"), Transforms: []string{"order_items", "currency", "customer", "fraud"}, Batch: inherited},
		{Name: "payments", Topic: "payments", Format: "avro", Table: "payments",
			Schema: mustAbs(t, "../../schemas/avro/payment.avsc"), Transforms: []string{"payment_status", "currency"}, Batch: inherited},
		{Name: "shipments", Topic: "shipments", Format: "avro", Table: "shipments",
			Schema: mustAbs(t, "../../schemas/avro/shipment.avsc"), Batch: inherited},
	}
	for i, w := range want {
		p := cfg.Pipelines[i]
		if p.Name != w.Name || p.Topic != w.Topic || p.Format != w.Format || p.Table != w.Table ||
			p.Schema != w.Schema || !slices.Equal(p.Transforms, w.Transforms) || p.Batch != w.Batch {
			t.Errorf("pipelines[%d] = %+v\nwant %+v", i, p, w)
		}
		if !filepath.IsAbs(p.Schema) {
			t.Errorf("pipelines[%d].schema %q is not absolute", i, p.Schema)
		}
		if _, err := os.Stat(p.Schema); err != nil {
			t.Errorf("pipelines[%d].schema: %v", i, err)
		}
	}
}

func equal(a, b any) bool {
	if as, ok := a.([]string); ok {
		bs, ok := b.([]string)
		return ok && slices.Equal(as, bs)
	}
	return a == b
}

// TestLoadPipelineOverride checks that a pipeline's own batch limits win over
// the global ones field by field, and that the zero fields inherit.
func TestLoadPipelineOverride(t *testing.T) {
	cfg, err := config.Load("testdata/good_override.yml")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if len(cfg.Pipelines) != 2 {
		t.Fatalf("got %d pipelines, want 2", len(cfg.Pipelines))
	}
	orders, payments := cfg.Pipelines[0], cfg.Pipelines[1]

	if want := (config.Batch{MaxRows: 20000, MaxBytes: 8 << 20, MaxWait: 2 * time.Second, Combine: 1}); cfg.Batch != want {
		t.Errorf("global batch = %+v, want %+v", cfg.Batch, want)
	}
	if want := (config.Batch{MaxRows: 500, MaxBytes: 8 << 20, MaxWait: 250 * time.Millisecond, Combine: 4}); orders.Batch != want {
		t.Errorf("orders batch = %+v, want %+v (own max_rows, max_wait and combine, inherited max_bytes)", orders.Batch, want)
	}
	if payments.Batch != cfg.Batch {
		t.Errorf("payments batch = %+v, want the global %+v", payments.Batch, cfg.Batch)
	}
	if orders.Format != "avro" || orders.Table != "orders" {
		t.Errorf("orders format/table = %q/%q, want the defaults avro/orders", orders.Format, orders.Table)
	}
	if payments.Format != "json" || payments.Table != "payment_events" {
		t.Errorf("payments format/table = %q/%q, want json/payment_events", payments.Format, payments.Table)
	}
	// Relative schema paths resolve against the config file's directory,
	// not the working directory.
	if want := mustAbs(t, "../../schemas/avro/order.avsc"); orders.Schema != want {
		t.Errorf("orders schema = %q, want %q", orders.Schema, want)
	}
	if !slices.Equal(cfg.Kafka.Brokers, []string{"k1:9092", "k2:9092"}) || cfg.Kafka.Group != "test-group" {
		t.Errorf("kafka = %+v", cfg.Kafka)
	}
	if cfg.ClickHouse.Database != "analytics" || cfg.Log.Format != "text" || cfg.InflightBytes != 64<<20 {
		t.Errorf("clickhouse.database %q, log.format %q, inflight_bytes %v", cfg.ClickHouse.Database, cfg.Log.Format, cfg.InflightBytes)
	}
}

func TestLoadEnvOverrides(t *testing.T) {
	tests := []struct {
		env   string
		value string
		check func(*config.Config) (got any, ok bool)
	}{
		{"SLUICE_KAFKA_BROKERS", "a:1,b:2", func(c *config.Config) (any, bool) {
			return c.Kafka.Brokers, slices.Equal(c.Kafka.Brokers, []string{"a:1", "b:2"})
		}},
		{"SLUICE_KAFKA_BROKERS", "a:1, b:2 ", func(c *config.Config) (any, bool) {
			return c.Kafka.Brokers, slices.Equal(c.Kafka.Brokers, []string{"a:1", "b:2"})
		}},
		{"SLUICE_KAFKA_GROUP", "other-group", func(c *config.Config) (any, bool) {
			return c.Kafka.Group, c.Kafka.Group == "other-group"
		}},
		{"SLUICE_CLICKHOUSE_ADDR", "ch1:9000,ch2:9000", func(c *config.Config) (any, bool) {
			return c.ClickHouse.Addr, slices.Equal(c.ClickHouse.Addr, []string{"ch1:9000", "ch2:9000"})
		}},
		{"SLUICE_CLICKHOUSE_DATABASE", "warehouse", func(c *config.Config) (any, bool) {
			return c.ClickHouse.Database, c.ClickHouse.Database == "warehouse"
		}},
		{"SLUICE_ADMIN_LISTEN", "0.0.0.0:9999", func(c *config.Config) (any, bool) {
			return c.Admin.Listen, c.Admin.Listen == "0.0.0.0:9999"
		}},
		{"SLUICE_BATCH_MAX_ROWS", "1234", func(c *config.Config) (any, bool) {
			// The override reaches the pipelines that inherit it.
			return [2]int{c.Batch.MaxRows, c.Pipelines[0].Batch.MaxRows},
				c.Batch.MaxRows == 1234 && c.Pipelines[0].Batch.MaxRows == 1234
		}},
	}
	for _, tt := range tests {
		t.Run(tt.env+"="+tt.value, func(t *testing.T) {
			t.Setenv(tt.env, tt.value)
			cfg, err := config.Load(demoConfig)
			if err != nil {
				t.Fatalf("Load with %s=%q: %v", tt.env, tt.value, err)
			}
			if got, ok := tt.check(cfg); !ok {
				t.Errorf("%s=%q: got %v", tt.env, tt.value, got)
			}
		})
	}
}

// TestLoadEnvOverrideInvalid checks that a bad value from the environment is
// reported under the key it overrides.
func TestLoadEnvOverrideInvalid(t *testing.T) {
	t.Setenv("SLUICE_BATCH_MAX_ROWS", "many")
	_, err := config.Load(demoConfig)
	var errs config.Errors
	if !errors.As(err, &errs) {
		t.Fatalf("Load: got %v, want config.Errors", err)
	}
	if !hasKey(errs, "batch.max_rows") {
		t.Errorf("errors %v do not name batch.max_rows", errs)
	}
}

func hasKey(errs config.Errors, key string) bool {
	for _, e := range errs {
		if e.Key == key {
			return true
		}
	}
	return false
}

// TestLoadBadConfigs loads every testdata/*.bad.yml and checks the error it
// must produce: the key and a fragment of the problem.
func TestLoadBadConfigs(t *testing.T) {
	tests := map[string]struct {
		key      string
		fragment string
	}{
		"unknown_top_level_key.bad.yml":     {"shutdown_timout", `unknown key (did you mean "shutdown_timeout"?)`},
		"unknown_pipeline_key.bad.yml":      {"pipelines[0].tranforms", `unknown key (did you mean "transforms"?)`},
		"wrong_type.bad.yml":                {"batch.max_rows", "wrong type: expected type 'int'"},
		"bad_duration.bad.yml":              {"batch.max_wait", "time: unknown unit"},
		"bad_byte_size.bad.yml":             {"batch.max_bytes", `"16 furlongs" is not a size`},
		"max_rows_too_large.bad.yml":        {"pipelines[0].batch.max_rows", "must be between 1 and 1000000"},
		"combine_too_large.bad.yml":         {"pipelines[0].batch.combine", "must be between 1 and 64"},
		"empty_brokers.bad.yml":             {"kafka.brokers", "must name at least one host:port"},
		"broker_without_port.bad.yml":       {"kafka.brokers", `"kafka1" is not host:port`},
		"missing_topic.bad.yml":             {"pipelines[0].topic", "missing"},
		"duplicate_topic.bad.yml":           {"pipelines[1].topic", `"orders" is also read by pipelines[0]`},
		"duplicate_name.bad.yml":            {"pipelines[1].name", `"orders" is also the name of pipelines[0]`},
		"unknown_format.bad.yml":            {"pipelines[0].format", `"protobuf" is not one of avro, avro-confluent, json`},
		"missing_schema_file.bad.yml":       {"pipelines[0].schema", "no such file or directory"},
		"bad_table_name.bad.yml":            {"pipelines[0].table", `"orders-v2" is not a valid table name`},
		"topic_is_dlq.bad.yml":              {"pipelines[0].topic", `"dead-letters" is the dead-letter topic`},
		"invalid_yaml.bad.yml":              {"-c", "is not valid YAML"},
		"inflight_below_max_bytes.bad.yml":  {"inflight_bytes", "must be at least batch.max_bytes (16MiB), got 1MiB"},
		"bad_log_level.bad.yml":             {"log.level", `"verbose" is not one of debug, info, warn, error`},
		"registry_url_missing.bad.yml":      {"schema_registry.url", "missing: pipelines[0] (orders) has format avro-confluent"},
		"registry_url_not_http.bad.yml":     {"schema_registry.url", `"localhost:8081" must start with http:// or https://`},
		"registry_timeout_zero.bad.yml":     {"schema_registry.timeout", "must be a positive duration"},
		"startup_timeout_zero.bad.yml":      {"startup_timeout", "must be a positive duration"},
		"out_of_range_policy.bad.yml":       {"kafka.on_offset_out_of_range", `"earliest" is not one of stop, resume_from_log_start`},
		"unknown_outcome_wait_zero.bad.yml": {"clickhouse.unknown_outcome_wait", "must be a positive duration"},
		"instance_id_invalid.bad.yml":       {"kafka.instance_id", `"pod 1/a" may hold only letters`},
		"fetch_max_wait_too_long.bad.yml":   {"kafka.fetch_max_wait", "must be between 1ms and 1m, got 2m0s"},
		"max_staleness_too_small.bad.yml":   {"reference.max_staleness", "must be at least 2s (the follower confirms every second that it is current), got 500ms"},
		"sasl_mechanism_unknown.bad.yml":    {"kafka.sasl.mechanism", `"GSSAPI" is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512`},
		"sasl_without_mechanism.bad.yml":    {"kafka.sasl.mechanism", "missing: kafka.sasl.username or password is set"},
		"sasl_without_password.bad.yml":     {"kafka.sasl.password", "missing: kafka.sasl.mechanism SCRAM-SHA-512 needs a password"},
		"sasl_password_and_file.bad.yml":    {"kafka.sasl.password_file", "set either kafka.sasl.password or kafka.sasl.password_file, not both"},
		"password_file_missing.bad.yml":     {"clickhouse.password_file", "no-such-password.txt: no such file or directory"},
		"password_file_empty.bad.yml":       {"admin.token_file", "empty.secret is empty"},
		"tls_without_enabled.bad.yml":       {"kafka.tls.enabled", "is false but kafka.tls.ca_file is set"},
		"tls_ca_missing.bad.yml":            {"clickhouse.tls.ca_file", "no-such-ca.pem: no such file or directory"},
		"tls_ca_not_pem.bad.yml":            {"kafka.tls.ca_file", "order.avsc holds no PEM certificate"},
		"tls_cert_without_key.bad.yml":      {"kafka.tls.key_file", "missing: a client certificate needs both kafka.tls.cert_file and kafka.tls.key_file"},
		"admin_token_short.bad.yml":         {"admin.token", "must be at least 16 characters, got 7"},
		"secret_wrong_type.bad.yml":         {"clickhouse.password", "wrong type"},
		"lagging_below_max_wait.bad.yml":    {"admin.lagging_after", "must be longer than pipelines[1].batch.max_wait (45s): every record waits that long for its batch, got 30s"},
	}

	// Every bad file has an expectation and every expectation a file.
	files, err := filepath.Glob("testdata/*.bad.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if _, ok := tests[filepath.Base(f)]; !ok {
			t.Errorf("%s has no expectation in this table", f)
		}
	}

	for file, tt := range tests {
		t.Run(file, func(t *testing.T) {
			path := filepath.Join("testdata", file)
			if _, err := os.Stat(path); err != nil {
				t.Fatalf("testdata file: %v", err)
			}
			cfg, err := config.Load(path)
			if err == nil {
				t.Fatalf("Load succeeded (%+v), want an error on %s", cfg, tt.key)
			}
			var errs config.Errors
			if !errors.As(err, &errs) {
				t.Fatalf("Load error %T (%v) is not config.Errors", err, err)
			}
			var found *config.Error
			for _, e := range errs {
				if e.Key == tt.key {
					found = e
					break
				}
			}
			if found == nil {
				t.Fatalf("no error on key %q in %v", tt.key, errs)
			}
			if !strings.Contains(found.Problem, tt.fragment) {
				t.Errorf("%s: problem %q does not contain %q", tt.key, found.Problem, tt.fragment)
			}
			// Each file has exactly one problem, so no other key may be blamed.
			for _, e := range errs {
				if e.Key != tt.key {
					t.Errorf("unexpected error on another key: %v", e)
				}
			}
			if !strings.Contains(err.Error(), tt.key+": ") {
				t.Errorf("Errors.Error() %q does not name %s", err.Error(), tt.key)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := config.Load(filepath.Join(t.TempDir(), "absent.yml"))
	var errs config.Errors
	if !errors.As(err, &errs) || !hasKey(errs, "-c") {
		t.Fatalf("Load(absent) = %v, want a config.Errors on -c", err)
	}
	if !strings.Contains(errs[0].Problem, "cannot read config file") {
		t.Errorf("problem = %q", errs[0].Problem)
	}
}

func TestParseByteSize(t *testing.T) {
	tests := []struct {
		in      string
		want    config.ByteSize
		wantErr string
	}{
		{in: "0", want: 0},
		{in: "512", want: 512},
		{in: "1048576", want: 1 << 20},
		{in: "512B", want: 512},
		{in: "64KiB", want: 64 << 10},
		{in: "16MiB", want: 16 << 20},
		{in: "1GiB", want: 1 << 30},
		{in: "64K", want: 64 << 10},
		{in: "16M", want: 16 << 20},
		{in: "2G", want: 2 << 30},
		{in: "1KB", want: 1000},
		{in: "16MB", want: 16_000_000},
		{in: "1GB", want: 1_000_000_000},
		{in: " 16 MiB ", want: 16 << 20},
		{in: "4194304GiB", want: 1 << 52},
		{in: "", wantErr: "is not a size"},
		{in: "MiB", wantErr: "is not a size"},
		{in: "lots", wantErr: "is not a size"},
		{in: "-1", wantErr: "is not a size"},
		{in: "-1MiB", wantErr: "is not a size"},
		{in: "1.5MiB", wantErr: "is not a size"},
		{in: "16 furlongs", wantErr: "is not a size"},
		{in: "16TiB0", wantErr: "is not a size"},
		{in: "99999999999999999999", wantErr: "is not a size"},
		{in: "4294967296GiB", want: 1 << 62},
		{in: "4294967297GiB", wantErr: "is too large"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := config.ParseByteSize(tt.in)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("ParseByteSize(%q) = %d, want an error", tt.in, got)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("ParseByteSize(%q) error %q does not contain %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseByteSize(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("ParseByteSize(%q) = %d, want %d", tt.in, got, tt.want)
			}
		})
	}
}

func TestByteSizeString(t *testing.T) {
	tests := []struct {
		in   config.ByteSize
		want string
	}{
		{0, "0"},
		{1, "1"},
		{1000, "1000"},
		{1023, "1023"},
		{1024, "1KiB"},
		{1536, "1536"},
		{64 << 10, "64KiB"},
		{1 << 20, "1MiB"},
		{1<<20 + 1024, "1025KiB"},
		{16 << 20, "16MiB"},
		{1536 << 20, "1536MiB"},
		{1 << 30, "1GiB"},
		{4 << 30, "4GiB"},
		{-1024, "-1KiB"},
	}
	for _, tt := range tests {
		if got := tt.in.String(); got != tt.want {
			t.Errorf("ByteSize(%d).String() = %q, want %q", int64(tt.in), got, tt.want)
		}
	}
	// String's output parses back to the same size.
	for _, tt := range tests {
		if tt.in < 0 {
			continue
		}
		back, err := config.ParseByteSize(tt.in.String())
		if err != nil || back != tt.in {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", tt.in.String(), back, err, int64(tt.in))
		}
	}
}
