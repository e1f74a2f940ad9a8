{{/* Chart name, truncated to 63 characters. */}}
{{- define "tenancy-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name of the release's objects: the release name, or release-chart when the release
name does not already contain the chart name. */}}
{{- define "tenancy-operator.fullname" -}}
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

{{- define "tenancy-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object the chart renders. */}}
{{- define "tenancy-operator.labels" -}}
helm.sh/chart: {{ include "tenancy-operator.chart" . }}
{{ include "tenancy-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "tenancy-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tenancy-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "tenancy-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tenancy-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "tenancy-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Name of both webhook configurations (Validating and Mutating share it). */}}
{{- define "tenancy-operator.webhookConfigName" -}}
{{- include "tenancy-operator.fullname" . }}
{{- end }}

{{/* Names the webhook Service answers to (the generated certificate's subject names). */}}
{{- define "tenancy-operator.webhookHosts" -}}
{{- $svc := include "tenancy-operator.fullname" . }}
{{- printf "%s.%s.svc,%s.%s.svc.cluster.local,%s" $svc .Release.Namespace $svc .Release.Namespace $svc }}
{{- end }}

{{/* The APIService of the aggregated read API (views.tenancy.dev): <version>.<group>, the only
name the API server accepts for it, so one per cluster. */}}
{{- define "tenancy-operator.apiServiceName" -}}
v1alpha1.views.tenancy.dev
{{- end }}

{{- define "tenancy-operator.leaseName" -}}
{{- default (include "tenancy-operator.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{/* Secret holding the webhook serving certificate: issued by cert-manager, or written by the
operator when it generates its own CA (so every replica serves the same certificate). */}}
{{- define "tenancy-operator.webhookSecretName" -}}
{{- printf "%s-webhook-tls" (include "tenancy-operator.fullname" .) }}
{{- end }}

{{- define "tenancy-operator.certificateName" -}}
{{- printf "%s-webhook" (include "tenancy-operator.fullname" .) }}
{{- end }}

{{/* Where the webhook certificate lives in the container. */}}
{{- define "tenancy-operator.certDir" -}}
/var/run/tenancy-operator/webhook-certs
{{- end }}

{{/* Labels of the chart's role ClusterRoles: the same as desired::access::role_cluster_roles
(app.kubernetes.io/managed-by=tenancy-operator), plus the release's labels. */}}
{{- define "tenancy-operator.roleLabels" -}}
helm.sh/chart: {{ include "tenancy-operator.chart" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: tenancy-operator
{{- end }}

{{/* tenancy.dev/aggregate-to-<part of the role name after the last ':'> (aggregate_label in
src/desired/access.rs). */}}
{{- define "tenancy-operator.aggregateLabel" -}}
{{- printf "tenancy.dev/aggregate-to-%s" (regexReplaceAll "^.*:" . "") }}
{{- end }}

{{/* Counted kinds (resource.group) grouped by API group, as a YAML map group -> [resources]. */}}
{{- define "tenancy-operator.countedByGroup" -}}
{{- $groups := dict }}
{{- range (concat .Values.countedKinds .Values.extraCountedKinds | uniq) }}
{{- $parts := splitn "." 2 . }}
{{- $resource := $parts._0 }}
{{- $group := default "" $parts._1 }}
{{- $_ := set $groups $group (append (get $groups $group | default list) $resource | uniq) }}
{{- end }}
{{- toYaml $groups }}
{{- end }}

{{/* The price list as TENANCY_PRICES reads it: cpu=20,memory=4.5 */}}
{{- define "tenancy-operator.prices" -}}
{{- $prices := list -}}
{{- range $name, $price := .Values.pricing.monthly -}}
{{- $prices = append $prices (printf "%s=%s" $name $price) -}}
{{- end -}}
{{- join "," $prices -}}
{{- end -}}
