// Package helmchart checks the Helm chart in ./sluice offline, the way a
// cluster and a pod would meet it: `helm lint` (Helm's own linter, strict),
// rendering with Helm's own engine and values schema, every object decoded
// strictly into its Kubernetes API type (an unknown or mistyped field is an
// error, as the API server would say), the links between the objects
// (selectors, ports, the ConfigMap and Secrets a pod mounts), and last the
// pod itself: its ConfigMap written out, its environment resolved as the
// kubelet would (fieldRef, resourceFieldRef, $(VAR)), its secret files
// mounted, and its config loaded by Sluice's own loader, which must accept
// it and find the admin address, the instance id and the secrets the chart
// wired. The memory limit is checked against config.MemoryBound of that
// config at the pod's GOMAXPROCS.
//
// It builds in the workspace of go.work (this module plus the repository's),
// so Helm stays out of the repository's go.mod. `make lint` runs it.
package helmchart

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/sluice-etl/sluice/internal/testcert"
	"github.com/sluice-etl/sluice/pkg/config"
)

const (
	chartDir  = "sluice"
	namespace = "etl"
	// The oldest Kubernetes the chart supports (Chart.yaml kubeVersion).
	kubeMinor = 27
)

// imageSchemas is where the image has the repository's schemas/
// (Dockerfile: COPY schemas/ /etc/sluice/schemas/).
const imageSchemas = "/etc/sluice/schemas"

var caps = func() *chartutil.Capabilities {
	c := chartutil.DefaultCapabilities.Copy()
	c.KubeVersion = chartutil.KubeVersion{Version: fmt.Sprintf("v1.%d.0", kubeMinor), Major: "1", Minor: strconv.Itoa(kubeMinor)}
	return c
}()

func loadChart(t *testing.T) *chart.Chart {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("load chart: %v", err)
	}
	return ch
}

// values parses a values file given as YAML text ("" for the defaults).
func values(t *testing.T, text string) map[string]any {
	t.Helper()
	v := map[string]any{}
	if err := yaml.Unmarshal([]byte(text), &v); err != nil {
		t.Fatalf("values: %v\n%s", err, text)
	}
	return v
}

// renderErr renders the chart for release "sluice" in namespace etl with
// the given values over the chart's own, through the values schema.
func renderErr(t *testing.T, release, vals string) (map[string]string, error) {
	t.Helper()
	ch := loadChart(t)
	rv, err := chartutil.ToRenderValues(ch, values(t, vals),
		chartutil.ReleaseOptions{Name: release, Namespace: namespace, Revision: 1, IsInstall: true}, caps)
	if err != nil {
		return nil, err
	}
	return engine.Render(ch, rv)
}

// objects are the rendered manifests, each decoded strictly into its type.
type objects struct {
	kinds          []string // "Kind/name", sorted
	configMap      *corev1.ConfigMap
	deployment     *appsv1.Deployment
	statefulSet    *appsv1.StatefulSet
	services       []*corev1.Service
	pdb            *policyv1.PodDisruptionBudget
	serviceMonitor *serviceMonitor
	serviceAccount *corev1.ServiceAccount
}

// serviceMonitor is the part of prometheus-operator's
// monitoring.coreos.com/v1 ServiceMonitor the chart writes; decoding into
// it strictly rejects a field the chart should not write.
type serviceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Selector          metav1.LabelSelector `json:"selector"`
		NamespaceSelector struct {
			MatchNames []string `json:"matchNames"`
		} `json:"namespaceSelector"`
		Endpoints []struct {
			Port          string `json:"port"`
			Path          string `json:"path"`
			Interval      string `json:"interval"`
			ScrapeTimeout string `json:"scrapeTimeout"`
			Authorization *struct {
				Type        string                    `json:"type"`
				Credentials *corev1.SecretKeySelector `json:"credentials"`
			} `json:"authorization,omitempty"`
		} `json:"endpoints"`
	} `json:"spec"`
}

func render(t *testing.T, vals string) *objects {
	t.Helper()
	return renderRelease(t, "sluice", vals)
}

func renderRelease(t *testing.T, release, vals string) *objects {
	t.Helper()
	out, err := renderErr(t, release, vals)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	objs := &objects{}
	names := make([]string, 0, len(out))
	for name := range out {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if strings.HasSuffix(name, "NOTES.txt") || strings.HasPrefix(filepath.Base(name), "_") {
			continue
		}
		for _, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(out[name], -1) {
			if strings.TrimSpace(doc) == "" {
				continue
			}
			objs.add(t, name, doc)
		}
	}
	sort.Strings(objs.kinds)
	return objs
}

