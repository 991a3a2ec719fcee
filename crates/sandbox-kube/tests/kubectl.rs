//! Conformance through the real `kubectl` binary (1.32 on PATH).

mod common;

use std::{
    io::{BufRead, BufReader},
    process::Stdio,
    time::Duration,
};

use common::{Kubectl, fixtures, start};

fn path(rel: &str) -> String {
    fixtures().join(rel).to_string_lossy().into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_get_with_printer_columns_and_categories() {
    let server = start().await;
    let k = Kubectl::new(&server);
    let out = k.ok(&["apply", "-f", &path("crds")]);
    assert!(
        out.contains("unchanged") || out.contains("configured"),
        "{out}"
    );
    let out = k.ok(&["apply", "-f", &path("examples")]);
    assert!(
        out.contains("widget.test.edgetrain.dev/small created"),
        "{out}"
    );
    assert!(out.contains("configmap/widget-settings created"), "{out}");
    // Second apply: nothing to change.
    let out = k.ok(&["apply", "-f", &path("examples")]);
    assert!(
        out.contains("widget.test.edgetrain.dev/small unchanged"),
        "{out}"
    );

    let table = k.ok(&["get", "widgets"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, vec!["NAME", "SIZE", "READY", "AGE"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("small") && l.split_whitespace().nth(1) == Some("2")),
        "{table}"
    );
    // Short name and category.
    assert!(k.ok(&["get", "wd"]).contains("large"));
    assert!(k.ok(&["get", "edgetrain"]).contains("small"));
    // Label selectors, equality and set based.
    let front = k.ok(&["get", "wd", "-l", "tier=front", "-o", "name"]);
    assert_eq!(front.trim(), "widget.test.edgetrain.dev/small");
    // `notin` also matches objects without the label (the ConfigMap has no tier).
    let set = k.ok(&[
        "get",
        "wd,cm",
        "-l",
        "app in (demo),tier notin (front)",
        "-o",
        "name",
    ]);
    assert_eq!(
        set.trim(),
        "widget.test.edgetrain.dev/large\nconfigmap/widget-settings"
    );
    let set = k.ok(&[
        "get",
        "wd,cm",
        "-l",
        "app in (demo),tier,tier notin (front)",
        "-o",
        "name",
    ]);
    assert_eq!(set.trim(), "widget.test.edgetrain.dev/large");
    // Defaults are applied server-side.
    assert_eq!(
        k.ok(&["get", "wd", "small", "-o", "jsonpath={.spec.maxSize}"]),
        "10"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn patch_kinds_and_validation_messages() {
    let server = start().await;
    let k = Kubectl::new(&server);
    k.ok(&["apply", "-f", &path("examples")]);
    k.ok(&[
        "patch",
        "wd",
        "small",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"size":3}}"#,
    ]);
    k.ok(&[
        "patch",
        "wd",
        "small",
        "--type",
        "json",
        "-p",
        r#"[{"op":"replace","path":"/spec/size","value":4}]"#,
    ]);
    assert_eq!(
        k.ok(&[
            "get",
            "wd",
            "small",
            "-o",
            "jsonpath={.spec.size} {.metadata.generation}"
        ]),
        "4 3"
    );
    // Strategic merge is for built-ins only, as on a real server.
    k.ok(&[
        "patch",
        "cm",
        "widget-settings",
        "-p",
        r#"{"data":{"extra":"1"}}"#,
    ]);
    assert_eq!(
        k.ok(&[
            "get",
            "cm",
            "widget-settings",
            "-o",
            "jsonpath={.data.extra}"
        ]),
        "1"
    );
    let err = k.fails(&["patch", "wd", "small", "-p", r#"{"spec":{"size":5}}"#]);
    assert!(err.contains("strategic-merge-patch"), "{err}");
    let err = k.fails(&[
        "patch",
        "wd",
        "small",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"size":50}}"#,
    ]);
    assert!(
        err.contains("is invalid") && err.contains("size must not exceed maxSize"),
        "{err}"
    );
    let err = k.fails(&[
        "patch",
        "wd",
        "small",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"owner":"bob"}}"#,
    ]);
    assert!(err.contains("owner is immutable"), "{err}");
    let err = k.fails(&[
        "patch",
        "wd",
        "small",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"color":"pink","size":"x"}}"#,
    ]);
    assert!(
        err.contains(r#"spec.color: Unsupported value: "pink""#),
        "{err}"
    );
    assert!(
        err.contains("spec.size in body must be of type integer"),
        "{err}"
    );
    // Client-side apply after a change to the manifest.
    k.ok(&["label", "wd", "small", "extra=yes"]);
    assert_eq!(
        k.ok(&["get", "wd", "-l", "extra=yes", "-o", "name"]).trim(),
        "widget.test.edgetrain.dev/small"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn server_side_apply_and_conflicts() {
    let server = start().await;
    let k = Kubectl::new(&server);
    let out = k.ok(&["apply", "--server-side", "-f", &path("examples")]);
    assert!(out.contains("serverside-applied"), "{out}");
    k.ok(&[
        "patch",
        "wd",
        "small",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"size":3}}"#,
    ]);
    let err = k.fails(&["apply", "--server-side", "-f", &path("examples")]);
    assert!(
        err.contains("conflict") && err.contains(".spec.size"),
        "{err}"
    );
    k.ok(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        &path("examples"),
    ]);
    assert_eq!(
        k.ok(&["get", "wd", "small", "-o", "jsonpath={.spec.size}"]),
        "2"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn get_watch_streams_changes() {
    let server = start().await;
    let k = Kubectl::new(&server);
    k.ok(&["apply", "-f", &path("examples")]);
    let mut child = common::KillOnDrop(
        k.command(&["get", "wd", "--watch", "--output-watch-events"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("kubectl on PATH"),
    );
    let stdout = child.0.stdout.take().unwrap();
    // Lines arrive on a channel so that every wait below is bounded.
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next = |rx: &std::sync::mpsc::Receiver<String>| {
        rx.recv_timeout(Duration::from_secs(20))
            .expect("kubectl printed a line in time")
    };
    let mut lines = Vec::new();
    // Header, then the initial ADDED rows: from here on the watch is established.
    while !lines
        .iter()
        .any(|l: &String| l.starts_with("ADDED") && l.contains("small"))
    {
        lines.push(next(&rx));
    }
    k.ok(&[
        "patch",
        "wd",
        "small",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"size":7}}"#,
    ]);
    while !lines
        .last()
        .is_some_and(|l| l.starts_with("MODIFIED") && l.contains("small"))
    {
        lines.push(next(&rx));
    }
    drop(child);
    assert!(
        lines[0]
            .split_whitespace()
            .collect::<Vec<_>>()
            .starts_with(&["EVENT", "NAME", "SIZE"]),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("ADDED") && l.contains("large")),
        "{lines:?}"
    );
    let modified = lines.last().unwrap();
    assert_eq!(modified.split_whitespace().nth(2), Some("7"), "{lines:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_waits_for_finalizer() {
    let server = start().await;
    let k = Kubectl::new(&server);
    k.ok(&["apply", "-f", &path("examples")]);
    k.ok(&[
        "patch",
        "wd",
        "large",
        "--type",
        "merge",
        "-p",
        r#"{"metadata":{"finalizers":["test.edgetrain.dev/hold"]}}"#,
    ]);
    k.ok(&["delete", "wd", "large", "--wait=false"]);
    let ts = k.ok(&[
        "get",
        "wd",
        "large",
        "-o",
        "jsonpath={.metadata.deletionTimestamp}",
    ]);
    assert!(!ts.is_empty(), "deletion is pending");
    k.ok(&[
        "patch",
        "wd",
        "large",
        "--type",
        "json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ]);
    let err = k.fails(&["get", "wd", "large"]);
    assert!(
        err.contains("NotFound") || err.contains("not found"),
        "{err}"
    );
    // A blocking delete returns once the object is gone.
    k.ok(&["delete", "cm", "widget-settings"]);
    assert!(k.ok(&["get", "cm", "-o", "name"]).trim().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn explain_reads_the_crd_schema() {
    let server = start().await;
    let k = Kubectl::new(&server);
    let out = k.ok(&["explain", "widgets.spec"]);
    assert!(out.contains("What the widget should be."), "{out}");
    assert!(
        out.contains("size") && out.contains("How big the widget is."),
        "{out}"
    );
    assert!(out.contains("-required-"), "{out}");
    // Built-ins are documented from the k8s-openapi schemas.
    let out = k.ok(&["explain", "secret.data"]);
    assert!(out.contains("base64"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn imperative_create_of_built_ins_sends_protobuf() {
    let server = start().await;
    let k = Kubectl::new(&server);
    k.ok(&["create", "namespace", "team"]);
    k.ok(&[
        "create",
        "secret",
        "generic",
        "creds",
        "-n",
        "team",
        "--from-literal=clientSecret=s3cret",
    ]);
    k.ok(&[
        "create",
        "configmap",
        "settings",
        "-n",
        "team",
        "--from-literal=mode=fast",
    ]);
    assert_eq!(
        k.ok(&[
            "get",
            "secret",
            "creds",
            "-n",
            "team",
            "-o",
            "jsonpath={.type} {.data.clientSecret}"
        ]),
        "Opaque czNjcmV0"
    );
    assert_eq!(
        k.ok(&[
            "get",
            "cm",
            "settings",
            "-n",
            "team",
            "-o",
            "jsonpath={.data.mode}"
        ]),
        "fast"
    );
    let ns = k.ok(&["get", "ns", "team"]);
    assert!(ns.contains("Active"), "{ns}");
    k.ok(&["delete", "ns", "team"]);
    let err = k.fails(&["get", "secret", "creds", "-n", "team"]);
    assert!(err.contains("not found"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn recorder_events_show_in_kubectl_get_events() {
    use kube::{
        Resource,
        api::PostParams,
        runtime::events::{Event, EventType, Recorder},
    };
    let server = start().await;
    let client = server.client().unwrap();
    let w = common::widgets(&client, "default")
        .create(&PostParams::default(), &common::widget("ev", 1))
        .await
        .unwrap();
    let recorder = Recorder::new(client.clone(), "widget-controller".into());
    let ev = Event {
        type_: EventType::Normal,
        reason: "Provisioned".into(),
        note: Some("widget is ready".into()),
        action: "Reconcile".into(),
        secondary: None,
    };
    let reference = w.object_ref(&common::widget_resource());
    recorder.publish(&ev, &reference).await.unwrap();
    // A second identical event becomes a series (merge patch of the same Event).
    recorder.publish(&ev, &reference).await.unwrap();
    let k = Kubectl::new(&server);
    let out = k.ok(&["get", "events"]);
    let row = out
        .lines()
        .find(|l| l.contains("Provisioned"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        row.contains("widget/ev") && row.contains("widget is ready") && row.contains("Normal"),
        "{row}"
    );
    assert_eq!(
        out.lines().filter(|l| l.contains("Provisioned")).count(),
        1,
        "{out}"
    );
    let core = k.ok(&[
        "get",
        "events.v1.",
        "-o",
        "jsonpath={.items[0].involvedObject.name} {.items[0].reportingComponent}",
    ]);
    assert_eq!(core, "ev widget-controller");
}

#[tokio::test(flavor = "multi_thread")]
async fn strict_field_validation_rejects_unknown_fields() {
    let server = start().await;
    let k = Kubectl::new(&server);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("typo.yaml");
    std::fs::write(
        &file,
        "apiVersion: test.edgetrain.dev/v1alpha1\nkind: Widget\nmetadata:\n  name: typo\nspec:\n  size: 1\n  colour: red\n",
    )
    .unwrap();
    let file = file.to_string_lossy().into_owned();
    let err = k.fails(&["apply", "-f", &file]);
    assert!(
        err.contains(r#"strict decoding error: unknown field "spec.colour""#),
        "{err}"
    );
    // Without validation the field is pruned, as on a real server.
    k.ok(&["apply", "--validate=false", "-f", &file]);
    assert_eq!(
        k.ok(&["get", "wd", "typo", "-o", "jsonpath={.spec}"]),
        r#"{"color":"red","maxSize":10,"size":1}"#
    );
    // Built-ins too: a misspelt stringData.
    let secret = dir.path().join("secret.yaml");
    std::fs::write(
        &secret,
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\nstrinData:\n  k: v\n",
    )
    .unwrap();
    let err = k.fails(&["apply", "-f", &secret.to_string_lossy()]);
    assert!(err.contains(r#"unknown field "strinData""#), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn client_side_apply_upgrades_to_server_side_apply() {
    let server = start().await;
    let k = Kubectl::new(&server);
    k.ok(&["apply", "-f", &path("examples")]);
    // kubectl rewrites managedFields to hand client-side-apply ownership to SSA: no conflict.
    let out = k.ok(&["apply", "--server-side", "-f", &path("examples")]);
    assert!(
        out.contains("widget.test.edgetrain.dev/small serverside-applied"),
        "{out}"
    );
    let managers = k.ok(&[
        "get",
        "wd",
        "small",
        "--show-managed-fields",
        "-o",
        "jsonpath={.metadata.managedFields[*].manager}",
    ]);
    assert!(
        managers.split_whitespace().any(|m| m == "kubectl"),
        "{managers}"
    );
}

/// Writes `yaml` to `dir/name` and returns the path for `kubectl apply -f`.
fn manifest(dir: &tempfile::TempDir, name: &str, yaml: &str) -> String {
    let file = dir.path().join(name);
    std::fs::write(&file, yaml).unwrap();
    file.to_string_lossy().into_owned()
}

const CM_HEAD: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: shared\ndata:\n";

/// Managers of `.data.<key>` of ConfigMap `shared`, from its managedFields.
fn owners(k: &Kubectl, key: &str) -> Vec<String> {
    let out = k.ok(&["get", "cm", "shared", "--show-managed-fields", "-o", "json"]);
    let obj: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mut owners: Vec<String> = obj["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["fieldsV1"]["f:data"].get(format!("f:{key}")).is_some())
        .map(|e| e["manager"].as_str().unwrap().to_string())
        .collect();
    owners.sort();
    owners
}

#[tokio::test(flavor = "multi_thread")]
async fn server_side_apply_shares_fields_applied_with_the_same_value() {
    let server = start().await;
    let k = Kubectl::new(&server);
    let dir = tempfile::tempdir().unwrap();
    let a = manifest(
        &dir,
        "a.yaml",
        &format!("{CM_HEAD}  mode: fast\n  a: \"1\"\n"),
    );
    let b = manifest(
        &dir,
        "b.yaml",
        &format!("{CM_HEAD}  mode: fast\n  b: \"1\"\n  c: \"1\"\n"),
    );
    k.ok(&["apply", "--server-side", "--field-manager=alice", "-f", &a]);
    // Same value: no conflict, and both own it.
    k.ok(&["apply", "--server-side", "--field-manager=bob", "-f", &b]);
    assert_eq!(owners(&k, "mode"), vec!["alice", "bob"]);
    // alice stops sending mode: it stays, as bob still applies it.
    let a2 = manifest(&dir, "a2.yaml", &format!("{CM_HEAD}  a: \"1\"\n"));
    k.ok(&["apply", "--server-side", "--field-manager=alice", "-f", &a2]);
    assert_eq!(
        k.ok(&["get", "cm", "shared", "-o", "jsonpath={.data.mode}"]),
        "fast"
    );
    assert_eq!(owners(&k, "mode"), vec!["bob"]);
    // carol forces a different `b`: she takes `b` only; bob keeps `mode` and `c`.
    let c = manifest(&dir, "c.yaml", &format!("{CM_HEAD}  b: \"2\"\n"));
    let err = k.fails(&["apply", "--server-side", "--field-manager=carol", "-f", &c]);
    assert!(err.contains("conflict") && err.contains(".data.b"), "{err}");
    k.ok(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=carol",
        "-f",
        &c,
    ]);
    assert_eq!(owners(&k, "b"), vec!["carol"]);
    assert_eq!(owners(&k, "c"), vec!["bob"]);
    assert_eq!(owners(&k, "mode"), vec!["bob"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn explain_documents_custom_resource_metadata() {
    let server = start().await;
    let k = Kubectl::new(&server);
    let out = k.ok(&["explain", "widgets.metadata.labels"]);
    assert!(
        out.contains("FIELD: labels <map[string]string>") && out.contains("Map of string keys"),
        "{out}"
    );
    let out = k.ok(&["explain", "widgets.metadata"]);
    assert!(
        out.contains("ObjectMeta") && out.contains("ownerReferences"),
        "{out}"
    );
}
