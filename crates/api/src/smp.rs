//! Strategic merge patch (`application/strategic-merge-patch+json`) over `serde_json::Value`, applying a
//! patch with the semantics of upstream `k8s.io/apimachinery/pkg/util/strategicpatch`
//! (`StrategicMergeMapPatch`): maps merge, `null` deletes, lists merge by their `x-kubernetes-patch-merge-key`
//! when their `x-kubernetes-patch-strategy` is `merge` and are replaced otherwise, and the directives
//! `$patch`, `$retainKeys`, `$setElementOrder/<list>` and `$deleteFromPrimitiveList/<list>` are honoured and
//! never left in the result.
//!
//! Deviations from upstream, all towards a cleaner stored object: values taken from the patch as a whole
//! (a field absent from the original, a replaced list, a list item appended) are cleaned of nulls and
//! directives recursively, where upstream only drops nulls and `$patch` maps; `$patch: replace` on a map
//! absent from the original keeps the map rather than dropping it; `$deleteFromPrimitiveList/<list>` on a
//! list without a merge strategy deletes the listed values instead of replacing the list with them.

use serde_json::{Map, Value};

use crate::openapi::{FieldMeta, PatchMeta};

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList";

type Obj = Map<String, Value>;

/// Why a strategic merge patch could not be applied (the API answers 400/422 with the message).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SmpError {
    #[error("the object to patch must be a JSON object, not {0}")]
    OriginalNotObject(&'static str),
    #[error("the strategic merge patch must be a JSON object, not {0}")]
    PatchNotObject(&'static str),
    #[error("invalid patch at {path}: unknown $patch directive {value} (expected \"replace\" or \"delete\")")]
    UnknownDirective { path: String, value: String },
    #[error("invalid patch at {path}: {item} does not contain declared merge key: {key}")]
    MissingMergeKey { path: String, key: String, item: String },
    #[error("invalid patch at {path}: {message}")]
    Invalid { path: String, message: String },
}

fn display_path(path: &str) -> String {
    if path.is_empty() {
        "the root".to_string()
    } else {
        path.to_string()
    }
}

fn invalid(path: &str, message: impl Into<String>) -> SmpError {
    SmpError::Invalid {
        path: display_path(path),
        message: message.into(),
    }
}

fn missing_key(path: &str, key: &str, item: &Value) -> SmpError {
    SmpError::MissingMergeKey {
        path: display_path(path),
        key: key.to_string(),
        item: item.to_string(),
    }
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Applies a strategic merge patch to `original`. `meta` describes the object's kind
/// ([`crate::openapi::Schemas::patch_meta`]); without it (kinds with no schema) maps merge and lists are
/// replaced, like a JSON merge patch that also honours the directives.
pub fn strategic_merge_patch(original: &Value, patch: &Value, meta: Option<&PatchMeta<'_>>) -> Result<Value, SmpError> {
    let Value::Object(original) = original else {
        return Err(SmpError::OriginalNotObject(type_name(original)));
    };
    let Value::Object(patch) = patch else {
        return Err(SmpError::PatchNotObject(type_name(patch)));
    };
    merge_map(original.clone(), patch.clone(), meta.copied(), "").map(Value::Object)
}

/// Merges `patch` into `original` (upstream `mergeMap`).
fn merge_map(mut original: Obj, mut patch: Obj, meta: Option<PatchMeta<'_>>, path: &str) -> Result<Obj, SmpError> {
    if let Some(directive) = patch.get(DIRECTIVE) {
        return match directive.as_str() {
            Some("replace") => {
                patch.shift_remove(DIRECTIVE);
                // The patch replaces the map; merging it into nothing cleans it of directives and nulls.
                merge_map(Obj::new(), patch, meta, path)
            }
            Some("delete") => Ok(Obj::new()),
            _ => Err(SmpError::UnknownDirective {
                path: display_path(path),
                value: directive.to_string(),
            }),
        };
    }
    apply_retain_keys(&mut original, &mut patch, path)?;
    merge_set_element_order(&mut original, &mut patch, meta, path)?;

    for (key, value) in patch {
        let (key, is_delete_list) = match key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
            Some(rest) => match rest.strip_prefix('/').filter(|k| !k.is_empty()) {
                Some(name) => (name.to_string(), true),
                None => {
                    return Err(invalid(
                        path,
                        format!("{key:?}: write {DELETE_FROM_PRIMITIVE_LIST}/<field>"),
                    ));
                }
            },
            None => (key, false),
        };
        let field_path = child(path, &key);
        let field = meta.and_then(|m| m.field(&key));
        if value.is_null() {
            if !is_delete_list {
                original.shift_remove(&key);
            }
            continue;
        }
        let Some(slot) = original.get_mut(&key) else {
            if !is_delete_list && let Some(v) = materialize(value, field, &field_path)? {
                original.insert(key, v);
            }
            continue;
        };
        let current = std::mem::take(slot);
        let merged = match (current, value) {
            (Value::Object(o), Value::Object(p)) => {
                let object_meta = field.and_then(|f| f.object());
                if strategy(field, &field_path)? == Some("replace") {
                    Some(Value::Object(merge_map(Obj::new(), p, object_meta, &field_path)?))
                } else {
                    Some(Value::Object(merge_map(o, p, object_meta, &field_path)?))
                }
            }
            (Value::Array(o), Value::Array(p)) => Some(Value::Array(merge_list_field(
                o,
                p,
                field,
                is_delete_list,
                &field_path,
            )?)),
            (current, _) if is_delete_list => Some(current),
            (_, value) => materialize(value, field, &field_path)?,
        };
        match merged {
            Some(v) => *slot = v,
            None => {
                original.shift_remove(&key);
            }
        }
    }
    Ok(original)
}

/// The field's patch strategy without `retainKeys` (which only matters when a patch is computed).
fn strategy<'a>(field: Option<FieldMeta<'a>>, path: &str) -> Result<Option<&'a str>, SmpError> {
    let Some(raw) = field.and_then(|f| f.patch_strategy()) else {
        return Ok(None);
    };
    let rest: Vec<&str> = raw
        .split(',')
        .map(str::trim)
        .filter(|s| *s != "retainKeys" && !s.is_empty())
        .collect();
    match rest.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one)),
        _ => Err(invalid(
            path,
            format!("unexpected patch strategy {raw:?} in the schema"),
        )),
    }
}

