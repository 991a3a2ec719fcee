//! Microsoft.MachineLearningServices (public ARM): computes (VirtualMachine attach), codes with
//! pending uploads into Azurite, environments, models, datastores, jobs.

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use crate::{
    arm::{Prepared, Req, json_response, location_of, start_operation},
    arm_error::ArmError,
    blob::{SasFields, sign_service_sas},
    ids,
    state::{Effect, Resource, State},
};

pub const DEFAULT_DATASTORE: &str = "workspaceblobstore";

const TERMINAL: &[&str] = &["Completed", "Failed", "Canceled"];

pub fn is_terminal(status: &str) -> bool {
    TERMINAL.contains(&status)
}

pub fn prepare(
    req: &Req<'_>,
    st: &State,
    ty: &str,
    existing: Option<&Resource>,
    body: &mut Value,
) -> Result<Prepared, ArmError> {
    let now = crate::arm::timestamp(chrono::Utc::now());
    match ty {
        "microsoft.machinelearningservices/workspaces/computes" => {
            crate::ml_compute::check_compute_put(req, st, body)?;
            if body["location"].is_null() {
                body["location"] = Value::String(location_of(st, &req.path));
            }
            let location = body["location"].clone();
            let props = &mut body["properties"];
            let secrets = props["properties"]
                .as_object_mut()
                .and_then(|p| p.remove("administratorAccount"));
            props["isAttachedCompute"] = json!(true);
            props["computeLocation"] = location;
            props["provisioningErrors"] = json!([]);
            props["createdOn"] = existing
                .and_then(|e| e.body["properties"].get("createdOn").cloned())
                .unwrap_or_else(|| Value::String(now.clone()));
            props["modifiedOn"] = Value::String(now);
            Ok(Prepared {
                secrets: secrets.or_else(|| existing.and_then(|e| e.secrets.clone())),
                ..Prepared::default()
            })
        }
        "microsoft.machinelearningservices/workspaces/datastores" => {
            let secrets = body["properties"]["credentials"]
                .as_object_mut()
                .and_then(|c| c.remove("secrets"));
            body["properties"]["isDefault"] =
                json!(existing.is_some_and(|e| e.body["properties"]["isDefault"] == json!(true)));
            Ok(Prepared {
                secrets,
                ..Prepared::default()
            })
        }
        "microsoft.machinelearningservices/workspaces/jobs" => prepare_job(st, existing, body),
        "microsoft.machinelearningservices/workspaces/environments/versions" => {
            body["properties"]["environmentType"] = json!("UserCreated");
            fill_defaults(
                body,
                &[
                    ("osType", json!("Linux")),
                    ("autoRebuild", json!("Disabled")),
                ],
            );
            Ok(Prepared::default())
        }
        "microsoft.machinelearningservices/workspaces/models/versions" => {
            if let Some(existing) = existing {
                // A version's content is immutable: an update changes only what the spec
                // marks updatable (`isArchived`) and the mutable metadata (tags, description,
                // stage), the way `azure-ai-ml`'s archive re-PUTs the version it read.
                let mut updated = existing.body.clone();
                for field in ["tags", "description", "stage", "isArchived"] {
                    if let Some(v) = body["properties"].get(field) {
                        updated["properties"][field] = v.clone();
                    }
                }
                return Ok(Prepared {
                    store_as_is: Some(updated),
                    ..Prepared::default()
                });
            }
            // The service always answers with an object here; `azure-ai-ml` fails without it.
            fill_defaults(body, &[("flavors", json!({}))]);
            Ok(Prepared::default())
        }
        _ => Ok(Prepared::default()),
    }
}

/// Set `properties.{field}` where the request left it out, as the service does.
fn fill_defaults(body: &mut Value, defaults: &[(&str, Value)]) {
    for (field, value) in defaults {
        if body["properties"][*field].is_null() {
            body["properties"][*field] = value.clone();
        }
    }
}

