// Package refdata keeps the reference tables that transforms join against:
// customers (by customer_id) and FX rate histories (per currency).
//
// Place in the flow: beside the pipelines. Every Sluice process reads the
// reference topics in full, outside the consumer group (like a global
// table), bootstraps them up to their high watermarks before any event batch
// is transformed, and keeps following them. The Store is the in-memory
// state; the Loader fills it from Kafka.
//
// A lookup that misses is only final when the Store is current: a
// transform asks AwaitCurrent, which, while the Loader follows the
// topics, waits until they are read up to high watermarks listed after
// the miss, and otherwise returns ErrNotCurrent for the transform to fail
// the batch (retried) rather than the row (dead-lettered).
//
// # Files
//
//	store.go   Store: customers by id, rate histories per currency; lookups
//	loader.go  Loader: the plain (group-less) Kafka consumer, Bootstrap up to
//	           the end offsets, then Follow
//	follow.go  how far Follow can be trusted: retries with backoff, the
//	           high-watermark listings, AwaitCurrent, Health
//	apply.go   one reference record -> one Store update (tombstones, keys,
//	           validation); bad records are skipped, never fatal
//	metrics.go the Loader's Prometheus series
package refdata

import (
	"context"
	"sort"
	"sync"
	"sync/atomic"
	"time"
	"unique"

	"github.com/shopspring/decimal"
)

// Customer is the part of a customer record the joins use.
type Customer struct {
	Name    string
	Country string
	Segment string
}

// Rate is one entry of a currency's history: from EffectiveFrom (unix
// millis) on, one unit of the currency is worth Rate units of the base.
type Rate struct {
	EffectiveFrom int64
	Rate          decimal.Decimal
}

// Store holds the reference tables. Safe for concurrent use: lookups take a
// read lock, updates from the Loader a write lock.
type Store struct {
	base string

	mu        sync.RWMutex
	customers map[string]Customer
	rates     map[string][]Rate // sorted by EffectiveFrom

	// HeldBytes' terms, changed under mu: the strings of the customers
	// held, and the most customers and rate entries ever held at once
	// (a Go map keeps its slots after deletes, a history slice its
	// capacity), and their total.
	strBytes               int64
	peakCustomers          int
	rateEntries, peakRates int
	held                   atomic.Int64

	// follower is the Loader's tracker while its Follow runs; nil for a
	// Store nobody follows (a snapshot, or filled by hand in tests).
	follower atomic.Pointer[tracker]
}

// NewStore returns an empty store converting into base (its rate is 1).
func NewStore(base string) *Store {
	return &Store{base: base, customers: map[string]Customer{}, rates: map[string][]Rate{}}
}

// AwaitCurrent is called by a transform after a lookup in table t missed,
// once per batch, before it fails a row for the miss. It returns nil when
// the miss is final: nobody follows the Store (it is a snapshot), or the
// follower has read t up to high watermarks listed after this call (so
// every record produced before the batch was fetched is applied; a
// healthy follower needs one round trip to Kafka). Otherwise, after
// LoaderConfig.MissWait, it returns an error wrapping ErrNotCurrent that
// says why (failing, so many records behind), or ctx's error: the
// transform returns it and the whole batch is retried. Safe for
// concurrent use.
func (s *Store) AwaitCurrent(ctx context.Context, t Table) error {
	tr := s.follower.Load()
	if tr == nil {
		return nil
	}
	return tr.await(ctx, t, time.Now())
}

// Base is the base currency.
func (s *Store) Base() string { return s.base }

// Customer looks a customer up.
func (s *Store) Customer(id string) (Customer, bool) {
	s.mu.RLock()
	c, ok := s.customers[id]
	s.mu.RUnlock()
	return c, ok
}

// PutCustomer inserts or replaces a customer.
//
// Country and Segment are interned: a few dozen distinct values are shared
// by millions of customers, and each decoded record would otherwise keep
// its own copies (about 20 B per customer, see BenchmarkStoreMemory1MCustomers).
func (s *Store) PutCustomer(id string, c Customer) {
	c.Country = unique.Make(c.Country).Value()
	c.Segment = unique.Make(c.Segment).Value()
	s.mu.Lock()
	if old, ok := s.customers[id]; ok {
		s.strBytes -= customerStrings(id, old)
	}
	s.customers[id] = c
	s.strBytes += customerStrings(id, c)
	s.account()
	s.mu.Unlock()
}

