//! Tests of the protobuf body decoder: bodies built from `DynamicMessage`s over the same descriptors
//! (written in proto field names) and a body captured from kubectl, checked against Kubernetes JSON.

use prost::Message as _;
use prost_reflect::{DynamicMessage, Kind, MapKey, MessageDescriptor, ReflectMessage as _, Value};
use serde_json::{Value as Json, json};

use super::walk::{INLINE, go_duration};
use super::{ProtobufDecoder, ProtobufError};

fn decoder() -> ProtobufDecoder {
    ProtobufDecoder::load().expect("descriptors load")
}

/// Builds a message of type `name` from JSON written in *proto* terms (proto field names, messages as
/// objects, `IntOrString` as `{type,intVal,strVal}`, bytes as strings).
fn build(dec: &ProtobufDecoder, name: &str, value: &Json) -> DynamicMessage {
    let desc = dec
        .pool()
        .get_message_by_name(name)
        .unwrap_or_else(|| panic!("no message {name}"));
    build_desc(desc, value)
}

fn build_desc(desc: MessageDescriptor, value: &Json) -> DynamicMessage {
    let mut msg = DynamicMessage::new(desc.clone());
    for (key, v) in value.as_object().expect("object") {
        let field = desc
            .get_field_by_name(key)
            .unwrap_or_else(|| panic!("no field {key} in {}", desc.full_name()));
        let built = if field.is_map() {
            let Kind::Message(entry) = field.kind() else {
                unreachable!()
            };
            let value_kind = entry.map_entry_value_field().kind();
            Value::Map(
                v.as_object()
                    .expect("map")
                    .iter()
                    .map(|(k, v)| (MapKey::String(k.clone()), scalar(&value_kind, v)))
                    .collect(),
            )
        } else if field.is_list() {
            Value::List(
                v.as_array()
                    .expect("list")
                    .iter()
                    .map(|e| scalar(&field.kind(), e))
                    .collect(),
            )
        } else {
            scalar(&field.kind(), v)
        };
        msg.set_field(&field, built);
    }
    msg
}

fn scalar(kind: &Kind, v: &Json) -> Value {
    match kind {
        Kind::Message(d) => Value::Message(build_desc(d.clone(), v)),
        Kind::String => Value::String(v.as_str().expect("string").to_owned()),
        Kind::Bytes => Value::Bytes(prost::bytes::Bytes::from(
            v.as_str().expect("bytes").as_bytes().to_vec(),
        )),
        Kind::Bool => Value::Bool(v.as_bool().expect("bool")),
        Kind::Int32 => Value::I32(v.as_i64().expect("int") as i32),
        Kind::Int64 => Value::I64(v.as_i64().expect("int")),
        Kind::Double => Value::F64(v.as_f64().expect("float")),
        other => panic!("unsupported kind {other:?}"),
    }
}

/// `k8s\0` + `runtime.Unknown{typeMeta, raw, contentEncoding: "", contentType: ""}`, as kubectl sends it.
fn envelope(dec: &ProtobufDecoder, api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
    let mut unknown = build(
        dec,
        "apimachinery.pkg.runtime.Unknown",
        &json!({"typeMeta": {"apiVersion": api_version, "kind": kind}, "contentEncoding": "", "contentType": ""}),
    );
    unknown.set_field_by_name("raw", Value::Bytes(raw.into()));
    let mut body = b"k8s\0".to_vec();
    body.extend(unknown.encode_to_vec());
    body
}

fn body(
    dec: &ProtobufDecoder,
    api_version: &str,
    kind: &str,
    message: &str,
    value: Json,
) -> Vec<u8> {
    envelope(
        dec,
        api_version,
        kind,
        build(dec, message, &value).encode_to_vec(),
    )
}

/// ObjectMeta as the Go marshaller writes it for a new object: zero values present.
fn meta(name: &str) -> Json {
    json!({"name": name, "generateName": "", "namespace": "", "selfLink": "", "uid": "",
           "resourceVersion": "", "generation": 0, "creationTimestamp": {}})
}

/// Without `status` (k8s-openapi cannot read some zero statuses) and with nulls dropped.
fn typed<T: serde::de::DeserializeOwned>(mut object: Json) -> T {
    fn drop_nulls(v: &mut Json) {
        match v {
            Json::Object(m) => {
                m.retain(|_, v| !v.is_null());
                m.values_mut().for_each(drop_nulls);
            }
            Json::Array(a) => a.iter_mut().for_each(drop_nulls),
            _ => {}
        }
    }
    drop_nulls(&mut object);
    serde_json::from_value(object).expect("deserialises into the k8s-openapi type")
}

