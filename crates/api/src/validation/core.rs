//! Core/v1 kinds other than Pods and controllers: Service, Endpoints, ConfigMap, Secret, Namespace, Node,
//! Event, PersistentVolume(Claim), ResourceQuota and LimitRange, with their update rules.

use std::collections::HashSet;

use base64::Engine;
use serde_json::Value;

use super::format;
use super::quantity::{quantity_text, Quantity};
use super::{
    get, gofmt, immutable, int_at, invalid_go, list, map_at, meta, not_supported_go, one_of, opt_int, opt_str, pod,
    qualified_name, same, str_at, Errs, Path,
};
use crate::status::FieldError;

const MAX_SECRET_SIZE: usize = 1024 * 1024;
const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
const ACCESS_MODES: &[&str] = &["ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"];
const IP_MSG: &str = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)";

// ---------------------------------------------------------------------------------------------------
// Service

fn cluster_ips(spec: &Value) -> Vec<&str> {
    let ips: Vec<&str> = list(spec, "clusterIPs").iter().map(|v| v.as_str().unwrap_or("")).collect();
    if !ips.is_empty() {
        return ips;
    }
    match str_at(spec, "clusterIP") {
        "" => Vec::new(),
        ip => vec![ip],
    }
}

fn is_headless(spec: &Value) -> bool {
    cluster_ips(spec) == ["None"]
}

fn externally_accessible(spec: &Value) -> bool {
    let t = str_at(spec, "type");
    t == "LoadBalancer" || t == "NodePort" || (t == "ClusterIP" && !list(spec, "externalIPs").is_empty())
}

