{{/*
The release's base name: fullnameOverride, or the release name suffixed with the
chart's (nameOverride) unless it has it. At most 39 characters (cut names end in 8 of
their SHA-256, so two long releases never meet): the longest name made from it, a
group's StatefulSet "-workers-gNNN" with the 11 characters of its controller-revision
suffix, stays within Kubernetes' 63.
*/}}
{{- define "tessera.fullname" -}}
{{- $chart := .Values.nameOverride | default .Chart.Name -}}
{{- $name := .Values.fullnameOverride | default (ternary .Release.Name (printf "%s-%s" .Release.Name $chart) (contains $chart .Release.Name)) -}}
{{- if gt (len $name) 39 -}}
{{- printf "%s-%s" ($name | trunc 30 | trimSuffix "-") ($name | sha256sum | trunc 8) -}}
{{- else -}}
{{- $name -}}
{{- end -}}
{{- end -}}

{{- define "tessera.labels" -}}
app.kubernetes.io/name: {{ .Values.nameOverride | default .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* How the worker groups are laid out (workers.yaml). */}}
{{- define "tessera.workersKind" -}}
{{- $kind := .Values.workers.kind }}
{{- if .Values.podmanKubePlay -}}
Deployment
{{- else if ne $kind "auto" -}}
{{- if and .Values.autoscaling.enabled (ne $kind "LeaderWorkerSet") }}
{{- fail "autoscaling scales one LeaderWorkerSet: set workers.kind to auto or LeaderWorkerSet" }}
{{- end -}}
{{ $kind }}
{{- else if or (gt (mul .Values.workers.tp .Values.workers.ep) 1) .Values.autoscaling.enabled -}}
LeaderWorkerSet
{{- else -}}
StatefulSet
{{- end -}}
{{- end -}}

{{- define "tessera.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* Where workers reach the coordinator's internal API (registration, heartbeats, rendezvous). */}}
{{- define "tessera.coordinatorAddress" -}}
{{- .Values.coordinatorAddress | default (printf "%s-coordinator-internal:%v" (include "tessera.fullname" .) .Values.coordinator.internalPort) -}}
{{- end -}}

{{/* Where clients (the benchmark Job) reach the coordinator's client API. */}}
{{- define "tessera.coordinatorClientAddress" -}}
{{- printf "%s-coordinator:%v" (include "tessera.fullname" .) .Values.coordinator.port -}}
{{- end -}}

{{/* The model volume, mounted read-only on every pod (nothing when the image's model is used). */}}
{{- define "tessera.modelVolume" -}}
{{- if eq .Values.model.volume "pvc" }}
- name: model
  persistentVolumeClaim:
    claimName: {{ .Values.model.pvc.claimName | default (printf "%s-model" (include "tessera.fullname" .)) }}
    readOnly: true
{{- else if eq .Values.model.volume "hostPath" }}
- name: model
  hostPath:
    path: {{ required "model.hostPath is required with model.volume=hostPath" .Values.model.hostPath }}
    type: Directory
{{- end }}
{{- end -}}

{{- define "tessera.modelMount" -}}
{{- if ne .Values.model.volume "none" }}
- name: model
  mountPath: {{ .Values.model.mountPath }}
  readOnly: true
{{- end }}
{{- end -}}

{{/*
A pod's volumes and mounts: the model's (first), /tmp, then the Secrets its component needs:
coordinator: client TLS, internal TLS, API keys; worker: internal TLS; bench: the
client plane's CA only (never the server's key). Called with (dict "root" $ "component" NAME).
*/}}
{{- define "tessera.volumes" -}}
{{- $v := .root.Values }}
{{- include "tessera.modelVolume" .root }}
- name: tmp  # the root filesystem is read-only
  emptyDir:
    sizeLimit: 64Mi
{{- if and $v.tls.clientSecret (eq .component "coordinator") }}
- name: tls-client
  secret:
    secretName: {{ $v.tls.clientSecret }}
{{- else if and $v.tls.clientSecret (eq .component "bench") }}
- name: tls-client
  secret:
    secretName: {{ $v.tls.clientSecret }}
    items:
      - key: ca.crt
        path: ca.crt
{{- end }}
{{- if and $v.tls.internalSecret (has .component (list "coordinator" "worker")) }}
- name: tls-internal
  secret:
    secretName: {{ $v.tls.internalSecret }}
{{- end }}
{{- if and $v.apiKeys.secret (eq .component "coordinator") }}
- name: api-keys
  secret:
    secretName: {{ $v.apiKeys.secret }}
{{- end }}
{{- end -}}

{{- define "tessera.mounts" -}}
{{- $v := .root.Values }}
{{- include "tessera.modelMount" .root }}
- name: tmp
  mountPath: /tmp
{{- if and $v.tls.clientSecret (has .component (list "coordinator" "bench")) }}
- name: tls-client
  mountPath: /etc/tessera/tls/client
  readOnly: true
{{- end }}
{{- if and $v.tls.internalSecret (has .component (list "coordinator" "worker")) }}
- name: tls-internal
  mountPath: /etc/tessera/tls/internal
  readOnly: true
{{- end }}
{{- if and $v.apiKeys.secret (eq .component "coordinator") }}
- name: api-keys
  mountPath: /etc/tessera/keys
  readOnly: true
{{- end }}
{{- end -}}

{{/* A pod's and a container's security contexts (Pod Security "restricted" by default). */}}
{{- define "tessera.podSecurityContext" -}}
{{- with .Values.podSecurityContext -}}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end -}}
{{- end -}}