const KUBECTL_SECRET: &[u8] = b"k8s\x00\n\x0c\n\x02v1\x12\x06Secret\x12\x1d\n\x11\n\x01s\x12\x00\x1a\x00\"\x00*\x002\x008\x00B\x00\x12\x06\n\x01a\x12\x01b\x1a\x00\x1a\x00\"\x00";

#[test]
fn captured_kubectl_secret() {
    let dec = decoder();
    let d = dec.decode(KUBECTL_SECRET).unwrap();
    assert_eq!((d.api_version.as_str(), d.kind.as_str()), ("v1", "Secret"));
    assert!(d.unknown_fields.is_empty());
    assert_eq!(
        d.object,
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": "s", "generation": 0, "creationTimestamp": null},
               "data": {"a": "Yg=="}})
    );
    let keys: Vec<&String> = d.object.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        ["apiVersion", "kind", "metadata", "data"],
        "apiVersion/kind first, then field order"
    );
    let secret: k8s_openapi::api::core::v1::Secret = typed(d.object);
    assert_eq!(secret.metadata.name.as_deref(), Some("s"));
    assert_eq!(secret.data.unwrap()["a"].0, b"b");
}

#[test]
fn configmap_with_binary_data_and_labels() {
    let dec = decoder();
    let mut m = meta("cm");
    m["labels"] = json!({"z": "1", "a": "2"});
    let b = body(
        &dec,
        "v1",
        "ConfigMap",
        "api.core.v1.ConfigMap",
        json!({"metadata": m, "data": {"k": "v", "b": "x"}, "binaryData": {"bin": "\u{0}\u{1}\u{2}"}}),
    );
    let d = dec.decode(&b).unwrap();
    assert_eq!(d.object["data"], json!({"b": "x", "k": "v"}));
    assert_eq!(d.object["binaryData"], json!({"bin": "AAEC"}));
    let label_keys: Vec<&String> = d.object["metadata"]["labels"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(label_keys, ["a", "z"], "map keys sorted as Go does");
    let cm: k8s_openapi::api::core::v1::ConfigMap = typed(d.object);
    assert_eq!(cm.binary_data.unwrap()["bin"].0, vec![0, 1, 2]);
}

#[test]
fn namespace_keeps_zero_numbers_and_drops_empty_strings() {
    let dec = decoder();
    let b = body(
        &dec,
        "v1",
        "Namespace",
        "api.core.v1.Namespace",
        json!({"metadata": meta("team-a"), "spec": {}, "status": {"phase": ""}}),
    );
    let d = dec.decode(&b).unwrap();
    assert_eq!(d.object["metadata"]["name"], "team-a");
    assert_eq!(d.object["metadata"]["generation"], 0);
    assert_eq!(d.object["spec"], json!({}));
    assert_eq!(d.object["status"], json!({}), "Go writes unset strings; Kubernetes JSON omits them");
}

fn deployment_body(dec: &ProtobufDecoder) -> Vec<u8> {
    let mut m = meta("web");
    m["labels"] = json!({"app": "web"});
    let mut tm = meta("");
    tm["labels"] = json!({"app": "web"});
    body(
        dec,
        "apps/v1",
        "Deployment",
        "api.apps.v1.Deployment",
        json!({
            "metadata": m,
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": tm, "spec": {
                    "containers": [{
                        "name": "nginx", "image": "nginx:1.27",
                        "ports": [{"name": "", "hostPort": 0, "containerPort": 80, "protocol": "TCP", "hostIP": ""}],
                        "resources": {"limits": {"cpu": {"string": "500m"}, "memory": {"string": "128Mi"}}},
                        "terminationMessagePath": "", "imagePullPolicy": ""
                    }],
                    "restartPolicy": ""
                }},
                "strategy": {"type": "", "rollingUpdate": {
                    "maxSurge": {"type": 1, "intVal": 0, "strVal": "25%"},
                    "maxUnavailable": {"type": 0, "intVal": 1, "strVal": ""}
                }},
                "minReadySeconds": 0, "revisionHistoryLimit": 10, "paused": false
            },
            "status": {"observedGeneration": 0, "replicas": 0}
        }),
    )
}

