package transform_test

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-etl/sluice/pkg/record"
	"github.com/sluice-etl/sluice/pkg/transform"
)

func build(t *testing.T, name string) transform.Transform {
	t.Helper()
	ts, err := transform.Build([]string{name}, transform.Env{Pipeline: "test"})
	if err != nil {
		t.Fatalf("Build(%s): %v", name, err)
	}
	if len(ts) != 1 {
		t.Fatalf("Build(%s) returned %d transforms", name, len(ts))
	}
	return ts[0]
}

// batchOf wraps rows into a batch with one item per row (offsets 0, 1, ...).
func batchOf(rows ...record.Row) *record.Batch {
	b := &record.Batch{Pipeline: "test", Topic: "t", First: 0, Last: int64(len(rows) - 1)}
	for i, r := range rows {
		b.Items = append(b.Items, record.Item{Rec: &kgo.Record{Offset: int64(i)}, Row: r})
	}
	return b
}

func TestNames(t *testing.T) {
	names := transform.Names()
	for _, want := range []string{"order_items", "payment_status"} {
		if !slices.Contains(names, want) {
			t.Errorf("Names() = %v, missing %s", names, want)
		}
	}
	if !slices.IsSorted(names) {
		t.Errorf("Names() = %v, not sorted", names)
	}
}

func TestBuild(t *testing.T) {
	ts, err := transform.Build([]string{"payment_status", "order_items"}, transform.Env{Pipeline: "p"})
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	var outputs [][]string
	for _, tr := range ts {
		outputs = append(outputs, tr.Outputs())
	}
	if want := [][]string{{"succeeded"}, {"item_count"}}; !reflect.DeepEqual(outputs, want) {
		t.Errorf("outputs in build order = %v, want %v", outputs, want)
	}

	ts, err = transform.Build(nil, transform.Env{})
	if err != nil || len(ts) != 0 {
		t.Errorf("Build(nil) = %v, %v; want no transforms and no error", ts, err)
	}
}

func TestBuildUnknown(t *testing.T) {
	ts, err := transform.Build([]string{"order_items", "order_itmes"}, transform.Env{Pipeline: "orders"})
	if err == nil {
		t.Fatalf("Build succeeded with %d transforms, want an error", len(ts))
	}
	if ts != nil {
		t.Errorf("Build returned transforms with its error: %v", ts)
	}
	msg := err.Error()
	if !strings.Contains(msg, `unknown transform "order_itmes"`) {
		t.Errorf("error %q does not name the unknown transform", msg)
	}
	// The message lists every registered transform, so a typo is easy to fix.
	if want := "(known: " + strings.Join(transform.Names(), ", ") + ")"; !strings.Contains(msg, want) {
		t.Errorf("error %q does not list the known transforms %s", msg, want)
	}
	for _, n := range []string{"order_items", "payment_status"} {
		if !strings.Contains(msg, n) {
			t.Errorf("error %q does not mention %s", msg, n)
		}
	}
}

func item(sku string, qty any) map[string]any {
	return map[string]any{"sku": sku, "quantity": qty}
}

