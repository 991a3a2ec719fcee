//! `make bench` push figures (issue 14): a generated model of four 256 MiB weight files pushed
//! to an empty sandbox registry by us and by `skopeo copy` from an OCI layout, the registry's
//! ingest bound (the same blobs held in memory, PUT monolithically with precomputed digests by
//! a bare reqwest client over HTTP/1.1), a re-push by a fresh process, and peak RSS on a 2 GiB
//! model. Each round starts fresh registries and runs ours and the peers back to back, so a
//! ratio compares runs under the same load; figures are medians over the rounds. Writes
//! `target/bench/results.json` entries `push`, `push-rss`, `push-bound`, `repush`. Not a test:
//! nothing here fails on a time.
//!
//! `push-bench run [--out FILE] [--files N] [--file-mib M] [--rounds R] [--rss-files N]`;
//! `push-bench push ...` is the child process measured for time, CPU and peak RSS.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::{Arc, Mutex},
    time::Instant,
};

use bytes::Bytes;
use edgetrain_registry::{
    Content, Credential, ModelMeta, PackOptions, Registry, Secret, TokenCache, UploadPolicy,
    files_in_dir, model_artifact, plan_layers, tar_layer,
};
use edgetrain_sandbox_azure::{AzureSim, Config, RegistryConfig, RegistryUser};
use futures::TryStreamExt;
use serde_json::{Value, json};
use sha2::Digest as _;

const USER: &str = "bench";
const PASSWORD: &str = "bench-password";

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn num(args: &[String], name: &str, default: usize) -> usize {
    arg(args, name)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn meta() -> ModelMeta {
    ModelMeta {
        name: "bench".into(),
        version: "1".into(),
        created: 1_764_000_000,
        format: Some("safetensors".into()),
        description: None,
        annotations: Default::default(),
    }
}

fn http_config(ca: &Path) -> edgetrain_azure::transport::HttpConfig {
    edgetrain_azure::transport::HttpConfig {
        extra_ca_bundle: Some(ca.to_owned()),
        ..Default::default()
    }
}

/// The main client, as the operator builds it (HTTP/2 when the registry offers it).
fn http(ca: &Path) -> reqwest::Client {
    http_config(ca).build().expect("http client")
}

/// The blob client, as the operator builds it: HTTP/1.1 only.
fn http1(ca: &Path) -> reqwest::Client {
    http_config(ca)
        .builder()
        .expect("http client")
        .http1_only()
        .build()
        .expect("http client")
}

/// `--chunk-mib M`: every blob in M MiB chunks (to compare with monolithic PUTs);
/// `--h2-blobs`: blob bodies over the main client (HTTP/2) too.
fn client(args: &[String], url: &str, ca: &Path) -> Registry {
    let policy = match arg(args, "--chunk-mib").and_then(|v| v.parse::<u64>().ok()) {
        Some(mib) => UploadPolicy {
            chunked_from: 0,
            chunk_size: mib << 20,
            ..UploadPolicy::default()
        },
        None => UploadPolicy::default(),
    };
    let blob_http = if args.iter().any(|a| a == "--h2-blobs") {
        http(ca)
    } else {
        http1(ca)
    };
    Registry::with_blob_http(
        url.parse().expect("url"),
        http(ca),
        blob_http,
        Credential::Basic {
            username: USER.into(),
            password: Secret::new(PASSWORD),
        },
        Arc::new(TokenCache::default()),
        policy,
    )
    .expect("client")
}

/// Child: push the model directory, print `{"secs", "digest_secs", "bytes_sent"}`.
async fn push(args: &[String]) {
    let url = arg(args, "--registry").expect("--registry");
    let ca = PathBuf::from(arg(args, "--ca").expect("--ca"));
    let repo = arg(args, "--repo").expect("--repo");
    let model = PathBuf::from(arg(args, "--model").expect("--model"));
    let start = Instant::now();
    let client = client(args, &url, &ca);
    let files = files_in_dir(&model).expect("model files");
    let artifact = model_artifact(&files, &meta(), &PackOptions::default())
        .await
        .expect("artifact");
    let digest_secs = start.elapsed().as_secs_f64();
    client
        .push_artifact(&repo, &artifact, &["1".into()])
        .await
        .expect("push");
    let secs = start.elapsed().as_secs_f64();
    let sent = client
        .stats()
        .bytes_sent
        .load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "{}",
        json!({"secs": secs, "digest_secs": digest_secs, "bytes_sent": sent})
    );
}

