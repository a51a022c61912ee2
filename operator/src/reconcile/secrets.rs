//! The secrets phase: the CA, the brokers' certificate (generated, renewed, or asked of
//! cert-manager) and the operator's own credentials, before the brokers that mount them; then
//! how the operator connects to the brokers, for every later phase.
//!
//! Key material and passwords go only into Secrets: never into logs, status or Events.

use std::collections::BTreeMap;
use std::time::SystemTime;

use crate::events::EventType;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ApiResource, DynamicObject, Patch};

use super::{ssa, Context};
use crate::builders::Names;
use crate::certs;
use crate::crd::{MessageQueue, OPERATOR_USER};
use crate::error::{Error, Result};
use crate::kafka::{ClientSecurity, SaslCredentials, SaslMechanism};
use crate::security::{self, Security, TlsSource, CA_CRT, CA_KEY, TLS_CRT, TLS_KEY};

/// Makes sure the Secrets the brokers mount exist and are current, and records how the
/// operator connects to the brokers.
pub(super) async fn ensure(mq: &MessageQueue, ctx: &Context, names: &Names) -> Result<()> {
    let Some(security) = Security::of(&mq.spec) else {
        ctx.set_security(names, ClientSecurity::default());
        return Ok(());
    };
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &names.namespace);
    let ca_pem = match &security.source {
        TlsSource::Generated => Some(generated_certificate(mq, ctx, names, &secrets).await?),
        TlsSource::CertManager(issuer) => {
            apply_certificate(ctx, names, issuer).await?;
            read_ca(ctx, &secrets, names, &names.tls_secret()).await?
        }
        TlsSource::Secret(name) => read_ca(ctx, &secrets, names, name).await?,
    };
    let sasl = if security.sasl() {
        Some(SaslCredentials {
            mechanism: SaslMechanism::ScramSha512,
            username: OPERATOR_USER.to_string(),
            password: operator_password(mq, ctx, names, &secrets).await?,
        })
    } else {
        None
    };
    ctx.set_security(
        names,
        ClientSecurity {
            tls_ca_pem: ca_pem.filter(|_| security.client_tls),
            sasl,
        },
    );
    Ok(())
}

/// The CA the clients of `names`' brokers verify them with, for the users' Secrets: None
/// without client TLS or before the certificate exists.
pub(super) fn client_ca(ctx: &Context, names: &Names) -> Option<String> {
    ctx.security_for(names).tls_ca_pem
}

/// A fresh read: what a Secret is written on the strength of (a new CA, a new password, a
/// reissued certificate) is decided on one, never on the watch cache alone.
async fn get(secrets: &Api<Secret>, name: &str) -> Result<Option<Secret>> {
    secrets
        .get_opt(name)
        .await
        .map_err(|e| Error::kube(format!("get Secret {name}"), e))
}

async fn apply_secret(secrets: &Api<Secret>, secret: &Secret) -> Result<()> {
    let name = secret.metadata.name.clone().unwrap_or_default();
    secrets
        .patch(&name, &ssa(), &Patch::Apply(secret))
        .await
        .map_err(|e| Error::kube(format!("apply Secret {name}"), e))?;
    Ok(())
}

async fn read_ca(
    ctx: &Context,
    secrets: &Api<Secret>,
    names: &Names,
    name: &str,
) -> Result<Option<String>> {
    // Only read here, never written: the cache serves it when it has it (a Secret without the
    // operator's label, such as the user's own, is read with a GET).
    let secret = ctx.cached_or_get(secrets, &names.namespace, name).await?;
    if secret.is_none() {
        tracing::info!(
            secret = name,
            "TLS Secret not there yet; the brokers wait for it"
        );
    }
    Ok(secret.and_then(|s| security::secret_text(&s, CA_CRT)))
}