/// The service reads the string maps `properties.properties` and `properties.tags` leniently:
/// `azure-ai-ml` sends a code version's `hash_version` as a JSON number and Azure ML stores it
/// as a string. The spec says string; the simulator follows the service (README lists it).
/// Runs before validation, for ARM strictness only, on the types whose `properties.properties`
/// is that string map (a compute's is its typed configuration).
pub fn coerce_string_maps(arm: &ids::ArmPath, body: &mut Value) {
    const STRING_MAPS: &[&str] = &[
        "microsoft.machinelearningservices/workspaces/codes/versions",
        "microsoft.machinelearningservices/workspaces/models/versions",
        "microsoft.machinelearningservices/workspaces/environments/versions",
        "microsoft.machinelearningservices/workspaces/data/versions",
        "microsoft.machinelearningservices/workspaces/components/versions",
        "microsoft.machinelearningservices/workspaces/jobs",
    ];
    if !STRING_MAPS.contains(&arm.resource_type().to_ascii_lowercase().as_str()) {
        return;
    }
    for pointer in ["/properties/properties", "/properties/tags"] {
        if let Some(map) = body.pointer_mut(pointer).and_then(Value::as_object_mut) {
            for value in map.values_mut().filter(|v| v.is_number()) {
                *value = Value::String(value.to_string());
            }
        }
    }
}

/// Listing the versions of a code or model name that has none answers 200 with an empty
/// `value` (the service looks versions up by name; `azure-ai-ml` relies on it for every job
/// submitted with local code), as long as the workspace exists.
pub fn lists_empty_without_parent(req: &Req<'_>, st: &State, container: &str) -> bool {
    matches!(
        req.type_key().as_str(),
        "microsoft.machinelearningservices/workspaces/codes/versions"
            | "microsoft.machinelearningservices/workspaces/models/versions"
    ) && ids::parent_id(container).is_some_and(|ws| st.get(&ws).is_some())
}

/// api-version of `Workspaces_Get` (the operation lives in `workspaceRP.json`, which the
/// simulator does not carry; see README).
pub const WORKSPACE_API_VERSION: &str = "2025-12-01";

/// `GET .../workspaces/{name}`: answered here because no saved spec declares it. `None` for
/// any other request.
pub fn workspace_get(
    sh: &crate::shared::Shared,
    method: &axum::http::Method,
    arm: &ids::ArmPath,
    path: &str,
    query: &std::collections::HashMap<String, String>,
) -> Result<Option<Response>, ArmError> {
    let is_workspace = arm
        .namespace
        .as_deref()
        .is_some_and(|n| n.eq_ignore_ascii_case(crate::arm::ML_NAMESPACE))
        && arm.resource_group.is_some()
        && arm.segments.len() == 2
        && arm.segments[0].eq_ignore_ascii_case("workspaces");
    if *method != axum::http::Method::GET || !is_workspace {
        return Ok(None);
    }
    match crate::arm::query_get(query, "api-version") {
        None | Some("") => {
            return Err(ArmError::bad_request(
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            ));
        }
        Some(WORKSPACE_API_VERSION) => {}
        Some(other) => {
            return Err(ArmError::bad_request(
                "NoRegisteredProviderFound",
                format!(
                    "No registered resource provider found for API version '{other}' and type 'workspaces'. The supported api-versions are '{WORKSPACE_API_VERSION}'."
                ),
            )
            .with_target("Microsoft.MachineLearningServices/workspaces"));
        }
    }
    let st = sh.state();
    let ws = st.get(path).ok_or_else(|| ArmError::not_found(path))?;
    Ok(Some(json_response(StatusCode::OK, &ws.body)))
}

/// The discovery document a workspace's `discoveryUrl` points at: the service endpoints a
/// client may use (all of them this simulator).
pub fn discovery(sh: &crate::shared::Shared) -> Value {
    let base = &sh.base_url;
    json!({
        "api": base, "catalog": base, "experimentation": base, "gallery": base,
        "history": base, "hyperdrive": base, "labeling": base, "modelmanagement": base,
        "pipelines": base, "studio": base,
    })
}