/// One measured push.
#[derive(Debug, Clone, Copy, Default)]
struct Run {
    /// Wall seconds of the push.
    secs: f64,
    /// Peak RSS (MiB) of the pushing process (0 when measured in-process).
    rss: f64,
    /// CPU seconds (user + sys) of the pushing process (0 when in-process).
    cpu: f64,
    /// CPU seconds the registry process spent meanwhile.
    registry_cpu: f64,
    /// Seconds of our digest pass (ours only).
    digest_secs: f64,
    /// Blob bytes sent (ours only).
    bytes: u64,
}

/// Run `cmd` under `/usr/bin/time`; returns (wall seconds, peak RSS MiB, CPU seconds, stdout).
fn measured(cmd: &mut Command) -> Result<(f64, f64, f64, String), String> {
    let prog = cmd.get_program().to_owned();
    let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
    let start = Instant::now();
    let out = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("__TIME__ %M %U %S")
        .arg(&prog)
        .args(&args)
        .output()
        .expect("/usr/bin/time");
    let secs = start.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!("{prog:?} failed: {stderr}"));
    }
    let v: Vec<f64> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("__TIME__ "))
        .next_back()
        .expect("time line")
        .split_whitespace()
        .map(|v| v.parse().expect("number"))
        .collect();
    Ok((
        secs,
        v[0] / 1024.0,
        v[1] + v[2],
        String::from_utf8_lossy(&out.stdout).into_owned(),
    ))
}

/// Files `first..first + files` of `mib` MiB of incompressible bytes each.
fn generate_model(dir: &Path, first: usize, files: usize, mib: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    for i in first..first + files {
        use std::io::Write;
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ ((i as u64 + 1) << 32);
        let mut f = std::io::BufWriter::new(
            std::fs::File::create(dir.join(format!("model-{i:05}.safetensors"))).unwrap(),
        );
        for _ in 0..mib {
            for chunk in buf.chunks_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
            }
            f.write_all(&buf).unwrap();
        }
    }
}

/// The blob contents of our artifact's layers, without the digest pass.
fn layer_contents(model: &Path) -> Vec<Content> {
    let files = files_in_dir(model).unwrap();
    let m = meta();
    plan_layers(&files, &m, &PackOptions::default())
        .unwrap()
        .iter()
        .map(|p| tar_layer(&p.files, m.created as u64).unwrap())
        .collect()
}

/// An OCI image layout with the same uncompressed tar layers (what skopeo sends).
async fn write_layout(layout: &Path, model: &Path) -> Vec<(String, PathBuf, u64)> {
    let files = files_in_dir(model).unwrap();
    let artifact = model_artifact(&files, &meta(), &PackOptions::default())
        .await
        .unwrap();
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let mut layers = Vec::new();
    for l in &artifact.layers {
        let d = l.digest();
        let path = blobs.join(d.trim_start_matches("sha256:"));
        let mut f = tokio::fs::File::create(&path).await.unwrap();
        let mut s = l.content.stream_from(0);
        while let Some(b) = s.try_next().await.unwrap() {
            tokio::io::AsyncWriteExt::write_all(&mut f, &b)
                .await
                .unwrap();
        }
        layers.push((d, path, l.descriptor.size()));
    }
    let config = json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.0.clone()).collect::<Vec<_>>()},
    });
    let put = |v: &Value| {
        let bytes = edgetrain_registry::canonical_json(v).unwrap();
        let d = edgetrain_registry::sha256_digest(&bytes);
        std::fs::write(blobs.join(d.trim_start_matches("sha256:")), &bytes).unwrap();
        (d, bytes.len())
    };
    let (cd, cs) = put(&config);
    let manifest = json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
        "layers": layers.iter().map(|(d, _, s)| json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": s})).collect::<Vec<_>>(),
    });
    let (md, ms) = put(&manifest);
    std::fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let index = json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms, "annotations": {"org.opencontainers.image.ref.name": "img"}}]});
    std::fs::write(layout.join("index.json"), index.to_string()).unwrap();
    layers
}

