package deploy

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// goBuild is one `go build` command: the binary it writes and the package
// it builds, with the names of the -X variables it stamps.
type goBuild struct {
	output string   // -o as written
	pkg    string   // e.g. ./cmd/sluice
	stamps []string // -X names, e.g. main.version
}

func (b goBuild) binary() string { return path.Base(b.output) }

// dockerImage is what the Dockerfile builds: the go builds of its build
// stages, the final stage's installed binaries, its copies of repository
// paths, its entry point and the Go image it builds with.
type dockerImage struct {
	builds     []goBuild
	installed  []string          // absolute paths of the binaries in the final image
	copies     map[string]string // final image path -> repository path (COPY from the context)
	entrypoint []string
	goImage    string // e.g. golang:1.26
}

// instructions splits a Dockerfile into instructions: comments dropped,
// continuation lines joined.
func instructions(text string) [][2]string {
	var out [][2]string
	var cur strings.Builder
	flush := func() {
		line := strings.TrimSpace(cur.String())
		cur.Reset()
		if line == "" {
			return
		}
		word, rest, _ := strings.Cut(line, " ")
		out = append(out, [2]string{strings.ToUpper(word), strings.TrimSpace(rest)})
	}
	for _, l := range strings.Split(text, "\n") {
		t := strings.TrimSpace(l)
		if strings.HasPrefix(t, "#") {
			continue
		}
		if strings.HasSuffix(t, "\\") {
			cur.WriteString(strings.TrimSuffix(t, "\\") + " ")
			continue
		}
		cur.WriteString(t)
		flush()
	}
	flush()
	return out
}

// words splits a shell command line into words, honouring single and
// double quotes (no expansion: ${VAR} stays as written).
func words(s string) []string {
	var out []string
	var cur strings.Builder
	in, quote := false, byte(0)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0 && c == quote:
			quote = 0
		case quote != 0:
			cur.WriteByte(c)
		case c == '"' || c == '\'':
			quote, in = c, true
		case c == ' ' || c == '\t':
			if in {
				out = append(out, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteByte(c)
			in = true
		}
	}
	if in {
		out = append(out, cur.String())
	}
	return out
}

var commandSep = regexp.MustCompile(`&&|\|\||;`)

// goBuilds finds the `go build` commands of a shell line.
func goBuilds(line string) ([]goBuild, error) {
	var out []goBuild
	for _, cmd := range commandSep.Split(line, -1) {
		w := words(cmd)
		if len(w) < 2 || w[0] != "go" || w[1] != "build" {
			continue
		}
		var b goBuild
		for i := 2; i < len(w); i++ {
			flag, value, hasValue := strings.Cut(w[i], "=")
			takeValue := func() string {
				if hasValue {
					return value
				}
				if i+1 < len(w) {
					i++
					return w[i]
				}
				return ""
			}
			switch {
			case flag == "-o":
				b.output = takeValue()
			case flag == "-ldflags":
				ld := words(takeValue())
				for j := 0; j < len(ld); j++ {
					if ld[j] == "-X" && j+1 < len(ld) {
						name, _, _ := strings.Cut(ld[j+1], "=")
						b.stamps = append(b.stamps, name)
						j++
					}
				}
			case flag == "-tags" || flag == "-gcflags" || flag == "-asmflags" || flag == "-mod" || flag == "-p":
				takeValue()
			case strings.HasPrefix(flag, "-"):
			default:
				if b.pkg != "" {
					return nil, fmt.Errorf("go build of several packages (%s and %s) in %q", b.pkg, w[i], cmd)
				}
				b.pkg = w[i]
			}
		}
		if b.output == "" || b.pkg == "" {
			return nil, fmt.Errorf("go build without -o or a package: %q", strings.TrimSpace(cmd))
		}
		slices.Sort(b.stamps)
		out = append(out, b)
	}
	return out, nil
}

