package service

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// The registry /metrics serves is built in New, in three parts: the Go
// runtime's and the process's collectors (here: go_*, and process_* with
// process_resident_memory_bytes, the RSS the memory bound is checked
// against), the engine's series (pipeline.NewMetrics) and the reference
// loader's (refdata.LoaderConfig.Registerer). The README's metrics
// catalogue lists them all; TestMetricsCatalogue builds the same three
// parts and fails when the two differ.

// registerRuntimeMetrics registers the Go runtime and process collectors.
func registerRuntimeMetrics(reg prometheus.Registerer) {
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
}
