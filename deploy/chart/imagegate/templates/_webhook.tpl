{{/* One webhook entry; "kind" is mutate or validate (its name and path). */}}
{{- define "imagegate.webhook" -}}
{{- $root := .root }}
- name: {{ .kind }}.imagegate.toolforge.org
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
  matchConditions:
  - name: spec-changed
    # Every key read is guarded by has(): the API server omits request.subResource on a plain
    # UPDATE, and an expression error fails closed (it would refuse every label change).
    expression: |-
      request.operation != 'UPDATE'
      || (has(request.subResource) && request.subResource == 'ephemeralcontainers')
      || (has(object.spec) ? !has(oldObject.spec) || object.spec != oldObject.spec
      : has(object.template) ? !has(oldObject.template) || object.template != oldObject.template
      : true)
  {{- if eq .kind "mutate" }}
  # Skips objects where /mutate has nothing to fill in or pin: `imagegate webhooks
  # --mutate-condition -p POLICY` made it for the shipped policy; regenerate it for another.
  - name: needs-mutation
    expression: {{ $root.Files.Get "files/mutate-condition.cel" | trimSuffix "\n" | toJson }}
  {{- end }}
  # core/webhooks.py makes the same rules from core/workloads.py (tests/test_one_source.py compares)
  rules:
  - apiGroups: ['']
    apiVersions: [v1]
    operations: [CREATE, UPDATE]
    resources: [pods, podtemplates, replicationcontrollers]
    scope: Namespaced
  - apiGroups: ['']
    apiVersions: [v1]
    operations: [UPDATE]
    resources: [pods/ephemeralcontainers]
    scope: Namespaced
  - apiGroups: [apps]
    apiVersions: [v1]
    operations: [CREATE, UPDATE]
    resources: [deployments, replicasets, statefulsets, daemonsets]
    scope: Namespaced
  - apiGroups: [batch]
    apiVersions: [v1]
    operations: [CREATE, UPDATE]
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
{{- end -}}
