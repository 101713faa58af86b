//! Label and field selectors as the Kubernetes API server parses and applies them: the `labelSelector=`
//! string syntax (`labels.Parse`), `metav1.LabelSelector` objects, and `fieldSelector=` with the field
//! labels each resource supports upstream.

use std::fmt;

use serde_json::{Map, Value};

use crate::resources::ResourceInfo;

/// Why a selector could not be parsed or applied. The messages follow the API server's, which kubectl
/// prints after `Error from server (BadRequest): `.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// A label selector that does not follow the grammar (`found ',', expected: identifier after ','`).
    #[error("{0}")]
    Syntax(String),
    /// One requirement of a label selector is invalid (bad key, bad value, wrong number of values).
    #[error("unable to parse requirement: {0}")]
    Requirement(String),
    /// A `metav1.LabelSelector` object that is malformed (not an object, unknown operator, bad key...).
    #[error("invalid label selector: {0}")]
    InvalidLabelSelector(String),
    /// A field selector term without `=`, `==` or `!=`.
    #[error("invalid selector: '{selector}'; can't understand '{term}'")]
    FieldTerm { selector: String, term: String },
    /// A field selector value with a backslash not followed by `\`, `,` or `=`.
    #[error("invalid field selector: invalid escape sequence: {0}")]
    InvalidEscape(String),
    /// A field selector value with an unescaped `,` or `=`.
    #[error("invalid field selector: unescaped character in value: {0}")]
    UnescapedRune(char),
    /// A field label the resource does not support (the API answers 400 with this message).
    #[error("field label not supported: {0}")]
    UnsupportedField(String),
}

// ---------------------------------------------------------------------------------------------------
// Label selectors

/// The operator of one label requirement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operator {
    Equals,
    DoubleEquals,
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

/// One requirement of a label selector: a key, an operator and its values (sorted, without duplicates).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    pub values: Vec<String>,
}

impl Requirement {
    /// Builds a requirement, validating the key, the values and their number as `labels.NewRequirement`.
    pub fn new(key: &str, operator: Operator, values: Vec<String>) -> Result<Requirement, String> {
        let mut errors = Vec::new();
        for msg in label_key_errors(key) {
            errors.push(format!("key: Invalid value: {key:?}: {msg}"));
        }
        match operator {
            Operator::In | Operator::NotIn if values.is_empty() => {
                errors.push("values: Invalid value: []: for 'in', 'notin' operators, values set can't be empty".into());
            }
            Operator::Equals | Operator::DoubleEquals | Operator::NotEquals if values.len() != 1 => {
                errors.push(format!(
                    "values: Invalid value: {values:?}: exact-match compatibility requires one single value"
                ));
            }
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                errors.push(format!(
                    "values: Invalid value: {values:?}: values set must be empty for exists and does not exist"
                ));
            }
            Operator::GreaterThan | Operator::LessThan => {
                if values.len() != 1 {
                    errors.push(format!(
                        "values: Invalid value: {values:?}: for 'Gt', 'Lt' operators, exactly one value is required"
                    ));
                }
                for (i, v) in values.iter().enumerate() {
                    if v.parse::<i64>().is_err() {
                        errors.push(format!(
                            "values[{i}]: Invalid value: {v:?}: for 'Gt', 'Lt' operators, the value must be an integer"
                        ));
                    }
                }
            }
            _ => {}
        }
        for (i, v) in values.iter().enumerate() {
            for msg in label_value_errors(v) {
                errors.push(format!("values[{i}][{key}]: Invalid value: {v:?}: {msg}"));
            }
        }
        if !errors.is_empty() {
            return Err(if errors.len() == 1 { errors.remove(0) } else { format!("[{}]", errors.join(", ")) });
        }
        let mut values = values;
        values.sort();
        values.dedup();
        Ok(Requirement { key: key.to_string(), operator, values })
    }

    /// Whether a label set satisfies this requirement.
    pub fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        let value = labels.and_then(|l| l.get(&self.key)).and_then(Value::as_str);
        match self.operator {
            Operator::Equals | Operator::DoubleEquals | Operator::In => {
                value.is_some_and(|v| self.values.iter().any(|x| x == v))
            }
            Operator::NotEquals | Operator::NotIn => value.is_none_or(|v| !self.values.iter().any(|x| x == v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let (Some(have), Some(want)) = (
                    value.and_then(|v| v.parse::<i64>().ok()),
                    self.values.first().and_then(|v| v.parse::<i64>().ok()),
                ) else {
                    return false;
                };
                if self.operator == Operator::GreaterThan { have > want } else { have < want }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let first = self.values.first().map(String::as_str).unwrap_or("");
        match self.operator {
            Operator::Equals => write!(f, "{}={first}", self.key),
            Operator::DoubleEquals => write!(f, "{}=={first}", self.key),
            Operator::NotEquals => write!(f, "{}!={first}", self.key),
            Operator::In => write!(f, "{} in ({})", self.key, self.values.join(",")),
            Operator::NotIn => write!(f, "{} notin ({})", self.key, self.values.join(",")),
            Operator::Exists => write!(f, "{}", self.key),
            Operator::DoesNotExist => write!(f, "!{}", self.key),
            Operator::GreaterThan => write!(f, "{}>{first}", self.key),
            Operator::LessThan => write!(f, "{}<{first}", self.key),
        }
    }
}

/// A label selector: the conjunction of its requirements. An empty selector matches everything; the
/// selector built from a `null` `metav1.LabelSelector` matches nothing (as upstream's `labels.Nothing()`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
    nothing: bool,
}

impl LabelSelector {
    /// The selector matching every object.
    pub fn everything() -> LabelSelector {
        LabelSelector::default()
    }

    /// The selector matching no object.
    pub fn nothing() -> LabelSelector {
        LabelSelector { requirements: Vec::new(), nothing: true }
    }

