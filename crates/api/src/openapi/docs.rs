//! OpenAPI documents built from the resource table and the schemas: the v3 index, one v3 document per
//! group-version (what kubectl reads for field validation, client-side apply and `explain`) and Swagger 2.0.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha512};

use super::{SCHEMA_VERSION, Schemas, V3_REF_PREFIX, ref_name};
use crate::resources::{self, ResourceInfo, Subresource};

const V2_REF_PREFIX: &str = "#/definitions/";
const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";

const PRODUCES: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
];
const LIST_PRODUCES: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
    "application/json;stream=watch",
    "application/vnd.kubernetes.protobuf;stream=watch",
];
const TEXT_PRODUCES: &[&str] = &[
    "text/plain",
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
];
const ANY: &[&str] = &["*/*"];
const PATCH_CONSUMES: &[&str] = &[
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
];

const DRY_RUN: &str = "When present, indicates that modifications should not be persisted. An invalid or \
unrecognized dryRun directive will result in an error response and no further processing of the request. Valid \
values are: - All: all dry run stages will be processed";
const FIELD_MANAGER: &str = "fieldManager is a name associated with the actor or entity that is making these \
changes. The value must be less than or 128 characters long, and only contain printable characters, as defined by \
https://golang.org/pkg/unicode/#IsPrint.";
const FIELD_MANAGER_PATCH: &str = "fieldManager is a name associated with the actor or entity that is making these \
changes. The value must be less than or 128 characters long, and only contain printable characters, as defined by \
https://golang.org/pkg/unicode/#IsPrint. This field is required for apply requests (application/apply-patch) but \
optional for non-apply patch types (JsonPatch, MergePatch, StrategicMergePatch).";
const FIELD_VALIDATION: &str = "fieldValidation instructs the server on how to handle objects in the request \
(POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore: This will ignore any unknown \
fields that are silently dropped from the object, and will ignore all but the last duplicate field that the \
decoder encounters. This is the default behavior prior to v1.23. - Warn: This will send a warning via the standard \
warning response header for each unknown field that is dropped from the object, and for each duplicate field that \
is encountered. The request will still succeed if there are no other errors, and will only persist the last of \
any duplicate fields. This is the default in v1.23+ - Strict: This will fail the request with a BadRequest error \
if any unknown fields would be dropped from the object, or if any duplicate fields are present. The error returned \
from the server will contain all unknown and duplicate fields encountered.";
const FORCE: &str = "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields \
owned by other people. Force flag must be unset for non-apply patch requests.";
const PRETTY: &str = "If 'true', then the output is pretty printed. Defaults to 'false' unless the user-agent \
indicates a browser or command-line HTTP tool (curl and wget).";
const NAMESPACE: &str = "object name and auth scope, such as for teams and projects";

/// A request parameter.
#[derive(Clone, Debug)]
struct Param {
    name: &'static str,
    location: &'static str,
    description: String,
    ty: &'static str,
    required: bool,
}

fn query(name: &'static str, ty: &'static str, description: &str) -> Param {
    Param {
        name,
        location: "query",
        description: description.to_string(),
        ty,
        required: false,
    }
}

/// What an operation returns.
#[derive(Clone, Debug)]
enum Returns {
    /// A definition, in the usual content types.
    Object(String),
    /// A list definition, also as a watch stream.
    List(String),
    /// Text (`pods/log`).
    Text,
    /// A streamed connection (`exec`, `attach`, `portforward`).
    Connect,
}

/// One operation of a path.
#[derive(Clone, Debug)]
struct Operation {
    method: &'static str,
    id: String,
    description: String,
    action: &'static str,
    gvk: (String, String, String),
    params: Vec<Param>,
    /// The request body: definition name and content types.
    body: Option<(String, &'static [&'static str], bool)>,
    codes: &'static [&'static str],
    returns: Returns,
    tag: String,
}

/// A path with its shared parameters and operations.
#[derive(Clone, Debug)]
struct PathItem {
    path: String,
    params: Vec<Param>,
    ops: Vec<Operation>,
}

/// `api/v1` or `apis/apps/v1`.
fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `Core`, `Apps`, `RbacAuthorization`, `Networking` (from `networking.k8s.io`).
fn group_camel(group: &str) -> String {
    if group.is_empty() {
        return "Core".to_string();
    }
    group.trim_end_matches(".k8s.io").split('.').map(upper_first).collect()
}

fn upper_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The operation tag: `core_v1`, `apps_v1`, `rbacAuthorization_v1`.
fn tag(group: &str, version: &str) -> String {
    let camel = group_camel(group);
    let mut chars = camel.chars();
    let lower: String = chars
        .next()
        .map(|c| c.to_lowercase().chain(chars).collect())
        .unwrap_or_default();
    format!("{lower}_{version}")
}

