{{/* One controller (Deployment, DaemonSet, StatefulSet, CronJob or Job). Args: root, key, item. */}}
{{- define "library.controller" -}}
{{- $root := .root -}}
{{- $key := .key -}}
{{- $c := .item -}}
{{- $path := printf "controllers.%s" $key -}}
{{- if not $c.type -}}
{{- fail (printf "%s: type is required (one of deployment, daemonset, statefulset, cronjob, job)" $path) -}}
{{- end -}}
{{- $type := lower $c.type -}}
{{- $kinds := dict "deployment" "Deployment" "daemonset" "DaemonSet" "statefulset" "StatefulSet" "cronjob" "CronJob" "job" "Job" -}}
{{- if not (hasKey $kinds $type) -}}
{{- fail (printf "%s: unknown type %q (expected one of deployment, daemonset, statefulset, cronjob, job)" $path $c.type) -}}
{{- end -}}
{{- $longRunning := has $type (list "deployment" "daemonset" "statefulset") -}}
{{- $name := include "library.itemName" (dict "root" $root "key" $key) -}}
{{- $pod := include "library.podTemplate" (dict "root" $root "ckey" $key "controller" $c "longRunning" $longRunning) -}}
apiVersion: {{ has $type (list "cronjob" "job") | ternary "batch/v1" "apps/v1" }}
kind: {{ get $kinds $type }}
metadata:
  {{- include "library.metadata" (dict "root" $root "name" $name "component" $key "item" $c) | nindent 2 }}
spec:
  {{- if eq $type "cronjob" }}
  {{- $cj := $c.cronjob | default dict }}
  {{- if not $cj.schedule }}
  {{- fail (printf "%s: cronjob.schedule is required for type cronjob" $path) }}
  {{- end }}
  schedule: {{ $cj.schedule | quote }}
  {{- with $cj.timeZone }}
  timeZone: {{ . | quote }}
  {{- end }}
  concurrencyPolicy: {{ $cj.concurrencyPolicy | default "Forbid" }}
  successfulJobsHistoryLimit: {{ hasKey $cj "successfulJobsHistoryLimit" | ternary $cj.successfulJobsHistoryLimit 1 }}
  failedJobsHistoryLimit: {{ hasKey $cj "failedJobsHistoryLimit" | ternary $cj.failedJobsHistoryLimit 1 }}
  {{- with $cj.startingDeadlineSeconds }}
  startingDeadlineSeconds: {{ . }}
  {{- end }}
  suspend: {{ $cj.suspend | default false }}
  jobTemplate:
    spec:
      {{- include "library.jobSpec" (dict "job" $c.job "pod" $pod) | nindent 6 }}
  {{- else if eq $type "job" }}
  {{- include "library.jobSpec" (dict "job" $c.job "pod" $pod) | nindent 2 }}
  {{- else }}
  {{- if ne $type "daemonset" }}
  replicas: {{ hasKey $c "replicas" | ternary $c.replicas 1 }}
  {{- end }}
  revisionHistoryLimit: {{ hasKey $c "revisionHistoryLimit" | ternary $c.revisionHistoryLimit 3 }}
  selector:
    matchLabels:
      {{- include "library.selectorLabels" (dict "root" $root "component" $key) | nindent 6 }}
  {{- if and (eq $type "deployment") $c.strategy }}
  strategy:
    {{- toYaml $c.strategy | nindent 4 }}
  {{- end }}
  {{- if and (eq $type "daemonset") $c.updateStrategy }}
  updateStrategy:
    {{- toYaml $c.updateStrategy | nindent 4 }}
  {{- end }}
  {{- if eq $type "statefulset" }}
  {{- $sts := $c.statefulset | default dict }}
  serviceName: {{ $sts.serviceName | default $name }}
  podManagementPolicy: {{ $sts.podManagementPolicy | default "OrderedReady" }}
  {{- with $c.updateStrategy }}
  updateStrategy:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $sts.volumeClaimTemplates }}
  volumeClaimTemplates:
    {{- range $vkey := keys . | sortAlpha }}
    {{- $v := get $sts.volumeClaimTemplates $vkey }}
    {{- if not $v.mountPath }}
    {{- fail (printf "%s.statefulset.volumeClaimTemplates.%s: mountPath is required" $path $vkey) }}
    {{- end }}
    - metadata:
        name: {{ $vkey }}
      spec:
        accessModes: [{{ $v.accessMode | default "ReadWriteOnce" }}]
        {{- with $v.storageClass }}
        storageClassName: {{ . }}
        {{- end }}
        resources:
          requests:
            storage: {{ $v.size | default "1Gi" }}
    {{- end }}
  {{- end }}
  {{- end }}
  template:
    {{- $pod | nindent 4 }}
  {{- end }}
{{- end -}}

{{/* A Job spec (also the CronJob's jobTemplate.spec). Args: job, pod. */}}
{{- define "library.jobSpec" -}}
{{- $job := .job | default dict -}}
backoffLimit: {{ hasKey $job "backoffLimit" | ternary $job.backoffLimit 3 }}
{{- range $field := list "ttlSecondsAfterFinished" "activeDeadlineSeconds" "completions" "parallelism" }}
{{- if hasKey $job $field }}
{{ $field }}: {{ get $job $field }}
{{- end }}
{{- end }}
template:
  {{- .pod | nindent 2 }}
{{- end -}}
