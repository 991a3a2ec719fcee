//! Conformance through `kube::Api`: object semantics, verbs, status, SSA, finalizers, GC, watch.

mod common;

use common::{start, start_with, widget, widgets};
use edgetrain_sandbox_kube::Options;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::{
    Api,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams},
};
use serde_json::json;

fn api_err(e: kube::Error) -> kube::core::Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn crud_semantics_uid_generation_resource_version() {
    let server = start().await;
    let client = server.client().unwrap();
    let api = widgets(&client, "default");
    let created = api
        .create(&PostParams::default(), &widget("a", 1))
        .await
        .unwrap();
    let uid = created.metadata.uid.clone().unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    assert!(created.metadata.creation_timestamp.is_some());
    assert_eq!(
        created.data["spec"]["maxSize"], 10,
        "schema default applied"
    );

    let err = api_err(
        api.create(&PostParams::default(), &widget("a", 1))
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (409, "AlreadyExists"));

    let rv1: u64 = created
        .metadata
        .resource_version
        .clone()
        .unwrap()
        .parse()
        .unwrap();
    let mut changed = created.clone();
    changed.data["spec"]["size"] = json!(2);
    let updated = api
        .replace("a", &PostParams::default(), &changed)
        .await
        .unwrap();
    let rv2: u64 = updated
        .metadata
        .resource_version
        .clone()
        .unwrap()
        .parse()
        .unwrap();
    assert!(rv2 > rv1);
    assert_eq!(updated.metadata.generation, Some(2));
    assert_eq!(updated.metadata.uid.as_deref(), Some(uid.as_str()));

    // Stale resourceVersion: 409 Conflict.
    let err = api_err(
        api.replace("a", &PostParams::default(), &changed)
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));

    // Metadata-only change: generation stays.
    let labelled = api
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"k": "v"}}})),
        )
        .await
        .unwrap();
    assert_eq!(labelled.metadata.generation, Some(2));

    let err = api_err(api.get("missing").await.unwrap_err());
    assert_eq!((err.code, err.reason.as_str()), (404, "NotFound"));

    api.delete("a", &DeleteParams::default()).await.unwrap();
    assert_eq!(api_err(api.get("a").await.unwrap_err()).code, 404);
}

#[tokio::test]
async fn status_subresource_is_separate_from_spec() {
    let server = start().await;
    let client = server.client().unwrap();
    let api = widgets(&client, "default");
    api.create(&PostParams::default(), &widget("s", 1))
        .await
        .unwrap();
    let status = json!({"apiVersion": "test.edgetrain.dev/v1alpha1", "kind": "Widget",
        "status": {"phase": "Ready", "conditions": [{"type": "Ready", "status": "True"}]}});
    let pp = PatchParams::apply("ctl").force();
    let o = api
        .patch_status("s", &pp, &Patch::Apply(&status))
        .await
        .unwrap();
    assert_eq!(o.data["status"]["phase"], "Ready");
    assert_eq!(
        o.metadata.generation,
        Some(1),
        "status writes never bump generation"
    );
    let rv = o.metadata.resource_version.clone();
    // The same apply again is a no-op: no new resourceVersion (controllers rely on this).
    let again = api
        .patch_status("s", &pp, &Patch::Apply(&status))
        .await
        .unwrap();
    assert_eq!(again.metadata.resource_version, rv);
    // The main resource ignores status; the status subresource ignores spec.
    let o = api
        .patch(
            "s",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "X"}, "spec": {"size": 3}})),
        )
        .await
        .unwrap();
    assert_eq!(o.data["status"]["phase"], "Ready");
    assert_eq!(o.data["spec"]["size"], 3);
    let o = api
        .patch_status(
            "s",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 9}, "status": {"phase": "Y"}})),
        )
        .await
        .unwrap();
    assert_eq!(o.data["spec"]["size"], 3);
    assert_eq!(o.data["status"]["phase"], "Y");
}

