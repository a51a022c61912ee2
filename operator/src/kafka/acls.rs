//! ACLs and SCRAM users: the calls that keep a secured cluster's declared users in place
//! (DescribeAcls, CreateAcls, DeleteAcls, DescribeUserScramCredentials,
//! AlterUserScramCredentials), and the pure diff between declared and present ACLs.
//!
//! Bindings are exact (no filters with wildcards) so a deletion removes only the binding the
//! operator means, never one an administrator made by hand for the same principal.

use std::collections::BTreeSet;

use kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest,
    DescribeUserScramCredentialsRequest,
};

use super::security::{random_bytes, salted_password, SaslMechanism};
use super::{code_text, str_bytes, AdminClient};
use crate::error::Result;

/// What an ACL names (Kafka's resource type codes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AclResourceType {
    Topic,
    Group,
    Cluster,
    TransactionalId,
}

impl AclResourceType {
    fn code(self) -> i8 {
        match self {
            AclResourceType::Topic => 2,
            AclResourceType::Group => 3,
            AclResourceType::Cluster => 4,
            AclResourceType::TransactionalId => 5,
        }
    }

    fn from_code(code: i8) -> Option<Self> {
        Some(match code {
            2 => AclResourceType::Topic,
            3 => AclResourceType::Group,
            4 => AclResourceType::Cluster,
            5 => AclResourceType::TransactionalId,
            _ => return None,
        })
    }
}

/// How the resource name matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AclPatternType {
    Literal,
    Prefixed,
}

impl AclPatternType {
    fn code(self) -> i8 {
        match self {
            AclPatternType::Literal => 3,
            AclPatternType::Prefixed => 4,
        }
    }

    fn from_code(code: i8) -> Option<Self> {
        Some(match code {
            3 => AclPatternType::Literal,
            4 => AclPatternType::Prefixed,
            _ => return None,
        })
    }
}

/// What an ACL allows or denies (Kafka's operation codes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AclOperation {
    All,
    Read,
    Write,
    Create,
    Delete,
    Alter,
    Describe,
    ClusterAction,
    DescribeConfigs,
    AlterConfigs,
    IdempotentWrite,
}

const OPERATIONS: [(AclOperation, i8); 11] = [
    (AclOperation::All, 2),
    (AclOperation::Read, 3),
    (AclOperation::Write, 4),
    (AclOperation::Create, 5),
    (AclOperation::Delete, 6),
    (AclOperation::Alter, 7),
    (AclOperation::Describe, 8),
    (AclOperation::ClusterAction, 9),
    (AclOperation::DescribeConfigs, 10),
    (AclOperation::AlterConfigs, 11),
    (AclOperation::IdempotentWrite, 12),
];

impl AclOperation {
    fn code(self) -> i8 {
        OPERATIONS
            .iter()
            .find(|(op, _)| *op == self)
            .map_or(0, |(_, c)| *c)
    }

    fn from_code(code: i8) -> Option<Self> {
        OPERATIONS
            .iter()
            .find(|(_, c)| *c == code)
            .map(|(op, _)| *op)
    }
}

/// Allow or deny.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AclPermission {
    Allow,
    Deny,
}

impl AclPermission {
    fn code(self) -> i8 {
        match self {
            AclPermission::Deny => 2,
            AclPermission::Allow => 3,
        }
    }

    fn from_code(code: i8) -> Option<Self> {
        Some(match code {
            2 => AclPermission::Deny,
            3 => AclPermission::Allow,
            _ => return None,
        })
    }
}

/// One ACL, exactly as the broker stores it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AclBinding {
    pub resource_type: AclResourceType,
    pub resource_name: String,
    pub pattern: AclPatternType,
    /// `User:<name>`.
    pub principal: String,
    /// `*` for any host.
    pub host: String,
    pub operation: AclOperation,
    pub permission: AclPermission,
}

/// What to create and what to delete so that, among the bindings of `managed` principals, the
/// broker holds exactly `desired`. Bindings of other principals are never deleted: an
/// administrator's own ACLs stay.
pub fn acl_changes(
    desired: &[AclBinding],
    present: &[AclBinding],
    managed: &BTreeSet<String>,
) -> (Vec<AclBinding>, Vec<AclBinding>) {
    let want: BTreeSet<&AclBinding> = desired.iter().collect();
    let have: BTreeSet<&AclBinding> = present.iter().collect();
    let create = want.difference(&have).map(|b| (*b).clone()).collect();
    let delete = have
        .difference(&want)
        .filter(|b| managed.contains(&b.principal))
        .map(|b| (*b).clone())
        .collect();
    (create, delete)
}

/// Number of PBKDF2 iterations for credentials the operator writes: Kafka's minimum for
/// SCRAM-SHA-512 and the broker's own default.
pub const SCRAM_ITERATIONS: u32 = 4096;

/// RESOURCE_NOT_FOUND: what deleting a credential that does not exist answers.
const RESOURCE_NOT_FOUND: i16 = 91;

