//! Workspace ids and child resource ids.

use super::build::validate_name;
use crate::{Result, error::require_segment};

/// What `Workspaces_Get` returns that the operator reads.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceResource {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    /// The workspace's region, e.g. `westeurope`.
    pub location: String,
}

/// An Azure ML workspace: `/subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.MachineLearningServices/workspaces/{ws}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workspace {
    pub subscription_id: String,
    pub resource_group: String,
    pub name: String,
}

impl Workspace {
    pub fn id(&self) -> Result<String> {
        for (what, v) in [
            ("subscription id", &self.subscription_id),
            ("resource group", &self.resource_group),
            ("workspace", &self.name),
        ] {
            require_segment(what, v)?;
        }
        Ok(format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.MachineLearningServices/workspaces/{}",
            self.subscription_id, self.resource_group, self.name
        ))
    }

    /// `{workspace id}/{child}` where every name in `child` has been validated by the caller.
    pub(super) fn child(&self, child: &str) -> Result<String> {
        Ok(format!("{}/{child}", self.id()?))
    }

    pub fn compute_id(&self, name: &str) -> Result<String> {
        validate_name("compute name", name)?;
        self.child(&format!("computes/{name}"))
    }
    pub fn job_id(&self, name: &str) -> Result<String> {
        validate_name("job name", name)?;
        self.child(&format!("jobs/{name}"))
    }
    pub fn code_version_id(&self, name: &str, version: &str) -> Result<String> {
        validate_name("code name", name)?;
        validate_name("code version", version)?;
        self.child(&format!("codes/{name}/versions/{version}"))
    }
    pub fn environment_version_id(&self, name: &str, version: &str) -> Result<String> {
        validate_name("environment name", name)?;
        validate_name("environment version", version)?;
        self.child(&format!("environments/{name}/versions/{version}"))
    }
    pub fn model_versions_id(&self, name: &str) -> Result<String> {
        validate_name("model name", name)?;
        self.child(&format!("models/{name}/versions"))
    }
    pub fn model_version_id(&self, name: &str, version: &str) -> Result<String> {
        validate_name("model version", version)?;
        Ok(format!("{}/{version}", self.model_versions_id(name)?))
    }
    pub fn datastore_id(&self, name: &str) -> Result<String> {
        validate_name("datastore name", name)?;
        self.child(&format!("datastores/{name}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_ids() {
        let ws = Workspace {
            subscription_id: "s".into(),
            resource_group: "rg".into(),
            name: "ws".into(),
        };
        assert_eq!(
            ws.job_id("j1").unwrap(),
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws/jobs/j1"
        );
        assert!(
            ws.code_version_id("abc", "1")
                .unwrap()
                .ends_with("/codes/abc/versions/1")
        );
        assert!(ws.job_id("../x").is_err());
    }
}