func (o *objects) add(t *testing.T, file, doc string) {
	t.Helper()
	var head metav1.TypeMeta
	if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
		t.Fatalf("%s: not YAML: %v\n%s", file, err, doc)
	}
	strict := func(into any) {
		if err := yaml.UnmarshalStrict([]byte(doc), into); err != nil {
			t.Fatalf("%s: %s does not decode strictly: %v\n%s", file, head.Kind, err, doc)
		}
	}
	want := map[string]string{
		"ConfigMap": "v1", "Service": "v1", "ServiceAccount": "v1",
		"Deployment": "apps/v1", "StatefulSet": "apps/v1",
		"PodDisruptionBudget": "policy/v1", "ServiceMonitor": "monitoring.coreos.com/v1",
	}
	if v, ok := want[head.Kind]; !ok || v != head.APIVersion {
		t.Fatalf("%s: unexpected %s %s", file, head.APIVersion, head.Kind)
	}
	var meta metav1.ObjectMeta
	switch head.Kind {
	case "ConfigMap":
		o.configMap = &corev1.ConfigMap{}
		strict(o.configMap)
		meta = o.configMap.ObjectMeta
	case "Deployment":
		o.deployment = &appsv1.Deployment{}
		strict(o.deployment)
		meta = o.deployment.ObjectMeta
	case "StatefulSet":
		o.statefulSet = &appsv1.StatefulSet{}
		strict(o.statefulSet)
		meta = o.statefulSet.ObjectMeta
	case "Service":
		s := &corev1.Service{}
		strict(s)
		o.services = append(o.services, s)
		meta = s.ObjectMeta
	case "PodDisruptionBudget":
		o.pdb = &policyv1.PodDisruptionBudget{}
		strict(o.pdb)
		meta = o.pdb.ObjectMeta
	case "ServiceMonitor":
		o.serviceMonitor = &serviceMonitor{}
		strict(o.serviceMonitor)
		meta = o.serviceMonitor.ObjectMeta
	case "ServiceAccount":
		o.serviceAccount = &corev1.ServiceAccount{}
		strict(o.serviceAccount)
		meta = o.serviceAccount.ObjectMeta
	}
	// What the API server checks of every object's metadata: a name it
	// takes (63 characters at most also for the ones that allow more: a
	// Service's name is a DNS label, and the chart's names are shared),
	// label keys and values it takes.
	for _, msg := range validation.IsDNS1123Label(meta.Name) {
		t.Errorf("%s: %s name %q: %s", file, head.Kind, meta.Name, msg)
	}
	checkLabels(t, file+": "+head.Kind+" "+meta.Name, meta.Labels)
	for _, k := range []string{"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/managed-by", "helm.sh/chart"} {
		if meta.Labels[k] == "" {
			t.Errorf("%s: %s %s has no label %s", file, head.Kind, meta.Name, k)
		}
	}
	o.kinds = append(o.kinds, head.Kind+"/"+meta.Name)
}

func checkLabels(t *testing.T, what string, l map[string]string) {
	t.Helper()
	for k, v := range l {
		for _, msg := range validation.IsQualifiedName(k) {
			t.Errorf("%s: label key %q: %s", what, k, msg)
		}
		for _, msg := range validation.IsValidLabelValue(v) {
			t.Errorf("%s: label %s=%q: %s", what, k, v, msg)
		}
	}
}

// workload is the Deployment's or the StatefulSet's selector, replica
// count and pod template, whichever was rendered (exactly one must be).
func (o *objects) workload(t *testing.T) (*metav1.LabelSelector, *corev1.PodTemplateSpec) {
	t.Helper()
	switch {
	case o.deployment != nil && o.statefulSet == nil:
		return o.deployment.Spec.Selector, &o.deployment.Spec.Template
	case o.statefulSet != nil && o.deployment == nil:
		return o.statefulSet.Spec.Selector, &o.statefulSet.Spec.Template
	}
	t.Fatalf("want exactly one Deployment or StatefulSet, got %v", o.kinds)
	return nil, nil
}

// container is the pod's one container, after the checks the API server
// makes of the pod template's labels, names and environment.
func container(t *testing.T, pod *corev1.PodTemplateSpec) *corev1.Container {
	t.Helper()
	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("want one container, got %d", len(pod.Spec.Containers))
	}
	checkLabels(t, "pod template", pod.Labels)
	c := &pod.Spec.Containers[0]
	for _, msg := range validation.IsDNS1123Label(c.Name) {
		t.Errorf("container name %q: %s", c.Name, msg)
	}
	for _, e := range c.Env {
		for _, msg := range validation.IsEnvVarName(e.Name) {
			t.Errorf("env %q: %s", e.Name, msg)
		}
	}
	for _, v := range pod.Spec.Volumes {
		for _, msg := range validation.IsDNS1123Label(v.Name) {
			t.Errorf("volume %q: %s", v.Name, msg)
		}
	}
	return c
}

func envVar(c *corev1.Container, name string) *corev1.EnvVar {
	for i := range c.Env {
		if c.Env[i].Name == name {
			return &c.Env[i]
		}
	}
	return nil
}

