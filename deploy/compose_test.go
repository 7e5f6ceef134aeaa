package deploy

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// composeFile is the part of the Compose specification the checks read;
// other keys are ignored. Anchors and aliases are resolved by the parser.
type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

type composeService struct {
	Image      string        `yaml:"image"`
	Build      *composeBuild `yaml:"build"`
	Command    stringList    `yaml:"command"`
	Entrypoint stringList    `yaml:"entrypoint"`
	Ports      []composePort `yaml:"ports"`
	Volumes    []composeVol  `yaml:"volumes"`
	Profiles   []string      `yaml:"profiles"`
	DependsOn  dependsOn     `yaml:"depends_on"`
}

// composeBuild is `build: DIR` or `build: {context, dockerfile}`.
type composeBuild struct {
	Context    string `yaml:"context"`
	Dockerfile string `yaml:"dockerfile"`
}

func (b *composeBuild) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		b.Context = n.Value
	} else {
		type plain composeBuild
		if err := n.Decode((*plain)(b)); err != nil {
			return err
		}
	}
	if b.Context == "" {
		b.Context = "."
	}
	if b.Dockerfile == "" {
		b.Dockerfile = "Dockerfile"
	}
	return nil
}

// stringList is a command or entrypoint: a list, or a string split on
// blanks as Compose does for the shell-less form.
type stringList []string

func (s *stringList) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*s = strings.Fields(n.Value)
		return nil
	}
	var l []string
	if err := n.Decode(&l); err != nil {
		return err
	}
	*s = l
	return nil
}

// composePort is a published port in either syntax, normalised to
// "host_ip:host_port:container_port[/protocol]" (normPort).
type composePort string

func (p *composePort) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*p = composePort(normPort(n.Value))
		return nil
	}
	var long struct {
		Target    any    `yaml:"target"`
		Published any    `yaml:"published"`
		HostIP    string `yaml:"host_ip"`
		Protocol  string `yaml:"protocol"`
	}
	if err := n.Decode(&long); err != nil {
		return err
	}
	short := fmt.Sprint(long.Target)
	if long.Published != nil {
		short = fmt.Sprint(long.Published) + ":" + short
		if long.HostIP != "" {
			short = long.HostIP + ":" + short
		}
	}
	if long.Protocol != "" {
		short += "/" + long.Protocol
	}
	*p = composePort(normPort(short))
	return nil
}

// normPort normalises Compose's short port syntax: a missing host address
// is 0.0.0.0 (every interface), a missing host port "*" (an ephemeral
// one), "/tcp" is the default protocol.
func normPort(s string) string {
	s = strings.TrimSuffix(strings.TrimSpace(s), "/tcp")
	parts := strings.Split(s, ":")
	switch len(parts) {
	case 1:
		return "0.0.0.0:*:" + parts[0]
	case 2:
		return "0.0.0.0:" + s
	}
	return s
}

// composeVol is a volume in either syntax, normalised to
// "source:target:mode" (normMount).
type composeVol string

func (v *composeVol) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*v = composeVol(normMount(n.Value))
		return nil
	}
	var long struct {
		Type     string `yaml:"type"`
		Source   string `yaml:"source"`
		Target   string `yaml:"target"`
		ReadOnly bool   `yaml:"read_only"`
	}
	if err := n.Decode(&long); err != nil {
		return err
	}
	mode := "rw"
	if long.ReadOnly {
		mode = "ro"
	}
	*v = composeVol(normMount(long.Source + ":" + long.Target + ":" + mode))
	return nil
}

// normMount normalises Compose's short volume syntax: mode rw unless
// given, paths without a trailing slash.
func normMount(s string) string {
	parts := strings.SplitN(strings.TrimSpace(s), ":", 3)
	if len(parts) == 1 { // an anonymous volume: a target only
		return ":" + parts[0] + ":rw"
	}
	if len(parts) == 2 {
		parts = append(parts, "rw")
	}
	for i := range 2 {
		if p := parts[i]; len(p) > 1 {
			parts[i] = strings.TrimSuffix(p, "/")
		}
	}
	return strings.Join(parts, ":")
}

func (v composeVol) parts() (source, target, mode string) {
	p := strings.SplitN(string(v), ":", 3)
	return p[0], p[1], p[2]
}

// isBind says whether the volume mounts a host path (a config mount)
// rather than a named volume.
func (v composeVol) isBind() bool {
	src, _, _ := v.parts()
	return strings.HasPrefix(src, ".") || strings.HasPrefix(src, "/") || strings.HasPrefix(src, "~")
}

// dependsOn is `depends_on` as a list or as a map with conditions.
type dependsOn []string

func (d *dependsOn) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.SequenceNode {
		var l []string
		if err := n.Decode(&l); err != nil {
			return err
		}
		*d = l
		return nil
	}
	var m map[string]any
	if err := n.Decode(&m); err != nil {
		return err
	}
	for k := range m {
		*d = append(*d, k)
	}
	sort.Strings(*d)
	return nil
}

func parseCompose(text string) (*composeFile, error) {
	var c composeFile
	if err := yaml.Unmarshal([]byte(text), &c); err != nil {
		return nil, err
	}
	if len(c.Services) == 0 {
		return nil, fmt.Errorf("no services")
	}
	return &c, nil
}

func (s composeService) bindMounts() []string {
	var out []string
	for _, v := range s.Volumes {
		if v.isBind() {
			out = append(out, string(v))
		}
	}
	return out
}

