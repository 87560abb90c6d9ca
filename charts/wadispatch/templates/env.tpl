{{/* Each service's own environment; names match the envconfig structs in
     services/<name>/main.go (`<service> -help-env` prints them). */}}

{{- define "wadispatch.env.ingest" -}}
{{- $v := .Values -}}
# CloudEvents and the webhook; probes and metrics stay on HTTP_ADDR.
- name: INGEST_ADDR
  value: ":8081"
- name: INGEST_TASKS_TOPIC
  value: {{ include "wadispatch.topic" (dict "root" . "name" $v.pubsub.tasksTopic) | quote }}
- name: INGEST_FIRESTORE_DATABASE
  value: {{ $v.firestore.database | quote }}
- name: INGEST_WHATSAPP_API_VERSION
  value: {{ $v.whatsapp.apiVersion | quote }}
- name: INGEST_DEFAULT_REGION
  value: {{ $v.ingest.defaultRegion | quote }}
- name: INGEST_TEMPLATE_LANGUAGE
  value: {{ $v.ingest.templateLanguage | quote }}
- name: INGEST_STATUS_TOPIC
  value: {{ include "wadispatch.topic" (dict "root" . "name" $v.pubsub.statusEventsTopic) | quote }}
# Refusals share the results topic with the sender's results.
- name: INGEST_RESULTS_TOPIC
  value: {{ include "wadispatch.topic" (dict "root" . "name" $v.pubsub.resultsTopic) | quote }}
{{- with $v.media.outboundBuckets }}
# Buckets media messages may name objects in (the sender reads them).
- name: INGEST_MEDIA_BUCKETS
  value: {{ join "," . | quote }}
{{- end }}
{{- $rc := $v.ingest.reconcile }}
# The reconciler; its query needs the index of firestore.indexes.json on
# (type, timeField), which templates/gcp/firestore.yaml deploys.
- name: INGEST_RECONCILE_INTERVAL
  value: {{ printf "%ds" (int $rc.intervalSeconds) | quote }}
- name: INGEST_RECONCILE_GRACE
  value: {{ printf "%ds" (int $rc.graceSeconds) | quote }}
- name: INGEST_RECONCILE_WINDOW
  value: {{ printf "%ds" (int $rc.windowSeconds) | quote }}
- name: INGEST_RECONCILE_TIME_FIELD
  value: {{ $rc.timeField | quote }}
{{- $w := $v.ingest.webhook }}
{{- $secret := dict "name" $w.secretName "app" $w.appSecretKey "verify" $w.verifyTokenKey }}
{{- if and (not $w.secretName) $v.devEmulators.enabled }}
{{- $secret = dict "name" (include "wadispatch.name" (dict "root" . "component" "dev-tokens")) "app" "webhook-app-secret" "verify" "webhook-verify-token" }}
{{- end }}
{{- if $secret.name }}
# Meta's webhook secrets, never in values or logs: from the Secret.
- name: INGEST_WEBHOOK_APP_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ $secret.name | quote }}
      key: {{ $secret.app | quote }}
- name: INGEST_WEBHOOK_VERIFY_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ $secret.name | quote }}
      key: {{ $secret.verify | quote }}
{{- end }}
{{- end -}}

{{- define "wadispatch.env.sender" -}}
{{- $v := .Values -}}
{{- $s := $v.sender -}}
- name: SENDER_SUBSCRIPTION
  value: {{ include "wadispatch.subscription" (dict "root" . "name" $v.pubsub.tasksSubscription) | quote }}
- name: SENDER_MAX_IN_FLIGHT
  value: {{ $s.maxInFlight | quote }}
# The headless Service's name resolves to every ready recorder pod, and the
# sender balances over them round robin; through the ClusterIP Service
# kube-proxy would pin its one connection to one pod.
- name: SENDER_RECORDER_ADDR
  value: {{ printf "dns:///%s-headless.%s.svc.cluster.local:%d" (include "wadispatch.name" (dict "root" . "component" "recorder")) .Release.Namespace (int $v.recorder.grpcPort) | quote }}
- name: SENDER_RECORDER_KEEPALIVE_TIME
  value: {{ printf "%ds" (int $s.recorderKeepaliveSeconds) | quote }}
- name: SENDER_RECORDER_KEEPALIVE_TIMEOUT
  value: {{ printf "%ds" (int $s.recorderKeepaliveTimeoutSeconds) | quote }}
# The recorder knows the sender by its Workload Identity service account's
# ID tokens, which the metadata server mints for this audience.
- name: SENDER_RECORDER_AUDIENCE
  value: {{ $v.recorder.auth.audience | quote }}
- name: SENDER_CLAIM_LEASE
  value: {{ printf "%ds" (int $s.claimLeaseSeconds) | quote }}
- name: SENDER_CLAIM_TIMEOUT
  value: {{ printf "%ds" (int $s.claimTimeoutSeconds) | quote }}
# Claims name the pod, so an operator can tell which pod held a send.
- name: SENDER_CLAIMANT
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: SENDER_WHATSAPP_BASE_URL
  value: {{ if $v.devEmulators.enabled }}{{ printf "http://%s:8090" (include "wadispatch.name" (dict "root" . "component" "whatsapp-simulator")) | quote }}{{ else }}{{ $v.whatsapp.baseURL | quote }}{{ end }}
