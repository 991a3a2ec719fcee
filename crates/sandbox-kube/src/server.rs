//! Starting, restarting and stopping the server; the embedding API.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::Value;
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};

use crate::{
    audit::{AuditEvent, AuditLog},
    error::{Error, Result},
    http::{App, router},
    store::State,
    write::WriteCtx,
};

/// How to start the server.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where to listen; port 0 picks a free port.
    pub listen: SocketAddr,
    /// How many events watches can resume from; older resourceVersions get 410 Gone.
    pub history: usize,
    /// Written (JSON, every stored object) at shutdown when set.
    pub dump_state: Option<PathBuf>,
    /// How often watches that allow bookmarks receive one.
    pub bookmark_interval: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            history: 1000,
            dump_state: None,
            bookmark_interval: Duration::from_secs(30),
        }
    }
}

struct Running {
    cut: watch::Sender<bool>,
    task: JoinHandle<std::io::Result<()>>,
}

/// A running sandbox API server. State lives as long as the handle, across restarts.
pub struct SandboxKube {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    options: Options,
    running: Option<Running>,
    audit: AuditLog,
}

impl std::fmt::Debug for SandboxKube {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxKube")
            .field("addr", &self.addr)
            .field("running", &self.running.is_some())
            .finish()
    }
}

impl SandboxKube {
    pub async fn start(options: Options) -> Result<Self> {
        let state = Arc::new(Mutex::new(State::new(options.history)));
        let listener = TcpListener::bind(options.listen)
            .await
            .map_err(|source| Error::Bind {
                addr: options.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| Error::Bind {
            addr: options.listen,
            source,
        })?;
        let mut s = Self {
            addr,
            state,
            options,
            running: None,
            audit: AuditLog::default(),
        };
        s.serve(listener);
        Ok(s)
    }

    fn serve(&mut self, listener: TcpListener) {
        let (cut_tx, cut_rx) = watch::channel(false);
        let app = App {
            state: self.state.clone(),
            addr: self.addr,
            cut: cut_rx.clone(),
            bookmark_every: self.options.bookmark_interval,
            audit: self.audit.clone(),
        };
        let mut stop = cut_rx;
        let task = tokio::spawn(async move {
            axum::serve(listener, router(app))
                .with_graceful_shutdown(async move {
                    // Either a real change or the sender being dropped ends the server.
                    let _ = stop.changed().await;
                })
                .await
        });
        self.running = Some(Running { cut: cut_tx, task });
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A client for this server (namespace `default`).
    pub fn client(&self) -> Result<kube::Client> {
        let url = self.url();
        let uri: http::Uri = url.parse().expect("http://<socket address> is a valid URI");
        let mut config = kube::Config::new(uri);
        config.default_namespace = "default".into();
        kube::Client::try_from(config).map_err(|source| Error::Client { url, source })
    }

    /// A kubeconfig for `kubectl` and `kube::Client`, pointing at this server.
    pub fn kubeconfig(&self) -> String {
        crate::kubeconfig::render(&self.url())
    }

    /// A kubeconfig whose requests name `user` (as a bearer token) in [`Self::audit`]; for
    /// telling apart several processes. Nothing is authenticated.
    pub fn kubeconfig_as(&self, user: &str) -> String {
        crate::kubeconfig::render_as(&self.url(), Some(user))
    }

    /// Every write (POST, PUT, PATCH, DELETE) answered so far, in commit order, with its
    /// user and status: what an audit log would show.
    pub fn audit(&self) -> Vec<AuditEvent> {
        self.audit.events()
    }

    pub fn write_kubeconfig(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        std::fs::write(path, self.kubeconfig()).map_err(|source| Error::Io {
            path: path.into(),
            source,
        })
    }

    /// Stops the listener (open watches are cut) and listens again on the same port
    /// with the stored state intact, like an API server restart with etcd kept.
    pub async fn restart(&mut self) -> Result<()> {
        self.stop_listener().await?;
        // The port was just released; retry briefly in case the kernel has not let go yet.
        let mut last = None;
        for _ in 0..50 {
            match TcpListener::bind(self.addr).await {
                Ok(l) => {
                    self.serve(l);
                    return Ok(());
                }
                Err(e) => {
                    last = Some(e);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        Err(Error::Bind {
            addr: self.addr,
            source: last.unwrap_or_else(|| std::io::Error::other("bind retries exhausted")),
        })
    }

    async fn stop_listener(&mut self) -> Result<()> {
        let Some(r) = self.running.take() else {
            return Err(Error::NotRunning);
        };
        let _ = r.cut.send(true);
        let abort = r.task.abort_handle();
        // Graceful shutdown waits for in-flight requests; do not wait forever on a stuck client.
        match tokio::time::timeout(Duration::from_secs(5), r.task).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(source))) => Err(Error::Bind {
                addr: self.addr,
                source,
            }),
            Ok(Err(e)) if e.is_cancelled() => Ok(()),
            Ok(Err(e)) => Err(Error::Join(e)),
            Err(_) => {
                abort.abort();
                Ok(())
            }
        }
    }

    /// Stops the server and writes the state dump if one was asked for.
    pub async fn shutdown(mut self) -> Result<()> {
        self.stop_listener().await?;
        if let Some(path) = &self.options.dump_state {
            let dump = self.lock().dump();
            let text = serde_json::to_string_pretty(&dump).map_err(Error::Json)?;
            std::fs::write(path, text).map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Creates or replaces every CustomResourceDefinition in the `*.yaml`/`*.yml` files of
    /// `dir` (multi-document files allowed); returns the CRD names in file order.
    pub fn register_crds(&self, dir: impl AsRef<Path>) -> Result<Vec<String>> {
        let dir = dir.as_ref();
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|source| Error::Io {
                path: dir.into(),
                source,
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
            .collect();
        files.sort();
        let mut names = Vec::new();
        for path in files {
            let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
            for doc in serde_yaml::Deserializer::from_str(&text) {
                let v: serde_yaml::Value =
                    serde::Deserialize::deserialize(doc).map_err(|source| Error::Yaml {
                        path: path.clone(),
                        source,
                    })?;
                let v: Value = serde_json::to_value(v).map_err(Error::Json)?;
                if v.get("kind").and_then(Value::as_str) != Some("CustomResourceDefinition") {
                    continue;
                }
                names.push(self.put_crd(&path, v)?);
            }
        }
        Ok(names)
    }

    fn put_crd(&self, path: &Path, crd: Value) -> Result<String> {
        let name = crd
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let mut st = self.lock();
        let rt = st
            .find_type("apiextensions.k8s.io", "v1", "customresourcedefinitions")
            .expect("CRDs are built in");
        let ctx = WriteCtx::manager("sandbox-kube-register");
        let res = match st.get(&rt, None, &name) {
            Ok(_) => st.update(&rt, None, &name, crd, None, &ctx),
            Err(_) => st.create(&rt, None, crd, &ctx),
        };
        res.map_err(|e| Error::Rejected {
            path: path.into(),
            message: e.message,
        })?;
        Ok(name)
    }
}
