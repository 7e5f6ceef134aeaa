package sink

import (
	"errors"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// Class says what the caller of Send should do about an error.
type Class int

const (
	// Transient: the server or the network failed, not the rows. Wait and
	// send the same rows again (after checking they did not land).
	Transient Class = iota
	// BadData: the server rejected the rows' content. Some row of the
	// batch cannot be stored; split the batch to isolate it.
	BadData
)

func (c Class) String() string {
	if c == BadData {
		return "bad_data"
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
	407: "DECIMAL_OVERFLOW",
	469: "VIOLATED_CONSTRAINT",
}

// transientCodes are listed for the record (and the tests): server states
// that pass. They are Transient like every code not in badDataCodes.
var transientCodes = map[int32]string{
	60:  "UNKNOWN_TABLE",
	81:  "UNKNOWN_DATABASE",
	159: "TIMEOUT_EXCEEDED",
	164: "READONLY",
	202: "TOO_MANY_SIMULTANEOUS_QUERIES",
	209: "SOCKET_TIMEOUT",
	210: "NETWORK_ERROR",
	241: "MEMORY_LIMIT_EXCEEDED",
	242: "TABLE_IS_READ_ONLY",
	243: "NOT_ENOUGH_SPACE",
	252: "TOO_MANY_PARTS",
	279: "ALL_CONNECTION_TRIES_FAILED",
	999: "KEEPER_EXCEPTION",
}

// errAppend marks a value the driver refused while building the block.
var errAppend = errors.New("driver refused a value")

// Classify decides whether an error from Send blames the rows.
func Classify(err error) Class {
	if err == nil {
		return Transient
	}
	if errors.Is(err, errAppend) {
		return BadData
	}
	var ex *clickhouse.Exception
	if errors.As(err, &ex) {
		if _, bad := badDataCodes[ex.Code]; bad {
			return BadData
		}
	}
	return Transient
}