fn list_params() -> Vec<Param> {
    vec![
        query(
            "allowWatchBookmarks",
            "boolean",
            "allowWatchBookmarks requests watch events with type \"BOOKMARK\". Servers that do not implement bookmarks may ignore this flag and bookmarks are sent at the server's discretion.",
        ),
        query(
            "continue",
            "string",
            "The continue option should be set when retrieving more results from the server.",
        ),
        query(
            "fieldSelector",
            "string",
            "A selector to restrict the list of returned objects by their fields. Defaults to everything.",
        ),
        query(
            "labelSelector",
            "string",
            "A selector to restrict the list of returned objects by their labels. Defaults to everything.",
        ),
        query(
            "limit",
            "integer",
            "limit is a maximum number of responses to return for a list call.",
        ),
        query(
            "resourceVersion",
            "string",
            "resourceVersion sets a constraint on what resource versions a request may be served from.",
        ),
        query(
            "resourceVersionMatch",
            "string",
            "resourceVersionMatch determines how resourceVersion is applied to list calls.",
        ),
        query(
            "sendInitialEvents",
            "boolean",
            "`sendInitialEvents=true` may be set together with `watch=true`.",
        ),
        query(
            "timeoutSeconds",
            "integer",
            "Timeout for the list/watch call. This limits the duration of the call, regardless of any activity or inactivity.",
        ),
        query(
            "watch",
            "boolean",
            "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications. Specify resourceVersion.",
        ),
    ]
}

fn write_params(patch: bool) -> Vec<Param> {
    let mut params = vec![
        query("dryRun", "string", DRY_RUN),
        query(
            "fieldManager",
            "string",
            if patch { FIELD_MANAGER_PATCH } else { FIELD_MANAGER },
        ),
        query("fieldValidation", "string", FIELD_VALIDATION),
    ];
    if patch {
        params.push(query("force", "boolean", FORCE));
    }
    params
}

fn delete_params() -> Vec<Param> {
    vec![
        query("dryRun", "string", DRY_RUN),
        query(
            "gracePeriodSeconds",
            "integer",
            "The duration in seconds before the object should be deleted. Value must be non-negative integer. The value zero indicates delete immediately.",
        ),
        query(
            "orphanDependents",
            "boolean",
            "Deprecated: please use the PropagationPolicy, this field will be deprecated in 1.7. Should the dependent objects be orphaned.",
        ),
        query(
            "propagationPolicy",
            "string",
            "Whether and how garbage collection will be performed. Acceptable values are: 'Orphan', 'Background' and 'Foreground'.",
        ),
    ]
}

fn subresource_params(name: &str) -> Vec<Param> {
    let names: &[(&'static str, &'static str, &str)] = match name {
        "log" => &[
            (
                "container",
                "string",
                "The container for which to stream logs. Defaults to only container if there is one container in the pod.",
            ),
            (
                "follow",
                "boolean",
                "Follow the log stream of the pod. Defaults to false.",
            ),
            (
                "insecureSkipTLSVerifyBackend",
                "boolean",
                "insecureSkipTLSVerifyBackend indicates that the apiserver should not confirm the validity of the serving certificate of the backend it is connecting to.",
            ),
            (
                "limitBytes",
                "integer",
                "If set, the number of bytes to read from the server before terminating the log output.",
            ),
            (
                "previous",
                "boolean",
                "Return previous terminated container logs. Defaults to false.",
            ),
            (
                "sinceSeconds",
                "integer",
                "A relative time in seconds before the current time from which to show logs.",
            ),
            (
                "stream",
                "string",
                "Specify which container log stream to return to the client. Acceptable values are \"All\", \"Stdout\" and \"Stderr\".",
            ),
            (
                "tailLines",
                "integer",
                "If set, the number of lines from the end of the logs to show.",
            ),
            (
                "timestamps",
                "boolean",
                "If true, add an RFC3339 or RFC3339Nano timestamp at the beginning of every line of log output. Defaults to false.",
            ),
        ],
        "exec" => &[
            (
                "command",
                "string",
                "Command is the remote command to execute. argv array. Not executed within a shell.",
            ),
            (
                "container",
                "string",
                "Container in which to execute the command. Defaults to only container if there is only one container in the pod.",
            ),
            (
                "stderr",
                "boolean",
                "Redirect the standard error stream of the pod for this call.",
            ),
            (
                "stdin",
                "boolean",
                "Redirect the standard input stream of the pod for this call. Defaults to false.",
            ),
            (
                "stdout",
                "boolean",
                "Redirect the standard output stream of the pod for this call.",
            ),
            (
                "tty",
                "boolean",
                "TTY if true indicates that a tty will be allocated for the exec call. Defaults to false.",
            ),
        ],
        "attach" => &[
            (
                "container",
                "string",
                "The container in which to execute the command. Defaults to only container if there is only one container in the pod.",
            ),
            (
                "stderr",
                "boolean",
                "Stderr if true indicates that stderr is to be redirected for the attach call. Defaults to true.",
            ),
            (
                "stdin",
                "boolean",
                "Stdin if true, redirects the standard input stream of the pod for this call. Defaults to false.",
            ),
            (
                "stdout",
                "boolean",
                "Stdout if true indicates that stdout is to be redirected for the attach call. Defaults to true.",
            ),
            (
                "tty",
                "boolean",
                "TTY if true indicates that a tty will be allocated for the attach call. This is passed through the container runtime so the tty is allocated on the worker node by the container runtime. Defaults to false.",
            ),
        ],
        "portforward" => &[(
            "ports",
            "integer",
            "List of ports to forward Required when using WebSockets",
        )],
        _ => &[],
    };
    names.iter().map(|(n, t, d)| query(n, t, d)).collect()
}

/// Builds the operations of one resource.
struct ResourceOps<'a> {
    schemas: &'a Schemas,
    r: &'static ResourceInfo,
    /// `CoreV1`, `AppsV1`.
    gv_camel: String,
    /// `Namespaced` or empty.
    scope: &'static str,
    tag: String,
}

