package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Bad flags and bad config exit 2 and say what is wrong, before anything
// is reached (the config of dlqWorld points ClickHouse at nothing).
func TestAuditUsageAndConfigErrors(t *testing.T) {
	cfg, _ := dlqWorld(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"audit", "-c", cfg, "--max-ranges", "0"}, `"--max-ranges" flag: must be at least 1`},
		{[]string{"audit", "-c", cfg, "--max-drill", "-1"}, `"--max-drill" flag: must not be negative`},
		{[]string{"audit", "-c", cfg, "--pipeline", "nope"}, `"--pipeline" flag: no such pipeline`},
		{[]string{"audit", "-c", cfg, "extra"}, "unknown command"},
	} {
		code, out, errOut := runCLI(c.args...)
		if code != exitConfig || out != "" || !strings.Contains(errOut, c.want) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 2 naming %q", c.args, code, out, errOut, c.want)
		}
	}

	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("kafka:\n  grop: x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := runCLI("audit", "-c", bad)
	if code != exitConfig || !strings.Contains(errOut, "kafka.grop") {
		t.Fatalf("exit %d, stderr %q; want exit 2 naming kafka.grop", code, errOut)
	}
}
