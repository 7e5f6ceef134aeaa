package config

import (
	"crypto/sha256"
	"fmt"
	"os"
	"reflect"
	"time"
)

// This file is what a config reload (`sluice run` on SIGHUP or an edit of
// its file) may change: Diff compares the running config with a newly
// loaded one, pipeline by pipeline, and names every other key whose value
// differs. Those keys are read once, at start-up (the clients, the admin
// server, the reference readers, the engine's budgets are built from
// them): a reload reports them and keeps the running values; Merge builds
// the config that is then in force.

// HotSections are the top-level keys a reload applies: the pipelines, and
// the default batch limits they inherit (resolved into each pipeline, so
// a pipeline that inherits a changed default is a changed pipeline).
var HotSections = []string{"pipelines", "batch"}

// Change is what a reload changes.
type Change struct {
	// Added, Removed and Changed name pipelines (by name): a pipeline of
	// the new config only, of the running one only, and of both with any
	// setting different (its topic, table, format, transforms, fields,
	// batch limits resolved from the defaults, or its schema file's
	// content).
	Added, Removed, Changed []string
	// Restart lists, in the Config struct's order, the keys outside
	// HotSections whose new value differs from the running one: they take
	// effect only at the next start.
	Restart []string
}

// Empty says the reload changes nothing the running process applies.
func (c Change) Empty() bool {
	return len(c.Added) == 0 && len(c.Removed) == 0 && len(c.Changed) == 0
}

// FileSum is the digest of a file's content, as Diff compares schema
// files and Watch the config file (the zero sum when it cannot be read).
func FileSum(path string) [32]byte {
	b, err := os.ReadFile(path)
	if err != nil {
		return [32]byte{}
	}
	return sha256.Sum256(b)
}

// Diff compares the running config with next (both from Load). running
// holds the digests of the running pipelines' schema files, by pipeline
// name, taken when they were built: the file may have changed since, and
// a pipeline whose schema changed is a changed pipeline.
func Diff(running, next *Config, runningSums map[string][32]byte) Change {
	var ch Change
	old := map[string]Pipeline{}
	for _, p := range running.Pipelines {
		old[p.Name] = p
	}
	seen := map[string]bool{}
	for _, p := range next.Pipelines {
		seen[p.Name] = true
		was, ok := old[p.Name]
		switch {
		case !ok:
			ch.Added = append(ch.Added, p.Name)
		case !reflect.DeepEqual(was, p) || runningSums[p.Name] != FileSum(p.Schema):
			ch.Changed = append(ch.Changed, p.Name)
		}
	}
	for _, p := range running.Pipelines {
		if !seen[p.Name] {
			ch.Removed = append(ch.Removed, p.Name)
		}
	}
	ch.Restart = differingKeys(reflect.ValueOf(*running), reflect.ValueOf(*next), "")
	return ch
}

// differingKeys walks two values of the Config struct and names the
// leaves (scalars and lists of scalars) that differ, skipping HotSections.
func differingKeys(a, b reflect.Value, prefix string) []string {
	var keys []string
	t := a.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("mapstructure")
		if tag == "" || tag == "-" || !f.IsExported() {
			continue
		}
		key := tag
		if prefix != "" {
			key = prefix + "." + tag
		} else if isHot(tag) {
			continue
		}
		av, bv := a.Field(i), b.Field(i)
		if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(time.Duration(0)) {
			keys = append(keys, differingKeys(av, bv, key)...)
			continue
		}
		if !reflect.DeepEqual(av.Interface(), bv.Interface()) {
			keys = append(keys, key)
		}
	}
	return keys
}

func isHot(section string) bool {
	for _, s := range HotSections {
		if s == section {
			return true
		}
	}
	return false
}

// Merge is the config in force after a reload: the running config's keys
// outside HotSections (a restart applies them), next's batch defaults, and
// next's pipelines in next's order, except that keep names pipelines whose
// new settings cannot be applied without a restart: a kept pipeline that
// runs stays as it runs, a kept new one is left out. The caller validates
// the result (Validate): running values beside new pipelines may conflict
// (a pipeline on the running dead-letter topic).
func Merge(running, next *Config, keep map[string]bool) *Config {
	out := *running
	out.Batch = next.Batch
	old := map[string]Pipeline{}
	for _, p := range running.Pipelines {
		old[p.Name] = p
	}
	out.Pipelines = nil
	for _, p := range next.Pipelines {
		if keep[p.Name] {
			if was, ok := old[p.Name]; ok {
				out.Pipelines = append(out.Pipelines, was)
			}
			continue
		}
		out.Pipelines = append(out.Pipelines, p)
	}
	return &out
}

// PipelineKey is the config key of the named pipeline in c
// ("pipelines[2]"), or "pipelines" when c has none of that name.
func PipelineKey(c *Config, name string) string {
	for i, p := range c.Pipelines {
		if p.Name == name {
			return fmt.Sprintf("pipelines[%d]", i)
		}
	}
	return "pipelines"
}