impl AdminClient {
    /// Every ACL the broker holds that this client can represent (others, e.g. on delegation
    /// tokens, are skipped).
    pub async fn describe_acls(&mut self) -> Result<Vec<AclBinding>> {
        let name = "DescribeAcls";
        let version = self.version_for::<DescribeAclsRequest>(name)?;
        // The codec's defaults for the nullable filters are empty strings, which match only
        // empty names: `None` says "any".
        let request = DescribeAclsRequest::default()
            .with_resource_name_filter(None)
            .with_principal_filter(None)
            .with_host_filter(None)
            .with_resource_type_filter(1) // ANY
            .with_pattern_type_filter(1) // ANY
            .with_operation(1) // ANY
            .with_permission_type(1); // ANY
        let response = self.send(&request, version, name).await?;
        if let Some(err) = code_text(response.error_code, response.error_message.as_ref()) {
            return Err(self.err(name, err));
        }
        let mut out = Vec::new();
        for resource in response.resources {
            let (Some(resource_type), Some(pattern)) = (
                AclResourceType::from_code(resource.resource_type),
                AclPatternType::from_code(resource.pattern_type),
            ) else {
                continue;
            };
            for acl in resource.acls {
                let (Some(operation), Some(permission)) = (
                    AclOperation::from_code(acl.operation),
                    AclPermission::from_code(acl.permission_type),
                ) else {
                    continue;
                };
                out.push(AclBinding {
                    resource_type,
                    resource_name: resource.resource_name.to_string(),
                    pattern,
                    principal: acl.principal.to_string(),
                    host: acl.host.to_string(),
                    operation,
                    permission,
                });
            }
        }
        out.sort();
        Ok(out)
    }

    /// Creates `bindings` (creating one that exists is a no-op on the broker).
    pub async fn create_acls(&mut self, bindings: &[AclBinding]) -> Result<()> {
        if bindings.is_empty() {
            return Ok(());
        }
        let name = "CreateAcls";
        let version = self.version_for::<CreateAclsRequest>(name)?;
        let creations = bindings
            .iter()
            .map(|b| {
                AclCreation::default()
                    .with_resource_type(b.resource_type.code())
                    .with_resource_name(str_bytes(&b.resource_name))
                    .with_resource_pattern_type(b.pattern.code())
                    .with_principal(str_bytes(&b.principal))
                    .with_host(str_bytes(&b.host))
                    .with_operation(b.operation.code())
                    .with_permission_type(b.permission.code())
            })
            .collect();
        let response = self
            .send(
                &CreateAclsRequest::default().with_creations(creations),
                version,
                name,
            )
            .await?;
        for (b, r) in bindings.iter().zip(&response.results) {
            if let Some(err) = code_text(r.error_code, r.error_message.as_ref()) {
                return Err(self.err(name, format!("{b:?}: {err}")));
            }
        }
        Ok(())
    }

    /// Deletes exactly `bindings`.
    pub async fn delete_acls(&mut self, bindings: &[AclBinding]) -> Result<()> {
        if bindings.is_empty() {
            return Ok(());
        }
        let name = "DeleteAcls";
        let version = self.version_for::<DeleteAclsRequest>(name)?;
        let filters = bindings
            .iter()
            .map(|b| {
                DeleteAclsFilter::default()
                    .with_resource_type_filter(b.resource_type.code())
                    .with_resource_name_filter(Some(str_bytes(&b.resource_name)))
                    .with_pattern_type_filter(b.pattern.code())
                    .with_principal_filter(Some(str_bytes(&b.principal)))
                    .with_host_filter(Some(str_bytes(&b.host)))
                    .with_operation(b.operation.code())
                    .with_permission_type(b.permission.code())
            })
            .collect();
        let response = self
            .send(
                &DeleteAclsRequest::default().with_filters(filters),
                version,
                name,
            )
            .await?;
        for (b, r) in bindings.iter().zip(&response.filter_results) {
            if let Some(err) = code_text(r.error_code, r.error_message.as_ref()) {
                return Err(self.err(name, format!("{b:?}: {err}")));
            }
        }
        Ok(())
    }

    /// The users that have a SCRAM credential, with their mechanisms.
    pub async fn describe_scram_users(&mut self) -> Result<Vec<(String, Vec<SaslMechanism>)>> {
        let name = "DescribeUserScramCredentials";
        let version = self.version_for::<DescribeUserScramCredentialsRequest>(name)?;
        // `users: None` asks for every user.
        let request = DescribeUserScramCredentialsRequest::default().with_users(None);
        let response = self.send(&request, version, name).await?;
        if let Some(err) = code_text(response.error_code, response.error_message.as_ref()) {
            return Err(self.err(name, err));
        }
        let mut out: Vec<(String, Vec<SaslMechanism>)> = response
            .results
            .into_iter()
            .filter(|r| r.error_code == 0)
            .map(|r| {
                let mechanisms = r
                    .credential_infos
                    .iter()
                    .filter_map(|c| match c.mechanism {
                        1 => Some(SaslMechanism::ScramSha256),
                        2 => Some(SaslMechanism::ScramSha512),
                        _ => None,
                    })
                    .collect();
                (r.user.to_string(), mechanisms)
            })
            .collect();
        out.sort();
        Ok(out)
    }

