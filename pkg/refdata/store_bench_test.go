package refdata

import (
	"fmt"
	"strconv"
	"testing"
)

// BenchmarkStoreMemory1MCustomers measures the heap a Store needs per
// customer at a realistic size. Every string is a fresh allocation, as
// decoding a Kafka record makes it, so that the figure includes what
// interning saves (country and segment repeat across customers).
func BenchmarkStoreMemory1MCustomers(b *testing.B) {
	const n = 1_000_000
	countries := []string{"US", "DE", "GB", "FR", "JP", "CH", "CA", "NL", "ES", "IT", "SE", "BR", "IN", "AU", "MX"}
	segments := []string{"CONSUMER", "BUSINESS", "VIP"}
	b.ReportAllocs()
	var perCustomer float64
	for b.Loop() {
		grew, s := heapGrowth(func() *Store {
			s := NewStore("USD")
			for i := range n {
				id := fmt.Sprintf("C-%08d", i)
				s.PutCustomer(id, Customer{
					Name:    fresh("Customer " + strconv.Itoa(100000+i%900000)), // 15 bytes
					Country: fresh(countries[i%len(countries)]),
					Segment: fresh(segments[i%len(segments)]),
				})
			}
			return s
		})
		if c, _ := s.Counts(); c != n {
			b.Fatalf("%d customers, want %d", c, n)
		}
		perCustomer = float64(grew) / n
	}
	b.ReportMetric(perCustomer, "B/customer")
}

// fresh returns a copy of s in its own allocation, like a decoded field.
func fresh(s string) string { return string([]byte(s)) }
