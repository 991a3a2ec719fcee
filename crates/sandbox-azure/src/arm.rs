//! ARM front door: authentication, api-version and path checks against the specs, body
//! validation, then generic resource behaviour (GET/PUT/PATCH/DELETE/list, long-running
//! operations) with per-type hooks in [`crate::compute`], [`crate::network`] and [`crate::ml`].

use std::{collections::HashMap, sync::Arc, time::Instant};

use axum::{
    http::{HeaderMap, HeaderValue, Method, StatusCode},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use chrono::Utc;
use serde_json::{Value, json};

use crate::{
    arm_error::ArmError,
    ids::{self, ArmPath},
    shared::Shared,
    specs::{Operation, Specs},
    state::{Effect, OpStatus, Operation as LroOperation, PowerState, State, set_provisioning},
    validate::{Strictness, validate_request},
};

pub const ML_NAMESPACE: &str = "Microsoft.MachineLearningServices";

/// One validated ARM request.
pub struct Req<'a> {
    pub sh: &'a Arc<Shared>,
    pub op: &'a Operation,
    pub method: Method,
    pub arm: ArmPath,
    /// Request path without a trailing slash.
    pub path: String,
    pub query: HashMap<String, String>,
    pub api_version: String,
}

impl Req<'_> {
    pub fn query(&self, name: &str) -> Option<&str> {
        query_get(&self.query, name)
    }

    pub fn namespace(&self) -> &str {
        self.arm.namespace.as_deref().unwrap_or_default()
    }

    /// ARM type string, e.g. `Microsoft.Compute/virtualMachines`.
    pub fn resource_type(&self) -> String {
        self.arm.resource_type()
    }

    /// Lower-case type for matching hooks.
    pub fn type_key(&self) -> String {
        self.arm.resource_type().to_ascii_lowercase()
    }
}

pub fn query_get<'q>(query: &'q HashMap<String, String>, name: &str) -> Option<&'q str> {
    query
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

pub fn parse_query(raw: Option<&str>) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        out.entry(k.into_owned()).or_insert_with(|| v.into_owned());
    }
    out
}

pub fn json_response(status: StatusCode, body: &Value) -> Response {
    (status, axum::Json(body.clone())).into_response()
}

/// Audience an ARM path needs: public ARM for Azure ML, the Stack Hub audience otherwise.
fn audience_for<'a>(sh: &'a Shared, namespace: &str) -> &'a str {
    if namespace.eq_ignore_ascii_case(ML_NAMESPACE) {
        &sh.config.public_audience
    } else {
        &sh.config.stack_hub_audience
    }
}