    /// Parses the string syntax of `?labelSelector=` (`a=b,c!=d,e in (x,y),!f`).
    pub fn parse(s: &str) -> Result<LabelSelector, SelectorError> {
        let tokens = lex(s);
        let mut parser = Parser { tokens, pos: 0 };
        let mut requirements = parser.parse()?;
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector { requirements, nothing: false })
    }

    /// Builds the selector of a `metav1.LabelSelector` object (`matchLabels` and `matchExpressions`), as
    /// `metav1.LabelSelectorAsSelector` does. `null` gives a selector matching nothing; `{}` matches everything.
    pub fn from_json(selector: &Value) -> Result<LabelSelector, SelectorError> {
        let invalid = |m: String| SelectorError::InvalidLabelSelector(m);
        let obj = match selector {
            Value::Null => return Ok(LabelSelector::nothing()),
            Value::Object(obj) => obj,
            other => return Err(invalid(format!("expected an object, got {other}"))),
        };
        let mut requirements = Vec::new();
        match obj.get("matchLabels") {
            None | Some(Value::Null) => {}
            Some(Value::Object(labels)) => {
                for (k, v) in labels {
                    let v = v.as_str().ok_or_else(|| invalid(format!("matchLabels[{k}] must be a string")))?;
                    requirements.push(Requirement::new(k, Operator::Equals, vec![v.to_string()]).map_err(invalid)?);
                }
            }
            Some(_) => return Err(invalid("matchLabels must be an object".into())),
        }
        match obj.get("matchExpressions") {
            None | Some(Value::Null) => {}
            Some(Value::Array(exprs)) => {
                for expr in exprs {
                    let key = expr.get("key").and_then(Value::as_str).unwrap_or("");
                    let op = expr.get("operator").and_then(Value::as_str).unwrap_or("");
                    let operator = match op {
                        "In" => Operator::In,
                        "NotIn" => Operator::NotIn,
                        "Exists" => Operator::Exists,
                        "DoesNotExist" => Operator::DoesNotExist,
                        other => return Err(invalid(format!("{other:?} is not a valid label selector operator"))),
                    };
                    let values = match expr.get("values") {
                        None | Some(Value::Null) => Vec::new(),
                        Some(Value::Array(vs)) => vs
                            .iter()
                            .map(|v| v.as_str().map(str::to_string))
                            .collect::<Option<Vec<_>>>()
                            .ok_or_else(|| invalid(format!("values of {key:?} must be strings")))?,
                        Some(_) => return Err(invalid(format!("values of {key:?} must be a list"))),
                    };
                    requirements.push(Requirement::new(key, operator, values).map_err(invalid)?);
                }
            }
            Some(_) => return Err(invalid("matchExpressions must be a list".into())),
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector { requirements, nothing: false })
    }

    /// The equality selector of a plain label map (a Service's or ReplicationController's `spec.selector`).
    /// Non-string values are ignored.
    pub fn from_labels(labels: &Map<String, Value>) -> LabelSelector {
        let mut requirements: Vec<Requirement> = labels
            .iter()
            .filter_map(|(k, v)| {
                let v = v.as_str()?;
                Some(Requirement { key: k.clone(), operator: Operator::Equals, values: vec![v.to_string()] })
            })
            .collect();
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        LabelSelector { requirements, nothing: false }
    }

    /// Whether the labels (`metadata.labels`, possibly absent) satisfy every requirement.
    pub fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(labels))
    }

    /// True when the selector matches everything (no requirements).
    pub fn is_empty(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }
}

impl fmt::Display for LabelSelector {
    /// The canonical string form (`app=web,tier in (fe)`); empty for both everything and nothing.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

/// Renders a `metav1.LabelSelector` object in the string syntax (`app=web,tier in (fe)`), as
/// `LabelSelectorAsSelector(s).String()` does: requirements sorted by key, `In`/`NotIn` values sorted.
/// Used for `Scale` `status.selector` and describe output. `null`, `{}` and invalid selectors render as
/// well as they can (`""` for the first two); no validation is done.
pub fn to_selector_string(selector: &Value) -> String {
    if let Ok(sel) = LabelSelector::from_json(selector) {
        return sel.to_string();
    }
    // Permissive rendering of an invalid selector.
    let mut reqs: Vec<(String, String)> = Vec::new();
    if let Some(labels) = selector.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in labels {
            reqs.push((k.clone(), format!("{k}={}", v.as_str().unwrap_or_default())));
        }
    }
    if let Some(exprs) = selector.get("matchExpressions").and_then(Value::as_array) {
        for e in exprs {
            let key = e.get("key").and_then(Value::as_str).unwrap_or("").to_string();
            let mut values: Vec<&str> = e
                .get("values")
                .and_then(Value::as_array)
                .map(|v| v.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            values.sort_unstable();
            let rendered = match e.get("operator").and_then(Value::as_str).unwrap_or("") {
                "In" => format!("{key} in ({})", values.join(",")),
                "NotIn" => format!("{key} notin ({})", values.join(",")),
                "Exists" => key.clone(),
                "DoesNotExist" => format!("!{key}"),
                other => format!("{key} {other} ({})", values.join(",")),
            };
            reqs.push((key, rendered));
        }
    }
    reqs.sort_by(|a, b| a.0.cmp(&b.0));
    reqs.into_iter().map(|(_, r)| r).collect::<Vec<_>>().join(",")
}

/// Renders a plain label map as `labels.FormatLabels` does: `a=b,c=d` sorted by key, `<none>` when empty.
pub fn format_labels(labels: Option<&Map<String, Value>>) -> String {
    let mut pairs: Vec<String> = labels
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())))
        .collect();
    if pairs.is_empty() {
        return "<none>".into();
    }
    pairs.sort();
    pairs.join(",")
}

