//go:build integration

package bench

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-etl/sluice/internal/benchutil"
)

// Case (f): produce→queryable latency. `sluice run` (JSON, [order_items],
// batch max_wait 1 s) has joined its group on a fresh topic before the
// clock starts; then the bench produces at a steady rate (records
// generated beforehand) and notes, per record, when it handed it to the
// producer. Its offset comes back with the acknowledgement. Every 50 ms it
// asks ClickHouse for the highest visible offset of each partition; since
// a partition's rows are loaded in offset order, a record is queryable
// from the first poll whose maximum reaches its offset. The poll reads
// only the granules past what it saw before (the table is ordered by
// _topic, _partition, _offset), so it stays cheap as the table grows.
//
// Latency = first poll that sees the record − the moment it was handed
// to the producer: the producer's linger and acknowledgement, Sluice's
// fetch, batching, transform and INSERT, and up to one poll period
// (ResolutionMs) of measuring. The loader CPU counts from the first
// produce (start-up excluded).

const (
	latencyMaxWait = time.Second
	latencyPoll    = 50 * time.Millisecond
)

func (s *suite) caseLatency() benchutil.Case {
	c := benchutil.Case{Name: fmt.Sprintf("latency, %d/s for %d s, max_wait %v", s.latencyRate, s.latencySeconds, latencyMaxWait)}
	if err := s.latency(&c); err != nil {
		c.Err = err.Error()
	}
	return c
}

// latencyMaxWaitMs is what case f's p99 is held to (with 300 ms).
func (s *suite) latencyMaxWaitMs() float64 { return float64(latencyMaxWait.Milliseconds()) }

func (s *suite) latency(c *benchutil.Case) error {
	ctx := context.Background()
	total := s.latencyRate * s.latencySeconds
	topic := s.w.name("orders_latency")
	s.w.createTopic(topic, s.partitions)
	recs, err := s.latencyRecords(topic, total)
	if err != nil {
		return err
	}
	db, err := s.newDB(benchutil.CaseLatency)
	if err != nil {
		return err
	}
	poller := s.newOffsetPoller(db, topic)
	pollCPU, err := poller.idleServerCPU(ctx, 2*time.Second)
	if err != nil {
		return err
	}
	group := db + "_g"
	p, err := s.startSluice(db, group, topic, "json", "[order_items]",
		fmt.Sprintf("batch:\n  max_wait: %s\n", latencyMaxWait))
	if err != nil {
		return err
	}
	defer p.kill()
	if err := s.waitAssigned(ctx, group, topic, p); err != nil {
		return err
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers()...), kgo.ProducerLinger(time.Millisecond), kgo.MaxBufferedRecords(100_000))
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := cl.Ping(ctx); err != nil {
		return err
	}
	cpu0, _, err := p.usage()
	if err != nil {
		return err
	}

	var (
		mu       sync.Mutex
		produced = make([][]time.Time, s.partitions) // [partition][offset]
		fails    atomic.Int64
		firstErr atomic.Value
		acked    sync.WaitGroup
	)
	m := s.startMeter(db)
	poller.m = m
	pollDone := make(chan struct{})
	var pollErr error
	producing := make(chan struct{})
	ends := make([]int64, s.partitions)
	go func() {
		defer close(pollDone)
		pollErr = poller.run(ctx, producing, ends, p)
	}()

	start := m.start
	tick := time.NewTicker(time.Millisecond)
	for sent := 0; sent < total; {
		due := min(total, int(time.Since(start).Seconds()*float64(s.latencyRate))+1)
		for ; sent < due; sent++ {
			t0 := time.Now()
			acked.Add(1)
			cl.Produce(ctx, recs[sent], func(r *kgo.Record, err error) {
				defer acked.Done()
				if err != nil {
					fails.Add(1)
					firstErr.CompareAndSwap(nil, err)
					return
				}
				mu.Lock()
				defer mu.Unlock()
				for int64(len(produced[r.Partition])) <= r.Offset {
					produced[r.Partition] = append(produced[r.Partition], time.Time{})
				}
				produced[r.Partition][r.Offset] = t0
			})
		}
		<-tick.C
	}
	tick.Stop()
	produceTook := time.Since(start)
	acked.Wait()
	mu.Lock()
	for i := range produced {
		ends[i] = int64(len(produced[i]))
	}
	mu.Unlock()
	close(producing)
	<-pollDone
	if n := fails.Load(); n > 0 {
		return fmt.Errorf("%d records not produced, first error: %v", n, firstErr.Load())
	}
	if pollErr != nil {
		return pollErr
	}
	cpu1, hwm, err := p.usage()
	if err != nil {
		return err
	}
	if err := m.loaded(ctx, cpu1-cpu0); err != nil {
		return err
	}
	if err := p.stop(); err != nil {
		return err
	}

	var lat []time.Duration
	for part, times := range produced {
		ev := poller.out[part]
		j := 0
		for off, t0 := range times {
			for j < len(ev) && ev[j].max < int64(off) {
				j++
			}
			if j == len(ev) || t0.IsZero() {
				return fmt.Errorf("partition %d offset %d: never seen or never produced", part, off)
			}
			lat = append(lat, ev[j].at.Sub(t0))
		}
	}
	slices.Sort(lat)
	q := func(f float64) float64 {
		return float64(lat[min(len(lat)-1, int(f*float64(len(lat))))].Microseconds()) / 1000
	}
	c.Rows = int64(len(lat))
	c.Latency = &benchutil.Latency{Samples: int64(len(lat)), P50Ms: q(0.50), P95Ms: q(0.95), P99Ms: q(0.99),
		MaxMs: float64(lat[len(lat)-1].Microseconds()) / 1000, ResolutionMs: float64(latencyPoll.Milliseconds())}
	c.LoaderCPUUsPerRow = benchutil.F(float64((cpu1 - cpu0).Microseconds()) / float64(len(lat)))
	c.PeakRSSMB = benchutil.F(float64(hwm) / 1024)
	if err := m.settle(ctx, c); err != nil {
		return err
	}
	// The rate the producer kept is the case's rows/s over its producing
	// time, not over producing and the tail of the load.
	c.Note = fmt.Sprintf("produced %d records in %.1f s (%.0f/s); rows/s is produced rows over first produce → last visible; "+
		"the bench's polls every %v cost the server %.0f ms/s (measured on the empty table before Sluice started), %.2f µs/row at the produce rate, included in server µs/row",
		total, produceTook.Seconds(), float64(total)/produceTook.Seconds(), latencyPoll,
		float64(pollCPU.Microseconds())/1000, float64(pollCPU.Microseconds())/(float64(total)/produceTook.Seconds()))
	return s.checkExactlyOnce(ctx, db, uint64(len(lat)))
}