#[test]
fn deployment_with_containers_quantities_and_int_or_string() {
    let dec = decoder();
    let d = dec.decode(&deployment_body(&dec)).unwrap();
    assert_eq!(
        (d.api_version.as_str(), d.kind.as_str()),
        ("apps/v1", "Deployment")
    );
    let spec = &d.object["spec"];
    assert_eq!(spec["replicas"], 3);
    assert_eq!(
        spec["strategy"],
        json!({"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}})
    );
    let c = &spec["template"]["spec"]["containers"][0];
    assert_eq!(
        c["resources"]["limits"],
        json!({"cpu": "500m", "memory": "128Mi"})
    );
    assert_eq!(c["ports"][0]["containerPort"], 80);
    assert_eq!(
        spec["template"]["metadata"]["creationTimestamp"],
        Json::Null
    );
    assert_eq!(spec["paused"], false);

    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let dep: k8s_openapi::api::apps::v1::Deployment = typed(d.object);
    let spec = dep.spec.unwrap();
    let ru = spec.strategy.unwrap().rolling_update.unwrap();
    assert_eq!(ru.max_surge, Some(IntOrString::String("25%".into())));
    assert_eq!(ru.max_unavailable, Some(IntOrString::Int(1)));
    let container = &spec.template.spec.unwrap().containers[0];
    assert_eq!(container.image.as_deref(), Some("nginx:1.27"));
    assert_eq!(
        container
            .resources
            .as_ref()
            .unwrap()
            .limits
            .as_ref()
            .unwrap()["cpu"]
            .0,
        "500m"
    );
    assert_eq!(container.ports.as_ref().unwrap()[0].container_port, 80);
}

#[test]
fn service_with_int_target_port() {
    let dec = decoder();
    let b = body(
        &dec,
        "v1",
        "Service",
        "api.core.v1.Service",
        json!({
            "metadata": meta("web"),
            "spec": {
                "ports": [{"name": "80-8080", "protocol": "TCP", "port": 80,
                           "targetPort": {"type": 0, "intVal": 8080, "strVal": ""}, "nodePort": 0}],
                "selector": {"app": "web"}, "clusterIP": "", "type": "ClusterIP"
            },
            "status": {"loadBalancer": {}}
        }),
    );
    let d = dec.decode(&b).unwrap();
    assert_eq!(d.object["spec"]["ports"][0]["targetPort"], 8080);
    assert_eq!(d.object["spec"]["ports"][0]["nodePort"], 0);
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let svc: k8s_openapi::api::core::v1::Service = typed(d.object);
    let port = &svc.spec.unwrap().ports.unwrap()[0];
    assert_eq!(port.target_port, Some(IntOrString::Int(8080)));
    assert_eq!(port.port, 80);
}

#[test]
fn self_subject_access_review() {
    let dec = decoder();
    let b = body(
        &dec,
        "authorization.k8s.io/v1",
        "SelfSubjectAccessReview",
        "api.authorization.v1.SelfSubjectAccessReview",
        json!({
            "metadata": meta(""),
            "spec": {"resourceAttributes": {"namespace": "default", "verb": "create", "group": "", "version": "",
                                            "resource": "pods", "subresource": "", "name": ""}},
            "status": {"allowed": false, "reason": "", "evaluationError": "", "denied": false}
        }),
    );
    let d = dec.decode(&b).unwrap();
    assert_eq!(d.kind, "SelfSubjectAccessReview");
    assert_eq!(d.object["apiVersion"], "authorization.k8s.io/v1");
    assert_eq!(
        d.object["spec"]["resourceAttributes"],
        json!({"namespace": "default", "verb": "create", "resource": "pods"})
    );
    assert_eq!(d.object["status"]["allowed"], false);
}

#[test]
fn job_with_probe_handler_and_volume_source_inline() {
    let dec = decoder();
    let b = body(
        &dec,
        "batch/v1",
        "Job",
        "api.batch.v1.Job",
        json!({
            "metadata": meta("pi"),
            "spec": {"template": {"metadata": meta(""), "spec": {
                "volumes": [{"name": "cfg", "volumeSource": {"configMap": {
                    "localObjectReference": {"name": "settings"}, "defaultMode": 420}}}],
                "containers": [{
                    "name": "pi", "image": "perl",
                    "livenessProbe": {
                        "handler": {"httpGet": {"path": "/healthz",
                            "port": {"type": 1, "intVal": 0, "strVal": "http"}, "host": "", "scheme": "HTTP"}},
                        "initialDelaySeconds": 0, "timeoutSeconds": 0, "periodSeconds": 0},
                    "envFrom": [{"prefix": "", "secretRef": {"localObjectReference": {"name": "creds"}}}]
                }],
                "restartPolicy": "Never"
            }}, "backoffLimit": 4}
        }),
    );
    let d = dec.decode(&b).unwrap();
    let pod = &d.object["spec"]["template"]["spec"];
    assert_eq!(
        pod["volumes"][0],
        json!({"name": "cfg", "configMap": {"name": "settings", "defaultMode": 420}})
    );
    let probe = &pod["containers"][0]["livenessProbe"];
    assert_eq!(
        probe["httpGet"],
        json!({"path": "/healthz", "port": "http", "scheme": "HTTP"})
    );
    assert!(probe.get("handler").is_none());
    assert_eq!(probe["periodSeconds"], 0);
    assert_eq!(
        pod["containers"][0]["envFrom"][0]["secretRef"],
        json!({"name": "creds"})
    );

    let job: k8s_openapi::api::batch::v1::Job = typed(d.object);
    let pod = job.spec.unwrap().template.spec.unwrap();
    assert_eq!(
        pod.volumes.unwrap()[0].config_map.as_ref().unwrap().name,
        "settings"
    );
    let http = pod.containers[0]
        .liveness_probe
        .as_ref()
        .unwrap()
        .http_get
        .as_ref()
        .unwrap();
    assert_eq!(http.path.as_deref(), Some("/healthz"));
}

#[test]
fn time_micro_time_and_duration() {
    let dec = decoder();
    let mut m = meta("t");
    m["creationTimestamp"] = json!({"seconds": 1_700_000_000, "nanos": 999});
    m["deletionTimestamp"] = json!({});
    m["managedFields"] = json!([{"manager": "kubectl", "operation": "Update", "apiVersion": "v1",
        "time": {"seconds": 0}, "fieldsType": "FieldsV1", "fieldsV1": {"Raw": "{\"f:data\":{}}"}}]);
    let b = body(
        &dec,
        "v1",
        "ConfigMap",
        "api.core.v1.ConfigMap",
        json!({"metadata": m}),
    );
    let d = dec.decode(&b).unwrap();
    let meta = &d.object["metadata"];
    assert_eq!(meta["creationTimestamp"], "2023-11-14T22:13:20Z");
    assert_eq!(meta["deletionTimestamp"], Json::Null);
    assert_eq!(meta["managedFields"][0]["time"], "1970-01-01T00:00:00Z");
    assert_eq!(meta["managedFields"][0]["fieldsV1"], json!({"f:data": {}}));

    let b = body(
        &dec,
        "events.k8s.io/v1",
        "Event",
        "api.events.v1.Event",
        json!({
        "metadata": {"name": "e"}, "eventTime": {"seconds": 1_700_000_000, "nanos": 123_456_789},
        "deprecatedFirstTimestamp": {}}),
    );
    let d = dec.decode(&b).unwrap();
    assert_eq!(d.object["eventTime"], "2023-11-14T22:13:20.123456Z");
    assert_eq!(d.object["deprecatedFirstTimestamp"], Json::Null);

    let b = body(
        &dec,
        "metrics.k8s.io/v1beta1",
        "PodMetrics",
        "metrics.pkg.apis.metrics.v1beta1.PodMetrics",
        json!({"metadata": {"name": "p"}, "window": {"duration": 30_000_000_000_i64},
               "containers": [{"name": "c", "usage": {"cpu": {"string": "1m"}}}]}),
    );
    let d = dec.decode(&b).unwrap();
    assert_eq!(d.object["window"], "30s");
    assert_eq!(d.object["containers"][0]["usage"]["cpu"], "1m");
}

#[test]
fn go_duration_strings() {
    for (nanos, want) in [
        (0, "0s"),
        (1, "1ns"),
        (1_500, "1.5µs"),
        (100_000_000, "100ms"),
        (1_500_000_000, "1.5s"),
        (90_000_000_000, "1m30s"),
        (3_600_000_000_000, "1h0m0s"),
        (-3_723_000_000_000, "-1h2m3s"),
        (86_400_000_000_001, "24h0m0.000000001s"),
    ] {
        assert_eq!(go_duration(nanos), want, "{nanos}ns");
    }
}

#[test]
fn nullable_wrappers_become_arrays() {
    let dec = decoder();
    let b = body(
        &dec,
        "authorization.k8s.io/v1",
        "SubjectAccessReview",
        "api.authorization.v1.SubjectAccessReview",
        json!({"metadata": {}, "spec": {"user": "u", "groups": ["g"], "extra": {"scopes": {"items": ["a", "b"]}}}}),
    );
    let d = dec.decode(&b).unwrap();
    assert_eq!(d.object["spec"]["extra"], json!({"scopes": ["a", "b"]}));

    // An ordinary message whose only field is `items` stays an object.
    let b = body(
        &dec,
        "v1",
        "ConfigMapList",
        "api.core.v1.ConfigMapList",
        json!({"metadata": {}, "items": [{"metadata": {"name": "a"}}]}),
    );
    let d = dec.decode(&b).unwrap();
    assert_eq!(d.object["items"][0]["metadata"]["name"], "a");
}

#[test]
fn raw_extension_json_and_nested_protobuf() {
    let dec = decoder();
    let mut rev = build(
        &dec,
        "api.apps.v1.ControllerRevision",
        &json!({"metadata": {"name": "r1"}, "revision": 2}),
    );
    let mut data = build(&dec, "apimachinery.pkg.runtime.RawExtension", &json!({}));
    data.set_field_by_name(
        "raw",
        Value::Bytes(br#"{"spec":{"template":{"x":1}}}"#.to_vec().into()),
    );
    rev.set_field_by_name("data", Value::Message(data));
    let d = dec
        .decode(&envelope(
            &dec,
            "apps/v1",
            "ControllerRevision",
            rev.encode_to_vec(),
        ))
        .unwrap();
    assert_eq!(d.object["data"], json!({"spec": {"template": {"x": 1}}}));
    assert_eq!(d.object["revision"], 2);

    // A RawExtension holding a protobuf object (with an unknown field in it).
    let mut inner_meta = build(
        &dec,
        "apimachinery.pkg.apis.meta.v1.ObjectMeta",
        &json!({"name": "inner"}),
    )
    .encode_to_vec();
    inner_meta.extend([0x98, 0x06, 0x01]); // field 99, varint 1
    let mut secret = build(&dec, "api.core.v1.Secret", &json!({"type": "Opaque"}));
    let meta_desc = dec
        .pool()
        .get_message_by_name("apimachinery.pkg.apis.meta.v1.ObjectMeta")
        .unwrap();
    secret.set_field_by_name(
        "metadata",
        Value::Message(DynamicMessage::decode(meta_desc, inner_meta.as_slice()).unwrap()),
    );
    let nested = envelope(&dec, "v1", "Secret", secret.encode_to_vec());
    let mut data = build(&dec, "apimachinery.pkg.runtime.RawExtension", &json!({}));
    data.set_field_by_name("raw", Value::Bytes(nested.into()));
    rev.set_field_by_name("data", Value::Message(data));
    let d = dec
        .decode(&envelope(
            &dec,
            "apps/v1",
            "ControllerRevision",
            rev.encode_to_vec(),
        ))
        .unwrap();
    assert_eq!(
        d.object["data"],
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "inner"}, "type": "Opaque"})
    );
    assert_eq!(d.unknown_fields, ["data.metadata.#99"]);
}

