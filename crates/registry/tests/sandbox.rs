//! Against the sandbox: the real distribution registry (token auth, TLS via the sandbox CA)
//! with the Azure simulator as ACR's token service. What we push is read back by skopeo and
//! umoci, which share no code with us.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use edgetrain_registry::{
    BaseImage, BuildFacts, Credential, Error, ModelMeta, PackOptions, Registry, Secret,
    ServingOptions, TokenCache, UploadPolicy, files_in_dir, model_artifact, referrers,
    serving_image, statement,
};
use edgetrain_sandbox_azure::{
    AzureSim, Config, RegistryConfig, RegistryEndpoints, RegistryUser, ServicePrincipal,
    TINY_BASE_REPOSITORY, TINY_BASE_TAG,
};
use url::Url;

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const PUSHER: (&str, &str) = ("pusher-app", "pusher-secret");
const READER: (&str, &str) = ("reader-app", "reader-secret");
const SKOPEO: (&str, &str) = ("skopeo", "skopeo-password");

struct Env {
    sim: AzureSim,
    dir: tempfile::TempDir,
}

impl Env {
    async fn start(tweak: impl FnOnce(&mut RegistryConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut registry = RegistryConfig {
            enabled: true,
            pull_only_clients: vec![READER.0.into()],
            users: vec![RegistryUser {
                username: SKOPEO.0.into(),
                password: edgetrain_sandbox_azure::Secret::new(SKOPEO.1),
                pull_only: false,
                no_delete: false,
            }],
            ..Default::default()
        };
        tweak(&mut registry);
        let config = Config {
            state_dir: dir.path().join("state"),
            azurite: false,
            service_principals: [PUSHER, READER]
                .iter()
                .map(|(id, secret)| ServicePrincipal::new(TENANT, id, secret))
                .collect(),
            registry,
            ..Config::default()
        };
        let sim = AzureSim::start(config).await.unwrap();
        Self { sim, dir }
    }

    fn reg(&self) -> &RegistryEndpoints {
        self.sim.registry().unwrap()
    }

    fn http_config(&self) -> edgetrain_azure::transport::HttpConfig {
        edgetrain_azure::transport::HttpConfig {
            extra_ca_bundle: Some(self.reg().ca_pem_path.clone()),
            ..Default::default()
        }
    }

    fn http(&self) -> reqwest::Client {
        self.http_config().build().unwrap()
    }

    /// What the operator passes for blob bodies: HTTP/1.1 only.
    fn blob_http(&self) -> reqwest::Client {
        self.http_config()
            .builder()
            .unwrap()
            .http1_only()
            .build()
            .unwrap()
    }

    fn aad(&self, (client_id, secret): (&str, &str)) -> Credential {
        use edgetrain_azure::identity::{
            Authority, ClientSecretCredential, ServicePrincipal, TokenCache,
        };
        let authority = Authority::new(
            Url::parse(&format!("{}/", self.sim.base_url())).unwrap(),
            TENANT,
        )
        .unwrap();
        let cred = ClientSecretCredential::new(
            self.http(),
            authority,
            ServicePrincipal {
                tenant: TENANT.into(),
                client_id: client_id.into(),
                client_secret: secret.to_owned().into(),
            },
            vec![self.sim.config().public_audience.clone()],
            Arc::new(TokenCache::new(Duration::from_secs(60))),
        );
        Credential::AzureAd {
            credential: Arc::new(cred),
            aad_scope: "https://management.azure.com/.default".into(),
            tenant: Some(TENANT.into()),
            identity: format!("{TENANT}/{client_id}"),
            secret_fingerprint: format!(
                "{:x}",
                <sha2::Sha256 as sha2::Digest>::digest(secret.as_bytes())
            ),
        }
    }

    fn client(&self, base: &str, credential: Credential, policy: UploadPolicy) -> Registry {
        Registry::with_blob_http(
            Url::parse(base).unwrap(),
            self.http(),
            self.blob_http(),
            credential,
            Arc::new(TokenCache::default()),
            policy,
        )
        .unwrap()
    }

    fn pusher(&self) -> Registry {
        self.client(&self.reg().url, self.aad(PUSHER), UploadPolicy::default())
    }

    /// Wait until the registry has logged everything answered so far: it writes an access-log
    /// line after each response, so send a marked request and wait for its line.
    async fn log_barrier(&self) {
        let mark = format!(
            "barrier-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        self.http()
            .get(format!("{}/v2/?{mark}", self.reg().url))
            .send()
            .await
            .unwrap();
        for _ in 0..500 {
            if std::fs::read_to_string(&self.reg().log_path)
                .unwrap()
                .contains(&mark)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the registry never logged {mark}");
    }

    /// Lines of the registry's access log for blob upload requests (POST/PATCH/PUT).
    async fn upload_requests_logged(&self) -> usize {
        self.logged_requests(
            &["\"PATCH /v2/", "\"PUT /v2/", "\"POST /v2/"],
            "/blobs/uploads/",
        )
        .await
        .len()
    }

    /// Access-log lines of requests starting with one of `starts` whose path contains `part`.
    async fn logged_requests(&self, starts: &[&str], part: &str) -> Vec<String> {
        self.log_barrier().await;
        std::fs::read_to_string(&self.reg().log_path)
            .unwrap()
            .lines()
            .filter(|l| starts.iter().any(|m| l.contains(m)) && l.contains(part))
            .map(str::to_owned)
            .collect()
    }

    fn skopeo(&self, args: &[&str]) -> std::process::Output {
        let out = Command::new("skopeo")
            .args(args)
            .output()
            .expect("skopeo installed (scripts/install-tools.sh)");
        assert!(
            out.status.success(),
            "skopeo {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn skopeo_auth(&self) -> Vec<String> {
        vec![
            "--cert-dir".into(),
            self.reg().cert_dir.display().to_string(),
            "--creds".into(),
            format!("{}:{}", SKOPEO.0, SKOPEO.1),
        ]
    }
}

/// Deterministic pseudo-random bytes (weights do not compress).
fn weights(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn write_model(dir: &Path, mtime_days_ago: u64) -> PathBuf {
    let model = dir.join(format!("model-{mtime_days_ago}"));
    std::fs::create_dir_all(model.join("extra")).unwrap();
    let when = std::time::SystemTime::now() - Duration::from_secs(86_400 * mtime_days_ago);
    for (name, bytes) in [
        ("scorer.onnx", weights(3 << 20, 1)),
        ("extra/labels.txt", b"cat\ndog\n".to_vec()),
        ("config.json", br#"{"threshold":0.5}"#.to_vec()),
    ] {
        let p = model.join(name);
        std::fs::write(&p, bytes).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(when)
            .unwrap();
    }
    model
}

fn meta() -> ModelMeta {
    ModelMeta {
        name: "scorer".into(),
        version: "3".into(),
        created: 1_764_000_000,
        format: Some("onnx".into()),
        description: Some("sandbox test model".into()),
        annotations: BTreeMap::from([("dev.edgetrain.job".into(), "job-1".into())]),
    }
}

fn pack() -> PackOptions {
    PackOptions {
        prefix: "opt/model".into(),
        ..Default::default()
    }
}

fn serving() -> ServingOptions {
    ServingOptions {
        env: BTreeMap::from([("AZUREML_MODEL_DIR".into(), "/opt/model".into())]),
        labels: BTreeMap::from([("dev.edgetrain.model".into(), "scorer:3".into())]),
        created: 1_764_000_000,
        ..Default::default()
    }
}

struct Pushed {
    artifact: String,
    image: String,
}

async fn push_all(client: &Registry, model_dir: &Path) -> (Pushed, BaseImage) {
    let files = files_in_dir(model_dir).unwrap();
    let artifact = model_artifact(&files, &meta(), &pack()).await.unwrap();
    let tags = vec!["3".to_owned()];
    let a = client
        .push_artifact("models/scorer", &artifact, &tags)
        .await
        .unwrap();
    let base = client
        .read_base(TINY_BASE_REPOSITORY, TINY_BASE_TAG)
        .await
        .unwrap();
    let image = serving_image(&base, &artifact.layers, &serving()).unwrap();
    let i = client
        .push_serving_image(
            "serving/scorer",
            &base,
            &image,
            Some("models/scorer"),
            &tags,
        )
        .await
        .unwrap();
    let facts = BuildFacts {
        builder_id: "https://edgetrain.dev/operator".into(),
        build_type: "https://edgetrain.dev/ModelRelease/v1".into(),
        external_parameters: serde_json::json!({"model": "scorer", "version": "3"}),
        resolved_dependencies: vec![(format!("oci://{}", base.name), base.manifest_digest.clone())],
        invocation_id: "test".into(),
    };
    let st = statement(
        &[
            ("models/scorer".into(), a.clone()),
            ("serving/scorer".into(), i.clone()),
        ],
        &facts,
    );
    let subjects = [
        artifact.manifest.descriptor().unwrap(),
        image.manifest.descriptor().unwrap(),
    ];
    let (blob, manifests) = referrers(&st, &subjects).unwrap();
    let list: Vec<_> = ["models/scorer", "serving/scorer"]
        .iter()
        .zip(subjects.iter().zip(manifests))
        .map(|(r, (s, m))| ((*r).to_owned(), s.clone(), m))
        .collect();
    client.push_referrers(&blob, &list).await.unwrap();
    (
        Pushed {
            artifact: a,
            image: i,
        },
        base,
    )
}

fn sha256_hex(bytes: &[u8]) -> String {
    edgetrain_registry::sha256_digest(bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_artifact_and_image_read_back_by_skopeo_and_umoci() {
    let env = Env::start(|_| {}).await;
    let model = write_model(env.dir.path(), 0);
    let client = env.pusher();
    let (pushed, base) = push_all(&client, &model).await;
    let stats = client.stats();
    // The base layer came by mount from base/tiny; the model layers by mount from models/.
    assert!(
        stats.blobs_mounted.load(Ordering::Relaxed) >= 2,
        "{stats:?}"
    );

    let host = &env.reg().host;
    let auth = env.skopeo_auth();
    for (repo, digest) in [
        ("models/scorer", &pushed.artifact),
        ("serving/scorer", &pushed.image),
    ] {
        let mut args: Vec<&str> = vec!["inspect", "--raw"];
        args.extend(auth.iter().map(String::as_str));
        let r = format!("docker://{host}/{repo}:3");
        args.push(&r);
        let out = env.skopeo(&args);
        assert_eq!(&sha256_hex(&out.stdout), digest, "{repo}");
    }
    let raw: serde_json::Value = serde_json::from_slice(
        &env.skopeo(
            &[
                &["inspect", "--raw"][..],
                &auth.iter().map(String::as_str).collect::<Vec<_>>(),
                &[&format!("docker://{host}/models/scorer:3")],
            ]
            .concat(),
        )
        .stdout,
    )
    .unwrap();
    assert_eq!(raw["artifactType"], edgetrain_registry::ARTIFACT_TYPE);

    // Copy the image to an OCI layout and unpack it: model file at the configured path, base
    // files intact.
    let layout = env.dir.path().join("layout");
    let src = format!("docker://{host}/serving/scorer:3");
    let dst = format!("oci:{}:img", layout.display());
    let mut args: Vec<&str> = vec![
        "copy",
        "--src-cert-dir",
        &env.reg().cert_dir.to_str().unwrap(),
    ];
    let creds = format!("{}:{}", SKOPEO.0, SKOPEO.1);
    args.extend(["--src-creds", &creds, &src, &dst]);
    env.skopeo(&args);
    let bundle = env.dir.path().join("bundle");
    let out = Command::new("umoci")
        .args([
            "unpack",
            "--rootless",
            "--image",
            &format!("{}:img", layout.display()),
        ])
        .arg(&bundle)
        .output()
        .expect("umoci installed (scripts/install-tools.sh)");
    assert!(
        out.status.success(),
        "umoci: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rootfs = bundle.join("rootfs");
    assert_eq!(
        std::fs::read(rootfs.join("opt/model/scorer.onnx")).unwrap(),
        weights(3 << 20, 1)
    );
    assert_eq!(
        std::fs::read(rootfs.join("opt/model/extra/labels.txt")).unwrap(),
        b"cat\ndog\n"
    );
    assert_eq!(
        edgetrain_sandbox_azure::tiny_base_differences(&rootfs),
        Vec::<String>::new(),
        "the base image's files, intact"
    );
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
    assert!(
        config["process"]["env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "AZUREML_MODEL_DIR=/opt/model")
    );

    // Provenance is findable from both digests (tag-schema fallback on this registry).
    for (repo, digest) in [
        ("models/scorer", &pushed.artifact),
        ("serving/scorer", &pushed.image),
    ] {
        let refs = client.referrers(repo, digest).await.unwrap();
        assert_eq!(refs.len(), 1, "{repo}");
        assert_eq!(
            refs[0]
                .artifact_type()
                .as_ref()
                .map(|t| t.to_string())
                .as_deref(),
            Some(edgetrain_registry::IN_TOTO_MEDIA_TYPE)
        );
    }
    assert!(base.manifest.layers().len() == 1);
    env.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_push_uploads_nothing_and_digests_ignore_clock_and_file_times() {
    let env = Env::start(|_| {}).await;
    let first = env.pusher();
    let (a, _) = push_all(&first, &write_model(env.dir.path(), 0)).await;
    assert!(first.stats().bytes_sent.load(Ordering::Relaxed) > 3 << 20);
    let logged = env.upload_requests_logged().await;
    assert!(logged > 0);
    // Blob bodies went through the HTTP/1.1 blob client, manifests through the main one
    // (HTTP/2 by ALPN with this registry).
    let blob_puts = env
        .logged_requests(&["\"PUT /v2/"], "/blobs/uploads/")
        .await;
    assert!(!blob_puts.is_empty());
    assert!(
        blob_puts.iter().all(|l| l.contains(" HTTP/1.1\"")),
        "{blob_puts:#?}"
    );
    let manifest_puts = env.logged_requests(&["\"PUT /v2/"], "/manifests/").await;
    assert!(!manifest_puts.is_empty());
    assert!(
        manifest_puts.iter().all(|l| l.contains(" HTTP/2.0\"")),
        "{manifest_puts:#?}"
    );

    // A fresh client (no cache), files rewritten with mtimes days apart: same digests, no bytes.
    let second = env.pusher();
    let (b, _) = push_all(&second, &write_model(env.dir.path(), 9)).await;
    assert_eq!(a.artifact, b.artifact);
    assert_eq!(a.image, b.image);
    let s = second.stats();
    assert_eq!(s.bytes_sent.load(Ordering::Relaxed), 0, "{s:?}");
    assert_eq!(s.blobs_uploaded.load(Ordering::Relaxed), 0, "{s:?}");
    // Everything the first push sent, the second found (at least that: it also HEADs the
    // base's layers, which the first mounted).
    assert!(
        s.bytes_reused.load(Ordering::Relaxed) >= first.stats().bytes_sent.load(Ordering::Relaxed),
        "{s:?}"
    );
    assert_eq!(
        env.upload_requests_logged().await,
        logged,
        "the registry saw upload requests"
    );
    env.sim.shutdown().await;
}

/// A plain-HTTP loopback proxy in front of the registry that drops the connection carrying
/// the `cut_at`-th PATCH after reading part of its body (before anything reaches the registry).
async fn cutting_proxy(
    upstream: String,
    http: reqwest::Client,
    cut_at: usize,
    forward_part: bool,
) -> (String, Arc<AtomicUsize>) {
    use http_body_util::BodyExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let me = format!("http://{}", listener.local_addr().unwrap());
    let patches = Arc::new(AtomicUsize::new(0));
    let (me2, count) = (me.clone(), patches.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (up, me, http, count) =
                (upstream.clone(), me2.clone(), http.clone(), count.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let (up, me, http, count) =
                            (up.clone(), me.clone(), http.clone(), count.clone());
                        async move {
                            let (parts, mut body) = req.into_parts();
                            if parts.method == hyper::Method::PATCH
                                && count.fetch_add(1, Ordering::SeqCst) + 1 == cut_at
                            {
                                // Read some of the chunk, then vanish. With `forward_part`
                                // that part first goes to the registry in a request that
                                // then breaks off, so the registry holds part of the chunk.
                                let mut part = Vec::new();
                                while part.len() < 256 * 1024 {
                                    match body.frame().await {
                                        Some(Ok(f)) => part
                                            .extend_from_slice(&f.into_data().unwrap_or_default()),
                                        _ => break,
                                    }
                                }
                                if forward_part {
                                    let url = format!(
                                        "{up}{}",
                                        parts
                                            .uri
                                            .path_and_query()
                                            .map(|p| p.as_str())
                                            .unwrap_or("/")
                                    );
                                    let broken = futures::stream::iter([
                                        Ok(bytes::Bytes::from(part)),
                                        Err(std::io::Error::other("cut")),
                                    ]);
                                    let mut r = http.request(parts.method.clone(), url);
                                    for (k, v) in &parts.headers {
                                        if k != hyper::header::HOST {
                                            r = r.header(k, v);
                                        }
                                    }
                                    let _ = r.body(reqwest::Body::wrap_stream(broken)).send().await;
                                }
                                return Err::<
                                    hyper::Response<http_body_util::Full<bytes::Bytes>>,
                                    std::io::Error,
                                >(std::io::Error::other(
                                    "cut",
                                ));
                            }
                            let data = body
                                .collect()
                                .await
                                .map_err(std::io::Error::other)?
                                .to_bytes();
                            let url = format!(
                                "{up}{}",
                                parts
                                    .uri
                                    .path_and_query()
                                    .map(|p| p.as_str())
                                    .unwrap_or("/")
                            );
                            let mut r = http.request(parts.method.clone(), url);
                            for (k, v) in &parts.headers {
                                if k != hyper::header::HOST {
                                    r = r.header(k, v);
                                }
                            }
                            let resp = r.body(data).send().await.map_err(std::io::Error::other)?;
                            let mut out = hyper::Response::builder().status(resp.status());
                            for (k, v) in resp.headers() {
                                let v = if k == hyper::header::LOCATION {
                                    v.to_str().unwrap().replace(&up, &me).parse().unwrap()
                                } else {
                                    v.clone()
                                };
                                out = out.header(k, v);
                            }
                            let b = resp.bytes().await.map_err(std::io::Error::other)?;
                            Ok(out.body(http_body_util::Full::new(b)).unwrap())
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (me, patches)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_upload_cut_mid_chunk_resumes_and_tokens_refresh_between_chunks() {
    // Access tokens that are already "expiring" for the client (margin > lifetime): every
    // request of the upload must use a freshly minted token.
    let env = Env::start(|r| r.access_token_lifetime_secs = 30).await;
    let (proxy, patches) = cutting_proxy(env.reg().url.clone(), env.http(), 2, false).await;
    let policy = UploadPolicy {
        chunked_from: 0,
        chunk_size: 1 << 20,
        refresh_margin: Duration::from_secs(60),
        ..Default::default()
    };
    let client = env.client(&proxy, env.aad(PUSHER), policy);
    let model = write_model(env.dir.path(), 0);
    let files = files_in_dir(&model).unwrap();
    let artifact = model_artifact(&files, &meta(), &pack()).await.unwrap();
    let weight = &artifact.layers[0];
    assert!(weight.descriptor.size() > 3 << 20);
    let before = env.sim.counters().get("POST", "acr-token");
    client
        .push_artifact("models/cut", &artifact, &[])
        .await
        .unwrap();
    let s = client.stats();
    assert_eq!(s.resumes.load(Ordering::Relaxed), 1, "{s:?}");
    assert_eq!(s.restarts.load(Ordering::Relaxed), 0, "{s:?}");
    let sent = s.bytes_sent.load(Ordering::Relaxed);
    let total: u64 = artifact
        .layers
        .iter()
        .map(|l| l.descriptor.size())
        .sum::<u64>()
        + artifact.config.descriptor.size();
    // On top of the blobs, only (part of) the cut chunk went out twice: at most one chunk.
    assert!(
        sent >= total && sent <= total + (1 << 20),
        "sent {sent} of {total}"
    );
    assert!(patches.load(Ordering::SeqCst) >= 5);
    // The registry checked the digest on the final PUT; read it back independently too.
    let direct = env.pusher();
    assert!(
        direct
            .blob_exists(
                "models/cut",
                &weight.digest(),
                &[edgetrain_registry::repository_scope(
                    "models/cut",
                    &["pull"]
                )]
            )
            .await
            .unwrap()
    );
    let minted = env.sim.counters().get("POST", "acr-token") - before;
    assert!(
        minted as usize >= patches.load(Ordering::SeqCst),
        "tokens minted {minted} for {} PATCHes",
        patches.load(Ordering::SeqCst)
    );
    env.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_failures_are_clear_errors_without_retry_loops() {
    let env = Env::start(|_| {}).await;
    let model = write_model(env.dir.path(), 0);
    let artifact = model_artifact(&files_in_dir(&model).unwrap(), &meta(), &pack())
        .await
        .unwrap();
    let host = env.reg().host.clone();
    let check = |e: &Error, repo: &str, secret: &str| {
        let text = e.to_string();
        eprintln!("error as shown: {text}");
        assert!(text.contains(&host) && text.contains(repo), "{text}");
        assert!(!text.contains(secret), "secret in error: {text}");
    };

    // Wrong password (Basic, Docker-style token flow).
    let wrong = env.client(
        &env.reg().url,
        Credential::Basic {
            username: SKOPEO.0.into(),
            password: Secret::new("not-the-password"),
        },
        UploadPolicy::default(),
    );
    let e = wrong
        .push_artifact("models/a", &artifact, &[])
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Unauthorized { .. }), "{e:?}");
    check(&e, "models/a", "not-the-password");
    // At most one token request per concurrently pushed blob: no retry loop.
    let blobs = artifact.layers.len() as u64 + 1;
    assert!(
        wrong.token_requests() <= blobs,
        "{}",
        wrong.token_requests()
    );

    // Wrong AAD client secret.
    let bad_aad = env.client(
        &env.reg().url,
        env.aad((PUSHER.0, "wrong-secret")),
        UploadPolicy::default(),
    );
    let e = bad_aad
        .push_artifact("models/a", &artifact, &[])
        .await
        .unwrap_err();
    assert!(matches!(e, Error::AzureAd { .. }), "{e:?}");
    check(&e, "models/a", "wrong-secret");

    // Authenticated but without push (AcrPull-like role).
    let reader = env.client(&env.reg().url, env.aad(READER), UploadPolicy::default());
    let e = reader
        .push_artifact("models/a", &artifact, &[])
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Denied { .. }), "{e:?}");
    check(&e, "models/a", READER.1);
    // One exchange and one first token, then per concurrently pushed blob at most a token
    // for its HEAD, one for its POST and one retry: bounded, whatever the interleaving.
    assert!(
        reader.token_requests() <= 2 + 3 * blobs,
        "{}",
        reader.token_requests()
    );

    // Unknown repository.
    let e = env
        .pusher()
        .read_base("base/missing", "1")
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NotFound { .. }), "{e:?}");
    check(&e, "base/missing", PUSHER.1);
    env.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_base_behind_an_index_resolves_to_linux_amd64() {
    use edgetrain_registry::{BlobOutcome, ManifestBytes, media_types};
    let env = Env::start(|_| {}).await;
    let client = env.pusher();
    // Re-publish the tiny base in another repository behind an OCI index.
    let m = client
        .get_manifest(TINY_BASE_REPOSITORY, TINY_BASE_TAG)
        .await
        .unwrap();
    let parsed: oci_spec::image::ImageManifest = serde_json::from_slice(&m.bytes).unwrap();
    let mut blobs = parsed.layers().clone();
    blobs.push(parsed.config().clone());
    for d in &blobs {
        let got = client
            .ensure_blob("base/multi", d, None, Some(TINY_BASE_REPOSITORY))
            .await
            .unwrap();
        assert_eq!(got, BlobOutcome::Mounted);
    }
    client
        .put_manifest("base/multi", &m.digest, &m, &[])
        .await
        .unwrap();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_types::OCI_INDEX,
        "manifests": [{"mediaType": m.media_type, "digest": m.digest, "size": m.bytes.len(),
                       "platform": {"os": "linux", "architecture": "amd64"}}],
    });
    let index = ManifestBytes::new(
        media_types::OCI_INDEX,
        edgetrain_registry::canonical_json(&index).unwrap(),
    );
    client
        .put_manifest("base/multi", "multi", &index, &[])
        .await
        .unwrap();

    let base = client.read_base("base/multi", "multi").await.unwrap();
    assert_eq!(base.manifest_digest, m.digest);
    assert_eq!(base.family, edgetrain_registry::Family::Oci);
    assert_eq!(base.config["config"]["Cmd"][0], "/bin/serve");
    env.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_cut_after_part_of_it_went_to_the_registry_still_gives_the_right_blob() {
    let env = Env::start(|_| {}).await;
    let (proxy, _) = cutting_proxy(env.reg().url.clone(), env.http(), 2, true).await;
    let policy = UploadPolicy {
        chunked_from: 0,
        chunk_size: 1 << 20,
        ..Default::default()
    };
    let client = env.client(&proxy, env.aad(PUSHER), policy);
    let model = write_model(env.dir.path(), 0);
    let artifact = model_artifact(&files_in_dir(&model).unwrap(), &meta(), &pack())
        .await
        .unwrap();
    client
        .push_artifact("models/partial", &artifact, &[])
        .await
        .unwrap();
    let s = client.stats();
    // The client asked the session where it stands and went on from there, or started a new
    // session when the registry had invalidated it; exactly one of the two, and never both.
    let (resumes, restarts) = (
        s.resumes.load(Ordering::Relaxed),
        s.restarts.load(Ordering::Relaxed),
    );
    assert_eq!(resumes + restarts, 1, "{s:?}");
    // The registry verified the digest of the complete blob on the final PUT.
    let weight = &artifact.layers[0];
    let scope = [edgetrain_registry::repository_scope(
        "models/partial",
        &["pull"],
    )];
    assert!(
        env.pusher()
            .blob_exists("models/partial", &weight.digest(), &scope)
            .await
            .unwrap()
    );
    env.sim.shutdown().await;
}

/// `statements_of` reads back the statement attached to each pushed digest, and refuses a
/// referrers index that lists a referrer about another subject (here: the artifact's index
/// filed under the image's digest in the tag schema).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attached_statements_read_back_and_a_misfiled_referrer_is_refused() {
    let env = Env::start(|_| {}).await;
    let model = write_model(env.dir.path(), 0);
    let client = env.pusher();
    let (pushed, _) = push_all(&client, &model).await;
    for (repo, digest) in [
        ("models/scorer", &pushed.artifact),
        ("serving/scorer", &pushed.image),
    ] {
        let found = client.statements_of(repo, digest).await.unwrap();
        assert_eq!(found.len(), 1, "{repo}");
        let st = &found[0].statement;
        assert_eq!(
            st["predicate"]["buildDefinition"]["externalParameters"]["model"],
            "scorer"
        );
        let subjects: Vec<String> = st["subject"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| format!("sha256:{}", s["digest"]["sha256"].as_str().unwrap()))
            .collect();
        assert_eq!(subjects, [pushed.artifact.clone(), pushed.image.clone()]);
        let refs = client.referrers(repo, digest).await.unwrap();
        assert_eq!(found[0].referrer, refs[0].digest().to_string());
    }
    let tag = |d: &str| d.replacen(':', "-", 1);
    let index = client
        .get_manifest("models/scorer", &tag(&pushed.artifact))
        .await
        .unwrap();
    client
        .put_manifest("models/scorer", &tag(&pushed.image), &index, &[])
        .await
        .unwrap();
    let err = client
        .statements_of("models/scorer", &pushed.image)
        .await
        .expect_err("a referrer about another subject is refused");
    assert!(
        err.to_string()
            .contains(&format!("does not name {} as its subject", pushed.image)),
        "{err}"
    );
    env.sim.shutdown().await;
}
