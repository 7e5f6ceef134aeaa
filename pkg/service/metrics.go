package service

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// The registry /metrics serves is built in New, in three parts: the Go
// runtime's and the process's collectors (here: go_*, and process_* with
// process_resident_memory_bytes, the RSS the memory bound is checked
// against, and the memory bound's), the engine's series (pipeline.NewMetrics) and the reference
// loader's (refdata.LoaderConfig.Registerer). The README's metrics
// catalogue lists them all; TestMetricsCatalogue builds the same three
// parts and fails when the two differ.

// registerMemoryMetrics registers the memory bound's series: the bound
// and the state part of it, as bound and state report them.
func registerMemoryMetrics(reg prometheus.Registerer, bound, state func() int64) {
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sluice_memory_bound_bytes",
			Help: "The resident memory bound with GOMAXPROCS batches at once: the config's terms and the state held now; the Go runtime's soft limit is 32 MiB under it unless GOMEMLIMIT is set.",
		}, func() float64 { return float64(bound()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sluice_memory_state_bytes",
			Help: "The part of the memory bound the config does not give: the reference data and VELOCITY windows held now, estimated from above.",
		}, func() float64 { return float64(state()) }),
	)
}

// registerRuntimeMetrics registers the Go runtime and process collectors.
func registerRuntimeMetrics(reg prometheus.Registerer) {
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
}