pub fn service(obj: &Value, e: &mut Errs) {
    let spec = &obj["spec"];
    let p = Path::new("spec");
    let ty = str_at(spec, "type");
    let headless = is_headless(spec);
    let ports = list(spec, "ports");
    if ports.is_empty() && !headless && ty != "ExternalName" {
        e.push(FieldError::required(p.child("ports")));
    }
    match ty {
        "LoadBalancer" | "NodePort" => {
            if headless {
                e.push(FieldError::invalid(
                    p.child("clusterIPs").index(0),
                    &Value::from("None"),
                    &format!("may not be set to 'None' for {ty} services"),
                ));
            }
            if ty == "LoadBalancer" {
                for (i, port) in ports.iter().enumerate() {
                    if int_at(port, "port") == 10250 {
                        e.push(FieldError::invalid(
                            p.child("ports").index(i),
                            &Value::from(10250),
                            "may not expose port 10250 externally since it is used by kubelet",
                        ));
                    }
                }
            }
        }
        "ExternalName" => {
            if !cluster_ips(spec).is_empty() {
                e.push(FieldError::forbidden(p.child("clusterIPs"), "may not be set for ExternalName services"));
            }
            if !list(spec, "ipFamilies").is_empty() {
                e.push(FieldError::forbidden(p.child("ipFamilies"), "may not be set for ExternalName services"));
            }
            if get(spec, "ipFamilyPolicy").is_some() {
                e.push(FieldError::forbidden(p.child("ipFamilyPolicy"), "may not be set for ExternalName services"));
            }
            let cname = str_at(spec, "externalName");
            let cname = cname.strip_suffix('.').unwrap_or(cname);
            if cname.is_empty() {
                e.push(FieldError::required(p.child("externalName")));
            } else {
                super::dns_subdomain(cname, &p.child("externalName"), e);
            }
        }
        _ => {}
    }
    let mut names = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        service_port(port, ports.len() > 1, &mut names, &p.child("ports").index(i), e);
    }
    meta::labels(spec.get("selector"), &p.child("selector"), e);
    let affinity = str_at(spec, "sessionAffinity");
    match affinity {
        "" => e.push(FieldError::required(p.child("sessionAffinity"))),
        "ClientIP" => {
            let cp = p.child("sessionAffinityConfig");
            let when = "when session affinity type is ClientIP";
            match get(spec, "sessionAffinityConfig") {
                None => e.push(FieldError::required_msg(&cp, when)),
                Some(c) => match get(c, "clientIP") {
                    None => e.push(FieldError::required_msg(cp.child("clientIP"), when)),
                    Some(ci) => match opt_int(ci, "timeoutSeconds") {
                        None => e.push(FieldError::required_msg(cp.child("clientIP").child("timeoutSeconds"), when)),
                        Some(t) if !(1..=86400).contains(&t) => e.push(FieldError::invalid(
                            cp.child("clientIP").child("timeoutSeconds"),
                            &Value::from(t),
                            "must be greater than 0 and less than 86400",
                        )),
                        Some(_) => {}
                    },
                },
            }
        }
        "None" => {
            if get(spec, "sessionAffinityConfig").is_some() {
                e.push(FieldError::forbidden(p.child("sessionAffinityConfig"), "must not be set when session affinity is None"));
            }
        }
        other => e.push(FieldError::not_supported(p.child("sessionAffinity"), &Value::from(other), &["ClientIP", "None"])),
    }
    if ty != "ExternalName" {
        cluster_ip_fields(spec, &p, e);
    }
    for (i, ip) in list(spec, "externalIPs").iter().enumerate() {
        let ip = ip.as_str().unwrap_or("");
        if !format::is_ip(ip) {
            e.push(FieldError::invalid(p.child("externalIPs").index(i), &Value::from(ip), IP_MSG));
        } else {
            non_special_ip(ip, &p.child("externalIPs").index(i), e);
        }
    }
    one_of(ty, &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"], &p.child("type"), e);
    if ty == "ClusterIP" {
        for (i, port) in ports.iter().enumerate() {
            if int_at(port, "nodePort") != 0 {
                e.push(FieldError::forbidden(p.child("ports").index(i).child("nodePort"), "may not be used when `type` is 'ClusterIP'"));
            }
        }
    }
    let mut node_ports = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let np = int_at(port, "nodePort");
        if np != 0 && !node_ports.insert((str_at(port, "protocol"), np)) {
            e.push(FieldError::duplicate(p.child("ports").index(i).child("nodePort"), &Value::from(np)));
        }
    }
    let mut seen = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let key = (str_at(port, "protocol"), int_at(port, "port"));
        if !seen.insert(key) {
            e.push(FieldError {
                reason: "FieldValueDuplicate",
                field: p.child("ports").index(i).into(),
                message: format!("Duplicate value: {}", gofmt::service_port_key(key.0, key.1)),
            });
        }
    }
    for (i, r) in list(spec, "loadBalancerSourceRanges").iter().enumerate() {
        let r = r.as_str().unwrap_or("").trim();
        if !format::is_cidr(r) {
            e.push(FieldError::invalid(
                p.child("loadBalancerSourceRanges").index(i),
                &Value::from(r),
                "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
            ));
        }
    }
    let etp = str_at(spec, "externalTrafficPolicy");
    if !externally_accessible(spec) {
        if !etp.is_empty() {
            e.push(FieldError::invalid(
                p.child("externalTrafficPolicy"),
                &Value::from(etp),
                "may only be set for externally-accessible services",
            ));
        }
    } else {
        one_of(etp, &["Cluster", "Local"], &p.child("externalTrafficPolicy"), e);
    }
    let hc = int_at(spec, "healthCheckNodePort");
    if hc != 0 && !(ty == "LoadBalancer" && etp == "Local") {
        e.push(FieldError::invalid(
            p.child("healthCheckNodePort"),
            &Value::from(hc),
            "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
        ));
    }
    match opt_str(spec, "internalTrafficPolicy") {
        None if matches!(ty, "ClusterIP" | "NodePort" | "LoadBalancer") => {
            e.push(FieldError::required(p.child("internalTrafficPolicy")));
        }
        Some(itp) if !matches!(itp, "Cluster" | "Local") => {
            e.push(FieldError::not_supported(p.child("internalTrafficPolicy"), &Value::from(itp), &["Cluster", "Local"]));
        }
        _ => {}
    }
    if get(spec, "loadBalancerClass").is_some() && ty != "LoadBalancer" {
        e.push(FieldError::forbidden(p.child("loadBalancerClass"), "may only be used when `type` is 'LoadBalancer'"));
    }
    if let Some(td) = opt_str(spec, "trafficDistribution")
        && td != "PreferClose"
    {
        e.push(FieldError::not_supported(p.child("trafficDistribution"), &Value::from(td), &["PreferClose"]));
    }
}

fn service_port<'a>(port: &'a Value, require_name: bool, names: &mut HashSet<&'a str>, p: &Path, e: &mut Errs) {
    let name = str_at(port, "name");
    if require_name && name.is_empty() {
        e.push(FieldError::required(p.child("name")));
    } else if !name.is_empty() {
        super::dns_label(name, &p.child("name"), e);
        if !names.insert(name) {
            e.push(FieldError::duplicate(p.child("name"), &Value::from(name)));
        }
    }
    let num = int_at(port, "port");
    for m in format::is_valid_port_num(num) {
        e.push(FieldError::invalid(p.child("port"), &Value::from(num), &m));
    }
    one_of(str_at(port, "protocol"), PROTOCOLS, &p.child("protocol"), e);
    pod::port_num_or_name(port.get("targetPort"), &p.child("targetPort"), e);
    if let Some(ap) = opt_str(port, "appProtocol") {
        qualified_name(ap, &p.child("appProtocol"), e);
    }
}