#[tokio::test]
async fn schema_and_cel_rejections_are_invalid_with_causes() {
    let server = start().await;
    let client = server.client().unwrap();
    let api = widgets(&client, "default");
    let mut bad = widget("bad", 0);
    bad.data["spec"]["color"] = json!("pink");
    let err = api_err(api.create(&PostParams::default(), &bad).await.unwrap_err());
    assert_eq!((err.code, err.reason.as_str()), (422, "Invalid"));
    let causes = err.details.unwrap().causes;
    let fields: Vec<&str> = causes.iter().map(|c| c.field.as_str()).collect();
    assert_eq!(fields, vec!["spec.color", "spec.size"]);

    let mut too_big = widget("big", 11);
    too_big.data["spec"]["owner"] = json!("ann");
    let err = api_err(
        api.create(&PostParams::default(), &too_big)
            .await
            .unwrap_err(),
    );
    assert!(
        err.message.contains("size must not exceed maxSize"),
        "{}",
        err.message
    );

    too_big.data["spec"]["size"] = json!(5);
    api.create(&PostParams::default(), &too_big).await.unwrap();
    // Transition rule with oldSelf.
    let err = api_err(
        api.patch(
            "big",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"owner": "bob"}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(err.code, 422);
    assert!(
        err.message.contains("owner is immutable"),
        "{}",
        err.message
    );
    // Unknown fields are pruned, preserved ones kept.
    let o = api
        .patch(
            "big",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"bogus": 1, "extra": {"free": {"form": true}}}})),
        )
        .await
        .unwrap();
    assert!(o.data["spec"].get("bogus").is_none());
    assert_eq!(o.data["spec"]["extra"]["free"]["form"], true);
}

#[tokio::test]
async fn list_with_selectors_and_pages() {
    let server = start().await;
    let client = server.client().unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for (name, tier) in [("c1", "web"), ("c2", "db"), ("c3", "web"), ("c4", "cache")] {
        let cm: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": name, "labels": {"tier": tier}}}))
                .unwrap();
        cms.create(&PostParams::default(), &cm).await.unwrap();
    }
    let names = |l: kube::core::ObjectList<ConfigMap>| -> Vec<String> {
        l.items
            .into_iter()
            .map(|c| c.metadata.name.unwrap())
            .collect()
    };
    assert_eq!(
        names(
            cms.list(&ListParams::default().labels("tier=web"))
                .await
                .unwrap()
        ),
        vec!["c1", "c3"]
    );
    assert_eq!(
        names(
            cms.list(&ListParams::default().labels("tier notin (web,db)"))
                .await
                .unwrap()
        ),
        vec!["c4"]
    );
    assert_eq!(
        names(
            cms.list(&ListParams::default().fields("metadata.name=c2"))
                .await
                .unwrap()
        ),
        vec!["c2"]
    );
    let page1 = cms.list(&ListParams::default().limit(3)).await.unwrap();
    assert_eq!(page1.items.len(), 3);
    let token = page1.metadata.continue_.clone().expect("a continue token");
    let page2 = cms
        .list(&ListParams::default().limit(3).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(names(page2), vec!["c4"]);
    // A namespace that does not exist cannot hold objects.
    let other: Api<ConfigMap> = Api::namespaced(client.clone(), "nope");
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "x"}})).unwrap();
    assert_eq!(
        api_err(other.create(&PostParams::default(), &cm).await.unwrap_err()).code,
        404
    );
}

#[tokio::test]
async fn finalizers_hold_deletion_and_owner_references_are_collected() {
    let server = start().await;
    let client = server.client().unwrap();
    let api = widgets(&client, "default");
    let mut w = widget("f", 1);
    w.metadata.finalizers = Some(vec!["test.edgetrain.dev/cleanup".into()]);
    let w = api.create(&PostParams::default(), &w).await.unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let s: Secret =
        serde_json::from_value(json!({"metadata": {"name": "owned", "ownerReferences": [{
        "apiVersion": "test.edgetrain.dev/v1alpha1", "kind": "Widget", "name": "f",
        "uid": w.metadata.uid, "controller": true}]}, "stringData": {"k": "v"}}))
        .unwrap();
    secrets.create(&PostParams::default(), &s).await.unwrap();

    api.delete("f", &DeleteParams::default()).await.unwrap();
    let pending = api.get("f").await.unwrap();
    assert!(pending.metadata.deletion_timestamp.is_some());
    let err = api_err(
        api.patch(
            "f",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"finalizers": ["test.edgetrain.dev/cleanup", "late"]}}),
            ),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(err.code, 422, "no new finalizers once deletion started");
    assert!(
        secrets.get("owned").await.is_ok(),
        "dependents stay while the owner exists"
    );

    api.patch(
        "f",
        &PatchParams::default(),
        &Patch::Json::<()>(
            serde_json::from_value(json!([{"op": "remove", "path": "/metadata/finalizers"}]))
                .unwrap(),
        ),
    )
    .await
    .unwrap();
    assert_eq!(api_err(api.get("f").await.unwrap_err()).code, 404);
    assert_eq!(
        api_err(secrets.get("owned").await.unwrap_err()).code,
        404,
        "owned Secret collected"
    );
}

