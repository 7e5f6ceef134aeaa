package admin

import (
	"math"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-etl/sluice/pkg/pipeline"
)

// EngineStats is what the dashboard reads from the engine; *pipeline.Engine
// implements it. Both methods are called from HTTP handlers while the engine
// runs and must be safe for concurrent use.
type EngineStats interface {
	Stats() []pipeline.PartitionStats
	PipelineInfos() []pipeline.PipelineInfo
}

// Stats is the body of GET /api/stats.
type Stats struct {
	Ready bool      `json:"ready"`
	Time  time.Time `json:"time"`
	// LaggingAfterSec is the threshold of lagging: how far behind, in
	// seconds, a partition may be (PartitionJSON.BehindSec) before it
	// counts as lagging.
	LaggingAfterSec float64         `json:"lagging_after_s"`
	Pipelines       []PipelineStats `json:"pipelines"`
	Partitions      []PartitionJSON `json:"partitions"`
	KPI             KPI             `json:"kpi"`
}

// PipelineStats sums one pipeline over this process. Counters run since the
// process started (they survive rebalances); lag, paused and failing are
// over the partitions assigned now.
type PipelineStats struct {
	Name       string `json:"name"`
	Topic      string `json:"topic"`
	Partitions int    `json:"partitions"`
	Consumed   int64  `json:"consumed"`
	Loaded     int64  `json:"loaded"`
	Batches    int64  `json:"batches"`
	// DeadLetters counts records sent to the dead-letter topic by stage
	// (decode, transform, load).
	DeadLetters  map[string]int64 `json:"dead_letters"`
	InsertErrors int64            `json:"insert_errors"`
	// Lag sums the partitions whose lag is known; null when none is.
	// LagUnknown counts the others (no fetch has reported their high
	// watermark yet, or nothing is committed).
	Lag        *int64 `json:"lag"`
	LagUnknown int    `json:"lag_unknown"`
	// BehindSec is the most any of its partitions is behind in time (0
	// without partitions); Lagging counts the partitions behind by more
	// than Stats.LaggingAfterSec.
	BehindSec float64 `json:"behind_s"`
	Lagging   int     `json:"lagging"`
	// RowsPerSec is the load rate over the last RateWindow seconds of
	// samples (taken when /api/stats is read); null until two samples at
	// least a second apart exist.
	RowsPerSec *float64 `json:"rows_per_sec"`
	RateWindow float64  `json:"rate_window_s,omitempty"`
	Latency    Latency  `json:"batch_latency"`
	Paused     int      `json:"paused"`
	Failing    int      `json:"failing"`
}

// Latency describes batch durations (cut to commit), in milliseconds.
// Quantiles are estimated from the histogram over the same window as the
// rate when batches finished in it (WindowSec > 0), else since start.
type Latency struct {
	LastMS    *float64 `json:"last_ms"`
	P50MS     *float64 `json:"p50_ms"`
	P95MS     *float64 `json:"p95_ms"`
	MeanMS    *float64 `json:"mean_ms"`
	WindowSec float64  `json:"window_s"`
}

// PartitionJSON is one assigned partition; null offsets are not known yet.
type PartitionJSON struct {
	Pipeline      string     `json:"pipeline"`
	Topic         string     `json:"topic"`
	Partition     int32      `json:"partition"`
	Committed     *int64     `json:"committed"`
	HighWatermark *int64     `json:"high_watermark"`
	Lag           *int64     `json:"lag"`
	Loaded        int64      `json:"loaded"`
	DeadLetters   int64      `json:"dead_letters"`
	Batches       int64      `json:"batches"`
	LastBatchMS   *float64   `json:"last_batch_ms"`
	LastBatchAt   *time.Time `json:"last_batch_at"`
	// BehindSec is how far behind the partition is in time: the age of
	// the oldest record fetched and not loaded yet, from its Kafka
	// timestamp; 0 when every record fetched is loaded (a lag in records
	// then is what the next fetch brings). Lagging: BehindSec is more
	// than Stats.LaggingAfterSec.
	BehindSec float64 `json:"behind_s"`
	Lagging   bool    `json:"lagging"`
	Paused    bool    `json:"paused"`
	Failing   bool    `json:"failing"`
}

// Metric names read back from the registry (pkg/pipeline/metrics.go).
const (
	mConsumed     = "sluice_records_consumed_total"
	mLoaded       = "sluice_rows_loaded_total"
	mDeadLetters  = "sluice_dead_letters_total"
	mBatches      = "sluice_batches_total"
	mInsertErrors = "sluice_insert_errors_total"
	mBatchSeconds = "sluice_batch_duration_seconds"
)

// counters are one pipeline's series as gathered.
type counters struct {
	consumed, loaded, batches, insertErrors float64
	deadLetters                             map[string]float64
	hist                                    histogram
}

// histogram is a classic cumulative histogram.
type histogram struct {
	upper []float64 // bucket upper bounds, ascending, +Inf excluded
	cum   []uint64  // cumulative counts per bucket
	count uint64
	sum   float64
}

