//! Patch metadata: a navigable view of a kind's schema that tells strategic merge patch each field's
//! `x-kubernetes-patch-strategy` and `x-kubernetes-patch-merge-key`.

use serde_json::Value;

use super::Schemas;

/// The schema of one object (a struct with `properties`, or a map with `additionalProperties`).
#[derive(Clone, Copy, Debug)]
pub struct PatchMeta<'a> {
    schemas: &'a Schemas,
    /// The resolved object schema.
    schema: &'a Value,
}

/// What the schema says about one field of an object.
#[derive(Clone, Copy, Debug)]
pub struct FieldMeta<'a> {
    schemas: &'a Schemas,
    /// The field's own schema (where the patch extensions live), before resolving references.
    field: &'a Value,
    /// The field's value schema with references resolved (`None` when a reference dangles).
    value: Option<&'a Value>,
}

impl<'a> PatchMeta<'a> {
    /// A handle on an object schema; `None` unless it describes an object with fields or map values.
    pub fn new(schemas: &'a Schemas, schema: &'a Value) -> Option<PatchMeta<'a>> {
        let schema = schemas.resolve(schema)?;
        let has_fields = schema.get("properties").is_some_and(Value::is_object)
            || schema.get("additionalProperties").is_some_and(Value::is_object);
        has_fields.then_some(PatchMeta { schemas, schema })
    }

    /// The field `name` of this object: a property, or (for a map) any key. `None` for unknown fields.
    pub fn field(&self, name: &str) -> Option<FieldMeta<'a>> {
        let field = match self.schema.get("properties").and_then(|p| p.get(name)) {
            Some(f) => f,
            None => self.schema.get("additionalProperties").filter(|a| a.is_object())?,
        };
        Some(FieldMeta {
            schemas: self.schemas,
            field,
            value: self.schemas.resolve(field),
        })
    }

    /// Walks a path of field names from this object. A list field is stepped through to its items, so
    /// `["spec", "template", "spec", "containers", "ports"]` names the `ports` of each container.
    pub fn lookup(&self, path: &[&str]) -> Option<FieldMeta<'a>> {
        let (first, rest) = path.split_first()?;
        let field = self.field(first)?;
        if rest.is_empty() {
            return Some(field);
        }
        let next = if field.is_list() {
            field.items()?
        } else {
            field.object()?
        };
        next.lookup(rest)
    }
}

impl<'a> FieldMeta<'a> {
    /// The raw `x-kubernetes-patch-strategy`: `merge`, `replace`, `retainKeys` or `merge,retainKeys`.
    pub fn patch_strategy(&self) -> Option<&'a str> {
        self.field.get("x-kubernetes-patch-strategy").and_then(Value::as_str)
    }

    /// Whether the patch strategy lists `strategy` (`merge` is listed by `merge,retainKeys`).
    pub fn has_strategy(&self, strategy: &str) -> bool {
        self.patch_strategy()
            .is_some_and(|s| s.split(',').any(|x| x.trim() == strategy))
    }

    /// The `x-kubernetes-patch-merge-key` of a list of objects (`name` for containers).
    pub fn merge_key(&self) -> Option<&'a str> {
        self.field.get("x-kubernetes-patch-merge-key").and_then(Value::as_str)
    }

    /// Whether the field is a list.
    pub fn is_list(&self) -> bool {
        self.value.and_then(|v| v.get("type")).and_then(Value::as_str) == Some("array")
    }

    /// Whether the field is a list of primitives (strings, numbers, booleans), like `finalizers`.
    pub fn is_primitive_list(&self) -> bool {
        if !self.is_list() {
            return false;
        }
        let Some(items) = self
            .value
            .and_then(|v| v.get("items"))
            .and_then(|i| self.schemas.resolve(i))
        else {
            return false;
        };
        let ty = items.get("type").and_then(Value::as_str);
        matches!(ty, Some("string" | "integer" | "number" | "boolean"))
    }

    /// The schema of the object this field holds (a struct or a map), if it holds one.
    pub fn object(&self) -> Option<PatchMeta<'a>> {
        PatchMeta::new(self.schemas, self.value?)
    }

    /// The schema of the objects in this list, if it is a list of objects.
    pub fn items(&self) -> Option<PatchMeta<'a>> {
        PatchMeta::new(self.schemas, self.value?.get("items")?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_merge_by_name() {
        let s = Schemas::load();
        let meta = s.patch_meta("apps", "v1", "Deployment").unwrap();
        let c = meta.lookup(&["spec", "template", "spec", "containers"]).unwrap();
        assert_eq!(c.patch_strategy(), Some("merge"));
        assert_eq!(c.merge_key(), Some("name"));
        assert!(c.is_list() && !c.is_primitive_list());
        let ports = meta
            .lookup(&["spec", "template", "spec", "containers", "ports"])
            .unwrap();
        assert_eq!(ports.merge_key(), Some("containerPort"));
        let env = meta.lookup(&["spec", "template", "spec", "containers", "env"]).unwrap();
        assert_eq!(env.merge_key(), Some("name"));
    }

    #[test]
    fn strategies_retain_keys_and_replace() {
        let s = Schemas::load();
        let dep = s.patch_meta("apps", "v1", "Deployment").unwrap();
        let strategy = dep.lookup(&["spec", "strategy"]).unwrap();
        assert_eq!(strategy.patch_strategy(), Some("retainKeys"));
        assert!(strategy.object().is_some());
        let volumes = dep.lookup(&["spec", "template", "spec", "volumes"]).unwrap();
        assert_eq!(volumes.patch_strategy(), Some("merge,retainKeys"));
        assert!(volumes.has_strategy("merge") && volumes.has_strategy("retainKeys"));
        let tolerations = dep.lookup(&["spec", "template", "spec", "tolerations"]).unwrap();
        assert_eq!(tolerations.patch_strategy(), None);
        assert!(tolerations.is_list());
    }

    #[test]
    fn finalizers_are_a_merged_primitive_list() {
        let s = Schemas::load();
        let pod = s.patch_meta("", "v1", "Pod").unwrap();
        let f = pod.lookup(&["metadata", "finalizers"]).unwrap();
        assert!(f.is_primitive_list());
        assert!(f.has_strategy("merge"));
        assert_eq!(f.merge_key(), None);
    }

    #[test]
    fn maps_and_unknowns() {
        let s = Schemas::load();
        let pod = s.patch_meta("", "v1", "Pod").unwrap();
        let labels = pod.lookup(&["metadata", "labels"]).unwrap();
        assert!(!labels.is_list());
        let app = labels.object().unwrap().field("app").unwrap();
        assert!(app.object().is_none());
        assert!(pod.lookup(&["spec", "nope"]).is_none());
        assert!(pod.lookup(&[]).is_none());
        assert!(s.patch_meta("example.com", "v1", "Widget").is_none());
    }
}
