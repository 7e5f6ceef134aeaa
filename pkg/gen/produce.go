package gen

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Default topic names (DESIGN.md) and Produce tuning.
const (
	DefaultOrdersTopic    = "orders"
	DefaultPaymentsTopic  = "payments"
	DefaultShipmentsTopic = "shipments"
	DefaultCustomersTopic = "customers"
	DefaultFxRatesTopic   = "fx-rates"

	// DefaultMaxInFlight bounds the records handed to the client and not
	// yet acked: enough to fill several produce requests per partition,
	// small enough (a few MB of orders) to keep memory flat.
	DefaultMaxInFlight = 10000
	// DefaultProgressInterval is how often Produce reports progress.
	DefaultProgressInterval = 250 * time.Millisecond
)

// Topics names the topic each kind of record goes to. Empty fields take
// the Default*Topic names.
type Topics struct {
	Orders, Payments, Shipments, Customers, FxRates string
}

// DefaultTopics returns the topic names of DESIGN.md.
func DefaultTopics() Topics {
	return Topics{
		Orders:    DefaultOrdersTopic,
		Payments:  DefaultPaymentsTopic,
		Shipments: DefaultShipmentsTopic,
		Customers: DefaultCustomersTopic,
		FxRates:   DefaultFxRatesTopic,
	}
}

// WithDefaults returns t with empty names replaced by the defaults.
func (t Topics) WithDefaults() Topics {
	d := DefaultTopics()
	for _, f := range []struct {
		dst *string
		def string
	}{
		{&t.Orders, d.Orders}, {&t.Payments, d.Payments}, {&t.Shipments, d.Shipments},
		{&t.Customers, d.Customers}, {&t.FxRates, d.FxRates},
	} {
		if *f.dst == "" {
			*f.dst = f.def
		}
	}
	return t
}

// Plan says what Produce writes.
type Plan struct {
	// Orders is how many orders to produce, each followed by its payments
	// and shipments.
	Orders int
	// Rate caps event records (orders, payments, shipments) per second;
	// 0 means as fast as the cluster acks. Reference data is not paced.
	Rate float64
	// Topics to write to; empty names take the defaults.
	Topics Topics
	// MaxInFlight bounds records produced and not yet acked. Default
	// DefaultMaxInFlight.
	MaxInFlight int
	// ProgressInterval is how often the progress callback runs. Default
	// DefaultProgressInterval.
	ProgressInterval time.Duration
	// SkipReference leaves customers and fx rates out (e.g. for a second
	// run against topics that already hold them).
	SkipReference bool
	// SkipPayments and SkipShipments leave those events out; orders are
	// produced regardless.
	SkipPayments, SkipShipments bool
	// Encoder writes the event records (orders, payments, shipments) in
	// its format; nil is plain Avro with the generator's Codecs. Reference
	// data is plain Avro in every case (Sluice reads it so).
	Encoder EventEncoder
}

// Counts are records per kind.
type Counts struct {
	Customers, FxRates, Orders, Payments, Shipments int64
}

// Total is the sum over all kinds.
func (c Counts) Total() int64 {
	return c.Customers + c.FxRates + c.Orders + c.Payments + c.Shipments
}

// Events is the number of event records: orders, payments and shipments.
func (c Counts) Events() int64 { return c.Orders + c.Payments + c.Shipments }

// ByTopic maps topic names to counts (kinds sharing a topic are added).
func (c Counts) ByTopic(t Topics) map[string]int64 {
	t = t.WithDefaults()
	m := make(map[string]int64, 5)
	m[t.Customers] += c.Customers
	m[t.FxRates] += c.FxRates
	m[t.Orders] += c.Orders
	m[t.Payments] += c.Payments
	m[t.Shipments] += c.Shipments
	return m
}

// Phase is the stage Produce is in.
type Phase string

// Phases, in order.
const (
	PhaseReference Phase = "reference" // customers and fx rates
	PhaseEvents    Phase = "events"    // orders, payments, shipments
	PhaseDone      Phase = "done"      // every record acked or failed
)

// Progress is a snapshot passed to Produce's progress callback.
type Progress struct {
	Phase Phase
	// PlannedOrders is Plan.Orders; OrdersDone of them have been generated
	// and handed to the client with their payments and shipments.
	PlannedOrders, OrdersDone int
	// Sent counts records handed to the client, Acked those the cluster
	// acknowledged, Failed those that failed.
	Sent, Acked Counts
	Failed      int64
	Elapsed     time.Duration
}

// Summary is what Produce wrote.
type Summary struct {
	// Topics are the names written to, defaults applied.
	Topics Topics
	// FirstSeq and EndSeq delimit the orders produced: g.Order(seq) for
	// FirstSeq <= seq < EndSeq, each with g.Payments and g.Shipments of it
	// (unless skipped). On error, some of those may not have been acked.
	FirstSeq, EndSeq int
	// Acked counts the records the cluster acknowledged, per kind.
	Acked Counts
	// Failed counts records that failed; non-zero only with an error.
	Failed int64
	// Elapsed is the wall time of the whole call.
	Elapsed time.Duration
}