// --- lexer and parser (upstream k8s.io/apimachinery/pkg/labels/selector.go) ---

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tok {
    Identifier,
    In,
    NotIn,
    OpenPar,
    ClosedPar,
    Comma,
    DoesNotExist,
    Equals,
    DoubleEquals,
    NotEquals,
    GreaterThan,
    LessThan,
    End,
}

fn is_special(b: u8) -> bool {
    matches!(b, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

fn symbol_token(s: &str) -> Option<Tok> {
    Some(match s {
        ")" => Tok::ClosedPar,
        "," => Tok::Comma,
        "!" => Tok::DoesNotExist,
        "==" => Tok::DoubleEquals,
        "=" => Tok::Equals,
        ">" => Tok::GreaterThan,
        "<" => Tok::LessThan,
        "!=" => Tok::NotEquals,
        "(" => Tok::OpenPar,
        _ => return None,
    })
}

fn lex(s: &str) -> Vec<(Tok, String)> {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        while i < bytes.len() && matches!(bytes[i], b' ' | b'\t' | b'\r' | b'\n') {
            i += 1;
        }
        if i >= bytes.len() || bytes[i] == 0 {
            out.push((Tok::End, String::new()));
            return out;
        }
        if is_special(bytes[i]) {
            // Longest run of special symbols that is still a known token.
            let start = i;
            let mut best: Option<(Tok, usize)> = None;
            let mut j = i;
            while j < bytes.len() && is_special(bytes[j]) {
                j += 1;
                match symbol_token(&s[start..j]) {
                    Some(t) => best = Some((t, j)),
                    None if best.is_some() => break,
                    None => {}
                }
            }
            // Every single special symbol is a token, so `best` is always set.
            let (tok, end) = best.unwrap_or((Tok::Comma, start + 1));
            out.push((tok, s[start..end].to_string()));
            i = end;
        } else {
            let start = i;
            while i < bytes.len() && !is_special(bytes[i]) && !matches!(bytes[i], b' ' | b'\t' | b'\r' | b'\n' | 0) {
                i += 1;
            }
            let word = &s[start..i];
            let tok = match word {
                "in" => Tok::In,
                "notin" => Tok::NotIn,
                _ => Tok::Identifier,
            };
            out.push((tok, word.to_string()));
        }
    }
}

struct Parser {
    tokens: Vec<(Tok, String)>,
    pos: usize,
}

/// Whether `in`/`notin` are keywords (operator position) or plain identifiers (everywhere else).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ctx {
    KeyAndOperator,
    Values,
}

impl Parser {
    fn lookahead(&self, ctx: Ctx) -> (Tok, String) {
        let (tok, lit) = self.tokens.get(self.pos).cloned().unwrap_or((Tok::End, String::new()));
        if ctx == Ctx::Values && matches!(tok, Tok::In | Tok::NotIn) { (Tok::Identifier, lit) } else { (tok, lit) }
    }

    fn consume(&mut self, ctx: Ctx) -> (Tok, String) {
        let item = self.lookahead(ctx);
        if self.pos < self.tokens.len() {
            self.pos += 1;
        }
        item
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, SelectorError> {
        let mut requirements = Vec::new();
        loop {
            let (tok, lit) = self.lookahead(Ctx::Values);
            match tok {
                Tok::Identifier | Tok::DoesNotExist => {
                    requirements.push(self.parse_requirement().map_err(SelectorError::Requirement)?);
                    let (t, l) = self.consume(Ctx::Values);
                    match t {
                        Tok::End => return Ok(requirements),
                        Tok::Comma => {
                            let (t2, l2) = self.lookahead(Ctx::Values);
                            if t2 != Tok::Identifier && t2 != Tok::DoesNotExist {
                                return Err(SelectorError::Syntax(format!(
                                    "found '{l2}', expected: identifier after ','"
                                )));
                            }
                        }
                        _ => {
                            return Err(SelectorError::Syntax(format!("found '{l}', expected: ',' or 'end of string'")));
                        }
                    }
                }
                Tok::End => return Ok(requirements),
                _ => {
                    return Err(SelectorError::Syntax(format!(
                        "found '{lit}', expected: !, identifier, or 'end of string'"
                    )));
                }
            }
        }
    }

    fn parse_requirement(&mut self) -> Result<Requirement, String> {
        let (mut tok, mut lit) = self.consume(Ctx::Values);
        let mut does_not_exist = false;
        if tok == Tok::DoesNotExist {
            does_not_exist = true;
            (tok, lit) = self.consume(Ctx::Values);
        }
        if tok != Tok::Identifier {
            return Err(format!("found '{lit}', expected: identifier"));
        }
        let key = lit;
        if let Some(msg) = label_key_errors(&key).into_iter().next() {
            return Err(format!("key: Invalid value: {key:?}: {msg}"));
        }
        if does_not_exist {
            // Whatever follows `!key` must be `,` or the end; the caller reports anything else.
            return Requirement::new(&key, Operator::DoesNotExist, Vec::new());
        }
        let (next, _) = self.lookahead(Ctx::Values);
        if next == Tok::End || next == Tok::Comma {
            return Requirement::new(&key, Operator::Exists, Vec::new());
        }
        let (op_tok, op_lit) = self.consume(Ctx::KeyAndOperator);
        let operator = match op_tok {
            Tok::In => Operator::In,
            Tok::NotIn => Operator::NotIn,
            Tok::Equals => Operator::Equals,
            Tok::DoubleEquals => Operator::DoubleEquals,
            Tok::NotEquals => Operator::NotEquals,
            Tok::GreaterThan => Operator::GreaterThan,
            Tok::LessThan => Operator::LessThan,
            _ => return Err(format!("found '{op_lit}', expected: in, notin, =, ==, !=, gt, lt")),
        };
        let values = match operator {
            Operator::In | Operator::NotIn => self.parse_values()?,
            _ => self.parse_exact_value()?,
        };
        Requirement::new(&key, operator, values)
    }

    fn parse_values(&mut self) -> Result<Vec<String>, String> {
        let (tok, lit) = self.consume(Ctx::Values);
        if tok != Tok::OpenPar {
            return Err(format!("found '{lit}' expected: '('"));
        }
        let (tok, lit) = self.lookahead(Ctx::Values);
        match tok {
            Tok::Identifier | Tok::Comma => {
                let values = self.parse_identifiers_list()?;
                let (t, _) = self.consume(Ctx::Values);
                if t != Tok::ClosedPar {
                    return Err(format!("found '{lit}', expected: ')'"));
                }
                Ok(values)
            }
            Tok::ClosedPar => {
                self.consume(Ctx::Values);
                Ok(vec![String::new()])
            }
            _ => Err(format!("found '{lit}', expected: ',', ')' or identifier")),
        }
    }

    fn parse_identifiers_list(&mut self) -> Result<Vec<String>, String> {
        let mut values: Vec<String> = Vec::new();
        loop {
            let (tok, lit) = self.consume(Ctx::Values);
            match tok {
                Tok::Identifier => {
                    values.push(lit);
                    let (t2, l2) = self.lookahead(Ctx::Values);
                    match t2 {
                        Tok::Comma => continue,
                        Tok::ClosedPar => return Ok(values),
                        _ => return Err(format!("found '{l2}', expected: ',' or ')'")),
                    }
                }
                Tok::Comma => {
                    if values.is_empty() {
                        values.push(String::new());
                    }
                    let (t2, _) = self.lookahead(Ctx::Values);
                    if t2 == Tok::ClosedPar {
                        values.push(String::new());
                        return Ok(values);
                    }
                    if t2 == Tok::Comma {
                        self.consume(Ctx::Values);
                        values.push(String::new());
                    }
                }
                _ => return Err(format!("found '{lit}', expected: ',', or identifier")),
            }
        }
    }

    fn parse_exact_value(&mut self) -> Result<Vec<String>, String> {
        let (tok, _) = self.lookahead(Ctx::Values);
        if tok == Tok::End || tok == Tok::Comma {
            return Ok(vec![String::new()]);
        }
        let (tok, lit) = self.consume(Ctx::Values);
        if tok == Tok::Identifier { Ok(vec![lit]) } else { Err(format!("found '{lit}', expected: identifier")) }
    }
}

// --- key and value validation (k8s.io/apimachinery/pkg/util/validation) ---

const QUALIFIED_NAME_MSG: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and \
     end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for \
     validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";

const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, \
     '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  \
     or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric \
     characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex \
     used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`, non-empty.
fn is_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        })
}

