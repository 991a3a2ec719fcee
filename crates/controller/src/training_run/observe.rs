//! Thin I/O: the observations [`super::decide::decide`] asks for, each read once.

use std::collections::{BTreeMap, HashSet};

use bytes::Bytes;
use edgetrain_api::{TrainingRunSpec, training_run::DataSource};
use edgetrain_azure::{
    blob::{self, BlobApi},
    ml::{self, CodeFile, JobOutput, JobType, MlApi, MlflowApi, Workspace},
};
use futures::TryStreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{Api, Client};

use super::{
    assets::KnownAssets,
    code::{self, BlobFolder, CodeBlobs},
    datastores::{Datastores, Opener},
    decide::{Assets, DataFingerprint, JobView, OutputFile, Snapshot, Verification},
    desired::{self, Environment},
};
use crate::{Error, Result};

fn azure(context: impl Into<String>) -> impl FnOnce(edgetrain_azure::Error) -> Error {
    let context = context.into();
    move |e| Error::azure(context, e)
}

/// Lists the input blobs into a fingerprint (streaming; nothing is downloaded).
pub async fn fingerprint(data: &dyn BlobApi, source: &DataSource) -> Result<DataFingerprint> {
    let fp = blob::fingerprint(data.list(&source.container, &source.prefix))
        .await
        .map_err(azure(format!(
            "listing the input blobs in {}/{}",
            source.container, source.prefix
        )))?;
    let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    Ok(DataFingerprint {
        sha256: fp.sha256,
        blob_count: n(fp.blob_count),
        total_bytes: n(fp.total_bytes),
        unverifiable: n(fp.unverifiable),
    })
}

/// The code files of a ConfigMap (each key a file; binary data included).
pub async fn code_files(client: &Client, namespace: &str, name: &str) -> Result<Vec<CodeFile>> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let cm = api
        .get_opt(name)
        .await
        .map_err(|e| Error::kube(format!("reading ConfigMap {namespace}/{name}"), e))?
        .ok_or_else(|| {
            Error::InvalidSpec(format!("code ConfigMap {namespace}/{name} not found"))
        })?;
    let mut files: Vec<CodeFile> = cm
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(path, text)| CodeFile {
            path,
            content: Bytes::from(text),
        })
        .collect();
    files.extend(
        cm.binary_data
            .unwrap_or_default()
            .into_iter()
            .map(|(path, b)| CodeFile {
                path,
                content: Bytes::from(b.0),
            }),
    );
    if files.is_empty() {
        return Err(Error::InvalidSpec(format!(
            "code ConfigMap {namespace}/{name} holds no files"
        )));
    }
    Ok(files)
}

/// The code files of a blob folder (`code.blobUri`): listed page by page within the ceilings,
/// then each read.
pub async fn blob_code_files(blob: &dyn BlobApi, folder: &BlobFolder) -> Result<Vec<CodeFile>> {
    let place = format!("{}/{}", folder.container, folder.prefix);
    let mut listed = CodeBlobs::new(folder);
    let mut items = blob.list(&folder.container, &folder.prefix);
    while let Some(item) = items
        .try_next()
        .await
        .map_err(azure(format!("listing the code blobs in {place}")))?
    {
        listed.add(&item.name, item.size)?;
    }
    let mut files = Vec::new();
    let mut total = 0;
    for b in listed.finish()? {
        let mut body = blob
            .read(&folder.container, &b.blob)
            .await
            .map_err(azure(format!("reading code blob {}", b.blob)))?;
        let mut content = Vec::new();
        while let Some(chunk) = body
            .try_next()
            .await
            .map_err(azure(format!("reading code blob {}", b.blob)))?
        {
            total = code::within_code_ceiling(total, chunk.len() as u64, &place)?;
            content.extend_from_slice(&chunk);
        }
        files.push(CodeFile {
            path: b.path,
            content: Bytes::from(content),
        });
    }
    Ok(files)
}