#[test]
fn unknown_fields_are_reported_with_paths() {
    let dec = decoder();
    let mut dep = DynamicMessage::decode(
        dec.message_for("apps/v1", "Deployment").unwrap(),
        &deployment_body_raw(&dec)[..],
    )
    .unwrap();
    // Unknown field 77 (string "x") inside the first container, and 500 at the top level.
    let Value::Message(spec) = dep.get_field_by_name_mut("spec").unwrap() else {
        panic!()
    };
    let Value::Message(template) = spec.get_field_by_name_mut("template").unwrap() else {
        panic!()
    };
    let Value::Message(pod) = template.get_field_by_name_mut("spec").unwrap() else {
        panic!()
    };
    let Value::List(containers) = pod.get_field_by_name_mut("containers").unwrap() else {
        panic!()
    };
    let Value::Message(c) = &mut containers[0] else {
        panic!()
    };
    let mut bytes = c.encode_to_vec();
    bytes.extend([0xea, 0x04, 0x01, b'x']); // field 77, length-delimited "x"
    *c = DynamicMessage::decode(c.descriptor(), bytes.as_slice()).unwrap();
    let mut raw = dep.encode_to_vec();
    raw.extend([0xa0, 0x1f, 0x05]); // field 500, varint 5
    let d = dec
        .decode(&envelope(&dec, "apps/v1", "Deployment", raw))
        .unwrap();
    assert_eq!(
        d.unknown_fields,
        ["spec.template.spec.containers[0].#77", "#500"]
    );
    assert_eq!(
        d.object["spec"]["template"]["spec"]["containers"][0]["name"],
        "nginx"
    );
}

