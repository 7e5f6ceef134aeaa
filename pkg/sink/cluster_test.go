package sink

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// A read waits for a check that started after it was asked for: a check
// already running when it asks does not count, one that starts after does,
// and concurrent readers share it.
func TestSyncPointNeedsACheckStartedAfterTheRead(t *testing.T) {
	var p syncPoint
	var checks atomic.Int32
	release := make(chan struct{})
	started := make(chan struct{}, 8)
	check := func(context.Context) error {
		checks.Add(1)
		started <- struct{}{}
		<-release
		return nil
	}
	ctx := context.Background()
	first := make(chan error, 1)
	go func() { first <- p.await(ctx, time.Now(), check) }()
	<-started
	// Asked while the first check runs: that check is too early for it.
	late := time.Now()
	second := make(chan error, 1)
	go func() { second <- p.await(ctx, late, check) }()
	time.Sleep(20 * time.Millisecond)
	release <- struct{}{}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	<-started // the second reader's own check
	if n := checks.Load(); n != 2 {
		t.Fatalf("%d checks, want the second reader to start its own", n)
	}
	// Two more readers asking now share the running check... no: it
	// started before them. They share the one after it.
	var wg sync.WaitGroup
	now := time.Now()
	for range 2 {
		wg.Add(1)
		go func() { defer wg.Done(); _ = p.await(ctx, now, check) }()
	}
	release <- struct{}{}
	if err := <-second; err != nil {
		t.Fatal(err)
	}
	<-started
	release <- struct{}{}
	wg.Wait()
	if n := checks.Load(); n != 3 {
		t.Fatalf("%d checks, want one shared by the last two readers (3 in all)", n)
	}
	// A reader asking before the last check started needs none.
	if err := p.await(ctx, now, func(context.Context) error { t.Fatal("checked again"); return nil }); err != nil {
		t.Fatal(err)
	}
}

func TestSyncPointReportsAFailedCheck(t *testing.T) {
	var p syncPoint
	boom := errors.New("behind")
	if err := p.await(context.Background(), time.Now(), func(context.Context) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("got %v, want %v", err, boom)
	}
	// A failed check does not count as caught up.
	ran := false
	_ = p.await(context.Background(), time.Now(), func(context.Context) error { ran = true; return nil })
	if !ran {
		t.Fatal("a failed check was taken as caught up")
	}
}

type pingConn struct {
	driver.Conn
	err func() error
}

func (c pingConn) Ping(context.Context) error { return c.err() }
func (c pingConn) Close() error               { return nil }

// The first replica that answers takes the writes; one that failed without
// an answer is passed over, and taken back once it answers a ping.
func TestWriterFailsOverAndBack(t *testing.T) {
	var down atomic.Bool
	now := time.Unix(1000, 0)
	r1 := &Replica{Addr: "r1", conn: pingConn{err: func() error {
		if down.Load() {
			return errors.New("connection refused")
		}
		return nil
	}}}
	r2 := &Replica{Addr: "r2", conn: pingConn{err: func() error { return nil }}}
	cl := &Cluster{shards: [][]*Replica{{r1, r2}}, now: func() time.Time { return now }}
	ctx := context.Background()
	if w := cl.Writer(ctx, 0); w != r1 {
		t.Fatalf("writer %s, want r1", w.Addr)
	}
	// A server's answer is no reason to move.
	r1.fail(&clickhouse.Exception{Code: 241, Message: "memory"}, now)
	if w := cl.Writer(ctx, 0); w != r1 {
		t.Fatalf("writer %s after an exception, want r1", w.Addr)
	}
	down.Store(true)
	r1.fail(errors.New("read: connection reset by peer"), now)
	if w := cl.Writer(ctx, 0); w != r2 {
		t.Fatalf("writer %s after r1 failed, want r2", w.Addr)
	}
	now = now.Add(replicaBackoff + time.Second)
	if w := cl.Writer(ctx, 0); w != r2 {
		t.Fatalf("writer %s while r1 does not answer its ping, want r2", w.Addr)
	}
	down.Store(false)
	now = now.Add(replicaBackoff + time.Second)
	if w := cl.Writer(ctx, 0); w != r1 {
		t.Fatalf("writer %s once r1 answers again, want r1", w.Addr)
	}
}

func TestShardOfPartition(t *testing.T) {
	cl := &Cluster{shards: make([][]*Replica, 3)}
	for p, want := range map[int32]int{0: 0, 1: 1, 2: 2, 3: 0, 11: 2} {
		if got := cl.ShardOf(p); got != want {
			t.Errorf("partition %d: shard %d, want %d", p, got, want)
		}
	}
}
