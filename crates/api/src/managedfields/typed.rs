//! Schema-aware walks over JSON objects, as structured-merge-diff's `typed` package: the set of fields
//! a value sets, the merge of an applied configuration into a live object, the comparison of two
//! objects (fields added, modified, removed) and the removal of fields no manager owns any more.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::path::{Path, PathElement};
use super::schema::{ListType, Node, Shape};
use super::set::Set;

/// The path element of a list item at `index`.
pub fn item_element(item: &Value, list: &ListType, index: usize) -> PathElement {
    match list {
        ListType::Set => PathElement::Value(item.clone()),
        ListType::Map(keys) => PathElement::key_of(item, keys).unwrap_or(PathElement::Index(index as i64)),
        ListType::Atomic => PathElement::Index(index as i64),
    }
}

fn is_leaf(v: &Value, node: &Node) -> bool {
    match node.shape_for(v) {
        Shape::Scalar | Shape::Untyped => true,
        Shape::Map { atomic } => atomic || v.as_object().is_none_or(Map::is_empty),
        Shape::List(ListType::Atomic) => true,
        Shape::List(_) => v.is_null(),
    }
}

/// The fields `v` sets (upstream's `ToFieldSet`): scalars, atomic values, list items, map entries and
/// empty or null structs are members; structs with content contribute their fields.
pub fn field_set(v: &Value, node: &Node) -> Set {
    let mut out = Set::new();
    match (node.shape_for(v), v) {
        (Shape::Map { atomic: false }, Value::Object(m)) => {
            for (k, val) in m {
                let pe = PathElement::Field(k.clone());
                let child = node.field(k);
                let c = field_set(val, &child);
                if is_leaf(val, &child) || !node.declares(k) {
                    out.members.insert(pe.clone());
                }
                if !c.is_empty() {
                    out.children.insert(pe, c);
                }
            }
        }
        (Shape::List(list @ (ListType::Set | ListType::Map(_))), Value::Array(items)) => {
            let item_node = node.items();
            for (i, item) in items.iter().enumerate() {
                let pe = item_element(item, &list, i);
                let c = field_set(item, &item_node);
                out.members.insert(pe.clone());
                if !c.is_empty() {
                    out.children.insert(pe, c);
                }
            }
        }
        _ => {}
    }
    out
}

/// The list's items by path element (the first of duplicates wins).
fn index_items<'v>(items: &'v [Value], list: &ListType) -> (Vec<PathElement>, BTreeMap<PathElement, &'v Value>) {
    let mut pes = Vec::with_capacity(items.len());
    let mut observed = BTreeMap::new();
    for (i, item) in items.iter().enumerate() {
        let pe = item_element(item, list, i);
        observed.entry(pe.clone()).or_insert(item);
        pes.push(pe);
    }
    (pes, observed)
}

/// Merges an applied configuration `rhs` into `lhs`: granular maps and lists merge item by item,
/// everything else is replaced. A null in the configuration removes the field.
pub fn merge(lhs: Option<&Value>, rhs: &Value, node: &Node) -> Value {
    let Some(l) = lhs else {
        return strip_nulls(rhs.clone());
    };
    match (node.shape_for(rhs), l, rhs) {
        (Shape::Map { atomic: false }, Value::Object(lm), Value::Object(rm)) => {
            let mut out = lm.clone();
            for (k, rv) in rm {
                let merged = merge(lm.get(k), rv, &node.field(k));
                if merged.is_null() {
                    out.remove(k);
                } else {
                    out.insert(k.clone(), merged);
                }
            }
            Value::Object(out)
        }
        (Shape::List(list @ (ListType::Set | ListType::Map(_))), Value::Array(la), Value::Array(ra)) => {
            Value::Array(merge_list(la, ra, &list, &node.items()))
        }
        _ => strip_nulls(rhs.clone()),
    }
}

/// Removes null map entries (a typed decode drops them).
fn strip_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            Value::Object(m.into_iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k, strip_nulls(v))).collect())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(strip_nulls).collect()),
        other => other,
    }
}

