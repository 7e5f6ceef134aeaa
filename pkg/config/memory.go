package config

// Memory: the resident memory a running Sluice needs, derived from its
// limits (docs/DESIGN.md, "Memory bound"). `sluice check` prints it and
// `sluice run` gives it to the Go runtime as its soft memory limit, so
// garbage never pushes the process past it.
const (
	// MemoryBase covers the runtime, the binary, the Kafka and ClickHouse
	// clients and their connection buffers.
	MemoryBase = 48 << 20
	// NotGoMemory is kept between the bound and the runtime's soft limit:
	// the binary's mapped text and data and what else the runtime does not
	// count (RSS stood 9-13 MiB above the limit while case (a) of make
	// bench ran at it), and a live heap that outgrows the limit for a
	// while. The bound's garbage term (inflight_bytes / 2) is room for the
	// collector inside the limit, not beside it: with 64 MiB here the
	// limit sat 32 MiB under the live heap the terms allow, the collector
	// ran back to back, and case (a) spent 3.5 µs/row against 2.6 at 32
	// MiB. At 32 MiB, TestMemoryStaysUnderItsBound peaked at 229-237 MiB of
	// 256 (JSON and Avro, 12 partitions) and make bench-memory at 239.
	NotGoMemory = 32 << 20
	// RowPathBytes is what a decoded row costs on the row path (its Row
	// map and boxed values, ~2 KiB for an order), per row of a batch in
	// process: a pipeline with a transform that has no columnar form, or
	// a table that cannot serve one (pkg/service, servesColumns). The
	// columnar path, every format's, has no such cost: its rows are the
	// column buffers, counted in the max_bytes term.
	RowPathBytes = 2 << 10
)

// MaxBatchCombine is the largest batch.combine of the config's pipelines:
// how many batches beyond the processing slots may hold decoded rows.
func MaxBatchCombine(c *Config) int {
	n := max(c.Batch.Combine, 1)
	for _, p := range c.Pipelines {
		n = max(n, p.Batch.Combine)
	}
	return n
}

// MemoryBound is the resident memory bound for the config with parallel
// batches processed at once (the engine's processing slots):
//
//	MemoryBase + inflight_bytes (records held, their overhead counted:
//	    pkg/batch's Held)
//	  + inflight_bytes / 4 (fetch responses not yet polled, FetchMaxBytes)
//	  + inflight_bytes / 2 (room for the garbage of the records' turnover,
//	    so the collector does not run back to back)
//	  + parallel × 4 × max_bytes (a batch's column buffers, the INSERT's
//	    copy of them, a gathered copy when rows are left out, and the keys
//	    and values of its records, which a columnar batch gives back to the
//	    in-flight budget once its rows are in its block while the block's
//	    strings may keep them alive) when each batch has its own INSERT
//	    (combine 1); with shared INSERTs: 2 × (parallel + combine) ×
//	    max_bytes (one set of column buffers and one batch's records per
//	    batch with decoded rows, the live-batch tokens; the buffers no
//	    larger than their batch's records, kept for reuse) + combine ×
//	    max_bytes (the INSERT's copy of the columns it carries)
//	  + parallel × max_rows × RowPathBytes when a pipeline takes the row
//	    path (Avro, or a transform without a columnar form)
//
// for the largest max_bytes, max_rows and combine of a pipeline. The state
// kept beside the batches comes on top, sized by what it holds rather than
// by the config: the reference data (refdata.Store.HeldBytes) and VELOCITY's
// windows (transform.StateHolder); service.MemoryBound adds it.
func MemoryBound(c *Config, parallel int, rowPath bool) int64 {
	maxBytes, maxRows := int64(c.Batch.MaxBytes), int64(c.Batch.MaxRows)
	for _, p := range c.Pipelines {
		maxBytes, maxRows = max(maxBytes, int64(p.Batch.MaxBytes)), max(maxRows, int64(p.Batch.MaxRows))
	}
	combine := int64(MaxBatchCombine(c))
	in := int64(c.InflightBytes)
	b := MemoryBase + in + in/4 + in/2
	if combine > 1 {
		b += 2*(int64(parallel)+combine)*maxBytes + combine*maxBytes
	} else {
		b += int64(parallel) * 4 * maxBytes
	}
	if rowPath {
		b += int64(parallel) * maxRows * RowPathBytes
	}
	return b
}