/// Path of [`discovery`] on the simulator.
pub const DISCOVERY_PATH: &str = "/discovery";

/// A workspace as `Workspaces_Get` shows it (2025-12-01 `Workspace` schema).
fn workspace_body(
    sh: &crate::shared::Shared,
    ws: &crate::config::WorkspaceConfig,
    id: &str,
) -> Value {
    let rg = format!(
        "/subscriptions/{}/resourceGroups/{}",
        ws.subscription_id, ws.resource_group
    );
    // Stands in for `{region}.api.azureml.ms`, the host of the real tracking URI.
    let authority = sh
        .base_url
        .split_once("://")
        .map_or(sh.base_url.as_str(), |(_, a)| a);
    json!({
        "id": id, "name": ws.name, "type": "Microsoft.MachineLearningServices/workspaces",
        "location": ws.location,
        "kind": "Default",
        "sku": {"name": "Basic", "tier": "Basic"},
        "identity": {
            "type": "SystemAssigned",
            "principalId": uuid::Uuid::new_v4().to_string(),
            "tenantId": sh.config.tenant_id,
        },
        "tags": {},
        "systemData": crate::arm::system_data(),
        "properties": {
            "provisioningState": "Succeeded",
            "workspaceId": uuid::Uuid::new_v4().to_string(),
            "friendlyName": ws.name,
            "description": "",
            "storageAccount": format!(
                "{rg}/providers/Microsoft.Storage/storageAccounts/{}",
                sh.config.storage.datastore_account
            ),
            "keyVault": format!("{rg}/providers/Microsoft.KeyVault/vaults/{}kv", ws.name),
            "discoveryUrl": format!("{}{DISCOVERY_PATH}", sh.base_url),
            "mlFlowTrackingUri": format!("azureml://{authority}/mlflow/v1.0{id}"),
            "hbiWorkspace": false,
            "creationTime": crate::arm::timestamp(chrono::Utc::now()),
            "publicNetworkAccess": "Enabled",
            "storageHnsEnabled": false,
            "v1LegacyMode": false,
            "privateLinkCount": 0,
            "tenantId": sh.config.tenant_id,
        },
    })
}

fn prepare_job(
    st: &State,
    existing: Option<&Resource>,
    body: &mut Value,
) -> Result<Prepared, ArmError> {
    if let Some(existing) = existing {
        // "For update case, the Tags in the definition passed in will replace Tags in the existing job."
        let mut updated = existing.body.clone();
        updated["properties"]["tags"] = body["properties"]["tags"].clone();
        if let Some(archived) = body["properties"].get("isArchived") {
            updated["properties"]["isArchived"] = archived.clone();
        }
        return Ok(Prepared {
            store_as_is: Some(updated),
            ..Prepared::default()
        });
    }
    let props = &body["properties"];
    let job_type = props["jobType"].as_str().unwrap_or_default();
    if job_type != "Command" {
        return Err(user_error(format!(
            "The simulator runs Command jobs only; got jobType '{job_type}'."
        )));
    }
    let compute_id = props["computeId"].as_str().unwrap_or_default();
    let compute = st.get(compute_id).ok_or_else(|| {
        user_error(format!(
            "Compute '{compute_id}' was not found in the workspace."
        ))
        .with_target("properties.computeId")
    })?;
    if compute.body["properties"]["computeType"] != json!("VirtualMachine") {
        return Err(user_error(format!(
            "Compute '{compute_id}' is not an attached VirtualMachine; the simulator only runs jobs there."
        )));
    }
    for field in ["codeId", "environmentId"] {
        if let Some(asset) = props[field].as_str()
            && asset.starts_with('/')
            && st.get(asset).is_none()
        {
            return Err(user_error(format!(
                "The asset '{asset}' referenced by {field} was not found."
            ))
            .with_target(format!("properties.{field}")));
        }
    }
    body["properties"]["status"] = json!("NotStarted");
    if body["properties"]["experimentName"].is_null() {
        body["properties"]["experimentName"] = json!("Default");
    }
    body["properties"]["services"] = json!({});
    Ok(Prepared {
        no_provisioning_state: true,
        ..Prepared::default()
    })
}

