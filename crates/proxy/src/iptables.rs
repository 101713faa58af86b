//! An equivalent kube-proxy-iptables-style rendering (`iptables-restore` input for the nat table:
//! KUBE-SERVICES, one KUBE-SVC-* chain per frontend and one KUBE-SEP-* chain per endpoint, with
//! `-m statistic --mode random --probability`). Used only by benchmarks to compare load times with nftables.

use std::fmt::Write;

use crate::model::{Frontend, Model};
use crate::render::MASQ_MARK;

/// A chain name of kube-proxy's shape (`KUBE-SVC-` + 16 characters) from a stable hash.
fn chain_name(prefix: &str, text: &str) -> String {
    // FNV-1a, 64 bits: stable across runs and Rust versions.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{prefix}{h:016X}")
}

/// The whole nat table as `iptables-restore` input.
pub fn render_iptables(model: &Model) -> String {
    let s = &model.settings;
    let cidr = s.cluster_cidr;
    let mut chains = vec![
        "KUBE-SERVICES".to_string(),
        "KUBE-NODEPORTS".to_string(),
        "KUBE-POSTROUTING".to_string(),
        "KUBE-MARK-MASQ".to_string(),
    ];
    let mut rules = Vec::new();
    rules.push("-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES".to_string());
    rules.push("-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES".to_string());
    rules.push("-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING".to_string());
    rules.push(format!("-A KUBE-MARK-MASQ -j MARK --or-mark {MASQ_MARK:#x}"));
    rules.push(format!("-A KUBE-POSTROUTING -m mark ! --mark {MASQ_MARK:#x}/{MASQ_MARK:#x} -j RETURN"));
    rules.push(format!("-A KUBE-POSTROUTING -j MARK --xor-mark {MASQ_MARK:#x}"));
    rules.push("-A KUBE-POSTROUTING -j MASQUERADE".to_string());
    for (frontend, target) in &model.frontends {
        if target.endpoints.is_empty() {
            continue; // upstream rejects these in the filter table
        }
        let svc = chain_name("KUBE-SVC-", &frontend.to_string());
        chains.push(svc.clone());
        let comment = format!("-m comment --comment \"{}\"", target.service);
        match frontend {
            Frontend::Vip { ip, protocol, port } => {
                let p = protocol.name();
                rules.push(format!("-A KUBE-SERVICES {comment} -d {ip}/32 -p {p} -m {p} --dport {port} -j {svc}"));
                if target.masquerade {
                    rules.push(format!("-A {svc} ! -s {cidr} -d {ip}/32 -p {p} -m {p} --dport {port} -j KUBE-MARK-MASQ"));
                }
            }
            Frontend::NodePort { protocol, port } => {
                let p = protocol.name();
                rules.push(format!("-A KUBE-NODEPORTS {comment} -p {p} -m {p} --dport {port} -j {svc}"));
                if target.masquerade {
                    rules.push(format!("-A {svc} -j KUBE-MARK-MASQ"));
                }
            }
        }
        let n = target.endpoints.len();
        for (i, b) in target.endpoints.iter().enumerate() {
            let sep = chain_name("KUBE-SEP-", &format!("{frontend} {}:{}", b.ip, b.port));
            chains.push(sep.clone());
            let remaining = n - i;
            if remaining > 1 {
                let probability = 1.0 / remaining as f64;
                rules.push(format!("-A {svc} {comment} -m statistic --mode random --probability {probability:.11} -j {sep}"));
            } else {
                rules.push(format!("-A {svc} {comment} -j {sep}"));
            }
            let p = match frontend {
                Frontend::Vip { protocol, .. } | Frontend::NodePort { protocol, .. } => protocol.name(),
            };
            rules.push(format!("-A {sep} {comment} -s {}/32 -j KUBE-MARK-MASQ", b.ip));
            rules.push(format!("-A {sep} {comment} -p {p} -m {p} -j DNAT --to-destination {}:{}", b.ip, b.port));
        }
    }
    rules.push(
        "-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS"
            .to_string(),
    );
    let mut o = String::from("*nat\n");
    for c in &chains {
        let _ = writeln!(o, ":{c} - [0:0]");
    }
    for r in &rules {
        o.push_str(r);
        o.push('\n');
    }
    o.push_str("COMMIT\n");
    o
}
