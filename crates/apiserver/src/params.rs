//! Query parameters of Kubernetes requests, parsed leniently (kube-rs sends `?&limit=500`).

use skiff_api::ApiError;

/// The query parameters Skiff reads; unknown ones are ignored as upstream ignores them.
#[derive(Clone, Debug, Default)]
pub struct Params {
    pub watch: bool,
    pub resource_version: Option<String>,
    pub resource_version_match: Option<String>,
    pub timeout_seconds: Option<u64>,
    pub allow_watch_bookmarks: bool,
    pub send_initial_events: bool,
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
    pub dry_run: bool,
    pub field_manager: Option<String>,
    /// `force` of a server-side apply.
    pub force: Option<bool>,
    pub field_validation: Option<String>,
    pub include_object: Option<String>,
    pub propagation_policy: Option<String>,
    pub grace_period_seconds: Option<i64>,
    pub pretty: bool,
}

fn parse_bool(key: &str, v: &str) -> Result<bool, ApiError> {
    match v {
        "true" | "1" | "" | "True" => Ok(true),
        "false" | "0" | "False" => Ok(false),
        other => Err(ApiError::bad_request(format!("invalid value {other:?} for query parameter {key}: must be true or false"))),
    }
}

fn parse_num<T: std::str::FromStr>(key: &str, v: &str) -> Result<T, ApiError> {
    v.parse().map_err(|_| ApiError::bad_request(format!("invalid value {v:?} for query parameter {key}: must be a number")))
}

impl Params {
    pub fn parse(query: Option<&str>) -> Result<Params, ApiError> {
        let mut p = Params::default();
        let Some(q) = query else { return Ok(p) };
        for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
            let v = v.as_ref();
            match k.as_ref() {
                "watch" => p.watch = parse_bool("watch", v)?,
                "resourceVersion" => p.resource_version = Some(v.to_string()),
                "resourceVersionMatch" => p.resource_version_match = Some(v.to_string()),
                "timeoutSeconds" => p.timeout_seconds = Some(parse_num("timeoutSeconds", v)?),
                "allowWatchBookmarks" => p.allow_watch_bookmarks = parse_bool("allowWatchBookmarks", v)?,
                "sendInitialEvents" => p.send_initial_events = parse_bool("sendInitialEvents", v)?,
                "labelSelector" => p.label_selector = Some(v.to_string()).filter(|s| !s.is_empty()),
                "fieldSelector" => p.field_selector = Some(v.to_string()).filter(|s| !s.is_empty()),
                "limit" => p.limit = Some(parse_num("limit", v)?),
                "continue" => p.continue_token = Some(v.to_string()).filter(|s| !s.is_empty()),
                "dryRun" => {
                    if v == "All" {
                        p.dry_run = true;
                    } else if !v.is_empty() {
                        return Err(ApiError::bad_request(format!("unsupported dryRun value {v:?}: only \"All\" is supported")));
                    }
                }
                "fieldManager" => p.field_manager = Some(v.to_string()),
                "force" => p.force = Some(parse_bool("force", v)?),
                "fieldValidation" => match v {
                    "Strict" | "Warn" | "Ignore" | "" => p.field_validation = Some(v.to_string()).filter(|s| !s.is_empty()),
                    other => {
                        return Err(ApiError::bad_request(format!(
                            "fieldValidation must be one of Strict, Warn or Ignore, got {other:?}"
                        )));
                    }
                },
                "includeObject" => p.include_object = Some(v.to_string()),
                "propagationPolicy" => p.propagation_policy = Some(v.to_string()),
                "gracePeriodSeconds" => p.grace_period_seconds = Some(parse_num("gracePeriodSeconds", v)?),
                "pretty" => p.pretty = parse_bool("pretty", v).unwrap_or(false),
                _ => {}
            }
        }
        Ok(p)
    }

    /// The field validation directive, `Warn` when the client did not say (upstream's default).
    pub fn validation(&self) -> &str {
        self.field_validation.as_deref().unwrap_or("Warn")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_kube_rs_empty_pairs() {
        let p = Params::parse(Some("&watch=true&timeoutSeconds=290&allowWatchBookmarks=true&resourceVersion=12")).unwrap();
        assert!(p.watch && p.allow_watch_bookmarks);
        assert_eq!(p.timeout_seconds, Some(290));
        assert_eq!(p.resource_version.as_deref(), Some("12"));
    }

    #[test]
    fn rejects_bad_values_with_the_parameter_name() {
        let e = Params::parse(Some("limit=abc")).unwrap_err();
        assert!(e.message.contains("limit"));
        let e = Params::parse(Some("fieldValidation=Loose")).unwrap_err();
        assert_eq!(e.code, 400);
        assert!(Params::parse(Some("dryRun=All")).unwrap().dry_run);
    }
}
