//! Leader election on a `coordination.k8s.io/v1` Lease, so two operator replicas can run with
//! exactly one acting.
//!
//! Every write carries the resourceVersion that was read, so two candidates racing for the same
//! Lease cannot both win (the loser gets a 409 Conflict). The holder renews every
//! `renew_every`; others take over once `renewTime + leaseDurationSeconds` has passed, or at once
//! when the holder released the Lease on shutdown (empty holderIdentity).
//!
//! Every attempt has a deadline: an API request on a connection that died silently (a network
//! partition) would otherwise never end, and a holder waiting on it would go on acting while a
//! standby takes the expired Lease. A holder that cannot renew steps down `step_down_margin`
//! before its Lease may pass on; the operator then abandons its reconciles within a second
//! (`LOST_LEASE_GRACE` in lib.rs) and exits.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use tokio::sync::watch;

use crate::error::{Error, Result};

/// What to do with a Lease as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseDecision {
    /// We hold it: renew.
    Renew,
    /// Free or expired: take it.
    Acquire,
    /// Someone else holds it.
    Wait,
}

/// Decides from the Lease's spec. Pure, for tests.
pub fn decide(
    spec: Option<&LeaseSpec>,
    me: &str,
    now: Timestamp,
    default_duration: Duration,
) -> LeaseDecision {
    let Some(spec) = spec else {
        return LeaseDecision::Acquire;
    };
    let holder = spec.holder_identity.as_deref().unwrap_or_default();
    if holder == me {
        return LeaseDecision::Renew;
    }
    if holder.is_empty() {
        return LeaseDecision::Acquire;
    }
    let duration = spec
        .lease_duration_seconds
        .map(|s| SignedDuration::from_secs(i64::from(s)))
        .unwrap_or_else(|| {
            SignedDuration::try_from(default_duration).unwrap_or(SignedDuration::from_secs(15))
        });
    match spec.renew_time.as_ref().or(spec.acquire_time.as_ref()) {
        Some(renewed)
            if renewed
                .0
                .saturating_add(duration)
                .is_ok_and(|until| until > now) =>
        {
            LeaseDecision::Wait
        }
        _ => LeaseDecision::Acquire,
    }
}

/// How long a renewal attempt started at `now` may take (at most `attempt`), or None when it
/// is time to step down: a leader stops acting `margin` before its Lease may be taken over
/// (`renewed_at + lease_duration`), for clock skew between replicas and for the controllers
/// to stop. Pure, for tests.
pub fn renew_limit(
    renewed_at: tokio::time::Instant,
    now: tokio::time::Instant,
    lease_duration: Duration,
    margin: Duration,
    attempt: Duration,
) -> Option<Duration> {
    let step_down_at = renewed_at + lease_duration.saturating_sub(margin);
    let left = step_down_at.saturating_duration_since(now);
    (!left.is_zero()).then(|| left.min(attempt))
}

/// A candidate for one Lease.
#[derive(Clone)]
pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    lease_duration: Duration,
    renew_every: Duration,
    /// Bound of one attempt: an API server answers a Lease read or write in milliseconds, a
    /// loaded one in a second or two.
    attempt_timeout: Duration,
    /// How long before the Lease may pass to another candidate this one stops acting.
    step_down_margin: Duration,
    /// Pause before trying again after a failed renewal.
    retry_every: Duration,
}

impl std::fmt::Debug for LeaderElector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderElector")
            .field("name", &self.name)
            .field("identity", &self.identity)
            .finish()
    }
}

impl LeaderElector {
    /// A candidate named `identity` for Lease `name` in `api`'s namespace.
    pub fn new(api: Api<Lease>, name: &str, identity: &str) -> Self {
        LeaderElector {
            api,
            name: name.to_string(),
            identity: identity.to_string(),
            lease_duration: Duration::from_secs(15),
            // renewed often so a few attempts fit before stepping down (client-go's
            // defaults: 15 s lease, renew deadline 10 s, retry every 2 s)
            renew_every: Duration::from_secs(2),
            attempt_timeout: Duration::from_secs(3),
            step_down_margin: Duration::from_secs(5),
            retry_every: Duration::from_secs(1),
        }
    }

    fn err(&self, reason: impl std::fmt::Display) -> Error {
        Error::LeaderElection {
            lease: self.name.clone(),
            reason: reason.to_string(),
        }
    }