/// A fresh sandbox (empty registry) whose state lives in memory-backed `/dev/shm` when there
/// is one: a round writes over 4 GiB, and on disk the page cache's writeback started partway
/// through a round (the registry's CPU per GiB ingested varied from 3.5 to 6 s with it), so
/// later pushes in a round paid for earlier ones. [`finish`] removes the state.
async fn sandbox() -> (AzureSim, tempfile::TempDir) {
    let shm = Path::new("/dev/shm");
    let state = if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
    .expect("state dir");
    let sim = AzureSim::start(Config {
        state_dir: state.path().to_owned(),
        azurite: false,
        registry: RegistryConfig {
            enabled: true,
            users: vec![RegistryUser {
                username: USER.into(),
                password: edgetrain_sandbox_azure::Secret::new(PASSWORD),
                pull_only: false,
                no_delete: false,
            }],
            ..Default::default()
        },
        ..Config::default()
    })
    .await
    .expect("sandbox with registry");
    (sim, state)
}

async fn finish(sim: AzureSim, state: tempfile::TempDir) {
    sim.shutdown().await;
    drop(state);
}

/// CPU seconds (user + sys) the registry process of `sim` has used so far, from /proc.
fn registry_cpu(sim: &AzureSim) -> f64 {
    let reg = sim.registry().unwrap();
    let config_dir = reg
        .log_path
        .parent()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let ticks = |stat: &str| -> Option<f64> {
        // Fields after the `(comm)`: state is field 3, utime 14, stime 15.
        let f: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        Some(f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?)
    };
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .find_map(|e| {
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd);
            (cmd.contains("serve") && cmd.contains(&config_dir))
                .then(|| std::fs::read_to_string(e.path().join("stat")).ok())
                .flatten()
                .and_then(|s| ticks(&s))
        })
        // USER_HZ is 100 on Linux.
        .map_or(f64::NAN, |t| t / 100.0)
}

fn ours(sim: &AzureSim, model: &Path, repo: &str, extra: &[&str]) -> Run {
    let reg = sim.registry().unwrap();
    let me = std::env::current_exe().unwrap();
    let c0 = registry_cpu(sim);
    let (_, rss, cpu, out) = measured(
        Command::new(me)
            .args(["push", "--registry", &reg.url, "--ca"])
            .arg(&reg.ca_pem_path)
            .args(["--repo", repo, "--model"])
            .arg(model)
            .args(extra),
    )
    .expect("our push");
    let v: Value = serde_json::from_str(out.trim()).expect("child output");
    Run {
        secs: v["secs"].as_f64().unwrap(),
        rss,
        cpu,
        registry_cpu: registry_cpu(sim) - c0,
        digest_secs: v["digest_secs"].as_f64().unwrap(),
        bytes: v["bytes_sent"].as_u64().unwrap(),
    }
}

/// skopeo's chunked upload now and then meets a 500 from distribution 2.8 on a loaded machine;
/// one retry keeps the bench going (and is reported).
fn skopeo(sim: &AzureSim, layout: &Path, repo: &str) -> Run {
    skopeo_once(sim, layout, repo).unwrap_or_else(|e| {
        eprintln!("skopeo failed once ({e}); retrying");
        skopeo_once(sim, layout, repo).expect("skopeo")
    })
}

fn skopeo_once(sim: &AzureSim, layout: &Path, repo: &str) -> Result<Run, String> {
    let reg = sim.registry().unwrap();
    let c0 = registry_cpu(sim);
    let (secs, rss, cpu, _) = measured(
        Command::new("skopeo")
            .args(["copy", "--quiet", "--dest-cert-dir"])
            .arg(&reg.cert_dir)
            .args(["--dest-creds", &format!("{USER}:{PASSWORD}")])
            .arg(format!("oci:{}:img", layout.display()))
            .arg(format!("docker://{}/{repo}:1", reg.host)),
    )?;
    Ok(Run {
        secs,
        rss,
        cpu,
        registry_cpu: registry_cpu(sim) - c0,
        ..Run::default()
    })
}

