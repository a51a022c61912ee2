//! The ACL APIs under `--authorizer acl` (`kafka-acls.sh`, `Admin.createAcls` ...):
//! DescribeAcls from the quorum's state, CreateAcls and DeleteAcls through the quorum, so every
//! broker checks requests against the same bindings from the moment the change is applied.
//! The caller's ALTER (DESCRIBE) on the cluster was checked by `dispatch`.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::{codes, sb};
use crate::cluster::state::{Command, Outcome};
use crate::context::BrokerContext;
use crate::security::acl::{
    AclBinding, AclFilter, Operation, PatternType, Permission, ResourceType,
};

/// Kafka's NOT_CONTROLLER: the quorum did not take the change (retriable).
const NOT_CONTROLLER: i16 = 41;

fn invalid(message: String) -> (i16, Option<StrBytes>) {
    (codes::INVALID_REQUEST, Some(sb(&message)))
}

/// A filter from the wire; `Err` with the reason when a field holds a number Kafka does not
/// define.
#[allow(clippy::too_many_arguments)]
fn filter(
    resource_type: i8,
    name: Option<&StrBytes>,
    pattern: i8,
    principal: Option<&StrBytes>,
    host: Option<&StrBytes>,
    operation: i8,
    permission: i8,
) -> Result<AclFilter, String> {
    Ok(AclFilter {
        resource_type: ResourceType::from_code(resource_type)
            .ok_or_else(|| format!("unknown resource type {resource_type}"))?,
        name: name.map(|n| n.as_str().to_string()),
        pattern: PatternType::from_code(pattern)
            .ok_or_else(|| format!("unknown pattern type {pattern}"))?,
        principal: principal.map(|p| p.as_str().to_string()),
        host: host.map(|h| h.as_str().to_string()),
        operation: Operation::from_code(operation)
            .ok_or_else(|| format!("unknown operation {operation}"))?,
        permission: Permission::from_code(permission)
            .ok_or_else(|| format!("unknown permission type {permission}"))?,
    })
}

/// DescribeAcls: the bindings the filter matches, grouped by resource as Kafka answers.
pub fn describe(ctx: &BrokerContext, req: DescribeAclsRequest) -> DescribeAclsResponse {
    use describe_acls_response::{AclDescription, DescribeAclsResource};
    let f = match filter(
        req.resource_type_filter,
        req.resource_name_filter.as_ref(),
        req.pattern_type_filter,
        req.principal_filter.as_ref(),
        req.host_filter.as_ref(),
        req.operation,
        req.permission_type,
    ) {
        Ok(f) => f,
        Err(e) => {
            ctx.metrics
                .error_code("DescribeAcls", codes::INVALID_REQUEST);
            return DescribeAclsResponse::default()
                .with_error_code(codes::INVALID_REQUEST)
                .with_error_message(Some(sb(&e)));
        }
    };
    let state = ctx.cluster.state();
    let mut by_resource: BTreeMap<(ResourceType, &str, PatternType), Vec<AclDescription>> =
        BTreeMap::new();
    for b in state.acls.iter().filter(|b| f.matches(b)) {
        by_resource
            .entry((b.resource_type, b.name.as_str(), b.pattern))
            .or_default()
            .push(
                AclDescription::default()
                    .with_principal(sb(&b.principal))
                    .with_host(sb(&b.host))
                    .with_operation(b.operation.code())
                    .with_permission_type(b.permission.code()),
            );
    }
    let resources = by_resource
        .into_iter()
        .map(|((rt, name, pattern), acls)| {
            DescribeAclsResource::default()
                .with_resource_type(rt.code())
                .with_resource_name(sb(name))
                .with_pattern_type(pattern.code())
                .with_acls(acls)
        })
        .collect();
    DescribeAclsResponse::default().with_resources(resources)
}