/// The problems of a label key (a qualified name with an optional DNS subdomain prefix), as upstream's
/// `IsQualifiedName` reports them; empty when the key is valid.
pub fn label_key_errors(key: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = key.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_string());
            } else if prefix.len() > 253 {
                errs.push("prefix part must be no more than 253 characters".to_string());
            } else if !is_dns1123_subdomain(prefix) {
                errs.push(format!("prefix part {DNS1123_SUBDOMAIN_MSG}"));
            }
            *name
        }
        _ => {
            errs.push(format!(
                "a qualified name {QUALIFIED_NAME_MSG} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else if name.len() > 63 {
        errs.push("name part must be no more than 63 characters".to_string());
    }
    if !is_qualified_name_part(name) {
        errs.push(format!("name part {QUALIFIED_NAME_MSG}"));
    }
    errs
}

/// The problems of a label value (empty, or at most 63 alphanumerics, `-`, `_`, `.` starting and ending
/// alphanumeric); empty when the value is valid.
pub fn label_value_errors(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > 63 {
        errs.push("must be no more than 63 characters".to_string());
    }
    if !value.is_empty() && !is_qualified_name_part(value) {
        errs.push(LABEL_VALUE_MSG.to_string());
    }
    errs
}

// ---------------------------------------------------------------------------------------------------
// Field selectors

/// One term of a field selector: `field=value` (or `==`), or `field!=value` when `negated`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldTerm {
    pub field: String,
    pub value: String,
    pub negated: bool,
}

/// A parsed `?fieldSelector=`: the conjunction of its terms. Empty matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    terms: Vec<FieldTerm>,
}

impl FieldSelector {
    /// Parses `key=value`, `key==value`, `key!=value` terms separated by commas; values may contain
    /// `\,`, `\=` and `\\` (upstream `fields.ParseSelector`).
    pub fn parse(s: &str) -> Result<FieldSelector, SelectorError> {
        let mut terms = Vec::new();
        let mut parts = split_terms(s);
        parts.sort();
        for part in parts {
            if part.is_empty() {
                continue;
            }
            let Some((lhs, op, rhs)) = split_term(part) else {
                return Err(SelectorError::FieldTerm { selector: s.to_string(), term: part.to_string() });
            };
            terms.push(FieldTerm { field: lhs.to_string(), value: unescape_value(rhs)?, negated: op == "!=" });
        }
        Ok(FieldSelector { terms })
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    pub fn terms(&self) -> &[FieldTerm] {
        &self.terms
    }

    /// The value a `field=value` term requires, if there is one (`metadata.name` lets a list become a get).
    pub fn required_value(&self, field: &str) -> Option<&str> {
        self.terms.iter().find(|t| t.field == field && !t.negated).map(|t| t.value.as_str())
    }

    /// Checks that every field label is supported by the resource, before any object is looked at.
    pub fn validate(&self, resource: &ResourceInfo) -> Result<(), SelectorError> {
        for t in &self.terms {
            if !supported_fields(resource).contains(&t.field.as_str()) {
                return Err(SelectorError::UnsupportedField(t.field.clone()));
            }
        }
        Ok(())
    }

    /// Whether the object satisfies every term; an unsupported field label is an error.
    pub fn matches(&self, obj: &Value, resource: &ResourceInfo) -> Result<bool, SelectorError> {
        let mut all = true;
        for t in &self.terms {
            let have = field_value(obj, resource, &t.field)?;
            if (have == t.value) == t.negated {
                all = false;
            }
        }
        Ok(all)
    }
}

impl fmt::Display for FieldSelector {
    /// The canonical form, values escaped again (`metadata.name=a\,b,status.phase!=Running`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, t) in self.terms.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let escaped = t.value.replace('\\', "\\\\").replace(',', "\\,").replace('=', "\\=");
            write!(f, "{}{}{escaped}", t.field, if t.negated { "!=" } else { "=" })?;
        }
        Ok(())
    }
}

