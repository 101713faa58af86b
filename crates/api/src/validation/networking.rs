//! Networking kinds: NetworkPolicy, Ingress, IngressClass (`pkg/apis/networking/validation`) and
//! EndpointSlice (`pkg/apis/discovery/validation`).

use std::collections::HashSet;

use serde_json::Value;

use super::format;
use super::{
    dns_label, get, immutable, int_at, invalid_go, list, meta, one_of, opt_int, opt_str, qualified_name, str_at, Errs,
    Path,
};
use crate::status::FieldError;

pub fn endpoint_slice(obj: &Value, e: &mut Errs) {
    let address_type = str_at(obj, "addressType");
    one_of(address_type, &["FQDN", "IPv4", "IPv6"], &Path::new("addressType"), e);
    let p = Path::new("endpoints");
    let endpoints = list(obj, "endpoints");
    if endpoints.len() > 1000 {
        e.push(FieldError {
            reason: "FieldValueTooMany",
            field: p.clone().into(),
            message: format!("Too many: {}: must have at most 1000 items", endpoints.len()),
        });
    }
    for (i, ep) in endpoints.iter().enumerate() {
        let ap = p.index(i).child("addresses");
        let addrs = list(ep, "addresses");
        if addrs.is_empty() {
            e.push(FieldError::required_msg(&ap, "must contain at least 1 address"));
        } else if addrs.len() > 100 {
            e.push(FieldError {
                reason: "FieldValueTooMany",
                field: ap.clone().into(),
                message: format!("Too many: {}: must have at most 100 items", addrs.len()),
            });
        }
        for (j, a) in addrs.iter().enumerate() {
            let a = a.as_str().unwrap_or("");
            let jp = ap.index(j);
            match address_type {
                "IPv4" if !format::is_ipv4(a) => e.push(FieldError::invalid(jp, &Value::from(a), "must be a valid IPv4 address")),
                "IPv6" if !format::is_ipv6(a) => e.push(FieldError::invalid(jp, &Value::from(a), "must be a valid IPv6 address")),
                "IPv4" | "IPv6" => super::core::non_special_ip(a, &jp, e),
                "FQDN" => {
                    let trimmed = a.strip_suffix('.').unwrap_or(a);
                    if a.is_empty() {
                        e.push(FieldError::required(jp));
                    } else if !format::is_dns1123_subdomain(trimmed).is_empty() || !trimmed.contains('.') {
                        e.push(FieldError::invalid(jp, &Value::from(trimmed), "should be a domain with at least two segments separated by dots"));
                    }
                }
                _ => {}
            }
        }
        if let Some(host) = opt_str(ep, "hostname") {
            dns_label(host, &p.index(i).child("hostname"), e);
        }
        if let Some(node) = opt_str(ep, "nodeName") {
            super::dns_subdomain(node, &p.index(i).child("nodeName"), e);
        }
    }
    let pp = Path::new("ports");
    let mut names = HashSet::new();
    for (i, port) in list(obj, "ports").iter().enumerate() {
        let ip = pp.index(i);
        let name = str_at(port, "name");
        if !name.is_empty() {
            dns_label(name, &ip.child("name"), e);
        }
        if !names.insert(name) {
            e.push(FieldError::duplicate(ip.child("name"), &Value::from(name)));
        }
        match opt_str(port, "protocol") {
            None => e.push(FieldError::required(ip.child("protocol"))),
            Some(proto) if !matches!(proto, "SCTP" | "TCP" | "UDP") => {
                e.push(FieldError::not_supported(ip.child("protocol"), &Value::from(proto), &["SCTP", "TCP", "UDP"]));
            }
            _ => {}
        }
        if let Some(n) = opt_int(port, "port")
            && !(0..=65535).contains(&n)
        {
            e.push(FieldError::invalid(ip.child("port"), &Value::from(n), &format::inclusive_range_error(0, 65535)));
        }
        if let Some(ap) = opt_str(port, "appProtocol") {
            qualified_name(ap, &ip.child("appProtocol"), e);
        }
    }
}

fn network_policy_port(port: &Value, p: &Path, e: &mut Errs) {
    if let Some(proto) = opt_str(port, "protocol")
        && !matches!(proto, "TCP" | "UDP" | "SCTP")
    {
        e.push(FieldError::not_supported(p.child("protocol"), &Value::from(proto), &["TCP", "UDP", "SCTP"]));
    }
    let end = opt_int(port, "endPort");
    match get(port, "port") {
        Some(Value::String(name)) => {
            if let Some(end) = end {
                e.push(FieldError::invalid(p.child("endPort"), &Value::from(end), "may not be specified when `port` is non-numeric"));
            }
            for m in format::is_valid_port_name(name) {
                e.push(FieldError::invalid(p.child("port"), &Value::from(name.as_str()), &m));
            }
        }
        Some(v) => {
            let n = v.as_i64().unwrap_or(0);
            for m in format::is_valid_port_num(n) {
                e.push(FieldError::invalid(p.child("port"), &Value::from(n), &m));
            }
            if let Some(end) = end {
                if end < n {
                    e.push(FieldError::invalid(p.child("endPort"), &Value::from(n), "must be greater than or equal to `port`"));
                }
                for m in format::is_valid_port_num(end) {
                    e.push(FieldError::invalid(p.child("endPort"), &Value::from(end), &m));
                }
            }
        }
        None => {
            if let Some(end) = end {
                e.push(FieldError::invalid(p.child("endPort"), &Value::from(end), "may not be specified when `port` is not specified"));
            }
        }
    }
}