{{- define "tessera.securityContext" -}}
{{- with .Values.securityContext -}}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end -}}
{{- end -}}

{{/* The coordinator's flags (configmap.yaml); its pods carry this text's checksum. */}}
{{- define "tessera.coordinatorConfig" -}}
TESSERA_MODEL: {{ .Values.model.dir | quote }}
TESSERA_TP: {{ .Values.workers.tp | quote }}
TESSERA_EP: {{ .Values.workers.ep | quote }}
TESSERA_BLOCK_SIZE: {{ .Values.serving.blockSize | quote }}
TESSERA_KV_MEMORY_MB: {{ .Values.serving.kvMemoryMb | quote }}
TESSERA_KV_CACHE_DTYPE: {{ .Values.serving.kvCacheDtype | quote }}
TESSERA_EMBEDDING_POOLING: {{ .Values.serving.embeddingPooling | quote }}
TESSERA_TOOL_CALL_PARSER: {{ .Values.serving.toolCallParser | quote }}
TESSERA_CHAT_CONTEXT_OVERFLOW: {{ .Values.serving.chatContextOverflow | quote }}
TESSERA_KV_POLICY: {{ .Values.serving.kvPolicy | quote }}
TESSERA_SINK_TOKENS: {{ .Values.serving.sinkTokens | quote }}
TESSERA_WINDOW: {{ .Values.serving.window | quote }}
TESSERA_HOST_KV_BLOCKS: {{ .Values.serving.hostKvBlocks | quote }}
TESSERA_PREFIX_CACHING: {{ ternary "1" "0" .Values.serving.prefixCaching | quote }}
TESSERA_MAX_QUEUE: {{ .Values.serving.maxQueue | quote }}
TESSERA_HEARTBEAT_MS: {{ .Values.serving.heartbeatMs | quote }}
TESSERA_HEARTBEAT_TIMEOUT_MS: {{ .Values.serving.heartbeatTimeoutMs | quote }}
TESSERA_COLLECTIVE_TIMEOUT_MS: {{ .Values.serving.collectiveTimeoutMs | quote }}
{{- if .Values.tls.clientSecret }}
TESSERA_TLS_CERT: /etc/tessera/tls/client/tls.crt
TESSERA_TLS_KEY: /etc/tessera/tls/client/tls.key
{{- end }}
{{- include "tessera.internalTlsConfig" . }}
{{- if .Values.apiKeys.secret }}
TESSERA_API_KEY_FILE: /etc/tessera/keys/api-keys
TESSERA_ADMIN_KEY_FILE: /etc/tessera/keys/admin-keys
{{- end }}
{{- end -}}

{{/* The workers' flags (configmap.yaml); their pods carry this text's checksum. */}}
{{- define "tessera.workersConfig" -}}
TESSERA_COORDINATOR: {{ include "tessera.coordinatorAddress" . | quote }}
TESSERA_TP: {{ .Values.workers.tp | quote }}
TESSERA_DEVICE: {{ .Values.workers.device | quote }}
TESSERA_GPU_COLLECTIVES: {{ .Values.workers.gpuCollectives | quote }}
TESSERA_THREADS: {{ .Values.workers.threads | quote }}
{{- include "tessera.internalTlsConfig" . }}
{{- end -}}

{{/* Mutual TLS on the internal plane: both components' flags. */}}
{{- define "tessera.internalTlsConfig" -}}
{{- if .Values.tls.internalSecret }}
TESSERA_INTERNAL_TLS_CA: /etc/tessera/tls/internal/ca.crt
TESSERA_INTERNAL_TLS_CERT: /etc/tessera/tls/internal/tls.crt
TESSERA_INTERNAL_TLS_KEY: /etc/tessera/tls/internal/tls.key
TESSERA_INTERNAL_TLS_NAME: {{ .Values.tls.internalServerName | quote }}
{{- end }}
{{- end -}}
