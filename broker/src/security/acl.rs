//! Kafka ACLs: bindings (what the metadata quorum stores), the filters of DescribeAcls and
//! DeleteAcls, and the authorizer's decision, with Kafka's rules:
//!
//! - super users may do everything;
//! - a binding applies to a resource when its pattern is LITERAL and names it (or is `*`), or
//!   PREFIXED and the resource's name starts with it; to a principal when it names it or is
//!   `User:*`; to a host when it names the client's address or is `*`;
//! - a DENY binding for the operation (or ALL) wins over any ALLOW;
//! - an ALLOW binding for the operation (or ALL) allows it; READ, WRITE, DELETE and ALTER
//!   imply DESCRIBE, ALTER_CONFIGS implies DESCRIBE_CONFIGS;
//! - nothing applies: denied (Kafka's `allow.everyone.if.no.acl.found=false`).
//!
//! The enums carry Kafka's wire numbers (`ResourceType`, `PatternType`, `AclOperation`,
//! `AclPermissionType` in Kafka's sources).

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::Principal;

/// The name of the one cluster resource.
pub const CLUSTER_NAME: &str = "kafka-cluster";
/// The literal resource name matching every resource of its type.
pub const WILDCARD: &str = "*";

macro_rules! wire_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $code:literal / $text:literal),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum $name { $($variant),* }

        impl $name {
            /// Kafka's wire number.
            pub fn code(self) -> i8 {
                match self { $($name::$variant => $code),* }
            }

            /// From Kafka's wire number; `None` for UNKNOWN and numbers Kafka does not define.
            pub fn from_code(code: i8) -> Option<$name> {
                match code { $($code => Some($name::$variant),)* _ => None }
            }

            /// Kafka's name (as the tools print it).
            pub fn name(self) -> &'static str {
                match self { $($name::$variant => $text),* }
            }
        }
    };
}

wire_enum!(
    /// What kind of resource a binding is about.
    ResourceType {
        Any = 1 / "ANY",
        Topic = 2 / "TOPIC",
        Group = 3 / "GROUP",
        Cluster = 4 / "CLUSTER",
        TransactionalId = 5 / "TRANSACTIONAL_ID",
        DelegationToken = 6 / "DELEGATION_TOKEN",
        User = 7 / "USER",
    }
);

wire_enum!(
    /// How a binding's resource name matches: a filter may also say ANY or MATCH.
    PatternType {
        Any = 1 / "ANY",
        Match = 2 / "MATCH",
        Literal = 3 / "LITERAL",
        Prefixed = 4 / "PREFIXED",
    }
);

wire_enum!(
    /// What a request does to a resource.
    Operation {
        Any = 1 / "ANY",
        All = 2 / "ALL",
        Read = 3 / "READ",
        Write = 4 / "WRITE",
        Create = 5 / "CREATE",
        Delete = 6 / "DELETE",
        Alter = 7 / "ALTER",
        Describe = 8 / "DESCRIBE",
        ClusterAction = 9 / "CLUSTER_ACTION",
        DescribeConfigs = 10 / "DESCRIBE_CONFIGS",
        AlterConfigs = 11 / "ALTER_CONFIGS",
        IdempotentWrite = 12 / "IDEMPOTENT_WRITE",
        CreateTokens = 13 / "CREATE_TOKENS",
        DescribeTokens = 14 / "DESCRIBE_TOKENS",
        TwoPhaseCommit = 15 / "TWO_PHASE_COMMIT",
    }
);

wire_enum!(
    /// Whether a binding allows or denies.
    Permission {
        Any = 1 / "ANY",
        Deny = 2 / "DENY",
        Allow = 3 / "ALLOW",
    }
);

/// One ACL: `principal` may (or may not) do `operation` from `host` on the resources
/// `resource_type` / `name` / `pattern` select.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AclBinding {
    pub resource_type: ResourceType,
    pub name: String,
    pub pattern: PatternType,
    pub principal: String,
    pub host: String,
    pub operation: Operation,
    pub permission: Permission,
}

