//! Who is calling: the `UserInfo` request extension, filled from the TLS client certificate by the
//! listener or set by in-process callers, and the rule for which paths anonymous callers may read.

use serde_json::{json, Value};

/// An authenticated caller, as Kubernetes' `user.Info`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserInfo {
    pub username: String,
    pub groups: Vec<String>,
}

impl UserInfo {
    pub fn new(username: impl Into<String>, groups: &[&str]) -> Self {
        let mut groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        if !groups.iter().any(|g| g == "system:authenticated") {
            groups.push("system:authenticated".into());
        }
        UserInfo { username: username.into(), groups }
    }

    /// The `userInfo` object of a SelfSubjectReview.
    pub fn to_json(&self) -> Value {
        json!({"username": self.username, "groups": self.groups})
    }
}

/// Paths anonymous callers may read, as upstream's `system:public-info-viewer` role allows.
pub fn is_public(path: &str) -> bool {
    matches!(path, "/healthz" | "/livez" | "/readyz" | "/version" | "/version/")
        || path.starts_with("/healthz/")
        || path.starts_with("/livez/")
        || path.starts_with("/readyz/")
}