func selects(t *testing.T, sel *metav1.LabelSelector, l map[string]string) bool {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Fatalf("selector %v: %v", sel, err)
	}
	return !s.Empty() && s.Matches(labels.Set(l))
}

func TestLint(t *testing.T) {
	kv := &chartutil.KubeVersion{Version: fmt.Sprintf("v1.%d.0", kubeMinor), Major: "1", Minor: strconv.Itoa(kubeMinor)}
	for name, vals := range lintCases {
		t.Run(name, func(t *testing.T) {
			l := lint.AllWithKubeVersion(chartDir, values(t, vals), namespace, kv)
			// helm lint --strict: a warning fails as an error does.
			for _, m := range l.Messages {
				if m.Severity >= support.WarningSev {
					t.Errorf("helm lint: %s", m)
				}
			}
		})
	}
}

// Value sets rendered by several tests.
const (
	statefulSetValues = `
workload: StatefulSet
replicas: 3
`
	allSecretsValues = `
config:
  kafka:
    sasl: {mechanism: SCRAM-SHA-512, username: sluice}
    tls: {enabled: true, ca_file: /etc/sluice/tls/ca.pem}
  schema_registry: {url: "https://registry:8081", username: sluice}
secrets:
  clickhousePassword: {name: clickhouse, key: password}
  kafkaSaslPassword: {name: kafka-user, key: password}
  schemaRegistryPassword: {name: registry, key: secret}
  adminToken: {name: sluice-admin, key: token}
tlsSecret: {name: kafka-tls}
serviceMonitor: {enabled: true, labels: {release: prometheus}}
`
)

var lintCases = map[string]string{
	"defaults":    "",
	"statefulset": statefulSetValues,
	"secrets":     allSecretsValues,
}

func TestDefaults(t *testing.T) {
	o := render(t, "")
	want := []string{"ConfigMap/sluice", "Deployment/sluice", "PodDisruptionBudget/sluice", "Service/sluice", "ServiceAccount/sluice"}
	if !slices.Equal(o.kinds, want) {
		t.Fatalf("objects: got %v, want %v", o.kinds, want)
	}
	sel, pod := o.workload(t)
	if !selects(t, sel, pod.Labels) {
		t.Errorf("Deployment selector %v does not match its pod labels %v", sel, pod.Labels)
	}
	if got := *o.deployment.Spec.Replicas; got != 2 {
		t.Errorf("replicas %d, want 2", got)
	}
	if s := o.deployment.Spec.Strategy; s.Type != appsv1.RollingUpdateDeploymentStrategyType ||
		s.RollingUpdate.MaxUnavailable.IntValue() != 0 || s.RollingUpdate.MaxSurge.IntValue() != 1 {
		t.Errorf("strategy %+v: want a rolling update that adds a pod before it removes one", s)
	}
	c := container(t, pod)
	if envVar(c, "SLUICE_KAFKA_INSTANCE_ID") != nil {
		t.Errorf("a Deployment's pods must not be static members (random pod names)")
	}
	checkProbes(t, c, 8080)
	checkService(t, o, pod, 8080)

	// PodDisruptionBudget: the same pods, one at a time, unready ones evictable.
	if !selects(t, o.pdb.Spec.Selector, pod.Labels) {
		t.Errorf("PDB selector %v does not match the pod labels %v", o.pdb.Spec.Selector, pod.Labels)
	}
	if o.pdb.Spec.MaxUnavailable == nil || o.pdb.Spec.MaxUnavailable.IntValue() != 1 || o.pdb.Spec.MinAvailable != nil {
		t.Errorf("PDB: want maxUnavailable 1 alone, got %+v", o.pdb.Spec)
	}
	if p := o.pdb.Spec.UnhealthyPodEvictionPolicy; p == nil || *p != policyv1.AlwaysAllow {
		t.Errorf("PDB unhealthyPodEvictionPolicy %v, want AlwaysAllow", p)
	}

	// Resources: both set, memory requested as limited (no overcommit of
	// the bound), and a CPU limit for GOMAXPROCS.
	r := c.Resources
	if r.Limits.Memory().IsZero() || r.Limits.Cpu().IsZero() || r.Requests.Memory().Cmp(*r.Limits.Memory()) != 0 {
		t.Errorf("resources %+v: want limits.cpu, limits.memory and requests.memory = limits.memory", r)
	}
	if got := o.serviceAccount.Name; pod.Spec.ServiceAccountName != got {
		t.Errorf("pod service account %q, chart made %q", pod.Spec.ServiceAccountName, got)
	}
	if pod.Annotations["checksum/config"] == "" {
		t.Errorf("no checksum/config annotation: a config change would not roll the pods")
	}
}