/// A patch value with nothing to merge into, made fit for the result: nulls and directives removed
/// (`None` when the value is itself a `$patch: delete` map).
fn materialize(value: Value, field: Option<FieldMeta<'_>>, path: &str) -> Result<Option<Value>, SmpError> {
    match value {
        Value::Object(map) => {
            if map.get(DIRECTIVE).and_then(Value::as_str) == Some("delete") {
                return Ok(None);
            }
            Ok(Some(Value::Object(merge_map(
                Obj::new(),
                map,
                field.and_then(|f| f.object()),
                path,
            )?)))
        }
        Value::Array(items) => Ok(Some(Value::Array(clean_list(
            items,
            field.and_then(|f| f.items()),
            path,
        )?))),
        other => Ok(Some(other)),
    }
}

/// A list taken from the patch as a whole: `$patch` marker items dropped, objects cleaned.
fn clean_list(items: Vec<Value>, item_meta: Option<PatchMeta<'_>>, path: &str) -> Result<Vec<Value>, SmpError> {
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        match item {
            Value::Object(map) if map.contains_key(DIRECTIVE) => {}
            Value::Object(map) => out.push(Value::Object(merge_map(
                Obj::new(),
                map,
                item_meta,
                &format!("{path}[{i}]"),
            )?)),
            Value::Array(inner) => out.push(Value::Array(clean_list(inner, None, &format!("{path}[{i}]"))?)),
            other => out.push(other),
        }
    }
    Ok(out)
}

/// Merges two lists held by one field (upstream `mergeSliceHandler`).
fn merge_list_field(
    original: Vec<Value>,
    patch: Vec<Value>,
    field: Option<FieldMeta<'_>>,
    is_delete_list: bool,
    path: &str,
) -> Result<Vec<Value>, SmpError> {
    if strategy(field, path)? == Some("merge") {
        let merge_key = field.and_then(|f| f.merge_key());
        merge_list(
            original,
            patch,
            merge_key,
            field.and_then(|f| f.items()),
            is_delete_list,
            path,
        )
    } else if is_delete_list {
        Ok(delete_from(original, &patch))
    } else {
        clean_list(patch, field.and_then(|f| f.items()), path)
    }
}

/// The kind of the elements of one or more lists, for deciding how they merge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Null,
    Bool,
    Number,
    String,
    Object,
}

fn element_kind(lists: &[&[Value]], path: &str) -> Result<Option<Kind>, SmpError> {
    let mut kind = None;
    for item in lists.iter().flat_map(|l| l.iter()) {
        let k = match item {
            Value::Null => Kind::Null,
            Value::Bool(_) => Kind::Bool,
            Value::Number(_) => Kind::Number,
            Value::String(_) => Kind::String,
            Value::Object(_) => Kind::Object,
            Value::Array(_) => return Err(invalid(path, "lists of lists are not supported")),
        };
        match kind {
            None => kind = Some(k),
            Some(prev) if prev != k => return Err(invalid(path, "list element types are not identical")),
            Some(_) => {}
        }
    }
    Ok(kind)
}

/// JSON equality with numbers compared by value (`80` equals `80.0`, as in Go's decoded JSON).
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64(), x.as_u64(), y.as_u64()) {
            (Some(x), Some(y), _, _) => x == y,
            (_, _, Some(x), Some(y)) => x == y,
            _ => x.as_f64() == y.as_f64(),
        },
        _ => a == b,
    }
}