    /// One attempt: true when we hold the Lease afterwards.
    pub async fn try_acquire_or_renew(&self) -> Result<bool> {
        let now = Timestamp::now();
        let existing = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|e| self.err(e))?;
        let decision = decide(
            existing.as_ref().and_then(|l| l.spec.as_ref()),
            &self.identity,
            now,
            self.lease_duration,
        );
        let duration_secs = i32::try_from(self.lease_duration.as_secs()).unwrap_or(15);
        match (existing, decision) {
            (_, LeaseDecision::Wait) => Ok(false),
            (None, _) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(self.identity.clone()),
                        lease_duration_seconds: Some(duration_secs),
                        acquire_time: Some(MicroTime(now)),
                        renew_time: Some(MicroTime(now)),
                        lease_transitions: Some(0),
                        ..LeaseSpec::default()
                    }),
                };
                match self.api.create(&PostParams::default(), &lease).await {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                    Err(e) => Err(self.err(e)),
                }
            }
            (Some(mut lease), decision) => {
                let mut spec = lease.spec.take().unwrap_or_default();
                if decision == LeaseDecision::Acquire {
                    spec.holder_identity = Some(self.identity.clone());
                    spec.acquire_time = Some(MicroTime(now));
                    spec.lease_transitions =
                        Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
                }
                spec.lease_duration_seconds = Some(duration_secs);
                spec.renew_time = Some(MicroTime(now));
                lease.spec = Some(spec);
                // replace carries metadata.resourceVersion: a concurrent writer makes this a 409
                match self
                    .api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
                {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                    Err(e) => Err(self.err(e)),
                }
            }
        }
    }

    /// One attempt bounded by `limit`: a request on a connection that went silent (a network
    /// partition, a dropped flow) would otherwise wait forever, since API requests have no read
    /// deadline of their own, and a candidate waiting on it would go on acting as leader.
    async fn attempt_within(&self, limit: Duration) -> Result<bool> {
        match tokio::time::timeout(limit, self.try_acquire_or_renew()).await {
            Ok(result) => result,
            Err(_) => Err(self.err(format!(
                "the API server did not answer within {} ms",
                limit.as_millis()
            ))),
        }
    }

    /// Waits until this candidate holds the Lease; false when `shutdown` fired first.
    pub async fn acquire(&self, shutdown: &mut watch::Receiver<bool>) -> bool {
        loop {
            match self.attempt_within(self.attempt_timeout).await {
                Ok(true) => return true,
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "leader election attempt failed"),
            }
            tokio::select! {
                // a short retry: a released Lease is taken within about a second
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.wait_for(|stop| *stop) => return false,
            }
        }
    }

    /// Renews until `shutdown` fires (returns true) or the Lease is lost (returns false): lost
    /// means another candidate took it, or no renewal succeeded for so long that another
    /// candidate may take over within `step_down_margin`. A failed renewal is tried again every
    /// `retry_every`, each attempt bounded, so a short outage costs nothing.
    pub async fn hold(&self, shutdown: &mut watch::Receiver<bool>) -> bool {
        // Counted from the start of the last successful attempt: the renewTime it wrote is at
        // most that old, so others may take over `lease_duration` after it.
        let mut renewed_at = tokio::time::Instant::now();
        let mut pause = self.renew_every;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = shutdown.wait_for(|stop| *stop) => return true,
            }
            let started = tokio::time::Instant::now();
            let Some(limit) = renew_limit(
                renewed_at,
                started,
                self.lease_duration,
                self.step_down_margin,
                self.attempt_timeout,
            ) else {
                tracing::error!(lease = %self.name, "the leader Lease could not be renewed in time; stepping down");
                return false;
            };
            match self.attempt_within(limit).await {
                Ok(true) => {
                    renewed_at = started;
                    pause = self.renew_every;
                }
                Ok(false) => {
                    tracing::error!(lease = %self.name, "another replica took the leader Lease");
                    return false;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "renewing the leader Lease failed; trying again");
                    pause = self.retry_every;
                }
            }
        }
    }

    /// Gives the Lease up so a standby takes over at once.
    pub async fn release(&self) -> Result<()> {
        let Some(mut lease) = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|e| self.err(e))?
        else {
            return Ok(());
        };
        let mut spec = lease.spec.take().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        lease.spec = Some(spec);
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
            Err(e) => Err(self.err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).expect("valid")
    }

    fn held_by(holder: &str, renewed: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(at(renewed))),
            ..LeaseSpec::default()
        }
    }

    const D: Duration = Duration::from_secs(15);

    #[test]
    fn a_renewal_may_not_outlive_the_step_down_point() {
        let t0 = tokio::time::Instant::now();
        let (margin, attempt) = (Duration::from_secs(5), Duration::from_secs(2));
        let at = |s: u64| t0 + Duration::from_millis(s);
        // 5 s after a renewal: a whole attempt
        assert_eq!(
            renew_limit(t0, at(5_000), D, margin, attempt),
            Some(attempt)
        );
        // 9.5 s after: only the 0.5 s left before stepping down at 10 s
        assert_eq!(
            renew_limit(t0, at(9_500), D, margin, attempt),
            Some(Duration::from_millis(500))
        );
        // 10 s after (the attempts failed): step down, 5 s before others may take over
        assert_eq!(renew_limit(t0, at(10_000), D, margin, attempt), None);
        assert_eq!(renew_limit(t0, at(60_000), D, margin, attempt), None);
    }

    #[test]
    fn missing_lease_is_acquired() {
        assert_eq!(decide(None, "a", at(0), D), LeaseDecision::Acquire);
    }

    #[test]
    fn own_lease_is_renewed() {
        assert_eq!(
            decide(Some(&held_by("a", 0)), "a", at(100), D),
            LeaseDecision::Renew
        );
    }

    #[test]
    fn live_lease_of_another_is_respected() {
        assert_eq!(
            decide(Some(&held_by("b", 0)), "a", at(10), D),
            LeaseDecision::Wait
        );
    }

    #[test]
    fn expired_lease_is_taken_over() {
        assert_eq!(
            decide(Some(&held_by("b", 0)), "a", at(16), D),
            LeaseDecision::Acquire
        );
    }

    #[test]
    fn released_lease_is_taken_at_once() {
        let mut spec = held_by("b", 0);
        spec.holder_identity = None;
        assert_eq!(decide(Some(&spec), "a", at(1), D), LeaseDecision::Acquire);
    }
}