impl AclBinding {
    /// Why a binding cannot be created (CreateAcls answers INVALID_REQUEST with it), or `None`.
    pub fn invalid(&self) -> Option<String> {
        if matches!(self.resource_type, ResourceType::Any) {
            return Some("the resource type must not be ANY".into());
        }
        if !matches!(self.pattern, PatternType::Literal | PatternType::Prefixed) {
            return Some("the pattern type must be LITERAL or PREFIXED".into());
        }
        if matches!(self.operation, Operation::Any) {
            return Some("the operation must not be ANY".into());
        }
        if matches!(self.permission, Permission::Any) {
            return Some("the permission type must be ALLOW or DENY".into());
        }
        if self.name.is_empty() {
            return Some("the resource name must not be empty".into());
        }
        if self.resource_type == ResourceType::Cluster && self.name != CLUSTER_NAME {
            return Some(format!("the cluster resource is named {CLUSTER_NAME}"));
        }
        if Principal::parse(&self.principal).is_none() {
            return Some(format!(
                "principal {:?} is not of the form Type:name",
                self.principal
            ));
        }
        if self.host.is_empty() {
            return Some("the host must be * or an address".into());
        }
        None
    }

    fn applies_to_resource(&self, resource_type: ResourceType, name: &str) -> bool {
        self.resource_type == resource_type
            && match self.pattern {
                PatternType::Literal => self.name == name || self.name == WILDCARD,
                PatternType::Prefixed => name.starts_with(self.name.as_str()),
                _ => false,
            }
    }

    fn applies_to(&self, principal: &str, host: &str) -> bool {
        (self.principal == principal || self.principal == "User:*")
            && (self.host == host || self.host == WILDCARD)
    }
}

/// A DescribeAcls / DeleteAcls filter: `None` and ANY match everything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclFilter {
    pub resource_type: ResourceType,
    pub name: Option<String>,
    pub pattern: PatternType,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: Operation,
    pub permission: Permission,
}

impl AclFilter {
    /// Kafka's `AclBindingFilter.matches`.
    pub fn matches(&self, b: &AclBinding) -> bool {
        let resource =
            self.resource_type == ResourceType::Any || self.resource_type == b.resource_type;
        let name = match (&self.name, self.pattern) {
            (None, PatternType::Any | PatternType::Match) => true,
            (None, p) => p == b.pattern,
            // MATCH: the bindings that would apply to a resource of that name.
            (Some(n), PatternType::Match) => match b.pattern {
                PatternType::Literal => b.name == *n || b.name == WILDCARD,
                PatternType::Prefixed => n.starts_with(b.name.as_str()),
                _ => false,
            },
            (Some(n), PatternType::Any) => b.name == *n,
            (Some(n), p) => p == b.pattern && b.name == *n,
        };
        let principal = self.principal.as_ref().is_none_or(|p| *p == b.principal);
        let host = self.host.as_ref().is_none_or(|h| *h == b.host);
        let operation = self.operation == Operation::Any || self.operation == b.operation;
        let permission = self.permission == Permission::Any || self.permission == b.permission;
        resource && name && principal && host && operation && permission
    }
}

/// The operations whose ALLOW binding allows `op`.
fn implied_by(op: Operation) -> &'static [Operation] {
    use Operation::*;
    match op {
        Describe => &[Describe, Read, Write, Delete, Alter, All],
        DescribeConfigs => &[DescribeConfigs, AlterConfigs, All],
        Read => &[Read, All],
        Write => &[Write, All],
        Create => &[Create, All],
        Delete => &[Delete, All],
        Alter => &[Alter, All],
        ClusterAction => &[ClusterAction, All],
        AlterConfigs => &[AlterConfigs, All],
        IdempotentWrite => &[IdempotentWrite, All],
        CreateTokens => &[CreateTokens, All],
        DescribeTokens => &[DescribeTokens, All],
        TwoPhaseCommit => &[TwoPhaseCommit, All],
        All => &[All],
        Any => &[],
    }
}

