{{/*
Naming, labels and values initialisation shared by every kind.
Every template below takes a dict with at least "root" (the consumer chart's top context).
*/}}

{{/* Merge the library defaults (.Values.library, this chart's values.yaml) under the consumer's values. */}}
{{- define "library.values.init" -}}
{{- $defaults := deepCopy (.Values.library | default dict) -}}
{{- $user := omit (deepCopy .Values) "library" -}}
{{- $merged := mergeOverwrite $defaults $user -}}
{{- $_ := set . "Values" $merged -}}
{{- end -}}

{{- define "library.name" -}}
{{- .Values.nameOverride | default .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "library.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "library.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Name of an item keyed by "key": the fullname for "main", fullname-key otherwise. Args: root, key. */}}
{{- define "library.itemName" -}}
{{- $full := include "library.fullname" .root -}}
{{- if eq .key "main" -}}
{{- $full -}}
{{- else -}}
{{- printf "%s-%s" $full .key | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Selector labels of the pods of one controller. Args: root, component. */}}
{{- define "library.selectorLabels" -}}
app.kubernetes.io/name: {{ include "library.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Standard labels plus global and item labels. Args: root, component, labels (optional). */}}
{{- define "library.labels" -}}
{{- $root := .root -}}
{{- $labels := dict
  "helm.sh/chart" (printf "%s-%s" $root.Chart.Name $root.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-")
  "app.kubernetes.io/name" (include "library.name" $root)
  "app.kubernetes.io/instance" $root.Release.Name
  "app.kubernetes.io/component" .component
  "app.kubernetes.io/part-of" ($root.Values.global.partOf | default "homelab")
  "app.kubernetes.io/managed-by" $root.Release.Service
-}}
{{- with $root.Chart.AppVersion }}{{ $_ := set $labels "app.kubernetes.io/version" (toString .) }}{{ end -}}
{{- $labels = mergeOverwrite $labels (deepCopy ($root.Values.global.labels | default dict)) (deepCopy (.labels | default dict)) -}}
{{- toYaml $labels -}}
{{- end -}}

{{/* metadata: block body (name, labels, annotations). Args: root, name, component, item. */}}
{{- define "library.metadata" -}}
name: {{ .name }}
labels:
  {{- include "library.labels" (dict "root" .root "component" .component "labels" .item.labels) | nindent 2 }}
{{- $annotations := mergeOverwrite (deepCopy (.root.Values.global.annotations | default dict)) (deepCopy (.item.annotations | default dict)) }}
{{- with $annotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Fail unless the referenced controller exists. Args: root, path, controller. */}}
{{- define "library.requireController" -}}
{{- if not (hasKey .root.Values.controllers .controller) -}}
{{- fail (printf "%s: controller %q is not defined in controllers" .path .controller) -}}
{{- end -}}
{{- end -}}

{{/* true if the item is enabled (enabled defaults to true). */}}
{{- define "library.enabled" -}}
{{- if or (not (kindIs "map" .)) (not (hasKey . "enabled")) .enabled -}}true{{- end -}}
{{- end -}}
