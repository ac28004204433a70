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

{{/*
The model volume, mounted read-only by the servers (nothing when the image's model is
used); with model.fetch, the fetch-model initContainer writes it first.
*/}}
{{- define "tessera.modelVolume" -}}
{{- $m := .Values.model }}
{{- if eq $m.volume "pvc" }}
- name: model
  persistentVolumeClaim:
    claimName: {{ $m.pvc.claimName | default (printf "%s-model" (include "tessera.fullname" .)) }}
    {{- if not $m.fetch.enabled }}
    readOnly: true
    {{- end }}
{{- else if eq $m.volume "hostPath" }}
- name: model
  hostPath:
    path: {{ required "model.hostPath is required with model.volume=hostPath" $m.hostPath }}
    type: Directory
{{- else if eq $m.volume "emptyDir" }}
- name: model  # per pod: filled by the fetch-model initContainer
  emptyDir:
    sizeLimit: {{ $m.emptyDir.sizeLimit }}
{{- end }}
{{- end -}}

{{/*
The initContainer that fills the model volume with `tessera fetch-model` (every file
checked against its checksum; files already there and matching are kept, so a
restarted pod or a shared PVC fetches only what is missing).
*/}}
{{- define "tessera.fetchModelInitContainer" -}}
{{- $m := .Values.model }}
{{- if $m.fetch.enabled }}
{{- if not (has $m.volume (list "pvc" "emptyDir")) }}
{{- fail "model.fetch needs a volume it can write: model.volume=emptyDir or pvc" }}
{{- end }}
{{- if and (eq $m.volume "pvc") (eq $m.pvc.accessMode "ReadOnlyMany") }}
{{- fail "model.fetch writes the PVC: model.pvc.accessMode must not be ReadOnlyMany" }}
{{- end }}
{{- if not (hasPrefix (printf "%s/" (trimSuffix "/" $m.mountPath)) $m.dir) }}
{{- fail (printf "model.fetch writes model.dir, which must be under model.mountPath (%s)" $m.mountPath) }}
{{- end }}
initContainers:
  - name: fetch-model
    image: {{ include "tessera.image" . }}
    imagePullPolicy: {{ .Values.image.pullPolicy }}
    {{- include "tessera.securityContext" . | nindent 4 }}
    command: ["/opt/tessera/bin/tessera", "fetch-model"]
    args:
      - --source={{ ternary (printf "/model-source/%s" (trimPrefix "/" $m.fetch.ociPath)) (required "model.fetch.source is required with model.fetch.enabled" $m.fetch.source) (hasPrefix "oci://" $m.fetch.source) }}
      - --dest={{ $m.dir }}
      {{- with $m.fetch.hfEndpoint }}
      - --hf-endpoint={{ . }}
      {{- end }}
      {{- with $m.fetch.s3Endpoint }}
      - --s3-endpoint={{ . }}
      - --s3-region={{ $m.fetch.s3Region }}
      {{- end }}
      {{- with $m.fetch.include }}
      - --include={{ join "," . }}
      {{- end }}
      {{- if $m.fetch.caConfigMap }}
      - --ca-file=/etc/tessera/fetch-ca/ca.crt
      {{- end }}
    {{- with $m.fetch.secretName }}
    envFrom:  # HF_TOKEN, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN
      - secretRef:
          name: {{ . }}
    {{- end }}
    {{- with $m.fetch.resources }}
    resources:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    volumeMounts:
      - name: model
        mountPath: {{ $m.mountPath }}
      - name: tmp
        mountPath: /tmp
      {{- if hasPrefix "oci://" $m.fetch.source }}
      - name: model-source
        mountPath: /model-source
        readOnly: true
      {{- end }}
      {{- if $m.fetch.caConfigMap }}
      - name: fetch-ca
        mountPath: /etc/tessera/fetch-ca
        readOnly: true
      {{- end }}
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
A pod's volumes and mounts: the model's (first; on the servers, the fetch-model
initContainer's sources), /tmp, then the Secrets its component needs:
coordinator: client TLS, internal TLS, API keys; worker: internal TLS; bench: the
client plane's CA only (never the server's key). Called with (dict "root" $ "component" NAME).
*/}}
{{- define "tessera.volumes" -}}
{{- $v := .root.Values }}
{{- include "tessera.modelVolume" .root }}
{{- if and $v.model.fetch.enabled (has .component (list "coordinator" "worker")) }}
{{- if hasPrefix "oci://" $v.model.fetch.source }}
- name: model-source  # an image volume: the kubelet pulls the model image (Kubernetes >= 1.31, ImageVolume)
  image:
    reference: {{ trimPrefix "oci://" $v.model.fetch.source }}
    pullPolicy: IfNotPresent
{{- end }}
{{- if $v.model.fetch.caConfigMap }}
- name: fetch-ca
  configMap:
    name: {{ $v.model.fetch.caConfigMap }}
{{- end }}
{{- end }}
- name: tmp  # the root filesystem is read-only
  emptyDir:
    sizeLimit: 64Mi
{{- $cache := $v.workers.weightCache }}
{{- if and (eq .component "worker") (ne $cache.volume "none") }}
- name: weight-cache
  {{- if eq $cache.volume "hostPath" }}
  hostPath:
    path: {{ required "workers.weightCache.hostPath is required when workers.weightCache.volume=hostPath" $cache.hostPath }}
    type: Directory
  {{- else }}
  emptyDir:
    sizeLimit: {{ $cache.sizeLimit }}
  {{- end }}
{{- end }}
{{- if and $v.tls.clientSecret (eq .component "coordinator") }}
- name: tls-client
  secret:
    secretName: {{ $v.tls.clientSecret }}
    optional: false  # explicit: podman 4.3's kube play needs it
{{- else if and $v.tls.clientSecret (eq .component "bench") }}
- name: tls-client
  secret:
    secretName: {{ $v.tls.clientSecret }}
    optional: false
    items:
      - key: ca.crt
        path: ca.crt
{{- end }}
{{- if and $v.tls.internalSecret (has .component (list "coordinator" "worker")) }}
- name: tls-internal
  secret:
    secretName: {{ $v.tls.internalSecret }}
    optional: false
{{- end }}
{{- if and $v.apiKeys.secret (eq .component "coordinator") }}
- name: api-keys
  secret:
    secretName: {{ $v.apiKeys.secret }}
    optional: false
{{- end }}
{{- end -}}

{{- define "tessera.mounts" -}}
{{- $v := .root.Values }}
{{- include "tessera.modelMount" .root }}
- name: tmp
  mountPath: /tmp
{{- if and (eq .component "worker") (ne $v.workers.weightCache.volume "none") }}
- name: weight-cache
  mountPath: /var/cache/tessera/weights
{{- end }}
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
{{- if ne .Values.workers.weightCache.volume "none" }}
TESSERA_WEIGHT_CACHE: /var/cache/tessera/weights
{{- end }}
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