fn user_error(message: String) -> ArmError {
    ArmError::bad_request("UserError", message)
}

pub fn after_put(req: &Req<'_>, ty: &str, res: &Resource, creating: bool) {
    if ty == "microsoft.machinelearningservices/workspaces/jobs" && creating {
        crate::jobs::spawn(req.sh.clone(), res.id.clone());
    }
}

pub fn before_delete(req: &Req<'_>, ty: &str, res: &Resource) {
    if ty == "microsoft.machinelearningservices/workspaces/jobs" {
        crate::jobs::request_cancel(req.sh, &res.id);
    }
}

/// Query filters of list operations.
pub fn list_filter(req: &Req<'_>, res: &Resource) -> bool {
    match req.type_key().as_str() {
        "microsoft.machinelearningservices/workspaces/datastores" => match req.query("isDefault") {
            Some(v) => {
                (res.body["properties"]["isDefault"] == json!(true))
                    == v.eq_ignore_ascii_case("true")
            }
            None => true,
        },
        "microsoft.machinelearningservices/workspaces/jobs"
        | "microsoft.machinelearningservices/workspaces/models/versions" => {
            let archived = res.body["properties"]["isArchived"] == json!(true);
            match req.query("listViewType").unwrap_or("ActiveOnly") {
                "ArchivedOnly" => archived,
                "All" => true,
                _ => !archived,
            }
        }
        _ => true,
    }
}

pub fn action(
    req: &Req<'_>,
    st: &mut State,
    target_type: &str,
    target: &str,
    action: &str,
    body: Option<Value>,
) -> Result<Response, ArmError> {
    match (target_type, action) {
        ("microsoft.machinelearningservices/workspaces/computes", "listkeys") => {
            let res = st.get(target).ok_or_else(|| ArmError::not_found(target))?;
            Ok(json_response(
                StatusCode::OK,
                &json!({
                    "computeType": res.body["properties"]["computeType"],
                    "administratorAccount": res.secrets.clone().unwrap_or(Value::Null),
                }),
            ))
        }
        ("microsoft.machinelearningservices/workspaces/datastores", "listsecrets") => {
            let res = st.get(target).ok_or_else(|| ArmError::not_found(target))?;
            let secrets = res
                .secrets
                .clone()
                .unwrap_or_else(|| json!({"secretsType": "None"}));
            Ok(json_response(StatusCode::OK, &secrets))
        }
        ("microsoft.machinelearningservices/workspaces/codes/versions", "startpendingupload") => {
            start_pending_upload(req, target, body)
        }
        ("microsoft.machinelearningservices/workspaces/jobs", "cancel") => {
            let res = st.get(target).ok_or_else(|| ArmError::not_found(target))?;
            let status = res.body["properties"]["status"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if is_terminal(&status) {
                return Ok(StatusCode::OK.into_response());
            }
            if let Some(job) = st.get_mut(target) {
                job.body["properties"]["status"] = json!("CancelRequested");
            }
            crate::jobs::request_cancel(req.sh, target);
            let headers = start_operation(req, st, target, Effect::CancelJob, false);
            let mut resp = StatusCode::ACCEPTED.into_response();
            resp.headers_mut().extend(headers);
            Ok(resp)
        }
        _ => Err(ArmError::new(
            StatusCode::NOT_IMPLEMENTED,
            "NotImplemented",
            format!("The simulator does not implement the action '{action}' on {target_type}."),
        )),
    }
}

/// A folder under the datastore container and a container SAS to upload into it.
fn start_pending_upload(
    req: &Req<'_>,
    target: &str,
    body: Option<Value>,
) -> Result<Response, ArmError> {
    let storage = req.sh.storage.as_ref().ok_or_else(|| {
        ArmError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "StorageUnavailable",
            "The simulator runs without Azurite; pending uploads need it.",
        )
    })?;
    let upload_id = uuid::Uuid::new_v4().to_string();
    let expiry = (chrono::Utc::now() + chrono::Duration::hours(12))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let sas = sign_service_sas(
        &SasFields {
            account: &storage.datastore_account,
            container: &storage.datastore_container,
            blob: None,
            permissions: "racwl",
            start: None,
            expiry: &expiry,
            ip: None,
            protocol: Some("https"),
        },
        &storage.datastore_key,
    )
    .map_err(|e| {
        ArmError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            e.to_string(),
        )
    })?;
    let blob_uri = format!(
        "{}/{}/LocalUpload/{upload_id}",
        storage.azurite.host_style_url(&storage.datastore_account),
        storage.datastore_container
    );
    let arm = ids::ArmPath::parse(target);
    let account_id = arm.map(|a| {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Storage/storageAccounts/{}",
            a.subscription,
            a.resource_group.unwrap_or_default(),
            storage.datastore_account
        )
    });
    let requested_type = body
        .as_ref()
        .and_then(|b| b["pendingUploadType"].as_str())
        .unwrap_or("TemporaryBlobReference");
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "pendingUploadId": upload_id,
            "pendingUploadType": requested_type,
            "blobReferenceForConsumption": {
                "blobUri": blob_uri,
                "storageAccountArmId": account_id,
                "credential": {
                    "credentialType": "SAS",
                    "sasUri": format!("{blob_uri}?{}", sas.expose()),
                },
            },
        }),
    ))
}