fn key_of<'v>(item: &'v Value, key: &str) -> Option<&'v Value> {
    item.as_object().and_then(|m| m.get(key))
}

fn is_delete_item(item: &Value) -> bool {
    key_of(item, DIRECTIVE).and_then(Value::as_str) == Some("delete")
}

fn delete_from(current: Vec<Value>, to_delete: &[Value]) -> Vec<Value> {
    current
        .into_iter()
        .filter(|v| !to_delete.iter().any(|d| json_eq(v, d)))
        .collect()
}

/// Merges two lists with the `merge` strategy (upstream `mergeSlice`).
fn merge_list(
    original: Vec<Value>,
    patch: Vec<Value>,
    merge_key: Option<&str>,
    item_meta: Option<PatchMeta<'_>>,
    is_delete_list: bool,
    path: &str,
) -> Result<Vec<Value>, SmpError> {
    let Some(kind) = element_kind(&[&original, &patch], path)? else {
        return Ok(original);
    };
    if kind != Kind::Object {
        if is_delete_list {
            return Ok(delete_from(original, &patch));
        }
        let mut merged: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
        for v in original.iter().chain(patch.iter()) {
            if !merged.iter().any(|m| json_eq(m, v)) {
                merged.push(v.clone());
            }
        }
        let (patch_items, server_only) = partition_primitives(merged, &patch);
        return normalize_element_order(patch_items, server_only, &patch, &original, None, kind, path);
    }
    let Some(key) = merge_key else {
        return Err(invalid(path, "cannot merge lists of objects without a merge key"));
    };
    let (original, patch) = apply_special_items(original, patch, key, item_meta, path)?;
    let mut merged = original.clone();
    for item in &patch {
        let Value::Object(map) = item else {
            return Err(invalid(path, "list element types are not identical"));
        };
        let Some(value) = map.get(key) else {
            return Err(missing_key(path, key, item));
        };
        let item_path = format!("{path}[{key}={value}]");
        match merged
            .iter()
            .position(|o| key_of(o, key).is_some_and(|v| json_eq(v, value)))
        {
            Some(i) => {
                let current = match std::mem::take(&mut merged[i]) {
                    Value::Object(m) => m,
                    _ => Obj::new(),
                };
                merged[i] = Value::Object(merge_map(current, map.clone(), item_meta, &item_path)?);
            }
            None => merged.push(Value::Object(merge_map(
                Obj::new(),
                map.clone(),
                item_meta,
                &item_path,
            )?)),
        }
    }
    let (patch_items, server_only) = partition_maps(merged, &patch, key, path)?;
    normalize_element_order(patch_items, server_only, &patch, &original, Some(key), kind, path)
}

/// Handles `$patch` items of a merging list (upstream `mergeSliceWithSpecialElements`): `delete` removes
/// the original items with that key, `replace` makes the other patch items the whole list. Returns the
/// original list and the patch without its special items.
fn apply_special_items(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    key: &str,
    item_meta: Option<PatchMeta<'_>>,
    path: &str,
) -> Result<(Vec<Value>, Vec<Value>), SmpError> {
    let mut rest = Vec::with_capacity(patch.len());
    let mut replace = false;
    for item in patch {
        let Some(directive) = key_of(&item, DIRECTIVE) else {
            rest.push(item);
            continue;
        };
        match directive.as_str() {
            Some("delete") => {
                let Some(value) = key_of(&item, key) else {
                    return Err(missing_key(path, key, &item));
                };
                original.retain(|o| !key_of(o, key).is_some_and(|v| json_eq(v, value)));
            }
            Some("replace") => replace = true,
            Some("merge") => return Err(invalid(path, "merging lists cannot yet be specified in the patch")),
            _ => {
                return Err(SmpError::UnknownDirective {
                    path: display_path(path),
                    value: directive.to_string(),
                });
            }
        }
    }
    if replace {
        return Ok((clean_list(rest, item_meta, path)?, Vec::new()));
    }
    Ok((original, rest))
}

fn partition_primitives(merged: Vec<Value>, by: &[Value]) -> (Vec<Value>, Vec<Value>) {
    merged.into_iter().partition(|v| by.iter().any(|b| json_eq(v, b)))
}

fn partition_maps(
    merged: Vec<Value>,
    by: &[Value],
    key: &str,
    path: &str,
) -> Result<(Vec<Value>, Vec<Value>), SmpError> {
    let mut inside = Vec::new();
    let mut outside = Vec::new();
    for item in merged {
        let Some(value) = key_of(&item, key) else {
            return Err(missing_key(path, key, &item));
        };
        if by.iter().any(|b| key_of(b, key).is_some_and(|v| json_eq(v, value))) {
            inside.push(item);
        } else {
            outside.push(item);
        }
    }
    Ok((inside, outside))
}