impl ResourceOps<'_> {
    fn def(&self, group: &str, version: &str, kind: &str) -> Option<String> {
        self.schemas.definition_name(group, version, kind).map(str::to_string)
    }

    fn op(&self, method: &'static str, verb: &str, suffix: &str, action: &'static str) -> Operation {
        let r = self.r;
        Operation {
            method,
            id: format!("{verb}{}{}{}{suffix}", self.gv_camel, self.scope, r.kind),
            description: String::new(),
            action,
            gvk: (r.group.to_string(), r.version.to_string(), r.kind.to_string()),
            params: Vec::new(),
            body: None,
            codes: &["200"],
            returns: Returns::Text,
            tag: self.tag.clone(),
        }
    }

    fn path_params(&self, item: bool, kind: &str) -> Vec<Param> {
        let mut params = Vec::new();
        if item {
            params.push(Param {
                name: "name",
                location: "path",
                description: format!("name of the {kind}"),
                ty: "string",
                required: true,
            });
        }
        if self.r.namespaced {
            params.push(Param {
                name: "namespace",
                location: "path",
                description: NAMESPACE.to_string(),
                ty: "string",
                required: true,
            });
        }
        params.push(query("pretty", "string", PRETTY));
        params
    }

    fn paths(&self) -> Vec<PathItem> {
        let r = self.r;
        let (Some(kind_def), Some(list_def)) = (
            self.def(r.group, r.version, r.kind),
            self.def(r.group, r.version, &r.list_kind()),
        ) else {
            return Vec::new();
        };
        let has = |verb: &str| r.verbs.contains(&verb);
        let prefix = format!("/{}", gv_path(r.group, r.version));
        let collection = if r.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}", r.plural)
        } else {
            format!("{prefix}/{}", r.plural)
        };
        let item = format!("{collection}/{{name}}");
        let mut out = Vec::new();

        let mut ops = Vec::new();
        if has("list") {
            let mut op = self.op("get", "list", "", "list");
            op.description = format!("list or watch objects of kind {}", r.kind);
            op.params = list_params();
            op.returns = Returns::List(list_def.clone());
            ops.push(op);
        }
        if has("create") {
            let mut op = self.op("post", "create", "", "post");
            op.description = format!("create {}", article(r.kind));
            op.params = write_params(false);
            op.body = Some((kind_def.clone(), ANY, true));
            op.codes = &["200", "201", "202"];
            op.returns = Returns::Object(kind_def.clone());
            ops.push(op);
        }
        if has("deletecollection") {
            let mut op = self.op("delete", "deleteCollection", "", "deletecollection");
            op.description = format!("delete collection of {}", r.kind);
            op.params = delete_params();
            op.params.extend(
                list_params()
                    .into_iter()
                    .filter(|p| p.name != "watch" && p.name != "allowWatchBookmarks"),
            );
            op.body = Some((DELETE_OPTIONS.to_string(), ANY, false));
            op.returns = Returns::Object(STATUS.to_string());
            ops.push(op);
        }
        if !ops.is_empty() {
            out.push(PathItem {
                path: collection.clone(),
                params: self.path_params(false, r.kind),
                ops,
            });
        }

        let mut ops = Vec::new();
        if has("get") {
            let mut op = self.op("get", "read", "", "get");
            op.description = format!("read the specified {}", r.kind);
            op.returns = Returns::Object(kind_def.clone());
            ops.push(op);
        }
        if has("update") {
            let mut op = self.op("put", "replace", "", "put");
            op.description = format!("replace the specified {}", r.kind);
            op.params = write_params(false);
            op.body = Some((kind_def.clone(), ANY, true));
            op.codes = &["200", "201"];
            op.returns = Returns::Object(kind_def.clone());
            ops.push(op);
        }
        if has("patch") {
            let mut op = self.op("patch", "patch", "", "patch");
            op.description = format!("partially update the specified {}", r.kind);
            op.params = write_params(true);
            op.body = Some((PATCH.to_string(), PATCH_CONSUMES, true));
            op.codes = &["200", "201"];
            op.returns = Returns::Object(kind_def.clone());
            ops.push(op);
        }
        if has("delete") {
            let mut op = self.op("delete", "delete", "", "delete");
            op.description = format!("delete {}", article(r.kind));
            op.params = delete_params();
            op.body = Some((DELETE_OPTIONS.to_string(), ANY, false));
            op.codes = &["200", "202"];
            op.returns = Returns::Object(STATUS.to_string());
            ops.push(op);
        }
        if !ops.is_empty() {
            out.push(PathItem {
                path: item.clone(),
                params: self.path_params(true, r.kind),
                ops,
            });
        }

        if r.namespaced && has("list") {
            let mut op = self.op("get", "list", "ForAllNamespaces", "list");
            op.id = format!("list{}{}ForAllNamespaces", self.gv_camel, r.kind);
            op.description = format!("list or watch objects of kind {}", r.kind);
            op.params = list_params();
            op.returns = Returns::List(list_def);
            out.push(PathItem {
                path: format!("{prefix}/{}", r.plural),
                params: vec![query("pretty", "string", PRETTY)],
                ops: vec![op],
            });
        }

        for sub in r.subresources {
            let ops = self.subresource_ops(sub);
            if !ops.is_empty() {
                out.push(PathItem {
                    path: format!("{item}/{}", sub.name),
                    params: self.path_params(true, sub.kind),
                    ops,
                });
            }
        }
        out
    }

    fn subresource_ops(&self, sub: &Subresource) -> Vec<Operation> {
        let suffix = upper_first(sub.name);
        let gvk = (sub.group.to_string(), sub.version.to_string(), sub.kind.to_string());
        let mut ops = Vec::new();
        match sub.name {
            "log" => {
                let mut op = self.op("get", "read", &suffix, "get");
                op.description = format!("read log of the specified {}", self.r.kind);
                op.params = subresource_params("log");
                op.returns = Returns::Text;
                ops.push(op);
            }
            "exec" | "attach" | "portforward" => {
                for (method, verb) in [("get", "Get"), ("post", "Post")] {
                    let mut op = self.op(method, "connect", &suffix, "connect");
                    op.id = format!("connect{}{verb}{}{}{suffix}", self.gv_camel, self.scope, self.r.kind);
                    op.description = format!("connect {verb} requests to {} of {}", sub.name, self.r.kind);
                    op.gvk = gvk.clone();
                    op.params = subresource_params(sub.name);
                    op.returns = Returns::Connect;
                    ops.push(op);
                }
            }
            _ => {
                let Some(def) = self.def(sub.group, sub.version, sub.kind) else {
                    return ops;
                };
                for verb in sub.verbs {
                    let mut op = match *verb {
                        "get" => {
                            let mut op = self.op("get", "read", &suffix, "get");
                            op.description = format!("read {} of the specified {}", sub.name, self.r.kind);
                            op
                        }
                        "update" => {
                            let mut op = self.op("put", "replace", &suffix, "put");
                            op.description = format!("replace {} of the specified {}", sub.name, self.r.kind);
                            op.params = write_params(false);
                            op.body = Some((def.clone(), ANY, true));
                            op.codes = &["200", "201"];
                            op
                        }
                        "patch" => {
                            let mut op = self.op("patch", "patch", &suffix, "patch");
                            op.description = format!("partially update {} of the specified {}", sub.name, self.r.kind);
                            op.params = write_params(true);
                            op.body = Some((PATCH.to_string(), PATCH_CONSUMES, true));
                            op.codes = &["200", "201"];
                            op
                        }
                        "create" => {
                            let mut op = self.op("post", "create", &suffix, "post");
                            op.description = format!("create {} of {}", sub.name, article(self.r.kind));
                            op.params = write_params(false);
                            op.body = Some((def.clone(), ANY, true));
                            op.codes = &["200", "201", "202"];
                            op
                        }
                        _ => continue,
                    };
                    op.gvk = gvk.clone();
                    op.returns = Returns::Object(def.clone());
                    ops.push(op);
                }
            }
        }
        ops
    }
}

