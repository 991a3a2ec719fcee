//! Pure: what a TrainingRun asks Azure ML for — deterministic job names, the environment,
//! the data SAS's lifetime and the Command job body.

use std::{collections::BTreeMap, time::Duration};

use chrono::{DateTime, Utc};
use edgetrain_api::{
    TrainingRunSpec,
    training_run::{EnvironmentSource, OutputType},
};
use edgetrain_azure::ml::{self, AssetJobOutput, CommandJobSpec, EnvironmentVersion, JobInput};
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// The data SAS outlives the deadline by this much: a job cancelled at its deadline may still
/// be finishing a read.
pub const SAS_MARGIN: Duration = Duration::from_secs(15 * 60);
/// Without `activeDeadlineSeconds`, the data SAS of an attempt is valid this long.
pub const DEFAULT_DATA_ACCESS: Duration = Duration::from_secs(24 * 3600);

/// Tag on every job: which TrainingRun (namespace/name) it belongs to.
pub const RUN_TAG: &str = "edgetrain.dev/training-run";
/// Tag on every job: the TrainingRun's uid (a re-created run of the same name is another run).
pub const UID_TAG: &str = "edgetrain.dev/uid";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The Azure ML job name of `attempt` (1-based): readable prefix from namespace and name, a
/// hash of (namespace, name, uid) so runs never share names, and the attempt. The same inputs
/// always give the same name, so a lost response or a restart finds the job instead of
/// submitting another. Matches `^[a-zA-Z0-9][a-zA-Z0-9\-_]{0,254}$`.
pub fn job_name(namespace: &str, name: &str, uid: &str, attempt: i32) -> String {
    let mut h = Sha256::new();
    for part in [namespace, name, uid] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    let digest = hex(&h.finalize()[..6]);
    // DNS-1123 names only add '.', which job names do not allow.
    let readable: String = format!("{namespace}-{name}")
        .chars()
        .map(|c| if c == '.' { '-' } else { c })
        .take(200)
        .collect();
    format!("{readable}-{digest}-{attempt}")
}

/// The environment a job runs in: an existing one, or a content-addressed version the
/// operator creates (name from the image and conda file, so equal specs share one).
#[derive(Debug, Clone, PartialEq)]
pub enum Environment {
    Existing(String),
    Create {
        name: String,
        version: String,
        body: Box<EnvironmentVersion>,
    },
}

pub fn environment(env: &EnvironmentSource) -> Result<Environment> {
    match (&env.environment_id, &env.image) {
        (Some(id), None) => Ok(Environment::Existing(id.clone())),
        (None, Some(image)) => {
            let mut h = Sha256::new();
            for part in [Some(image.as_str()), env.conda_file.as_deref()] {
                let p = part.unwrap_or("");
                h.update((p.len() as u64).to_be_bytes());
                h.update(p.as_bytes());
            }
            Ok(Environment::Create {
                name: format!("edgetrain-{}", hex(&h.finalize()[..8])),
                version: "1".into(),
                body: Box::new(EnvironmentVersion {
                    image: Some(image.clone()),
                    conda_file: env.conda_file.clone(),
                    os_type: Some("Linux".into()),
                    description: Some("Created by edgetrain for TrainingRuns".into()),
                    ..Default::default()
                }),
            })
        }
        _ => Err(Error::InvalidSpec(
            "environment: set exactly one of image or environmentId".into(),
        )),
    }
}

/// When the run must be over: first submission + `activeDeadlineSeconds`.
pub fn deadline(spec: &TrainingRunSpec, start: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    let secs = spec.active_deadline_seconds?;
    Some(start? + chrono::Duration::seconds(secs))
}

