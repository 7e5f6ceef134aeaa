package service

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-etl/sluice/pkg/config"
	"github.com/sluice-etl/sluice/pkg/decode"
	"github.com/sluice-etl/sluice/pkg/logx"
	"github.com/sluice-etl/sluice/pkg/pipeline"
	"github.com/sluice-etl/sluice/pkg/stage"
	"github.com/sluice-etl/sluice/pkg/transform"
)

// This file is a config reload of a running service (docs/DESIGN.md,
// "Config changes without restart"): the new file is loaded and validated
// as at start-up, compared with the running config (config.Diff), the
// added and changed pipelines are built (their tables looked up, as at
// start-up), and the engine is reconfigured (pipeline.Reconfigure). A
// reload is all or nothing for the pipelines: any problem rejects it, with
// one ERROR, and the running config stays. Keys read only at start-up are
// reported (a WARN each) and keep their running values.

// ReloadResults are the values of sluice_config_reloads_total's result.
var ReloadResults = []string{"ok", "rejected"}

// reloadMetrics are the series of config reloads.
type reloadMetrics struct {
	reloads     *prometheus.CounterVec
	lastSuccess prometheus.Gauge
}

func newReloadMetrics(reg prometheus.Registerer) *reloadMetrics {
	m := &reloadMetrics{
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_config_reloads_total",
			Help: "Config reloads (SIGHUP or an edit of the config file), by result: ok (applied, or nothing to apply) or rejected (the running config stays).",
		}, []string{"result"}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_config_last_reload_success_timestamp_seconds",
			Help: "Unix time of the last config reload that was applied (the start, before any).",
		}),
	}
	for _, r := range ReloadResults {
		m.reloads.WithLabelValues(r) // both series from the start, at 0
	}
	m.lastSuccess.SetToCurrentTime()
	if reg != nil {
		reg.MustRegister(m.reloads, m.lastSuccess)
	}
	return m
}

// running records the pipelines in force, by name, with the digests of
// their schema files as they were read (config.Diff compares them):
// s.sums, taken before the pipelines were built (schemaSums), so an edit
// racing a build is seen by the next reload rather than missed.
func (s *Service) running(cfg *config.Config, pipes []*pipeline.Pipeline) {
	s.pipes = map[string]*pipeline.Pipeline{}
	for _, p := range pipes {
		s.pipes[p.Name] = p
	}
	files := map[string][32]byte{}
	for _, pc := range cfg.Pipelines {
		if sum := s.sums[pc.Name]; sum != ([32]byte{}) {
			files[pc.Schema] = sum
		}
	}
	s.schemaFiles.Store(&files)
	m := &memoryInputs{cfg: cfg}
	for _, p := range pipes {
		ts := make([]stage.Transform, len(p.Transforms))
		for i, t := range p.Transforms {
			ts[i] = t
			if h, ok := t.(transform.StateHolder); ok {
				m.states = append(m.states, h)
			}
		}
		if _, ok := stage.Columnar(p.Decoder, ts); !ok {
			m.rowPath = true
		}
	}
	s.mem.Store(m)
}

// SchemaFiles returns the running pipelines' schema files, each with the
// digest (config.FileSum) of its content when its pipeline was built: the
// files whose edits a reload would apply (`sluice run` watches them beside
// the config file). Safe for concurrent use.
func (s *Service) SchemaFiles() map[string][32]byte {
	if m := s.schemaFiles.Load(); m != nil {
		return *m
	}
	return nil
}

// ReloadFile reads the config file at path again (as `sluice run -c path`
// does at start-up: file, SLUICE_* overrides, defaults, validation) and
// applies what changed to the running service: added pipelines start,
// removed ones flush, commit and leave, changed ones restart alone,
// unchanged ones are left alone. It returns nil when the reload was
// applied (or had nothing to apply) and the reason otherwise — a
// config.Errors naming the keys, or what kept a table from being looked
// up — after logging it once at ERROR; the running config then stays. A
// reload cut short by ctx's end (the service stopping) is logged at INFO,
// not counted, and returns an error wrapping ctx.Err().
// Safe for concurrent use (reloads run one at a time); call it while Run
// runs (it waits for the engine's poll loop; ctx bounds that wait).
func (s *Service) ReloadFile(ctx context.Context, path string) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	next, err := config.Load(path)
	if err != nil {
		return s.rejectReload(err)
	}
	if err := s.reload(ctx, next); err != nil {
		if ctx.Err() != nil {
			// Stopping (SIGTERM raced the reload): not the edit's
			// fault, so neither an ERROR nor a rejection.
			s.log.Info("config reload abandoned: the service is stopping; the running config stays", "stage", "config", "err", err.Error())
			return fmt.Errorf("config reload abandoned: %w", ctx.Err())
		}
		return s.rejectReload(err)
	}
	s.reloads.reloads.WithLabelValues("ok").Inc()
	s.reloads.lastSuccess.SetToCurrentTime()
	return nil
}