#[tokio::test]
async fn orphan_propagation_keeps_dependents() {
    let server = start().await;
    let client = server.client().unwrap();
    let nss: Api<Namespace> = Api::all(client.clone());
    let ns = nss
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "team"}})).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(ns.status.unwrap().phase.as_deref(), Some("Active"));
    let api = widgets(&client, "team");
    let w = api
        .create(&PostParams::default(), &widget("o", 1))
        .await
        .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "team");
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "dep", "ownerReferences": [{
        "apiVersion": "test.edgetrain.dev/v1alpha1", "kind": "Widget", "name": "o", "uid": w.metadata.uid}]}})).unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
    api.delete("o", &DeleteParams::orphan()).await.unwrap();
    let dep = cms.get("dep").await.unwrap();
    assert!(dep.metadata.owner_references.unwrap_or_default().is_empty());
    // Deleting the namespace removes what it holds.
    nss.delete("team", &DeleteParams::default()).await.unwrap();
    assert_eq!(api_err(cms.get("dep").await.unwrap_err()).code, 404);
}

#[tokio::test]
async fn server_side_apply_owns_fields_and_reports_conflicts() {
    let server = start().await;
    let client = server.client().unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cfg = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"a": "1", "b": "2"}});
    cms.patch("ssa", &PatchParams::apply("one"), &Patch::Apply(&cfg))
        .await
        .unwrap();
    let other = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"a": "changed"}});
    let err = api_err(
        cms.patch("ssa", &PatchParams::apply("two"), &Patch::Apply(&other))
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));
    assert!(
        err.message.contains("conflict with \"one\""),
        "{}",
        err.message
    );
    let forced = cms
        .patch(
            "ssa",
            &PatchParams::apply("two").force(),
            &Patch::Apply(&other),
        )
        .await
        .unwrap();
    assert_eq!(forced.data.as_ref().unwrap()["a"], "changed");
    // "one" drops b from its configuration: the field goes away.
    let shrunk =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {}});
    let o = cms
        .patch("ssa", &PatchParams::apply("one"), &Patch::Apply(&shrunk))
        .await
        .unwrap();
    let data = o.data.unwrap();
    assert!(!data.contains_key("b"));
    assert_eq!(data["a"], "changed");
    let managers: Vec<String> = o
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert!(managers.contains(&"two".to_string()), "{managers:?}");
}

#[tokio::test]
async fn watch_streams_events_and_answers_gone_for_expired_versions() {
    let server = start_with(Options {
        history: 3,
        ..Options::default()
    })
    .await;
    let client = server.client().unwrap();
    let api = widgets(&client, "default");
    let start = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut stream = api
        .watch(&WatchParams::default().timeout(10), &start)
        .await
        .unwrap()
        .boxed();
    api.create(&PostParams::default(), &widget("w", 1))
        .await
        .unwrap();
    api.patch(
        "w",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"size": 2}})),
    )
    .await
    .unwrap();
    api.delete("w", &DeleteParams::default()).await.unwrap();
    let mut kinds = Vec::new();
    while kinds.len() < 3 {
        match stream.try_next().await.unwrap().expect("stream open") {
            WatchEvent::Added(_) => kinds.push("ADDED"),
            WatchEvent::Modified(_) => kinds.push("MODIFIED"),
            WatchEvent::Deleted(_) => kinds.push("DELETED"),
            WatchEvent::Bookmark(_) => {}
            WatchEvent::Error(e) => panic!("unexpected watch error {e:?}"),
        }
    }
    assert_eq!(kinds, vec!["ADDED", "MODIFIED", "DELETED"]);
    // Push the start version out of the 3-event history: resuming from it is 410 Gone.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for i in 0..4 {
        cms.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": format!("n{i}")}})).unwrap(),
        )
        .await
        .unwrap();
    }
    let mut stale = api
        .watch(&WatchParams::default().timeout(5), &start)
        .await
        .unwrap()
        .boxed();
    match stale.try_next().await.unwrap() {
        Some(WatchEvent::Error(e)) => assert_eq!(e.code, 410),
        other => panic!("expected 410 Gone, got {other:?}"),
    }
}