/// Splits on commas not preceded by a backslash; escapes are kept for `unescape_value`.
fn split_terms(s: &str) -> Vec<&str> {
    if s.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut in_slash = false;
    for (i, c) in s.char_indices() {
        if in_slash {
            in_slash = false;
        } else if c == '\\' {
            in_slash = true;
        } else if c == ',' {
            terms.push(&s[start..i]);
            start = i + 1;
        }
    }
    terms.push(&s[start..]);
    terms
}

/// Splits a term at the first operator (`!=`, `==`, `=`, tried in that order at each position).
fn split_term(term: &str) -> Option<(&str, &'static str, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for op in ["!=", "==", "="] {
            if rest.starts_with(op) {
                return Some((&term[..i], op, &term[i + op.len()..]));
            }
        }
    }
    None
}

fn unescape_value(s: &str) -> Result<String, SelectorError> {
    if !s.contains(['\\', ',', '=']) {
        return Ok(s.to_string());
    }
    let mut out = String::with_capacity(s.len());
    let mut in_slash = false;
    for c in s.chars() {
        if in_slash {
            match c {
                '\\' | ',' | '=' => out.push(c),
                other => return Err(SelectorError::InvalidEscape(format!("\\{other}"))),
            }
            in_slash = false;
            continue;
        }
        match c {
            '\\' => in_slash = true,
            ',' | '=' => return Err(SelectorError::UnescapedRune(c)),
            other => out.push(other),
        }
    }
    if in_slash {
        return Err(SelectorError::InvalidEscape("\\".into()));
    }
    Ok(out)
}

/// How a field label's value is read from an object (a JSON object in its served version).
#[derive(Clone, Copy)]
enum Extract {
    /// A string at the first of these dotted paths that is present; `""` when none is.
    Str(&'static [&'static str]),
    /// A boolean rendered `true`/`false`; absent is `false`.
    Bool(&'static str),
    /// An integer rendered in decimal; absent is `0`.
    Int(&'static str),
    /// `status.podIPs[0].ip`, falling back to `status.podIP`.
    PodIP,
    /// An event's `source.component`, falling back to the reporting controller.
    EventSource,
}

const META_FIELDS: &[(&str, Extract)] = &[
    ("metadata.name", Extract::Str(&["metadata.name"])),
    ("metadata.namespace", Extract::Str(&["metadata.namespace"])),
];

const POD_FIELDS: &[(&str, Extract)] = &[
    ("metadata.name", Extract::Str(&["metadata.name"])),
    ("metadata.namespace", Extract::Str(&["metadata.namespace"])),
    ("spec.nodeName", Extract::Str(&["spec.nodeName"])),
    // Old clients send `spec.host`; upstream converts it to spec.nodeName.
    ("spec.host", Extract::Str(&["spec.nodeName"])),
    ("spec.restartPolicy", Extract::Str(&["spec.restartPolicy"])),
    ("spec.schedulerName", Extract::Str(&["spec.schedulerName"])),
    ("spec.serviceAccountName", Extract::Str(&["spec.serviceAccountName"])),
    ("spec.hostNetwork", Extract::Bool("spec.hostNetwork")),
    ("status.phase", Extract::Str(&["status.phase"])),
    ("status.podIP", Extract::PodIP),
    ("status.nominatedNodeName", Extract::Str(&["status.nominatedNodeName"])),
];

const CORE_EVENT_FIELDS: &[(&str, Extract)] = &[
    ("metadata.name", Extract::Str(&["metadata.name"])),
    ("metadata.namespace", Extract::Str(&["metadata.namespace"])),
    ("involvedObject.kind", Extract::Str(&["involvedObject.kind", "regarding.kind"])),
    ("involvedObject.namespace", Extract::Str(&["involvedObject.namespace", "regarding.namespace"])),
    ("involvedObject.name", Extract::Str(&["involvedObject.name", "regarding.name"])),
    ("involvedObject.uid", Extract::Str(&["involvedObject.uid", "regarding.uid"])),
    ("involvedObject.apiVersion", Extract::Str(&["involvedObject.apiVersion", "regarding.apiVersion"])),
    ("involvedObject.resourceVersion", Extract::Str(&["involvedObject.resourceVersion", "regarding.resourceVersion"])),
    ("involvedObject.fieldPath", Extract::Str(&["involvedObject.fieldPath", "regarding.fieldPath"])),
    ("reason", Extract::Str(&["reason"])),
    ("reportingComponent", Extract::Str(&["reportingComponent", "reportingController"])),
    ("source", Extract::EventSource),
    ("type", Extract::Str(&["type"])),
];

/// events.k8s.io/v1 uses `regarding.*` and `reportingController` upstream; the core names are accepted too.
const EVENTS_V1_EXTRA_FIELDS: &[(&str, Extract)] = &[
    ("regarding.kind", Extract::Str(&["regarding.kind", "involvedObject.kind"])),
    ("regarding.namespace", Extract::Str(&["regarding.namespace", "involvedObject.namespace"])),
    ("regarding.name", Extract::Str(&["regarding.name", "involvedObject.name"])),
    ("regarding.uid", Extract::Str(&["regarding.uid", "involvedObject.uid"])),
    ("regarding.apiVersion", Extract::Str(&["regarding.apiVersion", "involvedObject.apiVersion"])),
    ("regarding.resourceVersion", Extract::Str(&["regarding.resourceVersion", "involvedObject.resourceVersion"])),
    ("regarding.fieldPath", Extract::Str(&["regarding.fieldPath", "involvedObject.fieldPath"])),
    ("reportingController", Extract::Str(&["reportingController", "reportingComponent"])),
];

const SECRET_FIELDS: &[(&str, Extract)] = &[
    ("metadata.name", Extract::Str(&["metadata.name"])),
    ("metadata.namespace", Extract::Str(&["metadata.namespace"])),
    ("type", Extract::Str(&["type"])),
];

/// Namespaces accept `metadata.name`, the legacy `name` and `status.phase` (no `metadata.namespace`).
const NAMESPACE_FIELDS: &[(&str, Extract)] = &[
    ("metadata.name", Extract::Str(&["metadata.name"])),
    ("name", Extract::Str(&["metadata.name"])),
    ("status.phase", Extract::Str(&["status.phase"])),
];

/// Nodes accept `metadata.name` and `spec.unschedulable` only.
const NODE_FIELDS: &[(&str, Extract)] =
    &[("metadata.name", Extract::Str(&["metadata.name"])), ("spec.unschedulable", Extract::Bool("spec.unschedulable"))];

const REPLICAS_FIELDS: &[(&str, Extract)] = &[
    ("metadata.name", Extract::Str(&["metadata.name"])),
    ("metadata.namespace", Extract::Str(&["metadata.namespace"])),
    ("status.replicas", Extract::Int("status.replicas")),
];

const JOB_FIELDS: &[(&str, Extract)] = &[
    ("metadata.name", Extract::Str(&["metadata.name"])),
    ("metadata.namespace", Extract::Str(&["metadata.namespace"])),
    ("status.successful", Extract::Int("status.succeeded")),
];

const SERVICE_FIELDS: &[(&str, Extract)] = &[
    ("metadata.name", Extract::Str(&["metadata.name"])),
    ("metadata.namespace", Extract::Str(&["metadata.namespace"])),
    ("spec.clusterIP", Extract::Str(&["spec.clusterIP"])),
    ("spec.type", Extract::Str(&["spec.type"])),
];

/// The field labels of one resource and how each is read.
type FieldTable = &'static [(&'static str, Extract)];