/// Workspaces and the default datastore that exist from the start.
pub fn seed(sh: &crate::shared::Shared, st: &mut State) {
    for ws in &sh.config.workspaces {
        let id = format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.MachineLearningServices/workspaces/{}",
            ws.subscription_id, ws.resource_group, ws.name
        );
        st.put(&id, workspace_body(sh, ws, &id));
        let Some(storage) = &sh.storage else { continue };
        let ds_id = format!("{id}/datastores/{DEFAULT_DATASTORE}");
        let endpoint = format!("localhost:{}", storage.azurite.port);
        let stored = st.put(
            &ds_id,
            json!({
                "id": ds_id, "name": DEFAULT_DATASTORE,
                "type": "Microsoft.MachineLearningServices/workspaces/datastores",
                "properties": {
                    "datastoreType": "AzureBlob",
                    "accountName": storage.datastore_account,
                    "containerName": storage.datastore_container,
                    "endpoint": endpoint,
                    "protocol": "https",
                    "serviceDataAccessAuthIdentity": "None",
                    "isDefault": true,
                    "credentials": {"credentialsType": "AccountKey"},
                    "description": "Default workspace blob store (Azurite)",
                    "tags": {}, "properties": {},
                },
                "systemData": crate::arm::system_data(),
            }),
        );
        stored.secrets =
            Some(json!({"secretsType": "AccountKey", "key": storage.datastore_key.expose()}));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_in_asset_string_maps_become_strings() {
        let ws = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/w";
        let mut body = json!({"properties": {"properties": {"hash_version": 202208, "hash_sha256": "ab"},
            "tags": {"n": 1.5, "b": true}, "isAnonymous": true}});
        coerce_string_maps(
            &ids::ArmPath::parse(&format!("{ws}/codes/c/versions/1")).unwrap(),
            &mut body,
        );
        assert_eq!(
            body["properties"]["properties"],
            json!({"hash_version": "202208", "hash_sha256": "ab"})
        );
        // Only numbers (what azure-ai-ml sends); other members keep their type.
        assert_eq!(body["properties"]["tags"], json!({"n": "1.5", "b": true}));
        assert_eq!(body["properties"]["isAnonymous"], json!(true));

        // A compute's `properties.properties` is typed configuration, not a string map.
        let mut compute = json!({"properties": {"properties": {"sshPort": 22}}});
        coerce_string_maps(
            &ids::ArmPath::parse(&format!("{ws}/computes/c")).unwrap(),
            &mut compute,
        );
        assert_eq!(compute["properties"]["properties"]["sshPort"], json!(22));
    }
}
