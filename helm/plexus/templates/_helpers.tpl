{{/* Labels on every object of the release. */}}
{{- define "plexus.labels" -}}
app.kubernetes.io/part-of: plexus
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{/* The tag of every image: image.tag, or the chart's appVersion. */}}
{{- define "plexus.tag" -}}
{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "plexus.operatorImage" -}}
{{ .Values.operator.image.repository }}:{{ include "plexus.tag" . }}
{{- end }}

{{- define "plexus.webhookImage" -}}
{{ .Values.webhook.image.repository }}:{{ include "plexus.tag" . }}
{{- end }}

{{- define "plexus.proxyImage" -}}
{{ .Values.proxy.image.repository }}:{{ include "plexus.tag" . }}
{{- end }}

{{/* PodDisruptionBudget's API: policy/v1 from Kubernetes 1.21. */}}
{{- define "plexus.pdbApiVersion" -}}
{{- if semverCompare ">=1.21.0-0" .Capabilities.KubeVersion.Version -}}
policy/v1
{{- else -}}
policy/v1beta1
{{- end -}}
{{- end }}

{{/* The hardened securityContext of the control plane's containers. */}}
{{- define "plexus.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "plexus.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
A control-plane Deployment, its ServiceAccount and PodDisruptionBudget.
Takes a dict: root (the top context), name, component, values (the
component's values), image, args (list), port (admin/serving port), scheme
(of the probes).
*/}}
{{- define "plexus.controlPlane" -}}
{{- $root := .root -}}
{{- $selector := dict "app.kubernetes.io/name" .name "app.kubernetes.io/instance" $root.Release.Name -}}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ .name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "plexus.labels" $root | nindent 4 }}
    app.kubernetes.io/name: {{ .name }}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "plexus.labels" $root | nindent 4 }}
    app.kubernetes.io/name: {{ .name }}
    app.kubernetes.io/component: {{ .component }}
spec:
  replicas: {{ .values.replicas }}
  selector:
    matchLabels:
      {{- toYaml $selector | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "plexus.labels" $root | nindent 8 }}
        app.kubernetes.io/name: {{ .name }}
        app.kubernetes.io/component: {{ .component }}
    spec:
      serviceAccountName: {{ .name }}
      securityContext:
        {{- include "plexus.podSecurityContext" $root | nindent 8 }}
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      containers:
        - name: {{ .component }}
          image: {{ .image }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          args:
            {{- toYaml .args | nindent 12 }}
          env:
            - name: POD_NAME
              valueFrom:
                fieldRef:
                  fieldPath: metadata.name
            - name: RUST_LOG
              value: {{ .values.logLevel | quote }}
          ports:
            - name: {{ .portName }}
              containerPort: {{ .port }}
              protocol: TCP
          livenessProbe:
            httpGet:
              path: /healthz
              port: {{ .portName }}
              scheme: {{ .scheme }}
            periodSeconds: 10
          readinessProbe:
            httpGet:
              path: /readyz
              port: {{ .portName }}
              scheme: {{ .scheme }}
            periodSeconds: 2
          resources:
            {{- toYaml .values.resources | nindent 12 }}
          securityContext:
            {{- include "plexus.containerSecurityContext" $root | nindent 12 }}
      terminationGracePeriodSeconds: 15
      {{- with .values.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .values.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      affinity:
        {{- if .values.affinity }}
        {{- toYaml .values.affinity | nindent 8 }}
        {{- else }}
        # Replicas on different nodes when there are several.
        podAntiAffinity:
          preferredDuringSchedulingIgnoredDuringExecution:
            - weight: 100
              podAffinityTerm:
                topologyKey: kubernetes.io/hostname
                labelSelector:
                  matchLabels:
                    {{- toYaml $selector | nindent 20 }}
        {{- end }}
---
apiVersion: {{ include "plexus.pdbApiVersion" $root }}
kind: PodDisruptionBudget
metadata:
  name: {{ .name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "plexus.labels" $root | nindent 4 }}
    app.kubernetes.io/name: {{ .name }}
spec:
  minAvailable: {{ .values.podDisruptionBudget.minAvailable }}
  selector:
    matchLabels:
      {{- toYaml $selector | nindent 6 }}
{{- end }}

{{/* What both webhooks of the MutatingWebhookConfiguration share. */}}
{{- define "plexus.webhookCommon" -}}
admissionReviewVersions: [v1]
clientConfig:
  service:
    name: plexus-webhook
    namespace: {{ .Release.Namespace }}
    path: /mutate
    port: 443
rules:
  - operations: [CREATE]
    apiGroups: [""]
    apiVersions: [v1]
    resources: [pods]
    scope: Namespaced
sideEffects: None
failurePolicy: {{ .Values.webhook.failurePolicy }}
timeoutSeconds: {{ .Values.webhook.timeoutSeconds }}
reinvocationPolicy: IfNeeded
{{- end }}