// latencyRecords generates case f's orders (after the main data set's, so
// their ids are new) as keyed JSON records.
func (s *suite) latencyRecords(topic string, n int) ([]*kgo.Record, error) {
	base := max(s.orders, s.avro)
	recs := make([]*kgo.Record, n)
	codecs := s.g.Codecs()
	var wg sync.WaitGroup
	errs := make([]error, runtime.GOMAXPROCS(0))
	for w := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += len(errs) {
				o := s.g.Order(base + i)
				k, _, err := codecs.EncodeOrder(o)
				if err != nil {
					errs[w] = err
					return
				}
				v, err := encodeJSON(o)
				if err != nil {
					errs[w] = err
					return
				}
				recs[i] = &kgo.Record{Topic: topic, Key: k, Value: v}
			}
		}()
	}
	wg.Wait()
	return recs, errors.Join(errs...)
}

// waitAssigned waits until the group is stable with every partition of
// topic assigned: from then on a produced record is fetched at once.
func (s *suite) waitAssigned(ctx context.Context, group, topic string, p *sluiceProc) error {
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		if err := p.alive(); err != nil {
			return err
		}
		gs, err := s.w.adm.DescribeGroups(ctx, group)
		if err == nil {
			if g, ok := gs[group]; ok && g.State == "Stable" && len(g.AssignedPartitions()[topic]) == int(s.partitions) {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("group %s has not got all %d partitions of %s within 2 minutes:\n%s", group, s.partitions, topic, tail(p.log))
}

// visible is one poll's highest visible offset of a partition.
type visible struct {
	max int64
	at  time.Time
}

// offsetPoller reads the highest visible offset of each partition.
type offsetPoller struct {
	s         *suite
	db, topic string
	seen      []int64     // highest offset seen per partition, -1 before
	out       [][]visible // each partition's increases
	m         *meter      // its first visible row is set
}

func (s *suite) newOffsetPoller(db, topic string) *offsetPoller {
	o := &offsetPoller{s: s, db: db, topic: topic, seen: make([]int64, s.partitions), out: make([][]visible, s.partitions)}
	for i := range o.seen {
		o.seen[i] = -1
	}
	return o
}

// poll asks once. Only the granules past what was seen are read.
func (o *offsetPoller) poll(ctx context.Context) error {
	var cond []string
	for part, x := range o.seen {
		cond = append(cond, fmt.Sprintf("(_partition = %d AND _offset > %d)", part, x))
	}
	rows, err := o.s.w.ch.Query(ctx, fmt.Sprintf("SELECT _partition, max(_offset) FROM `%s`.orders WHERE _topic = '%s' AND (%s) GROUP BY _partition",
		o.db, o.topic, strings.Join(cond, " OR ")))
	if err != nil {
		return err
	}
	defer rows.Close()
	now := time.Now()
	for rows.Next() {
		var part uint32
		var mx uint64
		if err := rows.Scan(&part, &mx); err != nil {
			return err
		}
		if int(part) < len(o.seen) && int64(mx) > o.seen[part] {
			o.seen[part] = int64(mx)
			o.out[part] = append(o.out[part], visible{max: int64(mx), at: now})
			if o.m != nil && o.m.first == 0 {
				o.m.first = now.Sub(o.m.start)
			}
		}
	}
	return rows.Err()
}

// idleServerCPU polls the empty table for d and returns the server's CPU
// per second meanwhile: what the bench's own polling costs the server,
// part of case f's server CPU.
func (o *offsetPoller) idleServerCPU(ctx context.Context, d time.Duration) (time.Duration, error) {
	cpu0, t0 := o.s.serverCPU(), time.Now()
	for time.Since(t0) < d {
		if err := o.poll(ctx); err != nil {
			return 0, err
		}
		time.Sleep(latencyPoll)
	}
	return time.Duration(float64(o.s.serverCPU()-cpu0) / time.Since(t0).Seconds()), nil
}

// run polls every latencyPoll until producing has ended and every
// produced offset (ends, set before producing is closed) is visible.
func (o *offsetPoller) run(ctx context.Context, producing <-chan struct{}, ends []int64, p *sluiceProc) error {
	var deadline time.Time
	tick := time.NewTicker(latencyPoll)
	defer tick.Stop()
	for {
		if err := o.poll(ctx); err != nil {
			return err
		}
		select {
		case <-producing:
			if deadline.IsZero() {
				deadline = time.Now().Add(2 * time.Minute)
			}
			all := true
			for part, end := range ends {
				all = all && o.seen[part] >= end-1
			}
			if all {
				return nil
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("2 minutes after producing, visible up to %v of %v:\n%s", o.seen, ends, tail(p.log))
			}
		default:
		}
		if err := p.alive(); err != nil {
			return err
		}
		<-tick.C
	}
}
