//! Pure builders for Azure ML request bodies, and content hashing of code.

use std::{collections::BTreeMap, time::Duration};

use azure_core::credentials::Secret;
use sha2::{Digest, Sha256};

use super::types::*;
use crate::{Error, Result, error::require_non_empty};

/// Asset and job names: `^[a-zA-Z0-9][a-zA-Z0-9\-_]{0,254}$`.
pub fn validate_name(what: &str, name: &str) -> Result<()> {
    let mut bytes = name.bytes();
    let ok = matches!(bytes.next(), Some(b) if b.is_ascii_alphanumeric())
        && name.len() <= 255
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidInput(format!(
            "{what} {name:?} must match ^[a-zA-Z0-9][a-zA-Z0-9-_]{{0,254}}$"
        )))
    }
}

/// What attaching an existing VM needs.
#[derive(Debug, Clone)]
pub struct VmAttachSpec {
    /// Workspace region.
    pub location: String,
    /// Address Azure ML can reach over SSH (public IP or DNS name).
    pub address: String,
    pub ssh_port: u16,
    pub username: String,
    pub private_key_pem: Secret,
    pub public_key: String,
    pub description: Option<String>,
    pub vm_size: Option<String>,
}

/// Body of `PUT .../computes/{name}` attaching a `VirtualMachine` compute.
pub fn vm_attach_body(spec: &VmAttachSpec) -> Result<ComputeResource> {
    for (what, v) in [
        ("location", spec.location.as_str()),
        ("address", spec.address.as_str()),
        ("username", spec.username.as_str()),
        ("public key", spec.public_key.as_str()),
        ("private key", spec.private_key_pem.secret()),
    ] {
        require_non_empty(&format!("VM attach: {what}"), v)?;
    }
    if spec.ssh_port == 0 {
        return Err(Error::InvalidInput(
            "VM attach: SSH port must not be 0".into(),
        ));
    }
    Ok(ComputeResource {
        id: None,
        name: None,
        location: Some(spec.location.clone()),
        tags: None,
        properties: Compute {
            compute_type: "VirtualMachine".into(),
            description: spec.description.clone(),
            resource_id: None,
            provisioning_state: None,
            provisioning_errors: None,
            is_attached_compute: None,
            properties: Some(VirtualMachineSchemaProperties {
                virtual_machine_size: spec.vm_size.clone(),
                ssh_port: Some(i32::from(spec.ssh_port)),
                address: Some(spec.address.clone()),
                administrator_account: Some(VirtualMachineSshCredentials {
                    username: Some(spec.username.clone()),
                    password: None,
                    public_key_data: Some(spec.public_key.trim().to_string()),
                    private_key_data: Some(spec.private_key_pem.clone()),
                }),
            }),
        },
    })
}

/// A Command job as the operator describes it.
#[derive(Debug, Clone, Default)]
pub struct CommandJobSpec {
    pub command: String,
    pub code_id: Option<String>,
    pub environment_id: String,
    pub compute_id: String,
    pub inputs: BTreeMap<String, JobInput>,
    pub outputs: BTreeMap<String, JobOutput>,
    pub environment_variables: BTreeMap<String, String>,
    pub timeout: Option<Duration>,
    pub experiment_name: String,
    pub display_name: Option<String>,
    pub description: Option<String>,
    pub tags: BTreeMap<String, String>,
    pub properties: BTreeMap<String, String>,
}

fn non_empty_map<V: Clone>(m: &BTreeMap<String, V>) -> Option<BTreeMap<String, V>> {
    (!m.is_empty()).then(|| m.clone())
}