/// A push token for `repo` from the sandbox token service.
async fn token(sim: &AzureSim, http: &reqwest::Client, repo: &str) -> String {
    let reg = sim.registry().unwrap();
    let token: Value = http
        .get(format!("{}/oauth2/token", sim.base_url()))
        .query(&[
            ("service", reg.host.as_str()),
            ("scope", &format!("repository:{repo}:pull,push")),
        ])
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    token["token"].as_str().unwrap().to_owned()
}

/// `POST …/blobs/uploads/` → the session URL.
async fn session(sim: &AzureSim, http: &reqwest::Client, token: &str, repo: &str) -> String {
    let reg = sim.registry().unwrap();
    let r = http
        .post(format!("{}/v2/{repo}/blobs/uploads/", reg.url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let loc = r.headers()["location"].to_str().unwrap();
    if loc.starts_with('/') {
        format!("{}{loc}", reg.url)
    } else {
        loc.to_owned()
    }
}

fn with_digest(session: &str, digest: &str) -> String {
    let sep = if session.contains('?') { '&' } else { '?' };
    format!("{session}{sep}digest={digest}")
}

/// The registry's ingest bound: the layer blobs already in memory, digests precomputed, one
/// monolithic PUT each, all at once over separate HTTP/1.1 connections; no auth round trips
/// (token and sessions obtained before the clock starts).
async fn bound(sim: &AzureSim, layers: &[(String, PathBuf, u64)], repo: &str) -> Run {
    let reg = sim.registry().unwrap();
    let http = http1(&reg.ca_pem_path);
    let token = token(sim, &http, repo).await;
    let mut puts = Vec::new();
    for (d, path, _) in layers {
        let body = Bytes::from(std::fs::read(path).unwrap());
        puts.push((
            with_digest(&session(sim, &http, &token, repo).await, d),
            body,
        ));
    }
    let c0 = registry_cpu(sim);
    let start = Instant::now();
    // Handed over in 256 KiB slices of the one allocation (no copy): one 256 MiB body chunk
    // measured slower than streaming here, and 1 MiB slices no faster than 256 KiB ones. Fixed
    // here, not our READ_BUFFER, so that tuning ours never moves the bound.
    const SLICE: usize = 256 * 1024;
    let sends = puts.into_iter().map(|(url, body)| {
        let len = body.len();
        let slices = (0..len)
            .step_by(SLICE)
            .map(move |i| Ok::<_, std::io::Error>(body.slice(i..len.min(i + SLICE))));
        http.put(url)
            .bearer_auth(&token)
            .header("Content-Type", "application/octet-stream")
            .header("Content-Length", len.to_string())
            .body(reqwest::Body::wrap_stream(futures::stream::iter(slices)))
            .send()
    });
    for r in futures::future::join_all(sends).await {
        assert_eq!(r.unwrap().status().as_u16(), 201, "bound PUT");
    }
    Run {
        secs: start.elapsed().as_secs_f64(),
        registry_cpu: registry_cpu(sim) - c0,
        ..Run::default()
    }
}

/// The single-pass alternative to our digest pass + upload, in-process: each layer streamed
/// from the model files once, hashed on the way (`POST`, one streamed `PATCH`, `PUT
/// ?digest=`), all layers at once over HTTP/1.1, starting from the same token as `bound`.
/// Not in results.json: it is what the README's two-pass choice is measured against.
async fn single_pass(sim: &AzureSim, model: &Path, repo: &str) -> Run {
    let reg = sim.registry().unwrap();
    let http = http1(&reg.ca_pem_path);
    let c0 = registry_cpu(sim);
    let start = Instant::now();
    let token = token(sim, &http, repo).await;
    let uploads = layer_contents(model).into_iter().map(|content| {
        let (http, token) = (&http, &token);
        async move {
            let url = session(sim, http, token, repo).await;
            let hasher = Arc::new(Mutex::new(sha2::Sha256::new()));
            let h = hasher.clone();
            let body = content
                .stream_from(0)
                .inspect_ok(move |b| h.lock().unwrap().update(b));
            let r = http
                .patch(&url)
                .bearer_auth(token)
                .header("Content-Type", "application/octet-stream")
                .header("Content-Length", content.size().to_string())
                .body(reqwest::Body::wrap_stream(body))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 202, "single-pass PATCH");
            let loc = r.headers()["location"].to_str().unwrap();
            let loc = if loc.starts_with('/') {
                format!("{}{loc}", reg.url)
            } else {
                loc.to_owned()
            };
            let digest = format!("sha256:{:x}", hasher.lock().unwrap().clone().finalize());
            let r = http
                .put(with_digest(&loc, &digest))
                .bearer_auth(token)
                .header("Content-Length", "0")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 201, "single-pass PUT");
        }
    });
    futures::future::join_all(uploads).await;
    Run {
        secs: start.elapsed().as_secs_f64(),
        registry_cpu: registry_cpu(sim) - c0,
        ..Run::default()
    }
}