// checkProbes: startup and liveness on /healthz, readiness on /readyz,
// all at the container's admin port, which is where SLUICE_ADMIN_LISTEN
// binds, on every interface.
func checkProbes(t *testing.T, c *corev1.Container, port int32) {
	t.Helper()
	var admin *corev1.ContainerPort
	for i := range c.Ports {
		if c.Ports[i].Name == "admin" {
			admin = &c.Ports[i]
		}
	}
	if admin == nil || admin.ContainerPort != port {
		t.Fatalf("container ports %+v: want admin at %d", c.Ports, port)
	}
	listen := envVar(c, "SLUICE_ADMIN_LISTEN")
	if listen == nil || listen.Value != fmt.Sprintf("0.0.0.0:%d", port) {
		t.Errorf("SLUICE_ADMIN_LISTEN %+v: want 0.0.0.0:%d (the binary's default is loopback, out of the kubelet's reach)", listen, port)
	}
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{
		{"startup", c.StartupProbe, "/healthz"},
		{"liveness", c.LivenessProbe, "/healthz"},
		{"readiness", c.ReadinessProbe, "/readyz"},
	} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("%s probe: none, or not HTTP", p.name)
			continue
		}
		g := p.probe.HTTPGet
		resolved := g.Port.IntValue()
		if g.Port.StrVal == admin.Name {
			resolved = int(admin.ContainerPort)
		}
		if g.Path != p.path || resolved != int(port) {
			t.Errorf("%s probe: GET %s at %s (port %d), want %s at %d", p.name, g.Path, g.Port.String(), resolved, p.path, port)
		}
	}
}

// checkService: the admin Service selects the pods, lists unready ones,
// and forwards to the admin port by name.
func checkService(t *testing.T, o *objects, pod *corev1.PodTemplateSpec, port int32) {
	t.Helper()
	var admin *corev1.Service
	for _, s := range o.services {
		if s.Spec.ClusterIP != corev1.ClusterIPNone {
			admin = s
		}
		if !selects(t, &metav1.LabelSelector{MatchLabels: s.Spec.Selector}, pod.Labels) {
			t.Errorf("Service %s selector %v does not match the pod labels %v", s.Name, s.Spec.Selector, pod.Labels)
		}
		if !s.Spec.PublishNotReadyAddresses {
			t.Errorf("Service %s leaves unready pods out: their metrics would not be scraped", s.Name)
		}
		for _, p := range s.Spec.Ports {
			if p.TargetPort.String() != "admin" {
				t.Errorf("Service %s port %s targets %s, want the container port named admin", s.Name, p.Name, p.TargetPort.String())
			}
		}
	}
	if admin == nil || len(admin.Spec.Ports) != 1 || admin.Spec.Ports[0].Port != port {
		t.Errorf("want an admin Service on port %d, got %v", port, o.kinds)
	}
}

func TestStatefulSet(t *testing.T) {
	o := render(t, statefulSetValues)
	if o.deployment != nil || o.statefulSet == nil {
		t.Fatalf("workload StatefulSet: got %v", o.kinds)
	}
	sts := o.statefulSet
	sel, pod := o.workload(t)
	if !selects(t, sel, pod.Labels) {
		t.Errorf("StatefulSet selector %v does not match its pod labels %v", sel, pod.Labels)
	}
	if *sts.Spec.Replicas != 3 || sts.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
		t.Errorf("replicas %d, podManagementPolicy %q: want 3, Parallel", *sts.Spec.Replicas, sts.Spec.PodManagementPolicy)
	}
	var governing *corev1.Service
	for _, s := range o.services {
		if s.Name == sts.Spec.ServiceName {
			governing = s
		}
	}
	if governing == nil || governing.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("serviceName %q: want a headless Service of that name, got %v", sts.Spec.ServiceName, o.kinds)
	}
	c := container(t, pod)
	checkProbes(t, c, 8080)
	checkService(t, o, pod, 8080)
	if !selects(t, o.pdb.Spec.Selector, pod.Labels) {
		t.Errorf("PDB selector %v does not match the pod labels", o.pdb.Spec.Selector)
	}

	// Static membership: the instance id is the pod's own name, and each
	// pod's is different and stable (sluice-0, sluice-1, ...).
	for ordinal := range 3 {
		podName := fmt.Sprintf("%s-%d", sts.Name, ordinal)
		cfg := loadPodConfig(t, o, podName)
		if cfg.Kafka.InstanceID != podName {
			t.Errorf("pod %s: kafka.instance_id %q, want the pod name", podName, cfg.Kafka.InstanceID)
		}
	}
	o = render(t, statefulSetValues+"statefulSet: {instanceIdPrefix: eu-west.}\n")
	if cfg := loadPodConfig(t, o, "sluice-1"); cfg.Kafka.InstanceID != "eu-west.sluice-1" {
		t.Errorf("with a prefix: kafka.instance_id %q, want eu-west.sluice-1", cfg.Kafka.InstanceID)
	}
}

