{{/* Name of a component's objects: <release>-<component>. */}}
{{- define "wadispatch.name" -}}
{{- printf "%s-%s" .root.Release.Name .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "wadispatch.selectorLabels" -}}
app.kubernetes.io/name: wadispatch
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "wadispatch.labels" -}}
{{ include "wadispatch.selectorLabels" . }}
app.kubernetes.io/part-of: wadispatch
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end -}}

{{/* image: repository:tag, or repository@digest when the tag has a digest
     ("sha256:..." or skaffold's "TAG@sha256:..."). With a digest the tag is
     dropped: skaffold's tag changes with any Go file of the tree, while the
     digest changes only with the image, and only a pod spec that changes
     rolls a Deployment. "TAG@" (skaffold's image loaded into a local
     cluster, which has no digest) is the tag. An empty tag is the chart's
     appVersion. dict "image" and "root". */}}
{{- define "wadispatch.image" -}}
{{- $img := .image -}}
{{- $repo := required "image.repository is required" $img.repository -}}
{{- $tag := .root.Chart.AppVersion | toString -}}
{{- if $img.tag -}}{{- $tag = $img.tag | toString -}}{{- end -}}
{{- $digest := "" -}}
{{- if hasPrefix "sha256:" $tag -}}
{{- $digest = $tag -}}
{{- else if contains "@" $tag -}}
{{- $digest = splitList "@" $tag | last -}}
{{- $tag = splitList "@" $tag | first -}}
{{- end -}}
{{- if $digest -}}
{{ $repo }}@{{ $digest }}
{{- else -}}
{{ $repo }}:{{ $tag }}
{{- end -}}
{{- end -}}

{{/* The Google service account a component acts as. */}}
{{- define "wadispatch.gsaName" -}}
{{- include "wadispatch.name" . | trunc 30 | trimSuffix "-" -}}
{{- end -}}
{{- define "wadispatch.gsaEmail" -}}
{{- $v := index .root.Values .component -}}
{{- if $v.serviceAccount.gcpServiceAccount -}}
{{ $v.serviceAccount.gcpServiceAccount }}
{{- else -}}
{{ include "wadispatch.gsaName" . }}@{{ .root.Values.project }}.iam.gserviceaccount.com
{{- end -}}
{{- end -}}

{{/* topology.yaml, the one declaration of the Pub/Sub topology. */}}
{{- define "wadispatch.topology" -}}
{{- $t := .Files.Get "topology.yaml" | fromYaml -}}
{{- if or (not $t) (hasKey $t "Error") -}}
{{- fail (printf "topology.yaml is missing or invalid: %v" $t) -}}
{{- end -}}
{{- toYaml $t -}}
{{- end -}}

{{/* Fails unless topic .name is declared in topology.yaml; prints it. */}}
{{- define "wadispatch.topic" -}}
{{- $t := include "wadispatch.topology" .root | fromYaml -}}
{{- $found := false -}}
{{- range $t.topics -}}{{- if eq .name $.name -}}{{- $found = true -}}{{- end -}}{{- end -}}
{{- if not $found -}}{{- fail (printf "topic %q is not declared in topology.yaml" .name) -}}{{- end -}}
{{- .name -}}
{{- end -}}

{{- define "wadispatch.subscription" -}}
{{- $t := include "wadispatch.topology" .root | fromYaml -}}
{{- $found := false -}}
{{- range $t.subscriptions -}}{{- if eq .name $.name -}}{{- $found = true -}}{{- end -}}{{- end -}}
{{- if not $found -}}{{- fail (printf "subscription %q is not declared in topology.yaml" .name) -}}{{- end -}}
{{- .name -}}
{{- end -}}

{{/* A duration of topology.yaml ("60s") as Pub/Sub's seconds form; other
     forms ("1m") are refused rather than guessed. */}}
{{- define "wadispatch.seconds" -}}
{{- if not (regexMatch "^[0-9]+s$" (toString .)) -}}
{{- fail (printf "topology.yaml: duration %q must be whole seconds like \"60s\"" (toString .)) -}}
{{- end -}}
{{- . -}}
{{- end -}}

