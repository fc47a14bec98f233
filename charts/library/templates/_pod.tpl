{{/* A container. Args: root, ckey (controller key), key, item, longRunning, init (an init container), path. */}}
{{- define "library.container" -}}
{{- $root := .root -}}
{{- $path := .path -}}
{{- $c := mergeOverwrite (deepCopy $root.Values.defaultContainerOptions) (deepCopy (.item | default dict)) -}}
{{- if .init -}}
{{- /* an init container serves nothing: only the ports it names itself, never the default http (the API server
     warns of a duplicate port definition when the main container has it too) */ -}}
{{- $_ := set $c "ports" ((.item | default dict).ports | default dict) -}}
{{- end -}}
{{- $image := $c.image | default dict -}}
{{- if not $image.repository -}}
{{- fail (printf "%s: image.repository is required" $path) -}}
{{- end -}}
{{- $tag := toString ($image.tag | default $root.Chart.AppVersion) -}}
{{- if and (not $tag) (not $image.digest) -}}
{{- fail (printf "%s: image.tag is required (the chart has no appVersion)" $path) -}}
{{- end -}}
- name: {{ .key | quote }}
  {{- if $image.digest }}
  image: {{ printf "%s@%s" $image.repository $image.digest | quote }}
  {{- else }}
  image: {{ printf "%s:%s" $image.repository $tag | quote }}
  {{- end }}
  imagePullPolicy: {{ $image.pullPolicy | default "IfNotPresent" }}
  {{- with $c.command }}
  command:
    {{- toYaml (kindIs "string" . | ternary (list .) .) | nindent 4 }}
  {{- end }}
  {{- with $c.args }}
  args:
    {{- toYaml (kindIs "string" . | ternary (list .) .) | nindent 4 }}
  {{- end }}
  {{- with $c.workingDir }}
  workingDir: {{ . }}
  {{- end }}
  {{- if $c.env }}
  env:
    {{- range $name := keys $c.env | sortAlpha }}
    {{- $v := get $c.env $name }}
    - name: {{ $name | quote }}
      {{- if kindIs "map" $v }}
      {{- if hasKey $v "valueFrom" }}
      valueFrom:
        {{- toYaml $v.valueFrom | nindent 8 }}
      {{- else if hasKey $v "value" }}
      value: {{ tpl (toString $v.value) $root | quote }}
      {{- else }}
      {{- fail (printf "%s.env.%s: a map needs value or valueFrom" $path $name) }}
      {{- end }}
      {{- else }}
      value: {{ tpl (toString $v) $root | quote }}
      {{- end }}
    {{- end }}
  {{- end }}
  {{- if $c.envFrom }}
  envFrom:
    {{- range $name := keys $c.envFrom | sortAlpha }}
    {{- $ef := get $c.envFrom $name }}
    {{- if $ef.configMap }}
    {{- if not (hasKey ($root.Values.configMaps | default dict) $ef.configMap) }}
    {{- fail (printf "%s.envFrom.%s: configMap %q is not defined in configMaps" $path $name $ef.configMap) }}
    {{- end }}
    - configMapRef:
        name: {{ include "library.itemName" (dict "root" $root "key" $ef.configMap) }}
    {{- else if $ef.secret }}
    - secretRef:
        name: {{ $ef.secret }}
        {{- if $ef.optional }}
        optional: true
        {{- end }}
    {{- else }}
    {{- fail (printf "%s.envFrom.%s: needs configMap (a configMaps key) or secret (a Secret name)" $path $name) }}
    {{- end }}
    {{- end }}
  {{- end }}
  {{- $ports := list }}
  {{- range $name := keys ($c.ports | default dict) | sortAlpha }}
  {{- $p := get $c.ports $name }}
  {{- if include "library.enabled" $p }}
  {{- if not $p.port }}
  {{- fail (printf "%s.ports.%s: port (a number) is required" $path $name) }}
  {{- end }}
  {{- $ports = append $ports (dict "name" $name "containerPort" (int $p.port) "protocol" ($p.protocol | default "TCP")) }}
  {{- end }}
  {{- end }}
  {{- with $ports }}
  ports:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if .longRunning }}
  {{- range $probe := list "liveness" "readiness" "startup" }}
  {{- $p := get ($c.probes | default dict) $probe | default dict }}
  {{- if $p.enabled }}
  {{ $probe }}Probe:
    {{- if $p.custom }}
    {{- toYaml $p.custom | nindent 4 }}
    {{- else }}
    httpGet:
      path: {{ $p.path | default (eq $probe "readiness" | ternary "/readyz" "/healthz") }}
      port: {{ $p.port | default "http" }}
    {{- range $field := list "initialDelaySeconds" "periodSeconds" "timeoutSeconds" "failureThreshold" "successThreshold" }}
    {{- if hasKey $p $field }}
    {{ $field }}: {{ get $p $field | int }}
    {{- end }}
    {{- end }}
    {{- end }}
  {{- end }}
  {{- end }}
  {{- end }}
  {{- with $c.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml $c.securityContext | nindent 4 }}
  {{- $mounts := include "library.volumeMounts" (dict "root" $root "ckey" .ckey) | fromYamlArray }}
  {{- with $mounts }}
  volumeMounts:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{/* Does persistence item "item" apply to controller "ckey"? */}}
{{- define "library.persistenceApplies" -}}
{{- if and (include "library.enabled" .item) (or (not .item.controllers) (has .ckey .item.controllers)) -}}true{{- end -}}
{{- end -}}

