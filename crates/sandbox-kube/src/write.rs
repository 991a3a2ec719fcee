//! Writes: create, update, patch, delete, finalizers and owner-reference GC.

use serde_json::{Map, Value, json};

use crate::{
    api_error::{ApiError, ApiResult, Cause},
    apply::{self, Writer},
    patch,
    resources::{self, ResourceType},
    schema,
    store::{State, now, present},
};

/// Who writes and how.
#[derive(Debug, Clone)]
pub struct WriteCtx {
    pub manager: String,
    pub dry_run: bool,
    /// `fieldValidation=Strict`: unknown fields are an error instead of being pruned.
    pub strict: bool,
}

impl WriteCtx {
    pub fn system() -> Self {
        Self::manager("sandbox-kube")
    }

    pub fn manager(name: &str) -> Self {
        Self {
            manager: name.into(),
            dry_run: false,
            strict: false,
        }
    }
}

/// The patch formats the server accepts (by Content-Type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Merge,
    Json,
    Strategic,
    Apply { force: bool },
}

/// `DeleteOptions` that matter here.
#[derive(Debug, Clone, Default)]
pub struct DeleteOpts {
    pub propagation: Option<String>,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
    pub dry_run: bool,
}

fn meta_str<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(key)?.as_str()
}

fn finalizers(obj: &Value) -> Vec<Value> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn metadata_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    obj["metadata"]
        .as_object_mut()
        .expect("metadata is an object")
}

/// The part of an object whose change bumps `generation`.
fn spec_part(rt: &ResourceType, obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.as_object_mut() {
        m.remove("metadata");
        m.remove("apiVersion");
        m.remove("kind");
        if rt.status_subresource {
            m.remove("status");
        }
    }
    o
}

/// The object without what changes on every write (resourceVersion, managedFields times):
/// equal values mean a no-op write.
fn without_volatile(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
        if let Some(entries) = m.get_mut("managedFields").and_then(Value::as_array_mut) {
            for e in entries.iter_mut().filter_map(Value::as_object_mut) {
                e.remove("time");
            }
        }
    }
    o
}

fn random_suffix() -> String {
    let u = uuid::Uuid::new_v4().simple().to_string();
    // Real names use a consonant/digit alphabet; any lowercase alphanumerics are valid names.
    u[..5].to_string()
}

fn validate_name(name: &str) -> Option<String> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    (!ok).then(|| {
        format!(
            "Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
        )
    })
}

impl State {
    fn namespace_object(&self, ns: &str) -> Option<&Value> {
        self.objects
            .get(&(String::new(), "namespaces".to_string()))?
            .get(&(String::new(), ns.to_string()))
    }

    fn namespace_is_empty(&self, ns: &str) -> bool {
        !self
            .objects
            .values()
            .any(|b| b.keys().any(|(n, _)| n == ns))
    }

    /// A terminating namespace goes away once the last object in it has.
    fn finish_namespace(&mut self, ns: &str) {
        let Some(obj) = self.namespace_object(ns).cloned() else {
            return;
        };
        if meta_str(&obj, "deletionTimestamp").is_some() && self.namespace_is_empty(ns) {
            let rt = self
                .find_type("", "v1", "namespaces")
                .expect("namespaces are built in");
            // Removing a namespace cannot fail.
            let _ = self.remove(&rt, "", ns, obj);
        }
    }

    /// Fills apiVersion/kind/namespace and checks the body against the URL.
    fn normalize(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        url_name: Option<&str>,
        mut obj: Value,
    ) -> ApiResult<Value> {
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        if let Some(kind) = obj.get("kind").and_then(Value::as_str)
            && !kind.is_empty()
            && kind != rt.kind
        {
            return Err(ApiError::bad_request(format!(
                "the kind of the object ({kind}) does not match the kind on the URL ({})",
                rt.kind
            )));
        }
        obj["apiVersion"] = json!(rt.api_version());
        obj["kind"] = json!(rt.kind);
        let md = metadata_mut(&mut obj);
        if let Some(url_name) = url_name {
            match md.get("name").and_then(Value::as_str) {
                Some(n) if n != url_name => {
                    return Err(ApiError::bad_request(format!(
                        "the name of the object ({n}) does not match the name on the URL ({url_name})"
                    )));
                }
                _ => {
                    md.insert("name".into(), json!(url_name));
                }
            }
        }
        if rt.namespaced {
            let ns = ns.ok_or_else(|| {
                ApiError::bad_request("a namespace is required for this resource")
            })?;
            match md.get("namespace").and_then(Value::as_str) {
                Some(n) if !n.is_empty() && n != ns => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => {
                    md.insert("namespace".into(), json!(ns));
                }
            }
        } else {
            md.remove("namespace");
        }
        // Go's omitempty: empty metadata maps and lists are never stored or served.
        for k in ["labels", "annotations", "finalizers", "ownerReferences"] {
            let empty = match md.get(k) {
                Some(Value::Object(m)) => m.is_empty(),
                Some(Value::Array(a)) => a.is_empty(),
                Some(Value::Null) => true,
                _ => false,
            };
            if empty {
                md.remove(k);
            }
        }
        if rt.is_events_v1() {
            return Ok(crate::convert::events_to_core(&obj));
        }
        Ok(obj)
    }

