package pipeline

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sluice-etl/sluice/pkg/decode"
	"github.com/sluice-etl/sluice/pkg/logx"
	"github.com/sluice-etl/sluice/pkg/record"
)

// flakyDecoder decodes "v..." values, fails "trunc..." as truncated and
// "bad..." as not decodable, and answers the first outages calls as if its
// schema registry refused the connection.
type flakyDecoder struct{ outages atomic.Int32 }

func (d *flakyDecoder) Decode(v []byte) (record.Row, error) {
	if d.outages.Add(-1) >= 0 {
		return nil, fmt.Errorf("decode: schema id 1: %w: %w", decode.ErrUnavailable, syscall.ECONNREFUSED)
	}
	s := string(v)
	switch {
	case strings.HasPrefix(s, "trunc"):
		return nil, &decode.Error{Reason: decode.ErrTruncated.Error(), Err: decode.ErrTruncated}
	case strings.HasPrefix(s, "bad"):
		return nil, errors.New("decode: not a value of the schema")
	}
	return record.Row{"v": s}, nil
}

// The dead letters are counted by the class of their reason, in step with
// sluice_dead_letters_total, and the decode step's retries by error type.
func TestDeadLettersByReasonClassAndRetriesByErrorType(t *testing.T) {
	f := newFixture(t, 1)
	var vals []string
	for i := range 60 {
		switch i % 10 {
		case 3:
			vals = append(vals, fmt.Sprintf("trunc-%d", i))
		case 7:
			vals = append(vals, fmt.Sprintf("bad-%d", i))
		default:
			vals = append(vals, fmt.Sprintf("v-%d", i))
		}
	}
	f.produceValues(vals...)
	dec := &flakyDecoder{}
	dec.outages.Store(3)
	s := newMemSink()
	r := f.startWith("g-observe", s, small, func(o *Options) { o.Pipelines[0].Decoder = dec })
	waitFor(t, "commit at 60", 10*time.Second, func() bool { return f.committed("g-observe")[0] == 60 })
	r.stop(t)

	m := r.engine.m
	trunc := testutil.ToFloat64(m.DeadLetterReasons.WithLabelValues("events", "decode", record.ReasonTruncated))
	invalid := testutil.ToFloat64(m.DeadLetterReasons.WithLabelValues("events", "decode", record.ReasonInvalidValue))
	if trunc != 6 || invalid != 6 {
		t.Errorf("dead letters by reason class: truncated %v, invalid_value %v; want 6 and 6", trunc, invalid)
	}
	// Every stage and class exists from the start (at 0, so that
	// increase() sees the first letter); only the two classes moved.
	moved := 0
	for _, stage := range []record.Stage{record.StageDecode, record.StageTransform, record.StageLoad} {
		for _, class := range record.ReasonClasses {
			if testutil.ToFloat64(m.DeadLetterReasons.WithLabelValues("events", string(stage), class)) > 0 {
				moved++
			}
		}
	}
	if n, want := testutil.CollectAndCount(m.DeadLetterReasons), 3*len(record.ReasonClasses); n != want || moved != 2 {
		t.Errorf("%d series of sluice_dead_letter_reasons_total (want %d), %d of them above 0 (want 2)", n, want, moved)
	}
	if all := testutil.ToFloat64(m.DeadLetters.WithLabelValues("events", "decode")); all != trunc+invalid {
		t.Errorf("sluice_dead_letters_total %v, by reason class %v: they count the same letters", all, trunc+invalid)
	}
	if got := testutil.ToFloat64(m.Retries.WithLabelValues("events", "decode", logx.TypeNetwork)); got != 3 {
		t.Errorf("decode retries with error_type network: %v, want 3", got)
	}
	if n := testutil.CollectAndCount(m.Retries); n != 1 {
		t.Errorf("%d series of sluice_retries_total, want 1", n)
	}
	f.letters(12)
}

func TestRetryOpsAndErrorTypes(t *testing.T) {
	for what, op := range map[string]string{
		"decode":                                 "decode",
		"transform":                              "transform",
		"dead-letter produce":                    "dead_letter",
		"read the dead letters of the partition": "resume",
		"wait for an INSERT of unknown outcome to end": "insert_wait",
		"load":          "load",
		"something new": "other",
	} {
		if got := retryOp(what); got != op {
			t.Errorf("retryOp(%q) = %q, want %q", what, got, op)
		}
	}
	ops := RetryOps()
	if len(ops) != 7 || ops[len(ops)-1] != "other" {
		t.Errorf("RetryOps() = %v, want the six ops and other", ops)
	}
	if got := errorType(fmt.Errorf("fence: %w", errFenced)); got != logx.TypeFenced {
		t.Errorf("errorType(fenced) = %q", got)
	}
	if got := errorType(fmt.Errorf("x: %w", syscall.ECONNRESET)); got != logx.TypeNetwork {
		t.Errorf("errorType(reset) = %q", got)
	}
}