/// Uploads the code (content-addressed: re-used when the version exists) and finds or creates
/// the environment, each once per content for all runs (`known`).
pub async fn assets(
    ml: &dyn MlApi,
    workspace: &Workspace,
    http: reqwest::Client,
    known: &KnownAssets,
    spec: &TrainingRunSpec,
    files: &[CodeFile],
) -> Result<Assets> {
    let code_digest =
        ml::code_content_hash(files).map_err(|e| Error::InvalidSpec(format!("code: {e}")))?;
    let ws = workspace
        .id()
        .map_err(azure("workspace id"))?
        .to_ascii_lowercase();
    let code_id = known
        .get_or_create(format!("{ws}/code/{code_digest}"), || async {
            ml::upload_code(ml, workspace, http, files)
                .await
                .map_err(azure("uploading the code"))
        })
        .await?;
    let environment_id = match desired::environment(&spec.environment)? {
        Environment::Existing(id) => id,
        Environment::Create {
            name,
            version,
            body,
        } => {
            let key = format!("{ws}/environment/{name}/{version}");
            known
                .get_or_create(key, || async {
                    if ml
                        .get_environment_version(&name, &version)
                        .await
                        .map_err(azure(format!("reading environment {name}")))?
                        .is_none()
                    {
                        ml.put_environment_version(&name, &version, &ml::Resource::new(*body))
                            .await
                            .map_err(azure(format!("creating environment {name}")))?;
                    }
                    workspace
                        .environment_version_id(&name, &version)
                        .map_err(azure("environment id"))
                })
                .await?
        }
    };
    Ok(Assets {
        code_digest,
        code_id,
        environment_id,
    })
}

/// One job's listing entry.
pub fn job_view(job: &ml::Job, workspace_id: &str) -> Option<(String, JobView)> {
    let name = job.name.clone()?;
    let status = job.properties.status.clone()?;
    let outputs = match &job.properties.job {
        JobType::Command(c) => c
            .outputs
            .iter()
            .flatten()
            .filter_map(|(k, o)| {
                let a = match o {
                    JobOutput::UriFile(a)
                    | JobOutput::UriFolder(a)
                    | JobOutput::Mltable(a)
                    | JobOutput::CustomModel(a)
                    | JobOutput::MlflowModel(a)
                    | JobOutput::TritonModel(a) => a,
                };
                Some((k.clone(), a.uri.clone()?))
            })
            .collect(),
        JobType::Other => BTreeMap::new(),
    };
    let studio_url = Some(format!(
        "https://ml.azure.com/runs/{name}?wsid={workspace_id}"
    ));
    Some((
        name,
        JobView {
            status,
            studio_url,
            outputs,
        },
    ))
}