/// Entry point for every `/subscriptions/...` request.
pub fn handle(
    sh: &Arc<Shared>,
    method: Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    match dispatch(sh, method, uri, headers, body) {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

fn dispatch(
    sh: &Arc<Shared>,
    method: Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, ArmError> {
    let path = normalize(uri.path());
    let query = parse_query(uri.query());
    let Some(arm) = ArmPath::parse(&path) else {
        return Err(ArmError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("The path '{path}' is not an ARM resource path."),
        ));
    };
    let namespace = arm.namespace.clone().unwrap_or_default();
    crate::shared::lock(&sh.tokens).authorize(
        headers,
        audience_for(sh, &namespace),
        &arm.subscription,
        &sh.login_endpoint(),
        Utc::now().timestamp(),
    )?;
    if let Some(resp) = operation_status(sh, &method, &arm)? {
        return Ok(resp);
    }
    if let Some(resp) = crate::ml::workspace_get(sh, &method, &arm, &path, &query)? {
        return Ok(resp);
    }
    let (op, api_version, body_json) =
        check_request(&sh.specs, &method, &path, &query, body, Strictness::Arm)?;
    let req = Req {
        sh,
        op,
        method: method.clone(),
        arm,
        path,
        query,
        api_version,
    };
    let mut st = sh.state();
    st.advance(Instant::now());
    let is_resource = !req.arm.segments.is_empty() && req.arm.segments.len().is_multiple_of(2);
    match (method, is_resource) {
        (Method::GET, true) => get(&req, &st),
        (Method::PUT, true) => put(&req, &mut st, body_json),
        (Method::PATCH, true) => patch(&req, &mut st, body_json),
        (Method::DELETE, true) => delete(&req, &mut st),
        (Method::GET, false) if req.op.pageable => list(&req, &st),
        (Method::GET, false) => sub_get(&req, &st),
        (Method::POST, false) => action(&req, &mut st, body_json),
        (m, _) => Err(not_implemented(&req, m.as_str())),
    }
}

/// Everything ARM checks before the resource provider sees a request: api-version present and
/// supported for the path, path known, body JSON and valid against the operation's schema.
/// Returns the operation, the api-version and the parsed body.
pub fn check_request<'s>(
    specs: &'s Specs,
    method: &Method,
    path: &str,
    query: &HashMap<String, String>,
    body: &[u8],
    strictness: Strictness,
) -> Result<(&'s Operation, String, Option<Value>), ArmError> {
    let arm = ArmPath::parse(path).ok_or_else(|| {
        ArmError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("The path '{path}' is not an ARM resource path."),
        )
    })?;
    let api_version = match query_get(query, "api-version") {
        Some(v) if !v.is_empty() => v.to_owned(),
        _ => {
            return Err(ArmError::bad_request(
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            ));
        }
    };
    let Some(matched) = specs.match_path(method.as_str(), path) else {
        return Err(unknown_path(specs, method, path, &arm, &api_version));
    };
    let Some(op) = matched
        .operations
        .iter()
        .find(|o| o.api_version == api_version)
        .copied()
    else {
        return Err(unsupported_version(&api_version, &arm, &matched.operations));
    };
    let mut body_json = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        Some(serde_json::from_slice::<Value>(body).map_err(|e| {
            ArmError::bad_request(
                "InvalidRequestContent",
                format!("The request content was invalid and could not be deserialized: {e}"),
            )
        })?)
    };
    if strictness == Strictness::Arm
        && let Some(body) = body_json.as_mut()
    {
        crate::ml::coerce_string_maps(&arm, body);
    }
    validate_request(
        specs,
        op,
        &matched.params,
        query,
        body_json.as_ref(),
        strictness,
    )?;
    Ok((op, api_version, body_json))
}

fn normalize(path: &str) -> String {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".into()
    } else {
        trimmed.to_owned()
    }
}

fn not_implemented(req: &Req<'_>, what: &str) -> ArmError {
    ArmError::new(
        StatusCode::NOT_IMPLEMENTED,
        "NotImplemented",
        format!(
            "The simulator does not implement {what} for operation '{}'.",
            req.op.operation_id
        ),
    )
}

fn unknown_path(
    specs: &Specs,
    method: &Method,
    path: &str,
    arm: &ArmPath,
    api_version: &str,
) -> ArmError {
    let Some(namespace) = arm.namespace.as_deref() else {
        return ArmError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("No route for '{path}'."),
        );
    };
    if !specs.knows_namespace(namespace) {
        return ArmError::new(
            StatusCode::NOT_FOUND,
            "InvalidResourceNamespace",
            format!("The resource namespace '{namespace}' is invalid."),
        );
    }
    if specs.path_exists_any_method(path) {
        return ArmError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "UnsupportedHttpMethod",
            format!("The requested resource does not support http method '{method}'."),
        );
    }
    let ty = arm.resource_type();
    let short = ty.split_once('/').map_or(ty.as_str(), |(_, t)| t);
    ArmError::new(
        StatusCode::NOT_FOUND,
        "InvalidResourceType",
        format!(
            "The resource type '{short}' could not be found in the namespace '{namespace}' for api version '{api_version}'."
        ),
    )
}