/// structured-merge-diff's list merge: items keep the live order, applied items shared with the live
/// list are merged where the configuration orders them, new items come after their predecessors.
fn merge_list(l: &[Value], r: &[Value], list: &ListType, items: &Node) -> Vec<Value> {
    let (rpes, obs_r) = index_items(r, list);
    let (lpes, obs_l) = index_items(l, list);
    let shared: Vec<&PathElement> = rpes.iter().filter(|pe| obs_l.contains_key(*pe)).collect();
    let mut shared_at = 0;
    let mut merged_rhs: BTreeSet<PathElement> = BTreeSet::new();
    let mut out = Vec::with_capacity(l.len().max(r.len()));
    let (mut li, mut ri) = (0, 0);
    while li < lpes.len() || ri < rpes.len() {
        if li < lpes.len() && ri < rpes.len() {
            let pe = &lpes[li];
            if *pe == rpes[ri] {
                merged_rhs.insert(pe.clone());
                out.push(merge(obs_l.get(pe).copied(), obs_r[pe], items));
                li += 1;
                ri += 1;
                shared_at += 1;
                continue;
            }
            if obs_r.contains_key(pe) && shared.get(shared_at).is_some_and(|s| *s != pe) {
                li += 1;
                continue;
            }
        }
        if li < lpes.len() {
            let pe = &lpes[li];
            if !obs_r.contains_key(pe) {
                out.push(l[li].clone());
                li += 1;
                continue;
            } else if merged_rhs.contains(pe) {
                li += 1;
                continue;
            }
        }
        if ri < rpes.len() {
            let pe = &rpes[ri];
            if merged_rhs.insert(pe.clone()) {
                out.push(merge(obs_l.get(pe).copied(), obs_r[pe], items));
            }
            ri += 1;
            if shared.get(shared_at).is_some_and(|s| *s == pe) {
                shared_at += 1;
            }
        }
    }
    out
}

/// The fields that differ between two objects.
#[derive(Debug, Default)]
pub struct Comparison {
    pub added: Set,
    pub modified: Set,
    pub removed: Set,
}

impl Comparison {
    /// Added or modified fields.
    pub fn changed(&self) -> Set {
        self.added.union(&self.modified)
    }
}

/// Compares `lhs` (live) and `rhs` (new).
pub fn compare(lhs: &Value, rhs: &Value, node: &Node) -> Comparison {
    let mut out = Comparison::default();
    compare_at(Some(lhs), Some(rhs), node, &mut Vec::new(), &mut out, false);
    out
}

fn compare_at(l: Option<&Value>, r: Option<&Value>, node: &Node, path: &mut Path, out: &mut Comparison, mark_self: bool) {
    let (lshape, rshape) = (l.map(|v| node.shape_for(v)), r.map(|v| node.shape_for(v)));
    let shape = match (&lshape, &rshape) {
        (None, None) => return,
        (Some(a), Some(b)) if a != b => Shape::Scalar,
        (Some(a), _) | (None, Some(a)) => a.clone(),
    };
    let leaf = |out: &mut Comparison| match (l, r) {
        (None, _) => out.added.insert(path),
        (_, None) => out.removed.insert(path),
        (Some(a), Some(b)) if a != b => out.modified.insert(path),
        _ => {}
    };
    match shape {
        Shape::Map { atomic: false } => {
            let (lm, rm) = (l.and_then(Value::as_object), r.and_then(Value::as_object));
            if lm.is_none_or(Map::is_empty) && rm.is_none_or(Map::is_empty) {
                leaf(out);
                return;
            }
            let mut keys: Vec<&String> = lm.map(|m| m.keys().collect()).unwrap_or_default();
            if let Some(rm) = rm {
                keys.extend(rm.keys().filter(|k| lm.is_none_or(|lm| !lm.contains_key(*k))));
            }
            for k in keys {
                let child = node.field(k);
                let marked = !node.declares(k) || child_is_marked(node, k, &child, lm.and_then(|m| m.get(k)).or(rm.and_then(|m| m.get(k))));
                path.push(PathElement::Field(k.clone()));
                compare_at(lm.and_then(|m| m.get(k)), rm.and_then(|m| m.get(k)), &child, path, out, marked);
                path.pop();
            }
        }
        Shape::List(ref list @ (ListType::Set | ListType::Map(_))) => {
            let la = l.and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
            let ra = r.and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
            let (_, obs_r) = index_items(ra, list);
            let (lpes, obs_l) = index_items(la, list);
            let items = node.items();
            let mut seen = BTreeSet::new();
            for (pe, item) in lpes.iter().zip(la) {
                if !seen.insert(pe.clone()) {
                    continue;
                }
                path.push(pe.clone());
                compare_at(Some(item), obs_r.get(pe).copied(), &items, path, out, true);
                path.pop();
            }
            for (pe, item) in obs_r {
                if obs_l.contains_key(&pe) {
                    continue;
                }
                path.push(pe);
                compare_at(None, Some(item), &items, path, out, true);
                path.pop();
            }
        }
        _ => {
            leaf(out);
            return;
        }
    }
    if mark_self {
        match (l, r) {
            (None, _) => out.added.insert(path),
            (_, None) => out.removed.insert(path),
            _ => {}
        }
    }
}

