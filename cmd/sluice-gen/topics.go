package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// topicSpec is a topic sluice-gen creates when it is missing.
type topicSpec struct {
	name       string
	partitions int32
	configs    map[string]*string
}

// specs lists the topics of cfg: events with cfg.partitions, reference
// data compacted with one partition (DESIGN.md: history per key is kept,
// and one partition keeps a currency's rates in order).
func specs(cfg config) []topicSpec {
	compact := "compact"
	ref := map[string]*string{"cleanup.policy": &compact}
	return []topicSpec{
		{cfg.topics.Orders, cfg.partitions, nil},
		{cfg.topics.Payments, cfg.partitions, nil},
		{cfg.topics.Shipments, cfg.partitions, nil},
		{cfg.topics.Customers, 1, ref},
		{cfg.topics.FxRates, 1, ref},
	}
}

// ensureTopics creates the topics of cfg that do not exist yet and leaves
// existing ones alone. say reports each creation. A topic another client
// created meanwhile counts as existing.
func ensureTopics(ctx context.Context, adm *kadm.Client, cfg config, say func(string)) error {
	var names []string
	for _, s := range specs(cfg) {
		names = append(names, s.name)
	}
	existing, err := adm.ListTopics(ctx, names...)
	if err != nil {
		return fmt.Errorf("create topics: list topics: %w", err)
	}
	done := map[string]bool{}
	for _, s := range specs(cfg) {
		if existing.Has(s.name) || done[s.name] {
			continue
		}
		if d, ok := existing[s.name]; ok && d.Err != nil && !errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
			return fmt.Errorf("create topics: topic %q: %w", s.name, d.Err)
		}
		resp, err := adm.CreateTopic(ctx, s.partitions, cfg.replication, s.configs, s.name)
		switch {
		case errors.Is(err, kerr.TopicAlreadyExists):
		case err != nil:
			msg := ""
			if resp.ErrMessage != "" {
				msg = " (" + resp.ErrMessage + ")"
			}
			return fmt.Errorf("create topic %q with %d partitions: %w%s", s.name, s.partitions, err, msg)
		default:
			policy := ""
			if s.configs != nil {
				policy = ", compacted"
			}
			say(fmt.Sprintf("created topic %s (%s%s)", s.name, plural(int(s.partitions), "partition"), policy))
		}
		done[s.name] = true
	}
	return nil
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}