/// `a Pod`, `an Ingress`.
fn article(kind: &str) -> String {
    let vowel = kind.chars().next().is_some_and(|c| "AEIOU".contains(c));
    format!("{} {kind}", if vowel { "an" } else { "a" })
}

/// Every path of one group-version, `None` if it is not served.
fn gv_paths(schemas: &Schemas, group: &str, version: &str) -> Option<Vec<PathItem>> {
    let resources: Vec<&'static ResourceInfo> = resources::in_group_version(group, version).collect();
    gv_paths_of(schemas, group, version, &resources)
}

/// The paths of the given resources of one group-version, `None` if there are none.
fn gv_paths_of(schemas: &Schemas, group: &str, version: &str, resources: &[&'static ResourceInfo]) -> Option<Vec<PathItem>> {
    if resources.is_empty() {
        return None;
    }
    let resources = resources.iter().copied();
    let gv_camel = format!("{}{}", group_camel(group), upper_first(version));
    let mut out = Vec::new();
    for r in resources {
        let ops = ResourceOps {
            schemas,
            r,
            gv_camel: gv_camel.clone(),
            scope: if r.namespaced { "Namespaced" } else { "" },
            tag: tag(group, version),
        };
        out.extend(ops.paths());
    }
    Some(out)
}

/// Every definition referenced from `roots`, transitively, sorted by name.
fn closure(schemas: &Schemas, roots: impl IntoIterator<Item = String>) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo: Vec<String> = roots.into_iter().collect();
    while let Some(name) = todo.pop() {
        if seen.contains(&name) {
            continue;
        }
        let Some(def) = schemas.definition(&name) else { continue };
        collect_refs(def, &mut todo);
        seen.insert(name);
    }
    seen
}

/// Pushes the definitions a schema refers to (walking the schema keywords only).
fn collect_refs(schema: &Value, out: &mut Vec<String>) {
    if let Some(name) = ref_name(schema) {
        out.push(name.to_string());
    }
    if let Some(all_of) = schema.get("allOf").and_then(Value::as_array) {
        for s in all_of {
            collect_refs(s, out);
        }
    }
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for s in props.values() {
            collect_refs(s, out);
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(s) = schema.get(key).filter(|s| s.is_object()) {
            collect_refs(s, out);
        }
    }
}

fn roots(paths: &[PathItem]) -> Vec<String> {
    let mut out = Vec::new();
    for op in paths.iter().flat_map(|p| &p.ops) {
        if let Some((def, _, _)) = &op.body {
            out.push(def.clone());
        }
        if let Returns::Object(def) | Returns::List(def) = &op.returns {
            out.push(def.clone());
        }
    }
    out.push(STATUS.to_string());
    out
}

fn gvk_value(gvk: &(String, String, String)) -> Value {
    json!({"group": gvk.0, "kind": gvk.2, "version": gvk.1})
}