func TestServiceMonitor(t *testing.T) {
	if o := render(t, ""); o.serviceMonitor != nil {
		t.Errorf("ServiceMonitor rendered while disabled: %v", o.kinds)
	}
	for name, vals := range map[string]string{
		"deployment":  "serviceMonitor: {enabled: true}\n",
		"statefulset": statefulSetValues + "serviceMonitor: {enabled: true}\n",
		"token":       allSecretsValues,
	} {
		t.Run(name, func(t *testing.T) {
			o := render(t, vals)
			sm := o.serviceMonitor
			if sm == nil {
				t.Fatalf("ServiceMonitor not rendered: %v", o.kinds)
			}
			// Exactly one Service (the admin one, not the headless one:
			// every pod scraped once) and one of its ports by name.
			var matched []*corev1.Service
			for _, s := range o.services {
				if selects(t, &sm.Spec.Selector, s.Labels) {
					matched = append(matched, s)
				}
			}
			if len(matched) != 1 || matched[0].Spec.ClusterIP == corev1.ClusterIPNone {
				t.Fatalf("ServiceMonitor selector %v matches %d Services, want the admin Service alone", sm.Spec.Selector, len(matched))
			}
			if !slices.Equal(sm.Spec.NamespaceSelector.MatchNames, []string{namespace}) {
				t.Errorf("namespaceSelector %v, want [%s]", sm.Spec.NamespaceSelector.MatchNames, namespace)
			}
			if len(sm.Spec.Endpoints) != 1 {
				t.Fatalf("endpoints %+v", sm.Spec.Endpoints)
			}
			ep := sm.Spec.Endpoints[0]
			if ep.Path != "/metrics" || !slices.ContainsFunc(matched[0].Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == ep.Port }) {
				t.Errorf("endpoint %s at port %q: want /metrics at a port of Service %s", ep.Path, ep.Port, matched[0].Name)
			}
			if _, err := time.ParseDuration(ep.Interval); err != nil {
				t.Errorf("interval %q: %v", ep.Interval, err)
			}
			if name == "token" {
				if a := ep.Authorization; a == nil || a.Type != "Bearer" || a.Credentials == nil ||
					a.Credentials.Name != "sluice-admin" || a.Credentials.Key != "token" {
					t.Errorf("with secrets.adminToken: authorization %+v, want Bearer from sluice-admin/token", ep.Authorization)
				}
			} else if ep.Authorization != nil {
				t.Errorf("authorization without an admin token: %+v", ep.Authorization)
			}
			if name == "token" && sm.Labels["release"] != "prometheus" {
				t.Errorf("serviceMonitor.labels not on the ServiceMonitor: %v", sm.Labels)
			}
		})
	}
}

// TestPodLoadsItsConfig: what each rendered pod would run, Sluice's own
// loader accepts, with the settings the chart wires through the pod.
func TestPodLoadsItsConfig(t *testing.T) {
	for name, vals := range map[string]string{
		"defaults":    "",
		"statefulset": statefulSetValues,
		"secrets":     allSecretsValues,
		"files": `
files:
  click.avsc: '{"type":"record","name":"Click","fields":[{"name":"url","type":"string"}]}'
config:
  pipelines:
    - {name: clicks, topic: clicks, format: json, schema: click.avsc, table: clicks}
`,
	} {
		t.Run(name, func(t *testing.T) {
			o := render(t, vals)
			cfg := loadPodConfig(t, o, "sluice-0")
			if cfg.Admin.Listen != "0.0.0.0:8080" {
				t.Errorf("admin.listen %q, want 0.0.0.0:8080", cfg.Admin.Listen)
			}
			_, pod := o.workload(t)
			checkPodBounds(t, pod, cfg)
			if name == "files" && (len(cfg.Pipelines) != 1 || cfg.Pipelines[0].Name != "clicks") {
				t.Errorf("pipelines %+v: want the clicks pipeline of the values", cfg.Pipelines)
			}
			if name != "secrets" {
				return
			}
			// Each secret reached Sluice from its own Secret key, through
			// the file the chart mounted and the *_file key it set.
			for key, got := range map[string]config.Secret{
				"clickhouse/password": cfg.ClickHouse.Password,
				"kafka-user/password": cfg.Kafka.SASL.Password,
				"registry/secret":     cfg.SchemaRegistry.Password,
				"sluice-admin/token":  cfg.Admin.Token,
			} {
				if string(got) != secretContent(key) {
					t.Errorf("secret %s: Sluice read %q, want %q", key, string(got), secretContent(key))
				}
			}
			if _, err := os.Stat(cfg.Kafka.TLS.CAFile); err != nil {
				t.Errorf("kafka.tls.ca_file from tlsSecret: %v", err)
			}
		})
	}
}