fn unsupported_version(api_version: &str, arm: &ArmPath, ops: &[&Operation]) -> ArmError {
    let mut supported: Vec<&str> = ops.iter().map(|o| o.api_version.as_str()).collect();
    supported.sort();
    supported.dedup();
    let well_formed = regex::Regex::new(r"^\d{4}-\d{2}-\d{2}(-[A-Za-z0-9]+)*$")
        .map(|re| re.is_match(api_version))
        .unwrap_or(true);
    if !well_formed {
        return ArmError::bad_request(
            "InvalidApiVersionParameter",
            format!(
                "The api-version '{api_version}' is invalid. The supported versions are '{}'.",
                supported.join(",")
            ),
        );
    }
    let ty = arm.resource_type();
    let (namespace, short) = ty.split_once('/').unwrap_or((ty.as_str(), ""));
    ArmError::bad_request(
        "NoRegisteredProviderFound",
        format!(
            "No registered resource provider found for location 'local' and API version '{api_version}' for type '{short}'. The supported api-versions are '{}'.",
            supported.join(", ")
        ),
    )
    .with_target(format!("{namespace}/{short}"))
}

// ---------------------------------------------------------------- long-running operations

/// Register an operation and build its 201/202 headers.
pub fn start_operation(
    req: &Req<'_>,
    st: &mut State,
    resource_id: &str,
    effect: Effect,
    returns_resource: bool,
) -> HeaderMap {
    let cfg = &req.sh.config.lro;
    let name = ids::name_of(resource_id);
    let fail = cfg
        .fail_resource_names
        .iter()
        .any(|n| n.eq_ignore_ascii_case(name));
    let op_id = uuid::Uuid::new_v4().to_string();
    st.operations.insert(
        op_id.clone(),
        LroOperation {
            id: op_id.clone(),
            resource_id: resource_id.to_owned(),
            effect,
            status: OpStatus::InProgress,
            started: Utc::now(),
            ended: None,
            due: Instant::now() + cfg.duration(),
            fail,
            returns_resource,
        },
    );
    let location = location_of(st, resource_id);
    let base = format!(
        "{}/subscriptions/{}/providers/{}/locations/{}",
        req.sh.base_url,
        req.arm.subscription,
        req.namespace(),
        location
    );
    let async_url = format!("{base}/operations/{op_id}?api-version={}", req.api_version);
    let result_url = format!(
        "{base}/operationResults/{op_id}?api-version={}",
        req.api_version
    );
    let via_location = req.op.final_state_via.as_deref() == Some("location");
    let mut headers = HeaderMap::new();
    if !via_location {
        insert(&mut headers, "azure-asyncoperation", &async_url);
    }
    if via_location || req.method != Method::PUT {
        insert(&mut headers, "location", &result_url);
    }
    headers.insert("retry-after", HeaderValue::from(cfg.retry_after_secs));
    headers
}

fn insert(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}

/// Location of a resource, or of its workspace for Azure ML children.
pub fn location_of(st: &State, id: &str) -> String {
    let mut current = Some(id.to_owned());
    while let Some(c) = current {
        if let Some(loc) = st.get(&c).and_then(|r| r.body["location"].as_str()) {
            return loc.replace(' ', "").to_ascii_lowercase();
        }
        current = ids::parent_id(&c);
    }
    "local".into()
}