fn deployment_body_raw(dec: &ProtobufDecoder) -> Vec<u8> {
    let body = deployment_body(dec);
    let envelope = DynamicMessage::decode(
        dec.pool()
            .get_message_by_name("apimachinery.pkg.runtime.Unknown")
            .unwrap(),
        &body[4..],
    )
    .unwrap();
    match envelope.get_field_by_name("raw").as_deref() {
        Some(Value::Bytes(b)) => b.to_vec(),
        _ => panic!("no raw"),
    }
}

#[test]
fn field_name_exceptions() {
    let dec = decoder();
    let b = body(
        &dec,
        "authentication.k8s.io/v1",
        "TokenRequest",
        "api.authentication.v1.TokenRequest",
        json!({
            "metadata": meta("sa"),
            "spec": {"audiences": ["api"], "expirationSeconds": 3600,
                     "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "p", "uID": "123"}},
            "status": {"token": "", "expirationTimestamp": {}}
        }),
    );
    let d = dec.decode(&b).unwrap();
    assert_eq!(d.object["spec"]["boundObjectRef"]["uid"], "123");
    assert_eq!(d.object["spec"]["expirationSeconds"], 3600);
    assert_eq!(d.object["status"]["expirationTimestamp"], Json::Null);

    let b = body(
        &dec,
        "networking.k8s.io/v1",
        "IngressClass",
        "api.networking.v1.IngressClass",
        json!({
            "metadata": meta("nginx"),
            "spec": {"controller": "k8s.io/ingress-nginx", "parameters": {"aPIGroup": "k8s.example.com", "kind": "P", "name": "p"}}
        }),
    );
    let d = dec.decode(&b).unwrap();
    assert_eq!(
        d.object["spec"]["parameters"]["apiGroup"],
        "k8s.example.com"
    );

    let b = body(
        &dec,
        "admissionregistration.k8s.io/v1",
        "ValidatingWebhookConfiguration",
        "api.admissionregistration.v1.ValidatingWebhookConfiguration",
        json!({
            "metadata": meta("w"),
            "Webhooks": [{"name": "w.example.com", "rules": [{"operations": ["CREATE"],
                "rule": {"apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"], "scope": "*"}}]}]
        }),
    );
    let d = dec.decode(&b).unwrap();
    assert_eq!(
        d.object["webhooks"][0]["rules"][0],
        json!({"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"], "scope": "*"})
    );
}

