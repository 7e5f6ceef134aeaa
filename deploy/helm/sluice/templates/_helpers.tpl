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
      {{- with .Values.resources }}
      resources:
        {{- toYaml . | nindent 8 }}
      {{- end }}
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
