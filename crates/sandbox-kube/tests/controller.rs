//! A tiny `kube::runtime::Controller` against the sandbox: reconciles on change,
//! survives a forced 410 Gone and a server restart, completes a finalizer flow.

mod common;

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{eventually, start_with, widget, widget_resource, widgets};
use edgetrain_sandbox_kube::Options;
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, DynamicObject, Patch, PatchParams, PostParams},
    runtime::{
        Controller, WatchStreamExt,
        controller::Action,
        finalizer::{self, Event},
        watcher,
    },
};
use serde_json::json;

const FINALIZER: &str = "test.edgetrain.dev/cleanup";

struct Ctx {
    api: Api<DynamicObject>,
    cleaned: Mutex<BTreeSet<String>>,
}

type Error = finalizer::Error<kube::Error>;

async fn reconcile(obj: Arc<DynamicObject>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let api = ctx.api.clone();
    finalizer::finalizer(&api, FINALIZER, obj, |event| async {
        match event {
            Event::Apply(w) => {
                let status = json!({
                    "apiVersion": "test.edgetrain.dev/v1alpha1", "kind": "Widget",
                    "status": {"observedGeneration": w.metadata.generation, "phase": "Ready",
                        "conditions": [{"type": "Ready", "status": "True", "reason": "Reconciled"}]}
                });
                api.patch_status(
                    &w.name_any(),
                    &PatchParams::apply("widget-controller").force(),
                    &Patch::Apply(&status),
                )
                .await?;
                Ok(Action::await_change())
            }
            Event::Cleanup(w) => {
                ctx.cleaned.lock().unwrap().insert(w.name_any());
                Ok(Action::await_change())
            }
        }
    })
    .await
}

fn error_policy(_obj: Arc<DynamicObject>, _err: &Error, _ctx: Arc<Ctx>) -> Action {
    Action::requeue(Duration::from_millis(200))
}

async fn observed(api: &Api<DynamicObject>, name: &str) -> Option<i64> {
    let w = api.get(name).await.ok()?;
    let observed = w.data["status"]["observedGeneration"].as_i64()?;
    (Some(observed) == w.metadata.generation).then_some(observed)
}

#[tokio::test(flavor = "multi_thread")]
async fn controller_reconciles_through_gone_and_restart_and_finalizes() {
    let mut server = start_with(Options {
        history: 5,
        bookmark_interval: Duration::from_secs(3600),
        ..Options::default()
    })
    .await;
    let client = server.client().unwrap();
    let api = widgets(&client, "default");
    let ctx = Arc::new(Ctx {
        api: api.clone(),
        cleaned: Mutex::new(BTreeSet::new()),
    });
    let controller = tokio::spawn(
        Controller::new_with(api.clone(), watcher::Config::default(), widget_resource())
            .run(reconcile, error_policy, ctx.clone())
            .for_each(|_| async {}),
    );
    // A plain watcher beside the controller counts (re)lists: a 410 forces a new one.
    let inits = Arc::new(Mutex::new(0usize));
    let counter = inits.clone();
    let watch = tokio::spawn(
        watcher(api.clone(), watcher::Config::default())
            .default_backoff()
            .for_each(move |e| {
                if matches!(e, Ok(watcher::Event::Init)) {
                    *counter.lock().unwrap() += 1;
                }
                async {}
            }),
    );

    api.create(&PostParams::default(), &widget("w1", 1))
        .await
        .unwrap();
    assert!(eventually(10, || async { observed(&api, "w1").await == Some(1) }).await);
    assert!(
        api.get("w1")
            .await
            .unwrap()
            .finalizers()
            .contains(&FINALIZER.to_string())
    );

    // Reconciles on change.
    api.patch(
        "w1",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"size": 2}})),
    )
    .await
    .unwrap();
    assert!(eventually(10, || async { observed(&api, "w1").await == Some(2) }).await);

    // Push the watchers' resourceVersion out of the 5-event history, then cut their
    // watches with a restart: they must get 410 Gone and re-list.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for i in 0..10 {
        let cm: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": format!("noise{i}")}})).unwrap();
        cms.create(&PostParams::default(), &cm).await.unwrap();
    }
    assert_eq!(*inits.lock().unwrap(), 1);
    server.restart().await.unwrap();
    assert!(
        eventually(20, || async { *inits.lock().unwrap() >= 2 }).await,
        "the watcher re-listed after 410 Gone"
    );

    // Events after the restart are seen.
    api.patch(
        "w1",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"size": 3}})),
    )
    .await
    .unwrap();
    assert!(eventually(20, || async { observed(&api, "w1").await == Some(3) }).await);
    api.create(&PostParams::default(), &widget("w2", 1))
        .await
        .unwrap();
    assert!(eventually(20, || async { observed(&api, "w2").await == Some(1) }).await);

    // Finalizer flow: delete waits for the controller's cleanup, then the object is gone.
    api.delete("w1", &DeleteParams::default()).await.unwrap();
    assert!(eventually(20, || async { api.get_opt("w1").await.unwrap().is_none() }).await);
    assert!(ctx.cleaned.lock().unwrap().contains("w1"));
    assert!(!ctx.cleaned.lock().unwrap().contains("w2"));

    controller.abort();
    watch.abort();
}