/// Every `${{inputs.x}}` / `${{outputs.y}}` the command names must be declared.
fn check_bindings(spec: &CommandJobSpec) -> Result<()> {
    let mut rest = spec.command.as_str();
    while let Some(start) = rest.find("${{") {
        let after = &rest[start + 3..];
        let end = after
            .find("}}")
            .ok_or_else(|| Error::InvalidInput("command has an unclosed ${{".into()))?;
        let expr = after[..end].trim();
        let declared = if let Some(n) = expr.strip_prefix("inputs.") {
            spec.inputs.contains_key(n)
        } else if let Some(n) = expr.strip_prefix("outputs.") {
            spec.outputs.contains_key(n)
        } else {
            true // other expressions (e.g. search_space) are the service's business
        };
        if !declared {
            return Err(Error::InvalidInput(format!(
                "command refers to ${{{{{expr}}}}} which is not declared"
            )));
        }
        rest = &after[end + 2..];
    }
    Ok(())
}

/// Body of `PUT .../jobs/{name}` for a Command job.
pub fn command_job_body(spec: &CommandJobSpec) -> Result<Resource<JobProperties>> {
    for (what, v) in [
        ("command", spec.command.as_str()),
        ("environment id", spec.environment_id.as_str()),
        ("compute id", spec.compute_id.as_str()),
        ("experiment name", spec.experiment_name.as_str()),
    ] {
        require_non_empty(&format!("command job: {what}"), v)?;
    }
    check_bindings(spec)?;
    Ok(Resource::new(JobProperties {
        description: spec.description.clone(),
        properties: non_empty_map(&spec.properties),
        tags: non_empty_map(&spec.tags),
        compute_id: Some(spec.compute_id.clone()),
        display_name: spec.display_name.clone(),
        experiment_name: Some(spec.experiment_name.clone()),
        status: None,
        job: JobType::Command(Box::new(CommandJob {
            command: spec.command.clone(),
            environment_id: spec.environment_id.clone(),
            code_id: spec.code_id.clone(),
            environment_variables: non_empty_map(&spec.environment_variables),
            inputs: non_empty_map(&spec.inputs),
            outputs: non_empty_map(&spec.outputs),
            limits: spec.timeout.map(CommandJobLimits::with_timeout),
        })),
    }))
}

/// One file of a code snapshot: path relative to the code root (with `/`), and content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeFile {
    pub path: String,
    pub content: bytes::Bytes,
}

