//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/linkedin/goavro/v2"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-etl/sluice/internal/itest"
	"github.com/sluice-etl/sluice/pkg/gen"
)

// reviewsDDL is the table a user adds for the new topic: its columns are
// the schema's fields plus the source coordinates.
const reviewsDDL = `CREATE TABLE %s.reviews (
    review_id      String,
    product_sku    String,
    rating         UInt8,
    title          Nullable(String),
    verified       UInt8,
    helpful_votes  Int64,
    created_at     DateTime('UTC'),
    language       Enum8('EN' = 1, 'DE' = 2, 'FR' = 3),
    tags           Array(String),
    sentiment      Float64,
    price_paid     Decimal(10, 2),
    _topic         String,
    _partition     UInt32,
    _offset        UInt64,
    _ingested_at   DateTime('UTC')
) ENGINE = MergeTree ORDER BY (_topic, _partition, _offset)`

// TestTopicsAddedByConfigAlone loads a fourth topic with its own .avsc and
// table, which no Go code knows, and orders in JSON format, with nothing but
// pipeline entries in the config.
func TestTopicsAddedByConfigAlone(t *testing.T) {
	w := newWorld(t)
	reviews, jsonOrders := w.name("reviews"), w.name("orders_json")
	w.createTopic(reviews, 3)
	w.createTopic(jsonOrders, 3)
	if err := w.ch.Exec(context.Background(), fmt.Sprintf(reviewsDDL, w.db)); err != nil {
		t.Fatal(err)
	}
	schemaPath := filepath.Join(repoRoot(), "integration", "testdata", "review.avsc")
	schema, err := os.ReadFile(schemaPath)
	if err != nil {
		t.Fatal(err)
	}
	codec, err := goavro.NewCodec(string(schema))
	if err != nil {
		t.Fatal(err)
	}

	const n = 3000
	var recs []*kgo.Record
	for i := 0; i < n; i++ {
		var title any // nullable: every third review has none
		if i%3 != 0 {
			title = map[string]any{"string": fmt.Sprintf("Review %d", i)}
		}
		v, err := codec.BinaryFromNative(nil, map[string]any{
			"review_id": fmt.Sprintf("r-%05d", i), "product_sku": fmt.Sprintf("SKU-%03d", i%97),
			"rating": int32(1 + i%5), "title": title, "verified": i%2 == 0, "helpful_votes": int64(i * 1000003),
			"created_at": time.UnixMilli(1767225600000 + int64(i)*60_000).UTC(), "language": []string{"EN", "DE", "FR"}[i%3],
			"tags": []any{"tag-a", fmt.Sprintf("t%d", i%7)}, "sentiment": float64(i%11) / 10,
			"price_paid": big.NewRat(int64(i*137+5), 100),
		})
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, &kgo.Record{Topic: reviews, Key: []byte(fmt.Sprintf("r-%05d", i)), Value: v})
	}

	// Orders as JSON: same field names, decimals as strings, timestamps
	// as epoch milliseconds.
	g, err := gen.New(gen.Options{Seed: 11, SchemaDir: filepath.Join(repoRoot(), "schemas", "avro")})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]gen.Order{}
	for seq := 0; seq < n; seq++ {
		o := g.Order(seq)
		want[o.OrderID] = o
		items := make([]map[string]any, len(o.Items))
		for i, it := range o.Items {
			items[i] = map[string]any{"sku": it.SKU, "quantity": it.Quantity, "unit_price": it.UnitPrice.StringFixed(2)}
		}
		v, err := json.Marshal(map[string]any{
			"order_id": o.OrderID, "customer_id": o.CustomerID, "created_at": o.CreatedAt.UnixMilli(),
			"currency": o.Currency, "total": o.Total.StringFixed(2), "status": o.Status, "channel": o.Channel,
			"shipping_country": o.ShippingCountry, "items": items, "coupon": o.Coupon,
		})
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, &kgo.Record{Topic: jsonOrders, Key: []byte(o.CustomerID), Value: v})
	}
	if err := w.kcl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	group := w.name("g")
	cfg := w.sluiceConfig(group, fmt.Sprintf(`  - name: reviews
    topic: %s
    format: avro
    schema: %s
    table: reviews
  - name: orders_json
    topic: %s
    format: json
    schema: %s
    table: orders
    transforms: [order_items]
`, reviews, schemaPath, jsonOrders, filepath.Join(repoRoot(), "schemas", "avro", "order.avsc")))
	s := w.startSluice(cfg)
	waitUntil(t, "both topics committed at the log end", 2*time.Minute, func() bool {
		return itest.EqualOffsets(w.committed(group, reviews), w.endOffsets(reviews)) &&
			itest.EqualOffsets(w.committed(group, jsonOrders), w.endOffsets(jsonOrders))
	})
	s.stop(t)

	if got := w.count(fmt.Sprintf("SELECT count() FROM %s.reviews", w.db)); got != n {
		t.Fatalf("reviews holds %d rows, want %d", got, n)
	}
	// Spot-check every column of a few rows against what was produced.
	for _, i := range []int{0, 1, 2, 1234, n - 1} {
		var title, lang, tags, price string
		var rating, verified uint8
		var votes int64
		var created uint32
		var sentiment float64
		err := w.ch.QueryRow(context.Background(), fmt.Sprintf(`SELECT ifNull(title, '<null>'), rating, verified, helpful_votes,
			toUnixTimestamp(created_at), toString(language), arrayStringConcat(tags, '|'), sentiment, toString(price_paid)
			FROM %s.reviews WHERE review_id = ?`, w.db), fmt.Sprintf("r-%05d", i)).Scan(
			&title, &rating, &verified, &votes, &created, &lang, &tags, &sentiment, &price)
		if err != nil {
			t.Fatalf("review %d: %v", i, err)
		}
		wantTitle := "<null>"
		if i%3 != 0 {
			wantTitle = fmt.Sprintf("Review %d", i)
		}
		wantVerified := uint8(0)
		if i%2 == 0 {
			wantVerified = 1
		}
		got := fmt.Sprint(title, rating, verified, votes, created, lang, tags, sentiment, dec(price).StringFixed(2))
		exp := fmt.Sprint(wantTitle, uint8(1+i%5), wantVerified, int64(i*1000003), uint32(1767225600+i*60), []string{"EN", "DE", "FR"}[i%3],
			fmt.Sprintf("tag-a|t%d", i%7), float64(i%11)/10, dec(fmt.Sprintf("%d", i*137+5)).Shift(-2).StringFixed(2))
		if got != exp {
			t.Errorf("review %d:\n got %s\nwant %s", i, got, exp)
		}
	}
	w.checkOrders(want)
}
