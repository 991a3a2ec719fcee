//! `kubectl edgetrain`: status, lineage and failure explanations of the edgetrain resources.
//!
//! The commands read the objects through the Kubernetes API (kube-rs, the user's kubeconfig) and
//! hand them to the pure functions in [`view`].

pub mod logs;
mod provenance;
pub mod view;

use clap::{Parser, Subcommand, ValueEnum};
use edgetrain_api::{EdgeComputeTarget, ModelRelease, TrainingRun};
use edgetrain_controller::runtime::factory::AzureClients;
use k8s_openapi::jiff::Timestamp;
use kube::{
    Api, Client, Config, Resource,
    config::{KubeConfigOptions, Kubeconfig},
};
use serde::{Serialize, de::DeserializeOwned};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("could not load the kubeconfig: {0}")]
    Kubeconfig(String),
    #[error("{kind} {namespace}/{name} not found")]
    NotFound {
        kind: String,
        namespace: String,
        name: String,
    },
    #[error("no EdgeComputeTarget, TrainingRun or ModelRelease named {namespace}/{name}")]
    NotFoundAnyKind { namespace: String, name: String },
    #[error("{name} exists as more than one kind ({kinds}): name one, e.g. tr/{name}")]
    Ambiguous { name: String, kinds: String },
    #[error("unknown kind {0:?}: use ect, tr or mr (or their full names)")]
    UnknownKind(String),
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("could not render output: {0}")]
    Render(String),
    #[error(
        "TrainingRun {namespace}/{name} has no Azure ML job yet (phase {phase}), so there is no log: \
         `kubectl edgetrain explain-failure tr/{name}` shows what it waits for"
    )]
    NoJob {
        namespace: String,
        name: String,
        phase: String,
    },
    #[error(
        "job {job} ({status}) has not written a log yet: try again, or `logs --follow` to wait for it"
    )]
    NoLogYet { job: String, status: String },
    #[error("job {job} ended {status} without a log in the workspace datastore")]
    NoLog { job: String, status: String },
    #[error("job {0} is not in the Azure ML workspace (deleted there?)")]
    JobGone(String),
    #[error(
        "TrainingRun {namespace}/{name} {phase} (job {job}; its log is above): \
         `kubectl edgetrain explain-failure tr/{name}` for the reason and what to do"
    )]
    RunFailed {
        namespace: String,
        name: String,
        phase: String,
        job: String,
    },
    #[error(
        "could not read the credentials Secret {namespace}/{name} with your kubeconfig \
         ({reason}): `logs` signs in to Azure ML with the Secret the run's EdgeComputeTarget names \
         and `lineage` to the registry with the release's, so you need `get` on it"
    )]
    SecretUnreadable {
        namespace: String,
        name: String,
        reason: String,
    },
    #[error(
        "the Azure ML credentials Secret {namespace}/{name} holds no clientSecret (workload \
         identity): only the operator's service account can sign in as that identity, so `logs` \
         cannot; read the log in Azure ML studio (the run's status.studioURL)"
    )]
    WorkloadIdentity { namespace: String, name: String },
    #[error("{0}")]
    Operator(#[from] edgetrain_controller::Error),
    #[error("Azure: {context}: {source}")]
    Azure {
        context: String,
        source: Box<edgetrain_azure::Error>,
    },
    #[error("{0}")]
    Usage(String),
    #[error("registry: {0}")]
    Registry(#[from] edgetrain_registry::Error),
    #[error("writing the output: {0}")]
    Output(std::io::Error),
    #[error("lineage of {release} does not check out:\n  {}", .mismatches.join("\n  "))]
    LineageMismatch {
        release: String,
        mismatches: Vec<String>,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    fn azure(context: impl Into<String>) -> impl FnOnce(edgetrain_azure::Error) -> Self {
        let context = context.into();
        move |source| Self::Azure {
            context,
            source: Box::new(source),
        }
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "kubectl-edgetrain",
    about = "Inspect edgetrain resources: status, lineage, job logs, failure explanations",
    after_help = "Credentials: `logs` and `lineage` sign in to Azure ML and the registry with the \
                  Secrets the operator uses (the run's EdgeComputeTarget's \
                  spec.azureML.credentialsSecretRef; the release's \
                  spec.registry.credentialsSecretRef), read from the resource's namespace with \
                  your kubeconfig: you need `get` on them. Workload-identity Secrets (no \
                  clientSecret) only work for the operator. SSL_CERT_FILE adds trusted CA \
                  certificates (e.g. a Stack Hub stamp's); HTTPS_PROXY/NO_PROXY apply."
)]
pub struct Cli {
    /// Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true)]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// Namespace (default: the context's namespace).
    #[arg(short, long, global = true)]
    pub namespace: Option<String>,
    /// Output format.
    #[arg(short, long, global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Yaml,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// All EdgeComputeTargets, TrainingRuns and ModelReleases in one table, with Ready reasons.
    Status {
        /// All namespaces.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
    },
    /// image digest -> model version -> job -> code digest -> data fingerprint of a
    /// ModelRelease, cross-checked between its status, its TrainingRun's and the provenance
    /// referrers in the registry (read with the release's registry Secret, which you need
    /// `get` on). Exits 2 on a mismatch.
    Lineage {
        /// The ModelRelease.
        modelrelease: String,
        /// Check status only; do not read the provenance from the registry.
        #[arg(long)]
        no_registry: bool,
    },
    /// The log of a TrainingRun's Azure ML job (`user_logs/std_log.txt` in the workspace
    /// datastore), also of a failed run. Signs in to Azure ML with the credentials Secret the
    /// run's EdgeComputeTarget names, read with your kubeconfig (you need `get` on it).
    Logs {
        /// The TrainingRun.
        trainingrun: String,
        /// Keep printing while the run is active (and its next attempts); stop when it ends.
        #[arg(short, long)]
        follow: bool,
        /// Seconds between polls with --follow.
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..))]
        poll_seconds: u64,
    },
    /// The last failing condition of a resource (`kind/name` or a name), the Azure code and
    /// request id in it, and what to do.
    ExplainFailure {
        /// `ect/NAME`, `tr/NAME`, `mr/NAME`, or a NAME unique across the three kinds.
        resource: String,
    },
}