/// `.../providers/{ns}/locations/{loc}/operations/{id}` and `.../operationResults/{id}`.
fn operation_status(
    sh: &Arc<Shared>,
    method: &Method,
    arm: &ArmPath,
) -> Result<Option<Response>, ArmError> {
    let s = &arm.segments;
    if s.len() != 4 || !s[0].eq_ignore_ascii_case("locations") {
        return Ok(None);
    }
    let results = s[2].eq_ignore_ascii_case("operationResults");
    if !(results || s[2].eq_ignore_ascii_case("operations")) || *method != Method::GET {
        return Ok(None);
    }
    let mut st = sh.state();
    st.advance(Instant::now());
    let Some(op) = st.operations.get(&s[3]).cloned() else {
        return Err(ArmError::new(
            StatusCode::NOT_FOUND,
            "OperationNotFound",
            format!("The operation '{}' was not found.", s[3]),
        ));
    };
    let retry = sh.config.lro.retry_after_secs;
    if !results {
        let mut body = json!({
            "id": format!("/subscriptions/{}/providers/{}/locations/{}/operations/{}", arm.subscription,
                arm.namespace.clone().unwrap_or_default(), s[1], op.id),
            "name": op.id,
            "status": op.status.name(),
            "startTime": timestamp(op.started),
        });
        if let Some(end) = op.ended {
            body["endTime"] = Value::String(timestamp(end));
        }
        if let OpStatus::Failed { code, message } = &op.status {
            body["error"] = json!({"code": code, "message": message});
        }
        let mut resp = json_response(StatusCode::OK, &body);
        if op.status == OpStatus::InProgress {
            resp.headers_mut()
                .insert("retry-after", HeaderValue::from(retry));
        }
        return Ok(Some(resp));
    }
    match &op.status {
        OpStatus::InProgress => {
            let mut resp = StatusCode::ACCEPTED.into_response();
            resp.headers_mut()
                .insert("retry-after", HeaderValue::from(retry));
            Ok(Some(resp))
        }
        OpStatus::Succeeded => {
            if op.returns_resource
                && let Some(res) = st.get(&op.resource_id)
            {
                let body = render(&st, res, false);
                return Ok(Some(json_response(StatusCode::OK, &body)));
            }
            Ok(Some(StatusCode::NO_CONTENT.into_response()))
        }
        OpStatus::Failed { code, message } => Err(ArmError::bad_request(code, message.clone())),
    }
}

// ---------------------------------------------------------------- generic resource behaviour

/// The body GET returns: stored body plus what is computed (subnets of a vnet, instance view).
pub fn render(st: &State, res: &crate::state::Resource, instance_view: bool) -> Value {
    let mut body = res.body.clone();
    let ty = ArmPath::parse(&res.id)
        .map(|p| p.resource_type().to_ascii_lowercase())
        .unwrap_or_default();
    match ty.as_str() {
        "microsoft.network/virtualnetworks" => {
            let subnets: Vec<Value> = st
                .children(&res.id, "subnets")
                .into_iter()
                .map(|s| crate::network::inline(&s.body))
                .collect();
            body["properties"]["subnets"] = Value::Array(subnets);
        }
        "microsoft.network/networksecuritygroups" => crate::network::render_nsg(st, res, &mut body),
        "microsoft.compute/virtualmachines" if instance_view => {
            body["properties"]["instanceView"] = crate::compute::instance_view(res);
        }
        _ => {}
    }
    body
}

fn get(req: &Req<'_>, st: &State) -> Result<Response, ArmError> {
    let Some(res) = st.get(&req.path) else {
        let name = ids::name_of(&req.path);
        return ids::parent_id(&req.path)
            .filter(|parent| st.get(parent).is_some())
            .and_then(|parent| {
                let child_type = req.arm.segments.iter().rev().nth(1)?;
                crate::network::computed_children(&parent, child_type)
            })
            .and_then(|children| {
                children.into_iter().find(|c| {
                    c["name"]
                        .as_str()
                        .is_some_and(|n| n.eq_ignore_ascii_case(name))
                })
            })
            .map(|child| json_response(StatusCode::OK, &child))
            .ok_or_else(|| ArmError::not_found(&req.path));
    };
    let expand = req
        .query("$expand")
        .is_some_and(|e| e.eq_ignore_ascii_case("instanceView"));
    Ok(json_response(StatusCode::OK, &render(st, res, expand)))
}

const ML_ASSET_CONTAINERS: &[&str] = &["codes", "models", "environments", "data", "components"];

