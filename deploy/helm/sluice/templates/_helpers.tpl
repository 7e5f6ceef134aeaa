{{/*
Names. The full name is the release name when it already says "sluice",
else "<release>-sluice"; 63 characters at most (a label value). A
StatefulSet's pods add "-<ordinal>", hence 57 there.
*/}}
{{- define "sluice.name" -}}
{{- .Values.nameOverride | default .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "sluice.fullname" -}}
{{- $max := ternary 57 63 (eq .Values.workload "StatefulSet") -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc $max | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "sluice.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc $max | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc $max | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The StatefulSet's governing (headless) Service, 63 characters at most. */}}
{{- define "sluice.headlessName" -}}
{{- include "sluice.fullname" . | trunc 54 | trimSuffix "-" -}}-headless
{{- end -}}

{{/* The labels a selector matches: the pods of this release. */}}
{{- define "sluice.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sluice.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The labels of every object. */}}
{{- define "sluice.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "sluice.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "sluice.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "sluice.fullname" .) -}}
{{- else -}}
{{- .Values.serviceAccount.name | default "default" -}}
{{- end -}}
{{- end -}}

{{/* Where the ConfigMap is mounted, and the config file in it. */}}
{{- define "sluice.configDir" -}}/etc/sluice/config{{- end -}}
{{- define "sluice.configFile" -}}{{ include "sluice.configDir" . }}/sluice.yaml{{- end -}}
{{- define "sluice.secretsDir" -}}/run/secrets/sluice{{- end -}}

{{/*
The secrets the chart can reference: the values key under .Values.secrets,
the file it is mounted as, Sluice's config key (for the checks) and the
SLUICE_* variable of that key's *_file twin.
*/}}
{{- define "sluice.secretKinds" -}}
- {value: clickhousePassword, file: clickhouse-password, section: clickhouse, key: password, env: SLUICE_CLICKHOUSE_PASSWORD_FILE}
- {value: kafkaSaslPassword, file: kafka-sasl-password, section: kafka.sasl, key: password, env: SLUICE_KAFKA_SASL_PASSWORD_FILE}
- {value: schemaRegistryPassword, file: schema-registry-password, section: schema_registry, key: password, env: SLUICE_SCHEMA_REGISTRY_PASSWORD_FILE}
- {value: schemaRegistryToken, file: schema-registry-token, section: schema_registry, key: token, env: SLUICE_SCHEMA_REGISTRY_TOKEN_FILE}
- {value: adminToken, file: admin-token, section: admin, key: token, env: SLUICE_ADMIN_TOKEN_FILE}
{{- end -}}

{{/* dig, for a dotted path through nested maps ("kafka.sasl"); {} when absent. */}}
{{- define "sluice.section" -}}
{{- $m := .config -}}
{{- range splitList "." .path -}}
{{- $m = (get ($m | default dict) .) | default dict -}}
{{- end -}}
{{- toJson $m -}}
{{- end -}}

{{/*
Refuse values that would render a pod Sluice or the group cannot run:
every check names the value to change.
*/}}
{{- define "sluice.validate" -}}
{{- $cfg := .Values.config | default dict -}}
{{- if not (has .Values.workload (list "Deployment" "StatefulSet")) -}}
{{- fail (printf "workload: %q is neither Deployment nor StatefulSet" .Values.workload) -}}
{{- end -}}
{{- if hasKey ($cfg.admin | default dict) "listen" -}}
{{- fail "config.admin.listen: the chart sets it (0.0.0.0:<admin.port>, for the probes); set admin.port instead" -}}
{{- end -}}
{{- if hasKey ($cfg.kafka | default dict) "instance_id" -}}
{{- fail "config.kafka.instance_id: one id shared by every pod fences all but one of them; use workload: StatefulSet, which gives each pod its own (its name)" -}}
{{- end -}}
{{- if and (not .Values.parallelism) (not (dig "limits" "cpu" "" (.Values.resources | default dict))) -}}
{{- fail "resources.limits.cpu or parallelism: one must be set, since GOMAXPROCS (batches at once) sizes the memory bound; without either it is the node's core count" -}}
{{- end -}}
{{- range (include "sluice.secretKinds" . | fromYamlArray) -}}
{{- $ref := get $.Values.secrets .value | default dict -}}
{{- if $ref.name -}}
{{- $section := include "sluice.section" (dict "config" $cfg "path" .section) | fromJson -}}
{{- if or (get $section .key) (get $section (printf "%s_file" .key)) -}}
{{- fail (printf "config.%s.%s: also referenced as secrets.%s; keep one (the Secret)" .section .key .value) -}}
{{- end -}}
{{- if not (get $ref "key") -}}
{{- fail (printf "secrets.%s.key: name the key of Secret %q" .value $ref.name) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The pod template of the Deployment or the StatefulSet. */}}
{{- define "sluice.podTemplate" -}}
metadata:
  labels:
    {{- include "sluice.labels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- $annotations := deepCopy (.Values.podAnnotations | default dict) }}
  {{- if .Values.rollOnConfigChange }}
  {{- $_ := set $annotations "checksum/config" (include (print $.Template.BasePath "/configmap.yaml") . | sha256sum) }}
  {{- end }}
  {{- with $annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  serviceAccountName: {{ include "sluice.serviceAccountName" . }}
  # Sluice does not talk to the Kubernetes API.
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  {{- with .Values.podSecurityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: sluice
      image: "{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}"
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args: ["run", "-c", {{ include "sluice.configFile" . | quote }}]
      env:
        - name: POD_NAME
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
        # The probes and Prometheus come from outside the pod.
        - name: SLUICE_ADMIN_LISTEN
          value: "0.0.0.0:{{ .Values.admin.port }}"
        {{- if eq .Values.workload "StatefulSet" }}
        # Static membership: the pod name is stable across restarts.
        - name: SLUICE_KAFKA_INSTANCE_ID
          value: "{{ .Values.statefulSet.instanceIdPrefix }}$(POD_NAME)"
        {{- end }}
        # Batches processed at once, which the memory bound is sized for.
        - name: GOMAXPROCS
          {{- if .Values.parallelism }}
          value: {{ .Values.parallelism | quote }}
          {{- else }}
          valueFrom:
            resourceFieldRef:
              resource: limits.cpu
              divisor: "1"
          {{- end }}
        {{- range (include "sluice.secretKinds" . | fromYamlArray) }}
        {{- if (get $.Values.secrets .value | default dict).name }}
        - name: {{ .env }}
          value: "{{ include "sluice.secretsDir" $ }}/{{ .file }}"
        {{- end }}
        {{- end }}
        {{- with .Values.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with .Values.envFrom }}
      envFrom:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      ports:
        - name: admin
          containerPort: {{ .Values.admin.port }}
          protocol: TCP
      startupProbe:
        httpGet:
          path: /healthz
          port: admin
        {{- toYaml .Values.probes.startup | nindent 8 }}
      livenessProbe:
        httpGet:
          path: /healthz
          port: admin
        {{- toYaml .Values.probes.liveness | nindent 8 }}
      readinessProbe:
        httpGet:
          path: /readyz
          port: admin
        {{- toYaml .Values.probes.readiness | nindent 8 }}
      resources:
        {{- include "sluice.resources" . | nindent 8 }}
      {{- with .Values.securityContext }}
      securityContext:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      volumeMounts:
        - name: config
          mountPath: {{ include "sluice.configDir" . }}
          readOnly: true
        {{- if include "sluice.hasSecrets" . }}
        - name: secrets
          mountPath: {{ include "sluice.secretsDir" . }}
          readOnly: true
        {{- end }}
        {{- if .Values.tlsSecret.name }}
        - name: tls
          mountPath: {{ .Values.tlsSecret.mountPath }}
          readOnly: true
        {{- end }}
        {{- with .Values.extraVolumeMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
  volumes:
    - name: config
      configMap:
        name: {{ include "sluice.fullname" . }}
    {{- if include "sluice.hasSecrets" . }}
    # Every referenced secret key as one file, readable by the pod's
    # group (fsGroup) only.
    - name: secrets
      projected:
        defaultMode: 0440
        sources:
          {{- range (include "sluice.secretKinds" . | fromYamlArray) }}
          {{- $ref := get $.Values.secrets .value | default dict }}
          {{- if $ref.name }}
          - secret:
              name: {{ $ref.name }}
              items:
                - key: {{ $ref.key }}
                  path: {{ .file }}
          {{- end }}
          {{- end }}
    {{- end }}
    {{- if .Values.tlsSecret.name }}
    - name: tls
      secret:
        secretName: {{ .Values.tlsSecret.name }}
        defaultMode: 0440
    {{- end }}
    {{- with .Values.extraVolumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{/* Non-empty when any secret is referenced. */}}
{{- define "sluice.hasSecrets" -}}
{{- range (include "sluice.secretKinds" . | fromYamlArray) -}}
{{- if (get $.Values.secrets .value | default dict).name -}}yes{{- end -}}
{{- end -}}
{{- end -}}

{{/*
A size of Sluice's config (config.ByteSize): a number of bytes, or a
string with a unit (KiB, MiB, GiB; KB, MB, GB as powers of 1000; K, M, G;
B), in bytes.
*/}}
{{- define "sluice.bytes" -}}
{{- if kindIs "string" . -}}
{{- $t := trim . -}}
{{- $mult := 1 -}}
{{- $done := false -}}
{{- range list (list "KiB" 1024) (list "MiB" 1048576) (list "GiB" 1073741824) (list "KB" 1000) (list "MB" 1000000) (list "GB" 1000000000) (list "K" 1024) (list "M" 1048576) (list "G" 1073741824) (list "B" 1) -}}
{{- if and (not $done) (hasSuffix (index . 0) $t) -}}
{{- $t = trim (trimSuffix (index . 0) $t) -}}
{{- $mult = index . 1 -}}
{{- $done = true -}}
{{- end -}}
{{- end -}}
{{- mul (atoi $t) $mult -}}
{{- else -}}
{{- int64 . -}}
{{- end -}}
{{- end -}}

{{/* The pod's GOMAXPROCS: parallelism, else limits.cpu rounded up. */}}
{{- define "sluice.parallel" -}}
{{- if .Values.parallelism -}}
{{- int64 .Values.parallelism -}}
{{- else -}}
{{- $cpu := toString (dig "limits" "cpu" "1" (.Values.resources | default dict)) -}}
{{- if hasSuffix "m" $cpu -}}
{{- div (add (atoi (trimSuffix "m" $cpu)) 999) 1000 -}}
{{- else -}}
{{- ceil (float64 $cpu) | int64 -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
config.MemoryBound of the config at the pod's parallelism, the row path's
term counted whatever the pipelines (an upper bound), in bytes: 48 MiB +
1.75 x inflight_bytes + the batch buffers (docs/DESIGN.md, "Memory
bound"), for the largest max_bytes, max_rows and combine of the config and
its pipelines; Sluice's defaults where the config leaves them out. The
state of currency, customer and fraud comes on top (values.yaml).
chart_test.go checks it against config.MemoryBound.
*/}}
{{- define "sluice.memoryBound" -}}
{{- $c := .Values.config | default dict -}}
{{- $b := $c.batch | default dict -}}
{{- $in := include "sluice.bytes" ($c.inflight_bytes | default "64MiB") | int64 -}}
{{- $maxBytes := include "sluice.bytes" ($b.max_bytes | default "12MiB") | int64 -}}
{{- $maxRows := $b.max_rows | default 20000 | int64 -}}
{{- $combine := $b.combine | default 1 | int64 -}}
{{- range $c.pipelines -}}
{{- $pb := .batch | default dict -}}
{{- if $pb.max_bytes }}{{ $maxBytes = max $maxBytes (include "sluice.bytes" $pb.max_bytes | int64) }}{{ end -}}
{{- if $pb.max_rows }}{{ $maxRows = max $maxRows (int64 $pb.max_rows) }}{{ end -}}
{{- if $pb.combine }}{{ $combine = max $combine (int64 $pb.combine) }}{{ end -}}
{{- end -}}
{{- $p := include "sluice.parallel" . | int64 -}}
{{- $bound := add 50331648 $in (div $in 4) (div $in 2) (mul $p $maxRows 2048) -}}
{{- if gt $combine 1 -}}
{{- $bound = add $bound (mul 2 (add $p $combine) $maxBytes) (mul $combine $maxBytes) -}}
{{- else -}}
{{- $bound = add $bound (mul $p 4 $maxBytes) -}}
{{- end -}}
{{- $bound -}}
{{- end -}}

{{/*
The container's resources: .Values.resources, with requests.memory and
limits.memory, where left empty, set to the memory bound plus a quarter
(what the cgroup charges beyond RSS), in MiB rounded up.
*/}}
{{- define "sluice.resources" -}}
{{- $r := deepCopy (.Values.resources | default dict) -}}
{{- $mib := div (add (div (mul (include "sluice.memoryBound" . | int64) 5) 4) 1048575) 1048576 -}}
{{- $limits := $r.limits | default dict -}}
{{- $requests := $r.requests | default dict -}}
{{- if not $limits.memory }}{{ $_ := set $limits "memory" (printf "%dMi" $mib) }}{{ end -}}
{{- if not $requests.memory }}{{ $_ := set $requests "memory" (printf "%dMi" $mib) }}{{ end -}}
{{- $_ := set $r "limits" $limits -}}
{{- $_ := set $r "requests" $requests -}}
{{- toYaml $r -}}
{{- end -}}