/// Every job of the workspace that an edgetrain TrainingRun submitted, in one listing (all
/// pages), and the number of pages it took. One such listing serves every run of the
/// workspace.
pub async fn snapshot(
    ml: &dyn MlApi,
    workspace: &Workspace,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(Snapshot, u32)> {
    let ws_id = workspace.id().map_err(azure("workspace id"))?;
    let mut jobs = BTreeMap::new();
    let mut next: Option<String> = None;
    let mut pages = 0u32;
    loop {
        pages = pages.saturating_add(1);
        let page = ml
            .list_jobs_page(next.as_deref(), Some(ml::ListViewType::All))
            .await
            .map_err(azure("listing the workspace's jobs"))?;
        for job in &page.value {
            let ours = job
                .properties
                .tags
                .as_ref()
                .is_some_and(|t| t.contains_key(desired::RUN_TAG));
            if ours && let Some((name, view)) = job_view(job, &ws_id) {
                jobs.insert(name, view);
            }
        }
        match page.next_link {
            Some(link) if !link.is_empty() => next = Some(link),
            _ => break,
        }
    }
    Ok((
        Snapshot {
            taken_at: now,
            jobs,
        },
        pages,
    ))
}

/// The files of every output, `{output}/{path}`, with their MD5s.
async fn output_files(
    ml: &dyn MlApi,
    (datastores, opener): (&Datastores, &Opener),
    outputs: &BTreeMap<String, String>,
) -> Result<Vec<OutputFile>> {
    let mut files = Vec::new();
    let mut stores: BTreeMap<String, (edgetrain_azure::blob::BlobClient, String)> = BTreeMap::new();
    for (output, uri) in outputs {
        let (store, path) =
            ml::parse_datastore_uri(uri).map_err(azure(format!("output {output}")))?;
        if !stores.contains_key(&store) {
            let opened = datastores.open(opener, ml, ml.http(), &store).await?;
            stores.insert(store.clone(), opened);
        }
        let (client, container) = &stores[&store];
        for f in ml::output_files(client, container, &path)
            .await
            .map_err(azure(format!("listing output {output}")))?
        {
            files.push(OutputFile {
                path: format!("{output}/{}", f.path),
                size: f.size,
                md5: f.md5,
            });
        }
    }
    Ok(files)
}

/// What a Completed job left: its output files (from datastores opened by `opener`, see
/// [`Datastores`]), any input blob among them, its metrics.
pub async fn verification(
    ml: &dyn MlApi,
    datastores: (&Datastores, &Opener),
    data: &dyn BlobApi,
    source: &DataSource,
    mlflow: &dyn MlflowApi,
    job: &str,
    outputs: &BTreeMap<String, String>,
) -> Result<Verification> {
    let files = output_files(ml, datastores, outputs).await?;
    let md5s: HashSet<String> = files.iter().map(|f| f.md5.clone()).collect();
    let copied = blob::first_with_md5(data.list(&source.container, &source.prefix), &md5s)
        .await
        .map_err(azure("comparing outputs with the input blobs"))?;
    let copied_input = copied.map(|input| {
        let md5 = input.content_md5.clone().unwrap_or_default();
        let output = files
            .iter()
            .find(|f| f.md5 == md5)
            .map(|f| f.path.clone())
            .unwrap_or_default();
        (output, input.name)
    });
    let metrics = mlflow
        .get_run(job)
        .await
        .map_err(azure(format!("reading MLflow run {job}")))?
        .map(|r| r.latest_metrics())
        .unwrap_or_default();
    Ok(Verification {
        files,
        copied_input,
        metrics,
    })
}

/// The end of a failed job's log (`user_logs/std_log.txt` in its `artifacts` output).
pub async fn failure_log(
    ml: &dyn MlApi,
    http: reqwest::Client,
    artifacts: Option<&str>,
) -> Result<String> {
    let Some(uri) = artifacts else {
        return Ok("(the job left no artifacts; no log to show)".into());
    };
    let (store, path) = ml::parse_datastore_uri(uri).map_err(azure("artifacts output"))?;
    let (client, container) = ml::open_datastore(ml, http, &store)
        .await
        .map_err(azure(format!("opening datastore {store}")))?;
    let log = format!(
        "{}user_logs/std_log.txt",
        if path.ends_with('/') || path.is_empty() {
            path.clone()
        } else {
            format!("{path}/")
        }
    );
    if client
        .properties(&container, &log)
        .await
        .map_err(azure("reading the job log"))?
        .is_none()
    {
        return Ok("(the job wrote no log)".into());
    }
    let mut body = client
        .read(&container, &log)
        .await
        .map_err(azure("reading the job log"))?;
    // Keep only the end: a log can be large, the condition shows its tail.
    const KEEP: usize = 64 * 1024;
    let mut buf: Vec<u8> = Vec::new();
    while let Some(chunk) = body
        .try_next()
        .await
        .map_err(azure("reading the job log"))?
    {
        buf.extend_from_slice(&chunk);
        if buf.len() > 2 * KEEP {
            buf.drain(..buf.len() - KEEP);
        }
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}
