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