/// The position of `value` in `list`, comparing merge-key values for objects.
fn index_of(list: &[Value], value: &Value, key: Option<&str>, kind: Kind) -> Option<usize> {
    match (kind, key) {
        (Kind::Object, Some(key)) => {
            let want = key_of(value, key);
            list.iter().position(|v| match (key_of(v, key), want) {
                (Some(a), Some(b)) => json_eq(a, b),
                (None, None) => true,
                _ => false,
            })
        }
        _ => list.iter().position(|v| json_eq(v, value)),
    }
}

/// Sorts `to_sort` by the positions of its items in `order` (upstream `normalizeSliceOrder`); items not in
/// `order` keep their relative order after those that are, and `$patch: delete` items go last.
fn normalize_slice_order(
    to_sort: Vec<Value>,
    order: &[Value],
    key: Option<&str>,
    kind: Kind,
    path: &str,
) -> Result<Vec<Value>, SmpError> {
    let mut to_delete = Vec::new();
    let mut items = to_sort;
    if kind == Kind::Object {
        let key = key.unwrap_or_default();
        for item in items.iter().chain(order.iter()) {
            if key_of(item, key).is_none() {
                return Err(missing_key(path, key, item));
            }
        }
        let (delete, keep): (Vec<Value>, Vec<Value>) = items.into_iter().partition(is_delete_item);
        items = keep;
        to_delete = delete;
    }
    let mut indexed: Vec<(Option<usize>, Value)> =
        items.into_iter().map(|v| (index_of(order, &v, key, kind), v)).collect();
    // Stable: equal positions (and all unknown ones) keep their relative order.
    indexed.sort_by_key(|(i, _)| i.map_or((1, 0), |i| (0, i)));
    let mut out: Vec<Value> = indexed.into_iter().map(|(_, v)| v).collect();
    out.extend(to_delete);
    Ok(out)
}

/// Orders a merged list (upstream `normalizeElementOrder`): patch items by `patch_order`, server-only
/// items by `server_order`, then the two interleaved by their positions in the server's list.
fn normalize_element_order(
    patch_items: Vec<Value>,
    server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    key: Option<&str>,
    kind: Kind,
    path: &str,
) -> Result<Vec<Value>, SmpError> {
    let patch_items = normalize_slice_order(patch_items, patch_order, key, kind, path)?;
    let server_only = normalize_slice_order(server_only, server_order, key, kind, path)?;
    Ok(merge_sorted(server_only, patch_items, server_order, key, kind))
}

/// Interleaves two sorted lists (upstream `mergeSortedSlice`): an item of `left` goes before the next item
/// of `right` only when both are in `server_order` and it comes first there.
fn merge_sorted(
    left: Vec<Value>,
    right: Vec<Value>,
    server_order: &[Value],
    key: Option<&str>,
    kind: Kind,
) -> Vec<Value> {
    let mut out = Vec::with_capacity(left.len() + right.len());
    let mut left = left.into_iter().peekable();
    let mut right = right.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => {
                match (
                    index_of(server_order, l, key, kind),
                    index_of(server_order, r, key, kind),
                ) {
                    (Some(li), Some(ri)) => li < ri,
                    _ => false,
                }
            }
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    out
}

/// Applies the `$retainKeys` directive (upstream `applyRetainKeysDirective`): keys of the original not
/// listed are cleared, and every key the patch sets must be listed.
fn apply_retain_keys(original: &mut Obj, patch: &mut Obj, path: &str) -> Result<(), SmpError> {
    let Some(retain) = patch.shift_remove(RETAIN_KEYS) else {
        return Ok(());
    };
    let Value::Array(retain) = retain else {
        return Err(invalid(path, format!("{RETAIN_KEYS} must be a list of field names")));
    };
    let listed = |k: &str| retain.iter().any(|v| v.as_str() == Some(k));
    for (k, v) in patch.iter() {
        if v.is_null() || k.starts_with(DELETE_FROM_PRIMITIVE_LIST) || k.starts_with(SET_ELEMENT_ORDER) {
            continue;
        }
        if !listed(k) {
            return Err(invalid(
                path,
                format!("invalid patch format of {RETAIN_KEYS}: the patch sets {k:?}, which it does not list"),
            ));
        }
    }
    original.retain(|k, _| listed(k));
    Ok(())
}

