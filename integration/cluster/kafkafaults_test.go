//go:build cluster

package cluster

// Kafka cluster faults under load (issue 10, point 4): the broker that
// leads most of the topic's partitions killed with SIGKILL, and the
// partitions' replicas reassigned with their leadership moved, while Sluice
// loads into the sharded, replicated tables. Each ends exactly once, with
// `sluice audit` clean.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// leaders maps each partition of the topic to its leader's member name
// (kafka1 … kafka3, by the bed's node ids).
// A broker that is down fails the request now and then (the client asks
// the one it knows): callers retry.
func (w *loadWorld) leaders() (map[int32]string, error) {
	md, err := w.adm.Metadata(context.Background(), w.topic)
	if err != nil {
		return nil, err
	}
	out := map[int32]string{}
	for _, p := range md.Topics[w.topic].Partitions {
		out[p.Partition] = fmt.Sprintf("kafka%d", p.Leader)
	}
	return out, nil
}

// loading waits until the load is under way: 3,000 records committed.
func (w *loadWorld) loading() {
	w.t.Helper()
	if err := eventually(2*time.Minute, func() error {
		if c := w.committedTotal(); c < 3000 {
			return fmt.Errorf("committed %d", c)
		}
		return nil
	}); err != nil {
		w.t.Fatal(err)
	}
}

func TestPartitionLeadersBrokerKilledMidLoad(t *testing.T) {
	w := newLoadWorld(t, 6)
	w.produce(30000)
	w.brokerKilledMidLoad(func(leaders map[int32]string) (string, string) {
		count := map[string]int{}
		for _, m := range leaders {
			count[m]++
		}
		victim := ""
		for m, c := range count {
			if victim == "" || c > count[victim] || (c == count[victim] && m < victim) {
				victim = m
			}
		}
		return victim, fmt.Sprintf("led %d of 6 partitions", count[victim])
	})
}

