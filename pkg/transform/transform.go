// Package transform holds the per-batch transforms a pipeline names in its
// config (`transforms: [order_items, ...]`) and the registry that builds
// them by name.
//
// Place in the flow: after decode, before the sink. A transform sees a whole
// batch of decoded rows, writes the columns it produces into each good row,
// and marks single items failed (stage transform) when a row cannot be
// transformed; the rest of the batch goes on. Transforms of one pipeline run
// in config order.
//
// Files:
//
//	transform.go  the Transform interface, Env, PartitionState, the registry
//	derived.go    order_items, payment_status: columns derived from the row
//	fields.go     how currency, customer and fraud find their fields in the
//	              schema (configured names, else the usual ones)
//	currency.go   currency: amount in the base currency at the event's rate
//	customer.go   customer: the customers reference join
//	fraud.go      fraud: the rules, fraud_score and fraud_reasons
//	velocity.go   VELOCITY's bounded per-partition state
//	columns.go    the columnar path of currency, customer and fraud: which
//	              columns they read, customer's marks, scaled-integer
//	              half-even products
package transform

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/sluice-etl/sluice/pkg/config"
	"github.com/sluice-etl/sluice/pkg/decode"
	"github.com/sluice-etl/sluice/pkg/record"
	"github.com/sluice-etl/sluice/pkg/refdata"
)

// Transform works on one batch at a time. Apply is called by the partition
// worker that owns the batch; one Transform value serves every partition of
// its pipeline, so Apply must be safe for concurrent use on different
// batches (per-partition state is keyed by the batch's partition).
type Transform interface {
	// Outputs lists the columns this transform writes.
	Outputs() []string
	// Apply transforms the good items of b in place.
	Apply(ctx context.Context, b *record.Batch) error
}

// Env is what a transform may need when it is built.
type Env struct {
	Pipeline string
	// Schema is the pipeline's record schema (field names and types).
	Schema *decode.Schema
	// Fields names the fields read and the columns written where they
	// differ from the usual e-commerce names.
	Fields config.Fields
	// Store holds the reference data (customers, FX rates); nil when no
	// pipeline needs it.
	Store *refdata.Store
	// Fraud holds the fraud rules' thresholds and weights.
	Fraud config.Fraud
	// Transforms is the pipeline's transform list, in run order. Build sets
	// it to the names it builds, so a transform can check at start-up that
	// the ones it depends on run before it (fraud needs customer and, for
	// HIGH_AMOUNT, currency).
	Transforms []string
}

// PartitionState is implemented by transforms that keep state per source
// partition (fraud's VELOCITY rule). The engine calls Forget once a
// partition is revoked or lost and its worker has stopped, so that a later
// assignment of the same partition starts from empty state instead of a
// stale one. Forget is safe for concurrent use with Apply on other
// partitions.
type PartitionState interface {
	Forget(partition int32)
}

// StateHolder is implemented by transforms that keep state in memory
// beyond a batch (fraud's VELOCITY windows). StateBytes is the heap the
// state takes now, an estimate from above: the transform's term of the
// memory bound, which `sluice run` follows (docs/DESIGN.md, "Memory
// bound"). Safe for concurrent use with Apply and Forget.
type StateHolder interface {
	StateBytes() int64
}

// Factory builds a transform for one pipeline.
type Factory func(env Env) (Transform, error)

var registry = map[string]Factory{}

// Register adds a named transform; called from init functions.
func Register(name string, f Factory) {
	if _, dup := registry[name]; dup {
		panic("transform: " + name + " registered twice")
	}
	registry[name] = f
}

// Names lists the registered transforms, sorted.
func Names() []string {
	out := make([]string, 0, len(registry))
	for n := range registry {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Build builds the named transforms in order. It sets env.Transforms to
// names; a caller need not fill it.
func Build(names []string, env Env) ([]Transform, error) {
	env.Transforms = append([]string(nil), names...)
	out := make([]Transform, 0, len(names))
	for _, n := range names {
		f, ok := registry[n]
		if !ok {
			return nil, fmt.Errorf("unknown transform %q (known: %s)", n, strings.Join(Names(), ", "))
		}
		t, err := f(env)
		if err != nil {
			return nil, fmt.Errorf("transform %s: %w", n, err)
		}
		out = append(out, t)
	}
	return out, nil
}

// Func adapts a per-row function that cannot fail into a Transform.
type rowFunc struct {
	outputs []string
	fn      func(record.Row) error
}

func (r rowFunc) Outputs() []string { return r.outputs }

func (r rowFunc) Apply(_ context.Context, b *record.Batch) error {
	for i := range b.Items {
		it := &b.Items[i]
		if it.Failed != nil {
			continue
		}
		if err := r.fn(it.Row); err != nil {
			it.Fail(record.StageTransform, err.Error())
		}
	}
	return nil
}