/// Applies the `$setElementOrder/<list>` directives (upstream `mergePatchIntoOriginal`): the list and
/// its patch are merged here and the result ordered as the directive says, server-only items keeping
/// their relative place; the list is then removed from the patch.
fn merge_set_element_order(
    original: &mut Obj,
    patch: &mut Obj,
    meta: Option<PatchMeta<'_>>,
    path: &str,
) -> Result<(), SmpError> {
    let keys: Vec<String> = patch
        .keys()
        .filter(|k| k.starts_with(SET_ELEMENT_ORDER))
        .cloned()
        .collect();
    for directive_key in keys {
        let Some(order) = patch.shift_remove(&directive_key) else {
            continue;
        };
        let Some(name) = directive_key
            .strip_prefix(SET_ELEMENT_ORDER)
            .and_then(|r| r.strip_prefix('/'))
            .filter(|n| !n.is_empty())
        else {
            return Err(invalid(
                path,
                format!("{directive_key:?}: write {SET_ELEMENT_ORDER}/<field>"),
            ));
        };
        let Value::Array(order) = order else {
            return Err(invalid(path, format!("{directive_key} must be a list")));
        };
        let field_path = child(path, name);
        let field = meta.and_then(|m| m.field(name));
        let as_list = |v: Option<&Value>, what: &str| -> Result<Option<Vec<Value>>, SmpError> {
            match v {
                None => Ok(None),
                Some(Value::Array(a)) => Ok(Some(a.clone())),
                Some(other) => Err(invalid(
                    &field_path,
                    format!("the {what} value must be a list, not {}", type_name(other)),
                )),
            }
        };
        let original_list = as_list(original.get(name), "original")?;
        let patch_list = as_list(patch.get(name), "patch")?;
        let merge_key = field.and_then(|f| f.merge_key());
        validate_order(
            patch_list.as_deref().unwrap_or_default(),
            &order,
            merge_key,
            &field_path,
        )?;
        let original_items = original_list.clone().unwrap_or_default();
        let patch_items = patch_list.clone().unwrap_or_default();
        let merged = match (original_list, patch_list) {
            (Some(o), None) => o,
            (None, Some(p)) => clean_list(p, field.and_then(|f| f.items()), &field_path)?,
            (Some(o), Some(p)) => merge_list_field(o, p, field, false, &field_path)?,
            (None, None) => continue,
        };
        let ordered = match element_kind(&[&original_items, &patch_items], &field_path)? {
            None => merged,
            Some(Kind::Object) => match merge_key {
                Some(key) => {
                    let (in_order, server_only) = partition_maps(merged, &order, key, &field_path)?;
                    normalize_element_order(
                        in_order,
                        server_only,
                        &order,
                        &original_items,
                        Some(key),
                        Kind::Object,
                        &field_path,
                    )?
                }
                // Objects without a merge key cannot be matched against the order: keep the merge result.
                None => merged,
            },
            Some(kind) => {
                let (in_order, server_only) = partition_primitives(merged, &order);
                normalize_element_order(in_order, server_only, &order, &original_items, None, kind, &field_path)?
            }
        };
        original.insert(name.to_string(), Value::Array(ordered));
        patch.shift_remove(name);
    }
    Ok(())
}

