{{/*
Rules the operator needs in every namespace it watches. Keep in step with the operator code:
each line names what uses it.
*/}}
{{- define "sluice.rbac.namespacedRules" -}}
# The resource it reconciles; patch adds/removes its finalizer.
- apiGroups: ["sluice.dev"]
  resources: ["messagequeues"]
  verbs: ["get", "list", "watch", "patch"]
# Status is written by server-side apply.
- apiGroups: ["sluice.dev"]
  resources: ["messagequeues/status"]
  verbs: ["get", "patch"]
# Owner references with blockOwnerDeletion on the children.
- apiGroups: ["sluice.dev"]
  resources: ["messagequeues/finalizers"]
  verbs: ["update"]
# Children, written by server-side apply (patch; create when absent) and watched for drift.
- apiGroups: ["apps"]
  resources: ["statefulsets"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: [""]
  resources: ["services", "configmaps"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch"]
# Broker pods: readiness during rolls; deleted one at a time to roll them.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch", "delete"]
# Broker volumes: deleted with the MessageQueue when storage.deleteClaim is true.
- apiGroups: [""]
  resources: ["persistentvolumeclaims"]
  verbs: ["get", "list", "watch", "delete"]
# Events announcing every action.
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