// ByTopic is Acked per topic name.
func (s Summary) ByTopic() map[string]int64 { return s.Acked.ByTopic(s.Topics) }

// RecordsPerSecond is the acked throughput over Elapsed, reference data
// included.
func (s Summary) RecordsPerSecond() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Acked.Total()) / s.Elapsed.Seconds()
}

// kind indexes per-kind counters.
type kind int

const (
	kindCustomer kind = iota
	kindFxRate
	kindOrder
	kindPayment
	kindShipment
	numKinds
)

func (k kind) String() string {
	switch k {
	case kindCustomer:
		return "customer"
	case kindFxRate:
		return "fx rate"
	case kindOrder:
		return "order"
	case kindPayment:
		return "payment"
	case kindShipment:
		return "shipment"
	}
	return "record"
}

// Produce writes plan to Kafka through cl: first every customer and fx rate
// of g (and waits until the cluster acked them, so that reference data is
// complete before the first event), then plan.Orders orders, each followed
// by its payments and shipments. Event records are produced in the order
// of their orders' event time; a payment or shipment's own event time is
// later than its order's, so across topics event time is not monotonic.
//
// Records are produced asynchronously with at most plan.MaxInFlight
// unacked. Produce returns once every record it produced was acked or
// failed; to bound that when brokers can vanish, configure cl with
// kgo.RecordDeliveryTimeout. Records carry no timestamp, so the client
// stamps them with the wall clock (stamping them with event time would
// let retention delete them at once).
//
// Orders come from g's cursor: Produce reserves plan.Orders positions at
// once, so concurrent use of g elsewhere does not interleave with them.
// The Summary says which orders were written.
//
// progress, if non-nil, is called every plan.ProgressInterval from a
// goroutine of Produce's, never concurrently with itself, and a last time
// with Phase PhaseDone before Produce returns.
//
// The first failed record stops production; the error wraps that
// record's error and names its topic and key. Cancelling ctx stops
// production too (ctx is also each record's context), and so does an
// encode error (see ErrDecimal). In every case the Summary counts what was
// acked.
func Produce(ctx context.Context, cl *kgo.Client, g *Generator, plan Plan, progress func(Progress)) (Summary, error) {
	if plan.Orders < 0 {
		return Summary{}, fmt.Errorf("gen: plan: Orders must not be negative, got %d", plan.Orders)
	}
	if plan.Rate < 0 {
		return Summary{}, fmt.Errorf("gen: plan: Rate must not be negative, got %v", plan.Rate)
	}
	if plan.MaxInFlight <= 0 {
		plan.MaxInFlight = DefaultMaxInFlight
	}
	if plan.ProgressInterval <= 0 {
		plan.ProgressInterval = DefaultProgressInterval
	}
	topics := plan.Topics.WithDefaults()
	events := plan.Encoder
	if events == nil {
		events = g.codecs
	}
	p := &producer{
		cl:      cl,
		codecs:  g.codecs,
		encoder: events,
		sem:     make(chan struct{}, plan.MaxInFlight),
		start:   time.Now(),
		planned: plan.Orders,
	}
	p.topics = [numKinds]string{topics.Customers, topics.FxRates, topics.Orders, topics.Payments, topics.Shipments}
	p.phase.Store(PhaseReference)

	stopProgress := p.reportEvery(plan.ProgressInterval, progress)
	first := g.reserve(plan.Orders)
	sum := Summary{Topics: topics, FirstSeq: first, EndSeq: first}

	err := p.reference(ctx, g, plan)
	if err == nil {
		p.phase.Store(PhaseEvents)
		err = p.events(ctx, g, plan, first, &sum.EndSeq)
	}
	p.wg.Wait()
	p.phase.Store(PhaseDone)
	stopProgress()

	sum.Acked = p.counts(&p.acked)
	sum.Failed = p.failed.Load()
	sum.Elapsed = time.Since(p.start)
	if progress != nil {
		progress(p.snapshot())
	}
	if ferr := p.firstErr(); ferr != nil {
		sent := p.counts(&p.sent).Total()
		return sum, fmt.Errorf("gen: %d of %d records failed; first: %w", sum.Failed, sent, ferr)
	}
	if err != nil {
		return sum, err
	}
	return sum, nil
}

// reserve hands out n consecutive order positions.
func (g *Generator) reserve(n int) int {
	return int(g.next.Add(int64(n))) - n
}

// producer is the state of one Produce call.
type producer struct {
	cl      *kgo.Client
	codecs  *Codecs      // reference data
	encoder EventEncoder // orders, payments, shipments
	topics  [numKinds]string
	sem     chan struct{}
	wg      sync.WaitGroup
	start   time.Time
	planned int

	phase      atomic.Value // Phase
	ordersDone atomic.Int64
	sent       [numKinds]atomic.Int64
	acked      [numKinds]atomic.Int64
	failed     atomic.Int64

	errMu sync.Mutex
	err   error // first record failure
}

