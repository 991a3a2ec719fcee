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
    let now = chrono::Utc::now().to_rfc3339();
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
            Ok(Prepared::default())
        }
        _ => Ok(Prepared::default()),
    }
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
        "microsoft.machinelearningservices/workspaces/jobs" => {
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
        st.put(
            &id,
            json!({
                "id": id, "name": ws.name, "type": "Microsoft.MachineLearningServices/workspaces",
                "location": ws.location,
                "properties": {"provisioningState": "Succeeded", "workspaceId": uuid::Uuid::new_v4().to_string()},
            }),
        );
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
