//! Label selectors compiled once per pod (metav1 `LabelSelector`, node selector terms with `Gt`/`Lt` and
//! `matchFields`), matched against label maps without allocation.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

pub type Labels = BTreeMap<String, String>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
    Gt(i64),
    Lt(i64),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub op: Op,
}

impl Requirement {
    pub fn matches(&self, labels: &Labels) -> bool {
        let v = labels.get(&self.key);
        match &self.op {
            Op::In(vals) => v.is_some_and(|v| vals.iter().any(|x| x == v)),
            Op::NotIn(vals) => v.is_none_or(|v| !vals.iter().any(|x| x == v)),
            Op::Exists => v.is_some(),
            Op::DoesNotExist => v.is_none(),
            Op::Gt(n) => v.and_then(|v| v.parse::<i64>().ok()).is_some_and(|x| x > *n),
            Op::Lt(n) => v.and_then(|v| v.parse::<i64>().ok()).is_some_and(|x| x < *n),
        }
    }
}

/// A compiled label selector: every requirement must hold. `nothing` matches no object (a nil selector
/// in affinity terms and topology spread constraints).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    pub requirements: Vec<Requirement>,
    pub nothing: bool,
}

impl Selector {
    pub fn everything() -> Self {
        Selector::default()
    }

    pub fn nothing() -> Self {
        Selector { requirements: vec![], nothing: true }
    }

    /// A metav1 LabelSelector; `None` selects nothing (as `metav1.LabelSelectorAsSelector(nil)`), an empty
    /// one everything. An unknown operator makes the selector match nothing.
    pub fn from_label_selector(s: Option<&LabelSelector>) -> Self {
        let Some(s) = s else { return Selector::nothing() };
        let mut requirements = Vec::new();
        for (k, v) in s.match_labels.iter().flatten() {
            requirements.push(Requirement { key: k.clone(), op: Op::In(vec![v.clone()]) });
        }
        for e in s.match_expressions.iter().flatten() {
            let vals = e.values.clone().unwrap_or_default();
            let op = match e.operator.as_str() {
                "In" => Op::In(vals),
                "NotIn" => Op::NotIn(vals),
                "Exists" => Op::Exists,
                "DoesNotExist" => Op::DoesNotExist,
                _ => return Selector::nothing(),
            };
            requirements.push(Requirement { key: e.key.clone(), op });
        }
        Selector { requirements, nothing: false }
    }

    /// A selector that requires each key to have the value it has in `labels` (`nodeSelector`,
    /// `matchLabelKeys`).
    pub fn from_map(m: &Labels) -> Self {
        Selector {
            requirements: m.iter().map(|(k, v)| Requirement { key: k.clone(), op: Op::In(vec![v.clone()]) }).collect(),
            nothing: false,
        }
    }

    pub fn add(&mut self, r: Requirement) {
        self.requirements.push(r);
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(labels))
    }

    pub fn is_empty(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }
}

/// One required node selector term: label expressions and `metadata.name` field expressions, all must hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeTerm {
    pub labels: Vec<Requirement>,
    pub fields: Vec<Requirement>,
    /// A term with no expressions, or with an invalid one, matches nothing.
    pub valid: bool,
}

impl NodeTerm {
    pub fn from_term(t: &NodeSelectorTerm) -> Self {
        let labels: Option<Vec<_>> = t.match_expressions.iter().flatten().map(node_requirement).collect();
        let fields: Option<Vec<_>> = t.match_fields.iter().flatten().map(node_requirement).collect();
        match (labels, fields) {
            (Some(labels), Some(fields)) => {
                let valid = !(labels.is_empty() && fields.is_empty())
                    && fields.iter().all(|f| f.key == "metadata.name");
                NodeTerm { labels, fields, valid }
            }
            _ => NodeTerm { labels: vec![], fields: vec![], valid: false },
        }
    }

    pub fn matches(&self, node_name: &str, labels: &Labels) -> bool {
        if !self.valid || !self.labels.iter().all(|r| r.matches(labels)) {
            return false;
        }
        if self.fields.is_empty() {
            return true;
        }
        let mut f = Labels::new();
        f.insert("metadata.name".into(), node_name.into());
        self.fields.iter().all(|r| r.matches(&f))
    }
}

fn node_requirement(r: &NodeSelectorRequirement) -> Option<Requirement> {
    let vals = r.values.clone().unwrap_or_default();
    let num = || vals.first().and_then(|v| v.parse::<i64>().ok());
    let op = match r.operator.as_str() {
        "In" => Op::In(vals.clone()),
        "NotIn" => Op::NotIn(vals.clone()),
        "Exists" => Op::Exists,
        "DoesNotExist" => Op::DoesNotExist,
        "Gt" => Op::Gt(num()?),
        "Lt" => Op::Lt(num()?),
        _ => return None,
    };
    Some(Requirement { key: r.key.clone(), op })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn label_selectors() {
        let sel = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "NotIn".into(),
                values: Some(vec!["db".into()]),
            }]),
        };
        let s = Selector::from_label_selector(Some(&sel));
        assert!(s.matches(&labels(&[("app", "web")])));
        assert!(s.matches(&labels(&[("app", "web"), ("tier", "front")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("tier", "db")])));
        assert!(!s.matches(&labels(&[("app", "db")])));
        assert!(!Selector::from_label_selector(None).matches(&labels(&[])));
        assert!(Selector::from_label_selector(Some(&LabelSelector::default())).matches(&labels(&[("a", "b")])));
    }

    #[test]
    fn node_terms() {
        let req = |key: &str, op: &str, vals: &[&str]| NodeSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(vals.iter().map(|v| v.to_string()).collect()),
        };
        let term = NodeSelectorTerm {
            match_expressions: Some(vec![req("cores", "Gt", &["4"]), req("zone", "In", &["a", "b"])]),
            match_fields: Some(vec![req("metadata.name", "NotIn", &["n3"])]),
        };
        let t = NodeTerm::from_term(&term);
        assert!(t.matches("n1", &labels(&[("cores", "8"), ("zone", "a")])));
        assert!(!t.matches("n3", &labels(&[("cores", "8"), ("zone", "a")])));
        assert!(!t.matches("n1", &labels(&[("cores", "4"), ("zone", "a")])));
        assert!(!t.matches("n1", &labels(&[("cores", "x"), ("zone", "a")])));
        assert!(!NodeTerm::from_term(&NodeSelectorTerm::default()).matches("n1", &labels(&[])));
        let bad = NodeSelectorTerm { match_expressions: Some(vec![req("k", "Gt", &["x"])]), match_fields: None };
        assert!(!NodeTerm::from_term(&bad).matches("n1", &labels(&[("k", "1")])));
    }
}