/// sha256 over the sorted (path, length, content) triples: the same files give the same hash
/// whatever order they come in, and a renamed file changes it.
pub fn code_content_hash(files: &[CodeFile]) -> Result<String> {
    let mut sorted: Vec<&CodeFile> = files.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    let mut h = Sha256::new();
    for w in sorted.windows(2) {
        if w[0].path == w[1].path {
            return Err(Error::InvalidInput(format!(
                "duplicate code file {:?}",
                w[0].path
            )));
        }
    }
    for f in sorted {
        if f.path.is_empty()
            || f.path.starts_with('/')
            || f.path.split('/').any(|s| s == ".." || s.is_empty())
        {
            return Err(Error::InvalidInput(format!(
                "code file path {:?} must be relative and clean",
                f.path
            )));
        }
        h.update((f.path.len() as u64).to_be_bytes());
        h.update(f.path.as_bytes());
        h.update((f.content.len() as u64).to_be_bytes());
        h.update(&f.content);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn attach_body_matches_spec_shape() {
        let body = vm_attach_body(&VmAttachSpec {
            location: "westeurope".into(),
            address: "203.0.113.7".into(),
            ssh_port: 22,
            username: "azureuser".into(),
            private_key_pem: Secret::new("-----BEGIN OPENSSH PRIVATE KEY-----\nx\n"),
            public_key: "ssh-ed25519 AAAA".into(),
            description: Some("edgetrain".into()),
            vm_size: None,
        })
        .unwrap();
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            json!({"location": "westeurope", "properties": {
                "computeType": "VirtualMachine", "description": "edgetrain",
                "properties": {"sshPort": 22, "address": "203.0.113.7", "administratorAccount": {
                    "username": "azureuser", "publicKeyData": "ssh-ed25519 AAAA",
                    "privateKeyData": "-----BEGIN OPENSSH PRIVATE KEY-----\nx\n"}}}})
        );
        assert!(
            !format!("{body:?}").contains("BEGIN"),
            "private key in Debug"
        );
    }

    fn job() -> CommandJobSpec {
        CommandJobSpec {
            command: "python train.py --data ${{inputs.data}} --out ${{outputs.model}}".into(),
            code_id: Some("/ws/codes/abc/versions/1".into()),
            environment_id: "/ws/environments/env/versions/1".into(),
            compute_id: "/ws/computes/edge".into(),
            inputs: BTreeMap::from([(
                "data".into(),
                JobInput::Literal {
                    value: "https://a/b".into(),
                    description: None,
                },
            )]),
            outputs: BTreeMap::from([(
                "model".into(),
                JobOutput::UriFolder(AssetJobOutput {
                    mode: Some("Upload".into()),
                    ..Default::default()
                }),
            )]),
            environment_variables: BTreeMap::from([("SAS_URL".into(), "x".into())]),
            timeout: Some(Duration::from_secs(3600)),
            experiment_name: "edgetrain".into(),
            display_name: Some("run 1".into()),
            description: None,
            tags: BTreeMap::from([("edgetrain.dev/run".into(), "ns/name".into())]),
            properties: BTreeMap::new(),
        }
    }

    #[test]
    fn command_job_body_matches_spec_shape() {
        let body = command_job_body(&job()).unwrap();
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            json!({"properties": {
                "tags": {"edgetrain.dev/run": "ns/name"},
                "computeId": "/ws/computes/edge", "displayName": "run 1", "experimentName": "edgetrain",
                "jobType": "Command",
                "command": "python train.py --data ${{inputs.data}} --out ${{outputs.model}}",
                "environmentId": "/ws/environments/env/versions/1", "codeId": "/ws/codes/abc/versions/1",
                "environmentVariables": {"SAS_URL": "x"},
                "inputs": {"data": {"jobInputType": "literal", "value": "https://a/b"}},
                "outputs": {"model": {"jobOutputType": "uri_folder", "mode": "Upload"}},
                "limits": {"jobLimitsType": "Command", "timeout": "PT3600S"}}})
        );
    }

    #[test]
    fn command_job_rejects_undeclared_bindings_and_empties() {
        let mut j = job();
        j.command = "python x.py ${{inputs.nope}}".into();
        assert!(command_job_body(&j).is_err());
        let mut j = job();
        j.command = "python x.py ${{outputs.model".into();
        assert!(command_job_body(&j).is_err());
        let mut j = job();
        j.environment_id = String::new();
        assert!(command_job_body(&j).is_err());
    }

    #[test]
    fn code_hash_is_order_independent_and_content_sensitive() {
        let a = CodeFile {
            path: "train.py".into(),
            content: "print(1)".into(),
        };
        let b = CodeFile {
            path: "lib/util.py".into(),
            content: "x=1".into(),
        };
        let h1 = code_content_hash(&[a.clone(), b.clone()]).unwrap();
        let h2 = code_content_hash(&[b.clone(), a.clone()]).unwrap();
        assert_eq!(h1, h2);
        assert_eq!(h1.len(), 64);
        let renamed = CodeFile {
            path: "train2.py".into(),
            ..a.clone()
        };
        assert_ne!(code_content_hash(&[renamed, b.clone()]).unwrap(), h1);
        assert!(code_content_hash(&[a.clone(), a.clone()]).is_err());
        let escape = CodeFile {
            path: "../x".into(),
            content: "".into(),
        };
        assert!(code_content_hash(&[escape]).is_err());
    }

    #[test]
    fn names() {
        assert!(validate_name("job", "et-ns-name-0123_a").is_ok());
        assert!(validate_name("job", "-bad").is_err());
        assert!(validate_name("job", "a/b").is_err());
        assert!(validate_name("job", &"a".repeat(256)).is_err());
    }
}
