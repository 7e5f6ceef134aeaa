package pipeline

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/twmb/franz-go/pkg/kgo"
)

// This file changes the pipelines of a running engine (a config reload):
// each topic's pipeline is added, removed or replaced on its own, and the
// partitions of the others stay where they are. It all happens in the poll
// loop, between polls, where no rebalance runs (BlockRebalanceOnPoll):
//
//   - A replaced pipeline (same topic, new settings) restarts in place:
//     its workers flush and commit as on a revoke (bounded by
//     RevokeTimeout), the client is set back to the offset after the last
//     commit of each (SetOffsets also drops what was fetched and not yet
//     polled), and new workers with the new pipeline start on the same
//     partitions. No rebalance: the member keeps them. A batch the flush
//     gave up is read again and found stored where it was (load.go).
//   - A removed topic is purged from the client's subscription. The
//     rebalance that follows revokes its partitions through the usual
//     callback, which flushes and commits them (invariants 1, 4, 7); the
//     client fetches nothing more of it meanwhile.
//   - An added topic joins the subscription (AddConsumeTopics); the
//     rebalance that follows assigns its partitions. With the cooperative
//     sticky balancer a member keeps every partition it owns across such a
//     rebalance: only the new topic's partitions are handed out (in a group
//     of several processes that reload at different moments, the balancer
//     may also move partitions to even the members' counts; each move is
//     an ordinary revoke, flushed and committed).

// reconfig is one Reconfigure request.
type reconfig struct {
	pipes []*Pipeline
	done  chan error
}

// ErrNotRunning is Reconfigure's answer once the poll loop has ended.
var ErrNotRunning = errors.New("pipeline: the engine is not running")

// Reconfigure makes pipes the engine's pipelines: a topic of pipes that
// the engine does not consume is added, a consumed topic pipes lacks is
// removed, and a topic whose *Pipeline is another pointer than the one
// running is restarted with it; the same pointer leaves the topic alone.
// It waits for the poll loop to apply the change (at its next turn, once
// Run started), which returns once the restarted pipelines run again and
// the subscription is changed; the revoke of removed topics and the
// assignment of added ones follow in the group's next rebalance. Safe for
// concurrent use; ctx bounds only the wait for the poll loop to take the
// request. Errors: ErrNotRunning after shutdown began, ctx's error, or an
// invalid pipes (none, or a topic twice), in which case nothing changed.
func (e *Engine) Reconfigure(ctx context.Context, pipes []*Pipeline) error {
	r := &reconfig{pipes: pipes, done: make(chan error, 1)}
	select {
	case e.reconf <- r:
	case <-e.polled:
		return ErrNotRunning
	case <-ctx.Done():
		return ctx.Err()
	}
	return <-r.done
}

// seekBack adds to seek where the client resumes w's partition once w is
// gone: after its last commit or, with none, at the first offset it was
// handed. A worker handed nothing adds nothing (the client's position is
// right).
func (w *worker) seekBack(seek map[string]map[int32]kgo.EpochOffset) {
	at := w.committed.Load()
	if at < 0 {
		at = w.first.Load()
	}
	if at < 0 {
		return
	}
	if seek[w.p.Topic] == nil {
		seek[w.p.Topic] = map[int32]kgo.EpochOffset{}
	}
	seek[w.p.Topic][w.partition] = kgo.EpochOffset{Epoch: -1, Offset: at}
}

// reconfigure applies a Reconfigure request; the poll loop calls it
// between a poll and AllowRebalance.
func (e *Engine) reconfigure(cl *kgo.Client, pipes []*Pipeline) error {
	if len(pipes) == 0 {
		return errors.New("pipeline: no pipelines")
	}
	next := make(map[string]*Pipeline, len(pipes))
	names := map[string]bool{}
	for _, p := range pipes {
		if _, dup := next[p.Topic]; dup {
			return fmt.Errorf("pipeline: topic %s read by two pipelines", p.Topic)
		}
		next[p.Topic] = p
		names[p.Name] = true
	}

	var added, removed []string
	var replaced []*Pipeline
	var stopping []*worker
	var retired []*Pipeline
	e.mu.Lock()
	for topic, p := range next {
		old, ok := e.byTopic[topic]
		switch {
		case !ok:
			added = append(added, topic)
		case old != p:
			replaced = append(replaced, p)
			retired = append(retired, old)
			for k, w := range e.workers {
				if k.topic == topic {
					stopping = append(stopping, w)
					delete(e.workers, k)
				}
			}
		}
	}
	for topic, old := range e.byTopic {
		if _, ok := next[topic]; !ok {
			removed = append(removed, topic)
			retired = append(retired, old)
		}
	}
	e.byTopic = next
	e.opts.Pipelines = slices.Clone(pipes)
	e.mu.Unlock()

	// The restarted partitions: flush and commit as a revoke does, then
	// fetch again from after the last commit.
	stopAll(stopping, stopFlush, e.opts.RevokeTimeout)
	seek := map[string]map[int32]kgo.EpochOffset{}
	for _, w := range stopping {
		w.seekBack(seek)
	}
	cl.SetOffsets(seek)

	e.limitsMu.Lock()
	for _, p := range retired {
		delete(e.limits, p)
	}
	e.limitsMu.Unlock()
	for _, p := range retired {
		if !names[p.Name] {
			e.m.EffectiveMaxRows.DeleteLabelValues(p.Name)
			e.m.EffectiveMaxBytes.DeleteLabelValues(p.Name)
			e.m.EffectiveMaxWait.DeleteLabelValues(p.Name)
		}
	}
	for _, p := range pipes {
		if !slices.Contains(added, p.Topic) && !slices.Contains(replaced, p) {
			continue
		}
		e.publishLimits(p, -1, p.Limits, false)
		e.m.startPipeline(p.Name)
	}

	e.mu.Lock()
	for _, w := range stopping {
		p := e.byTopic[w.p.Topic]
		k := tp{p.Topic, w.partition}
		nw := newWorker(e, p, w.partition)
		e.workers[k] = nw
		e.m.Assigned.WithLabelValues(p.Name).Inc()
		go nw.run()
	}
	e.mu.Unlock()
	for _, p := range replaced {
		var parts []int32
		for _, w := range stopping {
			if w.p.Topic == p.Topic {
				parts = append(parts, w.partition)
			}
		}
		slices.Sort(parts)
		e.log.Info("pipeline restarted with its new settings: partitions flushed, committed and kept",
			"pipeline", p.Name, "topic", p.Topic, "partitions", parts)
	}

	if len(removed) > 0 {
		slices.Sort(removed)
		// The rebalance this causes revokes the topics' partitions:
		// flushed and committed by the revoke callback.
		cl.PurgeTopicsFromConsuming(removed...)
		e.log.Info("topics removed from the subscription: their partitions are flushed, committed and released at the next rebalance", "topics", removed)
	}
	if len(added) > 0 {
		slices.Sort(added)
		cl.AddConsumeTopics(added...)
		e.log.Info("topics added to the subscription: their partitions are assigned at the next rebalance", "topics", added)
	}
	return nil
}
