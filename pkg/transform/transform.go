// Package transform holds the per-batch transforms a pipeline names in its
// config (`transforms: [order_items, ...]`) and the registry that builds
// them by name.
//
// Place in the flow: after decode, before the sink. A transform sees a whole
// batch of decoded rows, writes the columns it produces into each good row,
// and marks single items failed (stage transform) when a row cannot be
// transformed; the rest of the batch goes on. Transforms of one pipeline run
// in config order.
package transform

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/sluice-etl/sluice/pkg/record"
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

// Build builds the named transforms in order.
func Build(names []string, env Env) ([]Transform, error) {
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