/// A client for the kubeconfig, context and namespace the flags name, like kubectl.
pub async fn connect(cli: &Cli) -> Result<(Client, String)> {
    let options = KubeConfigOptions {
        context: cli.context.clone(),
        ..Default::default()
    };
    let config = match &cli.kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path).map_err(|e| Error::Kubeconfig(e.to_string()))?;
            Config::from_custom_kubeconfig(kc, &options).await
        }
        None => Config::from_kubeconfig(&options).await,
    }
    .map_err(|e| Error::Kubeconfig(e.to_string()))?;
    let ns = cli
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    Ok((Client::try_from(config)?, ns))
}

fn render<T: Serialize>(
    format: Format,
    value: &T,
    table: impl FnOnce() -> String,
) -> Result<String> {
    match format {
        Format::Table => Ok(table()),
        Format::Json => serde_json::to_string_pretty(value)
            .map(|s| s + "\n")
            .map_err(|e| Error::Render(e.to_string())),
        Format::Yaml => serde_yaml::to_string(value).map_err(|e| Error::Render(e.to_string())),
    }
}

/// A Secret read with the user's kubeconfig: the plugin signs in to Azure with the same
/// credentials the operator uses, so only a user who may read them can.
pub(crate) async fn secret(
    client: &Client,
    ns: &str,
    name: &str,
) -> Result<k8s_openapi::api::core::v1::Secret> {
    let unreadable = |reason: String| Error::SecretUnreadable {
        namespace: ns.into(),
        name: name.into(),
        reason,
    };
    Api::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .map_err(|e| unreadable(e.to_string()))?
        .ok_or_else(|| unreadable("not found".into()))
}

pub(crate) async fn get<K>(client: &Client, ns: &str, name: &str) -> Result<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    Api::<K>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await?
        .ok_or_else(|| Error::NotFound {
            kind: K::kind(&()).to_string(),
            namespace: ns.into(),
            name: name.into(),
        })
}

async fn list<K>(client: &Client, ns: Option<&str>) -> Result<Vec<K>>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api = match ns {
        Some(ns) => Api::<K>::namespaced(client.clone(), ns),
        None => Api::<K>::all(client.clone()),
    };
    Ok(api.list(&Default::default()).await?.items)
}