/// The operator's CA (made once, kept) and the brokers' certificate signed by it (issued anew
/// when absent, for other names or CA, or near its expiry); returns the CA certificate.
async fn generated_certificate(
    mq: &MessageQueue,
    ctx: &Context,
    names: &Names,
    secrets: &Api<Secret>,
) -> Result<String> {
    let now = SystemTime::now();
    let ca_name = names.ca_secret();
    let ca_of = |s: Option<Secret>| {
        s.and_then(|s| {
            Some(certs::CertPair {
                cert_pem: security::secret_text(&s, CA_CRT)?,
                key_pem: security::secret_text(&s, CA_KEY)?,
            })
        })
    };
    let cached_ca = ca_of(ctx.cached::<Secret>(&names.namespace, &ca_name));
    let existing_ca = match cached_ca {
        Some(ca) => Some(ca),
        None => ca_of(get(secrets, &ca_name).await?),
    };
    let ca = match existing_ca {
        Some(ca) => ca,
        None => {
            let ca = certs::generate_ca(&security::ca_common_name(names), now)?;
            let secret = security::secret(
                mq,
                &ctx.build,
                ca_name.clone(),
                "Opaque",
                BTreeMap::from([
                    (CA_CRT.to_string(), ca.cert_pem.clone()),
                    (CA_KEY.to_string(), ca.key_pem.clone()),
                ]),
                BTreeMap::new(),
            )?;
            apply_secret(secrets, &secret).await?;
            ctx.publish(
                mq,
                EventType::Normal,
                "CAGenerated",
                "Certificate",
                format!("generated the CA in Secret {ca_name}"),
            )
            .await;
            ca
        }
    };

    let dns_names = security::certificate_dns_names(names, &ctx.build.cluster_domain);
    let issued_for = certs::fingerprint(&dns_names, &ca.cert_pem);
    let tls_name = names.tls_secret();
    let renewal = |existing: Option<&Secret>| {
        let has_material = existing.is_some_and(|s| {
            security::secret_text(s, TLS_CRT).is_some()
                && security::secret_text(s, TLS_KEY).is_some()
        });
        let annotations = existing.map(|s| s.metadata.annotations.clone().unwrap_or_default());
        certs::renewal_reason(annotations.as_ref(), has_material, &issued_for, now)
    };
    let cached = ctx.cached::<Secret>(&names.namespace, &tls_name);
    let mut reason = cached.as_ref().and_then(|s| renewal(Some(s)));
    if cached.is_none() || reason.is_some() {
        reason = renewal(get(secrets, &tls_name).await?.as_ref());
    }
    if let Some(reason) = reason {
        let leaf =
            certs::issue_certificate(&ca, &security::ca_common_name(names), &dns_names, now)?;
        let secret = security::secret(
            mq,
            &ctx.build,
            tls_name.clone(),
            "kubernetes.io/tls",
            BTreeMap::from([
                (TLS_CRT.to_string(), leaf.cert_pem),
                (TLS_KEY.to_string(), leaf.key_pem),
                (CA_CRT.to_string(), ca.cert_pem.clone()),
            ]),
            certs::issued_annotations(&issued_for, now),
        )?;
        apply_secret(secrets, &secret).await?;
        ctx.publish(
            mq,
            EventType::Normal,
            "CertificateIssued",
            "Certificate",
            format!("issued the brokers' certificate in Secret {tls_name} ({reason})"),
        )
        .await;
    }
    Ok(ca.cert_pem)
}

/// The cert-manager Certificate, server-side applied as a dynamic object.
async fn apply_certificate(
    ctx: &Context,
    names: &Names,
    issuer: &crate::crd::IssuerRef,
) -> Result<()> {
    let resource = ApiResource {
        group: "cert-manager.io".into(),
        version: "v1".into(),
        api_version: "cert-manager.io/v1".into(),
        kind: "Certificate".into(),
        plural: "certificates".into(),
    };
    let api: Api<DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), &names.namespace, &resource);
    let value = security::cert_manager_certificate(names, &ctx.build.cluster_domain, issuer);
    let object: DynamicObject =
        serde_json::from_value(value).map_err(|source| Error::Serialize {
            what: "cert-manager Certificate",
            source,
        })?;
    api.patch(&names.tls_secret(), &ssa(), &Patch::Apply(&object))
        .await
        .map_err(|e| {
            Error::kube(
                format!("apply cert-manager Certificate {}", names.tls_secret()),
                e,
            )
        })?;
    Ok(())
}

/// The operator's own password, generated into `<name>-operator-credentials` the first time.
async fn operator_password(
    mq: &MessageQueue,
    ctx: &Context,
    names: &Names,
    secrets: &Api<Secret>,
) -> Result<String> {
    let name = names.operator_credentials_secret();
    let password_of = |s: Option<Secret>| s.and_then(|s| security::secret_text(&s, "password"));
    if let Some(password) = password_of(ctx.cached::<Secret>(&names.namespace, &name)) {
        return Ok(password);
    }
    if let Some(password) = password_of(get(secrets, &name).await?) {
        return Ok(password);
    }
    let password = certs::generate_password()?;
    let secret = security::secret(
        mq,
        &ctx.build,
        name,
        "Opaque",
        security::operator_credentials_data(&password),
        BTreeMap::new(),
    )?;
    apply_secret(secrets, &secret).await?;
    Ok(password)
}
