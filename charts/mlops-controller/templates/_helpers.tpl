{{/* The release's full name, 63 characters at most (a DNS label). */}}
{{- define "mlops-controller.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "mlops-controller.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "mlops-controller.labels" -}}
{{ include "mlops-controller.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mlops-platform
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "mlops-controller.serviceAccountName" -}}
{{- default (include "mlops-controller.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{/* Where the controller's namespaced permissions apply: one namespace or the cluster. */}}
{{- define "mlops-controller.watchNamespace" -}}
{{- .Values.watchNamespace -}}
{{- end -}}
