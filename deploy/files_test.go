package deploy

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// root is the repository, seen from this package's directory (where go
// test runs).
const root = ".."

// files are the contents the checks read. The drift tests mutate a copy.
type files struct {
	root       string // where the paths named by the files are looked up
	readme     string
	compose    string
	dockerfile string
	makefile   string
	gomod      string
}

func readFiles(t *testing.T) files {
	t.Helper()
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(root, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	return files{
		root:       root,
		readme:     read("README.md"),
		compose:    read("docker-compose.yml"),
		dockerfile: read("Dockerfile"),
		makefile:   read("Makefile"),
		gomod:      read("go.mod"),
	}
}

// check runs every check and returns the problems found, sorted; a file
// that does not parse is one problem.
func check(f files) []string {
	var problems []string
	table, err := parseDockerTable(f.readme)
	if err != nil {
		problems = append(problems, "README.md: "+err.Error())
	}
	img, err := parseDockerfile(f.dockerfile)
	if err != nil {
		problems = append(problems, "Dockerfile: "+err.Error())
	}
	builds, err := parseMakeBuild(f.makefile)
	if err != nil {
		problems = append(problems, "Makefile: "+err.Error())
	}
	compose, err := parseCompose(f.compose)
	if err != nil {
		problems = append(problems, "docker-compose.yml: "+err.Error())
	}
	if len(problems) > 0 {
		return problems
	}
	problems = append(problems, checkComposeTable(compose, table)...)
	problems = append(problems, checkComposeRuns(compose, img, f.root)...)
	problems = append(problems, checkImage(img, builds, f.gomod, f.root)...)
	slices.Sort(problems)
	return problems
}

// TestDeployFilesMatch is the check of the repository as it is.
func TestDeployFilesMatch(t *testing.T) {
	for _, p := range check(readFiles(t)) {
		t.Error(p)
	}
}
