{{- define "pod-identity.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "pod-identity.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "pod-identity.webhookName" -}}
{{- printf "%s-webhook" (include "pod-identity.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "pod-identity.agentName" -}}
{{- printf "%s-agent" (include "pod-identity.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "pod-identity.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "pod-identity.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "pod-identity.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pod-identity.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "pod-identity.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "pod-identity.sidecarImage" -}}
{{- $repo := default .Values.image.repository .Values.webhook.sidecar.repository -}}
{{- $tag := default (default .Chart.AppVersion .Values.image.tag) .Values.webhook.sidecar.tag -}}
{{- printf "%s:%s" $repo $tag -}}
{{- end -}}

{{- define "pod-identity.tlsSecretName" -}}
{{- if eq .Values.webhook.tls.mode "secret" -}}
{{- required "webhook.tls.existingSecret is required with webhook.tls.mode=secret" .Values.webhook.tls.existingSecret -}}
{{- else -}}
{{- printf "%s-tls" (include "pod-identity.webhookName" .) -}}
{{- end -}}
{{- end -}}

{{/* Hardened container security context shared by every container. */}}
{{- define "pod-identity.restrictedContainer" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
privileged: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/*
The chart-generated serving certificate: reused from the existing Secret on
upgrade (so the caBundle stays valid), generated on install. Returns a dict
as YAML: caCert, tlsCert, tlsKey (PEM).
*/}}
{{- define "pod-identity.generatedCerts" -}}
{{- $secretName := include "pod-identity.tlsSecretName" . -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace $secretName -}}
{{- if and $existing (index $existing "data") (index $existing.data "ca.crt") -}}
caCert: {{ index $existing.data "ca.crt" | b64dec | quote }}
tlsCert: {{ index $existing.data "tls.crt" | b64dec | quote }}
tlsKey: {{ index $existing.data "tls.key" | b64dec | quote }}
{{- else -}}
{{- $svc := include "pod-identity.webhookName" . -}}
{{- $ns := .Release.Namespace -}}
{{- $days := int .Values.webhook.tls.validityDays -}}
{{- $ca := genCA (printf "%s-ca" $svc) $days -}}
{{- $dns := list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) -}}
{{- $cert := genSignedCert (printf "%s.%s.svc" $svc $ns) nil $dns $days $ca -}}
caCert: {{ $ca.Cert | quote }}
tlsCert: {{ $cert.Cert | quote }}
tlsKey: {{ $cert.Key | quote }}
{{- end -}}
{{- end -}}

{{- define "pod-identity.brokerName" -}}
{{- printf "%s-broker" (include "pod-identity.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "pod-identity.brokerTLSSecretName" -}}
{{- if eq .Values.broker.tls.mode "secret" -}}
{{- required "broker.tls.existingSecret is required with broker.tls.mode=secret" .Values.broker.tls.existingSecret -}}
{{- else -}}
{{- printf "%s-tls" (include "pod-identity.brokerName" .) -}}
{{- end -}}
{{- end -}}

{{/* The broker's HTTPS URL inside the cluster (the agent's EKS Auth endpoint). */}}
{{- define "pod-identity.brokerURL" -}}
{{- printf "https://%s.%s.svc:443" (include "pod-identity.brokerName" .) .Release.Namespace -}}
{{- end -}}

{{/*
The broker's chart-generated serving certificate, reused from its Secret on
upgrade (agents trust its ca.crt), generated on install.
*/}}
{{- define "pod-identity.brokerCerts" -}}
{{- $secretName := include "pod-identity.brokerTLSSecretName" . -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace $secretName -}}
{{- if and $existing (index $existing "data") (index $existing.data "ca.crt") -}}
caCert: {{ index $existing.data "ca.crt" | b64dec | quote }}
tlsCert: {{ index $existing.data "tls.crt" | b64dec | quote }}
tlsKey: {{ index $existing.data "tls.key" | b64dec | quote }}
{{- else -}}
{{- $svc := include "pod-identity.brokerName" . -}}
{{- $ns := .Release.Namespace -}}
{{- $days := int .Values.broker.tls.validityDays -}}
{{- $ca := genCA (printf "%s-ca" $svc) $days -}}
{{- $dns := list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) -}}
{{- $cert := genSignedCert (printf "%s.%s.svc" $svc $ns) nil $dns $days $ca -}}
caCert: {{ $ca.Cert | quote }}
tlsCert: {{ $cert.Cert | quote }}
tlsKey: {{ $cert.Key | quote }}
{{- end -}}
{{- end -}}
