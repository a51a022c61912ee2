//! The operator's error type.
//!
//! Every reconcile error knows whether it is transient (the API server or a broker hiccuped:
//! requeue with backoff) or a user mistake (the spec cannot work: report it on status and wait for
//! the spec to change, no hot loop), and has a short label for the errors-by-reason metric.

/// Errors of the reconciler and the operator process.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("Kubernetes API call {action} failed: {source}")]
    Kube {
        /// What the operator was doing, e.g. "apply StatefulSet default/orders".
        action: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// The spec cannot be turned into a working cluster.
    #[error("invalid spec of MessageQueue {name}: {reason}")]
    InvalidSpec {
        /// namespace/name of the MessageQueue.
        name: String,
        /// What is wrong and what to change.
        reason: String,
    },
    /// The object lacks a field every stored object has (name, namespace, uid).
    #[error("MessageQueue is missing {field}")]
    MissingObjectField {
        /// The missing field.
        field: &'static str,
    },
    /// A Kafka admin request to a broker failed.
    #[error("Kafka admin request {request} to {addr} failed: {reason}")]
    Kafka {
        /// Broker address.
        addr: String,
        /// API name, e.g. "CreateTopics".
        request: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// Serialising an object failed (a bug, not an input problem).
    #[error("serialising {what} failed: {source}")]
    Serialize {
        /// What was being serialised.
        what: &'static str,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
    /// The finalizer machinery failed.
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    /// Leader election failed.
    #[error("leader election on Lease {lease}: {reason}")]
    LeaderElection {
        /// namespace/name of the Lease.
        lease: String,
        /// What went wrong.
        reason: String,
    },
    /// Configuration of the operator process is invalid.
    #[error("invalid operator setting {setting}: {reason}")]
    Config {
        /// The flag / env var.
        setting: &'static str,
        /// Why.
        reason: String,
    },
    /// Generating or reading a certificate, a key or a password failed.
    #[error("certificate {what}: {reason}")]
    Certificate {
        /// What was being made or read, e.g. "CA of shop/orders".
        what: String,
        /// What went wrong (never key material).
        reason: String,
    },
    /// Binding or serving the HTTP endpoint failed.
    #[error("HTTP server on {addr}: {source}")]
    Http {
        /// The listen address.
        addr: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Short label for the `errors` metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube { .. } => "kube_api",
            Error::InvalidSpec { .. } => "invalid_spec",
            Error::MissingObjectField { .. } => "missing_field",
            Error::Kafka { .. } => "kafka_admin",
            Error::Serialize { .. } => "serialize",
            Error::Finalizer(inner) => match inner.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e)
                | kube::runtime::finalizer::Error::CleanupFailed(e) => e.metric_label(),
                _ => "finalizer",
            },
            Error::LeaderElection { .. } => "leader_election",
            Error::Config { .. } => "config",
            Error::Http { .. } => "http",
            Error::Certificate { .. } => "certificate",
        }
    }

    /// A user mistake that retrying cannot fix: wait for the spec to change.
    pub fn is_user_error(&self) -> bool {
        match self {
            Error::InvalidSpec { .. } => true,
            Error::Finalizer(inner) => match inner.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e)
                | kube::runtime::finalizer::Error::CleanupFailed(e) => e.is_user_error(),
                _ => false,
            },
            _ => false,
        }
    }

    /// The API server refused because the namespace is being deleted: nothing to retry, the
    /// MessageQueue goes away with it (its finalizer runs on the deletion event).
    pub fn is_namespace_terminating(&self) -> bool {
        match self {
            Error::Kube {
                source: kube::Error::Api(e),
                ..
            } => e.code == 403 && e.message.contains("because it is being terminated"),
            Error::Finalizer(inner) => match inner.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e)
                | kube::runtime::finalizer::Error::CleanupFailed(e) => e.is_namespace_terminating(),
                _ => false,
            },
            _ => false,
        }
    }

    /// The API server refused a write made on a stale resourceVersion (409 Conflict).
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Kube { source: kube::Error::Api(e), .. } if e.code == 409)
    }

    /// Shorthand for a Kubernetes API error with its action.
    pub fn kube(action: impl Into<String>, source: kube::Error) -> Self {
        Error::Kube {
            action: action.into(),
            source,
        }
    }
}

/// Result alias of the operator.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_spec_is_a_user_error_with_its_own_label() {
        let err = Error::InvalidSpec {
            name: "ns/mq".into(),
            reason: "replicas must be at least 1".into(),
        };
        assert!(err.is_user_error());
        assert_eq!(err.metric_label(), "invalid_spec");
        assert!(err.to_string().contains("ns/mq"));
    }

    #[test]
    fn kafka_errors_are_transient() {
        let err = Error::Kafka {
            addr: "10.0.0.1:9092".into(),
            request: "Metadata",
            reason: "connection refused".into(),
        };
        assert!(!err.is_user_error());
        assert_eq!(err.metric_label(), "kafka_admin");
    }

    fn api_error(code: u16, message: &str) -> kube::Error {
        let status: kube::core::Status = serde_json::from_value(serde_json::json!({
            "status": "Failure", "code": code, "message": message, "reason": "Forbidden"
        }))
        .expect("status parses");
        kube::Error::Api(Box::new(status))
    }

    #[test]
    fn namespace_terminating_refusal_is_recognised() {
        let err = Error::kube(
            "apply ConfigMap x",
            api_error(403, "configmaps \"x\" is forbidden: unable to create new content in namespace ns because it is being terminated"),
        );
        assert!(err.is_namespace_terminating());
        let wrapped = Error::Finalizer(Box::new(kube::runtime::finalizer::Error::ApplyFailed(err)));
        assert!(wrapped.is_namespace_terminating());
        let other = Error::kube("apply ConfigMap x", api_error(403, "forbidden by RBAC"));
        assert!(!other.is_namespace_terminating());
        assert!(!other.is_user_error());
    }

    #[test]
    fn only_a_409_is_a_conflict() {
        let stale = Error::kube(
            "add finalizer to MessageQueue a",
            api_error(409, "the object has been modified; please apply your changes to the latest version and try again"),
        );
        assert!(stale.is_conflict());
        let refused = Error::kube(
            "add finalizer to MessageQueue a",
            api_error(403, "forbidden"),
        );
        assert!(!refused.is_conflict());
    }

    #[test]
    fn finalizer_wrapping_keeps_the_inner_classification() {
        let inner = Error::InvalidSpec {
            name: "a/b".into(),
            reason: "x".into(),
        };
        let err = Error::Finalizer(Box::new(kube::runtime::finalizer::Error::ApplyFailed(
            inner,
        )));
        assert!(err.is_user_error());
        assert_eq!(err.metric_label(), "invalid_spec");
    }
}
