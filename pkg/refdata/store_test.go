package refdata

import (
	"fmt"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/shopspring/decimal"
)

func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

// sameDecimal is exact equality including the scale: rates keep their 8
// places through the Store.
func sameDecimal(a, b decimal.Decimal) bool {
	return a.Equal(b) && a.Exponent() == b.Exponent()
}

func ms(n int64) time.Time { return time.UnixMilli(n).UTC() }

// history returns currency's entries as "from=rate" strings.
func history(s *Store, currency string) []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []string
	for _, r := range s.rates[currency] {
		out = append(out, fmt.Sprintf("%d=%s", r.EffectiveFrom, r.Rate))
	}
	return out
}

func TestStorePutRateKeepsHistorySorted(t *testing.T) {
	tests := []struct {
		name string
		puts []Rate
		want []string
	}{
		{"in order", []Rate{{1000, dec("1.1")}, {2000, dec("1.2")}, {3000, dec("1.3")}},
			[]string{"1000=1.1", "2000=1.2", "3000=1.3"}},
		{"reversed", []Rate{{3000, dec("1.3")}, {2000, dec("1.2")}, {1000, dec("1.1")}},
			[]string{"1000=1.1", "2000=1.2", "3000=1.3"}},
		{"middle last", []Rate{{1000, dec("1.1")}, {3000, dec("1.3")}, {2000, dec("1.2")}},
			[]string{"1000=1.1", "2000=1.2", "3000=1.3"}},
		{"same instant replaces", []Rate{{1000, dec("1.1")}, {2000, dec("1.2")}, {1000, dec("1.15")}},
			[]string{"1000=1.15", "2000=1.2"}},
		{"negative millis before epoch", []Rate{{0, dec("2")}, {-5, dec("1")}},
			[]string{"-5=1", "0=2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewStore("USD")
			for _, r := range tt.puts {
				s.PutRate("EUR", r.EffectiveFrom, r.Rate)
			}
			if got := history(s, "EUR"); fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("history %v, want %v", got, tt.want)
			}
			if _, n := s.Counts(); n != len(tt.want) {
				t.Fatalf("Counts rates = %d, want %d", n, len(tt.want))
			}
		})
	}
}

func TestStoreDeleteRate(t *testing.T) {
	tests := []struct {
		name   string
		delete int64
		want   []string
	}{
		{"first", 1000, []string{"2000=1.2", "3000=1.3"}},
		{"middle", 2000, []string{"1000=1.1", "3000=1.3"}},
		{"last", 3000, []string{"1000=1.1", "2000=1.2"}},
		{"absent instant is a no-op", 2500, []string{"1000=1.1", "2000=1.2", "3000=1.3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewStore("USD")
			s.PutRate("EUR", 3000, dec("1.3"))
			s.PutRate("EUR", 1000, dec("1.1"))
			s.PutRate("EUR", 2000, dec("1.2"))
			s.DeleteRate("EUR", tt.delete)
			s.DeleteRate("GBP", tt.delete) // unknown currency: no-op, no panic
			if got := history(s, "EUR"); fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("history %v, want %v", got, tt.want)
			}
		})
	}
}

func TestStoreRateAt(t *testing.T) {
	s := NewStore("USD")
	s.PutRate("EUR", 2000, dec("1.20000000"))
	s.PutRate("EUR", 1000, dec("1.10000000"))
	s.PutRate("JPY", 1500, dec("0.00670000"))
	tests := []struct {
		name     string
		currency string
		at       time.Time
		ok       bool
		from     int64
		rate     string
	}{
		{"just before the first rate", "EUR", ms(999), false, 0, ""},
		{"equal to the first effective_from", "EUR", ms(1000), true, 1000, "1.10000000"},
		{"between changes", "EUR", ms(1500), true, 1000, "1.10000000"},
		{"a millisecond before a change", "EUR", ms(1999), true, 1000, "1.10000000"},
		{"equal to a change", "EUR", ms(2000), true, 2000, "1.20000000"},
		{"sub-millisecond after a change", "EUR", ms(2000).Add(999 * time.Microsecond), true, 2000, "1.20000000"},
		{"long after the last change", "EUR", ms(2000).AddDate(10, 0, 0), true, 2000, "1.20000000"},
		{"other currency keeps its own history", "JPY", ms(1499), false, 0, ""},
		{"other currency in force", "JPY", ms(1500), true, 1500, "0.00670000"},
		{"unknown currency", "GBP", ms(5000), false, 0, ""},
		{"base currency before any rate", "USD", ms(0), true, 0, "1"},
		{"base currency at the zero time", "USD", time.Time{}, true, 0, "1"},
		{"base currency far future", "USD", ms(1 << 50), true, 0, "1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, ok := s.RateAt(tt.currency, tt.at)
			if ok != tt.ok {
				t.Fatalf("RateAt(%s, %v) ok = %v, want %v", tt.currency, tt.at, ok, tt.ok)
			}
			if !ok {
				return
			}
			if r.EffectiveFrom != tt.from || !sameDecimal(r.Rate, dec(tt.rate)) {
				t.Fatalf("RateAt(%s, %v) = %d %s, want %d %s", tt.currency, tt.at, r.EffectiveFrom, r.Rate, tt.from, tt.rate)
			}
		})
	}
}

