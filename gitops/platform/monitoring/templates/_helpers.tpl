{{/* Where the alert runbooks are: docs/runbooks/ of the GitOps repository in the site's Gitea. */}}
{{- define "monitoring.runbooks" -}}
https://git.{{ .Values.site.domain | default "home.arpa" }}/homelab/gitops/src/branch/main/docs/runbooks
{{- end -}}