// gather reads the engine's series per pipeline; nil g gives none.
func gather(g prometheus.Gatherer) (map[string]*counters, error) {
	out := map[string]*counters{}
	if g == nil {
		return out, nil
	}
	mfs, err := g.Gather()
	if err != nil && len(mfs) == 0 {
		return out, err
	}
	get := func(p string) *counters {
		c := out[p]
		if c == nil {
			c = &counters{deadLetters: map[string]float64{}}
			out[p] = c
		}
		return c
	}
	for _, mf := range mfs {
		name := mf.GetName()
		switch name {
		case mConsumed, mLoaded, mDeadLetters, mBatches, mInsertErrors, mBatchSeconds:
		default:
			continue
		}
		for _, m := range mf.GetMetric() {
			var pipe, stage string
			for _, lp := range m.GetLabel() {
				switch lp.GetName() {
				case "pipeline":
					pipe = lp.GetValue()
				case "stage":
					stage = lp.GetValue()
				}
			}
			c := get(pipe)
			v := m.GetCounter().GetValue()
			switch name {
			case mConsumed:
				c.consumed = v
			case mLoaded:
				c.loaded = v
			case mBatches:
				c.batches = v
			case mInsertErrors:
				c.insertErrors = v
			case mDeadLetters:
				if v > 0 { // the engine starts every stage's series at 0
					c.deadLetters[stage] += v
				}
			case mBatchSeconds:
				h := m.GetHistogram()
				c.hist = histogram{count: h.GetSampleCount(), sum: h.GetSampleSum()}
				for _, b := range h.GetBucket() {
					if math.IsInf(b.GetUpperBound(), 1) {
						continue
					}
					c.hist.upper = append(c.hist.upper, b.GetUpperBound())
					c.hist.cum = append(c.hist.cum, b.GetCumulativeCount())
				}
			}
		}
	}
	return out, err
}

// sub is h minus an earlier snapshot of the same histogram.
func (h histogram) sub(old histogram) histogram {
	if len(old.cum) != len(h.cum) || old.count > h.count {
		return h
	}
	d := histogram{upper: h.upper, cum: make([]uint64, len(h.cum)), count: h.count - old.count, sum: h.sum - old.sum}
	for i := range h.cum {
		d.cum[i] = h.cum[i] - old.cum[i]
	}
	return d
}

// quantile estimates the q-quantile by linear interpolation inside the
// bucket holding it, as Prometheus' histogram_quantile does; observations
// above the last bound report that bound. False when h is empty.
func (h histogram) quantile(q float64) (float64, bool) {
	if h.count == 0 || len(h.upper) == 0 {
		return 0, false
	}
	rank := q * float64(h.count)
	lower, below := 0.0, uint64(0)
	for i, ub := range h.upper {
		if float64(h.cum[i]) >= rank {
			inBucket := h.cum[i] - below
			if inBucket == 0 {
				return ub, true
			}
			return lower + (ub-lower)*(rank-float64(below))/float64(inBucket), true
		}
		lower, below = ub, h.cum[i]
	}
	return h.upper[len(h.upper)-1], true
}

// sample is the state of every pipeline at one moment, for rates.
type sample struct {
	at    time.Time
	pipes map[string]sampledPipe
}

type sampledPipe struct {
	loaded float64
	hist   histogram
}

// sampler keeps a short ring of samples taken as /api/stats is read, so
// the rate needs no goroutine of its own and costs nothing when nobody
// looks.
type sampler struct {
	mu      sync.Mutex
	samples []sample // oldest first
}

const (
	sampleEvery = time.Second      // at most one sample per second is kept
	rateWindow  = 10 * time.Second // the rate spans about this much
	maxSamples  = 64
)

// observe records cur (if the last sample is old enough) and returns the
// sample to compute rates against: the oldest one within rateWindow that
// is at least sampleEvery old; false when there is none.
func (s *sampler) observe(cur sample) (sample, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var base sample
	found := false
	for _, old := range s.samples {
		age := cur.at.Sub(old.at)
		if age <= rateWindow+sampleEvery && age >= sampleEvery {
			base, found = old, true
			break
		}
	}
	if n := len(s.samples); n == 0 || cur.at.Sub(s.samples[n-1].at) >= sampleEvery {
		s.samples = append(s.samples, cur)
		// Drop what no rate will use again.
		i := 0
		for i < len(s.samples)-1 && cur.at.Sub(s.samples[i].at) > rateWindow+sampleEvery {
			i++
		}
		s.samples = s.samples[i:]
		if len(s.samples) > maxSamples {
			s.samples = s.samples[len(s.samples)-maxSamples:]
		}
	}
	return base, found
}