/// Whether a declared field's own path is recorded when it appears or goes (with `.`): upstream does
/// for Go maps and optional slices, which are absent when empty; Go structs are always present.
fn child_is_marked(parent: &Node, name: &str, child: &Node, v: Option<&Value>) -> bool {
    match v.map(|v| child.shape_for(v)) {
        Some(Shape::List(ListType::Set | ListType::Map(_))) => !parent.requires(name),
        Some(Shape::Map { atomic: false }) => child.is_plain_map() || matches!(child.shape(), Shape::Untyped),
        _ => false,
    }
}

/// Removes from `v` the items in `last` (what a manager applied before) that `keep` (what every manager
/// owns now) does not hold. Both sets have named fields as members.
pub fn prune(v: &mut Value, last: &Set, keep: &Set, node: &Node) {
    let mut elements: BTreeSet<&PathElement> = last.members.iter().collect();
    elements.extend(last.children.keys());
    let empty = Set::new();
    for pe in elements {
        if last.members.contains(pe) && !keep.members.contains(pe) {
            remove_item(v, pe, node);
            continue;
        }
        if let Some(below) = last.children.get(pe) {
            let keep_below = keep.children.get(pe).unwrap_or(&empty);
            if let Some((child, child_node)) = child_mut(v, pe, node) {
                prune(child, below, keep_below, &child_node);
            }
        }
    }
}

fn list_type(v: &Value, node: &Node) -> Option<ListType> {
    match node.shape_for(v) {
        Shape::List(l) => Some(l),
        _ => None,
    }
}

fn child_mut<'v, 'n>(v: &'v mut Value, pe: &PathElement, node: &Node<'n>) -> Option<(&'v mut Value, Node<'n>)> {
    match pe {
        PathElement::Field(k) => {
            let child = node.field(k);
            v.as_object_mut()?.get_mut(k).map(|c| (c, child))
        }
        _ => {
            let list = list_type(v, node)?;
            let items = node.items();
            let arr = v.as_array_mut()?;
            let i = (0..arr.len()).find(|i| item_element(&arr[*i], &list, *i) == *pe)?;
            Some((&mut arr[i], items))
        }
    }
}

fn remove_item(v: &mut Value, pe: &PathElement, node: &Node) {
    match pe {
        PathElement::Field(k) => {
            if let Some(m) = v.as_object_mut() {
                m.remove(k);
            }
        }
        _ => {
            let Some(list) = list_type(v, node) else { return };
            if let Some(arr) = v.as_array_mut() {
                let mut i = 0;
                arr.retain(|item| {
                    let keep = item_element(item, &list, i) != *pe;
                    i += 1;
                    keep
                });
            }
        }
    }
}