#[test]
fn ingress_and_not_inline_lookalikes() {
    let dec = decoder();
    let b = body(
        &dec,
        "networking.k8s.io/v1",
        "Ingress",
        "api.networking.v1.Ingress",
        json!({
            "metadata": meta("ing"),
            "spec": {"rules": [{"host": "a.example.com", "ingressRuleValue": {"http": {"paths": [{
                "path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": "web", "port": {"name": "", "number": 80}}}}]}}}]}
        }),
    );
    let d = dec.decode(&b).unwrap();
    assert_eq!(
        d.object["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["port"]["number"],
        80
    );
    let ing: k8s_openapi::api::networking::v1::Ingress = typed(d.object);
    assert_eq!(
        ing.spec.unwrap().rules.unwrap()[0].host.as_deref(),
        Some("a.example.com")
    );

    // `labelSelector` has the name of its type but is not inline.
    let b = body(
        &dec,
        "policy/v1",
        "PodDisruptionBudget",
        "api.policy.v1.PodDisruptionBudget",
        json!({
            "metadata": meta("pdb"),
            "spec": {"minAvailable": {"type": 0, "intVal": 1, "strVal": ""}, "selector": {"matchLabels": {"app": "web"}}}
        }),
    );
    let d = dec.decode(&b).unwrap();
    assert_eq!(
        d.object["spec"],
        json!({"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}})
    );
    let b = body(
        &dec,
        "v1",
        "Pod",
        "api.core.v1.Pod",
        json!({
            "metadata": meta("p"),
            "spec": {"topologySpreadConstraints": [{"maxSkew": 1, "labelSelector": {"matchLabels": {"a": "b"}}}]}
        }),
    );
    let d = dec.decode(&b).unwrap();
    assert_eq!(
        d.object["spec"]["topologySpreadConstraints"][0]["labelSelector"]["matchLabels"]["a"],
        "b"
    );
}

#[test]
fn apiextensions_schema_json() {
    let dec = decoder();
    let b = body(
        &dec,
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        "apiextensions_apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition",
        json!({
            "metadata": meta("widgets.example.com"),
            "spec": {"group": "example.com", "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": {"type": "object", "xKubernetesPreserveUnknownFields": true,
                                 "additionalProperties": {"allows": true}},
                        "size": {"type": "integer", "default": {"raw": "3"}, "maximum": 10.5},
                        "tags": {"type": "array", "items": {"schema": {"type": "string"}}}
                    }}}}]}
        }),
    );
    let d = dec.decode(&b).unwrap();
    let props = &d.object["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"];
    assert_eq!(
        props["spec"],
        json!({"type": "object", "additionalProperties": true, "x-kubernetes-preserve-unknown-fields": true})
    );
    assert_eq!(
        props["size"],
        json!({"type": "integer", "default": 3, "maximum": 10.5})
    );
    assert_eq!(props["tags"]["items"], json!({"type": "string"}));
}