{{/* volumeMounts as a YAML list. Args: root, ckey. */}}
{{- define "library.volumeMounts" -}}
{{- $mounts := list -}}
{{- range $key := keys (.root.Values.persistence | default dict) | sortAlpha -}}
{{- $item := get $.root.Values.persistence $key -}}
{{- if and (include "library.persistenceApplies" (dict "item" $item "ckey" $.ckey)) $item.mountPath -}}
{{- $m := dict "name" $key "mountPath" $item.mountPath -}}
{{- with $item.subPath }}{{ $_ := set $m "subPath" . }}{{ end -}}
{{- if $item.readOnly }}{{ $_ := set $m "readOnly" true }}{{ end -}}
{{- $mounts = append $mounts $m -}}
{{- end -}}
{{- end -}}
{{- $c := get .root.Values.controllers .ckey -}}
{{- if eq (lower $c.type) "statefulset" -}}
{{- range $key := keys (($c.statefulset | default dict).volumeClaimTemplates | default dict) | sortAlpha -}}
{{- $mounts = append $mounts (dict "name" $key "mountPath" (get $c.statefulset.volumeClaimTemplates $key).mountPath) -}}
{{- end -}}
{{- end -}}
{{- toYaml $mounts -}}
{{- end -}}

{{/* volumes as a YAML list. Args: root, ckey. */}}
{{- define "library.volumes" -}}
{{- $root := .root -}}
{{- $volumes := list -}}
{{- range $key := keys ($root.Values.persistence | default dict) | sortAlpha -}}
{{- $item := get $root.Values.persistence $key -}}
{{- if include "library.persistenceApplies" (dict "item" $item "ckey" $.ckey) -}}
{{- $type := $item.type | default "emptyDir" -}}
{{- $v := dict "name" $key -}}
{{- if eq $type "emptyDir" -}}
{{- $ed := dict -}}
{{- with $item.medium }}{{ $_ := set $ed "medium" . }}{{ end -}}
{{- with $item.sizeLimit }}{{ $_ := set $ed "sizeLimit" . }}{{ end -}}
{{- $_ := set $v "emptyDir" $ed -}}
{{- else if eq $type "persistentVolumeClaim" -}}
{{- $_ := set $v "persistentVolumeClaim" (dict "claimName" ($item.existingClaim | default (include "library.itemName" (dict "root" $root "key" $key)))) -}}
{{- else if eq $type "configMap" -}}
{{- $name := $item.existingConfigMap -}}
{{- if not $name -}}
{{- $cm := $item.configMap | default $key -}}
{{- if not (hasKey ($root.Values.configMaps | default dict) $cm) -}}
{{- fail (printf "persistence.%s: configMap %q is not defined in configMaps (or set existingConfigMap)" $key $cm) -}}
{{- end -}}
{{- $name = include "library.itemName" (dict "root" $root "key" $cm) -}}
{{- end -}}
{{- $_ := set $v "configMap" (dict "name" $name) -}}
{{- else if eq $type "secret" -}}
{{- if not $item.secretName -}}
{{- fail (printf "persistence.%s: secretName is required for type secret" $key) -}}
{{- end -}}
{{- $_ := set $v "secret" (dict "secretName" $item.secretName) -}}
{{- else if eq $type "hostPath" -}}
{{- if not $item.hostPath -}}
{{- fail (printf "persistence.%s: hostPath is required for type hostPath" $key) -}}
{{- end -}}
{{- $hp := dict "path" $item.hostPath -}}
{{- with $item.hostPathType }}{{ $_ := set $hp "type" . }}{{ end -}}
{{- $_ := set $v "hostPath" $hp -}}
{{- else -}}
{{- fail (printf "persistence.%s: unknown type %q (expected one of emptyDir, persistentVolumeClaim, configMap, secret, hostPath)" $key $type) -}}
{{- end -}}
{{- $volumes = append $volumes $v -}}
{{- end -}}
{{- end -}}
{{- toYaml $volumes -}}
{{- end -}}

