{{/* Service. Args: root, key, item. */}}
{{- define "library.service" -}}
{{- $root := .root -}}
{{- $s := .item -}}
{{- $path := printf "service.%s" .key -}}
{{- $controller := $s.controller | default "main" -}}
{{- include "library.requireController" (dict "root" $root "path" $path "controller" $controller) -}}
{{- $ports := list -}}
{{- range $name := keys ($s.ports | default dict) | sortAlpha -}}
{{- $p := get $s.ports $name -}}
{{- if include "library.enabled" $p -}}
{{- if not (and (kindIs "map" $p) $p.port) -}}
{{- fail (printf "%s.ports.%s: port (a number) is required" $path $name) -}}
{{- end -}}
{{- $port := dict "name" $name "port" (int $p.port) "protocol" ($p.protocol | default "TCP") "targetPort" ($p.targetPort | default $name) -}}
{{- with $p.nodePort }}{{ $_ := set $port "nodePort" (int .) }}{{ end -}}
{{- with $p.appProtocol }}{{ $_ := set $port "appProtocol" . }}{{ end -}}
{{- $ports = append $ports $port -}}
{{- end -}}
{{- end -}}
{{- if not $ports -}}
{{- fail (printf "%s: at least one port is required in ports" $path) -}}
{{- end -}}
{{- $labels := mergeOverwrite (dict "app.kubernetes.io/service" .key) (deepCopy ($s.labels | default dict)) -}}
apiVersion: v1
kind: Service
metadata:
  {{- include "library.metadata" (dict "root" $root "name" (include "library.itemName" .) "component" $controller "item" (merge (dict "labels" $labels) $s)) | nindent 2 }}
spec:
  type: {{ $s.type | default "ClusterIP" }}
  {{- with $s.clusterIP }}
  clusterIP: {{ . }}
  {{- end }}
  {{- with $s.externalTrafficPolicy }}
  externalTrafficPolicy: {{ . }}
  {{- end }}
  {{- with $s.loadBalancerClass }}
  loadBalancerClass: {{ . }}
  {{- end }}
  selector:
    {{- include "library.selectorLabels" (dict "root" $root "component" $controller) | nindent 4 }}
  ports:
    {{- toYaml $ports | nindent 4 }}
{{- end -}}

{{/* ServiceAccount. Args: root, key, item. */}}
{{- define "library.serviceAccount" -}}
apiVersion: v1
kind: ServiceAccount
metadata:
  {{- include "library.metadata" (dict "root" .root "name" (include "library.itemName" .) "component" .key "item" .item) | nindent 2 }}
automountServiceAccountToken: {{ .item.automountServiceAccountToken | default false }}
{{- end -}}

{{/* Role or ClusterRole plus its binding to one of our ServiceAccounts (none with bind: false: a ClusterRole
     that the service binds itself, namespace by namespace, with RoleBindings). Args: root, key, item. */}}
{{- define "library.rbac" -}}
{{- $root := .root -}}
{{- $r := .item -}}
{{- $path := printf "rbac.%s" .key -}}
{{- $type := $r.type | default "Role" -}}
{{- if not (has $type (list "Role" "ClusterRole")) -}}
{{- fail (printf "%s: unknown type %q (expected Role or ClusterRole)" $path $type) -}}
{{- end -}}
{{- $sa := $r.serviceAccount | default "main" -}}
{{- if not (hasKey ($root.Values.serviceAccount | default dict) $sa) -}}
{{- fail (printf "%s: serviceAccount %q is not defined in serviceAccount" $path $sa) -}}
{{- end -}}
{{- if not $r.rules -}}
{{- fail (printf "%s: at least one rule is required in rules" $path) -}}
{{- end -}}
{{- $name := include "library.itemName" . -}}
apiVersion: rbac.authorization.k8s.io/v1
kind: {{ $type }}
metadata:
  {{- include "library.metadata" (dict "root" $root "name" $name "component" .key "item" $r) | nindent 2 }}
