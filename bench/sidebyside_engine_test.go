//go:build integration

package bench

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/sluice-etl/sluice/internal/benchutil"
)

// Case (c): ClickHouse's own Kafka table engine (JSONEachRow, one
// consumer) and a materialized view into an orders table like the others,
// on the JSON topic. The clock runs from CREATE TABLE of the Kafka table to
// the last row visible; there is no loader process, so the server's CPU is
// the engine's whole cost.
//
// What the Debian 18.16 server needs and lacks:
//   - it never sets auto.offset.reset, so a new group would start at the
//     log end: the group's start offsets (each partition's log start) are
//     committed with kadm before the Kafka table exists;
//   - JSONEachRow fails on a field without a column (`items`) unless
//     input_format_skip_unknown_fields=1 is in the default profile, which
//     the engine's streaming thread uses (integration/clickhouse.sh writes
//     it into users.xml);
//   - it has no virtual columns (_topic, _partition, _offset) and cannot
//     parse an array of objects, so the view writes the topic's name,
//     _partition 0, _offset = the row's number in its block, item_count 0;
//   - a `MATERIALIZED VIEW ... TO t` must select every column of t.
func (s *suite) caseEngine() benchutil.Case {
	c := benchutil.Case{Name: "Kafka engine + MV, 1 consumer",
		Note: "18.16's Kafka engine has no _partition/_offset virtual columns and cannot parse items: its view writes _partition 0, _offset = row number in the block, item_count 0"}
	if err := s.engineLoad(&c); err != nil {
		c.Err = err.Error()
	}
	return c
}

func (s *suite) engineLoad(c *benchutil.Case) error {
	ctx := context.Background()
	var skip string
	if err := s.w.ch.QueryRow(ctx, "SELECT value FROM system.settings WHERE name = 'input_format_skip_unknown_fields'").Scan(&skip); err != nil {
		return err
	}
	if skip != "1" {
		return fmt.Errorf("input_format_skip_unknown_fields is %s in the default profile: the engine rejects every order (its `items` field); "+
			"integration/clickhouse.sh start adds it to users.xml, which the server reloads within seconds", skip)
	}
	db, err := s.newDB(benchutil.CaseEngine)
	if err != nil {
		return err
	}
	group := db + "_engine"
	if err := s.commitStartOffsets(ctx, group, s.jsonTopic); err != nil {
		return err
	}
	queue, view, err := s.engineDDL(ctx, db, group)
	if err != nil {
		return err
	}
	m := s.startMeter(db)
	for _, q := range []string{queue, view} {
		if err := s.w.ch.Exec(ctx, q); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	dropped := false
	drop := func() {
		if !dropped {
			dropped = true
			_ = s.w.ch.Exec(ctx, fmt.Sprintf("DROP TABLE IF EXISTS `%s`.orders_kafka_mv", db))
			_ = s.w.ch.Exec(ctx, fmt.Sprintf("DROP TABLE IF EXISTS `%s`.orders_kafka", db))
		}
	}
	defer drop()
	// No progress for a minute: the engine is stuck (it logs why in the
	// server's log).
	var last uint64
	lastMove := time.Now()
	n, err := m.waitRows(ctx, uint64(s.orders), 10*time.Minute, func(n uint64) (bool, error) {
		if n != last {
			last, lastMove = n, time.Now()
		}
		if time.Since(lastMove) > time.Minute {
			return false, fmt.Errorf("the Kafka engine loaded %d of %d rows and nothing for a minute (see the server's log)", n, s.orders)
		}
		return false, nil
	})
	if err != nil {
		return err
	}
	if err := m.loaded(ctx, 0); err != nil {
		return err
	}
	// Stop consuming before the merges settle.
	drop()
	c.Rows = int64(n)
	if n > uint64(s.orders) {
		c.Note += fmt.Sprintf("; %d rows for %d records (the engine is at least once)", n, s.orders)
	}
	return m.settle(ctx, c)
}

// commitStartOffsets commits each partition's log start for group, which
// must not exist yet.
func (s *suite) commitStartOffsets(ctx context.Context, group, topic string) error {
	starts, err := s.w.adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return fmt.Errorf("list start offsets of %s: %w", topic, err)
	}
	offs := kadm.Offsets{}
	starts.Each(func(o kadm.ListedOffset) {
		offs.Add(kadm.Offset{Topic: o.Topic, Partition: o.Partition, At: o.Offset, LeaderEpoch: -1})
	})
	resp, err := s.w.adm.CommitOffsets(ctx, group, offs)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		return fmt.Errorf("commit start offsets of %s for %s: %w", topic, group, err)
	}
	return nil
}