/// The decision: super users, then the bindings, by Kafka's rules (module docs).
#[derive(Debug, Clone, Default)]
pub struct Authorizer {
    super_users: BTreeSet<Principal>,
}

impl Authorizer {
    pub fn new(super_users: impl IntoIterator<Item = Principal>) -> Authorizer {
        Authorizer {
            super_users: super_users.into_iter().collect(),
        }
    }

    pub fn is_super_user(&self, principal: &Principal) -> bool {
        self.super_users.contains(principal)
    }

    /// Whether `principal`, connected from `host`, may do `op` on the resource.
    pub fn authorize<'a>(
        &self,
        bindings: impl IntoIterator<Item = &'a AclBinding>,
        principal: &Principal,
        host: IpAddr,
        op: Operation,
        resource_type: ResourceType,
        name: &str,
    ) -> bool {
        if self.is_super_user(principal) {
            return true;
        }
        let who = principal.to_string();
        let from = host.to_string();
        let allowing = implied_by(op);
        let mut allowed = false;
        for b in bindings {
            if !b.applies_to_resource(resource_type, name) || !b.applies_to(&who, &from) {
                continue;
            }
            match b.permission {
                Permission::Deny if b.operation == op || b.operation == Operation::All => {
                    return false
                }
                Permission::Allow if allowing.contains(&b.operation) => allowed = true,
                _ => {}
            }
        }
        allowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bind(
        rt: ResourceType,
        name: &str,
        pattern: PatternType,
        principal: &str,
        op: Operation,
        perm: Permission,
    ) -> AclBinding {
        AclBinding {
            resource_type: rt,
            name: name.into(),
            pattern,
            principal: principal.into(),
            host: "*".into(),
            operation: op,
            permission: perm,
        }
    }

    fn local() -> IpAddr {
        IpAddr::from([127, 0, 0, 1])
    }

    use Operation::*;
    use PatternType::*;
    use Permission::*;
    use ResourceType::*;

    #[test]
    fn literal_prefixed_and_wildcard_bindings_apply_as_in_kafka() {
        let acls = [
            bind(Topic, "orders", Literal, "User:alice", Read, Allow),
            bind(Topic, "app-", Prefixed, "User:bob", Write, Allow),
            bind(Topic, "*", Literal, "User:carol", Describe, Allow),
        ];
        let a = Authorizer::default();
        let alice = Principal::user("alice");
        let bob = Principal::user("bob");
        let carol = Principal::user("carol");
        assert!(a.authorize(&acls, &alice, local(), Read, Topic, "orders"));
        assert!(!a.authorize(&acls, &alice, local(), Read, Topic, "orders2"));
        assert!(!a.authorize(&acls, &alice, local(), Write, Topic, "orders"));
        // READ implies DESCRIBE.
        assert!(a.authorize(&acls, &alice, local(), Describe, Topic, "orders"));
        assert!(a.authorize(&acls, &bob, local(), Write, Topic, "app-events"));
        assert!(!a.authorize(&acls, &bob, local(), Write, Topic, "ap"));
        assert!(!a.authorize(&acls, &bob, local(), Write, Group, "app-events"));
        assert!(a.authorize(&acls, &carol, local(), Describe, Topic, "anything"));
        assert!(!a.authorize(&acls, &carol, local(), Read, Topic, "anything"));
    }

    #[test]
    fn deny_wins_and_nothing_applying_denies() {
        let acls = [
            bind(Topic, "*", Literal, "User:*", All, Allow),
            bind(Topic, "secret-", Prefixed, "User:eve", Read, Deny),
        ];
        let a = Authorizer::default();
        let eve = Principal::user("eve");
        assert!(a.authorize(&acls, &eve, local(), Read, Topic, "public"));
        assert!(!a.authorize(&acls, &eve, local(), Read, Topic, "secret-plans"));
        // DENY READ does not deny DESCRIBE.
        assert!(a.authorize(&acls, &eve, local(), Describe, Topic, "secret-plans"));
        assert!(!a.authorize(&acls, &eve, local(), Read, Group, "g"));
        assert!(!a.authorize(&[], &eve, local(), Read, Topic, "public"));
    }

    #[test]
    fn super_users_and_hosts() {
        let mut b = bind(Topic, "t", Literal, "User:alice", Read, Allow);
        b.host = "10.0.0.1".into();
        let a = Authorizer::new([Principal::user("admin")]);
        let alice = Principal::user("alice");
        assert!(!a.authorize([&b], &alice, local(), Read, Topic, "t"));
        assert!(a.authorize([&b], &alice, IpAddr::from([10, 0, 0, 1]), Read, Topic, "t"));
        assert!(a.authorize(
            [],
            &Principal::user("admin"),
            local(),
            Alter,
            Cluster,
            CLUSTER_NAME
        ));
    }

    #[test]
    fn filters_match_as_kafkas_binding_filters() {
        let lit = bind(Topic, "orders", Literal, "User:alice", Read, Allow);
        let pre = bind(Topic, "ord", Prefixed, "User:alice", Read, Allow);
        let wild = bind(Topic, "*", Literal, "User:bob", Write, Deny);
        let any = AclFilter {
            resource_type: ResourceType::Any,
            name: None,
            pattern: PatternType::Any,
            principal: None,
            host: None,
            operation: Operation::Any,
            permission: Permission::Any,
        };
        assert!([&lit, &pre, &wild].iter().all(|b| any.matches(b)));
        let matching = AclFilter {
            name: Some("orders".into()),
            pattern: Match,
            ..any.clone()
        };
        assert!(matching.matches(&lit) && matching.matches(&pre) && matching.matches(&wild));
        let exact = AclFilter {
            name: Some("ord".into()),
            pattern: Prefixed,
            ..any.clone()
        };
        assert!(exact.matches(&pre) && !exact.matches(&lit));
        let by_name = AclFilter {
            name: Some("orders".into()),
            ..any.clone()
        };
        assert!(by_name.matches(&lit) && !by_name.matches(&pre));
        let literal_only = AclFilter {
            pattern: Literal,
            ..any.clone()
        };
        assert!(literal_only.matches(&lit) && !literal_only.matches(&pre));
        let bob_deny = AclFilter {
            principal: Some("User:bob".into()),
            permission: Deny,
            ..any
        };
        assert!(bob_deny.matches(&wild) && !bob_deny.matches(&lit));
    }

    #[test]
    fn invalid_bindings_say_why() {
        let ok = bind(Topic, "t", Literal, "User:a", Read, Allow);
        assert_eq!(ok.invalid(), None);
        let bad = [
            AclBinding {
                resource_type: ResourceType::Any,
                ..ok.clone()
            },
            AclBinding {
                pattern: Match,
                ..ok.clone()
            },
            AclBinding {
                operation: Operation::Any,
                ..ok.clone()
            },
            AclBinding {
                permission: Permission::Any,
                ..ok.clone()
            },
            AclBinding {
                principal: "alice".into(),
                ..ok.clone()
            },
            AclBinding {
                resource_type: Cluster,
                name: "other".into(),
                ..ok.clone()
            },
        ];
        for b in bad {
            assert!(b.invalid().is_some(), "{b:?}");
        }
        assert_eq!(Operation::from_code(4), Some(Write));
        assert_eq!(Operation::from_code(0), None);
        assert_eq!(PatternType::Prefixed.code(), 4);
        assert_eq!(ResourceType::TransactionalId.name(), "TRANSACTIONAL_ID");
    }
}
