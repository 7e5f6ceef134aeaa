package refdata

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the Loader's Prometheus series. The gauges read the Store
// and the follower's tracker when scraped, so they are exact whoever
// changed them; the topic label is one of the two configured reference
// topics, error_type one of errorType's bounded values.
type metrics struct {
	bad      *prometheus.CounterVec
	dataLoss prometheus.Counter
	errors   *prometheus.CounterVec
}

// newMetrics creates the series and registers them with reg; with a nil
// reg they are still counted (tests read them) but exported nowhere.
func newMetrics(reg prometheus.Registerer, store *Store, tr *tracker) (*metrics, error) {
	m := &metrics{
		bad: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_refdata_bad_records_total",
			Help: "Reference records skipped because they could not be applied (undecodable, bad key, key/value mismatch).",
		}, []string{"topic"}),
		dataLoss: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_refdata_data_loss_total",
			Help: "Times the Kafka client detected lost data on a reference topic.",
		}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_refdata_errors_total",
			Help: "Failed fetches and high-watermark listings of the reference topics, each retried, by error_type.",
		}, []string{"error_type"}),
	}
	// Zero series for both topics, so that rate() and alerts see them
	// before the first bad record.
	for _, t := range tr.topics {
		m.bad.WithLabelValues(t)
	}
	if reg == nil {
		return m, nil
	}
	customers := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "sluice_refdata_customers",
		Help: "Customers held in memory.",
	}, func() float64 { c, _ := store.Counts(); return float64(c) })
	rates := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "sluice_refdata_rates",
		Help: "FX rate history entries held in memory, all currencies.",
	}, func() float64 { _, r := store.Counts(); return float64(r) })
	following := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "sluice_refdata_following",
		Help: "1 while the reference topics are followed and neither fetching nor listing their high watermarks fails, else 0.",
	}, func() float64 {
		if tr.healthy() {
			return 1
		}
		return 0
	})
	cs := []prometheus.Collector{customers, rates, m.bad, m.dataLoss, m.errors, following}
	for t, topic := range tr.topics {
		labels := prometheus.Labels{"topic": topic}
		cs = append(cs,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "sluice_refdata_lag_records", ConstLabels: labels,
				Help: "Offsets of the reference topic not yet applied: the last listed high watermark (last stable offset) minus the position read, summed over partitions.",
			}, func() float64 { return tr.lagOf(Table(t)) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "sluice_refdata_staleness_seconds", ConstLabels: labels,
				Help: "Seconds since the reference topic was last known to be applied in full (read up to a high watermark listed then); about 1 while all is well.",
			}, func() float64 { return tr.stalenessOf(Table(t)) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "sluice_refdata_last_record_age_seconds", ConstLabels: labels,
				Help: "Seconds since the last record of the reference topic was applied (0 before the first); grows while the topic is quiet, too.",
			}, func() float64 { return tr.lastRecordAge(Table(t)) }),
		)
	}
	var done []prometheus.Collector
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			// All or nothing: a second Loader on the same registry fails
			// without leaving half its series behind.
			for _, d := range done {
				reg.Unregister(d)
			}
			return nil, fmt.Errorf("refdata: register metrics: %w", err)
		}
		done = append(done, c)
	}
	return m, nil
}