// DeleteCustomer removes a customer (a tombstone on the customers topic).
func (s *Store) DeleteCustomer(id string) {
	s.mu.Lock()
	if old, ok := s.customers[id]; ok {
		s.strBytes -= customerStrings(id, old)
		delete(s.customers, id)
		s.account()
	}
	s.mu.Unlock()
}

// PutRate records the rate of currency from effectiveFrom (unix millis) on;
// a second record for the same instant replaces the first.
func (s *Store) PutRate(currency string, effectiveFrom int64, rate decimal.Decimal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.rates[currency]
	i := sort.Search(len(h), func(i int) bool { return h[i].EffectiveFrom >= effectiveFrom })
	if i < len(h) && h[i].EffectiveFrom == effectiveFrom {
		h[i].Rate = rate
		return
	}
	h = append(h, Rate{})
	copy(h[i+1:], h[i:])
	h[i] = Rate{EffectiveFrom: effectiveFrom, Rate: rate}
	s.rates[currency] = h
	s.rateEntries++
	s.account()
}

// DeleteRate removes one history entry (a tombstone on the fx-rates topic).
func (s *Store) DeleteRate(currency string, effectiveFrom int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.rates[currency]
	i := sort.Search(len(h), func(i int) bool { return h[i].EffectiveFrom >= effectiveFrom })
	if i < len(h) && h[i].EffectiveFrom == effectiveFrom {
		s.rates[currency] = append(h[:i], h[i+1:]...)
		s.rateEntries--
		s.account()
	}
}

// RateAt returns the rate in force for currency at t: the entry with the
// latest EffectiveFrom at or before t. The base currency's rate is 1 at any
// time. ok is false when the currency has no rate yet at t.
func (s *Store) RateAt(currency string, t time.Time) (r Rate, ok bool) {
	if currency == s.base {
		return Rate{EffectiveFrom: 0, Rate: decimal.NewFromInt(1)}, true
	}
	ms := t.UnixMilli()
	s.mu.RLock()
	defer s.mu.RUnlock()
	h := s.rates[currency]
	// First entry after t; the one before it is in force.
	i := sort.Search(len(h), func(i int) bool { return h[i].EffectiveFrom > ms })
	if i == 0 {
		return Rate{}, false
	}
	return h[i-1], true
}

// Heap the Store takes, per entry (HeldBytes; measured by
// TestHeldBytesCoversTheHeap):
//
//   - a customer: its slot in the map, key and Customer's three string
//     headers (64 B) with a control byte, at the lowest occupancy a Go map
//     table has right after it grew (7 in 16 slots used): 150 B, rounded up
//     to CustomerBytes, counted for the most customers ever held at once
//     (a map does not shrink when entries are deleted); plus the
//     allocations of each held customer's id and name (country and segment
//     are interned);
//   - a rate: the entry in its history (24 B, twice for an append's
//     spare capacity) and the decimal's big.Int with one word: RateBytes,
//     for the most entries ever held at once.
const (
	CustomerBytes = 160
	RateBytes     = 96
)

// customerStrings is what customer id, c's own strings take.
func customerStrings(id string, c Customer) int64 {
	return StringBytes(len(id)) + StringBytes(len(c.Name))
}

// account sets held from its terms; s.mu must be held for writing. The
// slots count at their peak: a map keeps the room of the most entries it
// ever held, deleted ones included, and a history its capacity.
func (s *Store) account() {
	s.peakCustomers = max(s.peakCustomers, len(s.customers))
	s.peakRates = max(s.peakRates, s.rateEntries)
	s.held.Store(int64(s.peakCustomers)*CustomerBytes + s.strBytes + int64(s.peakRates)*RateBytes)
}

// StringBytes is the heap an n-byte string of its own takes: the
// allocator's size class, at or above n (multiples of 16 up to 256 B, at
// most a quarter more above).
func StringBytes(n int) int64 {
	if n == 0 {
		return 0
	}
	if n <= 256 {
		return int64(n+15) &^ 15
	}
	return int64(n + n/4 + 16)
}

// HeldBytes is the heap the Store's entries take, an estimate from above
// (CustomerBytes, RateBytes, StringBytes): the reference data's term of
// the memory bound (docs/DESIGN.md, "Memory bound"). Safe for concurrent
// use.
func (s *Store) HeldBytes() int64 { return s.held.Load() }

// Counts returns the number of customers and of rate entries.
func (s *Store) Counts() (customers, rates int) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, h := range s.rates {
		rates += len(h)
	}
	return len(s.customers), rates
}
