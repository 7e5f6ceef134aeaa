package migrate

import (
	"io/fs"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/sluice-etl/sluice/schemas"
)

var (
	createLine = regexp.MustCompile(`(?m)^\s*CREATE\s`)
	// rawCreated and stmtCreated read the name of the object a CREATE
	// makes, as a raw file (with {db}) and as a statement (with the
	// quoted database) spell it.
	rawCreated  = regexp.MustCompile("(?m)^\\s*CREATE (?:TABLE|VIEW|MATERIALIZED VIEW) IF NOT EXISTS \\{db\\}\\.([A-Za-z_0-9]+)")
	stmtCreated = regexp.MustCompile("(?m)^\\s*CREATE (?:TABLE|VIEW|MATERIALIZED VIEW) IF NOT EXISTS `analytics`\\.([A-Za-z_0-9]+)")
)

// codeLines lists the lines of sql that are neither blank nor comments,
// trimmed and without a trailing ";".
func codeLines(sql string) []string {
	var out []string
	for _, l := range strings.Split(sql, "\n") {
		l = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(l), ";"))
		if l != "" && !strings.HasPrefix(l, "--") {
			out = append(out, l)
		}
	}
	return out
}

// TestStatementsEmbeddedDDL runs the DDL that ships in the binary through
// Statements: one statement per CREATE, in file order, {db} replaced, and
// nothing but comments and separators lost.
func TestStatementsEmbeddedDDL(t *testing.T) {
	// What the raw files hold, read independently of splitStatements.
	names, err := fs.Glob(schemas.ClickHouse, "clickhouse/*.sql")
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(names)
	var wantObjects, wantCode []string
	for _, n := range names {
		b, err := fs.ReadFile(schemas.ClickHouse, n)
		if err != nil {
			t.Fatal(err)
		}
		raw := string(b)
		if c, o := len(createLine.FindAllString(raw, -1)), len(rawCreated.FindAllString(raw, -1)); c != o {
			t.Fatalf("%s: %d CREATEs but %d of the form CREATE ... IF NOT EXISTS {db}.name", n, c, o)
		}
		for _, m := range rawCreated.FindAllStringSubmatch(raw, -1) {
			wantObjects = append(wantObjects, m[1])
		}
		wantCode = append(wantCode, codeLines(strings.ReplaceAll(raw, "{db}", "`analytics`"))...)
	}
	if len(wantObjects) == 0 {
		t.Fatal("no CREATE found in the embedded DDL")
	}

	stmts, err := Statements(schemas.ClickHouse, "clickhouse", "analytics")
	if err != nil {
		t.Fatalf("Statements: %v", err)
	}
	if len(stmts) != len(wantObjects) {
		t.Fatalf("got %d statements, want %d (one per CREATE):\n%s", len(stmts), len(wantObjects), strings.Join(stmts, "\n----\n"))
	}
	var objects, code []string
	for i, s := range stmts {
		if strings.Contains(s, "{db}") {
			t.Errorf("statement %d still contains {db}", i)
		}
		if n := len(createLine.FindAllString(s, -1)); n != 1 {
			t.Errorf("statement %d holds %d CREATEs", i, n)
		}
		if strings.HasSuffix(s, ";") || s != strings.TrimSpace(s) {
			t.Errorf("statement %d is not trimmed: %q", i, s[max(0, len(s)-20):])
		}
		if got := firstLine(s); !strings.HasPrefix(got, "CREATE ") {
			t.Errorf("firstLine of statement %d = %q, want its CREATE line", i, got)
		}
		m := stmtCreated.FindStringSubmatch(s)
		if m == nil {
			t.Errorf("statement %d does not create an object in `analytics`: %q", i, firstLine(s))
			continue
		}
		objects = append(objects, m[1])
		code = append(code, codeLines(s)...)
	}
	if !reflect.DeepEqual(objects, wantObjects) {
		t.Errorf("objects in order %v, want %v", objects, wantObjects)
	}
	if !reflect.DeepEqual(code, wantCode) {
		t.Errorf("statements do not hold exactly the files' code lines:\n got %q\nwant %q", code, wantCode)
	}
	// The pipelines' tables come first: views and KPI tables read them.
	if len(objects) < 3 || !reflect.DeepEqual(objects[:3], []string{"orders", "payments", "shipments"}) {
		t.Errorf("first objects %v, want orders, payments, shipments", objects)
	}
}