// build assembles the pipeline and partition parts of Stats.
func build(now time.Time, laggingAfter time.Duration, infos []pipeline.PipelineInfo, parts []pipeline.PartitionStats, cs map[string]*counters, smp *sampler) ([]PipelineStats, []PartitionJSON) {
	byName := map[string]*PipelineStats{}
	var order []string
	add := func(name, topic string) *PipelineStats {
		if p := byName[name]; p != nil {
			if p.Topic == "" {
				p.Topic = topic
			}
			return p
		}
		p := &PipelineStats{Name: name, Topic: topic, DeadLetters: map[string]int64{}}
		byName[name] = p
		order = append(order, name)
		return p
	}
	for _, in := range infos {
		add(in.Name, in.Topic)
	}

	partsOut := make([]PartitionJSON, 0, len(parts))
	lastAt := map[string]time.Time{}
	for _, ps := range parts {
		p := add(ps.Pipeline, ps.Topic)
		p.Partitions++
		pj := PartitionJSON{
			Pipeline: ps.Pipeline, Topic: ps.Topic, Partition: ps.Partition,
			Loaded: ps.Loaded, DeadLetters: ps.DeadLetters, Batches: ps.Batches,
			Paused: ps.Paused, Failing: ps.Failing,
		}
		if ps.Committed >= 0 {
			pj.Committed = ptr(ps.Committed)
		}
		if ps.HighWatermark >= 0 {
			pj.HighWatermark = ptr(ps.HighWatermark)
		}
		if ps.Lag >= 0 {
			pj.Lag = ptr(ps.Lag)
			p.Lag = ptr(ptrOr(p.Lag) + ps.Lag)
		} else {
			p.LagUnknown++
		}
		if !ps.LastBatchAt.IsZero() {
			pj.LastBatchAt = ptr(ps.LastBatchAt)
			pj.LastBatchMS = ptr(ms(ps.LastBatchDuration.Seconds()))
			if ps.LastBatchAt.After(lastAt[ps.Pipeline]) {
				lastAt[ps.Pipeline] = ps.LastBatchAt
				p.Latency.LastMS = pj.LastBatchMS
			}
		}
		if !ps.Oldest.IsZero() {
			// A producer's clock ahead of ours makes a record look
			// newer than now: not behind.
			behind := max(now.Sub(ps.Oldest), 0)
			pj.BehindSec = math.Round(behind.Seconds()*1000) / 1000
			pj.Lagging = behind > laggingAfter
		}
		p.BehindSec = max(p.BehindSec, pj.BehindSec)
		if pj.Lagging {
			p.Lagging++
		}
		if ps.Paused {
			p.Paused++
		}
		if ps.Failing {
			p.Failing++
		}
		partsOut = append(partsOut, pj)
	}

	// Without a registry, the counters are the assigned partitions' own.
	if len(cs) == 0 {
		for _, ps := range parts {
			p := byName[ps.Pipeline]
			p.Loaded += ps.Loaded
			p.Batches += ps.Batches
			if ps.DeadLetters > 0 {
				p.DeadLetters["all"] += ps.DeadLetters
			}
		}
	}
	cur := sample{at: now, pipes: map[string]sampledPipe{}}
	names := make([]string, 0, len(cs))
	for name := range cs {
		if name != "" {
			names = append(names, name)
		}
	}
	sort.Strings(names) // series of pipelines not in infos come after, in order
	for _, name := range names {
		c := cs[name]
		p := add(name, "")
		p.Consumed = int64(c.consumed)
		p.Loaded = int64(c.loaded)
		p.Batches = int64(c.batches)
		p.InsertErrors = int64(c.insertErrors)
		for st, n := range c.deadLetters {
			p.DeadLetters[st] = int64(n)
		}
		cur.pipes[name] = sampledPipe{loaded: c.loaded, hist: c.hist}
	}
	base, haveBase := smp.observe(cur)

	out := make([]PipelineStats, 0, len(order))
	for _, name := range order {
		p := byName[name]
		c := cs[name]
		if c != nil {
			h := c.hist
			if old, ok := base.pipes[name]; haveBase && ok {
				dt := now.Sub(base.at).Seconds()
				p.RowsPerSec = ptr(math.Max(c.loaded-old.loaded, 0) / dt)
				p.RateWindow = math.Round(dt*10) / 10
				if w := h.sub(old.hist); w.count > 0 {
					h = w
					p.Latency.WindowSec = p.RateWindow
				}
			}
			if v, ok := h.quantile(0.5); ok {
				p.Latency.P50MS = ptr(ms(v))
			}
			if v, ok := h.quantile(0.95); ok {
				p.Latency.P95MS = ptr(ms(v))
			}
			if h.count > 0 {
				p.Latency.MeanMS = ptr(ms(h.sum / float64(h.count)))
			}
		}
		out = append(out, *p)
	}
	return out, partsOut
}

func ms(sec float64) float64 { return math.Round(sec*1e4) / 10 } // 0.1 ms precision

func ptr[T any](v T) *T { return &v }

func ptrOr(p *int64) int64 {
	if p == nil {
		return 0
	}
	return *p
}