func TestStoreCustomers(t *testing.T) {
	s := NewStore("USD")
	if _, ok := s.Customer("C-1"); ok {
		t.Fatal("empty store has C-1")
	}
	s.PutCustomer("C-1", Customer{Name: "Ada", Country: "GB", Segment: "VIP"})
	s.PutCustomer("C-2", Customer{Name: "Bo", Country: "SE", Segment: "CONSUMER"})
	s.PutCustomer("C-1", Customer{Name: "Ada L.", Country: "GB", Segment: "BUSINESS"})
	if c, ok := s.Customer("C-1"); !ok || c != (Customer{Name: "Ada L.", Country: "GB", Segment: "BUSINESS"}) {
		t.Fatalf("C-1 = %+v %v, want the update", c, ok)
	}
	s.DeleteCustomer("C-2")
	s.DeleteCustomer("C-3") // absent: no-op
	if _, ok := s.Customer("C-2"); ok {
		t.Fatal("C-2 still there after delete")
	}
	if n, _ := s.Counts(); n != 1 {
		t.Fatalf("Counts customers = %d, want 1", n)
	}
}

func TestStorePutCustomerInternsCountryAndSegment(t *testing.T) {
	s := NewStore("USD")
	// Separate allocations with equal contents, as two decoded records.
	s.PutCustomer("C-1", Customer{Name: "A", Country: string([]byte("DE")), Segment: string([]byte("CONSUMER"))})
	s.PutCustomer("C-2", Customer{Name: "B", Country: string([]byte("DE")), Segment: string([]byte("CONSUMER"))})
	a, _ := s.Customer("C-1")
	b, _ := s.Customer("C-2")
	if unsafe.StringData(a.Country) != unsafe.StringData(b.Country) {
		t.Error("country strings not shared")
	}
	if unsafe.StringData(a.Segment) != unsafe.StringData(b.Segment) {
		t.Error("segment strings not shared")
	}
	if a.Country != "DE" || a.Segment != "CONSUMER" {
		t.Errorf("interned values changed: %+v", a)
	}
}

// TestStoreConcurrentReadersAndWriters is meant for -race: lookups run
// while a writer rewrites the same customers and histories, and every
// answer a reader gets must be one that was written.
func TestStoreConcurrentReadersAndWriters(t *testing.T) {
	s := NewStore("USD")
	s.PutRate("EUR", 0, dec("1.00000000"))
	const rounds = 2000
	var writers, readers sync.WaitGroup
	for range 2 {
		writers.Go(func() {
			for i := range rounds {
				id := fmt.Sprintf("C-%d", i%50)
				s.PutCustomer(id, Customer{Name: id, Country: "FR", Segment: "VIP"})
				s.PutRate("EUR", int64(i%100)*10, dec(fmt.Sprintf("1.%08d", i%100)))
				if i%7 == 0 {
					s.DeleteCustomer(id)
					s.DeleteRate("EUR", int64(i%100)*10+5) // never present
				}
			}
		})
	}
	stop := make(chan struct{})
	errs := make(chan error, 4)
	for range 4 {
		readers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				for i := range 50 {
					id := fmt.Sprintf("C-%d", i)
					if c, ok := s.Customer(id); ok && (c.Name != id || c.Country != "FR") {
						errs <- fmt.Errorf("torn customer %s: %+v", id, c)
						return
					}
				}
				// Entry 0 is never deleted: a rate is always in force.
				if r, ok := s.RateAt("EUR", ms(995)); !ok || r.EffectiveFrom > 995 {
					errs <- fmt.Errorf("RateAt(EUR, 995) = %+v, %v", r, ok)
					return
				}
				s.Counts()
			}
		})
	}
	writers.Wait()
	close(stop)
	readers.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := history(s, "EUR"); len(got) != 100 {
		t.Fatalf("history has %d entries, want 100", len(got))
	}
}