fn v3_param(p: &Param) -> Value {
    let mut v = json!({
        "name": p.name,
        "in": p.location,
        "description": p.description,
        "schema": {"type": p.ty, "uniqueItems": true},
    });
    if p.required {
        v["required"] = json!(true);
    }
    v
}

fn v3_content(types: &[&str], schema: &Value) -> Value {
    let content: Map<String, Value> = types
        .iter()
        .map(|t| (t.to_string(), json!({"schema": schema})))
        .collect();
    Value::Object(content)
}

fn v3_operation(op: &Operation) -> Value {
    let (types, schema) = match &op.returns {
        Returns::Object(def) => (PRODUCES, json!({"$ref": format!("{V3_REF_PREFIX}{def}")})),
        Returns::List(def) => (LIST_PRODUCES, json!({"$ref": format!("{V3_REF_PREFIX}{def}")})),
        Returns::Text => (TEXT_PRODUCES, json!({"type": "string"})),
        Returns::Connect => (ANY, json!({"type": "string"})),
    };
    let mut responses = Map::new();
    for code in op.codes {
        let description = match *code {
            "201" => "Created",
            "202" => "Accepted",
            _ => "OK",
        };
        responses.insert(
            code.to_string(),
            json!({"description": description, "content": v3_content(types, &schema)}),
        );
    }
    responses.insert("401".to_string(), json!({"description": "Unauthorized"}));
    let mut v = json!({
        "tags": [op.tag],
        "description": op.description,
        "operationId": op.id,
        "responses": responses,
        "x-kubernetes-action": op.action,
        "x-kubernetes-group-version-kind": gvk_value(&op.gvk),
    });
    if !op.params.is_empty() {
        v["parameters"] = op.params.iter().map(v3_param).collect();
    }
    if let Some((def, types, required)) = &op.body {
        let mut body = json!({"content": v3_content(types, &json!({"$ref": format!("{V3_REF_PREFIX}{def}")}))});
        if *required {
            body["required"] = json!(true);
        }
        v["requestBody"] = body;
    }
    v
}

fn v3_paths(paths: &[PathItem]) -> Map<String, Value> {
    let mut out = Map::new();
    for p in paths {
        let mut item = Map::new();
        for op in &p.ops {
            item.insert(op.method.to_string(), v3_operation(op));
        }
        item.insert("parameters".to_string(), p.params.iter().map(v3_param).collect());
        out.insert(p.path.clone(), Value::Object(item));
    }
    out
}

fn info() -> Value {
    json!({"title": "Kubernetes", "version": SCHEMA_VERSION})
}

fn bearer() -> Value {
    json!({"BearerToken": {"type": "apiKey", "description": "Bearer Token authentication", "name": "authorization", "in": "header"}})
}

fn hash(doc: &Value) -> String {
    // Serializing a `Value` cannot fail (string keys only).
    let bytes = serde_json::to_vec(doc).unwrap_or_default();
    hex::encode_upper(Sha512::digest(&bytes))
}

pub(super) fn group_version_doc(schemas: &Schemas, group: &str, version: &str) -> Option<(Value, String)> {
    let paths = gv_paths(schemas, group, version)?;
    let components: Map<String, Value> = closure(schemas, roots(&paths))
        .into_iter()
        .filter_map(|name| schemas.definition(&name).map(|d| (name, d.clone())))
        .collect();
    let doc = json!({
        "openapi": "3.0.0",
        "info": info(),
        "paths": v3_paths(&paths),
        "components": {"schemas": components, "securitySchemes": bearer()},
        "security": [{"BearerToken": []}],
    });
    let h = hash(&doc);
    Some((doc, h))
}

const CUSTOM_PATCH_CONSUMES: &[&str] = &[
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
];
const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";
const SCALE: &str = "io.k8s.api.autoscaling.v1.Scale";

/// The definition name of a custom kind, as upstream names it: group reversed (`com.example.stable.v1.CronTab`).
pub fn custom_definition_name(group: &str, version: &str, kind: &str) -> String {
    let reversed: Vec<&str> = group.split('.').rev().collect();
    format!("{}.{version}.{kind}", reversed.join("."))
}

fn type_meta_props(props: &mut Map<String, Value>) {
    props.insert("apiVersion".into(), json!({"type": "string", "description": "APIVersion defines the versioned schema of this \
representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject \
unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources"}));
    props.insert("kind".into(), json!({"type": "string", "description": "Kind is a string value representing the REST resource \
this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In \
CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds"}));
}