func parseDockerfile(text string) (*dockerImage, error) {
	img := &dockerImage{copies: map[string]string{}}
	type stage struct{ name, base string }
	var stages []stage
	var finalCopies [][]string // COPY args of the last stage
	for _, in := range instructions(text) {
		op, args := in[0], in[1]
		switch op {
		case "FROM":
			w := words(args)
			s := stage{base: w[0]}
			if len(w) == 3 && strings.EqualFold(w[1], "AS") {
				s.name = w[2]
			}
			stages = append(stages, s)
			finalCopies = nil
			img.entrypoint = nil
			if strings.HasPrefix(s.base, "golang:") && img.goImage == "" {
				img.goImage = s.base
			}
		case "RUN":
			// RUN's own options (--mount=..., --network=...) come first.
			for strings.HasPrefix(args, "--") {
				_, args, _ = strings.Cut(args, " ")
				args = strings.TrimSpace(args)
			}
			b, err := goBuilds(args)
			if err != nil {
				return nil, err
			}
			img.builds = append(img.builds, b...)
		case "COPY":
			finalCopies = append(finalCopies, words(args))
		case "ENTRYPOINT":
			if err := jsonArray(args, &img.entrypoint); err != nil {
				return nil, fmt.Errorf("ENTRYPOINT %s: %w", args, err)
			}
		}
	}
	if len(stages) < 2 {
		return nil, fmt.Errorf("want a build stage and a final stage, found %d stage(s)", len(stages))
	}
	buildStages := map[string]bool{}
	for i, s := range stages[:len(stages)-1] {
		buildStages[s.name] = true
		buildStages[strconv.Itoa(i)] = true
	}
	for _, w := range finalCopies {
		from := ""
		var paths []string
		for _, a := range w {
			if v, ok := strings.CutPrefix(a, "--from="); ok {
				from = v
			} else if !strings.HasPrefix(a, "--") {
				paths = append(paths, a)
			}
		}
		if len(paths) < 2 {
			return nil, fmt.Errorf("COPY %s: want sources and a destination", strings.Join(w, " "))
		}
		srcs, dst := paths[:len(paths)-1], paths[len(paths)-1]
		for _, src := range srcs {
			target := dst
			if strings.HasSuffix(dst, "/") || len(srcs) > 1 {
				target = path.Join(dst, path.Base(src))
			}
			target = path.Clean(target)
			switch {
			case buildStages[from]:
				img.installed = append(img.installed, target)
			case from == "":
				img.copies[target] = path.Clean(src)
			}
			// a COPY --from another image brings nothing of ours
		}
	}
	return img, nil
}

// jsonArray reads the exec form ["a", "b"] of ENTRYPOINT and CMD.
func jsonArray(s string, dst *[]string) error {
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, "[") || !strings.HasSuffix(s, "]") {
		return fmt.Errorf("not the exec form [\"...\"]")
	}
	*dst = nil
	for _, part := range strings.Split(strings.Trim(s, "[]"), ",") {
		v, err := strconv.Unquote(strings.TrimSpace(part))
		if err != nil {
			return err
		}
		*dst = append(*dst, v)
	}
	return nil
}

