package transform

import (
	"fmt"
	"runtime"
	"testing"
)

// observeAll has partition p's state see one order of each id.
func observeAll(v *velocity, p int32, ids []string, at int64) {
	ps := v.part(p)
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for i, id := range ids {
		v.observe(ps, id, at, int64(i))
	}
}

// TestVelocityHeldBytesCoversTheHeap fills a partition's VELOCITY state
// with customers of several counts (their ids fresh allocations, as a
// decoded batch's are) and checks that heldBytes is at or above the heap
// the state takes, its term of the memory bound, and at most twice it.
func TestVelocityHeldBytesCoversTheHeap(t *testing.T) {
	for _, n := range []int{3_000, 20_000, 70_000, 150_000} {
		ids := make([]string, n)
		for i := range ids {
			ids[i] = fmt.Sprintf("CUST-%08d", i)
		}
		var before, after runtime.MemStats
		// Twice: the first moves sync.Pool caches to their victim lists,
		// the second frees them, and what earlier tests left behind with them.
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&before)
		v := newVelocity(5, 1<<40, n)
		observeAll(v, 0, ids, 1)
		observeAll(v, 0, ids, 2) // a second order each: the orders' array is made once
		runtime.GC()
		runtime.ReadMemStats(&after)
		// ids was allocated before the first reading: alive to the
		// second too, or its freeing would hide part of the state's heap.
		runtime.KeepAlive(ids)
		grew := int64(after.HeapAlloc) - int64(before.HeapAlloc)
		held := v.heldBytes()
		runtime.KeepAlive(v)
		t.Logf("%d customers: heap %d B (%.0f B each), heldBytes %d (%.2f×)", n, grew, float64(grew)/float64(n), held, float64(held)/float64(grew))
		if held < grew || held > 2*grew {
			t.Errorf("%d customers: heldBytes %d for a heap of %d B, want within [1, 2]× of it", n, held, grew)
		}
	}
}

// TestVelocityHeldBytesFollowsTheState checks the total through evictions
// (a customer replaced by one with a longer id), Forget, and a batch still
// scoring a forgotten partition's detached state.
func TestVelocityHeldBytesFollowsTheState(t *testing.T) {
	v := newVelocity(5, 1<<40, 2)
	observeAll(v, 0, []string{"a", "b"}, 1)
	observeAll(v, 1, []string{"c"}, 1)
	if got, want := v.heldBytes(), 3*v.customerBytes("a"); got != want {
		t.Fatalf("3 customers: heldBytes %d, want %d", got, want)
	}
	long := "a-customer-id-longer-than-sixteen-bytes"
	observeAll(v, 0, []string{long}, 2) // evicts a, the least recent
	if got, want := v.heldBytes(), v.customerBytes("b")+v.customerBytes(long)+v.customerBytes("c"); got != want {
		t.Fatalf("after an eviction: heldBytes %d, want %d", got, want)
	}

	detached := v.part(1)
	v.forget(1)
	if got, want := v.heldBytes(), v.customerBytes("b")+v.customerBytes(long); got != want {
		t.Fatalf("partition 1 forgotten: heldBytes %d, want %d", got, want)
	}
	detached.mu.Lock()
	v.observe(detached, "d", 3, 9) // a batch that was scoring partition 1
	detached.mu.Unlock()
	if got, want := v.heldBytes(), v.customerBytes("b")+v.customerBytes(long); got != want {
		t.Fatalf("a forgotten partition's batch counted: heldBytes %d, want %d", got, want)
	}
	v.forget(0)
	v.forget(7) // never seen
	if got := v.heldBytes(); got != 0 {
		t.Fatalf("all forgotten: heldBytes %d, want 0", got)
	}
}
