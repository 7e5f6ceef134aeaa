// Package benchutil holds what the benchmarks behind `make bench` share:
// CPU and memory readings from /proc and getrusage, and a scratch
// ClickHouse database with Sluice's tables.
package benchutil

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/sluice-etl/sluice/internal/itest"
	"github.com/sluice-etl/sluice/pkg/migrate"
	"github.com/sluice-etl/sluice/schemas"
)

// SelfCPU is this process's user+sys CPU time so far.
func SelfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// StatusKB reads a "Key:  N kB" line of a /proc/<pid>/status file; 0 when
// absent.
func StatusKB(path, key string) uint64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), key); ok {
			n, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// ProcCPU reads utime+stime of a process from /proc/<pid>/stat.
func ProcCPU(pid string) (time.Duration, bool) {
	stat, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, false
	}
	// Fields after the parenthesised command name; utime and stime are
	// fields 14 and 15 of the whole line, in clock ticks (100 per second).
	s := string(stat)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, false
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(u+st) * 10 * time.Millisecond, true
}

// ClickHouseCPU is the ClickHouse server's user+sys CPU so far (see
// ClickHouseServerPID for which server); false when it cannot be read.
func ClickHouseCPU(repoRoot string) (time.Duration, bool) {
	pid, err := ClickHouseServerPID(repoRoot)
	if err != nil {
		return 0, false
	}
	return ProcCPU(pid)
}

// ClickHouseServerPID is the pid of the ClickHouse server the benchmarks
// talk to: the one integration/clickhouse.sh started under SLUICE_STATE_DIR
// (default <repoRoot>/.state), checked to be a live clickhouse-server whose
// config listens on the port of itest.ClickHouseAddr(). The check matters
// on a machine running two stacks: a bench pointed at an alternate server
// (SLUICE_CLICKHOUSE_ADDR) but not at its state dir would otherwise read the
// other server's CPU. The error says which of these does not hold.
func ClickHouseServerPID(repoRoot string) (string, error) {
	return servicePID(repoRoot, "ClickHouse", "clickhouse/clickhouse.pid", itest.ClickHouseAddr(),
		func(args []string) (string, bool) {
			if !strings.Contains(filepath.Base(args[0]), "clickhouse") {
				return "", false
			}
			for _, a := range args[1:] {
				if conf, ok := strings.CutPrefix(a, "--config-file="); ok {
					return conf, true
				}
			}
			return "", false
		},
		func(conf, port string) bool { return strings.Contains(conf, "<tcp_port>"+port+"</tcp_port>") })
}

// KafkaBrokerPID is the pid of the Kafka broker integration/kafka.sh
// started under SLUICE_STATE_DIR, checked like ClickHouseServerPID: a live
// kafka.Kafka whose server.properties listens on the port of the first of
// itest.Brokers().
func KafkaBrokerPID(repoRoot string) (string, error) {
	return servicePID(repoRoot, "Kafka", "kafka/kafka.pid", itest.Brokers()[0],
		func(args []string) (string, bool) {
			for i, a := range args {
				if a == "kafka.Kafka" && i+1 < len(args) {
					return args[i+1], true
				}
			}
			return "", false
		},
		func(conf, port string) bool {
			for _, l := range strings.Split(conf, "\n") {
				if v, ok := strings.CutPrefix(l, "listeners="); ok && strings.Contains(v, ":"+port) {
					return true
				}
			}
			return false
		})
}

// servicePID reads the pid file rel under the state dir, checks that the
// pid's command line is the service's (confFile finds its config file in
// the arguments) and that the config listens on addr's port.
func servicePID(repoRoot, service, rel, addr string, confFile func(args []string) (string, bool), listens func(conf, port string) bool) (string, error) {
	dir := os.Getenv("SLUICE_STATE_DIR")
	if dir == "" {
		dir = filepath.Join(repoRoot, ".state")
	}
	file := filepath.Join(dir, rel)
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("benchutil: %s pid file: %w", service, err)
	}
	pid := strings.TrimSpace(string(b))
	cmdline, err := os.ReadFile("/proc/" + pid + "/cmdline")
	if err != nil {
		return "", fmt.Errorf("benchutil: %s pid %s from %s is not running: %w", service, pid, file, err)
	}
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	conf, ok := confFile(args)
	if !ok {
		return "", fmt.Errorf("benchutil: pid %s from %s is %q, not the %s server of integration/", pid, file, args, service)
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("benchutil: %s address %q: %w", service, addr, err)
	}
	text, err := os.ReadFile(conf)
	if err != nil {
		return "", fmt.Errorf("benchutil: config of %s pid %s: %w", service, pid, err)
	}
	if !listens(string(text), port) {
		return "", fmt.Errorf("benchutil: the %s server of %s (pid %s, %s) does not listen on %s; set SLUICE_STATE_DIR to the state dir of the server at %s",
			service, dir, pid, conf, port, addr)
	}
	return pid, nil
}

// MachineBusy is the CPU time every process of the machine has used since
// boot (/proc/stat: user, nice, system, irq, softirq, steal).
func MachineBusy() (time.Duration, bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, false
	}
	var ticks int64
	for _, i := range []int{1, 2, 3, 6, 7, 8} {
		n, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return 0, false
		}
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond, true
}

// ScratchDatabase connects to the ClickHouse that `make up` starts and
// creates a database named prefix_<n> with Sluice's tables, dropped when the
// benchmark ends.
func ScratchDatabase(tb testing.TB, prefix string) (driver.Conn, string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	addr := itest.ClickHouseAddr()
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr}, Protocol: clickhouse.Native,
		Auth: clickhouse.Auth{Database: "default", Username: "default"}, DialTimeout: 5 * time.Second})
	if err == nil {
		err = conn.Ping(ctx)
	}
	if err != nil {
		tb.Fatalf("ClickHouse is not reachable at %s (run `make up`): %v", addr, err)
	}
	db := fmt.Sprintf("%s_%d", prefix, time.Now().UnixNano()%1_000_000_000)
	if err := migrate.Apply(ctx, conn, db, schemas.ClickHouse, "clickhouse", slog.New(slog.DiscardHandler)); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		_ = conn.Exec(context.Background(), "DROP DATABASE IF EXISTS `"+db+"`")
		conn.Close()
	})
	return conn, db
}