// sameSet compares two lists as sets and describes the difference.
func sameSet(got, want []string) (bool, string) {
	g, w := slices.Clone(got), slices.Clone(want)
	slices.Sort(g)
	slices.Sort(w)
	g, w = slices.Compact(g), slices.Compact(w)
	if slices.Equal(g, w) {
		return true, ""
	}
	return false, fmt.Sprintf("docker-compose.yml has %s, the README %s", list(g), list(w))
}

func list(l []string) string {
	if len(l) == 0 {
		return "none"
	}
	return "[" + strings.Join(l, ", ") + "]"
}

// checkComposeTable compares docker-compose.yml with the README's table.
func checkComposeTable(c *composeFile, table map[string]tableService) []string {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	for name := range c.Services {
		if _, ok := table[name]; !ok {
			add("service %s: in docker-compose.yml, not in the README's Docker table", name)
		}
	}
	for name, row := range table {
		s, ok := c.Services[name]
		if !ok {
			add("service %s: in the README's Docker table, not in docker-compose.yml", name)
			continue
		}
		if s.Image != row.image {
			add("service %s: image %q in docker-compose.yml, %q in the README", name, s.Image, row.image)
		}
		switch {
		case row.built && s.Build == nil:
			add("service %s: the README says its image is built from the Dockerfile; docker-compose.yml has no build", name)
		case !row.built && s.Build != nil:
			add("service %s: docker-compose.yml builds its image; the README does not say \"built from `Dockerfile`\"", name)
		case s.Build != nil && (path.Clean(s.Build.Context) != "." || s.Build.Dockerfile != "Dockerfile"):
			add("service %s: built from %s in context %s, not the repository's Dockerfile", name, s.Build.Dockerfile, s.Build.Context)
		}
		var ports []string
		for _, p := range s.Ports {
			ports = append(ports, string(p))
		}
		if ok, diff := sameSet(ports, row.ports); !ok {
			add("service %s: ports: %s", name, diff)
		}
		if ok, diff := sameSet(s.Profiles, row.profiles); !ok {
			add("service %s: profiles: %s", name, diff)
		}
		if ok, diff := sameSet(s.bindMounts(), row.mounts); !ok {
			add("service %s: config mounts: %s", name, diff)
		}
	}
	return problems
}

// checkComposeRuns checks what docker-compose.yml relies on without the
// README: loopback-only host ports, mount sources that exist, config and
// schema paths the container has, entry points the image installs,
// dependencies that exist and start with their dependants, named volumes
// that are declared.
func checkComposeRuns(c *composeFile, img *dockerImage, root string) []string {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	ourImages := map[string]bool{}
	for _, s := range c.Services {
		if s.Build != nil && s.Image != "" {
			ourImages[s.Image] = true
		}
	}
	for name, s := range c.Services {
		for _, p := range s.Ports {
			if !strings.HasPrefix(string(p), "127.0.0.1:") {
				add("service %s: port %s is published beyond 127.0.0.1 (everything binds to 127.0.0.1)", name, p)
			}
		}
		for _, v := range s.Volumes {
			src, target, _ := v.parts()
			switch {
			case v.isBind():
				if _, err := os.Stat(filepath.Join(root, filepath.FromSlash(src))); err != nil {
					add("service %s: mount source %s does not exist in the repository", name, src)
				}
			case src != "":
				if _, ok := c.Volumes[src]; !ok {
					add("service %s: volume %s (at %s) is not declared under volumes:", name, src, target)
				}
			}
		}
		for _, dep := range s.DependsOn {
			d, ok := c.Services[dep]
			switch {
			case !ok:
				add("service %s: depends on %s, which is not a service", name, dep)
			case len(d.Profiles) > 0 && !slices.ContainsFunc(d.Profiles, func(p string) bool { return slices.Contains(s.Profiles, p) }):
				add("service %s: depends on %s, which only starts with profile %s", name, dep, strings.Join(d.Profiles, ", "))
			}
		}
		if !ourImages[s.Image] {
			continue // another project's image: its paths are its own
		}
		args := append(slices.Clone(s.Entrypoint), s.Command...)
		if len(s.Entrypoint) > 0 && !slices.Contains(img.installed, s.Entrypoint[0]) {
			add("service %s: entrypoint %s is not a binary the Dockerfile installs (%s)", name, s.Entrypoint[0], list(img.installed))
		}
		for _, a := range args {
			if !strings.HasPrefix(a, "/etc/") {
				continue
			}
			if where, ok := resolve(a, s, img, root); !ok {
				add("service %s: %s is neither mounted nor in the image%s", name, a, where)
			}
		}
	}
	return problems
}

// resolve finds the host file behind a container path of a service of our
// image: through the longest mount target above it, else the image's
// COPY of a repository path. It says whether that file exists.
func resolve(p string, s composeService, img *dockerImage, root string) (string, bool) {
	best, host := "", ""
	consider := func(target, source string) {
		if (p == target || strings.HasPrefix(p, target+"/")) && len(target) > len(best) {
			best, host = target, source+strings.TrimPrefix(p, target)
		}
	}
	for _, v := range s.Volumes {
		if v.isBind() {
			src, target, _ := v.parts()
			consider(target, src)
		}
	}
	if best == "" {
		for target, src := range img.copies {
			consider(target, src)
		}
	}
	if best == "" {
		return "", false
	}
	if _, err := os.Stat(filepath.Join(root, filepath.FromSlash(host))); err != nil {
		return " (" + best + " is " + host + ", which does not exist)", false
	}
	return "", true
}
