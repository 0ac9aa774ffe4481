{{/*
The chart name, or nameOverride.
*/}}
{{- define "statefulwebapp-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The resource-name prefix: fullnameOverride, else the release name when it already contains the
chart name, else "<release>-<chart>". Truncated to 63 characters (the DNS label limit); the
longest suffix added to it ("-namespaced") still fits a name of up to 253 characters.
*/}}
{{- define "statefulwebapp-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
"<chart>-<version>" for the helm.sh/chart label.
*/}}
{{- define "statefulwebapp-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every object of the chart but the test hooks.
*/}}
{{- define "statefulwebapp-operator.labels" -}}
{{ include "statefulwebapp-operator.selectorLabels" . }}
app.kubernetes.io/component: operator
{{ include "statefulwebapp-operator.commonLabels" . }}
{{- end }}

{{/*
Labels of the metrics Service (and its ServiceMonitor): the ServiceMonitor selects by them.
*/}}
{{- define "statefulwebapp-operator.metricsLabels" -}}
{{ include "statefulwebapp-operator.selectorLabels" . }}
app.kubernetes.io/component: metrics
{{ include "statefulwebapp-operator.commonLabels" . }}
{{- end }}

{{/*
The metrics Service's name, a DNS label (63 characters): also the `job` label of its targets
when the chart's ServiceMonitor scrapes it (the Prometheus Operator names the job after the
Service), which the PrometheusRule's `up` selector matches.
*/}}
{{- define "statefulwebapp-operator.metricsServiceName" -}}
{{- include "statefulwebapp-operator.fullname" . | trunc 55 | trimSuffix "-" }}-metrics
{{- end }}

{{/*
Labels of the `helm test` hooks: another app.kubernetes.io/name, so the operator's selector
never matches the test pod.
*/}}
{{- define "statefulwebapp-operator.testLabels" -}}
app.kubernetes.io/name: {{ include "statefulwebapp-operator.name" . | trunc 58 | trimSuffix "-" }}-test
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: test
{{ include "statefulwebapp-operator.commonLabels" . }}
{{- end }}

{{- define "statefulwebapp-operator.commonLabels" -}}
helm.sh/chart: {{ include "statefulwebapp-operator.chart" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: statefulwebapp-operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
The Deployment's selector: stable across upgrades, so never add a changing label here.
*/}}
{{- define "statefulwebapp-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "statefulwebapp-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The operator's ServiceAccount name.
*/}}
{{- define "statefulwebapp-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "statefulwebapp-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The image reference; the tag defaults to the chart's appVersion.
*/}}
{{- define "statefulwebapp-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/*
Pod and container security contexts meeting the Pod Security "restricted" profile; shared by the
operator and the test Job.
*/}}
{{- define "statefulwebapp-operator.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "statefulwebapp-operator.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop:
    - ALL
{{- end }}