fn network_policy_peer(peer: &Value, p: &Path, e: &mut Errs) {
    let mut n = 0;
    for sel in ["podSelector", "namespaceSelector"] {
        if let Some(s) = get(peer, sel) {
            n += 1;
            meta::label_selector(Some(s), &p.child(sel), e);
        }
    }
    let ip_block = get(peer, "ipBlock");
    if let Some(b) = ip_block {
        n += 1;
        let bp = p.child("ipBlock");
        let cidr = str_at(b, "cidr");
        if cidr.is_empty() {
            e.push(FieldError::required(bp.child("cidr")));
        } else if !format::is_cidr(cidr) {
            e.push(FieldError::invalid(bp.child("cidr"), &Value::from(cidr), "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"));
        }
        for (i, ex) in list(b, "except").iter().enumerate() {
            let ex = ex.as_str().unwrap_or("");
            if !format::is_cidr(ex) {
                e.push(FieldError::invalid(bp.child("except").index(i), &Value::from(ex), "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"));
            }
        }
    }
    if n == 0 {
        e.push(FieldError::required_msg(p, "must specify a peer"));
    } else if n > 1 && ip_block.is_some() {
        e.push(FieldError::forbidden(p, "may not specify both ipBlock and another peer"));
    }
}

pub fn network_policy(obj: &Value, e: &mut Errs) {
    let spec = &obj["spec"];
    let p = Path::new("spec");
    meta::label_selector(get(spec, "podSelector"), &p.child("podSelector"), e);
    for (dir, peers) in [("ingress", "from"), ("egress", "to")] {
        for (i, rule) in list(spec, dir).iter().enumerate() {
            let rp = p.child(dir).index(i);
            for (j, port) in list(rule, "ports").iter().enumerate() {
                network_policy_port(port, &rp.child("ports").index(j), e);
            }
            for (j, peer) in list(rule, peers).iter().enumerate() {
                network_policy_peer(peer, &rp.child(peers).index(j), e);
            }
        }
    }
    let types = list(spec, "policyTypes");
    if types.len() > 2 {
        e.push(invalid_go(p.child("policyTypes"), &super::gofmt::str_slice(spec.get("policyTypes")), "may not specify more than two policyTypes"));
        return;
    }
    for (i, t) in types.iter().enumerate() {
        let t = t.as_str().unwrap_or("");
        if !matches!(t, "Ingress" | "Egress") {
            e.push(FieldError::not_supported(p.child("policyTypes").index(i), &Value::from(t), &["Ingress", "Egress"]));
        }
    }
}

fn ingress_backend(b: &Value, p: &Path, e: &mut Errs) {
    let (resource, service) = (get(b, "resource"), get(b, "service"));
    match (resource, service) {
        (Some(_), Some(_)) => e.push(FieldError::invalid(p, &Value::from(""), "cannot set both resource and service backends")),
        (Some(r), None) => {
            let rp = p.child("resource");
            if str_at(r, "kind").is_empty() {
                e.push(FieldError::required(rp.child("kind")));
            }
            if str_at(r, "name").is_empty() {
                e.push(FieldError::required(rp.child("name")));
            }
        }
        (None, Some(s)) => {
            let sp = p.child("service");
            let name = str_at(s, "name");
            if name.is_empty() {
                e.push(FieldError::required(sp.child("name")));
            } else {
                for m in format::is_dns1035_label(name) {
                    e.push(FieldError::invalid(sp.child("name"), &Value::from(name), &m));
                }
            }
            let port = &s["port"];
            let (pname, pnum) = (str_at(port, "name"), int_at(port, "number"));
            if !pname.is_empty() && pnum != 0 {
                e.push(FieldError::invalid(p, &Value::from(""), "cannot set both port name & port number"));
            } else if !pname.is_empty() {
                for m in format::is_valid_port_name(pname) {
                    e.push(FieldError::invalid(sp.child("port").child("name"), &Value::from(pname), &m));
                }
            } else if pnum != 0 {
                for m in format::is_valid_port_num(pnum) {
                    e.push(FieldError::invalid(sp.child("port").child("number"), &Value::from(pnum), &m));
                }
            } else {
                e.push(FieldError::required_msg(p, "port name or number is required"));
            }
        }
        (None, None) => e.push(FieldError::invalid(p, &Value::from(""), "resource or service backend is required")),
    }
}