fn cluster_ip_fields(spec: &Value, p: &Path, e: &mut Errs) {
    let ips_path = p.child("clusterIPs");
    let ips = cluster_ips(spec);
    let cluster_ip = str_at(spec, "clusterIP");
    if !cluster_ip.is_empty() && !list(spec, "clusterIPs").is_empty() && ips.first() != Some(&cluster_ip) {
        e.push(invalid_go(&ips_path, &gofmt::str_slice(spec.get("clusterIPs")), "first value must match `clusterIP`"));
    }
    for (i, ip) in ips.iter().enumerate() {
        if *ip == "None" && i == 0 && ips.len() == 1 {
            continue;
        }
        if *ip == "None" {
            e.push(invalid_go(&ips_path, &gofmt::str_slice(spec.get("clusterIPs")), "'None' must be the first and only value"));
        } else if !format::is_ip(ip) {
            e.push(FieldError::invalid(ips_path.index(i), &Value::from(*ip), IP_MSG));
        }
    }
    if let Some(policy) = opt_str(spec, "ipFamilyPolicy")
        && !matches!(policy, "SingleStack" | "PreferDualStack" | "RequireDualStack")
    {
        e.push(FieldError::not_supported(
            p.child("ipFamilyPolicy"),
            &Value::from(policy),
            &["PreferDualStack", "RequireDualStack", "SingleStack"],
        ));
    }
    let mut families = HashSet::new();
    for (i, f) in list(spec, "ipFamilies").iter().enumerate() {
        let f = f.as_str().unwrap_or("");
        let fp = p.child("ipFamilies").index(i);
        if !matches!(f, "IPv4" | "IPv6") {
            e.push(FieldError::not_supported(&fp, &Value::from(f), &["IPv4", "IPv6"]));
        } else if !families.insert(f) {
            e.push(FieldError::duplicate(&fp, &Value::from(f)));
        }
    }
}