/// Runs the command, writing what it prints on stdout to `out`. `azure` builds the Azure ML
/// and registry clients for `logs` and `lineage` (the operator's own factory).
pub async fn run(
    cli: &Cli,
    client: &Client,
    ns: &str,
    azure: &AzureClients,
    out: &mut (dyn std::io::Write + Send),
) -> Result<()> {
    let now = Timestamp::now();
    let text = match &cli.command {
        Command::Status { all_namespaces } => {
            let scope = (!all_namespaces).then_some(ns);
            let mut rows = Vec::new();
            for o in list::<EdgeComputeTarget>(client, scope).await? {
                rows.push(view::ect_row(&o, now));
            }
            for o in list::<TrainingRun>(client, scope).await? {
                rows.push(view::tr_row(&o, now));
            }
            for o in list::<ModelRelease>(client, scope).await? {
                rows.push(view::mr_row(&o, now));
            }
            render(cli.output, &rows, || view::status_table(&rows))?
        }
        Command::Lineage {
            modelrelease,
            no_registry,
        } => {
            let release: ModelRelease = get(client, ns, modelrelease).await?;
            let run = match &release.spec.training_run_ref {
                Some(r) => {
                    Api::<TrainingRun>::namespaced(client.clone(), ns)
                        .get_opt(&r.name)
                        .await?
                }
                None => None,
            };
            let mut l = view::lineage(&release, run.as_ref());
            let st = release.status.clone().unwrap_or_default();
            let pushed = st.artifact_digest.is_some() || st.image_digest.is_some();
            if !no_registry && pushed {
                match provenance::read(client, ns, azure, &release, run.as_ref()).await? {
                    Some(found) => view::check_registry(&mut l, &st, found),
                    None => l.mismatches.push(
                        "the registry's provenance was not read: the release's target is unknown"
                            .into(),
                    ),
                }
            }
            let text = render(cli.output, &l, || view::lineage_text(&l))?;
            if !l.mismatches.is_empty() {
                // The chain is still printed: a user needs to see what disagrees with what.
                write_out(out, &text)?;
                return Err(Error::LineageMismatch {
                    release: l.model_release,
                    mismatches: l.mismatches,
                });
            }
            text
        }
        Command::Logs {
            trainingrun,
            follow,
            poll_seconds,
        } => {
            let w = logs::Workspaces {
                kube: client,
                factory: azure,
            };
            let failure = if *follow {
                if cli.output != Format::Table {
                    return Err(Error::Usage(
                        "--follow prints the raw log: leave out -o json|yaml".into(),
                    ));
                }
                let poll = std::time::Duration::from_secs(*poll_seconds);
                logs::follow(&w, ns, trainingrun, poll, out).await?
            } else {
                let (log, failure) = logs::once(&w, ns, trainingrun).await?;
                let text = render(cli.output, &log, || log.log.clone())?;
                write_out(out, &text)?;
                failure
            };
            // A failed run's log is what its user needs: printed first, then the error.
            return failure.map_or(Ok(()), Err);
        }
        Command::ExplainFailure { resource } => {
            let e = explain(client, ns, resource).await?;
            render(cli.output, &e, || view::explanation_text(&e))?
        }
    };
    write_out(out, &text)
}

fn write_out(out: &mut (dyn std::io::Write + Send), text: &str) -> Result<()> {
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(Error::Output)
}

async fn explain(client: &Client, ns: &str, resource: &str) -> Result<view::Explanation> {
    let (kind, name) = match resource.split_once('/') {
        Some((k, n)) => (Some(k.to_ascii_lowercase()), n),
        None => (None, resource),
    };
    let id = |k: &str| format!("{k}/{ns}/{name}");
    let mut found = Vec::new();
    let wants = |short: &str, long: &str| {
        kind.as_deref()
            .is_none_or(|k| k == short || k == long || k == format!("{long}s"))
    };
    if let Some(k) = kind.as_deref()
        && ![
            "ect",
            "edgecomputetarget",
            "edgecomputetargets",
            "tr",
            "trainingrun",
            "trainingruns",
            "mr",
            "modelrelease",
            "modelreleases",
        ]
        .contains(&k)
    {
        return Err(Error::UnknownKind(k.to_string()));
    }
    if wants("ect", "edgecomputetarget")
        && let Some(o) = Api::<EdgeComputeTarget>::namespaced(client.clone(), ns)
            .get_opt(name)
            .await?
    {
        let st = o.status.unwrap_or_default();
        let phase = st.power_state.map(|p| format!("{p:?}"));
        found.push(view::explain(
            id("EdgeComputeTarget"),
            phase,
            &st.conditions,
        ));
    }
    if wants("tr", "trainingrun")
        && let Some(o) = Api::<TrainingRun>::namespaced(client.clone(), ns)
            .get_opt(name)
            .await?
    {
        let phase = o.status.as_ref().map(|s| format!("{:?}", s.phase));
        let st = o.status.unwrap_or_default();
        found.push(view::explain(id("TrainingRun"), phase, &st.conditions));
    }
    if wants("mr", "modelrelease")
        && let Some(o) = Api::<ModelRelease>::namespaced(client.clone(), ns)
            .get_opt(name)
            .await?
    {
        let st = o.status.unwrap_or_default();
        found.push(view::explain(id("ModelRelease"), None, &st.conditions));
    }
    match found.len() {
        0 => Err(Error::NotFoundAnyKind {
            namespace: ns.into(),
            name: name.into(),
        }),
        1 => Ok(found.remove(0)),
        _ => Err(Error::Ambiguous {
            name: name.into(),
            kinds: found
                .iter()
                .map(|e| e.resource.split('/').next().unwrap_or_default().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}