// checkPodBounds: the pod outlives Sluice's own bounds. The startup probe
// waits longer than startup_timeout, the grace period covers
// shutdown_timeout and the admin server's stop, and the memory limit
// covers the memory bound at the pod's GOMAXPROCS.
func checkPodBounds(t *testing.T, pod *corev1.PodTemplateSpec, cfg *config.Config) {
	t.Helper()
	c := container(t, pod)
	sp := c.StartupProbe
	if wait := time.Duration(sp.PeriodSeconds*sp.FailureThreshold) * time.Second; wait <= cfg.StartupTimeout {
		t.Errorf("startup probe gives up after %v, before startup_timeout %v", wait, cfg.StartupTimeout)
	}
	grace := time.Duration(*pod.Spec.TerminationGracePeriodSeconds) * time.Second
	if grace <= cfg.ShutdownTimeout+5*time.Second {
		t.Errorf("terminationGracePeriodSeconds %v does not cover shutdown_timeout %v + 5 s", grace, cfg.ShutdownTimeout)
	}
	if err := memoryCovers(c, gomaxprocs(t, c), cfg); err != nil {
		t.Error(err)
	}
}

// memoryCovers says whether the container's memory limit holds Sluice's
// memory bound (config.MemoryBound) at parallel batches at once. The row
// path's term is counted whatever the pipelines' formats: an upper bound.
// The reference data and VELOCITY windows of a config with currency,
// customer or fraud come on top, sized by what they hold (the README's
// Helm section): not checked here.
func memoryCovers(c *corev1.Container, parallel int, cfg *config.Config) error {
	bound := config.MemoryBound(cfg, parallel, true)
	limit := c.Resources.Limits.Memory().Value()
	if limit < bound {
		return fmt.Errorf("limits.memory %s (%d MiB) is under the memory bound %d MiB at GOMAXPROCS %d", c.Resources.Limits.Memory(), limit>>20, bound>>20, parallel)
	}
	return nil
}

// gomaxprocs is the GOMAXPROCS the container's environment gives, as the
// kubelet resolves it.
func gomaxprocs(t *testing.T, c *corev1.Container) int {
	t.Helper()
	v := envVar(c, "GOMAXPROCS")
	if v == nil {
		t.Fatalf("no GOMAXPROCS: the memory bound would follow the node's core count")
	}
	n, err := strconv.Atoi(resolveEnv(t, c, "sluice-0")["GOMAXPROCS"])
	if err != nil || n < 1 {
		t.Fatalf("GOMAXPROCS %+v: %v", v, err)
	}
	return n
}

// TestMemoryFollowsParallelism: GOMAXPROCS follows the CPU limit or
// parallelism, and a memory left empty is derived from the bound of the
// rendered config at that GOMAXPROCS: config.MemoryBound plus a quarter,
// in MiB rounded up, for requests and limits alike. The chart computes it
// in its templates (sluice.memoryBound), so a config key or a term the
// template reads differently from config.MemoryBound fails here. A memory
// set by hand is kept, and checked against the bound.
func TestMemoryFollowsParallelism(t *testing.T) {
	for _, tc := range []struct {
		vals string
		want int
		fits bool
	}{
		{"", 2, true},
		{"resources: {limits: {cpu: 1500m}}", 2, true},
		{"resources: {limits: {cpu: '16'}}", 16, true},
		{"parallelism: 3\nresources: {limits: {cpu: null}}", 3, true},
		// Every term the bound reads, away from its default.
		{"config: {inflight_bytes: 256MiB, batch: {max_rows: 50000, max_bytes: 8388608}, pipelines: [{name: orders, topic: orders, format: avro, schema: /etc/sluice/schemas/avro/order.avsc, table: orders, batch: {max_bytes: 32MiB, combine: 3}}]}", 2, true},
		{"config: {inflight_bytes: 3000000000, batch: {max_bytes: 1GB, combine: 2}}", 2, true},
		// A memory set by hand stays, and a bigger pod (more batches at
		// once) outgrows it: the check says so.
		{"resources: {limits: {cpu: '16', memory: 512Mi}, requests: {memory: 512Mi}}", 16, false},
	} {
		o := render(t, tc.vals)
		_, pod := o.workload(t)
		c := container(t, pod)
		p := gomaxprocs(t, c)
		if p != tc.want {
			t.Errorf("%q: GOMAXPROCS %d, want %d", tc.vals, p, tc.want)
		}
		cfg := loadPodConfig(t, o, "sluice-0")
		if err := memoryCovers(c, p, cfg); (err == nil) != tc.fits {
			t.Errorf("%q: memory check %v, want fits=%v", tc.vals, err, tc.fits)
		}
		if strings.Contains(tc.vals, "memory:") {
			continue
		}
		bound := config.MemoryBound(cfg, p, true)
		want := resource.MustParse(fmt.Sprintf("%dMi", (bound*5/4+(1<<20)-1)>>20))
		lim, req := c.Resources.Limits[corev1.ResourceMemory], c.Resources.Requests[corev1.ResourceMemory]
		if lim.Cmp(want) != 0 || req.Cmp(want) != 0 {
			t.Errorf("%q: memory limit %s, request %s; want both %s (bound %d MiB at GOMAXPROCS %d, plus a quarter)",
				tc.vals, lim.String(), req.String(), want.String(), bound>>20, p)
		}
	}
	// The default config must be one the config alone sizes, or the
	// default memory would be a guess at the reference data's size.
	if cfg := loadPodConfig(t, render(t, ""), "sluice-0"); cfg.UsesReference() {
		t.Errorf("the default config reads reference data, which the default memory cannot size")
	}
}

