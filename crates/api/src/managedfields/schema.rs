//! What the field manager needs from a schema: whether a value is a scalar, a struct or map (granular
//! or atomic), or a list (atomic, set, or map with key fields). [`SchemaLookup`] is the seam: built-in
//! kinds use the vendored OpenAPI data ([`OpenApiLookup`]); custom resources can plug their own
//! OpenAPI v3 schema in. Parts a schema does not describe are deduced from the value as
//! structured-merge-diff's deduced schema does: objects are granular maps, lists are atomic.

use serde_json::Value;

use crate::openapi::Schemas;

/// A source of OpenAPI v3 schemas for one kind.
pub trait SchemaLookup: Sync {
    /// The schema of the object's root; `None` when the kind has no schema (everything is deduced).
    fn root(&self) -> Option<&Value>;
    /// Follows a schema's reference (`$ref` or a one-element `allOf`); a schema without one as it is.
    fn resolve<'a>(&'a self, schema: &'a Value) -> Option<&'a Value>;
}

/// A kind's schema from the vendored Kubernetes OpenAPI data.
pub struct OpenApiLookup<'a> {
    schemas: &'a Schemas,
    root: Option<&'a Value>,
}

impl<'a> OpenApiLookup<'a> {
    pub fn new(schemas: &'a Schemas, group: &str, version: &str, kind: &str) -> OpenApiLookup<'a> {
        OpenApiLookup { schemas, root: schemas.kind_schema(group, version, kind) }
    }
}

impl SchemaLookup for OpenApiLookup<'_> {
    fn root(&self) -> Option<&Value> {
        self.root
    }
    fn resolve<'b>(&'b self, schema: &'b Value) -> Option<&'b Value> {
        self.schemas.resolve(schema)
    }
}

/// A self-contained schema (no references), as a CustomResourceDefinition's `openAPIV3Schema`.
pub struct InlineLookup(pub Option<Value>);

impl SchemaLookup for InlineLookup {
    fn root(&self) -> Option<&Value> {
        self.0.as_ref()
    }
    fn resolve<'b>(&'b self, schema: &'b Value) -> Option<&'b Value> {
        Some(schema)
    }
}

/// How a list's items are identified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListType {
    /// The list is replaced as a whole.
    Atomic,
    /// Items are scalars identified by their value.
    Set,
    /// Items are objects identified by these key fields.
    Map(Vec<String>),
}

/// The shape of a value at one place in the schema.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Shape {
    Scalar,
    /// A struct (`properties`) or a map (`additionalProperties`); atomic ones are replaced whole.
    Map { atomic: bool },
    List(ListType),
    /// Not described: deduced from the value.
    Untyped,
}

/// A position in a schema: the field's own schema (where list and map extensions are) and its
/// resolved value schema.
#[derive(Clone, Copy)]
pub struct Node<'a> {
    lookup: &'a dyn SchemaLookup,
    field: Option<&'a Value>,
    schema: Option<&'a Value>,
}

impl<'a> Node<'a> {
    /// The root of a kind's schema.
    pub fn root(lookup: &'a dyn SchemaLookup) -> Node<'a> {
        Node::at(lookup, lookup.root())
    }

    fn at(lookup: &'a dyn SchemaLookup, field: Option<&'a Value>) -> Node<'a> {
        let schema = field.and_then(|f| lookup.resolve(f));
        Node { lookup, field, schema }
    }