/// The resource's field labels: its own table, and extra aliases (events.k8s.io names).
fn field_table(resource: &ResourceInfo) -> (FieldTable, FieldTable) {
    match (resource.group, resource.kind) {
        ("", "Pod") => (POD_FIELDS, &[]),
        ("", "Event") => (CORE_EVENT_FIELDS, &[]),
        ("events.k8s.io", "Event") => (CORE_EVENT_FIELDS, EVENTS_V1_EXTRA_FIELDS),
        ("", "Secret") => (SECRET_FIELDS, &[]),
        ("", "Namespace") => (NAMESPACE_FIELDS, &[]),
        ("", "Node") => (NODE_FIELDS, &[]),
        ("", "ReplicationController") | ("apps", "ReplicaSet") => (REPLICAS_FIELDS, &[]),
        ("batch", "Job") => (JOB_FIELDS, &[]),
        ("", "Service") => (SERVICE_FIELDS, &[]),
        _ => (META_FIELDS, &[]),
    }
}

/// The field labels a resource supports in `fieldSelector=`, as upstream's field label conversions.
pub fn supported_fields(resource: &ResourceInfo) -> Vec<&'static str> {
    let (a, b) = field_table(resource);
    a.iter().chain(b).map(|(k, _)| *k).collect()
}

fn lookup<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(obj, |v, k| v.get(k)).filter(|v| !v.is_null())
}

/// The value of a field label on an object, rendered as the API server compares it: strings as they
/// are (absent is `""`), booleans `true`/`false`, integers in decimal. Unsupported labels are an error.
pub fn field_value(obj: &Value, resource: &ResourceInfo, field: &str) -> Result<String, SelectorError> {
    let (a, b) = field_table(resource);
    let Some((_, extract)) = a.iter().chain(b).find(|(k, _)| *k == field) else {
        return Err(SelectorError::UnsupportedField(field.to_string()));
    };
    let first_str =
        |paths: &[&str]| -> String { paths.iter().find_map(|p| lookup(obj, p)).map(render_scalar).unwrap_or_default() };
    Ok(match *extract {
        Extract::Str(paths) => first_str(paths),
        Extract::Bool(path) => lookup(obj, path).and_then(Value::as_bool).unwrap_or(false).to_string(),
        Extract::Int(path) => lookup(obj, path).and_then(Value::as_i64).unwrap_or(0).to_string(),
        Extract::PodIP => lookup(obj, "status.podIPs")
            .and_then(Value::as_array)
            .and_then(|ips| ips.first())
            .and_then(|ip| ip.get("ip"))
            .and_then(Value::as_str)
            .or_else(|| lookup(obj, "status.podIP").and_then(Value::as_str))
            .unwrap_or("")
            .to_string(),
        Extract::EventSource => {
            let component = first_str(&["source.component", "deprecatedSource.component"]);
            if component.is_empty() { first_str(&["reportingComponent", "reportingController"]) } else { component }
        }
    })
}