rules:
  {{- range $rkey := keys $r.rules | sortAlpha }}
  {{- $rule := get $r.rules $rkey }}
  {{- if not $rule.verbs }}
  {{- fail (printf "%s.rules.%s: verbs is required" $path $rkey) }}
  {{- end }}
  - {{- toYaml $rule | nindent 4 }}
  {{- end }}
{{- if ne (toString $r.bind) "false" }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: {{ $type }}Binding
metadata:
  {{- include "library.metadata" (dict "root" $root "name" $name "component" .key "item" $r) | nindent 2 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: {{ $type }}
  name: {{ $name }}
subjects:
  - kind: ServiceAccount
    name: {{ include "library.itemName" (dict "root" $root "key" $sa) }}
    namespace: {{ $root.Release.Namespace }}
{{- end }}
{{- end -}}

{{/* ConfigMap. Args: root, key, item. */}}
{{- define "library.configMap" -}}
{{- $cm := .item -}}
apiVersion: v1
kind: ConfigMap
metadata:
  {{- include "library.metadata" (dict "root" .root "name" (include "library.itemName" .) "component" .key "item" $cm) | nindent 2 }}
{{- with $cm.data }}
data:
  {{- range $k := keys . | sortAlpha }}
  {{ $k | quote }}: {{ get $cm.data $k | toString | quote }}
  {{- end }}
{{- end }}
{{- with $cm.binaryData }}
binaryData:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* PersistentVolumeClaim for a persistence item of type persistentVolumeClaim. Args: root, key, item. */}}
{{- define "library.pvc" -}}
{{- $p := .item -}}
{{- $meta := deepCopy $p -}}
{{- if $p.retain -}}
{{- $_ := set $meta "annotations" (mergeOverwrite (dict "helm.sh/resource-policy" "keep") (deepCopy ($p.annotations | default dict))) -}}
{{- end -}}
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  {{- include "library.metadata" (dict "root" .root "name" (include "library.itemName" .) "component" .key "item" $meta) | nindent 2 }}
spec:
  accessModes: [{{ $p.accessMode | default "ReadWriteOnce" }}]
  {{- with $p.storageClass }}
  storageClassName: {{ . }}
  {{- end }}
  resources:
    requests:
      storage: {{ $p.size | default "1Gi" }}
{{- end -}}

{{/* Ingress (one host per item). Args: root, key, item. */}}
{{- define "library.ingress" -}}
{{- $root := .root -}}
{{- $i := .item -}}
{{- $path := printf "ingress.%s" .key -}}
{{- if not $i.host -}}
{{- fail (printf "%s: host is required" $path) -}}
{{- end -}}
{{- $host := tpl $i.host $root -}}
{{- $paths := $i.paths | default (dict "root" dict) -}}
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  {{- include "library.metadata" (dict "root" $root "name" (include "library.itemName" .) "component" .key "item" $i) | nindent 2 }}
spec:
  {{- with $i.className }}
  ingressClassName: {{ . }}
  {{- end }}
  {{- if and $i.tls (include "library.enabled" $i.tls) }}
  tls:
    - hosts: [{{ $host | quote }}]
      secretName: {{ $i.tls.secretName | default (printf "%s-tls" (include "library.itemName" .)) }}
  {{- end }}
  rules:
    - host: {{ $host | quote }}
      http:
        paths:
          {{- range $pkey := keys $paths | sortAlpha }}
          {{- $p := get $paths $pkey | default dict }}
          {{- $svc := $p.service | default "main" }}
          {{- if not (hasKey ($root.Values.service | default dict) $svc) }}
          {{- fail (printf "%s.paths.%s: service %q is not defined in service" $path $pkey $svc) }}
          {{- end }}
          {{- $port := $p.port | default "http" }}
          - path: {{ $p.path | default "/" }}
            pathType: {{ $p.pathType | default "Prefix" }}
            backend:
              service:
                name: {{ include "library.itemName" (dict "root" $root "key" $svc) }}
                port:
                  {{- if kindIs "string" $port }}
                  name: {{ $port }}
                  {{- else }}
                  number: {{ int $port }}
                  {{- end }}
          {{- end }}
{{- end -}}

{{/* NetworkPolicy. Args: root, key, item. */}}
{{- define "library.networkPolicy" -}}
{{- $root := .root -}}
{{- $n := .item -}}
{{- $path := printf "networkPolicy.%s" .key -}}
{{- $types := $n.policyTypes -}}
{{- if not $types -}}
{{- $types = list "Ingress" -}}
{{- if hasKey $n "egress" }}{{ $types = append $types "Egress" }}{{ end -}}
{{- end -}}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  {{- include "library.metadata" (dict "root" $root "name" (include "library.itemName" .) "component" ($n.controller | default .key) "item" $n) | nindent 2 }}
spec:
  podSelector:
    {{- if $n.controller }}
    {{- include "library.requireController" (dict "root" $root "path" $path "controller" $n.controller) }}
    matchLabels:
      {{- include "library.selectorLabels" (dict "root" $root "component" $n.controller) | nindent 6 }}
    {{- else }}
    matchLabels:
      app.kubernetes.io/name: {{ include "library.name" $root }}
      app.kubernetes.io/instance: {{ $root.Release.Name }}
    {{- end }}
  policyTypes: {{ toJson $types }}
  {{- range $dir := list "ingress" "egress" }}
  {{- $rules := get $n $dir }}
  {{- if hasKey $n $dir }}
  {{ $dir }}:
    {{- if not $rules }} []{{ end }}
    {{- range $rkey := keys ($rules | default dict) | sortAlpha }}
    - {{- toYaml (get $rules $rkey | default dict) | nindent 6 }}
    {{- end }}
  {{- end }}
  {{- end }}
{{- end -}}

{{/* PodDisruptionBudget. Args: root, key, item. */}}
{{- define "library.podDisruptionBudget" -}}
{{- $root := .root -}}
{{- $p := .item -}}
{{- $path := printf "podDisruptionBudget.%s" .key -}}
{{- $controller := $p.controller | default "main" -}}
{{- include "library.requireController" (dict "root" $root "path" $path "controller" $controller) -}}
{{- if and (hasKey $p "minAvailable") (hasKey $p "maxUnavailable") -}}
{{- fail (printf "%s: set minAvailable or maxUnavailable, not both" $path) -}}
{{- end -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  {{- include "library.metadata" (dict "root" $root "name" (include "library.itemName" .) "component" $controller "item" $p) | nindent 2 }}
spec:
  {{- if hasKey $p "minAvailable" }}
  minAvailable: {{ $p.minAvailable }}
  {{- else }}
  maxUnavailable: {{ hasKey $p "maxUnavailable" | ternary $p.maxUnavailable 1 }}
  {{- end }}
  {{- with $p.unhealthyPodEvictionPolicy }}
  unhealthyPodEvictionPolicy: {{ . }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "library.selectorLabels" (dict "root" $root "component" $controller) | nindent 6 }}
{{- end -}}

{{/* ServiceMonitor selecting one of our Services. Args: root, key, item. */}}
{{- define "library.serviceMonitor" -}}
{{- $root := .root -}}
{{- $m := .item -}}
{{- $path := printf "serviceMonitor.%s" .key -}}
{{- $svc := $m.service | default "main" -}}
{{- if not (hasKey ($root.Values.service | default dict) $svc) -}}
{{- fail (printf "%s: service %q is not defined in service" $path $svc) -}}
{{- end -}}
{{- $endpoints := $m.endpoints | default (dict "http" dict) -}}
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  {{- include "library.metadata" (dict "root" $root "name" (include "library.itemName" .) "component" ((get $root.Values.service $svc).controller | default "main") "item" $m) | nindent 2 }}
spec:
  namespaceSelector:
    matchNames: [{{ $root.Release.Namespace | quote }}]
  selector:
    matchLabels:
      app.kubernetes.io/name: {{ include "library.name" $root }}
      app.kubernetes.io/instance: {{ $root.Release.Name }}
      app.kubernetes.io/service: {{ $svc }}
  endpoints:
    {{- range $ekey := keys $endpoints | sortAlpha }}
    {{- $e := get $endpoints $ekey | default dict }}
    {{- /* every series carries the pod's node as `node`: a NodeDown of that node inhibits its alerts */}}
    {{- $node := dict "sourceLabels" (list "__meta_kubernetes_pod_node_name") "targetLabel" "node" }}
    {{- $ep := mergeOverwrite (dict "port" $ekey "path" "/metrics" "relabelings" (list $node)) (deepCopy $e) }}
    - {{- toYaml $ep | nindent 6 }}
    {{- end }}
{{- end -}}

{{/* PrometheusRule: groups and rules keyed by name. Args: root, key, item. */}}
{{- define "library.prometheusRule" -}}
{{- $root := .root -}}
{{- $r := .item -}}
{{- $path := printf "prometheusRule.%s" .key -}}
{{- if not $r.groups -}}
{{- fail (printf "%s: at least one group is required in groups" $path) -}}
{{- end -}}
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  {{- include "library.metadata" (dict "root" $root "name" (include "library.itemName" .) "component" .key "item" $r) | nindent 2 }}
spec:
  groups:
    {{- range $gkey := keys $r.groups | sortAlpha }}
    {{- $g := get $r.groups $gkey }}
    - name: {{ $gkey | quote }}
      {{- with $g.interval }}
      interval: {{ . }}
      {{- end }}
      rules:
        {{- if not $g.rules }}
        {{- fail (printf "%s.groups.%s: at least one rule is required in rules" $path $gkey) }}
        {{- end }}
        {{- range $rkey := keys $g.rules | sortAlpha }}
        {{- $rule := get $g.rules $rkey }}
        {{- $rpath := printf "%s.groups.%s.rules.%s" $path $gkey $rkey }}
        {{- if not $rule.expr }}
        {{- fail (printf "%s: expr is required" $rpath) }}
        {{- end }}
        {{- if eq ($rule.type | default "alert") "record" }}
        - record: {{ $rkey | quote }}
        {{- else if eq ($rule.type | default "alert") "alert" }}
        - alert: {{ $rkey | quote }}
        {{- else }}
        {{- fail (printf "%s: unknown type %q (expected alert or record)" $rpath $rule.type) }}
        {{- end }}
          expr: {{ $rule.expr | toString | quote }}
          {{- with $rule.for }}
          for: {{ . }}
          {{- end }}
          {{- with $rule.labels }}
          labels:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          {{- $annotations := $rule.annotations | default dict }}
          {{- with $rule.runbook }}
          {{- $annotations = merge (dict "runbook_url" (printf "%s/%s.md" $root.Values.global.runbooks .)) $annotations }}
          {{- end }}
          {{- with $annotations }}
          annotations:
            {{- toYaml . | nindent 12 }}
          {{- end }}
        {{- end }}
    {{- end }}
{{- end -}}

{{/* Any other manifest, passed through (name and standard labels filled in). Args: root, key, item. */}}
{{- define "library.rawResource" -}}
{{- $r := .item -}}
{{- $path := printf "rawResources.%s" .key -}}
{{- if not (and $r.apiVersion $r.kind) -}}
{{- fail (printf "%s: apiVersion and kind are required" $path) -}}
{{- end -}}
{{- $meta := $r.metadata | default dict -}}
apiVersion: {{ $r.apiVersion }}
kind: {{ $r.kind }}
metadata:
  {{- include "library.metadata" (dict "root" .root "name" ($meta.name | default (include "library.itemName" .)) "component" .key "item" $meta) | nindent 2 }}
  {{- with $meta.namespace }}
  namespace: {{ . }}
  {{- end }}
{{- with omit $r "apiVersion" "kind" "metadata" "enabled" }}
{{ toYaml . }}
{{- end }}
{{- end -}}