// TestRefusals: values the chart must not render, each refused with the
// value to change.
func TestRefusals(t *testing.T) {
	for _, tc := range []struct{ vals, want string }{
		{"workload: DaemonSet", "workload"},
		{"replica: 3", "replica"},
		{"config: {admin: {listen: '127.0.0.1:8080'}}", "config.admin.listen"},
		{"config: {kafka: {instance_id: sluice}}", "config.kafka.instance_id"},
		{"resources: {limits: {cpu: null}}", "parallelism"},
		{"config: {clickhouse: {password: hunter2}}\nsecrets: {clickhousePassword: {name: ch, key: password}}", "config.clickhouse.password"},
		{"config: {admin: {token_file: /x}}\nsecrets: {adminToken: {name: a, key: token}}", "config.admin.token"},
		{"secrets: {adminToken: {name: a, key: ''}}", "secrets.adminToken.key"},
		{"files: {sluice.yaml: 'kafka: {}'}", "sluice.yaml"},
	} {
		_, err := renderErr(t, "sluice", tc.vals)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("values %q: got %v, want an error naming %s", tc.vals, err, tc.want)
		}
	}
}

func TestNames(t *testing.T) {
	o := renderRelease(t, "prod", "")
	if o.deployment.Name != "prod-sluice" || o.configMap.Name != "prod-sluice" {
		t.Errorf("release prod: names %v, want prod-sluice", o.kinds)
	}
	_, pod := o.workload(t)
	if got := pod.Spec.Volumes[0].ConfigMap.Name; got != o.configMap.Name {
		t.Errorf("pod mounts ConfigMap %q, chart made %q", got, o.configMap.Name)
	}
	// Helm's longest release name: every name and label still valid
	// (add checks them), and the StatefulSet's pod names too.
	long := strings.Repeat("x", 53)
	o = renderRelease(t, long, statefulSetValues)
	for ordinal := range 100 {
		pod := fmt.Sprintf("%s-%d", o.statefulSet.Name, ordinal)
		for _, msg := range validation.IsDNS1123Label(pod) {
			t.Fatalf("pod name %q: %s", pod, msg)
		}
	}
}

// secretContent is what the simulated Secret holds at key "name/key":
// 16 characters at least, as admin.token needs.
func secretContent(nameKey string) string { return "s3cret:" + nameKey + ":0123456789abcdef" }

