package sink

import (
	"errors"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// Class says what the caller of Send should do about an error. It is the
// one classification of ClickHouse errors the load protocol acts on
// (docs/DESIGN.md, "Error classes").
type Class int

const (
	// Transient: the server or the network failed, not the rows. Wait and
	// send the same rows again (after checking they did not land).
	Transient Class = iota
	// BadData: the server rejected the rows' content. Some row of the
	// batch cannot be stored; split the batch to isolate it.
	BadData
	// Split: the server refused the batch as a whole, for its shape and
	// not for any row: it touches more table partitions than one INSERT
	// may write (max_partitions_per_insert_block, ClickHouse 19.x and
	// later). The same rows pass in smaller INSERTs, so send the batch in
	// halves, in order, down to what passes; no row is to blame.
	Split
	// Memory: the server ran out of memory for the INSERT (241
	// MEMORY_LIMIT_EXCEEDED). No row is to blame, and a smaller INSERT
	// needs less: send the rows in smaller pieces. Some of them may be
	// stored: the error can come while the parts of several table
	// partitions are written one after the other (each committed when
	// written), or from a materialized view after the table's parts.
	Memory
	// TooManyParts: the table has too many active parts in a partition
	// (252 "Too many parts (N). Merges are processing significantly
	// slower than inserts"; parts_to_throw_insert). The server refuses
	// the INSERT before it writes a part, as it checks the count once per
	// block and an INSERT is one block; from a materialized view's table
	// it comes after the table's parts. Smaller INSERTs would make more
	// parts: wait for merges, send the same rows again.
	TooManyParts
)

func (c Class) String() string {
	switch c {
	case BadData:
		return "bad_data"
	case Split:
		return "split"
	case Memory:
		return "memory"
	case TooManyParts:
		return "too_many_parts"
	}
	return "transient"
}

// badDataCodes are the ClickHouse exception codes that blame the inserted
// values (or a materialized view's computation on them), so retrying the
// same rows can never succeed. Every other code, and every network error,
// is Transient: an unknown error stalls the partition (visible in /readyz
// and the metrics) rather than sending good rows to the dead-letter topic.
var badDataCodes = map[int32]string{
	6:   "CANNOT_PARSE_TEXT",
	26:  "CANNOT_PARSE_QUOTED_STRING",
	27:  "CANNOT_PARSE_INPUT_ASSERTION_FAILED",
	38:  "CANNOT_PARSE_DATE",
	41:  "CANNOT_PARSE_DATETIME",
	43:  "ILLEGAL_TYPE_OF_ARGUMENT",
	53:  "TYPE_MISMATCH",
	69:  "ARGUMENT_OUT_OF_BOUND",
	70:  "CANNOT_CONVERT_TYPE",
	72:  "CANNOT_PARSE_NUMBER",
	117: "INCORRECT_DATA",
	128: "TOO_LARGE_ARRAY_SIZE",
	131: "TOO_LARGE_STRING_SIZE",
	153: "ILLEGAL_DIVISION",
	190: "SIZES_OF_ARRAYS_DOESNT_MATCH",
	321: "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE",
	// throwIf in a table's expression (a MATERIALIZED column, the sorting
	// key, a materialized view): how a table owner writes a row check on
	// servers without CONSTRAINT (18.x).
	395: "FUNCTION_THROW_IF_VALUE_IS_NON_ZERO",
	407: "DECIMAL_OVERFLOW",
	469: "VIOLATED_CONSTRAINT",
}

// transientCodes are listed for the record (and the tests): server states
// that pass. They are Transient like every code in none of the tables.
var transientCodes = map[int32]string{
	60:  "UNKNOWN_TABLE",
	81:  "UNKNOWN_DATABASE",
	159: "TIMEOUT_EXCEEDED",
	164: "READONLY",
	202: "TOO_MANY_SIMULTANEOUS_QUERIES",
	209: "SOCKET_TIMEOUT",
	210: "NETWORK_ERROR",
	242: "TABLE_IS_READ_ONLY",
	243: "NOT_ENOUGH_SPACE",
	279: "ALL_CONNECTION_TRIES_FAILED",
	999: "KEEPER_EXCEPTION",
}

// pressureCodes are the server's refusals for its own load, not the rows'
// content nor the batch's shape: the worker adapts its batches to them
// (pkg/pipeline/adapt.go).
var pressureCodes = map[int32]Class{
	241: Memory,       // MEMORY_LIMIT_EXCEEDED
	252: TooManyParts, // TOO_MANY_PARTS, unless byMessage says Split
}

// byMessage lists the codes that mean different things, told apart by the
// server's message: the first rule whose text the message contains decides,
// else the code tables above do. 252 TOO_MANY_PARTS is both "Too many parts
// (N). Merges are processing significantly slower than inserts" (the table
// is busy: back off, TooManyParts) and "Too many partitions for single INSERT
// block (more than N)" (this batch spans too many PARTITION BY values: it
// fails the same way every time, however long one waits, so Split).
var byMessage = map[int32][]struct {
	text  string
	class Class
}{
	252: {
		{"Too many partitions for single INSERT block", Split},
		{"max_partitions_per_insert_block", Split},
	},
}

// errAppend marks a value the driver refused while building the block.
var errAppend = errors.New("driver refused a value")

// Classify decides what an error from Send calls for: retry the batch
// (Transient), isolate the rows the server rejects (BadData), send the
// batch in halves without blaming a row (Split), send it in smaller pieces
// and make the next batches smaller (Memory), or wait for merges before
// sending it whole again (TooManyParts).
func Classify(err error) Class {
	if err == nil {
		return Transient
	}
	if errors.Is(err, errAppend) {
		return BadData
	}
	var ex *clickhouse.Exception
	if errors.As(err, &ex) {
		for _, r := range byMessage[ex.Code] {
			if strings.Contains(ex.Message, r.text) {
				return r.class
			}
		}
		if _, bad := badDataCodes[ex.Code]; bad {
			return BadData
		}
		if c, ok := pressureCodes[ex.Code]; ok {
			return c
		}
	}
	return Transient
}

// viewMarker is what the server appends to an error raised while it
// pushed the inserted block to a materialized view ("...: while pushing to
// view db.v"; current releases add " (uuid)"). Nested views add one marker
// each, the view that failed first.
const viewMarker = "while pushing to view "

// View names the materialized view an INSERT failed in, or "" when the
// error does not come from a view. Such an error says nothing about the
// rows by itself: ClickHouse 18.16 runs a table's views only after the
// table's own parts are committed, so the batch is stored and the view's
// table lacks it; current releases do not promise either way. The caller
// re-reads what is stored, as after any failed INSERT, and acts on Classify.
func View(err error) string {
	var ex *clickhouse.Exception
	if !errors.As(err, &ex) {
		return ""
	}
	i := strings.Index(ex.Message, viewMarker)
	if i < 0 {
		return ""
	}
	v := ex.Message[i+len(viewMarker):]
	if j := strings.IndexAny(v, " :,"); j >= 0 {
		v = v[:j]
	}
	return strings.TrimRight(v, ".")
}
