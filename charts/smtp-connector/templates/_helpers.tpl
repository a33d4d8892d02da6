{{/*
The prefix of every object's name: fullnameOverride, or the release name (not
release-chart: the objects of an existing release keep their names). Two
releases differ in it, so their ServiceAccounts, ClusterRoles and Deployments
do not collide.
*/}}
{{- define "smtp-connector.fullname" -}}
{{- .Values.fullnameOverride | default .Release.Name | trunc 52 | trimSuffix "-" }}
{{- end }}

{{/* The operator's ServiceAccount: serviceAccount.name, or the full name. */}}
{{- define "smtp-connector.serviceAccountName" -}}
{{- .Values.serviceAccount.name | default (include "smtp-connector.fullname" .) }}
{{- end }}

{{/*
An image reference with global.imageRegistry in front: it replaces the
reference's own registry (the first path element when it has a dot or a
port, or is localhost, as container runtimes read it), or is put before a
reference that names none. Arguments: (dict "ref" REF "root" $).
*/}}
{{- define "smtp-connector.withRegistry" -}}
{{- $registry := "" }}
{{- with .root.Values.global }}{{ $registry = .imageRegistry | default "" }}{{ end }}
{{- if $registry }}
{{- $parts := splitList "/" .ref }}
{{- $first := first $parts }}
{{- if and (gt (len $parts) 1) (or (contains "." $first) (contains ":" $first) (eq $first "localhost")) }}
{{- printf "%s/%s" (trimSuffix "/" $registry) (rest $parts | join "/") }}
{{- else }}
{{- printf "%s/%s" (trimSuffix "/" $registry) .ref }}
{{- end }}
{{- else }}
{{- .ref }}
{{- end }}
{{- end }}

{{/* The operator's image reference: by digest when one is given, else by tag (the chart's appVersion by default). */}}
{{- define "smtp-connector.image" -}}
{{- $ref := "" }}
{{- if .Values.image.digest }}
{{- $ref = printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- $ref = printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- include "smtp-connector.withRegistry" (dict "ref" $ref "root" .) }}
{{- end }}

{{/* The relay's image reference: its own value (global.imageRegistry applied too), or the operator's image. */}}
{{- define "smtp-connector.relayImage" -}}
{{- if .Values.relay.image }}
{{- include "smtp-connector.withRegistry" (dict "ref" .Values.relay.image "root" .) }}
{{- else }}
{{- include "smtp-connector.image" . }}
{{- end }}
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
