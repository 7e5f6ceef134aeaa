package transform

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-etl/sluice/pkg/refdata"
)

// velocity is the state of fraud's VELOCITY rule: per source partition, per
// customer, the event times of the customer's most recent orders.
//
// The rule: an order at event time t fires when the customer has more than
// max orders with event time in (t-window, t], this one included. An order
// exactly window before t is outside.
//
// Why per partition: orders are keyed by customer_id, so all orders of a
// customer land in one partition and one worker sees them in offset order.
// One velocity value serves every partition of a pipeline; a partition's
// state has its own lock (batches of one partition never run concurrently,
// but Forget comes from the engine's goroutine).
//
// Bounds, so memory does not grow with the number of customers or orders:
//   - per customer at most max+1 timestamps, the latest by event time.
//     Deciding "more than max in the window" needs no more: for an order
//     at or after every kept one, if at least max+1 orders are in its
//     window, the latest max+1 all are;
//   - per partition at most maxCustomers customers; past it the customer
//     seen least recently (in processing order) is forgotten, and its
//     next order starts a fresh history.
//
// Out-of-order events: an order is inserted at its place by event time and
// counted against the orders kept at or before it within the window; later
// orders already scored are not re-scored. An old order whose window lies
// entirely among evicted timestamps is under-counted.
//
// Re-delivered records: entries carry their Kafka offset, and an offset
// already kept is not added twice, so a batch transformed again (a retry,
// a re-assignment within this process) is not double-counted.
//
// Rebalances: state lives in this process only. A newly assigned partition
// starts empty, so the orders a previous owner saw just before the move are
// not counted: the rule under-counts for up to one window after a
// rebalance, it never over-counts. Every count is of distinct orders inside
// the window, so VELOCITY can miss but never fire wrongly. Forget drops a
// revoked or lost partition's state.
type velocity struct {
	max          int   // orders allowed in a window
	window       int64 // microseconds
	maxCustomers int

	mu    sync.Mutex
	parts map[int32]*partVelocity

	// held is heldBytes' total over the partitions still kept.
	held atomic.Int64
}

func newVelocity(max int, window time.Duration, maxCustomers int) *velocity {
	return &velocity{max: max, window: window.Microseconds(), maxCustomers: maxCustomers, parts: map[int32]*partVelocity{}}
}

// Heap a customer's state takes (heldBytes; measured by
// TestVelocityHeldBytesCoversTheHeap): its custVelocity (56 B, a 64 B
// allocation), its slot in the partition's map (a string key and a
// pointer, 24 B and a control byte, at the lowest occupancy of a map table
// right after it grew: 58 B), with the map's own tables and directory
// rounded up to velCustomerBytes (measured: 110-130 B for these two
// together); its orders' array (max+1 of 16 B) and its id.
const velCustomerBytes = 160

// customerBytes is what a customer with id takes.
func (v *velocity) customerBytes(id string) int64 {
	return velCustomerBytes + refdata.StringBytes((v.max+1)*16) + refdata.StringBytes(len(id))
}

// heldBytes is the heap the kept state takes, an estimate from above: its
// term of the memory bound (docs/DESIGN.md, "Memory bound"). Safe for
// concurrent use.
func (v *velocity) heldBytes() int64 { return v.held.Load() }

// part returns partition p's state, creating it empty.
func (v *velocity) part(p int32) *partVelocity {
	v.mu.Lock()
	defer v.mu.Unlock()
	ps := v.parts[p]
	if ps == nil {
		ps = &partVelocity{byID: map[string]*custVelocity{}}
		ps.lru.prev, ps.lru.next = &ps.lru, &ps.lru
		v.parts[p] = ps
	}
	return ps
}

// forget drops partition p's state. A batch of p still being scored keeps
// its (now detached) state to the end; its updates are lost with it, and
// no longer counted.
func (v *velocity) forget(p int32) {
	v.mu.Lock()
	ps := v.parts[p]
	delete(v.parts, p)
	v.mu.Unlock()
	if ps != nil {
		ps.mu.Lock()
		ps.gone = true
		v.held.Add(-ps.held)
		ps.mu.Unlock()
	}
}

// partVelocity is one partition's state: customers in a map and on an
// intrusive LRU list (most recently seen first), so that the bound costs
// no allocation per order.
type partVelocity struct {
	mu   sync.Mutex
	byID map[string]*custVelocity
	lru  custVelocity // sentinel: lru.next is the most recent, lru.prev the least

	held int64 // the customers' customerBytes
	gone bool  // forgotten: held is no longer in velocity.held
}

type custVelocity struct {
	id         string
	orders     []velOrder // sorted by time, at most max+1
	prev, next *custVelocity
}

type velOrder struct {
	at     int64 // event time, unix microseconds
	offset int64 // Kafka offset; -1 when unknown (never a duplicate)
}

// observe records customer id's order at event time at (unix micros) with
// Kafka offset off, and reports whether the customer now has more than max
// orders in (at-window, at]. ps.mu must be held.
func (v *velocity) observe(ps *partVelocity, id string, at, off int64) bool {
	c := ps.byID[id]
	if c == nil {
		c = v.admit(ps, id)
	} else {
		ps.unlink(c)
	}
	ps.pushFront(c)

	// Count the kept orders in (at-window, at], noting a re-delivery. A
	// re-delivered order has the same event time, so it is among the
	// orders scanned (those at or before at).
	n, dup := 0, false
	pos := len(c.orders) // where the order goes: after every order at or before it
	for i, o := range c.orders {
		if o.at > at {
			pos = i
			break
		}
		if o.at > at-v.window {
			n++
		}
		if off >= 0 && o.offset == off {
			dup = true
		}
	}
	if !dup {
		n++ // this order
		c.insert(pos, velOrder{at: at, offset: off}, v.max+1)
	}
	return n > v.max
}

// admit makes room for and returns a new customer's state, reusing the
// least recently seen customer's when the partition is full.
func (v *velocity) admit(ps *partVelocity, id string) *custVelocity {
	// Clone: the map key outlives the batch; a string sharing a larger
	// buffer would keep all of it alive.
	id = strings.Clone(id)
	var c *custVelocity
	grew := v.customerBytes(id)
	if len(ps.byID) >= v.maxCustomers {
		c = ps.lru.prev
		ps.unlink(c)
		delete(ps.byID, c.id)
		grew -= v.customerBytes(c.id)
		c.id, c.orders = id, c.orders[:0]
	} else {
		c = &custVelocity{id: id, orders: make([]velOrder, 0, v.max+1)}
	}
	ps.byID[id] = c
	ps.held += grew
	if !ps.gone {
		v.held.Add(grew)
	}
	return c
}

// insert puts o at index pos, keeping at most limit orders: when full, the
// earliest is dropped (o itself, when it is the earliest).
func (c *custVelocity) insert(pos int, o velOrder, limit int) {
	if len(c.orders) < limit {
		c.orders = append(c.orders, velOrder{})
		copy(c.orders[pos+1:], c.orders[pos:])
		c.orders[pos] = o
		return
	}
	if pos == 0 {
		return
	}
	copy(c.orders[:pos-1], c.orders[1:pos])
	c.orders[pos-1] = o
}

func (ps *partVelocity) unlink(c *custVelocity) {
	c.prev.next, c.next.prev = c.next, c.prev
	c.prev, c.next = nil, nil
}

func (ps *partVelocity) pushFront(c *custVelocity) {
	c.prev, c.next = &ps.lru, ps.lru.next
	ps.lru.next.prev = c
	ps.lru.next = c
}
