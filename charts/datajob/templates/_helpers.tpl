{{/*
Names, labels and small helpers shared by the templates.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "datajob.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The prefix of every object name: fullnameOverride, else the release name when it
already contains the chart name (release `datajob` -> `datajob`), else
`<release>-<chart>`. At most 40 characters, so that suffixed names stay short.
*/}}
{{- define "datajob.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "datajob.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels that select the operator pods. */}}
{{- define "datajob.selectorLabels" -}}
app.kubernetes.io/name: {{ include "datajob.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{/*
The standard labels of one object. Call with (dict "ctx" $ "component" "webhook").
*/}}
{{- define "datajob.labels" -}}
{{- $ctx := .ctx -}}
helm.sh/chart: {{ include "datajob.chart" $ctx }}
app.kubernetes.io/name: {{ include "datajob.name" $ctx }}
app.kubernetes.io/instance: {{ $ctx.Release.Name }}
app.kubernetes.io/version: {{ $ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $ctx.Release.Service }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "datajob.serviceAccountName" -}}
{{- default (include "datajob.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "datajob.webhookServiceName" -}}
{{- printf "%s-webhook" (include "datajob.fullname" .) -}}
{{- end -}}

{{- define "datajob.metricsServiceName" -}}
{{- printf "%s-metrics" (include "datajob.fullname" .) -}}
{{- end -}}

{{- define "datajob.webhookSecretName" -}}
{{- default (printf "%s-webhook-cert" (include "datajob.fullname" .)) .Values.webhook.secretName -}}
{{- end -}}

{{- define "datajob.certificateName" -}}
{{- printf "%s-webhook" (include "datajob.fullname" .) -}}
{{- end -}}

{{- define "datajob.issuerName" -}}
{{- printf "%s-selfsigned" (include "datajob.fullname" .) -}}
{{- end -}}

{{/* True (non-empty) when the chart renders the webhook Secret itself. */}}
{{- define "datajob.ownsSecret" -}}
{{- if and .Values.webhook.enabled (not .Values.webhook.certManager.enabled) -}}true{{- end -}}
{{- end -}}

{{/* repository:tag, or repository@digest. */}}
{{- define "datajob.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The webhook URL the apiserver calls when webhook.url is set (path added). */}}
{{- define "datajob.webhookURL" -}}
{{- printf "%s/validate-datajob" (trimSuffix "/" .Values.webhook.url) -}}
{{- end -}}

{{/*
Seconds in a duration of the operator's grammar (`1h30m` -> 5400). The schema has
checked the grammar already.
*/}}
{{- define "datajob.seconds" -}}
{{- $total := 0 -}}
{{- $units := dict "s" 1 "m" 60 "h" 3600 "d" 86400 -}}
{{- range regexFindAll "[0-9]+[smhd]" . -1 -}}
{{- $n := regexFind "[0-9]+" . | atoi -}}
{{- $total = add $total (mul $n (get $units (regexFind "[smhd]" .))) -}}
{{- end -}}
{{- $total -}}
{{- end -}}

{{/*
Checks that need more than one value; each failure names the values involved.
*/}}
{{- define "datajob.validate" -}}
{{- $le := .Values.leaderElection -}}
{{- if and (gt (int .Values.replicas) 1) (not $le.enabled) -}}
{{- fail (printf "replicas: %v needs leaderElection.enabled: true (without it every replica would act at once)" .Values.replicas) -}}
{{- end -}}
{{- if $le.enabled -}}
{{- $lease := include "datajob.seconds" $le.leaseDuration | atoi -}}
{{- $renew := include "datajob.seconds" $le.renewDeadline | atoi -}}
{{- $retry := include "datajob.seconds" $le.retryPeriod | atoi -}}
{{- if not (and (lt $retry $renew) (lt $renew $lease)) -}}
{{- fail (printf "leaderElection: retryPeriod (%s) < renewDeadline (%s) < leaseDuration (%s) must hold" $le.retryPeriod $le.renewDeadline $le.leaseDuration) -}}
{{- end -}}
{{- end -}}
{{- $cert := .Values.webhook.certificate -}}
{{- if le (include "datajob.seconds" $cert.validity | atoi) (include "datajob.seconds" $cert.renewBefore | atoi) -}}
{{- fail (printf "webhook.certificate.renewBefore (%s) must be shorter than webhook.certificate.validity (%s)" $cert.renewBefore $cert.validity) -}}
{{- end -}}
{{- with .Values.webhook.certManager.issuerRef -}}
{{- if not .name -}}
{{- fail "webhook.certManager.issuerRef needs a name (or leave it empty for the chart's selfSigned Issuer)" -}}
{{- end -}}
{{- end -}}
{{- $ms := .Values.metrics.secure -}}
{{- if $ms.enabled -}}
{{- range $name, $port := .Values.ports -}}
{{- if eq (int $port) (int $ms.port) -}}
{{- fail (printf "metrics.secure.port (%v) must differ from ports.%s (%v): the probes stay on the admin port, plain HTTP" $ms.port $name $port) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
