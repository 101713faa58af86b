//! Sets of field paths (structured-merge-diff's `fieldpath.Set`): a tree whose members are the paths
//! in the set and whose children hold the paths below, with the set algebra the field manager needs
//! and the FieldsV1 encoding of `metadata.managedFields[].fieldsV1`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::path::{Path, PathElement};

/// A set of field paths.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Set {
    /// Paths of one element that are in the set.
    pub members: BTreeSet<PathElement>,
    /// The sets of paths below one element (never empty).
    pub children: BTreeMap<PathElement, Set>,
}

impl Set {
    pub fn new() -> Set {
        Set::default()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.values().all(Set::is_empty)
    }

    /// Adds a path (an empty path adds nothing).
    pub fn insert(&mut self, path: &[PathElement]) {
        match path {
            [] => {}
            [last] => {
                self.members.insert(last.clone());
            }
            [first, rest @ ..] => self.children.entry(first.clone()).or_default().insert(rest),
        }
    }

    /// Whether a path is a member.
    pub fn has(&self, path: &[PathElement]) -> bool {
        match path {
            [] => false,
            [last] => self.members.contains(last),
            [first, rest @ ..] => self.children.get(first).is_some_and(|c| c.has(rest)),
        }
    }

    /// The set below one element.
    pub fn child(&self, pe: &PathElement) -> Option<&Set> {
        self.children.get(pe)
    }

    pub fn union(&self, other: &Set) -> Set {
        let mut out = self.clone();
        out.members.extend(other.members.iter().cloned());
        for (pe, c) in &other.children {
            let merged = match out.children.get(pe) {
                Some(mine) => mine.union(c),
                None => c.clone(),
            };
            out.children.insert(pe.clone(), merged);
        }
        out
    }

    pub fn difference(&self, other: &Set) -> Set {
        let mut out = Set::new();
        out.members = self.members.difference(&other.members).cloned().collect();
        for (pe, c) in &self.children {
            let d = match other.children.get(pe) {
                Some(o) => c.difference(o),
                None => c.clone(),
            };
            if !d.is_empty() {
                out.children.insert(pe.clone(), d);
            }
        }
        out
    }

    pub fn intersection(&self, other: &Set) -> Set {
        let mut out = Set::new();
        out.members = self.members.intersection(&other.members).cloned().collect();
        for (pe, c) in &self.children {
            if let Some(o) = other.children.get(pe) {
                let i = c.intersection(o);
                if !i.is_empty() {
                    out.children.insert(pe.clone(), i);
                }
            }
        }
        out
    }

    /// Every member path, in order.
    pub fn paths(&self) -> Vec<Path> {
        let mut out = Vec::new();
        self.collect(&mut Vec::new(), &mut out);
        out
    }

    fn collect(&self, prefix: &mut Path, out: &mut Vec<Path>) {
        let mut keys: BTreeSet<&PathElement> = self.members.iter().collect();
        keys.extend(self.children.keys());
        for pe in keys {
            prefix.push(pe.clone());
            if self.members.contains(pe) {
                out.push(prefix.clone());
            }
            if let Some(c) = self.children.get(pe) {
                c.collect(prefix, out);
            }
            prefix.pop();
        }
    }

    /// The set with every field name that has paths below it also a member (upstream's
    /// `EnsureNamedFieldsAreMembers`), which pruning needs to remove whole structs.
    pub fn with_named_fields_as_members(&self) -> Set {
        let mut out = Set { members: self.members.clone(), children: BTreeMap::new() };
        for (pe, c) in &self.children {
            if matches!(pe, PathElement::Field(_)) && !c.is_empty() {
                out.members.insert(pe.clone());
            }
            out.children.insert(pe.clone(), c.with_named_fields_as_members());
        }
        out
    }

    /// Removes the paths below the top-level fields `keep` says no to.
    pub fn filter_top(&self, keep: &dyn Fn(&PathElement) -> bool) -> Set {
        let mut out = Set::new();
        out.members = self.members.iter().filter(|pe| keep(pe)).cloned().collect();
        out.children = self.children.iter().filter(|(pe, _)| keep(pe)).map(|(pe, c)| (pe.clone(), c.clone())).collect();
        out
    }

    /// Removes one subtree by path (the member and everything below).
    pub fn remove_prefix(&mut self, path: &[PathElement]) {
        match path {
            [] => {}
            [last] => {
                self.members.remove(last);
                self.children.remove(last);
            }
            [first, rest @ ..] => {
                if let Some(c) = self.children.get_mut(first) {
                    c.remove_prefix(rest);
                    if c.is_empty() {
                        self.children.remove(first);
                    }
                }
            }
        }
    }

    /// The FieldsV1 object: `{"f:spec": {"f:replicas": {}}}`, `"."` marking a member with children.
    pub fn to_fields_v1(&self) -> Value {
        Value::Object(self.emit(false))
    }

    fn emit(&self, include_self: bool) -> Map<String, Value> {
        let mut out = Map::new();
        if include_self && !self.is_empty() {
            out.insert(".".into(), Value::Object(Map::new()));
        }
        let mut keys: BTreeSet<&PathElement> = self.members.iter().collect();
        keys.extend(self.children.keys().filter(|pe| !self.children[*pe].is_empty()));
        for pe in keys {
            let value = match self.children.get(pe).filter(|c| !c.is_empty()) {
                Some(c) => c.emit(self.members.contains(pe)),
                None => Map::new(),
            };
            out.insert(pe.to_v1(), Value::Object(value));
        }
        out
    }

    /// Parses a FieldsV1 object.
    pub fn from_fields_v1(v: &Value) -> Result<Set, String> {
        let Some(obj) = v.as_object() else {
            return Err("fieldsV1 must be an object".into());
        };
        let mut out = Set::new();
        for (k, child) in obj {
            if k == "." {
                continue;
            }
            let pe = PathElement::from_v1(k).ok_or_else(|| format!("invalid field path element {k:?}"))?;
            let Some(child_obj) = child.as_object() else {
                return Err(format!("the value of {k:?} must be an object"));
            };
            if child_obj.is_empty() || child_obj.contains_key(".") {
                out.members.insert(pe.clone());
            }
            let c = Set::from_fields_v1(child)?;
            if !c.is_empty() {
                out.children.insert(pe, c);
            }
        }
        Ok(out)
    }
}