func (p *producer) reference(ctx context.Context, g *Generator, plan Plan) error {
	if plan.SkipReference {
		return nil
	}
	for _, c := range g.customers {
		k, v, err := p.codecs.EncodeCustomer(c)
		if err != nil {
			return err
		}
		if err := p.send(ctx, kindCustomer, k, v); err != nil {
			return err
		}
	}
	for _, r := range g.fxAll {
		k, v, err := p.codecs.EncodeFxRate(r)
		if err != nil {
			return err
		}
		if err := p.send(ctx, kindFxRate, k, v); err != nil {
			return err
		}
	}
	// Reference data must be complete before the first event.
	p.wg.Wait()
	if err := p.firstErr(); err != nil {
		return err
	}
	return ctx.Err()
}

func (p *producer) events(ctx context.Context, g *Generator, plan Plan, first int, end *int) error {
	pace := pacer{rate: plan.Rate, start: time.Now()}
	for seq := first; seq < first+plan.Orders; seq++ {
		o := g.Order(seq)
		*end = seq + 1
		k, v, err := p.encoder.EncodeOrder(o)
		if err != nil {
			return err
		}
		if err := p.paced(ctx, &pace, kindOrder, k, v); err != nil {
			return err
		}
		if !plan.SkipPayments {
			for _, pay := range g.Payments(o) {
				k, v, err := p.encoder.EncodePayment(pay)
				if err != nil {
					return err
				}
				if err := p.paced(ctx, &pace, kindPayment, k, v); err != nil {
					return err
				}
			}
		}
		if !plan.SkipShipments {
			for _, s := range g.Shipments(o) {
				k, v, err := p.encoder.EncodeShipment(s)
				if err != nil {
					return err
				}
				if err := p.paced(ctx, &pace, kindShipment, k, v); err != nil {
					return err
				}
			}
		}
		p.ordersDone.Add(1)
	}
	return nil
}

func (p *producer) paced(ctx context.Context, pace *pacer, k kind, key, value []byte) error {
	if err := pace.wait(ctx); err != nil {
		return fmt.Errorf("gen: produce interrupted: %w", err)
	}
	return p.send(ctx, k, key, value)
}

// send hands one record to the client once an in-flight slot is free. It
// fails fast once any record failed, so that production stops at the first
// error.
func (p *producer) send(ctx context.Context, k kind, key, value []byte) error {
	if err := p.firstErr(); err != nil {
		return err
	}
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("gen: produce interrupted: %w", ctx.Err())
	}
	p.wg.Add(1)
	p.sent[k].Add(1)
	rec := &kgo.Record{Topic: p.topics[k], Key: key, Value: value}
	p.cl.Produce(ctx, rec, func(r *kgo.Record, err error) {
		// Promises run serially on the client's goroutine: keep this short
		// and non-blocking (the semaphore receive cannot block: this
		// record holds a slot).
		if err != nil {
			p.failed.Add(1)
			p.setErr(fmt.Errorf("produce %s (key %q) to topic %q: %w", k, r.Key, r.Topic, err))
		} else {
			p.acked[k].Add(1)
		}
		<-p.sem
		p.wg.Done()
	})
	return nil
}

func (p *producer) setErr(err error) {
	p.errMu.Lock()
	defer p.errMu.Unlock()
	if p.err == nil {
		p.err = err
	}
}

func (p *producer) firstErr() error {
	p.errMu.Lock()
	defer p.errMu.Unlock()
	return p.err
}

func (p *producer) counts(c *[numKinds]atomic.Int64) Counts {
	return Counts{
		Customers: c[kindCustomer].Load(),
		FxRates:   c[kindFxRate].Load(),
		Orders:    c[kindOrder].Load(),
		Payments:  c[kindPayment].Load(),
		Shipments: c[kindShipment].Load(),
	}
}

func (p *producer) snapshot() Progress {
	return Progress{
		Phase:         p.phase.Load().(Phase),
		PlannedOrders: p.planned,
		OrdersDone:    int(p.ordersDone.Load()),
		Sent:          p.counts(&p.sent),
		Acked:         p.counts(&p.acked),
		Failed:        p.failed.Load(),
		Elapsed:       time.Since(p.start),
	}
}

// reportEvery calls fn with a snapshot every interval until the returned
// stop function is called; stop waits for a running call to return.
func (p *producer) reportEvery(interval time.Duration, fn func(Progress)) (stop func()) {
	if fn == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				fn(p.snapshot())
			case <-done:
				return
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
	}
}

// pacer spaces calls to wait so that they average rate per second, against
// an absolute schedule (so that oversleeping is caught up, not
// accumulated). It sleeps only when more than a millisecond ahead:
// shorter timers cost more than they smooth.
type pacer struct {
	rate  float64
	start time.Time
	n     int64
}

func (p *pacer) wait(ctx context.Context) error {
	if p.rate <= 0 {
		return nil
	}
	due := p.start.Add(time.Duration(float64(p.n) / p.rate * float64(time.Second)))
	p.n++
	d := time.Until(due)
	if d < time.Millisecond {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