func TestOrderItems(t *testing.T) {
	tests := []struct {
		name    string
		row     record.Row
		want    int64  // item_count, when the row passes
		wantErr string // failure reason fragment, when it does not
	}{
		{name: "one line", row: record.Row{"items": []any{item("A", int32(3))}}, want: 3},
		{name: "sums quantities", row: record.Row{"items": []any{item("A", int32(2)), item("B", int32(5)), item("C", int32(1))}}, want: 8},
		{name: "large quantities do not wrap", row: record.Row{"items": []any{item("A", int32(2147483647)), item("B", int32(2147483647))}}, want: 4294967294},
		{name: "zero quantity", row: record.Row{"items": []any{item("A", int32(2)), item("B", int32(0))}}, wantErr: "items[1].quantity is 0, must be positive"},
		{name: "negative quantity", row: record.Row{"items": []any{item("A", int32(-1))}}, wantErr: "items[0].quantity is -1, must be positive"},
		{name: "missing items", row: record.Row{"order_id": "o1"}, wantErr: "field items is <nil>, want an array"},
		{name: "null items", row: record.Row{"items": nil}, wantErr: "want an array"},
		{name: "items not an array", row: record.Row{"items": "A,B"}, wantErr: "field items is string"},
		{name: "line not a record", row: record.Row{"items": []any{"A"}}, wantErr: "items[0] is string, want a record"},
		{name: "missing quantity", row: record.Row{"items": []any{map[string]any{"sku": "A"}}}, wantErr: "items[0].quantity is <nil>"},
		{name: "quantity of the wrong type", row: record.Row{"items": []any{item("A", int64(2))}}, wantErr: "items[0].quantity is int64"},
	}
	tr := build(t, "order_items")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := batchOf(tt.row)
			if err := tr.Apply(context.Background(), b); err != nil {
				t.Fatalf("Apply: %v", err)
			}
			it := b.Items[0]
			if tt.wantErr != "" {
				if it.Failed == nil {
					t.Fatalf("item passed with item_count %v, want a failure", it.Row["item_count"])
				}
				if it.Failed.Stage != record.StageTransform {
					t.Errorf("failed at stage %q, want %q", it.Failed.Stage, record.StageTransform)
				}
				if !strings.Contains(it.Failed.Reason, tt.wantErr) || !strings.HasPrefix(it.Failed.Reason, "order_items: ") {
					t.Errorf("reason %q, want order_items: ...%s", it.Failed.Reason, tt.wantErr)
				}
				if v, ok := it.Row["item_count"]; ok {
					t.Errorf("failed row got item_count %v", v)
				}
				return
			}
			if it.Failed != nil {
				t.Fatalf("item failed: %+v", *it.Failed)
			}
			if got, ok := it.Row["item_count"].(int64); !ok || got != tt.want {
				t.Errorf("item_count = %#v, want int64(%d)", it.Row["item_count"], tt.want)
			}
		})
	}
}

func TestPaymentStatus(t *testing.T) {
	tests := []struct {
		status  any
		want    int32
		wantErr string
	}{
		{status: "AUTHORIZED", want: 1},
		{status: "CAPTURED", want: 1},
		{status: "FAILED", want: 0},
		{status: "REFUNDED", want: 0}, // a refund is not a successful attempt
		{status: "PENDING", wantErr: `payment_status: unknown status "PENDING"`},
		{status: "captured", wantErr: `unknown status "captured"`},
		{status: "", wantErr: `unknown status ""`},
		{status: nil, wantErr: "field status is <nil>, want a string"},
		{status: int32(1), wantErr: "field status is int32"},
	}
	tr := build(t, "payment_status")
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%T(%v)", tt.status, tt.status), func(t *testing.T) {
			b := batchOf(record.Row{"payment_id": "p1", "status": tt.status})
			if err := tr.Apply(context.Background(), b); err != nil {
				t.Fatalf("Apply: %v", err)
			}
			it := b.Items[0]
			if tt.wantErr != "" {
				if it.Failed == nil {
					t.Fatalf("status %v passed with succeeded %v, want a failure", tt.status, it.Row["succeeded"])
				}
				if it.Failed.Stage != record.StageTransform {
					t.Errorf("failed at stage %q, want %q", it.Failed.Stage, record.StageTransform)
				}
				if !strings.Contains(it.Failed.Reason, tt.wantErr) {
					t.Errorf("reason %q does not contain %q", it.Failed.Reason, tt.wantErr)
				}
				if v, ok := it.Row["succeeded"]; ok {
					t.Errorf("failed row got succeeded %v", v)
				}
				return
			}
			if it.Failed != nil {
				t.Fatalf("item failed: %+v", *it.Failed)
			}
			if got, ok := it.Row["succeeded"].(int32); !ok || got != tt.want {
				t.Errorf("succeeded = %#v, want int32(%d)", it.Row["succeeded"], tt.want)
			}
		})
	}
}