fn ingress_path(path: &Value, p: &Path, e: &mut Errs) {
    let Some(pt) = opt_str(path, "pathType") else {
        e.push(FieldError::required_msg(p.child("pathType"), "pathType must be specified"));
        return;
    };
    let value = str_at(path, "path");
    match pt {
        "Exact" | "Prefix" => {
            if !value.starts_with('/') {
                e.push(FieldError::invalid(p.child("path"), &Value::from(value), "must be an absolute path"));
            }
            if !value.is_empty() {
                for seq in ["//", "/./", "/../", "%2f", "%2F"] {
                    if value.contains(seq) {
                        e.push(FieldError::invalid(p.child("path"), &Value::from(value), &format!("must not contain '{seq}'")));
                    }
                }
                for suffix in ["/..", "/."] {
                    if value.ends_with(suffix) {
                        e.push(FieldError::invalid(p.child("path"), &Value::from(value), &format!("cannot end with '{suffix}'")));
                    }
                }
            }
        }
        "ImplementationSpecific" => {
            if !value.is_empty() && !value.starts_with('/') {
                e.push(FieldError::invalid(p.child("path"), &Value::from(value), "must be an absolute path"));
            }
        }
        other => e.push(FieldError::not_supported(
            p.child("pathType"),
            &Value::from(other),
            &["Exact", "ImplementationSpecific", "Prefix"],
        )),
    }
    ingress_backend(&path["backend"], &p.child("backend"), e);
}

pub fn ingress(obj: &Value, e: &mut Errs) {
    let spec = &obj["spec"];
    let p = Path::new("spec");
    let rules = list(spec, "rules");
    if rules.is_empty() && get(spec, "defaultBackend").is_none() {
        e.push(invalid_go(&p, "[]networking.IngressRule(nil)", "either `defaultBackend` or `rules` must be specified"));
    }
    if let Some(b) = get(spec, "defaultBackend") {
        ingress_backend(b, &p.child("defaultBackend"), e);
    }
    for (i, rule) in rules.iter().enumerate() {
        let rp = p.child("rules").index(i);
        let host = str_at(rule, "host");
        if !host.is_empty() {
            if format::is_ip(host) {
                e.push(FieldError::invalid(rp.child("host"), &Value::from(host), "must be a DNS name, not an IP address"));
            }
            let msgs =
                if host.contains('*') { format::is_wildcard_dns1123_subdomain(host) } else { format::is_dns1123_subdomain(host) };
            for m in msgs {
                e.push(FieldError::invalid(rp.child("host"), &Value::from(host), &m));
            }
        }
        if let Some(http) = get(rule, "http") {
            let hp = rp.child("http");
            let paths = list(http, "paths");
            if paths.is_empty() {
                e.push(FieldError::required(hp.child("paths")));
            }
            for (j, path) in paths.iter().enumerate() {
                ingress_path(path, &hp.child("paths").index(j), e);
            }
        }
    }
    for (i, tls) in list(spec, "tls").iter().enumerate() {
        for (j, h) in list(tls, "hosts").iter().enumerate() {
            let h = h.as_str().unwrap_or("");
            let msgs = if h.contains('*') { format::is_wildcard_dns1123_subdomain(h) } else { format::is_dns1123_subdomain(h) };
            for m in msgs {
                e.push(FieldError::invalid(p.child("tls").index(i).child("hosts").index(j), &Value::from(h), &m));
            }
        }
    }
    if let Some(class) = opt_str(spec, "ingressClassName") {
        super::dns_subdomain(class, &p.child("ingressClassName"), e);
    }
}

pub fn ingress_class(obj: &Value, e: &mut Errs) {
    let spec = &obj["spec"];
    let p = Path::new("spec");
    let controller = str_at(spec, "controller");
    if controller.is_empty() {
        e.push(FieldError::required(p.child("controller")));
    } else {
        for (value, m) in format::domain_prefixed_path_errors(controller) {
            e.push(FieldError::invalid(p.child("controller"), &Value::from(value), &m));
        }
        if controller.len() > 250 {
            e.push(FieldError::too_long(p.child("controller"), 250));
        }
    }
    if let Some(params) = get(spec, "parameters") {
        let pp = p.child("parameters");
        if str_at(params, "kind").is_empty() {
            e.push(FieldError::required(pp.child("kind")));
        }
        if str_at(params, "name").is_empty() {
            e.push(FieldError::required(pp.child("name")));
        }
        match opt_str(params, "scope") {
            Some("Namespace") => {
                if str_at(params, "namespace").is_empty() {
                    e.push(FieldError::required_msg(pp.child("namespace"), "`parameters.scope` is set to 'Namespace'"));
                }
            }
            Some("Cluster") => {
                if get(params, "namespace").is_some() {
                    e.push(FieldError::forbidden(pp.child("namespace"), "`parameters.scope` is set to 'Cluster'"));
                }
            }
            Some(other) => e.push(FieldError::not_supported(pp.child("scope"), &Value::from(other), &["Cluster", "Namespace"])),
            None => e.push(FieldError::required(pp.child("scope"))),
        }
    }
}

pub fn ingress_class_update(new: &Value, old: &Value, e: &mut Errs) {
    let (n, o) = (str_at(&new["spec"], "controller"), str_at(&old["spec"], "controller"));
    if n != o {
        e.push(immutable("spec.controller", &Value::from(n)));
    }
}
