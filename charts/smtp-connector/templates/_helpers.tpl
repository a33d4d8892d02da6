{{/* The operator's image reference. */}}
{{- define "smtp-connector.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* The relay's image reference: its own value, or the operator's image. */}}
{{- define "smtp-connector.relayImage" -}}
{{ .Values.relay.image | default (include "smtp-connector.image" .) }}
{{- end }}

{{- define "smtp-connector.labels" -}}
app.kubernetes.io/name: smtp-connector
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end }}

{{- define "smtp-connector.selector" -}}
app.kubernetes.io/name: smtp-connector
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "smtp-connector.leaderElect" -}}
{{- if or .Values.leaderElection.enabled (gt (int .Values.replicaCount) 1) }}true{{ end }}
{{- end }}