// rejectReload logs a rejected reload, one ERROR with every problem (the
// messages start-up gives), and counts it.
func (s *Service) rejectReload(err error) error {
	s.reloads.reloads.WithLabelValues("rejected").Inc()
	var cerrs config.Errors
	if errors.As(err, &cerrs) {
		keys := make([]string, len(cerrs))
		problems := make([]string, len(cerrs))
		for i, e := range cerrs {
			keys[i], problems[i] = e.Key, e.Error()
		}
		s.log.Error("config reload rejected: the running config stays", "stage", "config",
			"key", strings.Join(keys, ","), "problems", strings.Join(problems, "; "), logx.Type(logx.TypeConfig))
		return err
	}
	s.log.Error("config reload failed: the running config stays", "stage", "config", logx.Err(err))
	return err
}

// reload applies next (loaded and valid on its own) to the running
// service.
func (s *Service) reload(ctx context.Context, next *config.Config) error {
	ch := config.Diff(s.cfg, next, s.sums)
	for _, k := range ch.Restart {
		s.log.Warn("config reload: this key takes effect only at the next start; the running value stays", "key", k)
	}
	// Pipelines this process cannot start without a restart, kept as
	// they run (or left out, when new).
	keep := map[string]bool{}
	for _, name := range append(slices.Clone(ch.Added), ch.Changed...) {
		pc := pipelineNamed(next, name)
		key := config.PipelineKey(next, name)
		if s.store == nil && usesReference(pc) {
			s.log.Warn("config reload: this pipeline needs the reference data, which this process does not read (no pipeline needed it at start): it takes effect only at the next start; the running pipeline stays",
				"key", key+".transforms", "pipeline", name)
			keep[name] = true
		}
		if pc.Batch.Combine > s.combine {
			s.log.Warn(fmt.Sprintf("config reload: a batch.combine above the largest one at start (%d) takes effect only at the next start (the live-batch tokens are sized then); the running pipeline stays", s.combine),
				"key", key+".batch.combine", "pipeline", name)
			keep[name] = true
		}
	}
	eff := config.Merge(s.cfg, next, keep)
	if errs := eff.Validate(); len(errs) > 0 {
		return errs
	}
	build := map[string]bool{}
	for _, name := range append(slices.Clone(ch.Added), ch.Changed...) {
		if !keep[name] {
			build[name] = true
		}
	}
	removed := ch.Removed
	if len(build) == 0 && len(removed) == 0 {
		s.cfg = eff
		m := *s.mem.Load()
		m.cfg = eff
		s.mem.Store(&m)
		s.log.Info("config reloaded: no pipeline changed")
		return nil
	}

	var reg decode.SchemaFetcher
	if eff.SchemaRegistry.URL != "" {
		c, err := newRegistry(eff.SchemaRegistry, nil)
		if err != nil {
			return err
		}
		reg = c
	}
	built := map[string]*pipeline.Pipeline{}
	sums := schemaSums(eff.Pipelines) // before the builds read the files
	var errs config.Errors
	for _, pc := range eff.Pipelines {
		if !build[pc.Name] {
			continue
		}
		p, perrs, err := buildPipeline(ctx, s.conn, s.native, eff, pc, config.PipelineKey(next, pc.Name), s.store, reg, s.log)
		if err != nil {
			return fmt.Errorf("ClickHouse at %s: %w", strings.Join(eff.ClickHouse.Addr, ","), err)
		}
		errs = append(errs, perrs...)
		if p != nil {
			built[pc.Name] = p
		}
	}
	if len(errs) > 0 {
		return errs
	}
	pipes := make([]*pipeline.Pipeline, 0, len(eff.Pipelines))
	for _, pc := range eff.Pipelines {
		if p, ok := built[pc.Name]; ok {
			pipes = append(pipes, p)
		} else {
			pipes = append(pipes, s.pipes[pc.Name])
		}
	}
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := s.engine.Reconfigure(rctx, pipes); err != nil {
		return err
	}
	for name := range built {
		s.sums[name] = sums[name]
	}
	s.cfg = eff
	s.running(eff, pipes)
	for _, name := range ch.Added {
		if build[name] {
			s.log.Info("config reload: pipeline added", "pipeline", name, "topic", built[name].Topic)
		}
	}
	for _, name := range ch.Changed {
		if build[name] {
			s.log.Info("config reload: pipeline changed, restarted with its new settings", "pipeline", name, "topic", built[name].Topic)
		}
	}
	for _, name := range removed {
		s.log.Info("config reload: pipeline removed", "pipeline", name)
	}
	return nil
}

// schemaSums digests the pipelines' schema files, by pipeline name.
func schemaSums(pcs []config.Pipeline) map[string][32]byte {
	m := make(map[string][32]byte, len(pcs))
	for _, pc := range pcs {
		m[pc.Name] = config.FileSum(pc.Schema)
	}
	return m
}

func pipelineNamed(c *config.Config, name string) config.Pipeline {
	for _, p := range c.Pipelines {
		if p.Name == name {
			return p
		}
	}
	return config.Pipeline{}
}

func usesReference(p config.Pipeline) bool {
	for _, t := range p.Transforms {
		if slices.Contains(config.ReferenceTransforms, t) {
			return true
		}
	}
	return false
}

// Config is the config in force: the one New was given, changed by every
// reload applied since. Safe for concurrent use with ReloadFile.
func (s *Service) Config() *config.Config {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	return s.cfg
}
