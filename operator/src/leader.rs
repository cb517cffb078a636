//! Leader election through a `coordination.k8s.io/v1` Lease, so that two
//! replicas never issue certificates at once. Writes carry the Lease's
//! resourceVersion: of two replicas racing for it, one write fails.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, ObjectMeta, PostParams};

/// How long a Lease stays valid without renewal.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// How often the holder renews it (and others try to take it).
pub const RENEW_INTERVAL: Duration = Duration::from_secs(2);

/// One replica's side of the election.
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
}

/// Whether a Lease held by someone else, last renewed at `renewed`, has
/// lapsed at `now`.
pub fn lapsed(renewed: Option<Timestamp>, duration_seconds: Option<i32>, now: Timestamp) -> bool {
    let duration = SignedDuration::from_secs(i64::from(duration_seconds.unwrap_or(0)));
    renewed.is_none_or(|renewed| renewed + duration < now)
}

impl Elector {
    /// An elector for Lease `name` in the Lease API's namespace, as `identity`
    /// (the pod name).
    pub fn new(api: Api<Lease>, name: &str, identity: &str) -> Self {
        Self {
            api,
            name: name.to_owned(),
            identity: identity.to_owned(),
        }
    }

    /// Takes the Lease if it is free or lapsed, renews it if it is ours.
    /// `Ok(true)`: we hold it now.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let duration = i32::try_from(LEASE_DURATION.as_secs()).unwrap_or(i32::MAX);
        let ours = |acquired: Timestamp, transitions: i32| LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(duration),
            acquire_time: Some(MicroTime(acquired)),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..Default::default()
        };
        let result = match self.api.get_opt(&self.name).await? {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..Default::default()
                    },
                    spec: Some(ours(now, 0)),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
            Some(mut lease) => {
                let spec = lease.spec.take().unwrap_or_default();
                let held_by_us = spec.holder_identity.as_deref() == Some(self.identity.as_str());
                let renewed = spec.renew_time.as_ref().map(|t| t.0);
                if !held_by_us
                    && spec.holder_identity.is_some()
                    && !lapsed(renewed, spec.lease_duration_seconds, now)
                {
                    return Ok(false);
                }
                let transitions = spec.lease_transitions.unwrap_or(0);
                lease.spec = Some(if held_by_us {
                    ours(spec.acquire_time.map_or(now, |t| t.0), transitions)
                } else {
                    ours(now, transitions + 1)
                });
                self.api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
            }
        };
        match result {
            Ok(_) => Ok(true),
            // Another replica wrote first.
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Gives the Lease up, if this replica holds it, so that a replica
    /// standing by takes it at its next try instead of waiting for it to
    /// lapse. Called on shutdown, once this replica has stopped working.
    pub async fn release(&self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.acquire_time = None;
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            // Changed meanwhile: then it is not ours any more.
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
            result => result.map(|_| ()),
        }
    }

    /// Waits until this replica holds the Lease.
    pub async fn acquire(&self) {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => return,
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(%error, lease = %self.name, "could not take the lease")
                }
            }
            tokio::time::sleep(RENEW_INTERVAL).await;
        }
    }

    /// Renews the Lease until it is lost: returns when another replica holds
    /// it, or when renewals have failed for longer than the Lease lasts
    /// (another replica may then take it, so this one must stop working).
    pub async fn hold(&self) {
        let mut last_renewal = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(RENEW_INTERVAL).await;
            match self.try_acquire_or_renew().await {
                Ok(true) => last_renewal = tokio::time::Instant::now(),
                Ok(false) => {
                    tracing::error!(lease = %self.name, "another replica holds the lease");
                    return;
                }
                Err(error) => {
                    tracing::warn!(%error, lease = %self.name, "could not renew the lease");
                    if last_renewal.elapsed() >= LEASE_DURATION - RENEW_INTERVAL {
                        tracing::error!(lease = %self.name, "lease not renewed in time");
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_lapses_after_its_duration() {
        let renewed: Timestamp = "2026-11-22T08:00:00Z".parse().expect("time");
        let at = |seconds| renewed + SignedDuration::from_secs(seconds);
        assert!(!lapsed(Some(renewed), Some(15), at(10)));
        assert!(!lapsed(Some(renewed), Some(15), at(15)));
        assert!(lapsed(Some(renewed), Some(15), at(16)));
        assert!(lapsed(None, Some(15), at(0)), "never renewed");
    }
}
