//go:build integration

package integration

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/linkedin/goavro/v2"
	"github.com/shopspring/decimal"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/sluice-etl/sluice/internal/itest"
	"github.com/sluice-etl/sluice/pkg/dlq"
	"github.com/sluice-etl/sluice/pkg/gen"
)

// badCase is one entry of the bad-input catalog: a record, and the stage and
// reason its dead letter must carry ("" stage: it must load).
type badCase struct {
	name   string
	topic  string // "avro", "json" or "confluent"
	key    string
	value  []byte
	stage  string
	reason string
}

// TestBadInputCatalog sends every kind of bad record we know of, between
// good ones, through real Kafka and ClickHouse. Each must end as a dead
// letter with a clear reason (or, where it is valid data, as a row); none may
// crash Sluice, stall a partition or vanish.
func TestBadInputCatalog(t *testing.T) {
	w := newWorld(t)
	topics := map[string]string{"avro": w.name("orders"), "json": w.name("orders_json"), "confluent": w.name("orders_cf")}
	for _, tp := range topics {
		w.createTopic(tp, 1)
	}
	// Allow the 1 MiB record on its topic (the broker default is 1 MB).
	mm := "2097152"
	if _, err := w.adm.AlterTopicConfigs(context.Background(), []kadm.AlterConfig{{Name: "max.message.bytes", Value: &mm}}, topics["avro"]); err != nil {
		t.Fatal(err)
	}
	schemaDir := filepath.Join(repoRoot(), "schemas", "avro")
	orderSchema, err := os.ReadFile(filepath.Join(schemaDir, "order.avsc"))
	if err != nil {
		t.Fatal(err)
	}
	g, err := gen.New(gen.Options{Seed: 5, SchemaDir: schemaDir})
	if err != nil {
		t.Fatal(err)
	}
	codecs := g.Codecs()
	good := func(seq int) gen.Order { return g.Order(seq) }
	enc := func(o gen.Order) []byte {
		_, v, err := codecs.EncodeOrder(o)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	// A writer that knows an enum symbol the contract does not.
	wider, err := goavro.NewCodec(strings.Replace(string(orderSchema), `"CANCELLED"]`, `"CANCELLED", "SHIPPED"]`, 1))
	if err != nil {
		t.Fatal(err)
	}
	nativeOrder := func(o gen.Order) map[string]any {
		items := make([]any, len(o.Items))
		for i, it := range o.Items {
			items[i] = map[string]any{"sku": it.SKU, "quantity": it.Quantity, "unit_price": it.UnitPrice.Rat()}
		}
		return map[string]any{"order_id": o.OrderID, "customer_id": o.CustomerID, "created_at": o.CreatedAt,
			"currency": o.Currency, "total": o.Total.Rat(), "status": string(o.Status), "channel": string(o.Channel),
			"shipping_country": o.ShippingCountry, "items": items, "coupon": nil}
	}
	shipped := nativeOrder(good(100))
	shipped["status"] = "SHIPPED"
	shippedBytes, err := wider.BinaryFromNative(nil, shipped)
	if err != nil {
		t.Fatal(err)
	}
	// A writer with room for 20 digits: the value overflows Decimal(18,2).
	widePrec, err := goavro.NewCodec(strings.Replace(string(orderSchema), `"precision": 18, "scale": 2}},
    {"name": "status"`, `"precision": 20, "scale": 2}},
    {"name": "status"`, 1))
	if err != nil {
		t.Fatal(err)
	}
	huge := nativeOrder(good(101))
	huge["total"] = decimal.RequireFromString("123456789012345678.90").Rat()
	hugeBytes, err := widePrec.BinaryFromNative(nil, huge)
	if err != nil {
		t.Fatal(err)
	}
	future := good(102)
	future.CreatedAt = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
	past := good(103)
	past.CreatedAt = time.Date(1969, 12, 31, 23, 0, 0, 0, time.UTC)
	negative := good(104)
	negative.Items[0].Quantity = -2
	bigCoupon := good(105)
	mib := strings.Repeat("x", 1<<20)
	bigCoupon.Coupon = &mib
	badUTF8 := good(106)
	badUTF8.ShippingCountry = "\xff\xfe"
	_, payment, err := codecs.EncodePayment(g.Payments(good(107))[0])
	if err != nil {
		t.Fatal(err)
	}
	valid := enc(good(108))
	orderJSON := func(o gen.Order, drop string, override map[string]any) []byte {
		items := make([]map[string]any, len(o.Items))
		for i, it := range o.Items {
			items[i] = map[string]any{"sku": it.SKU, "quantity": it.Quantity, "unit_price": it.UnitPrice.StringFixed(2)}
		}
		m := map[string]any{"order_id": o.OrderID, "customer_id": o.CustomerID, "created_at": o.CreatedAt.UnixMilli(),
			"currency": o.Currency, "total": o.Total.StringFixed(2), "status": o.Status, "channel": o.Channel,
			"shipping_country": o.ShippingCountry, "items": items}
		delete(m, drop)
		for k, v := range override {
			m[k] = v
		}
		b, _ := json.Marshal(m)
		return b
	}
	// Confluent framing: magic 0, big-endian schema id, Avro body.
	framed := func(id uint32, body []byte) []byte {
		out := []byte{0, 0, 0, 0, 0}
		binary.BigEndian.PutUint32(out[1:], id)
		return append(out, body...)
	}

	cases := []badCase{
		{name: "truncated Avro", topic: "avro", value: valid[:len(valid)/2], stage: "decode", reason: "truncated"},
		{name: "random bytes", topic: "avro", value: []byte{0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03}, stage: "decode", reason: "decode"},
		{name: "empty value", topic: "avro", value: []byte{}, stage: "decode", reason: "empty value"},
		{name: "tombstone on an event topic", topic: "avro", value: nil, stage: "decode", reason: "tombstone"},
		{name: "wrong schema (a payment on the orders topic)", topic: "avro", value: payment, stage: "decode", reason: "decode"},
		{name: "enum symbol not in the schema", topic: "avro", value: shippedBytes, stage: "decode", reason: "status"},
		{name: "decimal overflow", topic: "avro", value: hugeBytes, stage: "decode", reason: "total"},
		{name: "timestamp after the DateTime range", topic: "avro", value: enc(future), stage: "load", reason: "created_at"},
		{name: "timestamp before the DateTime range", topic: "avro", value: enc(past), stage: "load", reason: "created_at"},
		{name: "negative quantity", topic: "avro", value: enc(negative), stage: "transform", reason: "quantity"},
		{name: "invalid UTF-8", topic: "avro", value: enc(badUTF8), stage: "decode", reason: "UTF-8"},
		{name: "1 MiB string (valid: loads whole)", topic: "avro", value: enc(bigCoupon)},
		{name: "JSON missing a required field", topic: "json", value: orderJSON(good(109), "customer_id", nil), stage: "decode", reason: "customer_id"},
		{name: "JSON with a wrong type", topic: "json", value: orderJSON(good(110), "", map[string]any{"total": true}), stage: "decode", reason: "total"},
		{name: "JSON that is not JSON", topic: "json", value: []byte(`{"order_id": `), stage: "decode", reason: "decode"},
		{name: "Confluent magic byte, unknown schema id", topic: "confluent", value: framed(99, valid), stage: "decode", reason: "unknown schema id 99"},
		{name: "Confluent: no magic byte", topic: "confluent", value: valid, stage: "decode", reason: "Confluent"},
	}

	// A schema registry that knows id 1 = the order schema (franz-go's
	// in-memory one); every other id is its 404 with error code 40403.
	registry := srfake.New()
	defer registry.Close()
	registry.SeedSchema(topics["confluent"]+"-value", 1, 1, sr.Schema{Schema: string(orderSchema)})

	// Produce: a good record before and after every bad one, per topic.
	var recs []*kgo.Record
	goodPer := map[string]int{}
	seq := 1000
	for i, c := range cases {
		c.key = fmt.Sprintf("case-%02d", i)
		cases[i] = c
		for _, around := range []int{0, 1} {
			o := good(seq)
			seq++
			var v []byte
			switch c.topic {
			case "json":
				v = orderJSON(o, "", nil)
			case "confluent":
				v = framed(1, enc(o))
			default:
				v = enc(o)
			}
			recs = append(recs, &kgo.Record{Topic: topics[c.topic], Key: []byte("good"), Value: v})
			goodPer[c.topic]++
			if around == 0 {
				recs = append(recs, &kgo.Record{Topic: topics[c.topic], Key: []byte(c.key), Value: c.value})
			}
		}
	}
	big, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ProducerBatchMaxBytes(4<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer big.Close()
	for _, r := range recs {
		if err := big.ProduceSync(context.Background(), r).FirstErr(); err != nil {
			t.Fatalf("produce %s: %v", r.Key, err)
		}
	}

	group := w.name("g")
	schema := filepath.Join(schemaDir, "order.avsc")
	cfg := w.sluiceConfig(group, fmt.Sprintf(`  - {name: orders, topic: %s, format: avro, schema: %s, table: orders, transforms: [order_items]}
  - {name: orders_json, topic: %s, format: json, schema: %s, table: orders, transforms: [order_items]}
  - {name: orders_cf, topic: %s, format: avro-confluent, schema: %s, table: orders, transforms: [order_items]}
`, topics["avro"], schema, topics["json"], schema, topics["confluent"], schema), "schema_registry: {url: "+registry.URL()+"}")
	s := w.startSluice(cfg)
	waitUntil(t, "every topic committed at the log end", 2*time.Minute, func() bool {
		for _, tp := range topics {
			if !itest.EqualOffsets(w.committed(group, tp), w.endOffsets(tp)) {
				return false
			}
		}
		return true
	})
	s.stop(t)

	letters := map[string]*kgo.Record{}
	for _, l := range readAll(t, w, w.name("dlq")) {
		if _, dup := letters[string(l.Key)]; dup {
			t.Errorf("two dead letters for %s", l.Key)
		}
		letters[string(l.Key)] = l
	}
	wantRows := 0
	for _, c := range cases {
		l := letters[c.key]
		switch {
		case c.stage == "" && l != nil:
			t.Errorf("%s: dead-lettered (%s), want it loaded", c.name, dlq.Header(l, dlq.HeaderReason))
		case c.stage == "":
			wantRows++
		case l == nil:
			t.Errorf("%s: no dead letter", c.name)
		default:
			stage, reason := dlq.Header(l, dlq.HeaderStage), dlq.Header(l, dlq.HeaderReason)
			if stage != c.stage || !strings.Contains(reason, c.reason) {
				t.Errorf("%s: dead letter stage %q reason %q; want stage %q and a reason naming %q", c.name, stage, reason, c.stage, c.reason)
			}
			if string(l.Value) != string(c.value) {
				t.Errorf("%s: the dead letter does not keep the original value", c.name)
			}
			t.Logf("%-45s -> %s: %s", c.name, stage, reason)
		}
	}
	for k := range letters {
		if k == "good" {
			t.Errorf("a good record was dead-lettered: %s", dlq.Header(letters[k], dlq.HeaderReason))
		}
	}
	for _, n := range goodPer {
		wantRows += n
	}
	if got := w.count(fmt.Sprintf("SELECT count() FROM %s.orders", w.db)); got != uint64(wantRows) {
		t.Errorf("orders holds %d rows, want %d good ones", got, wantRows)
	}
	if got := w.count(fmt.Sprintf("SELECT count() FROM %s.orders WHERE length(coupon) = %d", w.db, 1<<20)); got != 1 {
		t.Errorf("the 1 MiB coupon: %d rows hold it whole, want 1", got)
	}
}

// TestBadConfigExitsTwo runs the real binary on broken configs: each exits
// with code 2 and names the key.
func TestBadConfigExitsTwo(t *testing.T) {
	w := newWorld(t)
	bin := sluiceBinary(t)
	schema := filepath.Join(repoRoot(), "schemas", "avro", "order.avsc")
	if err := w.ch.Exec(context.Background(), fmt.Sprintf("CREATE TABLE %s.thin (order_id String, _topic String, _partition UInt32, _offset UInt64, _ingested_at DateTime) ENGINE = MergeTree ORDER BY _offset", w.db)); err != nil {
		t.Fatal(err)
	}
	if err := w.ch.Exec(context.Background(), fmt.Sprintf("CREATE TABLE %s.no_source (order_id String, customer_id String) ENGINE = MergeTree ORDER BY order_id", w.db)); err != nil {
		t.Fatal(err)
	}
	base := func(brokers, ch, pipeline string) string {
		return fmt.Sprintf("kafka: {brokers: [%s]}\nclickhouse: {addr: [%s], database: %s}\nadmin: {listen: \"\"}\npipelines:\n%s", brokers, ch, w.db, pipeline)
	}
	okPipe := fmt.Sprintf("  - {name: o, topic: t1, schema: %s, table: orders, transforms: [order_items]}\n", schema)
	cases := []struct {
		name, yaml, key, fragment string
	}{
		{"unknown key", base(brokers[0], clickhouse, okPipe) + "batchh: {max_rows: 5}\n", "batchh", "unknown key"},
		{"wrong type", base(brokers[0], clickhouse, okPipe) + "batch: {max_rows: many}\n", "batch.max_rows", "wrong type"},
		{"missing topic", base(brokers[0], clickhouse, fmt.Sprintf("  - {name: o, schema: %s, table: orders}\n", schema)), "pipelines[0].topic", "missing"},
		// Unreachable services are an outage (exit 1 past startup_timeout),
		// not a config error: startup_test.go.
		{"table missing a required column", base(brokers[0], clickhouse, fmt.Sprintf("  - {name: o, topic: t1, schema: %s, table: no_source}\n", schema)), "pipelines[0].table", "_topic"},
		{"table missing", base(brokers[0], clickhouse, fmt.Sprintf("  - {name: o, topic: t1, schema: %s, table: nope}\n", schema)), "pipelines[0].table", "does not exist"},
		{"database missing", strings.Replace(base(brokers[0], clickhouse, okPipe), "database: "+w.db, "database: no_such_db", 1), "clickhouse.database", "sluice migrate"},
		{"unknown transform", base(brokers[0], clickhouse, fmt.Sprintf("  - {name: o, topic: t1, schema: %s, table: thin, transforms: [nope]}\n", schema)), "pipelines[0].transforms", "unknown transform"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "bad.yaml")
			if err := os.WriteFile(path, []byte(c.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(bin, "check", "-c", path)
			cmd.Env = append(os.Environ(), "SLUICE_KAFKA_BROKERS=", "SLUICE_CLICKHOUSE_ADDR=")
			out, err := cmd.CombinedOutput()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != 2 || !strings.Contains(string(out), c.key+":") || !strings.Contains(string(out), c.fragment) {
				t.Fatalf("exit %d, output:\n%s\nwant exit 2 naming %s with %q", code, out, c.key, c.fragment)
			}
		})
	}
}