// TestGroupCoordinatorKilledMidLoad: the broker that coordinates Sluice's
// group killed with SIGKILL mid-load. The member loses the group (its
// commits and heartbeats fail), drops its partitions and joins again at
// the coordinator that takes over.
func TestGroupCoordinatorKilledMidLoad(t *testing.T) {
	w := newLoadWorld(t, 6)
	w.produce(30000)
	w.brokerKilledMidLoad(func(map[int32]string) (string, string) {
		// Asked once the load is under way, right before the kill.
		var victim string
		if err := eventually(time.Minute, func() error {
			c, ok := w.adm.FindGroupCoordinators(context.Background(), w.group)[w.group]
			if !ok || c.Err != nil {
				return fmt.Errorf("coordinator of %s: %v", w.group, c.Err)
			}
			victim = fmt.Sprintf("kafka%d", c.NodeID)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return victim, "coordinated the group"
	})
}

// brokerKilledMidLoad kills, with SIGKILL, the broker pick names (given
// the partitions' leaders, it returns the broker and why it was chosen)
// once the load of the topic (30,000 records produced) is under way, waits
// until the other two lead every partition, produces 3,000 more, restarts
// the victim, and checks that everything ends committed exactly once.
func (w *loadWorld) brokerKilledMidLoad(pick func(leaders map[int32]string) (victim, why string)) {
	t := w.t
	const n = 30000
	var victim string
	// Registered before Sluice starts, so it runs after Sluice's cleanup:
	// a failed test's goroutines are dumped before the broker is back.
	t.Cleanup(func() {
		if victim != "" {
			runScript(t, "start", victim) // also when the test fails
		}
	})
	r := w.start(w.config([][]int{{0, 1}, {0, 1}}, 500))
	w.loading()
	leaders, err := w.leaders()
	if err != nil {
		t.Fatal(err)
	}
	victim, why := pick(leaders)
	at := w.committed()
	before := total(at)
	t.Logf("leaders %v, committed %v at the kill", leaders, at)
	runScript(t, "kill9", victim)
	if before >= n {
		t.Fatalf("everything was committed (%d) before the kill: the fault did not hit a load", before)
	}
	// The other two brokers take the leadership (min.insync.replicas 2
	// still holds): loading and producing go on.
	if err := eventually(time.Minute, func() error {
		leaders, err := w.leaders()
		if err != nil {
			return err
		}
		for p, m := range leaders {
			if m == victim {
				return fmt.Errorf("partition %d still led by %s", p, m)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	w.produce(3000)
	time.Sleep(5 * time.Second)
	t.Logf("%s %s; committed %d at the kill, %d before its restart", victim, why, before, w.committedTotal())
	runScript(t, "restart", victim)
	w.waitCommitted(4 * time.Minute)
	r.Stop(t)
	w.exactlyOnce()
	w.audit()
}

// TestPartitionReassignmentMidLoad: the topic has two replicas per
// partition on three brokers; mid-load every partition moves to the broker
// it was not on (which copies the log) and drops one of its old ones,
// and the new one is made the preferred leader.
func TestPartitionReassignmentMidLoad(t *testing.T) {
	w := newLoadWorldRF(t, 6, 2)
	const n = 30000
	w.produce(n)
	r := w.start(w.config([][]int{{0, 1}, {0, 1}}, 500))
	w.loading()
	ctx := context.Background()
	md, err := w.adm.Metadata(ctx, w.topic)
	if err != nil {
		t.Fatal(err)
	}
	// Each partition to [the broker it is not on, its first replica]:
	// the new one copies the log, becomes the preferred leader and is
	// elected.
	moves := kadm.AlterPartitionAssignmentsReq{}
	want := map[int32]int32{}
	for _, p := range md.Topics[w.topic].Partitions {
		var fresh int32
		for b := int32(1); b <= 3; b++ {
			if !slices.Contains(p.Replicas, b) {
				fresh = b
			}
		}
		reps := []int32{fresh, p.Replicas[0]}
		moves.Assign(w.topic, p.Partition, reps)
		want[p.Partition] = reps[0]
		t.Logf("partition %d: replicas %v (leader %d) -> %v", p.Partition, p.Replicas, p.Leader, reps)
	}
	resp, err := w.adm.AlterPartitionAssignments(ctx, moves)
	if err != nil {
		t.Fatal(err)
	}
	for _, ps := range resp {
		for _, p := range ps {
			if p.Err != nil {
				t.Fatalf("reassign %s[%d]: %v", p.Topic, p.Partition, p.Err)
			}
		}
	}
	before := w.committedTotal()
	if before >= n {
		t.Fatalf("everything was committed (%d) before the reassignment: the fault did not hit a load", before)
	}
	// The move is done when every partition has its new replicas and the
	// new broker is in sync (it has copied the log).
	if err := eventually(2*time.Minute, func() error {
		md, err := w.adm.Metadata(ctx, w.topic)
		if err != nil {
			return err
		}
		for _, p := range md.Topics[w.topic].Partitions {
			fresh := want[p.Partition]
			if len(p.Replicas) != 2 || !slices.Contains(p.Replicas, fresh) || !slices.Contains(p.ISR, fresh) {
				return fmt.Errorf("partition %d: replicas %v, in sync %v, want %d among both", p.Partition, p.Replicas, p.ISR, fresh)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// Then leadership to the new brokers. Kafka does not always follow:
	// in one CI run one partition kept its old leader for a minute after
	// a preferred election that reported no error. What the test checks
	// is Sluice through the data move; the leader moves are logged.
	moved := 0
	_ = eventually(30*time.Second, func() error {
		set := kadm.TopicsSet{}
		set.Add(w.topic)
		res, err := w.adm.ElectLeaders(ctx, kadm.ElectPreferredReplica, set)
		if err != nil {
			return err
		}
		var errs []error
		for _, ps := range res {
			for _, p := range ps {
				if p.Err != nil && !errors.Is(p.Err, kerr.ElectionNotNeeded) {
					errs = append(errs, fmt.Errorf("elect %s[%d]: %w", p.Topic, p.Partition, p.Err))
				}
			}
		}
		md, err := w.adm.Metadata(ctx, w.topic)
		if err != nil {
			return err
		}
		moved = 0
		for _, p := range md.Topics[w.topic].Partitions {
			if p.Leader == want[p.Partition] {
				moved++
			}
		}
		if moved < len(want) {
			errs = append(errs, fmt.Errorf("%d of %d leaders moved", moved, len(want)))
		}
		return errors.Join(errs...)
	})
	t.Logf("every partition moved to a new broker, %d of %d also to a new leader; committed %d at the reassignment", moved, len(want), before)
	w.produce(3000)
	w.waitCommitted(4 * time.Minute)
	r.Stop(t)
	w.exactlyOnce()
	w.audit()
}
