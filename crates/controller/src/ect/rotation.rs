//! SSH key rotation without a moment where Azure ML cannot log in:
//! generate the next key → add it on the VM (VMAccess, old key kept) → re-attach the compute
//! with it → remove every other key from the VM → make it the current key in the Secret.
//! Progress is kept as an annotation on the key Secret, so a restart resumes at the same step.

use std::{collections::BTreeMap, time::Duration};

use chrono::{DateTime, Utc};
use edgetrain_api::{EdgeComputeTargetStatus, edge_compute_target::SshKeyRotation};
use k8s_openapi::{ByteString, api::core::v1::Secret};
use kube::{Api, api::PostParams};

use super::{apply::Applied, attach::AttachTarget, desired::Desired, observe::Clients};
use crate::{
    Error, Result,
    runtime::factory::VM_ACCESS_EXTENSION,
    ssh::{self, KeyPair},
};

/// Annotation on the key Secret holding the rotation step reached.
pub const STAGE_ANNOTATION: &str = "edgetrain.dev/ssh-key-rotation";
pub const NEXT_PRIVATE_KEY: &str = "ssh-privatekey-next";
pub const NEXT_PUBLIC_KEY: &str = "ssh-publickey-next";

/// The next thing to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Idle,
    Generate,
    InstallOnVm,
    AttachCompute,
    PruneOldKeys,
    Promote,
}

/// Pure: whether the current key must be replaced. The token rotates when it differs from the
/// one the current key answers; `maxAge` when the key is older.
pub fn due(
    rotation: Option<&SshKeyRotation>,
    status: &EdgeComputeTargetStatus,
    max_age: Option<Duration>,
    now: DateTime<Utc>,
) -> bool {
    let Some(rotation) = rotation else {
        return false;
    };
    let token_changed = rotation.token.is_some() && rotation.token != status.ssh_key_rotation_token;
    let too_old = match (max_age, status.ssh_key_rotated_at.as_ref()) {
        (Some(max), Some(at)) => {
            let at = DateTime::<Utc>::from_timestamp_nanos(at.0.as_nanosecond() as i64);
            (now - at).to_std().unwrap_or_default() >= max
        }
        _ => false,
    };
    token_changed || too_old
}

/// Pure: the step after `stage` (the annotation), given whether a rotation is due.
pub fn next_step(due: bool, stage: Option<&str>) -> Step {
    match stage {
        None if due => Step::Generate,
        None => Step::Idle,
        Some("generated") => Step::InstallOnVm,
        Some("installed") => Step::AttachCompute,
        Some("attached") => Step::PruneOldKeys,
        Some("pruned") => Step::Promote,
        // Unknown value: start over from the VM install, which is idempotent.
        Some(_) => Step::InstallOnVm,
    }
}

fn text(secret: &Secret, key: &str) -> Option<String> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .and_then(|b| String::from_utf8(b.0.clone()).ok())
}

pub fn stage(secret: &Secret) -> Option<String> {
    secret
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(STAGE_ANNOTATION).cloned())
}

fn set_stage(secret: &mut Secret, stage: Option<&str>) {
    let a = secret
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new);
    match stage {
        Some(s) => {
            a.insert(STAGE_ANNOTATION.into(), s.into());
        }
        None => {
            a.remove(STAGE_ANNOTATION);
        }
    }
}

fn next_key(secret: &Secret) -> Result<KeyPair> {
    let pem = text(secret, NEXT_PRIVATE_KEY)
        .ok_or_else(|| Error::SshKey("rotation in progress but the next key is missing".into()))?;
    KeyPair::from_private(&pem)
}

async fn save(api: &Api<Secret>, secret: &Secret) -> Result<()> {
    let name = secret.metadata.name.clone().unwrap_or_default();
    api.replace(&name, &PostParams::default(), secret)
        .await
        .map_err(|e| Error::kube(format!("updating Secret {name}"), e))?;
    Ok(())
}

/// After a failed Azure operation, go back to the VM install (every step is idempotent).
pub async fn restart(api: &Api<Secret>, mut secret: Secret) -> Result<()> {
    if stage(&secret).is_some() {
        set_stage(&mut secret, Some("generated"));
        save(api, &secret).await?;
    }
    Ok(())
}

/// What one call did.
#[derive(Debug, Default)]
pub struct Advanced {
    pub step: Option<Step>,
    pub applied: Applied,
    /// Set when the next key became the current one.
    pub promoted: Option<KeyPair>,
}