#[test]
fn message_lookup() {
    let dec = decoder();
    for (api_version, kind, full) in [
        ("v1", "Secret", "api.core.v1.Secret"),
        ("apps/v1", "Deployment", "api.apps.v1.Deployment"),
        (
            "rbac.authorization.k8s.io/v1",
            "ClusterRole",
            "api.rbac.v1.ClusterRole",
        ),
        (
            "authorization.k8s.io/v1",
            "SelfSubjectRulesReview",
            "api.authorization.v1.SelfSubjectRulesReview",
        ),
        (
            "authentication.k8s.io/v1",
            "SelfSubjectReview",
            "api.authentication.v1.SelfSubjectReview",
        ),
        (
            "autoscaling/v2",
            "HorizontalPodAutoscaler",
            "api.autoscaling.v2.HorizontalPodAutoscaler",
        ),
        ("policy/v1", "Eviction", "api.policy.v1.Eviction"),
        (
            "scheduling.k8s.io/v1",
            "PriorityClass",
            "api.scheduling.v1.PriorityClass",
        ),
        (
            "networking.k8s.io/v1",
            "Ingress",
            "api.networking.v1.Ingress",
        ),
        ("batch/v1", "CronJob", "api.batch.v1.CronJob"),
        (
            "coordination.k8s.io/v1",
            "Lease",
            "api.coordination.v1.Lease",
        ),
        (
            "discovery.k8s.io/v1",
            "EndpointSlice",
            "api.discovery.v1.EndpointSlice",
        ),
        ("events.k8s.io/v1", "Event", "api.events.v1.Event"),
        (
            "storage.k8s.io/v1",
            "StorageClass",
            "api.storage.v1.StorageClass",
        ),
        (
            "certificates.k8s.io/v1",
            "CertificateSigningRequest",
            "api.certificates.v1.CertificateSigningRequest",
        ),
        (
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            "apiextensions_apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition",
        ),
        (
            "apiregistration.k8s.io/v1",
            "APIService",
            "kube_aggregator.pkg.apis.apiregistration.v1.APIService",
        ),
        (
            "internal.apiserver.k8s.io/v1alpha1",
            "StorageVersion",
            "api.apiserverinternal.v1alpha1.StorageVersion",
        ),
        (
            "meta.k8s.io/v1",
            "Status",
            "apimachinery.pkg.apis.meta.v1.Status",
        ),
        (
            "policy/v1",
            "DeleteOptions",
            "apimachinery.pkg.apis.meta.v1.DeleteOptions",
        ),
    ] {
        assert_eq!(
            dec.message_for(api_version, kind).unwrap().full_name(),
            full,
            "{api_version} {kind}"
        );
    }
}

#[test]
fn every_inline_pair_exists() {
    let dec = decoder();
    for (field, ty) in INLINE {
        let found = dec.pool().all_messages().any(|m| {
            m.get_field_by_name(field)
                .is_some_and(|f| matches!(f.kind(), Kind::Message(t) if t.name() == *ty))
        });
        assert!(found, "no field {field} of type {ty} in the descriptors");
    }
}