#[tokio::test]
async fn bookmarks_are_sent_when_allowed() {
    let server = start_with(Options {
        bookmark_interval: std::time::Duration::from_millis(200),
        ..Options::default()
    })
    .await;
    let client = server.client().unwrap();
    let api = widgets(&client, "default");
    let rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut stream = api
        .watch(&WatchParams::default().timeout(5), &rv)
        .await
        .unwrap()
        .boxed();
    match stream.try_next().await.unwrap() {
        Some(WatchEvent::Bookmark(b)) => assert_eq!(b.metadata.resource_version, rv),
        other => panic!("expected a bookmark, got {other:?}"),
    }
}

#[tokio::test]
async fn restart_keeps_state_and_dump_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("state.json");
    let mut server = start_with(Options {
        dump_state: Some(dump.clone()),
        ..Options::default()
    })
    .await;
    let url = server.url();
    let client = server.client().unwrap();
    widgets(&client, "default")
        .create(&PostParams::default(), &widget("kept", 1))
        .await
        .unwrap();
    server.restart().await.unwrap();
    assert_eq!(server.url(), url, "same port after restart");
    let client = server.client().unwrap();
    assert!(widgets(&client, "default").get("kept").await.is_ok());
    server.shutdown().await.unwrap();
    let text = std::fs::read_to_string(&dump).unwrap();
    assert!(text.contains("\"kept\""));
}

#[tokio::test]
async fn discovery_follows_crds() {
    let server = start().await;
    let client = server.client().unwrap();
    let d = kube::discovery::Discovery::new(client.clone())
        .run()
        .await
        .unwrap();
    assert!(d.has_group("test.edgetrain.dev"));
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> = Api::all(client.clone());
    let crd = crds.get("widgets.test.edgetrain.dev").await.unwrap();
    let established = crd
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .any(|c| c.type_ == "Established" && c.status == "True");
    assert!(established);
    crds.delete("widgets.test.edgetrain.dev", &DeleteParams::default())
        .await
        .unwrap();
    let d = kube::discovery::Discovery::new(client).run().await.unwrap();
    assert!(!d.has_group("test.edgetrain.dev"));
}

#[tokio::test]
async fn selector_watch_sees_objects_enter_and_leave() {
    let server = start().await;
    let client = server.client().unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let rv = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut stream = cms
        .watch(&WatchParams::default().labels("team=a").timeout(10), &rv)
        .await
        .unwrap()
        .boxed();
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "m", "labels": {"team": "b"}}}))
            .unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
    let relabel = |t: &str| Patch::Merge(json!({"metadata": {"labels": {"team": t}}}));
    cms.patch("m", &PatchParams::default(), &relabel("a"))
        .await
        .unwrap();
    cms.patch("m", &PatchParams::default(), &relabel("c"))
        .await
        .unwrap();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        match stream.try_next().await.unwrap().expect("stream open") {
            WatchEvent::Added(o) => {
                seen.push(("ADDED", o.metadata.labels.unwrap()["team"].clone()))
            }
            WatchEvent::Deleted(o) => {
                seen.push(("DELETED", o.metadata.labels.unwrap()["team"].clone()))
            }
            WatchEvent::Bookmark(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        seen,
        vec![("ADDED", "a".to_string()), ("DELETED", "c".to_string())]
    );
}