/// Performs `step` (one Azure write at most) and records the stage reached.
#[allow(clippy::too_many_arguments)]
pub async fn advance(
    api: &Api<Secret>,
    mut secret: Secret,
    step: Step,
    clients: &Clients,
    desired: &Desired,
    location: &str,
    address: &str,
    now: DateTime<Utc>,
) -> Result<Advanced> {
    let mut out = Advanced {
        step: Some(step),
        ..Default::default()
    };
    let vm = &desired.ids.vm;
    let admin = &desired.vm.admin_username;
    let ext_id = format!("{vm}/extensions/{VM_ACCESS_EXTENSION}");
    match step {
        Step::Idle => out.step = None,
        Step::Generate => {
            let next = KeyPair::generate_blocking().await?;
            let data = secret.data.get_or_insert_with(BTreeMap::new);
            data.insert(
                NEXT_PRIVATE_KEY.into(),
                ByteString(next.private_pem().secret().as_bytes().to_vec()),
            );
            data.insert(
                NEXT_PUBLIC_KEY.into(),
                ByteString(next.public_openssh.clone().into_bytes()),
            );
            set_stage(&mut secret, Some("generated"));
            save(api, &secret).await?;
        }
        Step::InstallOnVm | Step::PruneOldKeys => {
            let next = next_key(&secret)?;
            let prune = step == Step::PruneOldKeys;
            let started = clients
                .vm_access
                .set_ssh_key(vm, location, admin, &next.public_openssh, prune)
                .await?;
            let action = if prune {
                "prune-ssh-keys"
            } else {
                "add-ssh-key"
            };
            out.applied.record(started, &ext_id, action, now)?;
            set_stage(
                &mut secret,
                Some(if prune { "pruned" } else { "installed" }),
            );
            save(api, &secret).await?;
        }
        Step::AttachCompute => {
            let next = next_key(&secret)?;
            let started = clients
                .compute
                .attach(&AttachTarget {
                    address,
                    username: admin,
                    key: &next,
                    vm_size: &desired.vm.size,
                    tags: &desired.tags,
                })
                .await?;
            let id = clients.compute.compute_id()?;
            out.applied.record(started, &id, "attach", now)?;
            set_stage(&mut secret, Some("attached"));
            save(api, &secret).await?;
        }
        Step::Promote => {
            let next = next_key(&secret)?;
            let data = secret.data.get_or_insert_with(BTreeMap::new);
            for (from, to) in [
                (NEXT_PRIVATE_KEY, ssh::PRIVATE_KEY),
                (NEXT_PUBLIC_KEY, ssh::PUBLIC_KEY),
            ] {
                if let Some(v) = data.remove(from) {
                    data.insert(to.into(), v);
                }
            }
            set_stage(&mut secret, None);
            save(api, &secret).await?;
            out.promoted = Some(next);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn status(
        token: Option<&str>,
        rotated_secs_ago: i64,
        now: DateTime<Utc>,
    ) -> EdgeComputeTargetStatus {
        let at = now - chrono::Duration::seconds(rotated_secs_ago);
        EdgeComputeTargetStatus {
            ssh_key_rotation_token: token.map(String::from),
            ssh_key_rotated_at: Some(Time(
                k8s_openapi::jiff::Timestamp::from_second(at.timestamp()).unwrap(),
            )),
            ..Default::default()
        }
    }

    #[test]
    fn rotation_is_due_on_token_change_or_age() {
        let now = Utc::now();
        let tok = |t: &str| SshKeyRotation {
            token: Some(t.into()),
            max_age: None,
        };
        assert!(!due(None, &status(None, 10, now), None, now));
        assert!(!due(
            Some(&tok("a")),
            &status(Some("a"), 10, now),
            None,
            now
        ));
        assert!(due(Some(&tok("b")), &status(Some("a"), 10, now), None, now));
        let aged = SshKeyRotation::default();
        let day = Some(Duration::from_secs(86_400));
        assert!(!due(Some(&aged), &status(None, 3600, now), day, now));
        assert!(due(Some(&aged), &status(None, 90_000, now), day, now));
    }

    #[test]
    fn steps_follow_the_stage() {
        let table = [
            (false, None, Step::Idle),
            (true, None, Step::Generate),
            (true, Some("generated"), Step::InstallOnVm),
            (false, Some("installed"), Step::AttachCompute),
            (false, Some("attached"), Step::PruneOldKeys),
            (false, Some("pruned"), Step::Promote),
            (false, Some("garbage"), Step::InstallOnVm),
        ];
        for (is_due, stage, want) in table {
            assert_eq!(next_step(is_due, stage), want, "{is_due} {stage:?}");
        }
    }
}