/// The v3 document of a custom group-version: paths for each resource, its CRD schema as the kind's
/// definition (metadata as ObjectMeta, apiVersion and kind described), a list definition, and the
/// meta definitions they refer to.
pub(super) fn custom_group_version_doc(base: &Schemas, group: &str, version: &str, custom: &[(&'static ResourceInfo, Value)]) -> Option<(Value, String)> {
    let mut defs = Map::new();
    for name in closure(base, [OBJECT_META, LIST_META, STATUS, DELETE_OPTIONS, PATCH, SCALE].map(str::to_string)) {
        if let Some(d) = base.definition(&name) {
            defs.insert(name, d.clone());
        }
    }
    for (r, schema) in custom {
        let kind_name = custom_definition_name(r.group, r.version, r.kind);
        let mut kind_schema = if schema.is_object() { schema.clone() } else { json!({"type": "object"}) };
        if !kind_schema["properties"].is_object() {
            kind_schema["properties"] = json!({});
        }
        if let Some(props) = kind_schema["properties"].as_object_mut() {
            type_meta_props(props);
            props.insert("metadata".into(), json!({"allOf": [{"$ref": format!("{V3_REF_PREFIX}{OBJECT_META}")}],
                "description": "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"}));
        }
        kind_schema["x-kubernetes-group-version-kind"] = json!([{"group": r.group, "kind": r.kind, "version": r.version}]);
        let mut list_props = Map::new();
        type_meta_props(&mut list_props);
        list_props.insert("items".into(), json!({"type": "array", "items": {"$ref": format!("{V3_REF_PREFIX}{kind_name}")},
            "description": format!("List of {}. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md", r.plural)}));
        list_props.insert("metadata".into(), json!({"allOf": [{"$ref": format!("{V3_REF_PREFIX}{LIST_META}")}],
            "description": "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds"}));
        let list = json!({"type": "object", "description": format!("{} is a list of {}", r.list_kind(), r.kind), "required": ["items"],
            "properties": list_props,
            "x-kubernetes-group-version-kind": [{"group": r.group, "kind": r.list_kind(), "version": r.version}]});
        defs.insert(format!("{}List", kind_name), list);
        defs.insert(kind_name, kind_schema);
    }
    let local = Schemas::from_definitions(defs);
    let infos: Vec<&'static ResourceInfo> = custom.iter().map(|(r, _)| *r).collect();
    let mut paths = gv_paths_of(&local, group, version, &infos)?;
    // Custom resources have no patch strategies: their PATCH does not take strategic merge patch (kubectl
    // reads this to choose JSON merge patch for `apply`).
    for op in paths.iter_mut().flat_map(|p| p.ops.iter_mut()) {
        if let Some((_, consumes, _)) = &mut op.body
            && *consumes == PATCH_CONSUMES
        {
            *consumes = CUSTOM_PATCH_CONSUMES;
        }
    }
    let components: Map<String, Value> = closure(&local, roots(&paths))
        .into_iter()
        .filter_map(|name| local.definition(&name).map(|d| (name, d.clone())))
        .collect();
    let doc = json!({
        "openapi": "3.0.0",
        "info": info(),
        "paths": v3_paths(&paths),
        "components": {"schemas": components, "securitySchemes": bearer()},
        "security": [{"BearerToken": []}],
    });
    let h = hash(&doc);
    Some((doc, h))
}

pub(super) fn index(schemas: &Schemas) -> Value {
    let mut paths = Map::new();
    for (group, versions) in resources::groups() {
        for version in versions {
            if let Some((_, h)) = group_version_doc(schemas, group, version) {
                let key = gv_path(group, version);
                paths.insert(
                    key.clone(),
                    json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash={h}")}),
                );
            }
        }
    }
    json!({"paths": paths})
}

/// Rewrites a v3 schema into Swagger 2.0 form: `allOf` around one reference becomes a plain `$ref`
/// (keeping the description and extensions beside it) pointing at `#/definitions/`, and a `oneOf` of
/// types becomes `type: string`.
fn to_v2_schema(schema: &Value) -> Value {
    let Value::Object(map) = schema else {
        return schema.clone();
    };
    let mut out = Map::new();
    let single_ref = ref_name(schema).map(|n| format!("{V2_REF_PREFIX}{n}"));
    for (k, v) in map {
        match k.as_str() {
            // Swagger 2.0 has no `oneOf`: IntOrString and Quantity are published there as strings.
            "oneOf" => {
                if !map.contains_key("type") {
                    out.insert("type".to_string(), json!("string"));
                }
            }
            "allOf" | "$ref" if single_ref.is_some() => {
                out.insert("$ref".to_string(), json!(single_ref.clone()));
            }
            "properties" => {
                let props = v
                    .as_object()
                    .map(|p| p.iter().map(|(n, s)| (n.clone(), to_v2_schema(s))).collect());
                out.insert(k.clone(), props.map(Value::Object).unwrap_or_else(|| v.clone()));
            }
            "items" | "additionalProperties" => {
                out.insert(k.clone(), to_v2_schema(v));
            }
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    Value::Object(out)
}

fn v2_param(p: &Param) -> Value {
    let mut v =
        json!({"uniqueItems": true, "type": p.ty, "description": p.description, "name": p.name, "in": p.location});
    if p.required {
        v["required"] = json!(true);
    }
    v
}

fn v2_operation(op: &Operation) -> Value {
    let (produces, schema) = match &op.returns {
        Returns::Object(def) => (PRODUCES, json!({"$ref": format!("{V2_REF_PREFIX}{def}")})),
        Returns::List(def) => (LIST_PRODUCES, json!({"$ref": format!("{V2_REF_PREFIX}{def}")})),
        Returns::Text => (TEXT_PRODUCES, json!({"type": "string"})),
        Returns::Connect => (ANY, json!({"type": "string"})),
    };
    let mut params: Vec<Value> = Vec::new();
    let mut consumes: &[&str] = ANY;
    if let Some((def, types, required)) = &op.body {
        consumes = types;
        let mut body = json!({"name": "body", "in": "body", "schema": {"$ref": format!("{V2_REF_PREFIX}{def}")}});
        if *required {
            body["required"] = json!(true);
        }
        params.push(body);
    }
    params.extend(op.params.iter().map(v2_param));
    let mut responses = Map::new();
    for code in op.codes {
        let description = match *code {
            "201" => "Created",
            "202" => "Accepted",
            _ => "OK",
        };
        responses.insert(code.to_string(), json!({"description": description, "schema": schema}));
    }
    responses.insert("401".to_string(), json!({"description": "Unauthorized"}));
    let mut v = json!({
        "description": op.description,
        "consumes": consumes,
        "produces": produces,
        "schemes": ["https"],
        "tags": [op.tag],
        "operationId": op.id,
        "responses": responses,
        "x-kubernetes-action": op.action,
        "x-kubernetes-group-version-kind": gvk_value(&op.gvk),
    });
    if !params.is_empty() {
        v["parameters"] = Value::Array(params);
    }
    v
}

pub(super) fn swagger_v2(schemas: &Schemas) -> Value {
    let mut all = Vec::new();
    for (group, versions) in resources::groups() {
        for version in versions {
            all.extend(gv_paths(schemas, group, version).unwrap_or_default());
        }
    }
    let mut paths: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    for p in &all {
        let item = paths.entry(p.path.clone()).or_default();
        for op in &p.ops {
            item.insert(op.method.to_string(), v2_operation(op));
        }
        item.insert("parameters".to_string(), p.params.iter().map(v2_param).collect());
    }
    let definitions: Map<String, Value> = closure(schemas, roots(&all))
        .into_iter()
        .filter_map(|name| schemas.definition(&name).map(|d| (name, to_v2_schema(d))))
        .collect();
    json!({
        "swagger": "2.0",
        "info": info(),
        "paths": paths,
        "definitions": definitions,
        "securityDefinitions": bearer(),
        "security": [{"BearerToken": []}],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find_patch_op<'a>(doc: &'a Value, group: &str, version: &str, kind: &str) -> Vec<&'a Value> {
        let want = json!({"group": group, "version": version, "kind": kind});
        doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .filter_map(|item| item.get("patch"))
            .filter(|op| op["x-kubernetes-group-version-kind"] == want)
            .collect()
    }

    #[test]
    fn index_lists_every_group_version_with_its_hash() {
        let s = Schemas::load();
        let index = s.index();
        let paths = index["paths"].as_object().unwrap();
        let (_, core_hash) = s.group_version_doc("", "v1").unwrap();
        assert_eq!(
            paths["api/v1"]["serverRelativeURL"],
            format!("/openapi/v3/api/v1?hash={core_hash}")
        );
        assert_eq!(core_hash.len(), 128);
        assert!(core_hash.chars().all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()));
        for key in [
            "apis/apps/v1",
            "apis/autoscaling/v2",
            "apis/autoscaling/v1",
            "apis/rbac.authorization.k8s.io/v1",
        ] {
            assert!(paths.contains_key(key), "{key}");
        }
        assert_eq!(s.group_version_doc("nope", "v1"), None);
    }

    #[test]
    fn hash_is_stable_and_matches_the_document() {
        let s = Schemas::load();
        let (doc, h1) = s.group_version_doc("apps", "v1").unwrap();
        let (_, h2) = s.group_version_doc("apps", "v1").unwrap();
        assert_eq!(h1, h2);
        assert_eq!(hex::encode_upper(Sha512::digest(serde_json::to_vec(&doc).unwrap())), h1);
    }

    #[test]
    fn patch_operations_carry_gvk_and_field_validation() {
        let s = Schemas::load();
        let (doc, _) = s.group_version_doc("apps", "v1").unwrap();
        let ops = find_patch_op(&doc, "apps", "v1", "Deployment");
        assert_eq!(ops.len(), 2, "item and status patch");
        for op in ops {
            let params = op["parameters"].as_array().unwrap();
            let fv = params.iter().find(|p| p["name"] == "fieldValidation").unwrap();
            assert_eq!(fv["in"], "query");
            assert_eq!(fv["schema"], json!({"type": "string", "uniqueItems": true}));
            assert!(params.iter().any(|p| p["name"] == "dryRun"));
            assert!(params.iter().any(|p| p["name"] == "fieldManager"));
            assert!(
                op["requestBody"]["content"]
                    .get("application/strategic-merge-patch+json")
                    .is_some()
            );
            assert_eq!(op["x-kubernetes-action"], "patch");
        }
        let scale = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"];
        assert_eq!(
            scale["patch"]["x-kubernetes-group-version-kind"],
            json!({"group": "autoscaling", "version": "v1", "kind": "Scale"})
        );
        assert_eq!(scale["get"]["operationId"], "readAppsV1NamespacedDeploymentScale");
        assert!(
            doc["components"]["schemas"]
                .get("io.k8s.api.autoscaling.v1.Scale")
                .is_some()
        );
    }

    #[test]
    fn core_paths_follow_upstream_shapes() {
        let s = Schemas::load();
        let (doc, _) = s.group_version_doc("", "v1").unwrap();
        let paths = &doc["paths"];
        let coll = &paths["/api/v1/namespaces/{namespace}/pods"];
        assert_eq!(coll["get"]["operationId"], "listCoreV1NamespacedPod");
        assert_eq!(coll["get"]["x-kubernetes-action"], "list");
        assert_eq!(coll["post"]["x-kubernetes-action"], "post");
        assert_eq!(coll["delete"]["x-kubernetes-action"], "deletecollection");
        assert!(
            coll["post"]["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "fieldValidation")
        );
        let item = &paths["/api/v1/namespaces/{namespace}/pods/{name}"];
        for m in ["get", "put", "patch", "delete"] {
            assert_eq!(
                item[m]["x-kubernetes-group-version-kind"],
                json!({"group": "", "version": "v1", "kind": "Pod"}),
                "{m}"
            );
        }
        assert!(
            item["put"]["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "fieldValidation")
        );
        assert_eq!(
            item["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/io.k8s.api.core.v1.Pod"
        );
        assert_eq!(
            paths["/api/v1/pods"]["get"]["operationId"],
            "listCoreV1PodForAllNamespaces"
        );
        assert_eq!(paths["/api/v1/nodes/{name}"]["get"]["operationId"], "readCoreV1Node");
        assert_eq!(
            paths["/api/v1/namespaces/{name}/finalize"]["put"]["x-kubernetes-action"],
            "put"
        );
        let exec = &paths["/api/v1/namespaces/{namespace}/pods/{name}/exec"];
        assert_eq!(exec["post"]["x-kubernetes-action"], "connect");
        assert_eq!(exec["get"]["operationId"], "connectCoreV1GetNamespacedPodExec");
        assert_eq!(
            paths["/api/v1/namespaces/{namespace}/pods/{name}/log"]["get"]["operationId"],
            "readCoreV1NamespacedPodLog"
        );
    }

    #[test]
    fn components_hold_the_reachable_schemas_for_explain() {
        let s = Schemas::load();
        let (doc, _) = s.group_version_doc("", "v1").unwrap();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for name in [
            "io.k8s.api.core.v1.Pod",
            "io.k8s.api.core.v1.PodSpec",
            "io.k8s.api.core.v1.Container",
            "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
            "io.k8s.apimachinery.pkg.apis.meta.v1.Time",
            "io.k8s.apimachinery.pkg.util.intstr.IntOrString",
            "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions",
            "io.k8s.apimachinery.pkg.apis.meta.v1.Status",
            "io.k8s.api.policy.v1.Eviction",
        ] {
            assert!(schemas.contains_key(name), "{name}");
        }
        assert!(!schemas.contains_key("io.k8s.api.apps.v1.Deployment"));
        let pod = &schemas["io.k8s.api.core.v1.Pod"];
        assert_eq!(
            pod["x-kubernetes-group-version-kind"],
            json!([{"group": "", "kind": "Pod", "version": "v1"}])
        );
        let containers = &schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["type"], "array");
        assert_eq!(
            containers["items"]["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.api.core.v1.Container"
        );
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(schemas["io.k8s.api.core.v1.PodSpec"]["required"], json!(["containers"]));
        // Every reference in the document resolves inside it.
        let mut refs = Vec::new();
        for def in schemas.values() {
            collect_refs(def, &mut refs);
        }
        for r in refs {
            assert!(schemas.contains_key(&r), "dangling {r}");
        }
    }

    #[test]
    fn every_gvk_of_a_served_kind_is_on_exactly_one_schema_per_document() {
        let s = Schemas::load();
        for (group, versions) in resources::groups() {
            for version in versions {
                let (doc, _) = s.group_version_doc(group, version).unwrap();
                for r in resources::in_group_version(group, version) {
                    let want = json!({"group": r.group, "kind": r.kind, "version": r.version});
                    let holders = doc["components"]["schemas"]
                        .as_object()
                        .unwrap()
                        .values()
                        .filter(|d| {
                            d["x-kubernetes-group-version-kind"]
                                .as_array()
                                .is_some_and(|a| a.contains(&want))
                        })
                        .count();
                    assert_eq!(holders, 1, "{group}/{version} {}", r.kind);
                    assert!(
                        !find_patch_op(&doc, r.group, r.version, r.kind).is_empty(),
                        "{}",
                        r.kind
                    );
                }
            }
        }
    }

    #[test]
    fn swagger_v2_uses_definitions_refs() {
        let s = Schemas::load();
        let v2 = s.swagger_v2();
        assert_eq!(v2["swagger"], "2.0");
        let defs = v2["definitions"].as_object().unwrap();
        let spec = &defs["io.k8s.api.core.v1.Pod"]["properties"]["spec"];
        assert_eq!(spec["$ref"], "#/definitions/io.k8s.api.core.v1.PodSpec");
        assert!(spec.get("allOf").is_none());
        assert_eq!(
            defs["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]["items"]["$ref"],
            "#/definitions/io.k8s.api.core.v1.Container"
        );
        let patch = &v2["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert!(
            patch["consumes"]
                .as_array()
                .unwrap()
                .contains(&json!("application/strategic-merge-patch+json"))
        );
        assert_eq!(patch["parameters"][0]["in"], "body");
        assert!(defs.contains_key("io.k8s.api.apps.v1.Deployment") && defs.contains_key("io.k8s.api.core.v1.Pod"));
        let text = serde_json::to_string(&v2).unwrap();
        assert!(!text.contains("#/components/schemas/"));
        let ios = &defs["io.k8s.apimachinery.pkg.util.intstr.IntOrString"];
        assert_eq!((ios["type"].as_str(), ios.get("oneOf")), (Some("string"), None));
        assert_eq!(defs["io.k8s.apimachinery.pkg.api.resource.Quantity"]["type"], "string");
    }

    #[test]
    fn naming_helpers() {
        assert_eq!(group_camel(""), "Core");
        assert_eq!(group_camel("rbac.authorization.k8s.io"), "RbacAuthorization");
        assert_eq!(group_camel("networking.k8s.io"), "Networking");
        assert_eq!(tag("rbac.authorization.k8s.io", "v1"), "rbacAuthorization_v1");
        assert_eq!(tag("", "v1"), "core_v1");
        assert_eq!(article("Ingress"), "an Ingress");
    }
}