{{/* A pod template (metadata + spec). Args: root, ckey, controller, longRunning. */}}
{{- define "library.podTemplate" -}}
{{- $root := .root -}}
{{- $ckey := .ckey -}}
{{- $c := .controller -}}
{{- $pod := mergeOverwrite (deepCopy $root.Values.defaultPodOptions) (deepCopy ($c.pod | default dict)) -}}
{{- $path := printf "controllers.%s" $ckey -}}
metadata:
  labels:
    {{- include "library.selectorLabels" (dict "root" $root "component" $ckey) | nindent 4 }}
    {{- with $pod.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with $pod.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  {{- if $c.serviceAccount }}
  {{- if not (hasKey ($root.Values.serviceAccount | default dict) $c.serviceAccount) }}
  {{- fail (printf "%s: serviceAccount %q is not defined in serviceAccount" $path $c.serviceAccount) }}
  {{- end }}
  serviceAccountName: {{ include "library.itemName" (dict "root" $root "key" $c.serviceAccount) }}
  {{- end }}
  automountServiceAccountToken: {{ $pod.automountServiceAccountToken }}
  enableServiceLinks: {{ $pod.enableServiceLinks }}
  {{- if $pod.hostNetwork }}
  hostNetwork: true
  dnsPolicy: {{ $pod.dnsPolicy | default "ClusterFirstWithHostNet" }}
  {{- else if $pod.dnsPolicy }}
  dnsPolicy: {{ $pod.dnsPolicy }}
  {{- end }}
  {{- if not .longRunning }}
  restartPolicy: {{ $pod.restartPolicy | default "OnFailure" }}
  {{- else if $pod.restartPolicy }}
  restartPolicy: {{ $pod.restartPolicy }}
  {{- end }}
  {{- range $field := list "priorityClassName" "terminationGracePeriodSeconds" "nodeSelector" "affinity" "tolerations" "topologySpreadConstraints" "runtimeClassName" }}
  {{- with get $pod $field }}
  {{ $field }}:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- end }}
  securityContext:
    {{- toYaml $pod.securityContext | nindent 4 }}
  {{- if $c.initContainers }}
  initContainers:
    {{- range $key := keys $c.initContainers | sortAlpha }}
    {{- include "library.container" (dict "root" $root "ckey" $ckey "key" $key "item" (get $c.initContainers $key) "longRunning" false "init" true "path" (printf "%s.initContainers.%s" $path $key)) | nindent 4 }}
    {{- end }}
  {{- end }}
  {{- if not $c.containers }}
  {{- fail (printf "%s: at least one container is required in containers" $path) }}
  {{- end }}
  containers:
    {{- range $key := keys $c.containers | sortAlpha }}
    {{- include "library.container" (dict "root" $root "ckey" $ckey "key" $key "item" (get $c.containers $key) "longRunning" $.longRunning "path" (printf "%s.containers.%s" $path $key)) | nindent 4 }}
    {{- end }}
  {{- $volumes := include "library.volumes" (dict "root" $root "ckey" $ckey) | fromYamlArray }}
  {{- with $volumes }}
  volumes:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}
