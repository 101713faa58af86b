//! Go `%#v` renderings of the values upstream puts in some messages (`map[string]string{"app":"x"}`,
//! `intstr.IntOrString{...}`, `&v1.LabelSelector{...}`), so those messages read exactly as kubectl shows them.

use serde_json::Value;

/// Go's `%q` for ordinary strings.
pub fn quote(s: &str) -> String {
    format!("{s:?}")
}

fn str_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// `map[string]string{"a":"b", "c":"d"}` (keys sorted), or `map[string]string(nil)` when absent.
pub fn str_map(v: Option<&Value>) -> String {
    match v.and_then(Value::as_object) {
        None => "map[string]string(nil)".into(),
        Some(m) => {
            let mut pairs: Vec<(&String, String)> = m.iter().map(|(k, v)| (k, str_of(v))).collect();
            pairs.sort();
            let inner: Vec<String> = pairs.iter().map(|(k, v)| format!("{}:{}", quote(k), quote(v))).collect();
            format!("map[string]string{{{}}}", inner.join(", "))
        }
    }
}

/// `[]string{"a", "b"}`, or `[]string(nil)` when absent.
pub fn str_slice(v: Option<&Value>) -> String {
    match v.and_then(Value::as_array) {
        None => "[]string(nil)".into(),
        Some(items) => {
            let inner: Vec<String> = items.iter().map(|i| quote(&str_of(i))).collect();
            format!("[]string{{{}}}", inner.join(", "))
        }
    }
}

/// `intstr.IntOrString{Type:0, IntVal:1, StrVal:""}` (an absent value renders as the zero value).
pub fn int_or_string(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => format!("intstr.IntOrString{{Type:1, IntVal:0, StrVal:{}}}", quote(s)),
        Some(Value::Number(n)) => format!("intstr.IntOrString{{Type:0, IntVal:{n}, StrVal:\"\"}}"),
        _ => "intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}".into(),
    }
}

/// `&v1.LabelSelector{MatchLabels:..., MatchExpressions:...}`, or `(*v1.LabelSelector)(nil)`.
pub fn label_selector(v: Option<&Value>) -> String {
    let Some(sel) = v.filter(|v| v.is_object()) else { return "(*v1.LabelSelector)(nil)".into() };
    let exprs = match sel.get("matchExpressions").and_then(Value::as_array) {
        None => "[]v1.LabelSelectorRequirement(nil)".to_string(),
        Some(list) => {
            let inner: Vec<String> = list
                .iter()
                .map(|e| {
                    format!(
                        "v1.LabelSelectorRequirement{{Key:{}, Operator:{}, Values:{}}}",
                        quote(e.get("key").and_then(Value::as_str).unwrap_or("")),
                        quote(e.get("operator").and_then(Value::as_str).unwrap_or("")),
                        str_slice(e.get("values"))
                    )
                })
                .collect();
            format!("[]v1.LabelSelectorRequirement{{{}}}", inner.join(", "))
        }
    };
    format!("&v1.LabelSelector{{MatchLabels:{}, MatchExpressions:{exprs}}}", str_map(sel.get("matchLabels")))
}

/// The Go struct of a `roleRef`: `rbac.RoleRef{APIGroup:"...", Kind:"...", Name:"..."}`.
pub fn role_ref(v: Option<&Value>) -> String {
    let f = |k: &str| quote(v.and_then(|r| r.get(k)).and_then(Value::as_str).unwrap_or(""));
    format!("rbac.RoleRef{{APIGroup:{}, Kind:{}, Name:{}}}", f("apiGroup"), f("kind"), f("name"))
}

/// The (protocol, port) key upstream reports for duplicate Service ports.
pub fn service_port_key(protocol: &str, port: i64) -> String {
    format!(
        "core.ServicePort{{Name:\"\", Protocol:{}, AppProtocol:(*string)(nil), Port:{port}, TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:\"\"}}, NodePort:0}}",
        quote(protocol)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_like_go() {
        assert_eq!(str_map(Some(&json!({"tier": "y", "app": "x"}))), r#"map[string]string{"app":"x", "tier":"y"}"#);
        assert_eq!(str_map(None), "map[string]string(nil)");
        assert_eq!(str_slice(Some(&json!(["a", "b"]))), r#"[]string{"a", "b"}"#);
        assert_eq!(int_or_string(Some(&json!(0))), r#"intstr.IntOrString{Type:0, IntVal:0, StrVal:""}"#);
        assert_eq!(int_or_string(Some(&json!("25%"))), r#"intstr.IntOrString{Type:1, IntVal:0, StrVal:"25%"}"#);
        assert_eq!(
            label_selector(Some(&json!({"matchLabels": {"app": "y"}}))),
            r#"&v1.LabelSelector{MatchLabels:map[string]string{"app":"y"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}"#
        );
        assert_eq!(
            role_ref(Some(&json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"}))),
            r#"rbac.RoleRef{APIGroup:"rbac.authorization.k8s.io", Kind:"Role", Name:"r"}"#
        );
    }
}
