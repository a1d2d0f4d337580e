{{/* The objects' base name: the release name, or release-chart when it does not contain the chart's name. */}}
{{- define "imagegate.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* What the pods are selected by (as deploy/base's). */}}
{{- define "imagegate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "imagegate.fullname" . }}
{{- end -}}

{{/* Every object's labels: deploy/base's two, and Helm's bookkeeping. */}}
{{- define "imagegate.labels" -}}
{{ include "imagegate.selectorLabels" . }}
app.kubernetes.io/part-of: imagegate
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "imagegate.serviceHost" -}}
{{ include "imagegate.fullname" . }}.{{ .Release.Namespace }}.svc
{{- end -}}