    /// Defaulting the real server does for built-ins: Secret `stringData` folds into
    /// `data` (base64) and an empty `type` becomes `Opaque`; Namespaces carry the
    /// `kubernetes.io/metadata.name` label.
    fn builtin_defaults(rt: &ResourceType, obj: &mut Value) {
        if rt.group.is_empty() && rt.kind == "Namespace" {
            let name = meta_str(obj, "name").unwrap_or_default().to_string();
            let md = metadata_mut(obj);
            if !md.get("labels").is_some_and(Value::is_object) {
                md.insert("labels".into(), json!({}));
            }
            md["labels"]["kubernetes.io/metadata.name"] = json!(name);
            return;
        }
        if !(rt.group.is_empty() && rt.kind == "Secret") {
            return;
        }
        use base64::Engine as _;
        if let Some(Value::Object(sd)) = obj.as_object_mut().and_then(|m| m.remove("stringData")) {
            if !obj.get("data").is_some_and(Value::is_object) {
                obj["data"] = json!({});
            }
            for (k, v) in sd {
                let text = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                obj["data"][k] = json!(base64::engine::general_purpose::STANDARD.encode(text));
            }
        }
        if obj
            .get("type")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            obj["type"] = json!("Opaque");
        }
    }

    /// Admission for the kind: schema + CEL for custom resources, shape checks for CRDs.
    fn admit(
        &self,
        rt: &ResourceType,
        mut obj: Value,
        old: Option<&Value>,
        ctx: &WriteCtx,
    ) -> ApiResult<Value> {
        Self::builtin_defaults(rt, &mut obj);
        let name = meta_str(&obj, "name").unwrap_or_default().to_string();
        let mut served = present(rt, &obj);
        let unknown = crate::typed::prune(rt, &mut served);
        if ctx.strict && !unknown.is_empty() {
            return Err(strict_error(rt, &unknown));
        }
        if !unknown.is_empty() {
            obj = if rt.is_events_v1() {
                crate::convert::events_to_core(&served)
            } else {
                served.clone()
            };
        }
        if let Err(why) = crate::typed::check(rt, &served) {
            return Err(ApiError::bad_request(format!(
                "{} in version \"{}\" cannot be handled as a {}: {why}",
                rt.kind, rt.version, rt.kind
            )));
        }
        let mut causes = Vec::new();
        if let Some(msg) = validate_name(&name) {
            causes.push(Cause {
                reason: "FieldValueInvalid".into(),
                message: msg,
                field: "metadata.name".into(),
            });
        }
        if let Some(old) = old
            && meta_str(old, "deletionTimestamp").is_some()
        {
            let before = finalizers(old);
            if finalizers(&obj).iter().any(|f| !before.contains(f)) {
                causes.push(Cause {
                    reason: "FieldValueForbidden".into(),
                    message:
                        "Forbidden: no new finalizers can be added if the object is being deleted"
                            .into(),
                    field: "metadata.finalizers".into(),
                });
            }
        }
        let obj = match &rt.schema {
            Some(s) if causes.is_empty() => match schema::admit(s, &obj, old) {
                Ok((_, unknown)) if ctx.strict && !unknown.is_empty() => {
                    return Err(strict_error(rt, &unknown));
                }
                Ok((v, _)) => v,
                Err(c) => {
                    causes.extend(c);
                    obj
                }
            },
            _ => obj,
        };
        if rt.crd.is_none() && rt.kind == "CustomResourceDefinition" && causes.is_empty() {
            if let Err(msg) = resources::from_crd(&obj) {
                causes.push(Cause {
                    reason: "FieldValueInvalid".into(),
                    message: msg,
                    field: String::new(),
                });
            } else if let Some(clash) = self.crd_clash(&obj) {
                causes.push(Cause {
                    reason: "FieldValueInvalid".into(),
                    message: clash,
                    field: "spec.names".into(),
                });
            } else {
                causes.extend(schema::crd_rule_errors(&obj));
            }
        }
        if causes.is_empty() {
            Ok(obj)
        } else {
            Err(ApiError::invalid(&rt.kind, &rt.group, &name, &causes))
        }
    }

    fn crd_clash(&self, crd: &Value) -> Option<String> {
        let name = meta_str(crd, "name")?;
        let types = resources::from_crd(crd).ok()?;
        let t = types.first()?;
        self.types
            .iter()
            .find(|o| o.group == t.group && o.plural == t.plural && o.crd.as_deref() != Some(name))
            .map(|_| format!("{} is already served in group {}", t.plural, t.group))
    }

    pub fn create(
        &mut self,
        rt: &ResourceType,
        ns: Option<&str>,
        body: Value,
        ctx: &WriteCtx,
    ) -> ApiResult<Value> {
        let mut obj = self.normalize(rt, ns, None, body)?;
        let md = metadata_mut(&mut obj);
        let name = md
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let name = if name.is_empty() {
            match md.get("generateName").and_then(Value::as_str) {
                Some(prefix) if !prefix.is_empty() => format!("{prefix}{}", random_suffix()),
                _ => {
                    return Err(ApiError::invalid(
                        &rt.kind,
                        &rt.group,
                        "",
                        &[Cause {
                            reason: "FieldValueRequired".into(),
                            message: "Required value: name or generateName is required".into(),
                            field: "metadata.name".into(),
                        }],
                    ));
                }
            }
        } else {
            name
        };
        md.insert("name".into(), json!(name));
        for k in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ] {
            md.remove(k);
        }
        let ns_key = if rt.namespaced {
            ns.unwrap_or_default()
        } else {
            ""
        };
        if rt.namespaced {
            let Some(nso) = self.namespace_object(ns_key) else {
                return Err(ApiError::not_found("namespaces", "", ns_key));
            };
            if meta_str(nso, "deletionTimestamp").is_some() {
                return Err(ApiError::forbidden(
                    &rt.plural,
                    &rt.group,
                    &name,
                    &format!(
                        "unable to create new content in namespace {ns_key} because it is being terminated"
                    ),
                ));
            }
        }
        if self.lookup(rt, ns_key, &name).is_some() {
            return Err(ApiError::already_exists(&rt.plural, &rt.group, &name));
        }
        if rt.status_subresource
            && rt.crd.is_some()
            && let Some(m) = obj.as_object_mut()
        {
            m.remove("status");
        }
        let mut obj = self.admit(rt, obj, None, ctx)?;
        let md = metadata_mut(&mut obj);
        md.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        md.insert("creationTimestamp".into(), json!(now()));
        if rt.tracks_generation {
            md.insert("generation".into(), json!(1));
        }
        if rt.kind == "Namespace" && rt.group.is_empty() {
            obj["status"] = json!({"phase": "Active"});
            obj["spec"] = json!({"finalizers": ["kubernetes"]});
        }
        if rt.kind == "CustomResourceDefinition" && rt.crd.is_none() {
            set_crd_status(&mut obj);
        }
        let time = now();
        // Server-side apply brings its own managedFields entry.
        if obj.pointer("/metadata/managedFields").is_none() {
            apply::record_update(
                None,
                &mut obj,
                rt.schema.as_ref(),
                &writer(rt, ctx, "", &time),
            );
        }
        if ctx.dry_run {
            return Ok(present(rt, &obj));
        }
        self.store(rt, ns_key, &name, obj, "ADDED")
    }

    fn store(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        mut obj: Value,
        type_: &'static str,
    ) -> ApiResult<Value> {
        let rv = self.next_rv();
        metadata_mut(&mut obj).insert("resourceVersion".into(), json!(rv.to_string()));
        let previous = self
            .objects
            .entry(rt.storage_key())
            .or_default()
            .insert((ns.to_string(), name.to_string()), obj.clone());
        self.record(
            rt.storage_key(),
            ns.to_string(),
            type_,
            obj.clone(),
            previous,
        );
        if rt.crd.is_none() && rt.kind == "CustomResourceDefinition" {
            self.refresh_custom_types();
        }
        Ok(present(rt, &obj))
    }

    /// Rebuilds the served custom types from the stored CRDs.
    pub(crate) fn refresh_custom_types(&mut self) {
        let crds: Vec<Value> = self
            .objects
            .get(&(
                "apiextensions.k8s.io".to_string(),
                "customresourcedefinitions".to_string(),
            ))
            .map(|b| {
                b.values()
                    .filter(|c| meta_str(c, "deletionTimestamp").is_none())
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        self.types.retain(|t| t.crd.is_none());
        for crd in &crds {
            if let Ok(ts) = resources::from_crd(crd) {
                self.types.extend(ts);
            }
        }
    }

    /// PUT, or the result of a patch: `new` replaces the stored object.
    pub fn update(
        &mut self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        body: Value,
        sub: Option<&str>,
        ctx: &WriteCtx,
    ) -> ApiResult<Value> {
        self.replace(rt, ns, name, body, sub, ctx, None)
    }

    #[allow(clippy::too_many_arguments)]
    fn replace(
        &mut self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        body: Value,
        sub: Option<&str>,
        ctx: &WriteCtx,
        applied: Option<Value>,
    ) -> ApiResult<Value> {
        let ns_key = if rt.namespaced {
            ns.unwrap_or_default()
        } else {
            ""
        }
        .to_string();
        let Some(old) = self.lookup(rt, &ns_key, name).cloned() else {
            return Err(ApiError::not_found(&rt.plural, &rt.group, name));
        };
        let mut new = self.normalize(rt, ns, Some(name), body)?;
        let old_rv = meta_str(&old, "resourceVersion")
            .unwrap_or_default()
            .to_string();
        let given_rv = meta_str(&new, "resourceVersion").filter(|rv| !rv.is_empty());
        if rt.is_custom() && applied.is_none() && given_rv.is_none() {
            // Custom resources do not allow unconditional updates.
            return Err(ApiError::invalid(
                &rt.kind,
                &rt.group,
                name,
                &[Cause {
                    reason: "FieldValueInvalid".into(),
                    message: "Invalid value: 0x0: must be specified for an update".into(),
                    field: "metadata.resourceVersion".into(),
                }],
            ));
        }
        match given_rv {
            Some(rv) if rv != old_rv => {
                return Err(ApiError::conflict(
                    &rt.plural,
                    &rt.group,
                    name,
                    "the object has been modified; please apply your changes to the latest version and try again",
                ));
            }
            _ => {}
        }
        if sub == Some("status") {
            // The status subresource changes status only (plus what SSA records).
            let status = new.get("status").cloned();
            let managed = new.pointer("/metadata/managedFields").cloned();
            new = old.clone();
            match status {
                Some(s) => new["status"] = s,
                None => {
                    if let Some(m) = new.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
            if let Some(mf) = managed {
                metadata_mut(&mut new).insert("managedFields".into(), mf);
            }
        } else if rt.status_subresource {
            match old.get("status") {
                Some(s) => new["status"] = s.clone(),
                None => {
                    if let Some(m) = new.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
        }
        {
            let omd = old.get("metadata").cloned().unwrap_or_default();
            let md = metadata_mut(&mut new);
            for k in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
            ] {
                match omd.get(k) {
                    Some(v) => {
                        md.insert(k.into(), v.clone());
                    }
                    None => {
                        md.remove(k);
                    }
                }
            }
        }
        let mut new = self.admit(rt, new, Some(&old), ctx)?;
        if rt.tracks_generation && !apply::same(&spec_part(rt, &new), &spec_part(rt, &old)) {
            let g = old
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            metadata_mut(&mut new).insert("generation".into(), json!(g + 1));
        }
        if rt.kind == "CustomResourceDefinition" && rt.crd.is_none() {
            set_crd_status(&mut new);
        }
        let time = now();
        let w = writer(rt, ctx, sub.unwrap_or(""), &time);
        if applied.is_none() {
            // A client may rewrite managedFields itself (kubectl does when it upgrades
            // client-side-apply ownership to server-side apply): start from what it sent.
            let sent = new.pointer("/metadata/managedFields").cloned();
            let mut base = old.clone();
            if let Some(mf) = sent.filter(|mf| Some(mf) != old.pointer("/metadata/managedFields")) {
                metadata_mut(&mut base).insert("managedFields".into(), mf);
            }
            apply::record_update(Some(&base), &mut new, rt.schema.as_ref(), &w);
        }
        metadata_mut(&mut new).insert("resourceVersion".into(), json!(old_rv));
        if apply::same(&without_volatile(&new), &without_volatile(&old)) {
            // A no-op write keeps the resourceVersion and sends no event, as the real server does.
            return Ok(present(rt, &old));
        }
        if ctx.dry_run {
            return Ok(present(rt, &new));
        }
        let terminating_namespace =
            rt.kind == "Namespace" && rt.group.is_empty() && !self.namespace_is_empty(name);
        if meta_str(&new, "deletionTimestamp").is_some()
            && finalizers(&new).is_empty()
            && !terminating_namespace
        {
            return self.remove(rt, &ns_key, name, new);
        }
        self.store(rt, &ns_key, name, new, "MODIFIED")
    }

    /// Applies a patch of any supported type; server-side apply may create.
    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &mut self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        pt: PatchType,
        body: &Value,
        sub: Option<&str>,
        ctx: &WriteCtx,
    ) -> ApiResult<Value> {
        let ns_key = if rt.namespaced {
            ns.unwrap_or_default()
        } else {
            ""
        };
        let current = self.lookup(rt, ns_key, name).cloned();
        let PatchType::Apply { force } = pt else {
            let Some(mut target) = current.map(|c| present(rt, &c)) else {
                return Err(ApiError::not_found(&rt.plural, &rt.group, name));
            };
            match pt {
                PatchType::Merge => patch::json_merge(&mut target, body),
                PatchType::Json => patch::json_patch(&mut target, body)
                    .map_err(|m| ApiError::new(422, "Invalid", m))?,
                PatchType::Strategic => {
                    if rt.crd.is_some() {
                        return Err(ApiError::unsupported_media_type(
                            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
                        ));
                    }
                    patch::strategic_merge(&mut target, body)
                }
                PatchType::Apply { .. } => unreachable!("handled above"),
            }
            return self.update(rt, ns, name, target, sub, ctx);
        };
        if !body.is_object() {
            return Err(ApiError::bad_request(
                "an apply configuration must be an object",
            ));
        }
        if let Some(n) = meta_str(body, "name")
            && n != name
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
        let time = now();
        let w = writer(rt, ctx, sub.unwrap_or(""), &time);
        let config = if sub == Some("status") {
            // Only status is applied through /status.
            let mut c = json!({});
            if let Some(s) = body.get("status") {
                c["status"] = s.clone();
            }
            c
        } else {
            let mut c = body.clone();
            if rt.status_subresource
                && let Some(m) = c.as_object_mut()
            {
                m.remove("status");
            }
            if let Some(m) = c.as_object_mut() {
                m.remove("apiVersion");
                m.remove("kind");
            }
            if let Some(md) = c.get_mut("metadata").and_then(Value::as_object_mut) {
                for k in [
                    "resourceVersion",
                    "uid",
                    "managedFields",
                    "creationTimestamp",
                    "generation",
                ] {
                    md.remove(k);
                }
            }
            c
        };
        match current {
            None if sub == Some("status") => Err(ApiError::not_found(&rt.plural, &rt.group, name)),
            None => {
                let base = json!({"metadata": {"name": name}});
                let obj = apply::apply(&base, &config, rt.schema.as_ref(), &w, force)
                    .map_err(|c| conflict_error(rt, name, &c))?;
                self.create(rt, ns, obj, ctx)
            }
            Some(live) => {
                let live = present(rt, &live);
                let mut obj = apply::apply(&live, &config, rt.schema.as_ref(), &w, force)
                    .map_err(|c| conflict_error(rt, name, &c))?;
                // SSA carries no precondition unless the configuration sets one.
                let rv = meta_str(body, "resourceVersion").map(str::to_string);
                match rv {
                    Some(rv) => metadata_mut(&mut obj).insert("resourceVersion".into(), json!(rv)),
                    None => metadata_mut(&mut obj).remove("resourceVersion"),
                };
                let applied = Some(config);
                self.replace(rt, ns, name, obj, sub, ctx, applied)
            }
        }
    }

    /// DELETE: graceful when finalizers remain, otherwise immediate; then dependents per policy.
    pub fn delete(
        &mut self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOpts,
    ) -> ApiResult<Value> {
        let ns_key = if rt.namespaced {
            ns.unwrap_or_default()
        } else {
            ""
        }
        .to_string();
        let Some(old) = self.lookup(rt, &ns_key, name).cloned() else {
            return Err(ApiError::not_found(&rt.plural, &rt.group, name));
        };
        let uid = meta_str(&old, "uid").unwrap_or_default().to_string();
        if opts.precondition_uid.as_deref().is_some_and(|u| u != uid) {
            return Err(ApiError::conflict(
                &rt.plural,
                &rt.group,
                name,
                "Precondition failed: UID in precondition does not match the UID in record",
            ));
        }
        if opts
            .precondition_rv
            .as_deref()
            .is_some_and(|r| Some(r) != meta_str(&old, "resourceVersion"))
        {
            return Err(ApiError::conflict(
                &rt.plural,
                &rt.group,
                name,
                "Precondition failed: ResourceVersion in precondition does not match the ResourceVersion in record",
            ));
        }
        if opts.dry_run {
            return Ok(present(rt, &old));
        }
        match opts.propagation.as_deref() {
            Some("Orphan") => self.orphan_dependents(&uid),
            Some("Foreground") => self.delete_dependents(&uid),
            _ => {}
        }
        if rt.kind == "Namespace" && rt.group.is_empty() {
            self.delete_namespace_content(name);
            if !self.namespace_is_empty(name) {
                // Terminating until what is left (held by finalizers) is gone.
                let current = self.namespace_object(name).cloned().unwrap_or(old);
                if meta_str(&current, "deletionTimestamp").is_some() {
                    return Ok(present(rt, &current));
                }
                let mut new = current;
                metadata_mut(&mut new).insert("deletionTimestamp".into(), json!(now()));
                new["status"] = json!({"phase": "Terminating"});
                return self.store(rt, "", name, new, "MODIFIED");
            }
        }
        if rt.kind == "CustomResourceDefinition" && rt.crd.is_none() {
            self.delete_crd_content(&old);
        }
        let result = if finalizers(&old).is_empty() {
            self.remove(rt, &ns_key, name, old)?
        } else if meta_str(&old, "deletionTimestamp").is_some() {
            present(rt, &old)
        } else {
            let mut new = old;
            let md = metadata_mut(&mut new);
            md.insert("deletionTimestamp".into(), json!(now()));
            md.insert("deletionGracePeriodSeconds".into(), json!(0));
            self.store(rt, &ns_key, name, new, "MODIFIED")?
        };
        Ok(result)
    }

    /// Removes an object for good, emits DELETED, then collects orphaned dependents.
    fn remove(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        mut obj: Value,
    ) -> ApiResult<Value> {
        if let Some(b) = self.objects.get_mut(&rt.storage_key()) {
            b.remove(&(ns.to_string(), name.to_string()));
        }
        let rv = self.next_rv();
        metadata_mut(&mut obj).insert("resourceVersion".into(), json!(rv.to_string()));
        self.record(
            rt.storage_key(),
            ns.to_string(),
            "DELETED",
            obj.clone(),
            None,
        );
        if rt.crd.is_none() && rt.kind == "CustomResourceDefinition" {
            self.refresh_custom_types();
        }
        self.collect_garbage();
        if rt.namespaced && !ns.is_empty() {
            self.finish_namespace(ns);
        }
        Ok(present(rt, &obj))
    }

    fn all_refs(&self) -> Vec<(ResourceType, String, String, Value)> {
        let mut out = Vec::new();
        for (key, bucket) in &self.objects {
            let Some(rt) = self.types.iter().find(|t| t.storage_key() == *key).cloned() else {
                continue;
            };
            for ((ns, name), obj) in bucket {
                out.push((rt.clone(), ns.clone(), name.clone(), obj.clone()));
            }
        }
        out
    }

    fn owner_uids(obj: &Value) -> Vec<String> {
        obj.pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .map(|refs| {
                refs.iter()
                    .filter_map(|r| r.get("uid")?.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Background GC: deletes objects all of whose owners are gone.
    fn collect_garbage(&mut self) {
        let all = self.all_refs();
        let live: std::collections::HashSet<String> = all
            .iter()
            .filter_map(|(_, _, _, o)| meta_str(o, "uid").map(str::to_string))
            .collect();
        for (rt, ns, name, obj) in all {
            let owners = Self::owner_uids(&obj);
            if owners.is_empty()
                || owners.iter().any(|u| live.contains(u))
                || meta_str(&obj, "deletionTimestamp").is_some()
            {
                continue;
            }
            let ns = (!ns.is_empty()).then_some(ns);
            // Already gone (collected by a nested sweep) is fine.
            let _ = self.delete(&rt, ns.as_deref(), &name, &DeleteOpts::default());
        }
    }

    fn dependents_of(&self, uid: &str) -> Vec<(ResourceType, String, String, Value)> {
        self.all_refs()
            .into_iter()
            .filter(|(_, _, _, o)| Self::owner_uids(o).iter().any(|u| u == uid))
            .collect()
    }

    fn delete_dependents(&mut self, uid: &str) {
        for (rt, ns, name, _) in self.dependents_of(uid) {
            let ns = (!ns.is_empty()).then_some(ns);
            let opts = DeleteOpts {
                propagation: Some("Foreground".into()),
                ..Default::default()
            };
            let _ = self.delete(&rt, ns.as_deref(), &name, &opts);
        }
    }

    fn orphan_dependents(&mut self, uid: &str) {
        for (rt, ns, name, mut obj) in self.dependents_of(uid) {
            if let Some(refs) = obj
                .pointer_mut("/metadata/ownerReferences")
                .and_then(Value::as_array_mut)
            {
                refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(uid));
            }
            let ns = (!ns.is_empty()).then_some(ns);
            let _ = self.update(
                &rt,
                ns.as_deref(),
                &name,
                present(&rt, &obj),
                None,
                &WriteCtx::system(),
            );
        }
    }

    fn delete_namespace_content(&mut self, ns: &str) {
        for (rt, ons, name, _) in self.all_refs() {
            if rt.namespaced && ons == ns {
                let _ = self.delete(&rt, Some(ns), &name, &DeleteOpts::default());
            }
        }
    }

    fn delete_crd_content(&mut self, crd: &Value) {
        let Some(name) = meta_str(crd, "name") else {
            return;
        };
        let Some(rt) = self
            .types
            .iter()
            .find(|t| t.crd.as_deref() == Some(name))
            .cloned()
        else {
            return;
        };
        let keys: Vec<(String, String)> = self
            .bucket(&rt)
            .map(|b| b.keys().cloned().collect())
            .unwrap_or_default();
        for (ns, n) in keys {
            let ns = (!ns.is_empty()).then_some(ns);
            // CRD deletion removes instances outright, finalizers included.
            if let Some(obj) = self.lookup(&rt, ns.as_deref().unwrap_or(""), &n).cloned() {
                let _ = self.remove(&rt, ns.as_deref().unwrap_or(""), &n, obj);
            }
        }
    }
}

fn writer<'a>(rt: &ResourceType, ctx: &'a WriteCtx, sub: &'a str, time: &'a str) -> Writer<'a> {
    Writer {
        manager: &ctx.manager,
        api_version: rt.api_version(),
        subresource: sub,
        time,
    }
}

fn strict_error(rt: &ResourceType, unknown: &[String]) -> ApiError {
    let listed: Vec<String> = unknown
        .iter()
        .map(|f| format!("unknown field \"{f}\""))
        .collect();
    ApiError::bad_request(format!(
        "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
        rt.kind,
        rt.version,
        rt.kind,
        listed.join(", ")
    ))
}

fn conflict_error(rt: &ResourceType, name: &str, conflicts: &[apply::Conflict]) -> ApiError {
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|c| json!({"reason": "FieldManagerConflict", "message": format!("conflict with \"{}\"", c.manager), "field": c.field}))
        .collect();
    let listed: Vec<String> = conflicts
        .iter()
        .map(|c| format!("conflict with \"{}\": {}", c.manager, c.field))
        .collect();
    let mut e = ApiError::new(
        409,
        "Conflict",
        format!(
            "Apply failed with {} conflict{}: {}",
            conflicts.len(),
            if conflicts.len() == 1 { "" } else { "s" },
            listed.join("; ")
        ),
    );
    e.details = Some(json!({"name": name, "group": rt.group, "kind": rt.plural, "causes": causes}));
    e
}

fn set_crd_status(crd: &mut Value) {
    let names = crd.pointer("/spec/names").cloned().unwrap_or_default();
    let stamp = now();
    let cond = |t: &str, reason: &str, msg: &str| json!({"type": t, "status": "True", "lastTransitionTime": stamp, "reason": reason, "message": msg});
    let stored: Vec<Value> = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .map(|vs| {
            vs.iter()
                .filter(|v| v.get("storage") == Some(&json!(true)))
                .filter_map(|v| v.get("name").cloned())
                .collect()
        })
        .unwrap_or_default();
    crd["status"] = json!({
        "acceptedNames": names,
        "conditions": [
            cond("NamesAccepted", "NoConflicts", "no conflicts found"),
            cond("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ],
        "storedVersions": stored,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> WriteCtx {
        WriteCtx::manager("test")
    }

    fn crd() -> Value {
        json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced",
                "names": {"kind": "Widget", "plural": "widgets"},
                "versions": [{"name": "v1", "served": true, "storage": true, "subresources": {"status": {}},
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                        "spec": {"type": "object", "properties": {"size": {"type": "integer"}}},
                        "status": {"type": "object", "properties": {"ok": {"type": "boolean"}}}}}}}]}})
    }

    fn setup() -> (State, ResourceType) {
        let mut s = State::new(100);
        let crd_t = s
            .find_type("apiextensions.k8s.io", "v1", "customresourcedefinitions")
            .unwrap();
        s.create(&crd_t, None, crd(), &ctx()).unwrap();
        let w = s.find_type("example.com", "v1", "widgets").unwrap();
        (s, w)
    }

    #[test]
    fn generation_moves_on_spec_change_only() {
        let (mut s, w) = setup();
        let o = s
            .create(
                &w,
                Some("default"),
                json!({"metadata": {"name": "a"}, "spec": {"size": 1}, "status": {"ok": true}}),
                &ctx(),
            )
            .unwrap();
        assert_eq!(o["metadata"]["generation"], 1);
        assert!(
            o.get("status").is_none(),
            "status is dropped on create with a status subresource"
        );
        let st = s
            .patch(
                &w,
                Some("default"),
                "a",
                PatchType::Merge,
                &json!({"status": {"ok": true}}),
                Some("status"),
                &ctx(),
            )
            .unwrap();
        assert_eq!(st["metadata"]["generation"], 1);
        assert_eq!(st["status"]["ok"], true);
        let lab = s
            .patch(
                &w,
                Some("default"),
                "a",
                PatchType::Merge,
                &json!({"metadata": {"labels": {"x": "y"}}}),
                None,
                &ctx(),
            )
            .unwrap();
        assert_eq!(lab["metadata"]["generation"], 1);
        let sp = s
            .patch(
                &w,
                Some("default"),
                "a",
                PatchType::Merge,
                &json!({"spec": {"size": 2}, "status": {"ok": false}}),
                None,
                &ctx(),
            )
            .unwrap();
        assert_eq!(sp["metadata"]["generation"], 2);
        assert_eq!(sp["status"]["ok"], true, "main resource ignores status");
    }

    #[test]
    fn stale_resource_version_conflicts_and_noop_keeps_version() {
        let (mut s, w) = setup();
        let o = s
            .create(
                &w,
                Some("default"),
                json!({"metadata": {"name": "a"}, "spec": {"size": 1}}),
                &ctx(),
            )
            .unwrap();
        let same = s
            .update(&w, Some("default"), "a", o.clone(), None, &ctx())
            .unwrap();
        assert_eq!(
            same["metadata"]["resourceVersion"],
            o["metadata"]["resourceVersion"]
        );
        let mut changed = o.clone();
        changed["spec"]["size"] = json!(5);
        s.update(&w, Some("default"), "a", changed.clone(), None, &ctx())
            .unwrap();
        let err = s
            .update(&w, Some("default"), "a", changed, None, &ctx())
            .unwrap_err();
        assert_eq!(err.code, 409);
        assert_eq!(err.reason, "Conflict");
        let err = s
            .create(&w, Some("default"), o.clone(), &ctx())
            .unwrap_err();
        assert_eq!(err.reason, "AlreadyExists");
        let mut unconditional = o;
        unconditional["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("resourceVersion");
        let err = s
            .update(&w, Some("default"), "a", unconditional, None, &ctx())
            .unwrap_err();
        assert_eq!((err.code, err.reason), (422, "Invalid"));
    }

    #[test]
    fn finalizers_hold_deletion_and_owner_gc_collects_dependents() {
        let (mut s, w) = setup();
        let o = s
            .create(
                &w,
                Some("default"),
                json!({"metadata": {"name": "a", "finalizers": ["x/y"]}}),
                &ctx(),
            )
            .unwrap();
        let uid = o["metadata"]["uid"].as_str().unwrap().to_string();
        let cm = s.find_type("", "v1", "configmaps").unwrap();
        s.create(&cm, Some("default"), json!({"metadata": {"name": "dep", "ownerReferences": [{"apiVersion": "example.com/v1", "kind": "Widget", "name": "a", "uid": uid}]}}), &ctx()).unwrap();
        let d = s
            .delete(&w, Some("default"), "a", &DeleteOpts::default())
            .unwrap();
        assert!(d["metadata"]["deletionTimestamp"].is_string());
        let err = s
            .patch(
                &w,
                Some("default"),
                "a",
                PatchType::Merge,
                &json!({"metadata": {"finalizers": ["x/y", "new"]}}),
                None,
                &ctx(),
            )
            .unwrap_err();
        assert_eq!(err.code, 422);
        assert!(s.get(&cm, Some("default"), "dep").is_ok());
        s.patch(
            &w,
            Some("default"),
            "a",
            PatchType::Merge,
            &json!({"metadata": {"finalizers": null}}),
            None,
            &ctx(),
        )
        .unwrap();
        assert_eq!(s.get(&w, Some("default"), "a").unwrap_err().code, 404);
        assert_eq!(s.get(&cm, Some("default"), "dep").unwrap_err().code, 404);
    }

    #[test]
    fn server_side_apply_creates_then_updates_status() {
        let (mut s, w) = setup();
        let cfg = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "a"}, "spec": {"size": 3}});
        let o = s
            .patch(
                &w,
                Some("default"),
                "a",
                PatchType::Apply { force: false },
                &cfg,
                None,
                &ctx(),
            )
            .unwrap();
        assert_eq!(o["spec"]["size"], 3);
        assert_eq!(o["metadata"]["managedFields"][0]["manager"], "test");
        let st = json!({"apiVersion": "example.com/v1", "kind": "Widget", "status": {"ok": true}});
        let ctl = WriteCtx::manager("ctl");
        let o = s
            .patch(
                &w,
                Some("default"),
                "a",
                PatchType::Apply { force: true },
                &st,
                Some("status"),
                &ctl,
            )
            .unwrap();
        assert_eq!(o["status"]["ok"], true);
        assert_eq!(o["spec"]["size"], 3);
        assert_eq!(o["metadata"]["generation"], 1);
    }

    #[test]
    fn secret_string_data_folds_into_data() {
        let mut s = State::new(10);
        let st = s.find_type("", "v1", "secrets").unwrap();
        let o = s
            .create(
                &st,
                Some("default"),
                json!({"metadata": {"name": "s"}, "stringData": {"k": "v"}, "data": {"a": "Yg=="}}),
                &ctx(),
            )
            .unwrap();
        assert_eq!(o["data"], json!({"a": "Yg==", "k": "dg=="}));
        assert!(o.get("stringData").is_none());
        assert_eq!(o["type"], "Opaque");
        let nst = s.find_type("", "v1", "namespaces").unwrap();
        let ns = s.get(&nst, None, "default").unwrap();
        assert_eq!(
            ns["metadata"]["labels"]["kubernetes.io/metadata.name"],
            "default"
        );
    }

    #[test]
    fn empty_metadata_maps_and_lists_are_dropped() {
        let mut s = State::new(10);
        let cm = s.find_type("", "v1", "configmaps").unwrap();
        let o = s
            .create(&cm, Some("default"), json!({"metadata": {"name": "c", "labels": {}, "annotations": null, "finalizers": []}}), &ctx())
            .unwrap();
        let md = o["metadata"].as_object().unwrap();
        assert!(
            !md.contains_key("labels")
                && !md.contains_key("annotations")
                && !md.contains_key("finalizers"),
            "{md:?}"
        );
    }

    #[test]
    fn namespace_terminates_until_finalized_content_is_gone() {
        let (mut s, w) = setup();
        let nst = s.find_type("", "v1", "namespaces").unwrap();
        s.create(&nst, None, json!({"metadata": {"name": "team"}}), &ctx())
            .unwrap();
        s.create(
            &w,
            Some("team"),
            json!({"metadata": {"name": "held", "finalizers": ["x/y"]}}),
            &ctx(),
        )
        .unwrap();
        s.create(
            &w,
            Some("team"),
            json!({"metadata": {"name": "free"}}),
            &ctx(),
        )
        .unwrap();
        let ns = s
            .delete(&nst, None, "team", &DeleteOpts::default())
            .unwrap();
        assert_eq!(ns["status"]["phase"], "Terminating");
        assert_eq!(s.get(&w, Some("team"), "free").unwrap_err().code, 404);
        let err = s
            .create(
                &w,
                Some("team"),
                json!({"metadata": {"name": "new"}}),
                &ctx(),
            )
            .unwrap_err();
        assert_eq!(err.code, 403);
        s.patch(
            &w,
            Some("team"),
            "held",
            PatchType::Merge,
            &json!({"metadata": {"finalizers": null}}),
            None,
            &ctx(),
        )
        .unwrap();
        assert_eq!(s.get(&nst, None, "team").unwrap_err().code, 404);
    }

    #[test]
    fn deleting_a_crd_stops_serving_it() {
        let (mut s, w) = setup();
        s.create(
            &w,
            Some("default"),
            json!({"metadata": {"name": "a"}}),
            &ctx(),
        )
        .unwrap();
        let crd_t = s
            .find_type("apiextensions.k8s.io", "v1", "customresourcedefinitions")
            .unwrap();
        s.delete(&crd_t, None, "widgets.example.com", &DeleteOpts::default())
            .unwrap();
        assert!(s.find_type("example.com", "v1", "widgets").is_none());
        assert!(s.bucket(&w).is_none_or(|b| b.is_empty()));
    }
}