    /// Creates or replaces `user`'s credential for `mechanism` (a SCRAM one) from `password`:
    /// the salted password is computed here, so the password itself never leaves the operator.
    pub async fn upsert_scram_user(
        &mut self,
        user: &str,
        mechanism: SaslMechanism,
        password: &str,
    ) -> Result<()> {
        let name = "AlterUserScramCredentials";
        let code = mechanism.scram_code().ok_or_else(|| {
            self.err(
                name,
                format!("{} has no SCRAM credential", mechanism.name()),
            )
        })?;
        let salt = random_bytes(32).map_err(|e| self.err(name, e))?;
        let salted = salted_password(mechanism, password, &salt, SCRAM_ITERATIONS);
        let upsertion = ScramCredentialUpsertion::default()
            .with_name(str_bytes(user))
            .with_mechanism(code)
            .with_iterations(i32::try_from(SCRAM_ITERATIONS).unwrap_or(i32::MAX))
            .with_salt(salt.into())
            .with_salted_password(salted.into());
        let request = AlterUserScramCredentialsRequest::default().with_upsertions(vec![upsertion]);
        self.alter_scram(request, name, &[]).await
    }

    /// Deletes `user`'s credential for `mechanism`; a user without one is not an error.
    pub async fn delete_scram_user(&mut self, user: &str, mechanism: SaslMechanism) -> Result<()> {
        let name = "AlterUserScramCredentials";
        let code = mechanism.scram_code().ok_or_else(|| {
            self.err(
                name,
                format!("{} has no SCRAM credential", mechanism.name()),
            )
        })?;
        let deletion = ScramCredentialDeletion::default()
            .with_name(str_bytes(user))
            .with_mechanism(code);
        let request = AlterUserScramCredentialsRequest::default().with_deletions(vec![deletion]);
        self.alter_scram(request, name, &[RESOURCE_NOT_FOUND]).await
    }

    async fn alter_scram(
        &mut self,
        request: AlterUserScramCredentialsRequest,
        name: &'static str,
        ignore: &[i16],
    ) -> Result<()> {
        let version = self.version_for::<AlterUserScramCredentialsRequest>(name)?;
        let response = self.send(&request, version, name).await?;
        for r in response
            .results
            .iter()
            .filter(|r| !ignore.contains(&r.error_code))
        {
            if let Some(err) = code_text(r.error_code, r.error_message.as_ref()) {
                return Err(self.err(name, format!("user {}: {err}", r.user.as_str())));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(principal: &str, topic: &str, op: AclOperation) -> AclBinding {
        AclBinding {
            resource_type: AclResourceType::Topic,
            resource_name: topic.into(),
            pattern: AclPatternType::Literal,
            principal: principal.into(),
            host: "*".into(),
            operation: op,
            permission: AclPermission::Allow,
        }
    }

    #[test]
    fn changes_create_the_missing_and_delete_only_managed_extras() {
        let desired = vec![
            binding("User:app", "orders", AclOperation::Read),
            binding("User:app", "orders", AclOperation::Write),
        ];
        let present = vec![
            binding("User:app", "orders", AclOperation::Read),
            binding("User:app", "payments", AclOperation::Read),
            binding("User:admin-made", "orders", AclOperation::Read),
            binding("User:gone", "orders", AclOperation::Write),
        ];
        let managed: BTreeSet<String> = ["User:app".to_string(), "User:gone".to_string()].into();
        let (create, delete) = acl_changes(&desired, &present, &managed);
        assert_eq!(
            create,
            vec![binding("User:app", "orders", AclOperation::Write)]
        );
        assert_eq!(
            delete,
            vec![
                binding("User:gone", "orders", AclOperation::Write),
                binding("User:app", "payments", AclOperation::Read),
            ]
        );
        let (again, none) = acl_changes(&desired, &desired, &managed);
        assert!(again.is_empty() && none.is_empty());
    }

    #[test]
    fn codes_round_trip() {
        for (op, code) in OPERATIONS {
            assert_eq!(op.code(), code);
            assert_eq!(AclOperation::from_code(code), Some(op));
        }
        for t in [
            AclResourceType::Topic,
            AclResourceType::Group,
            AclResourceType::Cluster,
            AclResourceType::TransactionalId,
        ] {
            assert_eq!(AclResourceType::from_code(t.code()), Some(t));
        }
        for p in [AclPatternType::Literal, AclPatternType::Prefixed] {
            assert_eq!(AclPatternType::from_code(p.code()), Some(p));
        }
        for p in [AclPermission::Allow, AclPermission::Deny] {
            assert_eq!(AclPermission::from_code(p.code()), Some(p));
        }
        assert_eq!(
            AclOperation::from_code(1),
            None,
            "ANY is a filter, not an operation"
        );
    }
}
