package refdata

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the Loader's Prometheus series. The gauges read the Store
// when scraped, so they are exact whoever changed it; the topic label is
// one of the two configured reference topics.
type metrics struct {
	bad      *prometheus.CounterVec
	dataLoss prometheus.Counter
}

// newMetrics creates the series and registers them with reg; with a nil
// reg they are still counted (tests read them) but exported nowhere.
func newMetrics(reg prometheus.Registerer, store *Store, topics ...string) (*metrics, error) {
	m := &metrics{
		bad: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_refdata_bad_records_total",
			Help: "Reference records skipped because they could not be applied (undecodable, bad key, key/value mismatch).",
		}, []string{"topic"}),
		dataLoss: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_refdata_data_loss_total",
			Help: "Times the Kafka client detected lost data on a reference topic.",
		}),
	}
	// Zero series for both topics, so that rate() and alerts see them
	// before the first bad record.
	for _, t := range topics {
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
	var done []prometheus.Collector
	for _, c := range []prometheus.Collector{customers, rates, m.bad, m.dataLoss} {
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
