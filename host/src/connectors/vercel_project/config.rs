//! The `vercel-project` destination's config, as the engine sends it, and the
//! settings a call needs from it (checked).

use serde::Deserialize;

use crate::connectors::SyncError;
use crate::connectors::fields::{self, Secret};

/// The deployment environments a variable can target, in Vercel's order.
pub const TARGETS: [&str; 3] = ["production", "preview", "development"];

/// The destination's connection details.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default, deserialize_with = "fields::secret")]
    pub access_token: Option<Secret>,
    #[serde(default, deserialize_with = "fields::text")]
    pub project_id: Option<String>,
    #[serde(default, deserialize_with = "fields::text")]
    pub team_id: Option<String>,
    #[serde(default, deserialize_with = "fields::list")]
    pub deployment_environments: Vec<String>,
}

/// What a call needs from the config, checked.
pub struct Settings<'a> {
    pub token: &'a Secret,
    pub project_id: &'a str,
    pub team_id: Option<&'a str>,
    /// In Vercel's order, without duplicates.
    pub targets: Vec<&'static str>,
}

impl Config {
    pub fn settings(&self) -> Result<Settings<'_>, SyncError> {
        let token = self.access_token.as_ref().ok_or_else(|| {
            SyncError::ClientSide("access_token is required for vercel-project".to_string())
        })?;
        let project_id = self.project_id.as_deref().ok_or_else(|| {
            SyncError::ClientSide("project_id is required for vercel-project".to_string())
        })?;
        let raw = &self.deployment_environments;
        if let Some(env) = raw.iter().find(|e| !TARGETS.contains(&e.as_str())) {
            return Err(SyncError::ClientSide(format!(
                "deployment_environments: {env:?} is not one of production, preview, development"
            )));
        }
        let targets: Vec<&'static str> = TARGETS
            .into_iter()
            .filter(|target| raw.iter().any(|e| e == target))
            .collect();
        if targets.is_empty() {
            return Err(SyncError::ClientSide(
                "deployment_environments must name at least one of production, preview, development".to_string(),
            ));
        }
        Ok(Settings {
            token,
            project_id,
            team_id: self.team_id.as_deref(),
            targets,
        })
    }
}