/// Checks that the patch list's items appear in the `$setElementOrder` list in the same relative order
/// (upstream `validatePatchWithSetOrderList`; `$patch: delete` items are ignored).
fn validate_order(patch_list: &[Value], order: &[Value], key: Option<&str>, path: &str) -> Result<(), SmpError> {
    if order.is_empty() || patch_list.is_empty() {
        return Ok(());
    }
    let items: Vec<&Value> = match key {
        Some(_) => {
            if let Some(bad) = patch_list.iter().find(|v| !v.is_object()) {
                return Err(invalid(
                    path,
                    format!("expected a list of objects, found {}", type_name(bad)),
                ));
            }
            patch_list.iter().filter(|v| !is_delete_item(v)).collect()
        }
        None => patch_list.iter().collect(),
    };
    let (mut pi, mut si) = (0, 0);
    while pi < items.len() && si < order.len() {
        if key_of(items[pi], DIRECTIVE).is_some() {
            pi += 1;
            continue;
        }
        let equal = match key {
            None => json_eq(items[pi], &order[si]),
            Some(key) => {
                let Some(l) = key_of(items[pi], key) else {
                    return Err(missing_key(path, key, items[pi]));
                };
                let Some(r) = key_of(&order[si], key) else {
                    return Err(missing_key(path, key, &order[si]));
                };
                json_eq(l, r)
            }
        };
        if equal {
            pi += 1;
        }
        si += 1;
    }
    if pi < items.len() {
        return Err(invalid(
            path,
            format!("the order of the patch list does not match its {SET_ELEMENT_ORDER} list"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::openapi::Schemas;

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "demo", "namespace": "default",
                "labels": {"app": "demo", "tier": "web"},
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{old}\n"},
                "finalizers": ["a.example/one", "b.example/two"]
            },
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "demo"}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                "template": {
                    "metadata": {"labels": {"app": "demo"}},
                    "spec": {
                        "containers": [{
                            "name": "app",
                            "image": "nginx:1.25",
                            "imagePullPolicy": "IfNotPresent",
                            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                            "ports": [{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 443, "protocol": "TCP"}]
                        }, {
                            "name": "sidecar", "image": "busybox"
                        }],
                        "volumes": [
                            {"name": "data", "emptyDir": {}},
                            {"name": "conf", "configMap": {"name": "conf"}}
                        ],
                        "tolerations": [
                            {"key": "a", "operator": "Exists"},
                            {"key": "b", "operator": "Exists"}
                        ]
                    }
                }
            }
        })
    }

    fn apply(schemas: &Schemas, original: &Value, patch: Value) -> Value {
        strategic_merge_patch(
            original,
            &patch,
            schemas.patch_meta("apps", "v1", "Deployment").as_ref(),
        )
        .unwrap()
    }

    fn pod_spec(v: &Value) -> &Value {
        &v["spec"]["template"]["spec"]
    }

    #[test]
    fn kubectl_apply_patch_changes_image_and_removes_env() {
        let s = Schemas::load();
        let patch = json!({
            "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{new}\n"}},
            "spec": {"replicas": 3, "template": {"spec": {
                "$setElementOrder/containers": [{"name": "app"}],
                "containers": [{"env": null, "image": "nginx:1.27", "name": "app"}]
            }}}
        });
        let out = apply(&s, &deployment(), patch);
        assert_eq!(out["spec"]["replicas"], 3);
        assert_eq!(
            out["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"],
            "{new}\n"
        );
        let containers = pod_spec(&out)["containers"].as_array().unwrap();
        assert_eq!(containers.len(), 2, "the server-only sidecar stays");
        assert_eq!(containers[0]["name"], "app");
        assert_eq!(containers[0]["image"], "nginx:1.27");
        assert!(containers[0].get("env").is_none());
        assert_eq!(containers[0]["imagePullPolicy"], "IfNotPresent");
        assert_eq!(containers[0]["ports"].as_array().unwrap().len(), 2);
        assert_eq!(containers[1]["name"], "sidecar");
        assert!(!out.to_string().contains("$setElementOrder"));
        assert_eq!(out["metadata"]["labels"]["tier"], "web");
    }

    #[test]
    fn kubectl_set_image_patch() {
        let s = Schemas::load();
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "app"}, {"name": "sidecar"}],
            "containers": [{"image": "busybox:1.36", "name": "sidecar"}]
        }}}});
        let out = apply(&s, &deployment(), patch);
        let containers = pod_spec(&out)["containers"].as_array().unwrap();
        assert_eq!(containers[0]["image"], "nginx:1.25");
        assert_eq!(containers[1], json!({"name": "sidecar", "image": "busybox:1.36"}));
    }

    #[test]
    fn set_element_order_reorders_and_keeps_server_only_items() {
        let s = Schemas::load();
        let mut original = deployment();
        original["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "third", "image": "x"}));
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "third"}, {"name": "app"}],
            "containers": [{"name": "third", "image": "y"}]
        }}}});
        let out = apply(&s, &original, patch);
        let names: Vec<&str> = pod_spec(&out)["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        // Upstream's interleaving: `sidecar` precedes `third` in the server's list, so it goes first.
        assert_eq!(names, ["sidecar", "third", "app"]);
        assert_eq!(pod_spec(&out)["containers"][1]["image"], "y");
    }

    #[test]
    fn env_merges_by_name() {
        let s = Schemas::load();
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "env": [{"name": "B", "value": "20"}, {"name": "C", "value": "3"}]}
        ]}}}});
        let out = apply(&s, &deployment(), patch);
        assert_eq!(
            pod_spec(&out)["containers"][0]["env"],
            json!([{"name": "A", "value": "1"}, {"name": "B", "value": "20"}, {"name": "C", "value": "3"}])
        );
    }

    #[test]
    fn ports_merge_by_container_port() {
        let s = Schemas::load();
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "ports": [{"containerPort": 443, "name": "https"}, {"containerPort": 8080}]}
        ]}}}});
        let out = apply(&s, &deployment(), patch);
        assert_eq!(
            pod_spec(&out)["containers"][0]["ports"],
            json!([
                {"containerPort": 80, "protocol": "TCP"},
                {"containerPort": 443, "protocol": "TCP", "name": "https"},
                {"containerPort": 8080}
            ])
        );
    }

    #[test]
    fn merge_keys_compare_numbers_by_value() {
        let s = Schemas::load();
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "ports": [{"containerPort": 80.0, "name": "http"}]}
        ]}}}});
        let out = apply(&s, &deployment(), patch);
        let ports = pod_spec(&out)["containers"][0]["ports"].as_array().unwrap();
        assert_eq!(ports.len(), 2);
        assert_eq!(ports[0]["name"], "http");
    }

    #[test]
    fn volumes_merge_by_name_and_retain_keys_switches_the_source() {
        let s = Schemas::load();
        let patch = json!({"spec": {"template": {"spec": {"volumes": [
            {"name": "data", "$retainKeys": ["name", "hostPath"], "hostPath": {"path": "/srv"}},
            {"name": "extra", "secret": {"secretName": "s"}}
        ]}}}});
        let out = apply(&s, &deployment(), patch);
        assert_eq!(
            pod_spec(&out)["volumes"],
            json!([
                {"name": "data", "hostPath": {"path": "/srv"}},
                {"name": "extra", "secret": {"secretName": "s"}},
                {"name": "conf", "configMap": {"name": "conf"}}
            ])
        );
    }

    #[test]
    fn retain_keys_on_strategy() {
        let s = Schemas::load();
        let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": null}}});
        let out = apply(&s, &deployment(), patch);
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
    }

    #[test]
    fn retain_keys_rejects_a_patch_setting_unlisted_keys() {
        let s = Schemas::load();
        let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": {}}}});
        let err = strategic_merge_patch(&deployment(), &patch, s.patch_meta("apps", "v1", "Deployment").as_ref())
            .unwrap_err();
        assert!(
            matches!(err, SmpError::Invalid { ref path, .. } if path == "spec.strategy"),
            "{err}"
        );
    }

    #[test]
    fn tolerations_are_replaced() {
        let s = Schemas::load();
        let patch = json!({"spec": {"template": {"spec": {"tolerations": [{"key": "c", "operator": "Exists"}]}}}});
        let out = apply(&s, &deployment(), patch);
        assert_eq!(
            pod_spec(&out)["tolerations"],
            json!([{"key": "c", "operator": "Exists"}])
        );
    }

    #[test]
    fn delete_from_primitive_list_and_union() {
        let s = Schemas::load();
        let patch = json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a.example/one"]}});
        let out = apply(&s, &deployment(), patch);
        assert_eq!(out["metadata"]["finalizers"], json!(["b.example/two"]));
        let patch = json!({"metadata": {"finalizers": ["c.example/three", "a.example/one"]}});
        let out = apply(&s, &deployment(), patch);
        // As upstream: patch items come in patch order; a server-only item goes before a patch item only
        // when both are in the server's list and it comes first there.
        assert_eq!(
            out["metadata"]["finalizers"],
            json!(["c.example/three", "a.example/one", "b.example/two"])
        );
    }

    #[test]
    fn patch_delete_removes_a_list_item() {
        let s = Schemas::load();
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "env": [{"$patch": "delete", "name": "A"}]},
            {"$patch": "delete", "name": "sidecar"}
        ]}}}});
        let out = apply(&s, &deployment(), patch);
        let containers = pod_spec(&out)["containers"].as_array().unwrap();
        assert_eq!(containers.len(), 1);
        assert_eq!(containers[0]["env"], json!([{"name": "B", "value": "2"}]));
    }

    #[test]
    fn patch_replace_in_a_list_replaces_it() {
        let s = Schemas::load();
        let patch = json!({"spec": {"template": {"spec": {"volumes": [
            {"name": "only", "emptyDir": {"medium": null}},
            {"$patch": "replace"}
        ]}}}});
        let out = apply(&s, &deployment(), patch);
        assert_eq!(pod_spec(&out)["volumes"], json!([{"name": "only", "emptyDir": {}}]));
    }

    #[test]
    fn patch_replace_and_delete_on_maps() {
        let s = Schemas::load();
        let patch = json!({"metadata": {"labels": {"$patch": "replace", "new": "1"}}});
        let out = apply(&s, &deployment(), patch);
        assert_eq!(out["metadata"]["labels"], json!({"new": "1"}));
        let patch = json!({"spec": {"selector": {"$patch": "delete"}}});
        let out = apply(&s, &deployment(), patch);
        assert_eq!(out["spec"]["selector"], json!({}));
    }

    #[test]
    fn null_deletes_a_label() {
        let s = Schemas::load();
        let patch = json!({"metadata": {"labels": {"tier": null, "new": "x", "absent": null}}});
        let out = apply(&s, &deployment(), patch);
        assert_eq!(out["metadata"]["labels"], json!({"app": "demo", "new": "x"}));
    }

    #[test]
    fn directives_never_reach_the_result() {
        let s = Schemas::load();
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "app"}, {"name": "sidecar"}, {"name": "new"}],
            "containers": [{
                "name": "new", "image": "x", "args": null,
                "$setElementOrder/env": [{"name": "E"}],
                "env": [{"name": "E", "value": "1"}, {"$patch": "delete", "name": "F"}],
                "resources": {"$retainKeys": ["limits"], "limits": {"cpu": "1"}}
            }],
            "nodeSelector": {"$patch": "replace", "disk": "ssd"},
            "affinity": {"$patch": "delete"}
        }}}});
        let out = apply(&s, &deployment(), patch);
        let text = out.to_string();
        for d in ["$patch", "$setElementOrder", "$retainKeys", "$deleteFromPrimitiveList"] {
            assert!(!text.contains(d), "{d} in {text}");
        }
        let spec = pod_spec(&out);
        assert_eq!(
            spec["containers"][2],
            json!({"name": "new", "image": "x", "env": [{"name": "E", "value": "1"}], "resources": {"limits": {"cpu": "1"}}})
        );
        assert_eq!(spec["nodeSelector"], json!({"disk": "ssd"}));
        assert!(spec.get("affinity").is_none());
    }

    #[test]
    fn unknown_kind_merges_maps_and_replaces_lists() {
        let original = json!({"spec": {"a": 1, "m": {"x": 1, "y": 2}, "list": [{"name": "a", "v": 1}]}});
        let patch = json!({"spec": {"m": {"y": null, "z": 3}, "list": [{"name": "b"}], "$retainKeys": null}});
        // `$retainKeys: null` is not a list: an error, not a panic.
        assert!(strategic_merge_patch(&original, &patch, None).is_err());
        let patch = json!({"spec": {"m": {"y": null, "z": 3}, "list": [{"name": "b"}]}});
        let out = strategic_merge_patch(&original, &patch, None).unwrap();
        assert_eq!(
            out,
            json!({"spec": {"a": 1, "m": {"x": 1, "z": 3}, "list": [{"name": "b"}]}})
        );
    }

    #[test]
    fn errors_are_reported_not_panicked() {
        let s = Schemas::load();
        let meta = s.patch_meta("apps", "v1", "Deployment");
        let meta = || meta.as_ref();
        let d = deployment();
        let missing = json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}});
        let err = strategic_merge_patch(&d, &missing, meta()).unwrap_err();
        assert!(
            matches!(err, SmpError::MissingMergeKey { ref key, .. } if key == "name"),
            "{err}"
        );
        assert!(err.to_string().contains("does not contain declared merge key: name"));

        let unknown = json!({"spec": {"selector": {"$patch": "explode"}}});
        assert!(matches!(
            strategic_merge_patch(&d, &unknown, meta()),
            Err(SmpError::UnknownDirective { .. })
        ));
        let unknown_item =
            json!({"spec": {"template": {"spec": {"containers": [{"$patch": "explode", "name": "app"}]}}}});
        assert!(matches!(
            strategic_merge_patch(&d, &unknown_item, meta()),
            Err(SmpError::UnknownDirective { .. })
        ));
        let merge_item = json!({"spec": {"template": {"spec": {"containers": [{"$patch": "merge", "name": "app"}]}}}});
        assert!(matches!(
            strategic_merge_patch(&d, &merge_item, meta()),
            Err(SmpError::Invalid { .. })
        ));

        let mixed = json!({"metadata": {"finalizers": [{"a": 1}]}});
        assert!(matches!(
            strategic_merge_patch(&d, &mixed, meta()),
            Err(SmpError::Invalid { .. })
        ));
        let bad_order = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "sidecar"}],
            "containers": [{"name": "app", "image": "x"}]
        }}}});
        assert!(matches!(
            strategic_merge_patch(&d, &bad_order, meta()),
            Err(SmpError::Invalid { .. })
        ));
        let bad_prefix = json!({"metadata": {"$deleteFromPrimitiveList": ["x"]}});
        assert!(matches!(
            strategic_merge_patch(&d, &bad_prefix, meta()),
            Err(SmpError::Invalid { .. })
        ));
        assert_eq!(
            strategic_merge_patch(&d, &json!([1]), meta()),
            Err(SmpError::PatchNotObject("a list"))
        );
        assert_eq!(
            strategic_merge_patch(&json!("x"), &json!({}), meta()),
            Err(SmpError::OriginalNotObject("a string"))
        );
    }

    #[test]
    fn type_changes_take_the_patch_value() {
        let s = Schemas::load();
        let patch = json!({"spec": {"replicas": "3", "selector": ["odd"]}});
        let out = apply(&s, &deployment(), patch);
        assert_eq!(out["spec"]["replicas"], "3");
        assert_eq!(out["spec"]["selector"], json!(["odd"]));
    }

    #[test]
    fn pod_patch_with_pod_meta() {
        let s = Schemas::load();
        let pod = json!({"metadata": {"name": "p", "ownerReferences": [{"uid": "1", "name": "a"}]},
                         "spec": {"containers": [{"name": "c", "image": "i"}]}});
        let patch = json!({"metadata": {"ownerReferences": [{"uid": "2", "name": "b"}]},
                           "spec": {"containers": [{"name": "c", "image": "j"}]}});
        let out = strategic_merge_patch(&pod, &patch, s.patch_meta("", "v1", "Pod").as_ref()).unwrap();
        assert_eq!(out["metadata"]["ownerReferences"].as_array().unwrap().len(), 2);
        assert_eq!(out["spec"]["containers"], json!([{"name": "c", "image": "j"}]));
    }
}
