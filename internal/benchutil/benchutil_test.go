package benchutil

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestServicePIDRefusesAProcessThatIsNotTheServer(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("SLUICE_STATE_DIR", dir)
	if err := os.MkdirAll(filepath.Join(dir, "clickhouse"), 0o755); err != nil {
		t.Fatal(err)
	}
	// This test's own pid: alive, but not clickhouse-server.
	if err := os.WriteFile(filepath.Join(dir, "clickhouse", "clickhouse.pid"), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if pid, err := ClickHouseServerPID(t.TempDir()); err == nil || !strings.Contains(err.Error(), "not the ClickHouse server") {
		t.Fatalf("ClickHouseServerPID = %q, %v; want an error naming the wrong process", pid, err)
	}
	if _, ok := ClickHouseCPU(t.TempDir()); ok {
		t.Fatal("ClickHouseCPU read another process's CPU")
	}
	if pid, err := KafkaBrokerPID(t.TempDir()); err == nil {
		t.Fatalf("KafkaBrokerPID = %q without a pid file", pid)
	}
}

func TestMachineBusyAdvances(t *testing.T) {
	a, ok := MachineBusy()
	if !ok || a <= 0 {
		t.Fatalf("MachineBusy = %v, %v", a, ok)
	}
	for end := time.Now().Add(100 * time.Millisecond); time.Now().Before(end); {
	}
	if b, _ := MachineBusy(); b < a+50*time.Millisecond {
		t.Fatalf("MachineBusy advanced %v while this test spun for 100 ms", b-a)
	}
}