{{/* The container security context every container gets. */}}
{{- define "wadispatch.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.podSecurity.runAsUser }}
runAsGroup: {{ .Values.podSecurity.runAsGroup }}
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
privileged: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "wadispatch.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.podSecurity.runAsUser }}
runAsGroup: {{ .Values.podSecurity.runAsGroup }}
fsGroup: {{ .Values.podSecurity.fsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Environment every service reads. */}}
{{- define "wadispatch.commonEnv" -}}
{{- $v := index .root.Values .component -}}
- name: GOOGLE_CLOUD_PROJECT
  value: {{ .root.Values.project | quote }}
- name: LOG_LEVEL
  value: {{ .root.Values.logLevel | quote }}
- name: HTTP_ADDR
  value: ":8080"
- name: SHUTDOWN_GRACE
  value: {{ printf "%ds" (int $v.shutdownGraceSeconds) | quote }}
{{- with .root.Values.tracing.otlpEndpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ . | quote }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: {{ $.root.Values.tracing.protocol | quote }}
{{- end }}
{{- if .root.Values.devEmulators.enabled }}
- name: FIRESTORE_EMULATOR_HOST
  value: {{ printf "%s:8080" (include "wadispatch.name" (dict "root" .root "component" "firestore-emulator")) | quote }}
- name: PUBSUB_EMULATOR_HOST
  value: {{ printf "%s:8085" (include "wadispatch.name" (dict "root" .root "component" "pubsub-emulator")) | quote }}
{{- end }}
{{- end -}}

{{/* NetworkPolicy peers allowed to scrape /metrics. */}}
{{- define "wadispatch.metricsPeers" -}}
{{- range .Values.networkPolicy.metricsNamespaces }}
- namespaceSelector:
    matchLabels:
      kubernetes.io/metadata.name: {{ . }}
{{- end }}
{{- end -}}

{{/* Peers allowed to post to ingest: the Eventarc forwarder (every pod of
     the cluster unless narrowed to its namespaces or labels), a gateway's
     source ranges, the dev Firestore emulator and WhatsApp simulator. */}}
{{- define "wadispatch.ingestPeers" -}}
{{- $np := .Values.networkPolicy -}}
{{- $forwarder := $np.ingest.eventarcPodLabels -}}
{{- range $np.ingest.eventarcNamespaces }}
- namespaceSelector:
    matchLabels:
      kubernetes.io/metadata.name: {{ . }}
{{- with $forwarder }}
  podSelector:
    matchLabels:
      {{- toYaml . | nindent 6 }}
{{- end }}
{{- else }}
- namespaceSelector: {}
{{- with $forwarder }}
  podSelector:
    matchLabels:
      {{- toYaml . | nindent 6 }}
{{- end }}
{{- end }}
{{- range $np.ingest.gatewayCIDRs }}
- ipBlock:
    cidr: {{ . }}
{{- end }}
{{- if .Values.devEmulators.enabled }}
- podSelector:
    matchLabels:
      {{- include "wadispatch.selectorLabels" (dict "root" . "component" "firestore-emulator") | nindent 6 }}
- podSelector:
    matchLabels:
      {{- include "wadispatch.selectorLabels" (dict "root" . "component" "whatsapp-simulator") | nindent 6 }}
{{- end }}
{{- end -}}

{{/* Metadata of a Config Connector resource: its namespace (when not the
     release's) and project. */}}
{{- define "wadispatch.kccMetadata" -}}
{{- with .Values.configConnector.namespace }}
namespace: {{ . }}
{{- end }}
annotations:
  cnrm.cloud.google.com/project-id: {{ .Values.project }}
labels:
  app.kubernetes.io/name: wadispatch
  app.kubernetes.io/instance: {{ .Release.Name }}
  app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* One IAMPolicyMember: dict root, name, member, role, kind and either
     refName (a resource of this chart) or external. */}}
{{- define "wadispatch.iamMember" -}}
apiVersion: iam.cnrm.cloud.google.com/v1beta1
kind: IAMPolicyMember
metadata:
  name: {{ .name | trunc 253 }}
  {{- include "wadispatch.kccMetadata" .root | trim | nindent 2 }}
spec:
  member: {{ .member }}
  role: {{ .role }}
  {{- with .condition }}
  condition:
    title: {{ .title | quote }}
    expression: {{ .expression | quote }}
  {{- end }}
  resourceRef:
    kind: {{ .kind }}
    {{- if .refName }}
    name: {{ .refName }}
    {{- else }}
    external: {{ .external }}
    {{- end }}
{{- end -}}