/// Expiry of an attempt's data SAS: the deadline plus [`SAS_MARGIN`], or
/// [`DEFAULT_DATA_ACCESS`] from `now` without a deadline.
pub fn sas_expiry(deadline: Option<DateTime<Utc>>, now: DateTime<Utc>) -> DateTime<Utc> {
    let margin = chrono::Duration::from_std(SAS_MARGIN).expect("constant fits");
    match deadline {
        Some(d) => d + margin,
        None => now + chrono::Duration::from_std(DEFAULT_DATA_ACCESS).expect("constant fits"),
    }
}

/// The outputs a job declares: the spec's, or one `uri_folder` named `model`.
pub fn outputs(spec: &TrainingRunSpec) -> BTreeMap<String, ml::JobOutput> {
    let declared: Vec<(String, OutputType)> = match &spec.outputs {
        Some(o) => o.iter().map(|o| (o.name.clone(), o.type_)).collect(),
        None => vec![("model".into(), OutputType::UriFolder)],
    };
    declared
        .into_iter()
        .map(|(name, t)| {
            // Upload: written locally on the VM, copied to the datastore when the job ends.
            let o = AssetJobOutput {
                mode: Some("Upload".into()),
                ..Default::default()
            };
            let out = match t {
                OutputType::UriFolder => ml::JobOutput::UriFolder(o),
                OutputType::UriFile => ml::JobOutput::UriFile(o),
                OutputType::CustomModel => ml::JobOutput::CustomModel(o),
                OutputType::MlflowModel => ml::JobOutput::MlflowModel(o),
                OutputType::TritonModel => ml::JobOutput::TritonModel(o),
            };
            (name, out)
        })
        .collect()
}

/// What a job needs besides the spec.
#[derive(Debug, Clone)]
pub struct JobInputs<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub uid: &'a str,
    pub code_id: &'a str,
    pub environment_id: &'a str,
    pub compute_id: &'a str,
    /// The data folder's URL with its SAS (a credential; only the job definition carries it).
    pub data_url: &'a str,
    /// Time left until the deadline, as the job's `limits.timeout`.
    pub timeout: Option<Duration>,
}

