//! Thin I/O: the writes a plan asks for. Each is started, never awaited (a cancel is a
//! long-running operation whose end the job listing shows).

use chrono::{DateTime, Utc};
use edgetrain_api::{TrainingRunSpec, TrainingRunStatus};
use edgetrain_azure::{
    blob::{AccountKey, BlobEndpoint, ServiceSas},
    ml::MlApi,
};

use super::{
    decide::{ReadyTarget, to_utc},
    desired::{self, JobInputs},
};
use crate::{Error, Result};

/// The storage account of `spec.data`, as read from its credentials Secret.
#[derive(Clone)]
pub struct DataAccount {
    pub name: String,
    pub key: AccountKey,
}

impl std::fmt::Debug for DataAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataAccount")
            .field("name", &self.name)
            .field("key", &"***")
            .finish()
    }
}

/// The data folder's URL with a fresh SAS: container only, read + list, https only, bound to
/// the VM's address, expiring at the deadline plus a margin (pure apart from the signature).
pub fn data_url(
    spec: &TrainingRunSpec,
    account: &DataAccount,
    vm_address: &str,
    expiry: DateTime<Utc>,
) -> Result<String> {
    let endpoint = BlobEndpoint::parse(&spec.data.endpoint)
        .map_err(|e| Error::InvalidSpec(format!("data.endpoint: {e}")))?;
    let sas = ServiceSas::job_input(&account.name, &spec.data.container, vm_address, expiry)
        .sign(&account.key)
        .map_err(|e| Error::InvalidSpec(format!("signing the data SAS: {e}")))?;
    let mut url = endpoint
        .container_url(&spec.data.container)
        .map_err(|e| Error::InvalidSpec(format!("data.container: {e}")))?;
    let folder = format!("{}/{}", url.path().trim_end_matches('/'), spec.data.prefix);
    url.set_path(&folder);
    Ok(format!("{url}?{}", sas.secret()))
}

/// PUT the job of one attempt.
#[allow(clippy::too_many_arguments)]
pub async fn submit(
    ml: &dyn MlApi,
    spec: &TrainingRunSpec,
    status: &TrainingRunStatus,
    (namespace, name, uid): (&str, &str, &str),
    account: &DataAccount,
    target: &ReadyTarget,
    job: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    let (Some(code_id), Some(environment_id)) = (&status.code_id, &status.environment_id) else {
        return Err(Error::InvalidSpec(
            "internal: submit before the code and environment were recorded".into(),
        ));
    };
    let start = status.start_time.as_ref().map(to_utc).unwrap_or(now);
    let deadline = desired::deadline(spec, Some(start));
    let url = data_url(
        spec,
        account,
        &target.vm_address,
        desired::sas_expiry(deadline, now),
    )?;
    let timeout = deadline.map(|d| (d - now).to_std().unwrap_or_default());
    let body = desired::job_body(
        spec,
        &JobInputs {
            namespace,
            name,
            uid,
            code_id,
            environment_id,
            compute_id: &target.compute_id,
            data_url: &url,
            timeout,
        },
    )?;
    ml.create_job(job, &body)
        .await
        .map_err(|e| Error::azure(format!("submitting job {job}"), e))?;
    Ok(())
}

/// Start cancelling a job (POST cancel; the listing shows its end).
pub async fn cancel(ml: &dyn MlApi, job: &str) -> Result<()> {
    match ml.cancel_job(job).await {
        Ok(_) => Ok(()),
        // Gone already: nothing left to stop.
        Err(edgetrain_azure::Error::Arm(e)) if e.is_not_found() => Ok(()),
        Err(e) => Err(Error::azure(format!("cancelling job {job}"), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    // Azurite's well-known development key.
    const KEY: &str =
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

    #[test]
    fn data_url_sas_is_read_list_one_container_https_ip_bound_and_expires() {
        let spec: TrainingRunSpec = serde_json::from_value(serde_json::json!({
            "computeTargetRef": {"name": "edge"},
            "code": {"configMapRef": {"name": "code"}},
            "environment": {"image": "python:3.11"},
            "command": "python train.py",
            "data": {"endpoint": "https://churndata.blob.local.azurestack.external", "container": "telemetry",
                     "prefix": "churn/2026-11/", "credentialsSecretRef": {"name": "s"}},
        }))
        .unwrap();
        let account = DataAccount {
            name: "churndata".into(),
            key: AccountKey::from_base64(KEY).unwrap(),
        };
        let expiry = DateTime::parse_from_rfc3339("2026-12-05T10:15:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let url = data_url(&spec, &account, "203.0.113.7", expiry).unwrap();
        let u = url::Url::parse(&url).unwrap();
        assert_eq!(
            u.host_str(),
            Some("churndata.blob.local.azurestack.external")
        );
        assert_eq!(u.path(), "/telemetry/churn/2026-11/");
        let q: BTreeMap<String, String> = u.query_pairs().into_owned().collect();
        assert_eq!(q["sp"], "rl");
        assert_eq!(q["sr"], "c");
        assert_eq!(q["spr"], "https");
        assert_eq!(q["sip"], "203.0.113.7");
        assert_eq!(q["se"], "2026-12-05T10:15:00Z");
        assert!(q.contains_key("sig"));
        assert!(
            !url.contains(KEY) && !url.contains("Eby8vdM02"),
            "account key in the URL"
        );
        assert!(!format!("{account:?}").contains("Eby8"));
    }
}
