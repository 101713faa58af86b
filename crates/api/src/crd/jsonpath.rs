//! The JSONPath subset CRDs use in `additionalPrinterColumns` and the scale subresource's paths:
//! `.spec.replicas`, `.metadata.labels.app`, `.spec.items[0].name`, `.items[*].name`, `['a.b']` and
//! filters such as `.status.conditions[?(@.type=="Ready")].status`.

use serde_json::Value;

#[derive(Clone, Debug, PartialEq)]
enum Step {
    Field(String),
    Index(usize),
    All,
    /// `[?(@.a.b=="x")]`: elements whose path equals the literal.
    Filter(Vec<String>, Value),
}

/// A parse error, naming what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid JSONPath {path:?}: {why}")]
pub struct ParseError {
    pub path: String,
    pub why: String,
}

fn parse(path: &str) -> Result<Vec<Step>, ParseError> {
    let err = |why: &str| ParseError { path: path.to_string(), why: why.to_string() };
    let p = path.trim();
    let p = p.strip_prefix('{').and_then(|p| p.strip_suffix('}')).unwrap_or(p);
    let p = p.strip_prefix('$').unwrap_or(p);
    let chars: Vec<char> = p.chars().collect();
    let mut steps = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '.' => {
                let start = i + 1;
                let mut j = start;
                while j < chars.len() && chars[j] != '.' && chars[j] != '[' {
                    j += 1;
                }
                if j == start {
                    return Err(err("empty field name"));
                }
                steps.push(Step::Field(chars[start..j].iter().collect()));
                i = j;
            }
            '[' => {
                let close = chars[i..].iter().position(|c| *c == ']').ok_or_else(|| err("unclosed ["))? + i;
                let inner: String = chars[i + 1..close].iter().collect();
                let inner = inner.trim();
                if inner == "*" {
                    steps.push(Step::All);
                } else if let Some(f) = inner.strip_prefix("?(").and_then(|f| f.strip_suffix(')')) {
                    let (lhs, rhs) = f.split_once("==").ok_or_else(|| err("only == filters are supported"))?;
                    let lhs = lhs.trim().strip_prefix("@.").ok_or_else(|| err("a filter must start with @."))?;
                    let rhs = rhs.trim();
                    let lit = if let Some(s) = rhs.strip_prefix('"').and_then(|s| s.strip_suffix('"'))
                        .or_else(|| rhs.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')))
                    {
                        Value::String(s.to_string())
                    } else {
                        serde_json::from_str(rhs).map_err(|_| err("a filter compares with a string or number literal"))?
                    };
                    steps.push(Step::Filter(lhs.split('.').map(str::to_string).collect(), lit));
                } else if let Some(s) = inner.strip_prefix('\'').and_then(|s| s.strip_suffix('\''))
                    .or_else(|| inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')))
                {
                    steps.push(Step::Field(s.to_string()));
                } else {
                    steps.push(Step::Index(inner.parse().map_err(|_| err("an index must be a number, *, a quoted name or a filter"))?));
                }
                i = close + 1;
            }
            _ => return Err(err("a path starts with . or [")),
        }
    }
    Ok(steps)
}

/// Checks that a path parses.
pub fn check(path: &str) -> Result<(), ParseError> {
    parse(path).map(|_| ())
}

/// Every value `path` reaches in `obj` (none when it does not parse).
pub fn find<'a>(obj: &'a Value, path: &str) -> Vec<&'a Value> {
    let Ok(steps) = parse(path) else { return Vec::new() };
    let mut current = vec![obj];
    for step in &steps {
        let mut next = Vec::new();
        for v in current {
            match step {
                Step::Field(f) => next.extend(v.get(f.as_str())),
                Step::Index(i) => next.extend(v.get(*i)),
                Step::All => match v {
                    Value::Array(a) => next.extend(a.iter()),
                    Value::Object(m) => next.extend(m.values()),
                    _ => {}
                },
                Step::Filter(lhs, lit) => {
                    if let Value::Array(a) = v {
                        next.extend(a.iter().filter(|e| {
                            lhs.iter().try_fold(*e, |cur, k| cur.get(k.as_str())) == Some(lit)
                        }));
                    }
                }
            }
        }
        current = next;
    }
    current
}

/// The one value a path names (the first when there are several).
pub fn get<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    find(obj, path).into_iter().next()
}

/// Sets the value at a simple field path (`.spec.replicas`), creating objects on the way.
pub fn set(obj: &mut Value, path: &str, value: Value) -> Result<(), ParseError> {
    let steps = parse(path)?;
    let mut cur = obj;
    for (i, step) in steps.iter().enumerate() {
        let Step::Field(f) = step else {
            return Err(ParseError { path: path.to_string(), why: "only field names can be set".into() });
        };
        if !cur.is_object() {
            *cur = Value::Object(Default::default());
        }
        if i == steps.len() - 1 {
            cur[f.as_str()] = value;
            return Ok(());
        }
        cur = &mut cur[f.as_str()];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn paths_and_filters() {
        let o = json!({"spec": {"replicas": 3, "items": [{"name": "a"}, {"name": "b"}]},
            "metadata": {"labels": {"app.kubernetes.io/name": "x"}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "Other", "status": "False"}]}});
        assert_eq!(get(&o, ".spec.replicas"), Some(&json!(3)));
        assert_eq!(get(&o, "{.spec.items[1].name}"), Some(&json!("b")));
        assert_eq!(find(&o, ".spec.items[*].name").len(), 2);
        assert_eq!(get(&o, ".metadata.labels['app.kubernetes.io/name']"), Some(&json!("x")));
        assert_eq!(get(&o, r#".status.conditions[?(@.type=="Ready")].status"#), Some(&json!("True")));
        assert_eq!(get(&o, ".spec.missing"), None);
        assert!(check("spec").is_err() && check(".a[").is_err());
    }

    #[test]
    fn set_creates_the_path() {
        let mut o = json!({});
        set(&mut o, ".spec.replicas", json!(5)).unwrap();
        assert_eq!(o, json!({"spec": {"replicas": 5}}));
    }
}