fn render_scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::find;
    use serde_json::json;

    fn labels(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn parses_and_matches_equality() {
        let sel = LabelSelector::parse("app=web, tier == fe ,env!=prod").unwrap();
        assert_eq!(sel.requirements().len(), 3);
        assert_eq!(sel.to_string(), "app=web,env!=prod,tier==fe");
        let l = labels(json!({"app": "web", "tier": "fe"}));
        assert!(sel.matches(Some(&l)));
        let l = labels(json!({"app": "web", "tier": "fe", "env": "prod"}));
        assert!(!sel.matches(Some(&l)));
        assert!(!sel.matches(None));
    }

    #[test]
    fn parses_set_based() {
        let sel = LabelSelector::parse("env in (prod, qa),tier notin (be),  partition,!canary").unwrap();
        assert_eq!(sel.to_string(), "!canary,env in (prod,qa),partition,tier notin (be)");
        assert!(sel.matches(Some(&labels(json!({"env": "qa", "partition": "a"})))));
        assert!(!sel.matches(Some(&labels(json!({"env": "qa", "partition": "a", "canary": "1"})))));
        assert!(!sel.matches(Some(&labels(json!({"env": "dev", "partition": "a"})))));
        assert!(!sel.matches(Some(&labels(json!({"env": "qa", "partition": "a", "tier": "be"})))));
        assert!(!sel.matches(Some(&labels(json!({"env": "qa"})))));
    }

    #[test]
    fn in_and_notin_are_identifiers_in_value_position() {
        let sel = LabelSelector::parse("a=in,b notin (notin,in)").unwrap();
        assert!(sel.matches(Some(&labels(json!({"a": "in", "b": "x"})))));
        assert!(!sel.matches(Some(&labels(json!({"a": "in", "b": "notin"})))));
    }

    #[test]
    fn empty_values_and_empty_selector() {
        let sel = LabelSelector::parse("a=,b in (,x)").unwrap();
        assert!(sel.matches(Some(&labels(json!({"a": "", "b": ""})))));
        assert!(sel.matches(Some(&labels(json!({"a": "", "b": "x"})))));
        assert!(!sel.matches(Some(&labels(json!({"b": "x"})))));
        let empty = LabelSelector::parse("  ").unwrap();
        assert!(empty.is_empty());
        assert!(empty.matches(None));
    }

    #[test]
    fn greater_and_less_than() {
        let sel = LabelSelector::parse("gen>3,size<10").unwrap();
        assert!(sel.matches(Some(&labels(json!({"gen": "4", "size": "2"})))));
        assert!(!sel.matches(Some(&labels(json!({"gen": "3", "size": "2"})))));
        assert!(!sel.matches(Some(&labels(json!({"gen": "x", "size": "2"})))));
        assert!(LabelSelector::parse("gen>x").is_err());
    }

    #[test]
    fn rejects_bad_syntax_and_names() {
        let err = LabelSelector::parse("a=b,").unwrap_err();
        assert_eq!(err.to_string(), "found '', expected: identifier after ','");
        let err = LabelSelector::parse("a b").unwrap_err();
        assert!(err.to_string().contains("found 'b'"), "{err}");
        let err = LabelSelector::parse("-a=b").unwrap_err();
        assert!(err.to_string().starts_with("unable to parse requirement: key: Invalid value: \"-a\""), "{err}");
        let err = LabelSelector::parse("a=b c").unwrap_err();
        assert!(err.to_string().contains("found 'c', expected: ',' or 'end of string'"), "{err}");
        let err = LabelSelector::parse("a=-x").unwrap_err();
        assert!(err.to_string().contains("values[0][a]: Invalid value: \"-x\""), "{err}");
        let err = LabelSelector::parse("!a=b").unwrap_err();
        assert_eq!(err.to_string(), "found '=', expected: ',' or 'end of string'");
        assert!(LabelSelector::parse("a in x").is_err());
        assert!(LabelSelector::parse("a in (x").is_err());
        assert!(LabelSelector::parse("Example.com/a=b").is_err());
        assert!(LabelSelector::parse("example.com/a=b").is_ok());
        assert!(LabelSelector::parse(&format!("a={}", "x".repeat(64))).is_err());
        assert!(LabelSelector::parse("a/b/c").is_err());
    }

    #[test]
    fn from_json_label_selector() {
        let sel = LabelSelector::from_json(&json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["fe", "api"]},
                                 {"key": "legacy", "operator": "DoesNotExist"}]
        }))
        .unwrap();
        assert_eq!(sel.to_string(), "app=web,!legacy,tier in (api,fe)");
        assert!(sel.matches(Some(&labels(json!({"app": "web", "tier": "fe"})))));
        assert!(!sel.matches(Some(&labels(json!({"app": "web", "tier": "fe", "legacy": "y"})))));

        assert!(LabelSelector::from_json(&json!({})).unwrap().is_empty());
        let nothing = LabelSelector::from_json(&Value::Null).unwrap();
        assert!(!nothing.is_empty());
        assert!(!nothing.matches(Some(&labels(json!({"a": "b"})))));

        let err =
            LabelSelector::from_json(&json!({"matchExpressions": [{"key": "a", "operator": "Like"}]})).unwrap_err();
        assert_eq!(err.to_string(), "invalid label selector: \"Like\" is not a valid label selector operator");
        assert!(LabelSelector::from_json(&json!({"matchExpressions": [{"key": "a", "operator": "In"}]})).is_err());
    }

    #[test]
    fn selector_string_rendering() {
        assert_eq!(to_selector_string(&json!({"matchLabels": {"tier": "fe", "app": "web"}})), "app=web,tier=fe");
        assert_eq!(
            to_selector_string(&json!({"matchLabels": {"app": "web"},
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["fe"]}]})),
            "app=web,tier in (fe)"
        );
        assert_eq!(to_selector_string(&json!({})), "");
        assert_eq!(to_selector_string(&Value::Null), "");
        assert_eq!(format_labels(Some(&labels(json!({"b": "2", "a": "1"})))), "a=1,b=2");
        assert_eq!(format_labels(None), "<none>");
        let from_map = LabelSelector::from_labels(&labels(json!({"run": "nginx"})));
        assert!(from_map.matches(Some(&labels(json!({"run": "nginx", "x": "y"})))));
        assert_eq!(from_map.to_string(), "run=nginx");
    }

    #[test]
    fn field_selector_parse_and_escape() {
        let sel = FieldSelector::parse("metadata.name==a\\,b\\=c\\\\,status.phase!=Running").unwrap();
        assert_eq!(sel.terms().len(), 2);
        assert_eq!(sel.required_value("metadata.name"), Some("a,b=c\\"));
        assert!(sel.terms().iter().any(|t| t.field == "status.phase" && t.negated && t.value == "Running"));
        assert_eq!(sel.to_string(), "metadata.name=a\\,b\\=c\\\\,status.phase!=Running");
        assert!(FieldSelector::parse("").unwrap().is_empty());
        assert_eq!(
            FieldSelector::parse("metadata.name").unwrap_err().to_string(),
            "invalid selector: 'metadata.name'; can't understand 'metadata.name'"
        );
        assert_eq!(
            FieldSelector::parse("a=b\\x").unwrap_err().to_string(),
            "invalid field selector: invalid escape sequence: \\x"
        );
        assert_eq!(
            FieldSelector::parse("a=b=c").unwrap_err().to_string(),
            "invalid field selector: unescaped character in value: ="
        );
    }

    #[test]
    fn field_selector_on_pods() {
        let pods = find("", "v1", "pods").unwrap();
        let pod = json!({
            "metadata": {"name": "nginx", "namespace": "default"},
            "spec": {"nodeName": "node-1", "restartPolicy": "Always"},
            "status": {"phase": "Running", "podIP": "10.0.0.5", "podIPs": [{"ip": "10.0.0.5"}]}
        });
        let m = |s: &str| FieldSelector::parse(s).unwrap().matches(&pod, pods);
        assert_eq!(m("metadata.name=nginx,metadata.namespace=default"), Ok(true));
        assert_eq!(m("spec.nodeName=node-2"), Ok(false));
        assert_eq!(m("spec.host=node-1"), Ok(true));
        assert_eq!(m("status.phase!=Running"), Ok(false));
        assert_eq!(m("status.podIP=10.0.0.5"), Ok(true));
        assert_eq!(m("spec.hostNetwork=false"), Ok(true));
        assert_eq!(m("status.nominatedNodeName="), Ok(true));
        let err = m("spec.containers=x").unwrap_err();
        assert_eq!(err.to_string(), "field label not supported: spec.containers");
        assert!(FieldSelector::parse("spec.foo=1").unwrap().validate(pods).is_err());
        assert!(FieldSelector::parse("status.phase=Pending").unwrap().validate(pods).is_ok());
    }

    #[test]
    fn field_selector_on_events_and_others() {
        let events = find("", "v1", "events").unwrap();
        let ev = json!({
            "metadata": {"name": "nginx.1", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "nginx", "namespace": "default", "uid": "u1"},
            "reason": "Pulled", "type": "Normal", "source": {"component": "kubelet"}
        });
        let sel = FieldSelector::parse(
            "involvedObject.name=nginx,involvedObject.namespace=default,involvedObject.uid=u1,source=kubelet",
        )
        .unwrap();
        assert_eq!(sel.matches(&ev, events), Ok(true));
        assert!(FieldSelector::parse("regarding.name=nginx").unwrap().matches(&ev, events).is_err());

        let events_v1 = find("events.k8s.io", "v1", "events").unwrap();
        let ev1 = json!({"metadata": {"name": "e"}, "regarding": {"kind": "Deployment", "name": "web"},
                         "reportingController": "deployment-controller"});
        for s in [
            "regarding.kind=Deployment",
            "involvedObject.name=web",
            "source=deployment-controller",
            "reportingController=deployment-controller",
        ] {
            assert_eq!(FieldSelector::parse(s).unwrap().matches(&ev1, events_v1), Ok(true), "{s}");
        }

        let nodes = find("", "v1", "nodes").unwrap();
        let node = json!({"metadata": {"name": "n1"}, "spec": {"unschedulable": true}});
        assert_eq!(FieldSelector::parse("spec.unschedulable=true").unwrap().matches(&node, nodes), Ok(true));
        assert!(FieldSelector::parse("metadata.namespace=").unwrap().matches(&node, nodes).is_err());

        let rs = find("apps", "v1", "replicasets").unwrap();
        assert_eq!(FieldSelector::parse("status.replicas=0").unwrap().matches(&json!({}), rs), Ok(true));
        let jobs = find("batch", "v1", "jobs").unwrap();
        let job = json!({"status": {"succeeded": 3}});
        assert_eq!(FieldSelector::parse("status.successful=3").unwrap().matches(&job, jobs), Ok(true));
        let secrets = find("", "v1", "secrets").unwrap();
        let secret = json!({"metadata": {"name": "s"}, "type": "Opaque"});
        assert_eq!(FieldSelector::parse("type=Opaque").unwrap().matches(&secret, secrets), Ok(true));
        let ns = find("", "v1", "namespaces").unwrap();
        let namespace = json!({"metadata": {"name": "kube-system"}, "status": {"phase": "Active"}});
        assert_eq!(
            FieldSelector::parse("status.phase=Active,name=kube-system").unwrap().matches(&namespace, ns),
            Ok(true)
        );
        let svcs = find("", "v1", "services").unwrap();
        let svc = json!({"spec": {"type": "NodePort", "clusterIP": "10.96.0.10"}});
        assert_eq!(
            FieldSelector::parse("spec.type=NodePort,spec.clusterIP=10.96.0.10").unwrap().matches(&svc, svcs),
            Ok(true)
        );
        let cms = find("", "v1", "configmaps").unwrap();
        assert_eq!(
            FieldSelector::parse("data.x=1").unwrap().matches(&json!({}), cms).unwrap_err(),
            SelectorError::UnsupportedField("data.x".into())
        );
        assert_eq!(supported_fields(cms), vec!["metadata.name", "metadata.namespace"]);
    }
}