/// Service updates: the cluster IPs may not change once set (unless the type changes to or from
/// ExternalName, or both are headless); an empty `clusterIP` keeps the allocated one (the registry fills it
/// in). The load balancer class may not change once set.
pub fn service_update(new: &Value, old: &Value, e: &mut Errs) {
    let (ns, os) = (&new["spec"], &old["spec"]);
    let (nt, ot) = (str_at(ns, "type"), str_at(os, "type"));
    if nt != "ExternalName" && ot != "ExternalName" && !(is_headless(ns) && is_headless(os)) {
        let (new_ips, old_ips) = (cluster_ips(ns), cluster_ips(os));
        if !new_ips.is_empty() && !old_ips.is_empty() && new_ips[0] != old_ips[0] {
            let rendered = gofmt::str_slice(Some(&Value::from(new_ips.clone())));
            e.push(invalid_go(Path::new("spec.clusterIPs").index(0), &rendered, "may not change once set"));
        }
    }
    if nt == "LoadBalancer" && ot == "LoadBalancer" {
        let (nl, ol) = (opt_str(ns, "loadBalancerClass"), opt_str(os, "loadBalancerClass"));
        if nl != ol {
            e.push(FieldError::invalid("spec.loadBalancerClass", &nl.map_or(Value::Null, Value::from), "may not change once set"));
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// Endpoints

/// `ValidateNonSpecialIP`: unspecified, loopback and link-local addresses make no sense as endpoints.
pub(super) fn non_special_ip(ip: &str, p: &Path, e: &mut Errs) {
    let Ok(addr) = ip.parse::<std::net::IpAddr>() else { return };
    let (link_local_unicast, link_local_multicast) = match addr {
        std::net::IpAddr::V4(v4) => (v4.is_link_local(), v4.octets()[..3] == [224, 0, 0]),
        std::net::IpAddr::V6(v6) => ((v6.segments()[0] & 0xffc0) == 0xfe80, (v6.segments()[0] & 0xff0f) == 0xff02),
    };
    let mut push = |m: String| e.push(FieldError::invalid(p, &Value::from(ip), &m));
    if addr.is_unspecified() {
        push(format!("may not be unspecified ({ip})"));
    }
    if addr.is_loopback() {
        push("may not be in the loopback range (127.0.0.0/8, ::1/128)".into());
    }
    if link_local_unicast {
        push("may not be in the link-local range (169.254.0.0/16, fe80::/10)".into());
    }
    if link_local_multicast {
        push("may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)".into());
    }
}

pub fn endpoints(obj: &Value, e: &mut Errs) {
    let p = Path::new("subsets");
    for (i, ss) in list(obj, "subsets").iter().enumerate() {
        let sp = p.index(i);
        if list(ss, "addresses").is_empty() && list(ss, "notReadyAddresses").is_empty() {
            e.push(FieldError::required_msg(&sp, "must specify `addresses` or `notReadyAddresses`"));
        }
        for kind in ["addresses", "notReadyAddresses"] {
            for (j, a) in list(ss, kind).iter().enumerate() {
                let ap = sp.child(kind).index(j);
                let ip = str_at(a, "ip");
                if !format::is_ip(ip) {
                    e.push(FieldError::invalid(ap.child("ip"), &Value::from(ip), IP_MSG));
                } else {
                    non_special_ip(ip, &ap.child("ip"), e);
                }
                let hostname = str_at(a, "hostname");
                if !hostname.is_empty() {
                    super::dns_label(hostname, &ap.child("hostname"), e);
                }
                if let Some(node) = opt_str(a, "nodeName") {
                    super::dns_subdomain(node, &ap.child("nodeName"), e);
                }
            }
        }
        let ports = list(ss, "ports");
        for (j, port) in ports.iter().enumerate() {
            let pp = sp.child("ports").index(j);
            let name = str_at(port, "name");
            if ports.len() > 1 && name.is_empty() {
                e.push(FieldError::required(pp.child("name")));
            } else if !name.is_empty() {
                super::dns_label(name, &pp.child("name"), e);
            }
            let num = int_at(port, "port");
            for m in format::is_valid_port_num(num) {
                e.push(FieldError::invalid(pp.child("port"), &Value::from(num), &m));
            }
            one_of(str_at(port, "protocol"), PROTOCOLS, &pp.child("protocol"), e);
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// ConfigMap and Secret

fn decoded_len(v: &Value) -> usize {
    v.as_str().map_or(0, |s| base64::engine::general_purpose::STANDARD.decode(s).map_or(0, |b| b.len()))
}

pub fn config_map(obj: &Value, e: &mut Errs) {
    let mut total = 0usize;
    let binary = map_at(obj, "binaryData");
    for (k, v) in map_at(obj, "data").into_iter().flatten() {
        let kp = Path::new("data").key(k);
        for m in format::is_config_map_key(k) {
            e.push(FieldError::invalid(&kp, &Value::from(k.as_str()), &m));
        }
        if binary.is_some_and(|b| b.contains_key(k)) {
            e.push(FieldError::invalid(&kp, &Value::from(k.as_str()), "duplicate of key present in binaryData"));
        }
        total += v.as_str().map_or(0, str::len);
    }
    for (k, v) in binary.into_iter().flatten() {
        for m in format::is_config_map_key(k) {
            e.push(FieldError::invalid(Path::new("binaryData").key(k), &Value::from(k.as_str()), &m));
        }
        total += decoded_len(v);
    }
    if total > MAX_SECRET_SIZE {
        e.push(FieldError::too_long("", MAX_SECRET_SIZE));
    }
}

fn immutable_data(new: &Value, old: &Value, fields: &[&str], e: &mut Errs) {
    if old.get("immutable").and_then(Value::as_bool) != Some(true) {
        return;
    }
    if new.get("immutable").and_then(Value::as_bool) != Some(true) {
        e.push(FieldError::forbidden("immutable", "field is immutable when `immutable` is set"));
    }
    for f in fields {
        if !same(get(new, f), get(old, f)) {
            e.push(FieldError::forbidden(*f, "field is immutable when `immutable` is set"));
        }
    }
}

pub fn config_map_update(new: &Value, old: &Value, e: &mut Errs) {
    immutable_data(new, old, &["data", "binaryData"], e);
}

pub fn secret(obj: &Value, e: &mut Errs) {
    let dp = Path::new("data");
    let mut total = 0usize;
    let mut keys: Vec<&str> = Vec::new();
    for (k, v) in map_at(obj, "data").into_iter().flatten() {
        keys.push(k);
        total += decoded_len(v);
    }
    // `stringData` is merged into `data` before validation upstream.
    for (k, v) in map_at(obj, "stringData").into_iter().flatten() {
        if !keys.contains(&k.as_str()) {
            keys.push(k);
        }
        total += v.as_str().map_or(0, str::len);
    }
    for k in &keys {
        for m in format::is_config_map_key(k) {
            e.push(FieldError::invalid(dp.key(k), &Value::from(*k), &m));
        }
    }
    if total > MAX_SECRET_SIZE {
        e.push(FieldError::too_long(&dp, MAX_SECRET_SIZE));
    }
    let has = |k: &str| keys.contains(&k);
    let value_of = |k: &str| -> Option<Vec<u8>> {
        if let Some(s) = obj["stringData"].get(k).and_then(Value::as_str) {
            return Some(s.as_bytes().to_vec());
        }
        obj["data"].get(k).and_then(Value::as_str).map(|s| base64::engine::general_purpose::STANDARD.decode(s).unwrap_or_default())
    };
    let json_key = |k: &str, e: &mut Errs| {
        if !has(k) {
            e.push(FieldError::required(dp.key(k)));
        } else if let Err(err) = serde_json::from_slice::<serde_json::Map<String, Value>>(&value_of(k).unwrap_or_default()) {
            e.push(FieldError::invalid(dp.key(k), &Value::from("<secret contents redacted>"), &err.to_string()));
        }
    };
    match str_at(obj, "type") {
        "kubernetes.io/service-account-token"
            if str_at(&obj["metadata"]["annotations"], "kubernetes.io/service-account.name").is_empty() =>
        {
            e.push(FieldError::required(Path::new("metadata.annotations").key("kubernetes.io/service-account.name")));
        }
        "kubernetes.io/dockercfg" => json_key(".dockercfg", e),
        "kubernetes.io/dockerconfigjson" => json_key(".dockerconfigjson", e),
        "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
            e.push(FieldError::required(dp.key("username")));
            e.push(FieldError::required(dp.key("password")));
        }
        "kubernetes.io/ssh-auth" if value_of("ssh-privatekey").is_none_or(|v| v.is_empty()) => {
            e.push(FieldError::required(dp.key("ssh-privatekey")));
        }
        "kubernetes.io/tls" => {
            for k in ["tls.crt", "tls.key"] {
                if !has(k) {
                    e.push(FieldError::required(dp.key(k)));
                }
            }
        }
        _ => {}
    }
}

pub fn secret_update(new: &Value, old: &Value, e: &mut Errs) {
    let (nt, ot) = (str_at(new, "type"), str_at(old, "type"));
    if nt != ot {
        e.push(immutable("type", &Value::from(nt)));
    }
    immutable_data(new, old, &["data"], e);
}

// ---------------------------------------------------------------------------------------------------
// Namespace, Node, Event

pub fn namespace(obj: &Value, e: &mut Errs) {
    let p = Path::new("spec.finalizers");
    for f in list(&obj["spec"], "finalizers") {
        let f = f.as_str().unwrap_or("");
        qualified_name(f, &p, e);
        meta::kube_finalizer_name(f, &p, e);
    }
}

pub fn node(obj: &Value, e: &mut Errs) {
    let spec = &obj["spec"];
    let p = Path::new("spec");
    let mut seen = HashSet::new();
    for (i, t) in list(spec, "taints").iter().enumerate() {
        let tp = p.child("taints").index(i);
        let key = str_at(t, "key");
        qualified_name(key, &tp.child("key"), e);
        let value = str_at(t, "value");
        let errs = format::is_label_value(value);
        if !errs.is_empty() {
            e.push(FieldError::invalid(tp.child("value"), &Value::from(value), &errs.join(";")));
        }
        let effect = str_at(t, "effect");
        if effect.is_empty() {
            e.push(FieldError::required(tp.child("effect")));
        } else if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
            e.push(FieldError::not_supported(tp.child("effect"), &Value::from(effect), &["NoSchedule", "PreferNoSchedule", "NoExecute"]));
        }
        if !seen.insert((key, effect)) {
            e.push(FieldError {
                reason: "FieldValueDuplicate",
                field: tp.into(),
                message: "Duplicate value: taints must be unique by key and effect pair".into(),
            });
        }
    }
    let mut cidrs: Vec<&str> = list(spec, "podCIDRs").iter().map(|c| c.as_str().unwrap_or("")).collect();
    if cidrs.is_empty() && !str_at(spec, "podCIDR").is_empty() {
        cidrs.push(str_at(spec, "podCIDR"));
    }
    for (i, c) in cidrs.iter().enumerate() {
        if !format::is_cidr(c) {
            e.push(FieldError::invalid(
                p.child("podCIDRs").index(i),
                &Value::from(*c),
                "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
            ));
        }
    }
    if cidrs.len() > 2 {
        e.push(FieldError::invalid(p.child("podCIDRs"), &Value::from(cidrs.clone()), "may specify no more than one CIDR for each IP family"));
    }
}

pub fn node_update(new: &Value, old: &Value, e: &mut Errs) {
    let (ns, os) = (&new["spec"], &old["spec"]);
    let (nc, oc) = (get(ns, "podCIDRs"), get(os, "podCIDRs"));
    if oc.is_some_and(|c| c.as_array().is_some_and(|a| !a.is_empty())) && !same(nc, oc) {
        e.push(FieldError::forbidden("spec.podCIDRs", "node updates may not change podCIDR except from \"\" to valid"));
    }
    let (np, op) = (str_at(ns, "providerID"), str_at(os, "providerID"));
    if !op.is_empty() && np != op {
        e.push(FieldError::forbidden("spec.providerID", "node updates may not change providerID except from \"\" to valid"));
    }
}

/// Events: core/v1 (legacy rules only) or events.k8s.io/v1 (`strict`, in that API's field names).
pub fn event(obj: &Value, strict: bool, e: &mut Errs) {
    let ns = str_at(&obj["metadata"], "namespace");
    let involved = if strict { &obj["regarding"] } else { &obj["involvedObject"] };
    let involved_ns = str_at(involved, "namespace");
    let event_time = get(obj, "eventTime").filter(|t| t.as_str() != Some(""));
    let ns_mismatch = || FieldError::invalid("involvedObject.namespace", &Value::from(involved_ns), "does not match event.namespace");
    if event_time.is_none() {
        if involved_ns.is_empty() {
            if !ns.is_empty() && ns != "default" {
                e.push(ns_mismatch());
            }
        } else if ns != involved_ns {
            e.push(ns_mismatch());
        }
    } else {
        if involved_ns.is_empty() && ns != "default" && ns != "kube-system" {
            e.push(ns_mismatch());
        }
        reporting_fields(obj, if strict { "reportingController" } else { "source" }, strict, e);
    }
    for m in format::is_dns1123_subdomain(ns) {
        e.push(FieldError::invalid("namespace", &Value::from(ns), &m));
    }
    if strict {
        if event_time.is_none() {
            e.push(FieldError::required("eventTime"));
            reporting_fields(obj, "reportingController", strict, e);
        }
        let ty = str_at(obj, "type");
        if ty != "Normal" && ty != "Warning" {
            e.push(FieldError::invalid("type", &Value::from(""), &format!("has invalid value: {ty}")));
        }
        for (field, internal) in [("deprecatedFirstTimestamp", "firstTimestamp"), ("deprecatedLastTimestamp", "lastTimestamp")] {
            if get(obj, field).is_some() {
                e.push(FieldError::invalid(internal, &Value::from(""), "needs to be unset"));
            }
        }
        if str_at(obj, "note").len() > 1024 {
            e.push(FieldError::invalid("message", &Value::from(""), "can have at most 1024 characters"));
        }
    }
}

fn reporting_fields(obj: &Value, controller_field: &str, strict: bool, e: &mut Errs) {
    // core/v1 carries the reporting controller as `reportingComponent` (Go's ReportingController).
    let controller = str_at(obj, if strict { "reportingController" } else { "reportingComponent" });
    if controller.is_empty() {
        e.push(FieldError::required(controller_field));
    }
    qualified_name(controller, &Path::new(controller_field), e);
    for (field, limit) in [("reportingInstance", 128), ("action", 128), ("reason", 128)] {
        let v = str_at(obj, field);
        if v.is_empty() {
            e.push(FieldError::required(field));
        }
        if v.len() > limit {
            e.push(FieldError::invalid(field, &Value::from(""), &format!("can have at most {limit} characters")));
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// Storage

fn access_modes(spec: &Value, p: &Path, detail: &str, e: &mut Errs) {
    let modes = list(spec, "accessModes");
    if modes.is_empty() {
        if detail.is_empty() {
            e.push(FieldError::required(p.child("accessModes")));
        } else {
            e.push(FieldError::required_msg(p.child("accessModes"), detail));
        }
    }
    let (mut rwop, mut other) = (false, false);
    for m in modes {
        let m = m.as_str().unwrap_or("");
        if !ACCESS_MODES.contains(&m) {
            e.push(FieldError::not_supported(p.child("accessModes"), &Value::from(m), ACCESS_MODES));
        }
        if m == "ReadWriteOncePod" {
            rwop = true;
        } else {
            other = true;
        }
    }
    if rwop && other {
        e.push(FieldError::forbidden(p.child("accessModes"), "may not use ReadWriteOncePod with other access modes"));
    }
}

/// `ValidatePersistentVolumeClaimSpec`.
pub fn pvc_spec(spec: &Value, p: &Path, e: &mut Errs) {
    access_modes(spec, p, "at least 1 access mode is required", e);
    meta::label_selector(get(spec, "selector"), &p.child("selector"), e);
    let sp = p.child("resources").key("storage");
    match spec["resources"]["requests"].get("storage") {
        None => e.push(FieldError::required(&sp)),
        Some(q) => match Quantity::from_json(q) {
            Err(msg) => e.push(FieldError::invalid(&sp, &Value::from(quantity_text(q)), msg)),
            Ok(v) if !v.is_positive() => {
                e.push(FieldError::invalid(&sp, &Value::from(quantity_text(q)), "must be greater than zero"));
            }
            Ok(_) => {}
        },
    }
    if let Some(sc) = opt_str(spec, "storageClassName").filter(|s| !s.is_empty()) {
        super::dns_subdomain(sc, &p.child("storageClassName"), e);
    }
    if let Some(vm) = opt_str(spec, "volumeMode")
        && !matches!(vm, "Block" | "Filesystem")
    {
        e.push(FieldError::not_supported(p.child("volumeMode"), &Value::from(vm), &["Block", "Filesystem"]));
    }
}

pub fn persistent_volume_claim(obj: &Value, e: &mut Errs) {
    pvc_spec(&obj["spec"], &Path::new("spec"), e);
}

/// PVC updates: the spec is immutable except `resources.requests` of bound claims, a first
/// `volumeName` and a first `storageClassName`; the requested storage may not shrink below the recorded capacity.
pub fn persistent_volume_claim_update(new: &Value, old: &Value, e: &mut Errs) {
    let (ns, os) = (&new["spec"], &old["spec"]);
    let mut old_spec = os.clone();
    let mut new_spec = ns.clone();
    if str_at(os, "volumeName").is_empty()
        && let (Some(o), Some(n)) = (old_spec.as_object_mut(), ns.get("volumeName"))
    {
        o.insert("volumeName".into(), n.clone());
    }
    // A claim created without a class may get one later (the retroactive default StorageClass).
    if os.get("storageClassName").is_none_or(Value::is_null)
        && old["metadata"]["annotations"].get("volume.beta.kubernetes.io/storage-class").is_none()
        && let (Some(o), Some(n)) = (old_spec.as_object_mut(), ns.get("storageClassName"))
    {
        o.insert("storageClassName".into(), n.clone());
    }
    let bound = str_at(&new["status"], "phase") == "Bound" || str_at(&old["status"], "phase") == "Bound";
    if bound && let Some(requests) = new_spec["resources"].get_mut("requests").and_then(Value::as_object_mut) {
        match os["resources"]["requests"].get("storage") {
            Some(s) => requests.insert("storage".into(), s.clone()),
            None => requests.remove("storage"),
        };
    }
    if !same(Some(&new_spec), Some(&old_spec)) {
        e.push(FieldError::forbidden(
            "spec",
            "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
        ));
    }
    let size = |v: &Value| v["resources"]["requests"].get("storage").and_then(|q| Quantity::from_json(q).ok());
    if let (Some(n), Some(o)) = (size(ns), size(os))
        && n < o
    {
        let capacity = old["status"]["capacity"].get("storage").and_then(|q| Quantity::from_json(q).ok());
        if capacity.is_some_and(|c| n <= c) {
            e.push(FieldError::forbidden("spec.resources.requests.storage", "field can not be less than status.capacity"));
        }
    }
    if !same(get(ns, "volumeMode"), get(os, "volumeMode")) {
        e.push(immutable("volumeMode", ns.get("volumeMode").unwrap_or(&Value::Null)));
    }
}

const PV_SOURCES: &[&str] = &[
    "hostPath",
    "glusterfs",
    "flexVolume",
    "cephfs",
    "iscsi",
    "cinder",
    "fc",
    "nfs",
    "rbd",
    "quobyte",
    "azureFile",
    "vsphereVolume",
    "photonPersistentDisk",
    "portworxVolume",
    "azureDisk",
    "scaleIO",
    "local",
    "storageos",
    "csi",
    "awsElasticBlockStore",
    "gcePersistentDisk",
];

pub fn persistent_volume(obj: &Value, e: &mut Errs) {
    let spec = &obj["spec"];
    let p = Path::new("spec");
    access_modes(spec, &p, "", e);
    let capacity = map_at(spec, "capacity");
    if capacity.is_none_or(|c| c.is_empty()) {
        e.push(FieldError::required(p.child("capacity")));
    }
    if capacity.is_none_or(|c| !c.contains_key("storage") || c.len() > 1) {
        e.push(not_supported_go(p.child("capacity"), &spec.get("capacity").unwrap_or(&Value::Null).to_string(), &["storage"]));
    }
    for (k, q) in capacity.into_iter().flatten() {
        let cp = p.child("capacity").key(k);
        match Quantity::from_json(q) {
            Err(msg) => e.push(FieldError::invalid(&cp, &Value::from(quantity_text(q)), msg)),
            Ok(v) if !v.is_positive() => {
                e.push(FieldError::invalid(&cp, &Value::from(quantity_text(q)), "must be greater than zero"));
            }
            Ok(_) => {}
        }
    }
    let sc = str_at(spec, "storageClassName");
    if !sc.is_empty() {
        super::dns_subdomain(sc, &p.child("storageClassName"), e);
    }
    if let Some(vm) = opt_str(spec, "volumeMode")
        && !matches!(vm, "Block" | "Filesystem")
    {
        e.push(FieldError::not_supported(p.child("volumeMode"), &Value::from(vm), &["Block", "Filesystem"]));
    }
    let rp = str_at(spec, "persistentVolumeReclaimPolicy");
    if !rp.is_empty() && !matches!(rp, "Delete" | "Recycle" | "Retain") {
        e.push(FieldError::not_supported(p.child("persistentVolumeReclaimPolicy"), &Value::from(rp), &["Delete", "Recycle", "Retain"]));
    }
    let mut count = 0;
    for &src in PV_SOURCES {
        let Some(v) = get(spec, src) else { continue };
        if count > 0 {
            e.push(FieldError::forbidden(p.child(src), "may not specify more than 1 volume type"));
            continue;
        }
        count += 1;
        let sp = p.child(src);
        match src {
            "hostPath" => pod::host_path(v, &sp, e),
            "nfs" => pod::nfs(v, &sp, e),
            "local" => {
                if str_at(v, "path").is_empty() {
                    e.push(FieldError::required(sp.child("path")));
                }
                if get(spec, "nodeAffinity").is_none() {
                    e.push(FieldError::required_msg(p.child("nodeAffinity"), "Local volume requires node affinity"));
                }
            }
            "csi" => {
                if str_at(v, "driver").is_empty() {
                    e.push(FieldError::required(sp.child("driver")));
                }
                if str_at(v, "volumeHandle").is_empty() {
                    e.push(FieldError::required(sp.child("volumeHandle")));
                }
            }
            _ => {}
        }
    }
    if count == 0 {
        e.push(FieldError::required_msg(&p, "must specify a volume type"));
    }
}

pub fn persistent_volume_update(new: &Value, old: &Value, e: &mut Errs) {
    let (ns, os) = (&new["spec"], &old["spec"]);
    if PV_SOURCES.iter().any(|s| !same(get(ns, s), get(os, s))) {
        e.push(FieldError::forbidden("spec.persistentvolumesource", "spec.persistentvolumesource is immutable after creation"));
    }
    if !same(get(ns, "volumeMode"), get(os, "volumeMode")) {
        e.push(immutable("volumeMode", ns.get("volumeMode").unwrap_or(&Value::Null)));
    }
}

// ---------------------------------------------------------------------------------------------------
// ResourceQuota and LimitRange

const INTEGER_RESOURCES: &[&str] = &[
    "pods",
    "services",
    "replicationcontrollers",
    "resourcequotas",
    "secrets",
    "configmaps",
    "persistentvolumeclaims",
    "services.nodeports",
    "services.loadbalancers",
];

fn quota_quantities(m: Option<&serde_json::Map<String, Value>>, p: &Path, e: &mut Errs) {
    for (k, q) in m.into_iter().flatten() {
        let kp = p.key(k);
        qualified_name(k, &kp, e);
        match Quantity::from_json(q) {
            Err(msg) => e.push(FieldError::invalid(&kp, &Value::from(quantity_text(q)), msg)),
            Ok(v) => {
                if v.is_negative() {
                    e.push(FieldError::invalid(&kp, &Value::from(quantity_text(q)), "must be greater than or equal to 0"));
                }
                let integer = INTEGER_RESOURCES.contains(&k.as_str()) || k.starts_with("count/");
                if integer && !v.is_integer() {
                    e.push(FieldError::invalid(&kp, &Value::from(quantity_text(q)), "must be an integer"));
                }
            }
        }
    }
}

pub fn resource_quota(obj: &Value, e: &mut Errs) {
    quota_quantities(map_at(&obj["spec"], "hard"), &Path::new("spec.hard"), e);
    quota_quantities(map_at(&obj["status"], "hard"), &Path::new("status.hard"), e);
    quota_quantities(map_at(&obj["status"], "used"), &Path::new("status.used"), e);
    let scopes = ["BestEffort", "CrossNamespacePodAffinity", "NotBestEffort", "NotTerminating", "PriorityClass", "Terminating"];
    for s in list(&obj["spec"], "scopes") {
        if !scopes.contains(&s.as_str().unwrap_or("")) {
            e.push(invalid_go("spec.scopes", &gofmt::str_slice(obj["spec"].get("scopes")), "unsupported scope"));
        }
    }
}

pub fn limit_range(obj: &Value, e: &mut Errs) {
    let p = Path::new("spec.limits");
    let mut types = HashSet::new();
    for (i, item) in list(&obj["spec"], "limits").iter().enumerate() {
        let ip = p.index(i);
        let ty = str_at(item, "type");
        if !types.insert(ty) {
            e.push(FieldError::duplicate(ip.child("type"), &Value::from(ty)));
        }
        if !matches!(ty, "Pod" | "Container" | "PersistentVolumeClaim") {
            e.push(FieldError::not_supported(ip.child("type"), &Value::from(ty), &["Container", "PersistentVolumeClaim", "Pod"]));
        }
        for f in ["max", "min", "default", "defaultRequest", "maxLimitRequestRatio"] {
            quota_quantities(map_at(item, f), &ip.child(f), e);
        }
        for (k, minq) in map_at(item, "min").into_iter().flatten() {
            let Some(maxq) = item["max"].get(k) else { continue };
            if let (Ok(lo), Ok(hi)) = (Quantity::from_json(minq), Quantity::from_json(maxq))
                && lo > hi
            {
                e.push(FieldError::invalid(
                    ip.child("min").key(k),
                    &Value::from(quantity_text(minq)),
                    &format!("min value {} is greater than max value {}", quantity_text(minq), quantity_text(maxq)),
                ));
            }
        }
    }
}
