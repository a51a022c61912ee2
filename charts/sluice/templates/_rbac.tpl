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
  verbs: ["patch"]
# Owner references with blockOwnerDeletion on the children (checked by the
# OwnerReferencesPermissionEnforcement admission plugin where it is enabled).
- apiGroups: ["sluice.dev"]
  resources: ["messagequeues/finalizers"]
  verbs: ["update"]
# Children, written by server-side apply (patch; the API server also checks create when the
# object is absent) and watched for drift.
- apiGroups: ["apps"]
  resources: ["statefulsets"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: [""]
  resources: ["services", "configmaps"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch"]
# Security: the CA, the brokers' certificate, the operator's credentials and one Secret per
# user, written by server-side apply and watched (a password written into a user's Secret is a
# rotation); a removed user's Secret is deleted.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# spec.networkPolicy; deleted when it is disabled.
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "create", "patch", "delete"]
# spec.tls.issuerRef: the cert-manager Certificate of the brokers.
- apiGroups: ["cert-manager.io"]
  resources: ["certificates"]
  verbs: ["get", "create", "patch"]
# Broker pods: readiness during rolls; deleted one at a time to roll them.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch", "delete"]
# Broker volumes: grown when storage.size grows (patch); deleted with the MessageQueue when
# storage.deleteClaim is true; checked before a scale-down and for pods stuck without one.
- apiGroups: [""]
  resources: ["persistentvolumeclaims"]
  verbs: ["get", "list", "patch", "delete"]
# Events announcing every action (events.k8s.io/v1: create, and patch to count a repeat).
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/*
Cluster-scoped reads, needed whichever namespaces are watched. Both are optional to the operator:
without them it skips the check (see the comments).
*/}}
{{- define "sluice.rbac.clusterRules" -}}
# A broker pod bound to a node that no longer exists is force-deleted so it can be rescheduled.
- apiGroups: [""]
  resources: ["nodes"]
  verbs: ["get"]
# On MessageQueue deletion: is the namespace terminating? Then the finalizer never blocks it.
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["get"]
{{- end }}