/// The Command job of one attempt. The data reaches the job as a literal input (the folder
/// URL with the SAS): never as a datastore, so nothing about the data is registered in Azure.
pub fn job_body(spec: &TrainingRunSpec, j: &JobInputs<'_>) -> Result<ml::Job> {
    ml::command_job_body(&CommandJobSpec {
        command: spec.command.clone(),
        code_id: Some(j.code_id.to_string()),
        environment_id: j.environment_id.to_string(),
        compute_id: j.compute_id.to_string(),
        inputs: BTreeMap::from([(
            spec.data.input_name.clone(),
            JobInput::Literal {
                value: j.data_url.to_string(),
                description: None,
            },
        )]),
        outputs: outputs(spec),
        environment_variables: spec.environment_variables.clone().unwrap_or_default(),
        timeout: j.timeout,
        experiment_name: spec.experiment_name.clone(),
        display_name: Some(
            spec.display_name
                .clone()
                .unwrap_or_else(|| j.name.to_string()),
        ),
        description: None,
        tags: BTreeMap::from([
            (RUN_TAG.into(), format!("{}/{}", j.namespace, j.name)),
            (UID_TAG.into(), j.uid.to_string()),
        ]),
        properties: BTreeMap::new(),
    })
    .map_err(|e| Error::InvalidSpec(format!("job definition: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgetrain_api::training_run::JobOutput;

    fn spec() -> TrainingRunSpec {
        serde_json::from_value(serde_json::json!({
            "computeTargetRef": {"name": "t"},
            "experimentName": "churn",
            "code": {"configMapRef": {"name": "code"}},
            "environment": {"image": "python:3.11"},
            "command": "python train.py --data ${{inputs.training_data}} --model ${{outputs.model}}",
            "data": {"endpoint": "https://data.blob.local", "container": "telemetry",
                     "credentialsSecretRef": {"name": "s"}},
        }))
        .unwrap()
    }

    #[test]
    fn job_names_are_deterministic_valid_and_distinct() {
        let a = job_name("team.a", "churn", "uid-1", 1);
        assert_eq!(a, job_name("team.a", "churn", "uid-1", 1));
        assert!(a.starts_with("team-a-churn-") && a.ends_with("-1"), "{a}");
        ml::validate_name("job", &a).unwrap();
        assert_ne!(a, job_name("team.a", "churn", "uid-1", 2));
        assert_ne!(a, job_name("team.a", "churn", "uid-2", 1));
        // Same readable prefix, different (namespace, name): the hash tells them apart.
        assert_ne!(job_name("a-b", "c", "u", 1), job_name("a", "b-c", "u", 1));
        let long = job_name(&"n".repeat(63), &"x".repeat(253), "u", 10);
        ml::validate_name("job", &long).unwrap();
    }

    #[test]
    fn environments() {
        let Environment::Create { name, body, .. } = environment(&spec().environment).unwrap()
        else {
            panic!("image should create an environment")
        };
        assert_eq!(body.image.as_deref(), Some("python:3.11"));
        let with_conda = EnvironmentSource {
            image: Some("python:3.11".into()),
            conda_file: Some("name: x".into()),
            ..Default::default()
        };
        let Environment::Create {
            name: n2, body: b2, ..
        } = environment(&with_conda).unwrap()
        else {
            panic!()
        };
        assert_ne!(name, n2);
        assert_eq!(b2.conda_file.as_deref(), Some("name: x"));
        let existing = EnvironmentSource {
            environment_id: Some("azureml:sklearn:3".into()),
            ..Default::default()
        };
        assert_eq!(
            environment(&existing).unwrap(),
            Environment::Existing("azureml:sklearn:3".into())
        );
        assert!(environment(&EnvironmentSource::default()).is_err());
    }

    #[test]
    fn sas_expiry_is_deadline_plus_margin() {
        let start = DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut s = spec();
        assert_eq!(deadline(&s, Some(start)), None);
        s.active_deadline_seconds = Some(3600);
        let d = deadline(&s, Some(start)).unwrap();
        assert_eq!(d, start + chrono::Duration::hours(1));
        assert_eq!(
            sas_expiry(Some(d), start),
            start + chrono::Duration::minutes(75)
        );
        assert_eq!(sas_expiry(None, start), start + chrono::Duration::hours(24));
    }

    #[test]
    fn job_body_carries_data_as_literal_and_tags() {
        let mut s = spec();
        s.outputs = Some(vec![JobOutput {
            name: "model".into(),
            type_: OutputType::CustomModel,
        }]);
        let body = job_body(
            &s,
            &JobInputs {
                namespace: "ns",
                name: "r",
                uid: "u1",
                code_id: "/ws/codes/h/versions/1",
                environment_id: "/ws/environments/e/versions/1",
                compute_id: "/ws/computes/c",
                data_url: "https://data.blob.local/telemetry/p/?sig=x",
                timeout: Some(Duration::from_secs(60)),
            },
        )
        .unwrap();
        let v = serde_json::to_value(&body).unwrap();
        let p = &v["properties"];
        assert_eq!(
            p["inputs"]["training_data"],
            serde_json::json!({"jobInputType": "literal", "value": "https://data.blob.local/telemetry/p/?sig=x"})
        );
        assert_eq!(p["outputs"]["model"]["jobOutputType"], "custom_model");
        assert_eq!(p["tags"][RUN_TAG], "ns/r");
        assert_eq!(p["limits"]["timeout"], "PT60S");
        assert_eq!(p["experimentName"], "churn");
        // A command naming an undeclared output is a spec error, not an Azure round trip.
        s.command = "python x.py ${{outputs.other}}".into();
        let bad = job_body(
            &s,
            &JobInputs {
                namespace: "ns",
                name: "r",
                uid: "u1",
                code_id: "c",
                environment_id: "e",
                compute_id: "c",
                data_url: "u",
                timeout: None,
            },
        );
        assert!(matches!(bad, Err(Error::InvalidSpec(_))));
    }
}
