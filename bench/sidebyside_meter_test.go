//go:build integration

package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/sluice-etl/sluice/internal/benchutil"
)

// meter measures one case from the server's side: clickhouse-server's CPU
// (its /proc/<pid>/stat delta), the rows of the target table that SELECTs
// see, the parts the case's INSERTs created and the merges they started.
//
// Visible rows are the rows of the table's active parts in system.parts: a
// part is active from the moment its INSERT committed, and a SELECT reads
// exactly the active parts. Reading system.parts costs the server metadata
// only, not a scan of the table: about a millisecond of CPU per poll here
// (mostly 18.16's fixed cost of a query), so polling every 100 ms adds
// some 10 ms/s to the server's CPU, under 0.1 µs/row at these rates, the
// same for every case.
//
// It also reads what the rest of the machine used meanwhile: the CPU of
// every process (/proc/stat) minus the loader's, the server's, the
// broker's and the bench's own. Other sessions share these 2 cores, so
// that figure says how far a case's result is to be trusted.
type meter struct {
	s     *suite
	db    string // "" for a case without a table (e)
	start time.Time
	cpu0  time.Duration
	base  usage
	// first is when the first row was visible, 0 before.
	first time.Duration
	// Set by loaded.
	elapsed  time.Duration
	cpuLoad  time.Duration
	partsNew int64
	others   time.Duration
}

// usage is the CPU used so far by the machine, the broker and the bench.
type usage struct{ machine, broker, self time.Duration }

func (s *suite) usage() usage {
	m, _ := benchutil.MachineBusy()
	k, _ := benchutil.ProcCPU(s.kafkaPID)
	return usage{machine: m, broker: k, self: benchutil.SelfCPU()}
}

// startMeter reads the server's CPU and starts the case's clock.
func (s *suite) startMeter(db string) *meter {
	return &meter{s: s, db: db, cpu0: s.serverCPU(), base: s.usage(), start: time.Now()}
}

func (s *suite) serverCPU() time.Duration {
	cpu, ok := benchutil.ProcCPU(s.chPID)
	if !ok {
		s.w.b.Fatalf("cannot read /proc/%s/stat of clickhouse-server", s.chPID)
	}
	return cpu
}

// quiesce waits (at most 30 s) until the broker and the server have been
// nearly idle (under 5 % of a core) for half a second, so that no case
// pays for the previous one's writes, log flushes or merges.
func (s *suite) quiesce() {
	t0 := time.Now()
	for time.Since(t0) < 30*time.Second {
		a, k := s.serverCPU(), s.usage().broker
		time.Sleep(500 * time.Millisecond)
		if s.serverCPU()-a+s.usage().broker-k < 25*time.Millisecond {
			break
		}
	}
	if d := time.Since(t0); d > 2*time.Second {
		fmt.Printf("waited %v for Kafka and ClickHouse to go idle\n", d.Round(100*time.Millisecond))
	}
}

// visible is how many rows SELECTs see in the case's orders table.
func (m *meter) visible(ctx context.Context) (uint64, error) {
	var n uint64
	err := m.s.w.ch.QueryRow(ctx, fmt.Sprintf(
		"SELECT toUInt64(sum(rows)) FROM system.parts WHERE database = '%s' AND table = 'orders' AND active", m.db)).Scan(&n)
	return n, err
}

// waitRows polls until want rows are visible. check runs after every poll
// with the rows seen: a non-nil error ends the wait (the loader died or
// stalled), done=true ends it early with fewer rows (the loader says it
// is through, e.g. the rest went to the DLQ).
func (m *meter) waitRows(ctx context.Context, want uint64, timeout time.Duration, check func(n uint64) (done bool, err error)) (uint64, error) {
	deadline := time.Now().Add(timeout)
	for {
		n, err := m.visible(ctx)
		if err != nil {
			return n, err
		}
		if n > 0 && m.first == 0 {
			m.first = time.Since(m.start)
		}
		if n >= want {
			return n, nil
		}
		if check != nil {
			done, err := check(n)
			if err != nil {
				return n, err
			}
			if done {
				return n, nil
			}
		}
		if time.Now().After(deadline) {
			return n, fmt.Errorf("%d of %d rows visible after %v", n, want, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// loaded marks the end of the load: the clock stops, the server's CPU so
// far is the load's, and the parts INSERTs created are counted now, before
// the merges' old parts are removed (old_parts_lifetime, 8 minutes: longer
// than any case). loader is the loader's CPU since the clock started.
func (m *meter) loaded(ctx context.Context, loader time.Duration) error {
	m.elapsed = time.Since(m.start)
	m.cpuLoad = m.s.serverCPU() - m.cpu0
	u := m.s.usage()
	m.others = max(0, u.machine-m.base.machine-(u.broker-m.base.broker)-(u.self-m.base.self)-m.cpuLoad-loader)
	if m.db == "" {
		return nil
	}
	return m.s.w.ch.QueryRow(ctx, fmt.Sprintf(
		"SELECT toInt64(countIf(level = 0)) FROM system.parts WHERE database = '%s' AND table = 'orders'", m.db)).
		Scan(&m.partsNew)
}

// settle waits until no merge of the case's table has run for a second
// (at most 90 s), then fills the server figures of c: CPU per row with and
// without the merges, parts created, parts left.
func (m *meter) settle(ctx context.Context, c *benchutil.Case) error {
	rows := float64(max(c.Rows, 1))
	c.ServerLoadCPUUsPerRow = benchutil.F(float64(m.cpuLoad.Microseconds()) / rows)
	c.Seconds = m.elapsed.Seconds()
	c.RowsPerSec = float64(c.Rows) / m.elapsed.Seconds()
	c.OtherCores = benchutil.F(m.others.Seconds() / m.elapsed.Seconds())
	if m.first > 0 {
		c.FirstVisibleSeconds = benchutil.F(m.first.Seconds())
	}
	if m.db == "" {
		c.ServerCPUUsPerRow = c.ServerLoadCPUUsPerRow
		return nil
	}
	t0 := time.Now()
	idle := 0
	for idle < 4 && time.Since(t0) < 90*time.Second {
		var n uint64
		if err := m.s.w.ch.QueryRow(ctx, fmt.Sprintf("SELECT count() FROM system.merges WHERE database = '%s'", m.db)).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			idle++
		} else {
			idle = 0
		}
		time.Sleep(250 * time.Millisecond)
	}
	settled := time.Since(t0)
	cpu := m.s.serverCPU() - m.cpu0
	var active int64
	if err := m.s.w.ch.QueryRow(ctx, fmt.Sprintf(
		"SELECT toInt64(count()) FROM system.parts WHERE database = '%s' AND table = 'orders' AND active", m.db)).Scan(&active); err != nil {
		return err
	}
	c.ServerCPUUsPerRow = benchutil.F(float64(cpu.Microseconds()) / rows)
	c.MergeSeconds = benchutil.F(settled.Seconds())
	c.PartsCreated = benchutil.I(m.partsNew)
	c.PartsPerMillion = benchutil.F(float64(m.partsNew) / rows * 1e6)
	c.PartsAfterMerges = benchutil.I(active)
	return nil
}
