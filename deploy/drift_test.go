package deploy

import (
	"strings"
	"testing"
)

// edit replaces old by new, everywhere, in one of the files.
type edit struct {
	file     string // README.md, docker-compose.yml, Dockerfile, Makefile, go.mod
	old, new string
}

func (f *files) field(t *testing.T, name string) *string {
	t.Helper()
	switch name {
	case "README.md":
		return &f.readme
	case "docker-compose.yml":
		return &f.compose
	case "Dockerfile":
		return &f.dockerfile
	case "Makefile":
		return &f.makefile
	case "go.mod":
		return &f.gomod
	}
	t.Fatalf("no file %s", name)
	return nil
}

// TestDriftIsCaught mutates a copy of the real files, one drift at a
// time, and wants the check to name it. Each edit must find its text in
// today's files (else the case would pass without testing anything).
func TestDriftIsCaught(t *testing.T) {
	for _, c := range []struct {
		name  string
		edits []edit
		want  string
	}{
		{"a published port moves", []edit{{"docker-compose.yml", `"127.0.0.1:9092:19092"`, `"127.0.0.1:29092:19092"`}},
			"service kafka: ports: docker-compose.yml has [127.0.0.1:29092:19092], the README [127.0.0.1:9092:19092]"},
		{"a port is no longer published", []edit{{"docker-compose.yml", "      - \"127.0.0.1:8123:8123\"\n", ""}},
			"service clickhouse: ports"},
		{"a port on every interface", []edit{
			{"docker-compose.yml", `"127.0.0.1:8080:8080"`, `"8080:8080"`},
			{"README.md", "`127.0.0.1:8080:8080`", "`8080:8080`"}},
			"service sluice: port 0.0.0.0:8080:8080 is published beyond 127.0.0.1"},
		{"a port in the long syntax", []edit{{"docker-compose.yml", "      - \"127.0.0.1:9000:9000\"\n",
			"      - target: 9000\n        published: 9000\n        host_ip: 127.0.0.2\n"}},
			"service clickhouse: ports: docker-compose.yml has [127.0.0.1:8123:8123, 127.0.0.2:9000:9000]"},
		{"a service gets a profile", []edit{{"docker-compose.yml", "  sluice:\n    build: .\n", "  sluice:\n    profiles: [observability]\n    build: .\n"}},
			"service sluice: profiles: docker-compose.yml has [observability], the README none"},
		{"a default service depends on a profiled one", []edit{
			{"docker-compose.yml", "\n  gen:\n", "\n  gen:\n    profiles: [demo]\n"},
			{"README.md", "| `gen` | `sluice:local` | none | none |", "| `gen` | `sluice:local` | none | `demo` |"}},
			"service sluice: depends on gen, which only starts with profile demo"},
		{"a config mount is dropped", []edit{{"docker-compose.yml", "      - ./schemas:/etc/sluice/schemas:ro\n", ""}},
			"service migrate: config mounts: docker-compose.yml has [./sluice.yaml:/etc/sluice/sluice.yaml:ro]"},
		{"a config mount becomes writable", []edit{{"docker-compose.yml", "./sluice.yaml:/etc/sluice/sluice.yaml:ro", "./sluice.yaml:/etc/sluice/sluice.yaml"}},
			"/etc/sluice/sluice.yaml:rw"},
		{"a mount source that is not in the repository", []edit{
			{"docker-compose.yml", "./sluice.yaml:/etc/sluice/sluice.yaml:ro", "./sluice-prod.yaml:/etc/sluice/sluice.yaml:ro"},
			{"README.md", "`./sluice.yaml:/etc/sluice/sluice.yaml:ro`", "`./sluice-prod.yaml:/etc/sluice/sluice.yaml:ro`"}},
			"service sluice: mount source ./sluice-prod.yaml does not exist in the repository"},
		{"a config path neither mounted nor in the image", []edit{{"docker-compose.yml", `command: ["run", "-c", "/etc/sluice/sluice.yaml"]`, `command: ["run", "-c", "/etc/sluice/prod.yaml"]`}},
			"service sluice: /etc/sluice/prod.yaml is neither mounted nor in the image"},
		{"a schema directory that does not exist", []edit{{"docker-compose.yml", `"/etc/sluice/schemas/avro"`, `"/etc/sluice/schemas/avro2"`}},
			"service gen: /etc/sluice/schemas/avro2 is neither mounted nor in the image"},
		{"a service the README does not list", []edit{{"docker-compose.yml", "\nvolumes:\n", "\n  registry:\n    image: apache/registry:1\n\nvolumes:\n"}},
			"service registry: in docker-compose.yml, not in the README's Docker table"},
		{"a service the compose file lacks", []edit{{"README.md", "| `gen` | `sluice:local` |", "| `generator` | `sluice:local` |"}},
			"service generator: in the README's Docker table, not in docker-compose.yml"},
		{"an image upgraded on one side", []edit{{"docker-compose.yml", "image: apache/kafka:4.1.1", "image: apache/kafka:4.2.0"}},
			`service kafka: image "apache/kafka:4.2.0" in docker-compose.yml, "apache/kafka:4.1.1" in the README`},
		{"an image no longer built", []edit{{"docker-compose.yml", "  migrate:\n    build: .\n", "  migrate:\n"}},
			"service migrate: the README says its image is built from the Dockerfile"},
		{"an undeclared named volume", []edit{{"docker-compose.yml", "\nvolumes:\n  kafka-data:\n", "\nvolumes:\n"}},
			"service kafka: volume kafka-data (at /var/lib/kafka/data) is not declared"},
		{"an entrypoint the image lacks", []edit{{"docker-compose.yml", `entrypoint: ["/usr/local/bin/sluice-gen"]`, `entrypoint: ["/usr/local/bin/sluicegen"]`}},
			"service gen: entrypoint /usr/local/bin/sluicegen is not a binary the Dockerfile installs"},
		{"the Dockerfile drops a binary", []edit{{"Dockerfile", " && \\\n    go build -ldflags=\"-s -w -X main.version=${VERSION}\" -o /out/sluice-gen ./cmd/sluice-gen", ""}},
			"binary sluice-gen: make build makes it (from ./cmd/sluice-gen), the Dockerfile does not"},
		{"the Dockerfile builds from another package", []edit{{"Dockerfile", "-o /out/sluice-gen ./cmd/sluice-gen", "-o /out/sluice-gen ./cmd/sluice"}},
			"binary sluice-gen: make build builds it from ./cmd/sluice-gen, the Dockerfile from ./cmd/sluice"},
		{"the Dockerfile does not stamp the version", []edit{{"Dockerfile", `-ldflags="-s -w -X main.version=${VERSION}" -o /out/sluice ./cmd/sluice`, `-ldflags="-s -w" -o /out/sluice ./cmd/sluice`}},
			"binary sluice: make build stamps -X [main.version], the Dockerfile -X none"},
		{"make build gains a binary", []edit{{"Makefile", "\t$(GO) build -ldflags \"$(LDFLAGS)\" -o $(BIN)/sluice-gen ./cmd/sluice-gen\n",
			"\t$(GO) build -ldflags \"$(LDFLAGS)\" -o $(BIN)/sluice-gen ./cmd/sluice-gen\n\t$(GO) build -o $(BIN)/sluice-bench ./cmd/sluice-bench\n"}},
			"binary sluice-bench: make build makes it (from ./cmd/sluice-bench), the Dockerfile does not"},
		{"a binary built but not installed", []edit{{"Dockerfile", "COPY --from=build /out/sluice /out/sluice-gen /usr/local/bin/", "COPY --from=build /out/sluice /usr/local/bin/"}},
			"binary sluice-gen: built in the Dockerfile but not copied into the final image"},
		{"an entry point the image lacks", []edit{{"Dockerfile", `ENTRYPOINT ["/usr/local/bin/sluice"]`, `ENTRYPOINT ["/usr/bin/sluice"]`}},
			"the Dockerfile's ENTRYPOINT [/usr/bin/sluice] is not a binary it installs"},
		{"a Go older than go.mod's", []edit{{"Dockerfile", "FROM golang:1.26 AS build", "FROM golang:1.25 AS build"}},
			"the Dockerfile builds with golang:1.25, older than go.mod's go"},
		{"a Go patch older than go.mod's", []edit{{"Dockerfile", "FROM golang:1.26 AS build", "FROM golang:1.26.1-bookworm AS build"}},
			"the Dockerfile builds with golang:1.26.1-bookworm, older than go.mod's go"},
		{"the README loses its table", []edit{{"README.md", "\n### Docker\n", "\n### Containers\n"}},
			`README.md: no "### Docker" section`},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := readFiles(t)
			for _, e := range c.edits {
				p := f.field(t, e.file)
				if !strings.Contains(*p, e.old) {
					t.Fatalf("%s does not hold %q: update this case", e.file, e.old)
				}
				*p = strings.ReplaceAll(*p, e.old, e.new)
			}
			problems := check(f)
			found := false
			for _, p := range problems {
				found = found || strings.Contains(p, c.want)
			}
			if !found {
				t.Errorf("the check did not report %q; it reported:\n%s", c.want, strings.Join(problems, "\n"))
			}
		})
	}
}

// TestNewerGoIsFine: a golang image newer than go.mod's directive passes.
func TestNewerGoIsFine(t *testing.T) {
	for _, c := range []struct{ image, gomod string }{
		{"golang:1.26", "go 1.26.8\n"},
		{"golang:1.27", "go 1.26.8\n"},
		{"golang:1.26.9-alpine", "go 1.26.8\n"},
		{"golang:2.0", "go 1.26\n"},
	} {
		if p := checkGoVersion(c.image, c.gomod); len(p) > 0 {
			t.Errorf("%s with %q: %v", c.image, c.gomod, p)
		}
	}
}