/// CreateAcls: every valid binding in one quorum change; each creation answered on its own.
pub async fn create(ctx: &Arc<BrokerContext>, req: CreateAclsRequest) -> CreateAclsResponse {
    use create_acls_response::AclCreationResult;
    let mut results: Vec<(i16, Option<StrBytes>)> = Vec::with_capacity(req.creations.len());
    let mut bindings = Vec::new();
    for c in &req.creations {
        let parsed = (|| {
            let b = AclBinding {
                resource_type: ResourceType::from_code(c.resource_type)
                    .ok_or_else(|| format!("unknown resource type {}", c.resource_type))?,
                name: c.resource_name.as_str().to_string(),
                pattern: PatternType::from_code(c.resource_pattern_type)
                    .ok_or_else(|| format!("unknown pattern type {}", c.resource_pattern_type))?,
                principal: c.principal.as_str().to_string(),
                host: c.host.as_str().to_string(),
                operation: Operation::from_code(c.operation)
                    .ok_or_else(|| format!("unknown operation {}", c.operation))?,
                permission: Permission::from_code(c.permission_type)
                    .ok_or_else(|| format!("unknown permission type {}", c.permission_type))?,
            };
            match b.invalid() {
                Some(why) => Err(why),
                None => Ok(b),
            }
        })();
        match parsed {
            Ok(b) => {
                bindings.push(b);
                results.push((codes::NONE, None));
            }
            Err(why) => results.push(invalid(why)),
        }
    }
    if !bindings.is_empty() {
        let count = bindings.len();
        match ctx.cluster.propose(Command::CreateAcls { bindings }).await {
            Ok(Outcome::Done) => {
                tracing::info!(count, "ACL bindings created");
            }
            Ok(other) => fail_all(&mut results, &format!("unexpected outcome {other:?}")),
            Err(e) => fail_all(
                &mut results,
                &format!("the metadata quorum did not accept the change: {e}"),
            ),
        }
    }
    for (code, _) in &results {
        ctx.metrics.error_code("CreateAcls", *code);
    }
    CreateAclsResponse::default().with_results(
        results
            .into_iter()
            .map(|(code, msg)| {
                AclCreationResult::default()
                    .with_error_code(code)
                    .with_error_message(msg)
            })
            .collect(),
    )
}

/// Marks every so far successful result as failed (the quorum refused the whole change).
fn fail_all(results: &mut [(i16, Option<StrBytes>)], message: &str) {
    for r in results.iter_mut().filter(|r| r.0 == codes::NONE) {
        *r = (NOT_CONTROLLER, Some(sb(message)));
    }
}

/// DeleteAcls: every filter in one quorum change; each answered with what it removed.
pub async fn delete(ctx: &Arc<BrokerContext>, req: DeleteAclsRequest) -> DeleteAclsResponse {
    use delete_acls_response::{DeleteAclsFilterResult, DeleteAclsMatchingAcl};
    let parsed: Vec<Result<AclFilter, String>> = req
        .filters
        .iter()
        .map(|f| {
            filter(
                f.resource_type_filter,
                f.resource_name_filter.as_ref(),
                f.pattern_type_filter,
                f.principal_filter.as_ref(),
                f.host_filter.as_ref(),
                f.operation,
                f.permission_type,
            )
        })
        .collect();
    let filters: Vec<AclFilter> = parsed.iter().filter_map(|f| f.clone().ok()).collect();
    let removed: Result<Vec<Vec<AclBinding>>, String> = if filters.is_empty() {
        Ok(Vec::new())
    } else {
        match ctx.cluster.propose(Command::DeleteAcls { filters }).await {
            Ok(Outcome::AclsDeleted(r)) => Ok(r),
            Ok(other) => Err(format!("unexpected outcome {other:?}")),
            Err(e) => Err(format!(
                "the metadata quorum did not accept the change: {e}"
            )),
        }
    };
    let mut removed_iter = removed.as_ref().ok().map(|r| r.iter());
    let results = parsed
        .into_iter()
        .map(|f| match (f, &removed) {
            (Err(why), _) => DeleteAclsFilterResult::default()
                .with_error_code(codes::INVALID_REQUEST)
                .with_error_message(Some(sb(&why))),
            (Ok(_), Err(why)) => DeleteAclsFilterResult::default()
                .with_error_code(NOT_CONTROLLER)
                .with_error_message(Some(sb(why))),
            (Ok(_), Ok(_)) => {
                let gone = removed_iter
                    .as_mut()
                    .and_then(|i| i.next())
                    .cloned()
                    .unwrap_or_default();
                DeleteAclsFilterResult::default().with_matching_acls(
                    gone.iter()
                        .map(|b| {
                            DeleteAclsMatchingAcl::default()
                                .with_resource_type(b.resource_type.code())
                                .with_resource_name(sb(&b.name))
                                .with_pattern_type(b.pattern.code())
                                .with_principal(sb(&b.principal))
                                .with_host(sb(&b.host))
                                .with_operation(b.operation.code())
                                .with_permission_type(b.permission.code())
                        })
                        .collect(),
                )
            }
        })
        .collect::<Vec<_>>();
    for r in &results {
        ctx.metrics.error_code("DeleteAcls", r.error_code);
    }
    let deleted: usize = results.iter().map(|r| r.matching_acls.len()).sum();
    if deleted > 0 {
        tracing::info!(count = deleted, "ACL bindings deleted");
    }
    DeleteAclsResponse::default().with_filter_results(results)
}