var makeVar = regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]*)\s*(?::=|\?=|=)\s*(.*)$`)

// parseMakeBuild returns the go builds of the Makefile's build target,
// its variables expanded (one whose value runs $(shell ...) left as a
// reference).
func parseMakeBuild(text string) ([]goBuild, error) {
	vars := map[string]string{}
	var recipe []string
	inBuild := false
	for _, l := range strings.Split(text, "\n") {
		if m := makeVar.FindStringSubmatch(l); m != nil && !strings.HasPrefix(l, "\t") {
			vars[m[1]] = m[2]
		}
		switch {
		case strings.HasPrefix(l, "build:"):
			inBuild = true
		case inBuild && strings.HasPrefix(l, "\t"):
			recipe = append(recipe, strings.TrimSpace(l))
		case inBuild:
			inBuild = false
		}
	}
	if len(recipe) == 0 {
		return nil, fmt.Errorf("no recipe for the build target")
	}
	ref := regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)
	expand := func(s string) string {
		for range 10 { // variables referring to variables, a few levels deep
			s = ref.ReplaceAllStringFunc(s, func(r string) string {
				// A $(shell ...) value stays a reference: its command
				// line is not part of the go build's.
				if v, ok := vars[r[2:len(r)-1]]; ok && !strings.Contains(v, "$(shell") {
					return v
				}
				return r
			})
		}
		return s
	}
	var out []goBuild
	for _, l := range recipe {
		b, err := goBuilds(expand(strings.TrimLeft(l, "@")))
		if err != nil {
			return nil, err
		}
		out = append(out, b...)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("the build target runs no go build")
	}
	return out, nil
}

// checkImage compares the Dockerfile's builds with the Makefile's and
// checks that the image installs them and starts one, that what it copies
// exists, and that its Go is at least go.mod's.
func checkImage(img *dockerImage, make []goBuild, gomod, root string) []string {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	byBinary := func(bs []goBuild) map[string]goBuild {
		m := map[string]goBuild{}
		for _, b := range bs {
			m[b.binary()] = b
		}
		return m
	}
	mk, dk := byBinary(make), byBinary(img.builds)
	for name, m := range mk {
		d, ok := dk[name]
		switch {
		case !ok:
			add("binary %s: make build makes it (from %s), the Dockerfile does not", name, m.pkg)
		case path.Clean(d.pkg) != path.Clean(m.pkg):
			add("binary %s: make build builds it from %s, the Dockerfile from %s", name, m.pkg, d.pkg)
		case !slices.Equal(d.stamps, m.stamps):
			add("binary %s: make build stamps -X %s, the Dockerfile -X %s", name, list(m.stamps), list(d.stamps))
		}
	}
	for name, d := range dk {
		if _, ok := mk[name]; !ok {
			add("binary %s: the Dockerfile builds it (from %s), make build does not", name, d.pkg)
		}
	}
	var installedNames []string
	for _, p := range img.installed {
		installedNames = append(installedNames, path.Base(p))
	}
	for _, d := range img.builds {
		if !slices.Contains(installedNames, d.binary()) {
			add("binary %s: built in the Dockerfile but not copied into the final image", d.binary())
		}
	}
	if len(img.entrypoint) == 0 || !slices.Contains(img.installed, img.entrypoint[0]) {
		add("the Dockerfile's ENTRYPOINT %v is not a binary it installs (%s)", img.entrypoint, list(img.installed))
	}
	for target, src := range img.copies {
		if _, err := os.Stat(filepath.Join(root, filepath.FromSlash(src))); err != nil {
			add("the Dockerfile copies %s to %s, and it does not exist", src, target)
		}
	}
	problems = append(problems, checkGoVersion(img.goImage, gomod)...)
	return problems
}

var (
	goDirective = regexp.MustCompile(`(?m)^go (\d+)\.(\d+)(?:\.(\d+))?\s*$`)
	goTag       = regexp.MustCompile(`^golang:(\d+)\.(\d+)(?:\.(\d+))?(?:[-@].*)?$`)
)

// checkGoVersion: the build stage's golang image must be at least the go
// directive of go.mod. A tag without a patch (golang:1.26) is that minor
// release's latest patch.
func checkGoVersion(image, gomod string) []string {
	want := goDirective.FindStringSubmatch(gomod)
	if want == nil {
		return []string{"go.mod has no go directive"}
	}
	have := goTag.FindStringSubmatch(image)
	if have == nil {
		return []string{fmt.Sprintf("the Dockerfile builds with %q, not a golang:MAJOR.MINOR image", image)}
	}
	num := func(s string) int { n, _ := strconv.Atoi(s); return n }
	for i := 1; i <= 3; i++ {
		if i == 3 && have[3] == "" {
			break // the latest patch of that minor release
		}
		if num(have[i]) != num(want[i]) {
			if num(have[i]) < num(want[i]) {
				return []string{fmt.Sprintf("the Dockerfile builds with %s, older than go.mod's go %s", image, strings.TrimPrefix(want[0], "go "))}
			}
			break
		}
	}
	return nil
}