/// The parent must exist; Azure ML creates asset containers implicitly on the first version.
fn ensure_parent(req: &Req<'_>, st: &mut State, id: &str) -> Result<(), ArmError> {
    let Some(parent) = ids::parent_id(id) else {
        return Ok(());
    };
    if st.get(&parent).is_some() {
        return Ok(());
    }
    let parent_path = ArmPath::parse(&parent).ok_or_else(|| ArmError::not_found(&parent))?;
    let container_type = parent_path
        .segments
        .iter()
        .rev()
        .nth(1)
        .map(|s| s.to_ascii_lowercase())
        .unwrap_or_default();
    let grandparent_exists = ids::parent_id(&parent).is_some_and(|g| st.get(&g).is_some());
    if req.namespace().eq_ignore_ascii_case(ML_NAMESPACE)
        && ML_ASSET_CONTAINERS.contains(&container_type.as_str())
        && grandparent_exists
    {
        let body = json!({
            "id": parent,
            "name": ids::name_of(&parent),
            "type": parent_path.resource_type(),
            "properties": {"provisioningState": "Succeeded", "isArchived": false},
            "systemData": system_data(),
        });
        st.put(&parent, body);
        return Ok(());
    }
    Err(ArmError::new(
        StatusCode::NOT_FOUND,
        "ParentResourceNotFound",
        format!(
            "Can not perform requested operation on nested resource. Parent resource '{}' not found.",
            ids::name_of(&parent)
        ),
    )
    .with_target(parent))
}

