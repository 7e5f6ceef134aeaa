package refdata

import (
	"fmt"
	"runtime"
	"strconv"
	"testing"

	"github.com/shopspring/decimal"
)

// heapGrowth returns how much the live heap grew while fill ran (after a
// collection on each side) and what fill returned, kept alive until the
// second measurement.
func heapGrowth[T any](fill func() T) (int64, T) {
	var before, after runtime.MemStats
	// Twice: the first moves sync.Pool caches to their victim lists,
	// the second frees them, and what earlier tests left behind with them.
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&before)
	v := fill()
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(v)
	return int64(after.HeapAlloc) - int64(before.HeapAlloc), v
}

// TestHeldBytesCoversTheHeap fills Stores of several sizes, each string a
// fresh allocation as a decoded record's is, and checks that HeldBytes is
// at or above the heap they take (it is the reference data's term of the
// memory bound) and not more than twice it (a bound that far above would
// waste the memory it reserves). The sizes put Go's map tables at
// different occupancies.
func TestHeldBytesCoversTheHeap(t *testing.T) {
	sizes := []int{3_000, 20_000, 70_000, 150_000, 400_000}
	if testing.Short() {
		sizes = sizes[:3]
	}
	countries := []string{"US", "DE", "GB", "FR", "JP", "CH"}
	for _, n := range sizes {
		grew, s := heapGrowth(func() *Store {
			s := NewStore("USD")
			for i := range n {
				s.PutCustomer(fresh(fmt.Sprintf("C-%08d", i)), Customer{
					Name:    fresh("Customer number " + strconv.Itoa(i)),
					Country: fresh(countries[i%len(countries)]),
					Segment: fresh("CONSUMER"),
				})
			}
			return s
		})
		held := s.HeldBytes()
		t.Logf("%d customers: heap %d B (%.0f B each), HeldBytes %d (%.2f×)", n, grew, float64(grew)/float64(n), held, float64(held)/float64(grew))
		if held < grew || held > 2*grew {
			t.Errorf("%d customers: HeldBytes %d for a heap of %d B, want within [1, 2]× of it", n, held, grew)
		}
	}

	const perCurrency = 5_000
	currencies := []string{"EUR", "GBP", "JPY", "CHF", "CAD", "AUD", "SEK", "NOK"}
	grew, s := heapGrowth(func() *Store {
		s := NewStore("USD")
		for i := range perCurrency {
			for _, c := range currencies {
				s.PutRate(c, int64(i)*60_000, decimal.New(int64(100_000_000+i), -8))
			}
		}
		return s
	})
	n := perCurrency * len(currencies)
	held := s.HeldBytes()
	t.Logf("%d rates: heap %d B (%.0f B each), HeldBytes %d (%.2f×)", n, grew, float64(grew)/float64(n), held, float64(held)/float64(grew))
	if held < grew || held > 2*grew {
		t.Errorf("%d rates: HeldBytes %d for a heap of %d B, want within [1, 2]× of it", n, held, grew)
	}
}

// TestHeldBytesFollowsEveryUpdate checks the running total through
// replacements and deletions: a replaced customer's strings are counted
// once, a deleted one's no more, while the slots stay counted at the most
// entries ever held (a map keeps them); a deletion of what is not there
// changes nothing.
func TestHeldBytesFollowsEveryUpdate(t *testing.T) {
	s := NewStore("USD")
	s.PutCustomer("C-1", Customer{Name: "Ada", Country: "GB", Segment: "VIP"})
	if got, want := s.HeldBytes(), CustomerBytes+customerStrings("C-1", Customer{Name: "Ada"}); got != want {
		t.Fatalf("one customer: HeldBytes %d, want %d", got, want)
	}
	long := Customer{Name: "Ada Lovelace, Countess of Lovelace, née Byron", Country: "GB"}
	s.PutCustomer("C-1", long)
	if got, want := s.HeldBytes(), CustomerBytes+customerStrings("C-1", long); got != want {
		t.Fatalf("customer replaced by a longer name: HeldBytes %d, want %d", got, want)
	}
	s.PutCustomer("C-2", Customer{Name: "Bob"})
	s.DeleteCustomer("C-1")
	s.DeleteCustomer("C-9")
	if got, want := s.HeldBytes(), 2*CustomerBytes+customerStrings("C-2", Customer{Name: "Bob"}); got != want {
		t.Fatalf("after deletes: HeldBytes %d, want %d (two slots, one customer's strings)", got, want)
	}
	s.DeleteCustomer("C-2")
	s.PutCustomer("C-3", Customer{Name: "Cy"}) // into a slot a delete left
	if got, want := s.HeldBytes(), 2*CustomerBytes+customerStrings("C-3", Customer{Name: "Cy"}); got != want {
		t.Fatalf("a customer after the deletes: HeldBytes %d, want %d", got, want)
	}
	s.DeleteCustomer("C-3")
	s.PutRate("EUR", 1000, dec("1.1"))
	s.PutRate("EUR", 1000, dec("1.2")) // same instant: replaced
	s.PutRate("EUR", 2000, dec("1.3"))
	if got, want := s.HeldBytes(), int64(2*CustomerBytes+2*RateBytes); got != want {
		t.Fatalf("two rate entries: HeldBytes %d, want %d", got, want)
	}
	s.DeleteRate("EUR", 1000)
	s.DeleteRate("EUR", 1500)
	s.PutRate("EUR", 3000, dec("1.4"))
	if got, want := s.HeldBytes(), int64(2*CustomerBytes+2*RateBytes); got != want {
		t.Fatalf("a rate deleted, one added: HeldBytes %d, want %d", got, want)
	}
}

// TestHeldBytesCoversTheHeapAfterDeletes: a customers topic with many
// tombstones leaves the map as large as it ever was; HeldBytes must still
// cover the heap.
func TestHeldBytesCoversTheHeapAfterDeletes(t *testing.T) {
	const n = 150_000
	grew, s := heapGrowth(func() *Store {
		s := NewStore("USD")
		for i := range n {
			s.PutCustomer(fresh(fmt.Sprintf("C-%08d", i)), Customer{Name: fresh("Customer number " + strconv.Itoa(i)), Country: "CH"})
		}
		for i := range n * 6 / 10 {
			s.DeleteCustomer(fmt.Sprintf("C-%08d", i))
		}
		return s
	})
	held := s.HeldBytes()
	t.Logf("%d customers, 60 %% deleted: heap %d B, HeldBytes %d (%.2f×)", n, grew, held, float64(held)/float64(grew))
	if held < grew || held > 2*grew {
		t.Errorf("HeldBytes %d for a heap of %d B after deletes, want within [1, 2]× of it", held, grew)
	}
}