#[test]
fn errors_name_the_problem() {
    let dec = decoder();
    let e = dec.decode(br#"{"kind":"Secret"}"#).unwrap_err();
    assert!(matches!(e, ProtobufError::MissingMagic { .. }), "{e}");
    assert!(e.to_string().contains("k8s\\0"), "{e}");

    let e = dec.decode(b"k8s\0\xff\xff\xff").unwrap_err();
    assert!(matches!(e, ProtobufError::Malformed { .. }), "{e}");
    assert!(e.to_string().contains("runtime.Unknown envelope"), "{e}");

    let e = dec
        .decode(&envelope(&dec, "v1", "Secret", vec![0x0a, 0x50, 0x01]))
        .unwrap_err();
    assert!(matches!(e, ProtobufError::Malformed { .. }), "{e}");
    assert!(e.to_string().contains("Secret (v1)"), "{e}");

    let e = dec
        .decode(&envelope(&dec, "v1", "Widget", vec![]))
        .unwrap_err();
    assert!(
        matches!(&e, ProtobufError::UnknownKind { kind, .. } if kind == "Widget"),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        "kind \"Widget\" is not known in apiVersion \"v1\""
    );

    let e = dec
        .decode(&envelope(&dec, "example.com/v1", "Widget", vec![]))
        .unwrap_err();
    assert!(matches!(e, ProtobufError::UnknownApiVersion { .. }), "{e}");
    assert!(e.to_string().contains("example.com/v1"), "{e}");

    let e = dec
        .decode(&envelope(&dec, "apps/v1", "api.core.v1.Secret", vec![]))
        .unwrap_err();
    assert!(matches!(e, ProtobufError::UnknownKind { .. }), "{e}");

    let e = dec
        .decode(&envelope(&dec, "", "Secret", vec![]))
        .unwrap_err();
    assert!(
        matches!(e, ProtobufError::MissingTypeMeta("apiVersion")),
        "{e}"
    );

    let mut raw = build(&dec, "api.core.v1.ConfigMap", &json!({})).encode_to_vec();
    let mut bad = build(
        &dec,
        "apimachinery.pkg.apis.meta.v1.ManagedFieldsEntry",
        &json!({}),
    );
    let mut fields = build(&dec, "apimachinery.pkg.apis.meta.v1.FieldsV1", &json!({}));
    fields.set_field_by_name("Raw", Value::Bytes(b"{not json".to_vec().into()));
    bad.set_field_by_name("fieldsV1", Value::Message(fields));
    let mut m = build(&dec, "apimachinery.pkg.apis.meta.v1.ObjectMeta", &json!({}));
    m.set_field_by_name("managedFields", Value::List(vec![Value::Message(bad)]));
    let mut cm =
        DynamicMessage::decode(dec.message_for("v1", "ConfigMap").unwrap(), raw.as_slice())
            .unwrap();
    cm.set_field_by_name("metadata", Value::Message(m));
    raw = cm.encode_to_vec();
    let e = dec
        .decode(&envelope(&dec, "v1", "ConfigMap", raw))
        .unwrap_err();
    assert!(
        e.to_string().contains("metadata.managedFields[0].fieldsV1"),
        "{e}"
    );
}

#[test]
fn content_type_json_envelope() {
    let dec = decoder();
    let mut unknown = build(
        &dec,
        "apimachinery.pkg.runtime.Unknown",
        &json!({
        "typeMeta": {"apiVersion": "v1", "kind": "ConfigMap"}, "contentEncoding": "", "contentType": "application/json"}),
    );
    unknown.set_field_by_name(
        "raw",
        Value::Bytes(br#"{"kind":"ConfigMap","data":{"a":"b"}}"#.to_vec().into()),
    );
    let mut b = b"k8s\0".to_vec();
    b.extend(unknown.encode_to_vec());
    let d = dec.decode(&b).unwrap();
    assert_eq!(
        d.object,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": "b"}})
    );
}

#[test]
fn load_is_fast_enough_and_complete() {
    let start = std::time::Instant::now();
    let dec = decoder();
    let elapsed = start.elapsed();
    assert_eq!(dec.pool().files().len(), 76);
    assert!(
        elapsed < std::time::Duration::from_secs(5),
        "load took {elapsed:?}"
    );
}

#[test]
fn empty_strings_stay_in_maps_and_where_they_mean_something() {
    let dec = decoder();
    let cm = body(&dec, "v1", "ConfigMap", "api.core.v1.ConfigMap", json!({"metadata": meta("c"), "data": {"empty": "", "k": "v"}}));
    let d = dec.decode(&cm).unwrap();
    assert_eq!(d.object["data"], json!({"empty": "", "k": "v"}));
    assert!(d.object["metadata"].get("namespace").is_none());
    let pvc = body(&dec, "v1", "PersistentVolumeClaim", "api.core.v1.PersistentVolumeClaim",
        json!({"metadata": meta("p"), "spec": {"storageClassName": "", "volumeName": ""}}));
    let d = dec.decode(&pvc).unwrap();
    assert_eq!(d.object["spec"], json!({"storageClassName": ""}), "an explicit empty class means no class");
}