- name: SENDER_WHATSAPP_TIMEOUT
  value: {{ printf "%ds" (int $v.whatsapp.timeoutSeconds) | quote }}
- name: SENDER_WHATSAPP_API_VERSION
  value: {{ $v.whatsapp.apiVersion | quote }}
- name: SENDER_RATE_PER_NUMBER
  value: {{ $s.ratePerNumber | quote }}
- name: SENDER_RATE_BURST
  value: {{ $s.rateBurst | quote }}
- name: SENDER_MAX_ATTEMPTS
  value: {{ $s.maxAttempts | quote }}
- name: SENDER_MAX_BACKOFF
  value: {{ printf "%ds" (int $s.maxBackoffSeconds) | quote }}
- name: SENDER_PUBLISH_TIMEOUT
  value: {{ printf "%ds" (int $s.publishTimeoutSeconds) | quote }}
- name: SENDER_SECRET_MANAGER
  value: {{ and $s.tokens.secretManager (not $v.devEmulators.enabled) | quote }}
# The leases' template registries are refreshed from Graph API this often
# (0: never); each lease's TemplateSnapshot goes to the status events topic.
- name: SENDER_TEMPLATE_SYNC_INTERVAL
  value: {{ printf "%dm" (int $s.templateSyncMinutes) | quote }}
# The status events topic, for the recorder: TemplateSnapshots, and
# MediaStored when media is fetched.
- name: SENDER_MEDIA_STORED_TOPIC
  value: {{ include "wadispatch.topic" (dict "root" . "name" $v.pubsub.statusEventsTopic) | quote }}
{{- with $v.media.bucket }}
# Drivers' media: MediaFetch from the recorder, MediaStored back to it on the
# status events topic.
- name: SENDER_MEDIA_BUCKET
  value: {{ . | quote }}
- name: SENDER_MEDIA_SUBSCRIPTION
  value: {{ include "wadispatch.subscription" (dict "root" $ "name" $v.pubsub.mediaSubscription) | quote }}
{{- end }}
{{- with $v.media.outboundBuckets }}
# Images, documents, video and audio sent from these buckets'
# objects (roles/storage.objectViewer on each: templates/gcp/iam.yaml).
- name: SENDER_MEDIA_OUT_BUCKETS
  value: {{ join "," . | quote }}
{{- end }}
{{- if or $s.tokens.localSecretName $v.devEmulators.enabled }}
- name: SENDER_TOKENS_FILE
  value: /etc/wadispatch/tokens/tokens.json
{{- end }}
{{- end -}}

{{- define "wadispatch.env.recorder" -}}
{{- $v := .Values -}}
{{- $r := $v.recorder -}}
- name: RECORDER_GRPC_ADDR
  value: {{ printf ":%d" (int $r.grpcPort) | quote }}
- name: RECORDER_KEEPALIVE_MIN_TIME
  value: {{ printf "%ds" (int $r.keepaliveMinTimeSeconds) | quote }}
- name: RECORDER_MAX_CONNECTION_AGE
  value: {{ printf "%ds" (int $r.maxConnectionAgeSeconds) | quote }}
- name: RECORDER_MAX_CONNECTION_AGE_GRACE
  value: {{ printf "%ds" (int $r.maxConnectionAgeGraceSeconds) | quote }}
- name: RECORDER_RESULTS_SUBSCRIPTION
  value: {{ include "wadispatch.subscription" (dict "root" . "name" $v.pubsub.resultsSubscription) | quote }}
- name: RECORDER_STATUS_SUBSCRIPTION
  value: {{ include "wadispatch.subscription" (dict "root" . "name" $v.pubsub.statusEventsSubscription) | quote }}
- name: RECORDER_TASKS_TOPIC
  value: {{ include "wadispatch.topic" (dict "root" . "name" $v.pubsub.tasksTopic) | quote }}
# Drivers' media to fetch, for the sender.
- name: RECORDER_MEDIA_TOPIC
  value: {{ include "wadispatch.topic" (dict "root" . "name" $v.pubsub.mediaTopic) | quote }}
- name: RECORDER_DEFAULT_DATABASE
  value: {{ $v.firestore.database | quote }}
- name: RECORDER_ANCILLARY_DATABASE
  value: {{ $v.firestore.ancillaryDatabase | quote }}
- name: RECORDER_METRICS_DOC_PATH
  value: {{ $r.metricsDocPath | quote }}
- name: RECORDER_CLAIM_LEASE
  value: {{ printf "%ds" (int $r.claimLeaseSeconds) | quote }}
- name: RECORDER_EXPIRED_CLAIM_POLICY
  value: {{ $r.expiredClaimPolicy | quote }}
- name: RECORDER_AUTH_AUDIENCE
  value: {{ $r.auth.audience | quote }}
- name: RECORDER_AUTH_ISSUERS
  value: {{ $r.auth.issuers | quote }}
# Only the sender's service account may claim; only the operators' may
# read and resend (docs/security.md).
- name: RECORDER_SENDER_IDENTITIES
  value: {{ include "wadispatch.gsaEmail" (dict "root" . "component" "sender") | quote }}
- name: RECORDER_OPERATOR_IDENTITIES
  value: {{ join "," $r.auth.operators | quote }}
- name: RECORDER_REFLECTION
  value: {{ $r.auth.reflection | quote }}
{{- end -}}
