//! `lineage`'s registry side: the provenance referrers of what a ModelRelease pushed, read with
//! the release's registry Secret (through the operator's registry factory and credential
//! parsing, so the plugin signs in exactly as the operator does).

use edgetrain_api::{EdgeComputeTarget, ModelRelease, TrainingRun};
use edgetrain_controller::{
    model_release::observe::registry_credentials,
    runtime::factory::{AzureClients, RegistryFactory},
};
use kube::Client;

use crate::{Result, get, view};

/// The EdgeComputeTarget whose Azure ML cloud the registry's Azure AD sign-in goes through:
/// the run's, or the existing model's.
fn target_name<'a>(release: &'a ModelRelease, run: Option<&'a TrainingRun>) -> Option<&'a str> {
    match (&release.spec.existing_model, run) {
        (Some(existing), _) => Some(&existing.compute_target_ref.name),
        (None, Some(run)) => Some(&run.spec.compute_target_ref.name),
        (None, None) => None,
    }
}

/// The provenance statements attached to the release's pushed digests; `None` when the
/// release's target is unknown (its TrainingRun is missing), so no sign-in is possible.
pub async fn read(
    client: &Client,
    ns: &str,
    azure: &AzureClients,
    release: &ModelRelease,
    run: Option<&TrainingRun>,
) -> Result<Option<Vec<view::RegistryProvenance>>> {
    let Some(target) = target_name(release, run) else {
        return Ok(None);
    };
    let target: EdgeComputeTarget = get(client, ns, target).await?;
    let spec = &release.spec.registry;
    let secret = crate::secret(client, ns, &spec.credentials_secret_ref.name).await?;
    let creds = registry_credentials(&secret, &target.spec.azure_ml.arm_endpoint)?;
    // The login server and repository come from the spec (as for the operator's push), never
    // from status: status only contributes digests.
    let registry = azure.registry(&spec.login_server, &creds).await?;
    let st = release.status.clone().unwrap_or_default();
    let mut found = Vec::new();
    for reference in [&st.artifact_digest, &st.image_digest]
        .into_iter()
        .flatten()
    {
        let digest = view::digest_of(reference);
        for s in registry.statements_of(&spec.repository, digest).await? {
            found.push(view::provenance_facts(digest, &s.referrer, &s.statement));
        }
    }
    Ok(Some(found))
}