fn entry(
    name: &str,
    ours: f64,
    peer: f64,
    peer_name: &str,
    unit: &str,
    ratio: f64,
    input: &str,
) -> Value {
    let r = |x: f64| (x * 100.0).round() / 100.0;
    json!({"name": name, "ours": r(ours), "peer": r(peer), "peer_name": peer_name, "unit": unit, "ratio": r(ratio), "input": input})
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn show(what: &str, r: &Run, mib: f64) {
    eprintln!(
        "  {what:<28} {:6.2} s {:7.1} MiB/s  rss {:5.1} MiB  cpu {:5.2} s  registry cpu {:5.2} s{}",
        r.secs,
        mib / r.secs,
        r.rss,
        r.cpu,
        r.registry_cpu,
        if r.digest_secs > 0.0 {
            format!(
                "  (digest pass {:.2} s, {} bytes sent)",
                r.digest_secs, r.bytes
            )
        } else {
            String::new()
        }
    );
}

async fn run(args: &[String]) {
    let out =
        PathBuf::from(arg(args, "--out").unwrap_or_else(|| "target/bench/results.json".into()));
    let files = num(args, "--files", 4);
    let mib = num(args, "--file-mib", 256);
    let rounds = num(args, "--rounds", 5).max(1);
    let rss_files = num(args, "--rss-files", 8);
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    generate_model(&model, 0, files, mib);
    let layout = tmp.path().join("layout");
    let layers = write_layout(&layout, &model).await;
    let total_mib = layers.iter().map(|l| l.2).sum::<u64>() as f64 / (1 << 20) as f64;
    let load_before = load();

    // Every push meets an empty registry; ours and the peers take turns within a round.
    let mut rows: Vec<[Run; 6]> = Vec::new();
    for round in 0..rounds {
        eprintln!("round {} (load average {})", round + 1, load());
        let (sim, state) = sandbox().await;
        let first = ours(&sim, &model, "bench/model", &[]);
        show("ours", &first, total_mib);
        let again = ours(&sim, &model, "bench/model", &[]);
        show("ours, re-push", &again, total_mib);
        finish(sim, state).await;

        let (sim, state) = sandbox().await;
        let sk = skopeo(&sim, &layout, "bench/skopeo");
        show("skopeo", &sk, total_mib);
        let sk_again = skopeo(&sim, &layout, "bench/skopeo");
        show("skopeo, re-push", &sk_again, total_mib);
        finish(sim, state).await;

        let (sim, state) = sandbox().await;
        let b = bound(&sim, &layers, "bench/bound").await;
        show("bound (PUTs from memory)", &b, total_mib);
        finish(sim, state).await;

        let (sim, state) = sandbox().await;
        let sp = single_pass(&sim, &model, "bench/single").await;
        show("single pass (hash while sending)", &sp, total_mib);
        finish(sim, state).await;
        rows.push([first, again, sk, sk_again, b, sp]);
    }

    // Not results.json figures: what the defaults (monolithic PUTs, HTTP/1.1 blobs) rest on.
    for (what, extra) in [
        ("ours, 64 MiB chunks", &["--chunk-mib", "64"][..]),
        ("ours, blobs over HTTP/2", &["--h2-blobs"][..]),
    ] {
        let (sim, state) = sandbox().await;
        let r = ours(&sim, &model, "bench/variant", extra);
        show(what, &r, total_mib);
        finish(sim, state).await;
    }

    // Peak RSS on a bigger model (the issue's 2 GiB case): the same files plus more.
    let big = tmp.path().join("model-big");
    std::fs::create_dir_all(&big).unwrap();
    for e in std::fs::read_dir(&model).unwrap().flatten() {
        std::fs::hard_link(e.path(), big.join(e.file_name())).unwrap();
    }
    generate_model(&big, files, rss_files.saturating_sub(files), mib);
    let big_layout = tmp.path().join("layout-big");
    let big_mib = write_layout(&big_layout, &big)
        .await
        .iter()
        .map(|l| l.2)
        .sum::<u64>() as f64
        / (1 << 20) as f64;
    let (sim, state) = sandbox().await;
    let big_ours = ours(&sim, &big, "bench/big", &[]);
    show("ours, big model", &big_ours, big_mib);
    finish(sim, state).await;
    let (sim, state) = sandbox().await;
    let big_sk = skopeo(&sim, &big_layout, "bench/big");
    show("skopeo, big model", &big_sk, big_mib);
    finish(sim, state).await;

    let col = |i: usize, f: fn(&Run) -> f64| median(rows.iter().map(|r| f(&r[i])).collect());
    let pair = |i: usize, j: usize, f: fn(&Run) -> f64| {
        median(rows.iter().map(|r| f(&r[j]) / f(&r[i]).max(1e-3)).collect())
    };
    let secs = |r: &Run| r.secs;
    let rss = |r: &Run| r.rss;
    let mibs = |s: f64| total_mib / s;
    let input = format!(
        "{files} x {mib} MiB weight files ({total_mib:.0} MiB), local sandbox registry (distribution 2.8, TLS, token auth, storage in /dev/shm where there is one), empty registry per push; median of {rounds} rounds, ours and peer in turn; load average {load_before} before, {} after",
        load()
    );
    let sent_again = rows.iter().map(|r| r[1].bytes).max().unwrap_or(0);
    let figures = vec![
        entry(
            "push",
            mibs(col(0, secs)),
            mibs(col(2, secs)),
            "skopeo copy (oci layout)",
            "MiB/s",
            pair(0, 2, secs),
            &input,
        ),
        entry(
            "push-rss",
            big_ours.rss,
            big_sk.rss,
            "skopeo copy (oci layout)",
            "MiB",
            big_sk.rss / big_ours.rss,
            &format!(
                "{rss_files} x {mib} MiB weight files ({big_mib:.0} MiB), one push each; peak RSS of the pushing process ({total_mib:.0} MiB model: ours {:.1} MiB, skopeo {:.1} MiB)",
                col(0, rss),
                col(2, rss)
            ),
        ),
        entry(
            "push-bound",
            mibs(col(0, secs)),
            mibs(col(4, secs)),
            "registry ingest bound: blobs in memory, monolithic PUTs with precomputed digests, 4 HTTP/1.1 connections at once",
            "MiB/s",
            pair(0, 4, secs),
            &input,
        ),
        entry(
            "repush",
            col(1, secs),
            col(3, secs),
            "skopeo copy (oci layout), second run (with its blob-info cache in /var/lib/containers/cache)",
            "s",
            pair(1, 3, secs),
            &format!("{input}; fresh process, no local cache; ours sent {sent_again} blob bytes"),
        ),
    ];
    let mut all: Vec<Value> = std::fs::read(&out)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let names: Vec<String> = figures
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_owned())
        .collect();
    all.retain(|v| !names.iter().any(|n| v["name"] == n.as_str()));
    all.extend(figures);
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&out, serde_json::to_vec_pretty(&all).unwrap()).unwrap();
    println!("{}", serde_json::to_string_pretty(&all).unwrap());
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("push") => push(&args).await,
        Some("run") | None => run(&args).await,
        Some(other) => {
            eprintln!(
                "usage: push-bench run [--out FILE] [--files N] [--file-mib M] [--rounds R] [--rss-files N] | push --registry URL --ca PEM --repo R --model DIR [--chunk-mib M] [--h2-blobs] (got {other})"
            );
            std::process::exit(2);
        }
    }
}
