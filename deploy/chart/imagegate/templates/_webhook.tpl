{{/*
One webhook entry. "kind" is mutate or validate (its path), "operation" CREATE or UPDATE: the
CREATE webhook has no matchConditions (the API server would build a CEL activation for it on
every pod creation, to learn what is always true there), the UPDATE one has template-changed
and, when "needsMutation" is given, that condition. The rules and conditions are
core/webhooks.py's (tests/test_one_source.py and tests/test_chart.py compare).
*/}}
{{- define "imagegate.webhook" -}}
{{- $root := .root }}
- name: {{ .kind }}{{ if eq .operation "UPDATE" }}-update{{ end }}.imagegate.toolforge.org
  admissionReviewVersions:
  - v1
  sideEffects: None
  failurePolicy: {{ $root.Values.webhook.failurePolicy }}
  timeoutSeconds: {{ $root.Values.webhook.timeoutSeconds }}
  matchPolicy: Equivalent
  namespaceSelector:
    matchExpressions:
    - key: kubernetes.io/metadata.name
      operator: NotIn
      values:
      {{- range $root.Values.webhook.exemptNamespaces }}
      - {{ . }}
      {{- end }}
      - {{ $root.Release.Namespace }}
  {{- if eq .operation "UPDATE" }}
  matchConditions:
  # Sends only UPDATEs that change a Pod's containers or volumes or a workload's pod template:
  # label, annotation, finalizer, status and replica writes never wait for imagegate. Every
  # key read is guarded by has(): an expression error fails closed.
  - name: template-changed
    expression: {{ $root.Files.Get "files/template-changed.cel" | trimSuffix "\n" | toJson }}
  {{- with .needsMutation }}
  # Skips objects where /mutate has nothing to fill in or pin under the policy this release
  # serves (files/needs-mutation/, picked by imagegate.mutationScope).
  - name: needs-mutation
    expression: {{ . | toJson }}
  {{- end }}
  {{- end }}
  rules:
  - apiGroups: ['']
    apiVersions: [v1]
    operations: [{{ .operation }}]
    resources: [pods, podtemplates, replicationcontrollers]
    scope: Namespaced
  {{- if eq .operation "UPDATE" }}
  - apiGroups: ['']
    apiVersions: [v1]
    operations: [UPDATE]
    resources: [pods/ephemeralcontainers]
    scope: Namespaced
  {{- end }}
  - apiGroups: [apps]
    apiVersions: [v1]
    operations: [{{ .operation }}]
    resources: [deployments, replicasets, statefulsets, daemonsets]
    scope: Namespaced
  - apiGroups: [batch]
    apiVersions: [v1]
    operations: [{{ .operation }}]
    resources: [jobs, cronjobs]
    scope: Namespaced
  clientConfig:
    service:
      name: {{ .name }}
      namespace: {{ $root.Release.Namespace }}
      path: /{{ .kind }}
      port: 443
    {{- if .caBundle }}
    caBundle: {{ .caBundle }}
    {{- end }}
  {{- if eq .kind "mutate" }}
  reinvocationPolicy: IfNeeded
  {{- end }}
{{- end -}}