func TestSplitStatements(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{
			name: "trailing semicolons",
			in:   "CREATE TABLE a (x UInt8);\nCREATE TABLE b (y UInt8);\n",
			want: []string{"CREATE TABLE a (x UInt8)", "CREATE TABLE b (y UInt8)"},
		},
		{
			name: "multi-line statements keep their lines",
			in:   "CREATE TABLE a (\n    x UInt8\n) ENGINE = Memory;\n\nCREATE VIEW v AS\nSELECT x FROM a;\n",
			want: []string{"CREATE TABLE a (\n    x UInt8\n) ENGINE = Memory", "CREATE VIEW v AS\nSELECT x FROM a"},
		},
		{
			name: "separator lines holding only a semicolon",
			in:   "CREATE TABLE a (x UInt8)\n;\nCREATE TABLE b (y UInt8)\n;\n",
			want: []string{"CREATE TABLE a (x UInt8)", "CREATE TABLE b (y UInt8)"},
		},
		{
			name: "last statement without a semicolon",
			in:   "CREATE TABLE a (x UInt8);\nCREATE TABLE b (y UInt8)\n",
			want: []string{"CREATE TABLE a (x UInt8)", "CREATE TABLE b (y UInt8)"},
		},
		{
			name: "comments stay with the statement they head",
			in:   "-- the a table\nCREATE TABLE a (x UInt8);\n",
			want: []string{"-- the a table\nCREATE TABLE a (x UInt8)"},
		},
		{
			name: "comment-only chunks are dropped",
			in:   "-- header;\n\n-- more header\n;\nCREATE TABLE a (x UInt8);\n-- trailing note\n\n",
			want: []string{"CREATE TABLE a (x UInt8)"},
		},
		{
			name: "semicolon inside a line does not split",
			in:   "INSERT INTO t SELECT 'a;b', 1;\n",
			want: []string{"INSERT INTO t SELECT 'a;b', 1"},
		},
		{
			name: "trailing blanks and CRLF after the semicolon",
			in:   "CREATE TABLE a (x UInt8); \t\r\nCREATE TABLE b (y UInt8);\r\n",
			want: []string{"CREATE TABLE a (x UInt8)", "CREATE TABLE b (y UInt8)"},
		},
		{
			name: "empty statements between semicolons",
			in:   "CREATE TABLE a (x UInt8);\n;\n  ;\nCREATE TABLE b (y UInt8);\n",
			want: []string{"CREATE TABLE a (x UInt8)", "CREATE TABLE b (y UInt8)"},
		},
		{name: "empty", in: "", want: nil},
		{name: "blank", in: "\n  \n\t\n", want: nil},
		{name: "comments only", in: "-- nothing\n-- here\n", want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := splitStatements(tt.in)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("splitStatements(%q)\n got %q\nwant %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestStatementsFileOrderAndFilter(t *testing.T) {
	fsys := fstest.MapFS{
		"ddl/10_late.sql":     {Data: []byte("CREATE TABLE {db}.late (x UInt8);\n")},
		"ddl/02_early.sql":    {Data: []byte("-- two in one file\nCREATE TABLE {db}.e1 (x UInt8);\nCREATE VIEW {db}.e2 AS SELECT * FROM {db}.e1;\n")},
		"ddl/README.md":       {Data: []byte("CREATE nothing;\n")},
		"ddl/sub/99_skip.sql": {Data: []byte("CREATE TABLE {db}.nested (x UInt8);\n")},
		"ddl/05_comment.sql":  {Data: []byte("-- nothing to run yet\n")},
	}
	got, err := Statements(fsys, "ddl", "my_db")
	if err != nil {
		t.Fatalf("Statements: %v", err)
	}
	want := []string{
		"-- two in one file\nCREATE TABLE `my_db`.e1 (x UInt8)",
		"CREATE VIEW `my_db`.e2 AS SELECT * FROM `my_db`.e1",
		"CREATE TABLE `my_db`.late (x UInt8)",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Statements\n got %q\nwant %q", got, want)
	}

	if _, err := Statements(fsys, "missing", "my_db"); err == nil || !strings.Contains(err.Error(), "migrate: read missing") {
		t.Errorf("Statements(missing dir) error = %v", err)
	}
}

func TestFirstLine(t *testing.T) {
	tests := map[string]string{
		"CREATE TABLE a (\n x UInt8\n)":        "CREATE TABLE a (",
		"-- comment\n\n  CREATE TABLE b (x)  ": "CREATE TABLE b (x)",
		"-- only a comment":                    "-- only a comment",
		"\n\n   SELECT 1":                      "SELECT 1",
	}
	for in, want := range tests {
		if got := firstLine(in); got != want {
			t.Errorf("firstLine(%q) = %q, want %q", in, got, want)
		}
	}
}
