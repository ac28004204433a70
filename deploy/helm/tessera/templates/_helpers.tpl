{{/* The release's base name: the release name, suffixed with the chart's unless it has it. */}}
{{- define "tessera.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "tessera.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
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
{{- else if ne .Values.model.volume "none" }}
{{- fail "model.volume must be none, pvc or hostPath" }}
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
A pod's volumes and mounts: the model's (first), then the Secrets its component needs:
coordinator: client TLS, internal TLS, API keys; worker: internal TLS; bench: the
client plane's CA only (never the server's key). Called with (dict "root" $ "component" NAME).
*/}}
{{- define "tessera.volumes" -}}
{{- $v := .root.Values }}
{{- include "tessera.modelVolume" .root }}
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
