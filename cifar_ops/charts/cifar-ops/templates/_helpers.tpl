{{/*
Expand the name of the chart.
*/}}
{{- define "cifar-ops.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Create a default fully qualified app name.
We truncate at 63 chars because some Kubernetes name fields are limited to this (by the DNS naming spec).
If release name contains chart name it will be used as a full name.
*/}}
{{- define "cifar-ops.fullname" -}}
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
Create chart name and version as used by the chart label.
*/}}
{{- define "cifar-ops.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels
*/}}
{{- define "cifar-ops.labels" -}}
helm.sh/chart: {{ include "cifar-ops.chart" . | quote }}
{{ include "cifar-ops.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service | quote }}
{{- end }}

{{/*
Selector labels
*/}}
{{- define "cifar-ops.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cifar-ops.name" . | quote }}
app.kubernetes.io/instance: {{ .Release.Name | quote }}
{{- end }}

{{/*
Labels of a training Job, its pods and its ConfigMap: the common ones, the component, the
experiment and (for a single run) the run id. `cifar-ops status/logs/cancel` select by these.
*/}}
{{- define "cifar-ops.runLabels" -}}
{{ include "cifar-ops.labels" . }}
app.kubernetes.io/component: training
cifar-ops/experiment: {{ .Values.run.experiment | quote }}
{{- if and (not .Values.run.search) (eq (len .Values.run.trials) 1) }}
cifar-ops/run-id: {{ (index .Values.run.trials 0).runId | quote }}
{{- end }}
{{- end }}

{{/*
Name of this submission's Job and ConfigMap: a new submission makes a new Job (a Job's pod
template cannot change), so `helm upgrade` replaces the old Job instead of patching it.
*/}}
{{- define "cifar-ops.jobName" -}}
{{- printf "%s-%s" (include "cifar-ops.fullname" . | trunc 43 | trimSuffix "-") (.Values.run.submission | trunc 8) }}
{{- end }}

{{/*
Create the name of the service account to use
*/}}
{{- define "cifar-ops.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "cifar-ops.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The image reference: a digest pins it, else the tag (default: the chart's appVersion).
*/}}
{{- define "cifar-ops.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The warehouse URL from the existing Secret: never a value in values or manifests.
*/}}
{{- define "cifar-ops.databaseEnv" -}}
- name: CIFAR_OPS_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.database.existingSecret | quote }}
      key: {{ .Values.database.secretKey | quote }}
{{- end }}

{{/*
Name of the checkpoint claim: an existing one, or the release's own.
*/}}
{{- define "cifar-ops.checkpointClaim" -}}
{{- default (printf "%s-checkpoints" (include "cifar-ops.fullname" .)) .Values.storage.checkpoints.existingClaim }}
{{- end }}

{{/*
Whether runs go to an object store (artifacts.uri): then pods write to an emptyDir scratch volume
and no checkpoint claim is made.
*/}}
{{- define "cifar-ops.objectStore" -}}
{{- if and .Values.artifacts .Values.artifacts.uri }}true{{- end }}
{{- end }}

{{/*
Refuse a search whose parallel pods would share a ReadWriteOnce checkpoint volume: pods on other
nodes would hang in ContainerCreating on a Multi-Attach error.
*/}}
{{- define "cifar-ops.requireParallelSafeStorage" -}}
{{- $checkpoints := .Values.storage.checkpoints }}
{{- $parallel := gt (int (.Values.run.parallelism | default 1)) 1 }}
{{- $shared := or (include "cifar-ops.objectStore" .) $checkpoints.existingClaim (has "ReadWriteMany" $checkpoints.accessModes) }}
{{- if and .Values.run.search $parallel (not $shared) }}
{{- fail "a search with parallelism > 1 cannot share a ReadWriteOnce checkpoint volume (pods on other nodes hang on Multi-Attach): set artifacts.uri to an object store, or give storage.checkpoints a ReadWriteMany claim (accessModes: [ReadWriteMany] with a storageClassName that supports it, or an existingClaim)" }}
{{- end }}
{{- end }}

{{- define "cifar-ops.datasetClaim" -}}
{{- default (printf "%s-dataset-cache" (include "cifar-ops.fullname" .)) .Values.storage.datasetCache.existingClaim }}
{{- end }}

{{/*
Whether this release trains something (submit filled `run`).
*/}}
{{- define "cifar-ops.hasRun" -}}
{{- if and .Values.run .Values.run.trials }}true{{- end }}
{{- end }}

{{/*
Whether this release scores images (`cifar-ops submit --score` filled `score`).
*/}}
{{- define "cifar-ops.hasScore" -}}
{{- if and .Values.score .Values.score.spec }}true{{- end }}
{{- end }}

{{/*
Name of a scoring's Job and ConfigMap.
*/}}
{{- define "cifar-ops.scoreJobName" -}}
{{- printf "%s-score-%s" (include "cifar-ops.fullname" . | trunc 43 | trimSuffix "-") (.Values.score.submission | trunc 8) }}
{{- end }}

{{/*
Labels of a scoring Job, its pod and its ConfigMap.
*/}}
{{- define "cifar-ops.scoreLabels" -}}
{{ include "cifar-ops.labels" . }}
app.kubernetes.io/component: scoring
cifar-ops/scoring: {{ .Values.score.name | quote }}
{{- end }}
