{{/*
The entry point: a consumer chart's templates/all.yaml is the single line
  {{ include "library.all" . }}
It renders every enabled item of every map, in a stable order, separated by "---".
*/}}
{{- define "library.all" -}}
{{- include "library.values.init" . -}}
{{- $root := . -}}
{{- $sections := list
  (list "serviceAccount" "library.serviceAccount")
  (list "rbac" "library.rbac")
  (list "configMaps" "library.configMap")
  (list "service" "library.service")
  (list "controllers" "library.controller")
  (list "ingress" "library.ingress")
  (list "networkPolicy" "library.networkPolicy")
  (list "podDisruptionBudget" "library.podDisruptionBudget")
  (list "serviceMonitor" "library.serviceMonitor")
  (list "prometheusRule" "library.prometheusRule")
  (list "rawResources" "library.rawResource")
-}}
{{- range $section := $sections }}
{{- $values := get $root.Values (index $section 0) | default dict }}
{{- range $key := keys $values | sortAlpha }}
{{- $item := get $values $key | default dict }}
{{- if not (kindIs "map" $item) }}
{{- fail (printf "%s.%s: must be a map" (index $section 0) $key) }}
{{- end }}
{{- if include "library.enabled" $item }}
---
{{ include (index $section 1) (dict "root" $root "key" $key "item" $item) }}
{{- end }}
{{- end }}
{{- end }}
{{- range $key := keys ($root.Values.persistence | default dict) | sortAlpha }}
{{- $item := get $root.Values.persistence $key | default dict }}
{{- if and (include "library.enabled" $item) (eq ($item.type | default "emptyDir") "persistentVolumeClaim") (not $item.existingClaim) }}
---
{{ include "library.pvc" (dict "root" $root "key" $key "item" $item) }}
{{- end }}
{{- end }}
{{- end -}}
