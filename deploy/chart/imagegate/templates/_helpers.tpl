{{/* The objects' base name: the release name, or release-chart when it does not contain the chart's name. */}}
{{- define "imagegate.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* What the pods are selected by (as deploy/base's). */}}
{{- define "imagegate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "imagegate.fullname" . }}
{{- end -}}

{{/* Every object's labels: deploy/base's two, and Helm's bookkeeping. */}}
{{- define "imagegate.labels" -}}
{{ include "imagegate.selectorLabels" . }}
app.kubernetes.io/part-of: imagegate
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "imagegate.serviceHost" -}}
{{ include "imagegate.fullname" . }}.{{ .Release.Namespace }}.svc
{{- end -}}

{{/*
"base" with "override" set over it, key by key into maps: any value the override gives wins,
false, 0, "" and [] included (sprig's mergeOverwrite skips those, so `mutate: false` would be
lost). YAML text, as include returns; fromYaml reads it back.
*/}}
{{- define "imagegate.merge" -}}
{{- $merged := deepCopy .base -}}
{{- range $key, $value := .override -}}
{{- $current := index $merged $key -}}
{{- if and (kindIs "map" $value) (kindIs "map" $current) -}}
{{- $_ := set $merged $key (fromYaml (include "imagegate.merge" (dict "base" $current "override" $value))) -}}
{{- else -}}
{{- $_ := set $merged $key $value -}}
{{- end -}}
{{- end -}}
{{- toYaml $merged -}}
{{- end -}}

{{/* "true" when the cluster's API server drops supplementalGroupsPolicy by default (before 1.33: its feature gate is off). */}}
{{- define "imagegate.dropsGroupsPolicy" -}}
{{- if semverCompare "<1.33.0-0" .Capabilities.KubeVersion.Version -}}true{{- end -}}
{{- end -}}

{{/* The value at "keys" under "in", as text ("" when a key is missing or a step is not a map; sprig's dig fails on a null step). */}}
{{- define "imagegate.lookup" -}}
{{- $node := .in -}}
{{- range .keys -}}
{{- if kindIs "map" $node -}}
{{- $node = index $node . -}}
{{- else -}}
{{- $node = "" -}}
{{- end -}}
{{- end -}}
{{- if not (kindIs "invalid" $node) -}}{{- toString $node -}}{{- end -}}
{{- end -}}

{{/* The built-in policy with policy.trusted and policy.override set over it, as YAML text (comments lost). */}}
{{- define "imagegate.policyFromValues" -}}
{{- $document := fromYaml (.Files.Get "files/policy.yaml") -}}
{{- if .Values.policy.trusted -}}
{{- $_ := set $document "trusted" .Values.policy.trusted -}}
{{- end -}}
{{- if .Values.policy.override -}}
{{- $document = fromYaml (include "imagegate.merge" (dict "base" $document "override" .Values.policy.override)) -}}
{{- end -}}
{{- toYaml $document -}}
{{- end -}}

{{/* "true" when this release sets whenDropped: warn: the cluster drops the field, the policy has a tool profile, the values leave whenDropped unset. */}}
{{- define "imagegate.groupsPolicyFitted" -}}
{{- $set := include "imagegate.lookup" (dict "in" .Values.policy.override "keys" (list "podSecurity" "toolProfile" "supplementalGroupsPolicy" "whenDropped")) -}}
{{- if and (include "imagegate.dropsGroupsPolicy" .) (not $set) -}}
{{- $settings := index (fromYaml (include "imagegate.policyFromValues" .)) "podSecurity" -}}
{{- if kindIs "map" $settings -}}
{{- if kindIs "map" (index $settings "toolProfile") -}}true{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
The policy this release serves, as YAML text: files/policy.yaml (the built-in Toolforge
policy, verbatim) with policy.trusted and policy.override set over it, and, on a cluster
that drops supplementalGroupsPolicy (before 1.33), whenDropped: warn unless the values say.
One template for the policy ConfigMap and for the webhooks' needs-mutation condition, so the
condition follows the document that is served.
*/}}
{{- define "imagegate.policy" -}}
{{- $fitted := include "imagegate.groupsPolicyFitted" . -}}
{{- if or .Values.policy.trusted .Values.policy.override $fitted -}}
{{- $document := fromYaml (include "imagegate.policyFromValues" .) -}}
{{- $header := "# the built-in Toolforge policy with this release's values\n" -}}
{{- if $fitted -}}
{{- $groups := dict "toolProfile" (dict "supplementalGroupsPolicy" (dict "whenDropped" "warn")) -}}
{{- $document = fromYaml (include "imagegate.merge" (dict "base" $document "override" (dict "podSecurity" $groups))) -}}
{{- $header = printf "%s# whenDropped: warn: Kubernetes %s drops supplementalGroupsPolicy (see the release notes)\n" $header .Capabilities.KubeVersion.Version -}}
{{- end -}}
{{- printf "%s%s" $header (toYaml $document) -}}
{{- else -}}
{{- .Files.Get "files/policy.yaml" -}}
{{- end -}}
{{- end -}}

{{/*
What /mutate can change under the served policy, named as core/webhooks.py's MutationScope
("tool-pinning"): the security fields it fills in ("none", "restricted", "tool") and whether
it pins. The same reading of the policy as mutation_scope(): no podSecurity or mutate: false
is "none"; a toolProfile (even {}) is "tool"; else "restricted" at any level or override
level restricted.
*/}}
{{- define "imagegate.mutationScope" -}}
{{- $policy := fromYaml (include "imagegate.policy" .) -}}
{{- $security := "none" -}}
{{- $settings := index $policy "podSecurity" -}}
{{- if kindIs "map" $settings -}}
{{- if ne (toString (index $settings "mutate")) "false" -}}
{{- $restricted := eq (toString (index $settings "level" | default "restricted")) "restricted" -}}
{{- range (index $settings "overrides" | default list) -}}
{{- if and (kindIs "map" .) (eq (toString (index . "level")) "restricted") -}}
{{- $restricted = true -}}
{{- end -}}
{{- end -}}
{{- if kindIs "map" (index $settings "toolProfile") -}}
{{- $security = "tool" -}}
{{- else if $restricted -}}
{{- $security = "restricted" -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $pinning := index $policy "pinning" -}}
{{- $pins := false -}}
{{- if kindIs "map" $pinning -}}
{{- $pins = eq (toString (index $pinning "enabled")) "true" -}}
{{- end -}}
{{- printf "%s%s" $security (ternary "-pinning" "" $pins) -}}
{{- end -}}

{{/*
Why this install is refused, or "": the served policy's tool profile would deny every tool pod
from the first minute (enforce, no uidLabel, none in the policy: core/policy.py's
identities_missing) and there are no identities to read: none in the values and none in the
cluster's identities ConfigMap. Checked on install only, and only
against a cluster (kube-system found): offline (helm template, lint) nothing can be looked up.
An upgrade is never refused for it: /readyz and imagegate_identities say so (docs/deploy.md).
*/}}
{{- define "imagegate.identitiesMissing" -}}
{{- if and .Release.IsInstall (not .Values.identities) (lookup "v1" "Namespace" "" "kube-system") -}}
{{- $settings := index (fromYaml (include "imagegate.policy" .)) "podSecurity" -}}
{{- if kindIs "map" $settings -}}
{{- $tool := index $settings "toolProfile" -}}
{{- if and (kindIs "map" $tool) (not (index $tool "uidLabel")) (not (index $tool "identities")) (eq (toString (index $settings "mode" | default "enforce")) "enforce") -}}
{{- $name := printf "%s-identities" (include "imagegate.fullname" .) -}}
{{- $live := lookup "v1" "ConfigMap" .Release.Namespace $name -}}
{{- $document := fromYaml (index ($live.data | default dict) "identities.yaml" | default "") -}}
{{- if not (index ($document | default dict) "identities") -}}
{{- printf "no tool identities: the policy's tool profile would deny every pod in %s from the first minute. Give them at install (imagegate identities ldap ... -o identities.yaml, then -f identities.yaml), or create ConfigMap %s/%s first (imagegate identities ... --print-configmap %s/%s | kubectl create -f -), or set podSecurity.toolProfile.uidLabel, or install with policy.override.podSecurity.mode=warn until they are loaded (docs/deploy.md)" (join ", " (index $tool "namespaces" | default (list "tool-*"))) .Release.Namespace $name .Release.Namespace $name -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
The grants or identities ConfigMap ("suffix"), with "seed" as its one file, or nothing.
configMapOwner: values: always the seed (the values). cli: the CLI writes them (grants ...
--apply, identities ... --apply), so the chart renders one only while the cluster has none (the
first install), annotated helm.sh/resource-policy: keep; once it exists it is left out, and
Helm, reading "keep" on the live object, never deletes it (upgrade, uninstall). One this
release rendered without "keep" (an older chart, or configMapOwner: values) is rendered once
more with the cluster's own data and "keep" added, so leaving it out later cannot delete it.
Offline (helm template) lookup finds nothing: the seed is rendered.
*/}}
{{- define "imagegate.cliConfigMap" -}}
{{- $root := .root -}}
{{- $name := printf "%s-%s" (include "imagegate.fullname" $root) .suffix -}}
{{- $cli := eq $root.Values.configMapOwner "cli" -}}
{{- $data := dict (printf "%s.yaml" .suffix) .seed -}}
{{- $render := true -}}
{{- $carried := false -}}
{{- if $cli -}}
{{- $live := lookup "v1" "ConfigMap" $root.Release.Namespace $name -}}
{{- if $live -}}
{{- $annotations := $live.metadata.annotations | default dict -}}
{{- $ours := eq (index $annotations "meta.helm.sh/release-name" | default "") $root.Release.Name -}}
{{- $render = and $ours (ne (index $annotations "helm.sh/resource-policy" | default "") "keep") -}}
{{- $data = $live.data | default dict -}}
{{- $carried = true -}}
{{- end -}}
{{- end -}}
{{- if $render }}
---
# {{ .comment }}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "imagegate.labels" $root | nindent 4 }}
  {{- if $cli }}
  annotations:
    helm.sh/resource-policy: keep
  {{- end }}
data:
  {{- range $key, $text := $data }}
  {{- if $carried }}
  {{ $key }}: {{ $text | toJson }}{{/* exactly the cluster's text, whatever its newlines */}}
  {{- else }}
  {{ $key }}: |
    {{- $text | nindent 4 }}
  {{- end }}
  {{- end }}
{{- end -}}
{{- end -}}

{{/* The reports controller's pods (imagegate reports, templates/reports.yaml): their own name. */}}
{{- define "imagegate.reportsSelectorLabels" -}}
app.kubernetes.io/name: {{ include "imagegate.fullname" . }}-reports
{{- end -}}

{{- define "imagegate.reportsLabels" -}}
{{ include "imagegate.reportsSelectorLabels" . }}
app.kubernetes.io/part-of: imagegate
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}