// TestApplyBatch: one bad row fails alone, the rest of the batch is
// transformed, and items that an earlier stage failed are left untouched.
func TestApplyBatch(t *testing.T) {
	b := batchOf(
		record.Row{"status": "CAPTURED"},
		record.Row{"status": "BOGUS"},
		record.Row{"status": "FAILED"},
		record.Row{"status": "AUTHORIZED"}, // failed by decode below, row kept
		nil,                                // failed by decode, no row
	)
	b.Items[3].Fail(record.StageDecode, "schema mismatch")
	b.Items[4].Fail(record.StageLoad, "decimal overflow")

	if err := build(t, "payment_status").Apply(context.Background(), b); err != nil {
		t.Fatalf("Apply: %v", err)
	}

	want := []struct {
		succeeded any // nil: not written
		failed    *record.Failure
	}{
		{int32(1), nil},
		{nil, &record.Failure{Stage: record.StageTransform, Reason: `payment_status: unknown status "BOGUS"`}},
		{int32(0), nil},
		{nil, &record.Failure{Stage: record.StageDecode, Reason: "schema mismatch"}},
		{nil, &record.Failure{Stage: record.StageLoad, Reason: "decimal overflow"}},
	}
	for i, w := range want {
		it := b.Items[i]
		if got := it.Row["succeeded"]; got != w.succeeded {
			t.Errorf("item %d: succeeded = %#v, want %#v", i, got, w.succeeded)
		}
		if !reflect.DeepEqual(it.Failed, w.failed) {
			t.Errorf("item %d: failed = %+v, want %+v", i, it.Failed, w.failed)
		}
	}
	if b.Items[4].Row != nil {
		t.Errorf("skipped item got a row: %v", b.Items[4].Row)
	}
	if got := b.Good(); got != 2 {
		t.Errorf("Good() = %d, want 2", got)
	}
}

// TestApplyChain runs two transforms in config order over one batch: an
// item failed by the first is skipped by the second.
func TestApplyChain(t *testing.T) {
	ts, err := transform.Build([]string{"order_items", "payment_status"}, transform.Env{Pipeline: "p"})
	if err != nil {
		t.Fatal(err)
	}
	b := batchOf(
		record.Row{"items": []any{item("A", int32(1))}, "status": "CAPTURED"},
		record.Row{"items": []any{item("A", int32(0))}, "status": "CAPTURED"},
		record.Row{"items": []any{item("A", int32(2))}, "status": "NOPE"},
	)
	for _, tr := range ts {
		if err := tr.Apply(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
	if it := b.Items[0]; it.Failed != nil || it.Row["item_count"] != int64(1) || it.Row["succeeded"] != int32(1) {
		t.Errorf("item 0 = %+v", it)
	}
	if it := b.Items[1]; it.Failed == nil || !strings.HasPrefix(it.Failed.Reason, "order_items:") || it.Row["succeeded"] != nil {
		t.Errorf("item 1: want failed by order_items and skipped by payment_status, got %+v (failed %+v)", it.Row, it.Failed)
	}
	if it := b.Items[2]; it.Failed == nil || !strings.HasPrefix(it.Failed.Reason, "payment_status:") || it.Row["item_count"] != int64(2) {
		t.Errorf("item 2: want item_count 2 then failed by payment_status, got %+v (failed %+v)", it.Row, it.Failed)
	}
}

// TestApplyConcurrent: one Transform serves every partition of a pipeline;
// run under -race.
func TestApplyConcurrent(t *testing.T) {
	tr := build(t, "order_items")
	var wg sync.WaitGroup
	batches := make([]*record.Batch, 8)
	for p := range batches {
		rows := make([]record.Row, 100)
		for i := range rows {
			rows[i] = record.Row{"items": []any{item("A", int32(p+1)), item("B", int32(i+1))}}
		}
		batches[p] = batchOf(rows...)
	}
	for _, b := range batches {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = tr.Apply(context.Background(), b)
		}()
	}
	wg.Wait()
	for p, b := range batches {
		for i, it := range b.Items {
			if want := int64(p + 1 + i + 1); it.Failed != nil || it.Row["item_count"] != want {
				t.Fatalf("batch %d item %d: item_count %v, failed %v; want %d", p, i, it.Row["item_count"], it.Failed, want)
			}
		}
	}
}