#[tokio::test]
async fn metadata_and_streaming_list_watchers_see_objects() {
    use kube::{
        core::PartialObjectMeta,
        runtime::{WatchStreamExt, watcher},
    };
    let server = start().await;
    let client = server.client().unwrap();
    let api = widgets(&client, "default");
    api.create(&PostParams::default(), &widget("m1", 1))
        .await
        .unwrap();
    let meta = api.list_metadata(&ListParams::default()).await.unwrap();
    assert_eq!(meta.items[0].metadata.name.as_deref(), Some("m1"));
    assert_eq!(
        meta.items[0].types.as_ref().unwrap().kind,
        "PartialObjectMetadata"
    );

    let mut streaming = watcher(api.clone(), watcher::Config::default().streaming_lists())
        .applied_objects()
        .boxed();
    let first = tokio::time::timeout(std::time::Duration::from_secs(5), streaming.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.metadata.name.as_deref(), Some("m1"));

    let meta_api: Api<PartialObjectMeta<kube::api::DynamicObject>> =
        Api::namespaced_with(client.clone(), "default", &common::widget_resource());
    let mut metas = watcher(meta_api, watcher::Config::default())
        .applied_objects()
        .boxed();
    let first = tokio::time::timeout(std::time::Duration::from_secs(5), metas.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.metadata.name.as_deref(), Some("m1"));
    api.create(&PostParams::default(), &widget("m2", 1))
        .await
        .unwrap();
    let next = tokio::time::timeout(std::time::Duration::from_secs(5), metas.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(next.metadata.name.as_deref(), Some("m2"));
    let next = tokio::time::timeout(std::time::Duration::from_secs(5), streaming.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(next.metadata.name.as_deref(), Some("m2"));
}

#[tokio::test]
async fn version_and_health_endpoints() {
    let server = start().await;
    let client = server.client().unwrap();
    let v = client.apiserver_version().await.unwrap();
    assert_eq!((v.major.as_str(), v.minor.as_str()), ("1", "32"));
    let req = http::Request::get("/healthz").body(Vec::new()).unwrap();
    assert_eq!(client.request_text(req).await.unwrap(), "ok");
    let req = http::Request::get("/no/such/path")
        .body(Vec::new())
        .unwrap();
    assert_eq!(
        api_err(client.request_text(req).await.unwrap_err()).code,
        404
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_writers_watch_sees_every_change_in_order() {
    let server = start().await;
    let client = server.client().unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let rv = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut stream = cms
        .watch(&WatchParams::default().timeout(20), &rv)
        .await
        .unwrap()
        .boxed();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let cms = cms.clone();
            tokio::spawn(async move {
                for i in 0..10 {
                    let cm: ConfigMap =
                        serde_json::from_value(json!({"metadata": {"name": format!("w{w}-{i}")}}))
                            .unwrap();
                    cms.create(&PostParams::default(), &cm).await.unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    let mut versions = Vec::new();
    while versions.len() < 40 {
        match stream.try_next().await.unwrap().expect("stream open") {
            WatchEvent::Added(o) => {
                versions.push(o.metadata.resource_version.unwrap().parse::<u64>().unwrap())
            }
            WatchEvent::Bookmark(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        versions.windows(2).all(|p| p[0] < p[1]),
        "strictly increasing: {versions:?}"
    );
}

#[tokio::test]
async fn dry_run_writes_nothing_and_foreground_deletes_dependents() {
    let server = start().await;
    let client = server.client().unwrap();
    let api = widgets(&client, "default");
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let o = api.create(&dry, &widget("d", 1)).await.unwrap();
    assert_eq!(
        o.data["spec"]["maxSize"], 10,
        "dry run still admits and defaults"
    );
    assert_eq!(api_err(api.get("d").await.unwrap_err()).code, 404);

    let w = api
        .create(&PostParams::default(), &widget("d", 1))
        .await
        .unwrap();
    let dry_delete = DeleteParams {
        dry_run: true,
        ..DeleteParams::default()
    };
    api.delete("d", &dry_delete).await.unwrap();
    assert!(api.get("d").await.is_ok());

    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "child", "ownerReferences": [{
        "apiVersion": "test.edgetrain.dev/v1alpha1", "kind": "Widget", "name": "d", "uid": w.metadata.uid}]}})).unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
    api.delete("d", &DeleteParams::foreground()).await.unwrap();
    assert_eq!(api_err(cms.get("child").await.unwrap_err()).code, 404);
    assert_eq!(api_err(api.get("d").await.unwrap_err()).code, 404);
}
