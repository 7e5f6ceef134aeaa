//go:build integration

package bench

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-etl/sluice/pkg/gen"
)

// encodeJSON is an order as the json format reads it (gen.EncodeOrderJSON).
func encodeJSON(o gen.Order) ([]byte, error) {
	_, v, err := gen.EncodeOrderJSON(o)
	return v, err
}

// produceSpec says what produce writes: the first JSON orders of the
// generator as JSON to JSONTopic, its first Avro orders as plain Avro to
// AvroTopic (the same orders: seq 0..n-1), and, when their topics are
// named, every customer and fx rate. Orders are keyed by customer_id.
type produceSpec struct {
	JSONTopic, AvroTopic   string
	JSON, Avro             int
	Customers, FxRatesName string
}

// produced is what produce wrote.
type produced struct {
	JSONBytes, AvroBytes int64
	Customers, FxRates   int
	Took                 time.Duration
}

// produce writes spec's records with one client, generating and encoding
// the orders on every core (a benchmark produces before its clock starts,
// so only the wall time matters). A record the loaders cannot read shows
// as a row missing from their tables, so nothing here decodes.
func (w *world) produce(g *gen.Generator, spec produceSpec) produced {
	b := w.b
	b.Helper()
	start := time.Now()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers()...), kgo.MaxBufferedRecords(250_000), kgo.ProducerLinger(10*time.Millisecond))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	var (
		wg          sync.WaitGroup
		fails       atomic.Int64
		first       atomic.Value
		jsonB, avrB atomic.Int64
	)
	send := func(r *kgo.Record) {
		wg.Add(1)
		cl.Produce(context.Background(), r, func(_ *kgo.Record, err error) {
			defer wg.Done()
			if err != nil {
				fails.Add(1)
				first.CompareAndSwap(nil, err)
			}
		})
	}
	codecs := g.Codecs()
	var out produced
	if spec.Customers != "" {
		for _, c := range g.Customers() {
			k, v, err := codecs.EncodeCustomer(c)
			if err != nil {
				b.Fatal(err)
			}
			send(&kgo.Record{Topic: spec.Customers, Key: k, Value: v})
			out.Customers++
		}
	}
	if spec.FxRatesName != "" {
		for _, r := range g.FxRates() {
			k, v, err := codecs.EncodeFxRate(r)
			if err != nil {
				b.Fatal(err)
			}
			send(&kgo.Record{Topic: spec.FxRatesName, Key: k, Value: v})
			out.FxRates++
		}
	}
	n := max(spec.JSON, spec.Avro)
	const chunk = 2000
	var next atomic.Int64
	var encErr atomic.Value
	var workers sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for {
				lo := int(next.Add(chunk)) - chunk
				if lo >= n || encErr.Load() != nil {
					return
				}
				for seq := lo; seq < min(lo+chunk, n); seq++ {
					o := g.Order(seq)
					k, av, err := codecs.EncodeOrder(o)
					if err != nil {
						encErr.CompareAndSwap(nil, err)
						return
					}
					if seq < spec.JSON {
						jv, err := encodeJSON(o)
						if err != nil {
							encErr.CompareAndSwap(nil, err)
							return
						}
						jsonB.Add(int64(len(jv)))
						send(&kgo.Record{Topic: spec.JSONTopic, Key: k, Value: jv})
					}
					if seq < spec.Avro {
						avrB.Add(int64(len(av)))
						send(&kgo.Record{Topic: spec.AvroTopic, Key: k, Value: av})
					}
				}
			}
		}()
	}
	workers.Wait()
	wg.Wait()
	if err := encErr.Load(); err != nil {
		b.Fatalf("encode orders: %v", err)
	}
	if n := fails.Load(); n > 0 {
		b.Fatalf("%d records not produced, first error: %v", n, first.Load())
	}
	out.JSONBytes, out.AvroBytes, out.Took = jsonB.Load(), avrB.Load(), time.Since(start)
	return out
}
