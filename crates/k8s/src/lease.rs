//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go's leaderelection does:
//! whoever holds an unexpired lease leads; the holder renews it every third of its duration;
//! a standby takes it over once `renewTime + leaseDurationSeconds` has passed. Every write
//! carries the resourceVersion it read, so two candidates cannot both win (409 for the loser).
//!
//! `vireo serve --kubernetes` campaigns before it opens the store or binds its port: a standby
//! replica neither writes the SQLite file nor serves, and a rolling update hands over when the
//! old process releases the lease on exit (or when it expires, after a crash). A leader that
//! cannot renew before its lease runs out exits, so two never act at once.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, PostParams};

#[derive(Debug, Clone)]
pub struct Election {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub duration: Duration,
}

/// How long after `renew` a lease of `duration` seconds counts as expired.
fn expired(spec: &LeaseSpec, now: Timestamp) -> bool {
    let Some(renewed) = spec.renew_time.as_ref().map(|t| t.0) else {
        return true;
    };
    let secs = i64::from(spec.lease_duration_seconds.unwrap_or(15));
    renewed + std::time::Duration::from_secs(secs.max(0) as u64) < now
}

impl Election {
    fn api(&self, client: &kube::Client) -> Api<Lease> {
        Api::namespaced(client.clone(), &self.namespace)
    }

    fn spec(&self, transitions: i32, acquired: Option<MicroTime>) -> LeaseSpec {
        let now = MicroTime(Timestamp::now());
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.duration.as_secs().max(1) as i32),
            acquire_time: Some(acquired.unwrap_or_else(|| now.clone())),
            renew_time: Some(now),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    /// One attempt: Ok(true) when this candidate holds the lease afterwards.
    pub async fn try_acquire(&self, client: &kube::Client) -> Result<bool, kube::Error> {
        let api = self.api(client);
        match api.get_opt(&self.name).await? {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..Default::default()
                    },
                    spec: Some(self.spec(0, None)),
                };
                match api.create(&PostParams::default(), &lease).await {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                    Err(e) => Err(e),
                }
            }
            Some(mut lease) => {
                let spec = lease.spec.clone().unwrap_or_default();
                let ours = spec.holder_identity.as_deref() == Some(self.identity.as_str());
                let free = spec.holder_identity.as_deref().is_none_or(str::is_empty);
                if !ours && !free && !expired(&spec, Timestamp::now()) {
                    return Ok(false);
                }
                let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!ours);
                let acquired = if ours {
                    spec.acquire_time.clone()
                } else {
                    None
                };
                lease.spec = Some(self.spec(transitions, acquired));
                // The resourceVersion read above makes this a compare-and-swap.
                match api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
                {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Campaigns until this candidate leads, logging who holds the lease meanwhile.
    pub async fn acquire(&self, client: &kube::Client) {
        let mut announced = false;
        loop {
            match self.try_acquire(client).await {
                Ok(true) => {
                    tracing::info!(lease = %format!("{}/{}", self.namespace, self.name), identity = %self.identity, "leading: holding the lease");
                    return;
                }
                Ok(false) => {
                    if !announced {
                        tracing::info!(lease = %format!("{}/{}", self.namespace, self.name), "standing by: another replica holds the lease");
                        announced = true;
                    }
                }
                Err(e) => tracing::warn!("campaigning for the lease: {e}"),
            }
            tokio::time::sleep(self.duration / 5).await;
        }
    }

    /// Renews every third of the duration; returns when leadership is lost: another holder,
    /// or no renewal confirmed for two thirds of the duration. Each attempt is bounded by a
    /// third of it, so a partitioned leader steps down before a standby may take over (at the
    /// full duration; clocks are assumed to agree within the remaining third).
    pub async fn hold(&self, client: &kube::Client) -> String {
        let mut last_ok = tokio::time::Instant::now();
        let step_down = self.duration * 2 / 3;
        loop {
            tokio::time::sleep(self.duration / 3).await;
            let started = tokio::time::Instant::now();
            let outcome = tokio::time::timeout(self.duration / 3, self.try_acquire(client)).await;
            match outcome {
                Ok(Ok(true)) => last_ok = started,
                Ok(Ok(false)) => return "another replica holds the lease".into(),
                failed => {
                    let why = match failed {
                        Ok(Err(e)) => e.to_string(),
                        _ => format!("no answer within {:?}", self.duration / 3),
                    };
                    tracing::warn!("renewing the lease: {why}");
                    if last_ok.elapsed() >= step_down {
                        return format!("could not renew the lease for {step_down:?}: {why}");
                    }
                }
            }
        }
    }

    /// Gives the lease up (on a clean exit), so a standby takes over at once.
    pub async fn release(&self, client: &kube::Client) {
        let api = self.api(client);
        let Ok(Some(mut lease)) = api.get_opt(&self.name).await else {
            return;
        };
        let mut spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        lease.spec = Some(spec);
        if let Err(e) = api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            tracing::warn!("releasing the lease: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_expires_after_its_duration_from_the_last_renewal() {
        let now = Timestamp::now();
        let spec = |ago: u64, secs: i32| LeaseSpec {
            renew_time: Some(MicroTime(now - std::time::Duration::from_secs(ago))),
            lease_duration_seconds: Some(secs),
            ..Default::default()
        };
        assert!(!expired(&spec(5, 15), now));
        assert!(expired(&spec(16, 15), now));
        assert!(expired(&LeaseSpec::default(), now), "never renewed");
    }
}