// loadPodConfig runs the pod's start-up up to Sluice's config: it lays
// out the pod's volumes in temporary directories (the ConfigMap's files,
// each projected Secret key with secretContent, the TLS Secret with a
// CA certificate as ca.pem), maps the pod's paths to them (and the image's schemas to the
// repository's), resolves the container's environment as the kubelet
// would, and loads the config file named by the container's arguments
// with that environment. Any error is the pod exiting 2.
func loadPodConfig(t *testing.T, o *objects, podName string) *config.Config {
	t.Helper()
	_, pod := o.workload(t)
	c := container(t, pod)
	repoSchemas, err := filepath.Abs("../../schemas")
	if err != nil {
		t.Fatal(err)
	}
	mounts := map[string]string{imageSchemas: repoSchemas}
	for _, m := range c.VolumeMounts {
		var vol *corev1.Volume
		for i := range pod.Spec.Volumes {
			if pod.Spec.Volumes[i].Name == m.Name {
				vol = &pod.Spec.Volumes[i]
			}
		}
		if vol == nil {
			t.Fatalf("volumeMount %s: no such volume", m.Name)
		}
		dir := t.TempDir()
		mounts[m.MountPath] = dir
		switch {
		case vol.ConfigMap != nil:
			if vol.ConfigMap.Name != o.configMap.Name {
				t.Fatalf("volume %s: ConfigMap %q, chart made %q", m.Name, vol.ConfigMap.Name, o.configMap.Name)
			}
			for f, content := range o.configMap.Data {
				writeFile(t, filepath.Join(dir, f), content)
			}
		case vol.Projected != nil:
			for _, src := range vol.Projected.Sources {
				if src.Secret == nil {
					t.Fatalf("volume %s: a projected source other than a Secret", m.Name)
				}
				for _, it := range src.Secret.Items {
					writeFile(t, filepath.Join(dir, it.Path), secretContent(src.Secret.Name+"/"+it.Key)+"\n")
				}
			}
		case vol.Secret != nil:
			// The TLS Secret: a CA certificate Sluice's loader parses.
			ca, err := testcert.NewCA(vol.Secret.SecretName)
			if err != nil {
				t.Fatal(err)
			}
			writeFile(t, filepath.Join(dir, "ca.pem"), string(ca.PEM))
		default:
			t.Fatalf("volume %s: a kind this test does not lay out", m.Name)
		}
	}
	local := func(p string) string {
		best := ""
		for from := range mounts {
			if (p == from || strings.HasPrefix(p, from+"/")) && len(from) > len(best) {
				best = from
			}
		}
		if best == "" {
			return p
		}
		return mounts[best] + strings.TrimPrefix(p, best)
	}
	if len(c.Args) != 3 || c.Args[0] != "run" || c.Args[1] != "-c" {
		t.Fatalf("container args %v: want run -c FILE", c.Args)
	}
	cfgFile := local(c.Args[2])
	if cfgFile == c.Args[2] {
		t.Fatalf("config file %s is on no volume of the pod", c.Args[2])
	}
	// The paths in the config are the pod's: rewrite them to where this
	// test laid the volumes out, longest mount first.
	text, err := os.ReadFile(cfgFile)
	if err != nil {
		t.Fatalf("config file %s (from %s): %v", c.Args[2], cfgFile, err)
	}
	from := make([]string, 0, len(mounts))
	for p := range mounts {
		from = append(from, p)
	}
	sort.Slice(from, func(i, j int) bool { return len(from[i]) > len(from[j]) })
	s := string(text)
	for _, p := range from {
		s = strings.ReplaceAll(s, p+"/", mounts[p]+"/")
	}
	writeFile(t, cfgFile, s)

	// Only the pod's environment: no SLUICE_* of the machine running the test.
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, config.EnvPrefix+"_") {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
	for k, v := range resolveEnv(t, c, podName) {
		if strings.HasPrefix(v, "/") {
			v = local(v)
		}
		t.Setenv(k, v)
	}
	cfg, err := config.Load(cfgFile)
	if err != nil {
		t.Fatalf("pod %s: Sluice refuses its config (exit 2):\n%v\n--- sluice.yaml ---\n%s", podName, err, s)
	}
	return cfg
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// resolveEnv gives the container's environment as the kubelet makes it:
// in order, fieldRef metadata.name/namespace from the pod, a
// resourceFieldRef from the container's resources (rounded up to the
// divisor), and $(NAME) in a value replaced by an earlier variable ($$ is
// a literal $; an unknown name stays as written).
func resolveEnv(t *testing.T, c *corev1.Container, podName string) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, e := range c.Env {
		var v string
		switch {
		case e.ValueFrom == nil:
			v = expand(e.Value, env)
		case e.ValueFrom.FieldRef != nil:
			switch e.ValueFrom.FieldRef.FieldPath {
			case "metadata.name":
				v = podName
			case "metadata.namespace":
				v = namespace
			default:
				t.Fatalf("env %s: fieldRef %s", e.Name, e.ValueFrom.FieldRef.FieldPath)
			}
		case e.ValueFrom.ResourceFieldRef != nil:
			ref := e.ValueFrom.ResourceFieldRef
			var q resource.Quantity
			switch ref.Resource {
			case "limits.cpu":
				q = *c.Resources.Limits.Cpu()
			case "limits.memory":
				q = *c.Resources.Limits.Memory()
			default:
				t.Fatalf("env %s: resourceFieldRef %s", e.Name, ref.Resource)
			}
			if q.IsZero() {
				t.Fatalf("env %s: %s is not set (the kubelet would give the node's allocatable)", e.Name, ref.Resource)
			}
			div := ref.Divisor
			if div.IsZero() {
				div = resource.MustParse("1")
			}
			v = strconv.FormatInt(int64(math.Ceil(q.AsApproximateFloat64()/div.AsApproximateFloat64())), 10)
		default:
			t.Fatalf("env %s: a valueFrom this test does not resolve", e.Name)
		}
		env[e.Name] = v
	}
	return env
}

func expand(s string, env map[string]string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			if end := strings.IndexByte(s[i:], ')'); end > 0 {
				if v, ok := env[s[i+2:i+end]]; ok {
					b.WriteString(v)
					i += end
					continue
				}
			}
			b.WriteByte('$')
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}

func TestExpand(t *testing.T) {
	env := map[string]string{"POD_NAME": "sluice-0"}
	for in, want := range map[string]string{
		"$(POD_NAME)":      "sluice-0",
		"eu.$(POD_NAME).x": "eu.sluice-0.x",
		"$$(POD_NAME)":     "$(POD_NAME)",
		"$(OTHER)":         "$(OTHER)",
		"a$":               "a$",
		"$(POD_NAME":       "$(POD_NAME",
	} {
		if got := expand(in, env); got != want {
			t.Errorf("expand(%q) = %q, want %q", in, got, want)
		}
	}
}
