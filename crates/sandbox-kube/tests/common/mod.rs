//! Shared test helpers: a started server with the fixture CRD, a kubectl runner.
#![allow(dead_code)]

use std::{path::PathBuf, process::Command, time::Duration};

use edgetrain_sandbox_kube::{Options, SandboxKube};
use kube::{
    Api,
    api::{ApiResource, DynamicObject, GroupVersionKind},
};

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub async fn start_with(options: Options) -> SandboxKube {
    let server = SandboxKube::start(options).await.expect("server starts");
    let names = server
        .register_crds(fixtures().join("crds"))
        .expect("fixture CRDs register");
    assert_eq!(names, vec!["widgets.test.edgetrain.dev".to_string()]);
    server
}

pub async fn start() -> SandboxKube {
    start_with(Options::default()).await
}

pub fn widget_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("test.edgetrain.dev", "v1alpha1", "Widget"),
        "widgets",
    )
}

pub fn widgets(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &widget_resource())
}

pub fn widget(name: &str, size: i64) -> DynamicObject {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "test.edgetrain.dev/v1alpha1",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": {"size": size}
    }))
    .expect("valid widget")
}

/// `kubectl` against `server`, failing the test with a clear message when it is missing.
pub struct Kubectl {
    kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

pub struct Output {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Kubectl {
    pub fn new(server: &SandboxKube) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let kubeconfig = dir.path().join("kubeconfig");
        server
            .write_kubeconfig(&kubeconfig)
            .expect("kubeconfig written");
        Self {
            kubeconfig,
            _dir: dir,
        }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("kubectl");
        c.env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self._dir.path())
            .args(args);
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        let out = self
            .command(args)
            .output()
            .expect("kubectl must be on PATH (these tests drive the real kubectl 1.32)");
        Output {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs kubectl and returns stdout, failing the test on a non-zero exit.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.ok,
            "kubectl {args:?} failed: {}{}",
            out.stdout, out.stderr
        );
        out.stdout
    }

    /// Runs kubectl expecting failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.ok,
            "kubectl {args:?} should fail but printed: {}",
            out.stdout
        );
        out.stderr
    }
}

/// Polls `f` until it returns true or `secs` pass.
pub async fn eventually<F, Fut>(secs: u64, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// A child process that is killed when dropped (also when a test fails midway).
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // Already exited is fine.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