// engineDDL builds the Kafka table and the view. The Kafka table reads
// the JSON orders' fields with the target's types where JSONEachRow can
// parse them; the view converts the rest and fills every other column of
// the target (it must select them all).
func (s *suite) engineDDL(ctx context.Context, db, group string) (queue, view string, err error) {
	rows, err := s.w.ch.Query(ctx, fmt.Sprintf("SELECT name, type FROM system.columns WHERE database = '%s' AND table = 'orders'", db))
	if err != nil {
		return "", "", err
	}
	defer rows.Close()
	types := map[string]string{}
	var order []string
	for rows.Next() {
		var name, typ string
		if err := rows.Scan(&name, &typ); err != nil {
			return "", "", err
		}
		types[name] = typ
		order = append(order, name)
	}
	if err := rows.Err(); err != nil {
		return "", "", err
	}
	// The JSON's fields, as the Kafka table reads them.
	fields := []struct{ name, typ string }{
		{"order_id", "String"}, {"customer_id", "String"}, {"created_at", "UInt64"}, {"currency", "String"},
		{"total", "String"}, {"status", types["status"]}, {"channel", types["channel"]},
		{"shipping_country", "String"}, {"coupon", "Nullable(String)"},
	}
	var cols []string
	read := map[string]string{}
	for _, f := range fields {
		if f.typ == "" {
			return "", "", fmt.Errorf("%s.orders has no column %s", db, f.name)
		}
		cols = append(cols, f.name+" "+f.typ)
		read[f.name] = f.typ
	}
	queue = fmt.Sprintf("CREATE TABLE `%s`.orders_kafka (%s) ENGINE = Kafka SETTINGS kafka_broker_list = '%s', "+
		"kafka_topic_list = '%s', kafka_group_name = '%s', kafka_format = 'JSONEachRow', kafka_num_consumers = 1",
		db, strings.Join(cols, ", "), strings.Join(brokers(), ","), s.jsonTopic, group)
	var sel []string
	for _, name := range order {
		typ := types[name]
		var expr string
		switch {
		case name == "created_at":
			expr = "toDateTime(intDiv(created_at, 1000), 'UTC')"
		case read[name] == typ:
			expr = name
		case read[name] != "":
			expr = fmt.Sprintf("CAST(%s AS %s)", name, typ)
		case name == "_topic":
			expr = "'" + s.jsonTopic + "'"
		case name == "_offset":
			expr = "CAST(rowNumberInAllBlocks() AS " + typ + ")"
		case name == "_ingested_at":
			expr = "now()"
		case strings.HasPrefix(typ, "Nullable("):
			expr = "CAST(NULL AS " + typ + ")"
		case strings.HasPrefix(typ, "UInt"), strings.HasPrefix(typ, "Int"):
			expr = "CAST(0 AS " + typ + ")"
		case typ == "String":
			expr = "''"
		case typ == "Array(String)":
			expr = "emptyArrayString()"
		default:
			return "", "", fmt.Errorf("%s.orders.%s (%s): no value for the engine's view", db, name, typ)
		}
		sel = append(sel, expr+" AS "+name)
	}
	view = fmt.Sprintf("CREATE MATERIALIZED VIEW `%s`.orders_kafka_mv TO `%s`.orders AS SELECT %s FROM `%s`.orders_kafka",
		db, db, strings.Join(sel, ", "), db)
	return queue, view, nil
}
