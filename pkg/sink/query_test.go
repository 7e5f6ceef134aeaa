package sink

import (
	"context"
	"testing"
	"time"

	"github.com/sluice-etl/sluice/internal/tablefake"
)

func TestLoadsFindsThePartitionInEitherForm(t *testing.T) {
	tb := &Table{db: "db", name: "orders"}
	prefix := tb.topicPrefix("orders")
	for _, c := range []struct {
		id        string
		partition int32
		want      bool
	}{
		{tb.queryPrefix("orders", 3) + "120-abc", 3, true},
		{tb.queryPrefix("orders", 3) + "120-abc", 30, false},
		{tb.queryPrefix("orders", 30) + "120-abc", 3, false},
		{prefix + "3,5,8:xyz", 5, true},
		{prefix + "3,5,8:xyz", 8, true},
		{prefix + "3,5,8:xyz", 3, true},
		{prefix + "3,5,8:xyz", 58, false},
		{prefix + "13,15:xyz", 1, false},
		{prefix + "3,5,8", 5, false}, // not an id Sluice writes
	} {
		if got := loads(c.id[len(prefix):], c.partition); got != c.want {
			t.Errorf("loads(%q, %d) = %v, want %v", c.id, c.partition, got, c.want)
		}
	}
}

func TestStoredQueryFiltersTheRangeInPrewhereOnMergeTree(t *testing.T) {
	for _, c := range []struct {
		prewhere bool
		want     string
	}{
		{true, "SELECT toInt64(_offset), toUInt8(1) FROM `db`.`orders` PREWHERE _partition = ? AND _offset >= ? AND _offset <= ? WHERE _topic = ? ORDER BY _offset"},
		{false, "SELECT toInt64(_offset), toUInt8(1) FROM `db`.`orders` WHERE _partition = ? AND _offset >= ? AND _offset <= ? AND _topic = ? ORDER BY _offset"},
	} {
		tb := &Table{db: "db", name: "orders"}
		if got := tb.storedQuery("toUInt8(1)", c.prewhere); got != c.want {
			t.Errorf("prewhere %v:\n got %s\nwant %s", c.prewhere, got, c.want)
		}
	}
}

func TestNewTableUsesPrewhereOnMergeTreeEnginesOnly(t *testing.T) {
	for engine, want := range map[string]bool{"MergeTree": true, "ReplicatedMergeTree": true, "ReplacingMergeTree": true, "Log": false, "View": false, "Buffer": false} {
		conn := &tablefake.Conn{Engine: engine, Cols: [][3]string{
			{ColTopic, "String", ""}, {ColPartition, "UInt32", ""}, {ColOffset, "UInt64", ""}, {ColIngestedAt, "DateTime", ""},
		}}
		tb, err := NewTable(context.Background(), conn, "db", "t", time.Second)
		if err != nil {
			t.Fatalf("%s: %v", engine, err)
		}
		if got := tb.prewhere.Load(); got != want {
			t.Errorf("%s: prewhere %v, want %v", engine, got, want)
		}
	}
}