/// A time as Azure writes it: UTC, at most 7 fractional digits (.NET's precision; chrono's
/// default would print 9, which some clients refuse).
pub fn timestamp(t: chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

pub fn system_data() -> Value {
    let now = timestamp(Utc::now());
    json!({
        "createdAt": now, "createdBy": "edgetrain-sandbox", "createdByType": "Application",
        "lastModifiedAt": now, "lastModifiedBy": "edgetrain-sandbox", "lastModifiedByType": "Application",
    })
}

/// What a type hook decided about a PUT.
#[derive(Debug, Default)]
pub struct Prepared {
    pub secrets: Option<Value>,
    /// Power state to set when the resource is new.
    pub initial_power: Option<PowerState>,
    /// Skip the generic provisioningState handling (jobs have none).
    pub no_provisioning_state: bool,
    /// Store exactly this body and answer 200 (a job update changes tags only).
    pub store_as_is: Option<Value>,
}

fn put(req: &Req<'_>, st: &mut State, body: Option<Value>) -> Result<Response, ArmError> {
    let existing = st.get(&req.path).cloned();
    let id = existing
        .as_ref()
        .map_or_else(|| req.path.clone(), |r| r.id.clone());
    ensure_parent(req, st, &id)?;
    let mut new = body.unwrap_or_else(|| json!({}));
    if !new.is_object() {
        return Err(ArmError::bad_request(
            "InvalidRequestContent",
            "The request body must be a JSON object.",
        ));
    }
    if !new["properties"].is_object() && new.get("properties").is_some_and(|p| !p.is_null()) {
        return Err(ArmError::bad_request(
            "InvalidRequestContent",
            "'properties' must be an object.",
        ));
    }
    new["id"] = Value::String(id.clone());
    new["name"] = Value::String(ids::name_of(&id).to_owned());
    new["type"] = Value::String(req.resource_type());
    let creating = existing.is_none();
    let ty = req.type_key();
    let prepared = match ty.as_str() {
        "microsoft.compute/virtualmachines" => {
            crate::compute::prepare_vm(req, st, existing.as_ref(), &mut new)?
        }
        t if t.starts_with("microsoft.network/") => {
            crate::network::prepare(req, st, &ty, existing.as_ref(), &mut new)?
        }
        t if t.starts_with("microsoft.machinelearningservices/") => {
            crate::ml::prepare(req, st, &ty, existing.as_ref(), &mut new)?
        }
        _ => Prepared::default(),
    };
    if let Some(body) = prepared.store_as_is {
        st.put(&id, body.clone());
        return Ok(json_response(StatusCode::OK, &body));
    }
    let lro = req.op.long_running;
    if !prepared.no_provisioning_state {
        let state = match (lro, creating) {
            (false, _) => "Succeeded",
            (true, true) => "Creating",
            (true, false) => "Updating",
        };
        set_provisioning(&mut new, state);
    }
    if req.namespace().eq_ignore_ascii_case(ML_NAMESPACE) {
        new["systemData"] = existing
            .as_ref()
            .and_then(|e| e.body.get("systemData").cloned())
            .unwrap_or_else(system_data);
    }
    let stored = st.put(&id, new);
    if prepared.secrets.is_some() {
        stored.secrets = prepared.secrets;
    }
    if creating {
        stored.power = prepared.initial_power;
    }
    crate::network::after_put(st, &ty, &id);
    crate::compute::after_put(st, &ty, &id);
    let after = st
        .get(&id)
        .cloned()
        .ok_or_else(|| ArmError::not_found(&id))?;
    crate::ml::after_put(req, &ty, &after, creating);
    let status = if creating && req.op.responses.iter().any(|r| r == "201") {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let headers = if lro {
        let is_vm = ty == "microsoft.compute/virtualmachines";
        start_operation(
            req,
            st,
            &id,
            Effect::Provision {
                power_on: is_vm && creating,
            },
            true,
        )
    } else {
        HeaderMap::new()
    };
    let res = st.get(&id).ok_or_else(|| ArmError::not_found(&id))?;
    let mut resp = json_response(status, &render(st, res, false));
    resp.headers_mut().extend(headers);
    Ok(resp)
}

fn merge_patch(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

fn patch(req: &Req<'_>, st: &mut State, body: Option<Value>) -> Result<Response, ArmError> {
    let existing = st
        .get(&req.path)
        .cloned()
        .ok_or_else(|| ArmError::not_found(&req.path))?;
    let mut new = existing.body.clone();
    if let Some(patch) = &body {
        if req.type_key() == "microsoft.compute/virtualmachines" {
            crate::compute::prepare_vm_patch(req, &existing, patch)?;
        }
        merge_patch(&mut new, patch);
    }
    new["id"] = Value::String(existing.id.clone());
    let lro = req.op.long_running;
    if new["properties"]["provisioningState"].is_string() || lro {
        set_provisioning(&mut new, if lro { "Updating" } else { "Succeeded" });
    }
    st.put(&existing.id, new);
    let headers = if lro {
        start_operation(
            req,
            st,
            &existing.id,
            Effect::Provision { power_on: false },
            true,
        )
    } else {
        HeaderMap::new()
    };
    let res = st
        .get(&existing.id)
        .ok_or_else(|| ArmError::not_found(&req.path))?;
    let mut resp = json_response(StatusCode::OK, &render(st, res, false));
    resp.headers_mut().extend(headers);
    Ok(resp)
}

fn delete(req: &Req<'_>, st: &mut State) -> Result<Response, ArmError> {
    let Some(existing) = st.get(&req.path).cloned() else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let ty = req.type_key();
    crate::network::before_delete(st, &ty, &existing)?;
    crate::compute::before_delete(&ty, &existing)?;
    crate::ml::before_delete(req, &ty, &existing);
    if req.op.long_running {
        if let Some(res) = st.get_mut(&existing.id)
            && res.body["properties"]["provisioningState"].is_string()
        {
            set_provisioning(&mut res.body, "Deleting");
        }
        let headers = start_operation(req, st, &existing.id, Effect::Delete, false);
        let status = if req.op.responses.iter().any(|r| r == "202") {
            StatusCode::ACCEPTED
        } else {
            StatusCode::OK
        };
        let mut resp = status.into_response();
        resp.headers_mut().extend(headers);
        return Ok(resp);
    }
    st.remove_tree(&existing.id);
    Ok(StatusCode::OK.into_response())
}

fn list(req: &Req<'_>, st: &State) -> Result<Response, ArmError> {
    let child_type = req.arm.segments.last().cloned().unwrap_or_default();
    let parent = req.path[..req.path.len() - child_type.len() - 1].to_owned();
    if let Some(sizes) = crate::compute::vm_sizes(req, st, &parent, &child_type) {
        // Not pageable in the spec (`nextLinkName: null`): one answer with every size.
        return Ok(json_response(StatusCode::OK, &json!({ "value": sizes? })));
    }
    let items: Vec<Value> = if req.arm.segments.len() == 1 && req.arm.resource_group.is_none() {
        rendered(
            req,
            st,
            st.of_type_in_subscription(&req.arm.subscription, &req.resource_type()),
        )
    } else {
        let parent_exists = st.get(&parent).is_some();
        if req.arm.segments.len() > 1 && !parent_exists {
            if !crate::ml::lists_empty_without_parent(req, st, &parent) {
                return Err(ArmError::not_found(&parent));
            }
            Vec::new()
        } else {
            match crate::network::computed_children(&parent, &child_type) {
                Some(children) => children,
                None => rendered(req, st, st.children(&parent, &child_type)),
            }
        }
    };
    let page = req.sh.config.list_page_size;
    let skip: usize = req
        .query("$skip")
        .or_else(|| req.query("$skipToken"))
        .map(|s| {
            s.parse().map_err(|_| {
                ArmError::bad_request(
                    "InvalidParameter",
                    format!("Invalid continuation token '{s}'."),
                )
                .with_target("$skip")
            })
        })
        .transpose()?
        .unwrap_or(0);
    let values: Vec<Value> = items.iter().skip(skip).take(page).cloned().collect();
    let mut body = json!({ "value": values });
    if skip + page < items.len() {
        let mut query: Vec<(String, String)> = req
            .query
            .iter()
            .filter(|(k, _)| !k.eq_ignore_ascii_case("$skip"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        query.sort();
        query.push(("$skip".into(), (skip + page).to_string()));
        let qs = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(query)
            .finish();
        body["nextLink"] = Value::String(format!("{}{}?{qs}", req.sh.base_url, req.path));
    }
    Ok(json_response(StatusCode::OK, &body))
}

/// What a list shows of stored resources: those its query selects, as GET renders them.
fn rendered(req: &Req<'_>, st: &State, items: Vec<&crate::state::Resource>) -> Vec<Value> {
    items
        .into_iter()
        .filter(|r| crate::ml::list_filter(req, r))
        .map(|r| render(st, r, false))
        .collect()
}

fn sub_get(req: &Req<'_>, st: &State) -> Result<Response, ArmError> {
    let last = req
        .arm
        .segments
        .last()
        .map(|s| s.to_ascii_lowercase())
        .unwrap_or_default();
    let parent = req.path[..req.path.len() - last.len() - 1].to_owned();
    let res = st
        .get(&parent)
        .ok_or_else(|| ArmError::not_found(&parent))?;
    let parent_type = ArmPath::parse(&res.id)
        .map(|p| p.resource_type().to_ascii_lowercase())
        .unwrap_or_default();
    match (parent_type.as_str(), last.as_str()) {
        ("microsoft.compute/virtualmachines", "instanceview") => Ok(json_response(
            StatusCode::OK,
            &crate::compute::instance_view(res),
        )),
        _ => Err(not_implemented(req, "this read")),
    }
}

fn action(req: &Req<'_>, st: &mut State, body: Option<Value>) -> Result<Response, ArmError> {
    let name = req
        .arm
        .segments
        .last()
        .map(|s| s.to_ascii_lowercase())
        .unwrap_or_default();
    let target = req.path[..req.path.len() - name.len() - 1].to_owned();
    let target_type = ArmPath::parse(&target)
        .map(|p| p.resource_type().to_ascii_lowercase())
        .unwrap_or_default();
    match target_type.as_str() {
        "microsoft.compute/virtualmachines" => crate::compute::action(req, st, &target, &name),
        t if t.starts_with("microsoft.machinelearningservices/") => {
            crate::ml::action(req, st, t, &target, &name, body)
        }
        _ => Err(not_implemented(req, "this action")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_patch_replaces_and_removes() {
        let mut t = json!({"tags": {"a": "1", "b": "2"}, "properties": {"x": 1}});
        merge_patch(&mut t, &json!({"tags": {"a": null, "c": "3"}}));
        assert_eq!(
            t,
            json!({"tags": {"b": "2", "c": "3"}, "properties": {"x": 1}})
        );
    }
}