    fn untyped(&self) -> Node<'a> {
        Node { lookup: self.lookup, field: None, schema: None }
    }

    fn ext(&self, name: &str) -> Option<&'a Value> {
        self.field.and_then(|f| f.get(name)).or_else(|| self.schema.and_then(|s| s.get(name)))
    }

    /// The schema's shape, ignoring the value.
    pub fn shape(&self) -> Shape {
        let Some(s) = self.schema else {
            return Shape::Untyped;
        };
        let ty = s.get("type").and_then(Value::as_str);
        let has_props = s.get("properties").is_some_and(Value::is_object);
        let has_additional = s.get("additionalProperties").is_some_and(Value::is_object);
        if ty == Some("array") {
            let list_type = match self.ext("x-kubernetes-list-type").and_then(Value::as_str) {
                Some("set") => ListType::Set,
                Some("map") => {
                    let keys = self
                        .ext("x-kubernetes-list-map-keys")
                        .and_then(Value::as_array)
                        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
                        .unwrap_or_default();
                    ListType::Map(keys)
                }
                Some(_) => ListType::Atomic,
                None => {
                    // As upstream's schema conversion: the strategic merge patch keys imply the list type.
                    let strategy = self.ext("x-kubernetes-patch-strategy").and_then(Value::as_str).unwrap_or("");
                    let merge = strategy.split(',').any(|p| p.trim() == "merge");
                    match self.ext("x-kubernetes-patch-merge-key").and_then(Value::as_str) {
                        Some(key) if merge => ListType::Map(vec![key.to_string()]),
                        None if merge => ListType::Set,
                        _ => ListType::Atomic,
                    }
                }
            };
            return Shape::List(list_type);
        }
        if ty == Some("object") || has_props || has_additional {
            if !has_props && !has_additional {
                // `type: object` with nothing declared (or preserve-unknown-fields): deduced.
                return Shape::Untyped;
            }
            let atomic = self.ext("x-kubernetes-map-type").and_then(Value::as_str) == Some("atomic");
            return Shape::Map { atomic };
        }
        if matches!(ty, Some("string" | "integer" | "number" | "boolean"))
            || s.get("oneOf").is_some()
            || s.get("x-kubernetes-int-or-string").is_some()
            || s.get("format").is_some()
        {
            return Shape::Scalar;
        }
        Shape::Untyped
    }

    /// The shape for this value: the schema's when the value fits it, the deduced one otherwise.
    pub fn shape_for(&self, v: &Value) -> Shape {
        let shape = self.shape();
        let fits = match (&shape, v) {
            (Shape::Untyped, _) | (_, Value::Null) => true,
            (Shape::Scalar, v) => !v.is_object() && !v.is_array(),
            (Shape::Map { .. }, v) => v.is_object(),
            (Shape::List(_), v) => v.is_array(),
        };
        if fits && shape != Shape::Untyped {
            return shape;
        }
        match v {
            Value::Object(_) => Shape::Map { atomic: false },
            Value::Array(_) => Shape::List(ListType::Atomic),
            _ => Shape::Scalar,
        }
    }

    /// Whether `name` is a declared property (a struct field), not a map key.
    pub fn declares(&self, name: &str) -> bool {
        self.schema.and_then(|s| s.get("properties")).and_then(|p| p.get(name)).is_some()
    }

    /// Whether `name` is listed in the struct's `required`.
    pub fn requires(&self, name: &str) -> bool {
        self.schema
            .and_then(|s| s.get("required"))
            .and_then(Value::as_array)
            .is_some_and(|r| r.iter().any(|x| x == name))
    }

    /// Whether the schema is a map with `additionalProperties` (a Go map: absent when empty).
    pub fn is_plain_map(&self) -> bool {
        self.schema.is_some_and(|s| {
            s.get("additionalProperties").is_some_and(Value::is_object) && s.get("properties").is_none()
        })
    }

    /// The schema of field `name` of a struct or map.
    pub fn field(&self, name: &str) -> Node<'a> {
        let Some(s) = self.schema else {
            return self.untyped();
        };
        match s.get("properties").and_then(|p| p.get(name)) {
            Some(f) => Node::at(self.lookup, Some(f)),
            None => match s.get("additionalProperties").filter(|a| a.is_object()) {
                Some(a) => Node::at(self.lookup, Some(a)),
                None => self.untyped(),
            },
        }
    }

    /// The schema of a list's items.
    pub fn items(&self) -> Node<'a> {
        match self.schema.and_then(|s| s.get("items")) {
            Some(i) => Node::at(self.lookup, Some(i)),
            None => self.untyped(),
        }
    }
}
