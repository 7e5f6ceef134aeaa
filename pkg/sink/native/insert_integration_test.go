//go:build integration

package native

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/ch-go/proto"
	"github.com/ClickHouse/clickhouse-go/v2"
)

// TestInsertRealServer inserts two rows of String, UInt32, Nullable
// Decimal, Enum8, Array(String) and DateTime into the 18.16 server, plain
// and LZ4-compressed, and reads them back through clickhouse-go.
func TestInsertRealServer(t *testing.T) {
	ctx := context.Background()
	addr := os.Getenv("SLUICE_CLICKHOUSE_ADDR")
	if addr == "" {
		addr = "127.0.0.1:9000"
	}
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr}, Protocol: clickhouse.Native,
		Auth: clickhouse.Auth{Database: "default", Username: "default"}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	db := fmt.Sprintf("native_it_%d", time.Now().UnixNano()%1_000_000_000)
	if err := conn.Exec(ctx, "CREATE DATABASE `"+db+"`"); err != nil {
		t.Fatalf("ClickHouse at %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = conn.Exec(context.Background(), "DROP DATABASE IF EXISTS `"+db+"`"); conn.Close() })
	if err := conn.Exec(ctx, "CREATE TABLE `"+db+"`.s (a String, b UInt32, c Nullable(Decimal(18, 2)), d Enum8('X' = 1, 'Y' = 2), e Array(String), f DateTime('UTC')) ENGINE = Memory"); err != nil {
		t.Fatal(err)
	}
	for _, z := range []bool{false, true} {
		c, err := Dial(ctx, Options{Addr: addr, Database: "default", User: "default", DialTimeout: 5 * time.Second, Compress: z})
		if err != nil {
			t.Fatal(err)
		}
		t.Log(c.Server().String(), c.Revision())
		err = c.Insert(ctx, Insert{
			Query: "INSERT INTO `" + db + "`.s (a, b, c, d, e, f)", QueryID: "smoke-1",
			Settings: []Setting{{"insert_quorum", 0}},
			Rows:     2,
			Columns: []proto.InputColumn{
				{Name: "a", Data: Strings{"x", "yy"}},
				{Name: "b", Data: proto.ColUInt32{1, 2}},
				{Name: "c", Data: Nullable{Nulls: []uint8{0, 1}, Values: proto.ColDecimal64{12345, 0}}},
				{Name: "d", Data: proto.ColEnum8{1, 2}},
				{Name: "e", Data: StringArrays{{"p", "q"}, {}}},
				{Name: "f", Data: proto.ColUInt32{1700000000, 1700000001}},
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	var got []string
	rows, err := conn.Query(ctx, "SELECT concat(a, '|', toString(b), '|', ifNull(toString(c), 'NULL'), '|', toString(d), '|', toString(e), '|', toString(f)) FROM `"+db+"`.s ORDER BY a, b")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		got = append(got, s)
	}
	want := "x|1|123.45|X|['p','q']|2023-11-14 22:13:20,x|1|123.45|X|['p','q']|2023-11-14 22:13:20," +
		"yy|2|NULL|Y|[]|2023-11-14 22:13:21,yy|2|NULL|Y|[]|2023-11-14 22:13:21"
	if g := strings.Join(got, ","); g != want {
		t.Errorf("read back\n%s\nwant\n%s", g, want)
	}
}
