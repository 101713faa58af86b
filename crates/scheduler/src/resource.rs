//! Resource quantities as the scheduler counts them: milli-CPU, bytes, pod slots and scalar (extended)
//! resources, and a pod's effective requests (containers, init containers with restartable sidecars,
//! overhead) as upstream's `resource.PodRequests` computes them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// CPU a container without a CPU request is counted with for scoring (upstream `DefaultMilliCPURequest`).
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// Memory a container without a memory request is counted with for scoring (200 MiB).
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// An amount of every resource the scheduler tracks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resource {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    /// Pod slots (`pods` in allocatable).
    pub allowed_pod_number: i64,
    /// Extended resources, hugepages and attachable volumes, by name.
    pub scalar: Vec<(String, i64)>,
}

impl Resource {
    /// Reads a resource list (requests, allocatable, overhead).
    pub fn from_list(list: &BTreeMap<String, Quantity>) -> Self {
        let mut r = Resource::default();
        for (name, q) in list {
            r.set(name, q);
        }
        r
    }

    fn set(&mut self, name: &str, q: &Quantity) {
        match name {
            "cpu" => self.milli_cpu = parse_milli(&q.0).unwrap_or(0),
            "memory" => self.memory = parse_value(&q.0).unwrap_or(0),
            "ephemeral-storage" => self.ephemeral_storage = parse_value(&q.0).unwrap_or(0),
            "pods" => self.allowed_pod_number = parse_value(&q.0).unwrap_or(0),
            n if is_scalar_resource_name(n) => self.set_scalar(n, parse_value(&q.0).unwrap_or(0)),
            _ => {}
        }
    }

    pub fn scalar(&self, name: &str) -> i64 {
        self.scalar.iter().find(|(n, _)| n == name).map_or(0, |(_, v)| *v)
    }

    pub fn set_scalar(&mut self, name: &str, v: i64) {
        match self.scalar.iter_mut().find(|(n, _)| n == name) {
            Some((_, old)) => *old = v,
            None => self.scalar.push((name.to_string(), v)),
        }
    }

    /// The amount of a resource by its Kubernetes name.
    pub fn get(&self, name: &str) -> i64 {
        match name {
            "cpu" => self.milli_cpu,
            "memory" => self.memory,
            "ephemeral-storage" => self.ephemeral_storage,
            "pods" => self.allowed_pod_number,
            n => self.scalar(n),
        }
    }

    pub fn add(&mut self, o: &Resource) {
        self.milli_cpu += o.milli_cpu;
        self.memory += o.memory;
        self.ephemeral_storage += o.ephemeral_storage;
        self.allowed_pod_number += o.allowed_pod_number;
        for (n, v) in &o.scalar {
            let cur = self.scalar(n);
            self.set_scalar(n, cur + v);
        }
    }

    pub fn sub(&mut self, o: &Resource) {
        self.milli_cpu -= o.milli_cpu;
        self.memory -= o.memory;
        self.ephemeral_storage -= o.ephemeral_storage;
        self.allowed_pod_number -= o.allowed_pod_number;
        for (n, v) in &o.scalar {
            let cur = self.scalar(n);
            self.set_scalar(n, cur - v);
        }
    }

    /// Each resource becomes the larger of the two.
    pub fn set_max(&mut self, o: &Resource) {
        self.milli_cpu = self.milli_cpu.max(o.milli_cpu);
        self.memory = self.memory.max(o.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(o.ephemeral_storage);
        self.allowed_pod_number = self.allowed_pod_number.max(o.allowed_pod_number);
        for (n, v) in &o.scalar {
            let cur = self.scalar(n);
            self.set_scalar(n, cur.max(*v));
        }
    }

    pub fn is_zero(&self) -> bool {
        self.milli_cpu == 0 && self.memory == 0 && self.ephemeral_storage == 0 && self.scalar.iter().all(|(_, v)| *v == 0)
    }
}

/// Extended resources (`example.com/gpu`), hugepages and attachable volumes are counted; other names are not.
pub fn is_scalar_resource_name(name: &str) -> bool {
    name.contains('/') || name.starts_with("hugepages-") || name.starts_with("attachable-volumes-")
}

/// A pod's requests and the requests scoring uses (CPU and memory defaulted for containers that set none).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodRequests {
    pub requests: Resource,
    pub non_zero_milli_cpu: i64,
    pub non_zero_memory: i64,
}

/// Upstream's `PodRequests`: the sum of the containers and of restartable init containers (sidecars), or
/// the largest init container plus the sidecars started before it if that is more, plus the pod overhead.
pub fn pod_requests(pod: &Pod) -> PodRequests {
    let Some(spec) = pod.spec.as_ref() else { return PodRequests::default() };
    let (mut reqs, mut nz) = (Resource::default(), Resource::default());
    for c in &spec.containers {
        let (r, n) = container_requests(c);
        reqs.add(&r);
        nz.add(&n);
    }
    let (mut sidecars, mut sidecars_nz) = (Resource::default(), Resource::default());
    let (mut init_max, mut init_max_nz) = (Resource::default(), Resource::default());
    for c in spec.init_containers.iter().flatten() {
        let (r, n) = container_requests(c);
        let (this, this_nz) = if c.restart_policy.as_deref() == Some("Always") {
            reqs.add(&r);
            nz.add(&n);
            sidecars.add(&r);
            sidecars_nz.add(&n);
            (sidecars.clone(), sidecars_nz.clone())
        } else {
            let (mut t, mut tn) = (r, n);
            t.add(&sidecars);
            tn.add(&sidecars_nz);
            (t, tn)
        };
        init_max.set_max(&this);
        init_max_nz.set_max(&this_nz);
    }
    reqs.set_max(&init_max);
    nz.set_max(&init_max_nz);
    if let Some(overhead) = &spec.overhead {
        let o = Resource::from_list(overhead);
        reqs.add(&o);
        nz.add(&o);
    }
    PodRequests { requests: reqs, non_zero_milli_cpu: nz.milli_cpu, non_zero_memory: nz.memory }
}

/// A container's requests, and the same with CPU and memory defaulted when not requested.
fn container_requests(c: &Container) -> (Resource, Resource) {
    let list = c.resources.as_ref().and_then(|r| r.requests.as_ref());
    let r = list.map(Resource::from_list).unwrap_or_default();
    let mut nz = r.clone();
    if !list.is_some_and(|l| l.contains_key("cpu")) {
        nz.milli_cpu = DEFAULT_MILLI_CPU_REQUEST;
    }
    if !list.is_some_and(|l| l.contains_key("memory")) {
        nz.memory = DEFAULT_MEMORY_REQUEST;
    }
    (r, nz)
}

/// A quantity in thousandths, rounded up (`Quantity.MilliValue`).
pub fn parse_milli(s: &str) -> Option<i64> {
    parse_nano(s).map(|n| clamp(div_ceil(n, 1_000_000)))
}

/// A quantity in whole units, rounded up (`Quantity.Value`).
pub fn parse_value(s: &str) -> Option<i64> {
    parse_nano(s).map(|n| clamp(div_ceil(n, 1_000_000_000)))
}

fn clamp(v: i128) -> i64 {
    v.clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

fn div_ceil(a: i128, b: i128) -> i128 {
    let q = a / b;
    if a % b != 0 && a > 0 { q + 1 } else { q }
}

/// Parses a Kubernetes quantity (`1.5`, `100m`, `2Gi`, `1e3`) into billionths of a unit.
fn parse_nano(s: &str) -> Option<i128> {
    let s = s.trim();
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let end = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, suffix) = s.split_at(end);
    if num.is_empty() || num == "." {
        return None;
    }
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if frac.contains('.') {
        return None;
    }
    // The number in billionths; digits beyond nine decimals round up.
    let mut nano: i128 = if int.is_empty() { 0 } else { int.parse::<i128>().ok()? } * 1_000_000_000;
    let mut scale = 100_000_000i128;
    let mut rest_nonzero = false;
    for ch in frac.chars() {
        let d = ch.to_digit(10)? as i128;
        if scale > 0 {
            nano += d * scale;
            scale /= 10;
        } else if d != 0 {
            rest_nonzero = true;
        }
    }
    if rest_nonzero {
        nano += 1;
    }
    let nano = match suffix {
        "" => nano,
        "Ki" => nano.checked_mul(1 << 10)?,
        "Mi" => nano.checked_mul(1 << 20)?,
        "Gi" => nano.checked_mul(1 << 30)?,
        "Ti" => nano.checked_mul(1 << 40)?,
        "Pi" => nano.checked_mul(1 << 50)?,
        "Ei" => nano.checked_mul(1 << 60)?,
        "n" => div_ceil(nano, 1_000_000_000),
        "u" => div_ceil(nano, 1_000_000),
        "m" => div_ceil(nano, 1_000),
        "k" => nano.checked_mul(1_000)?,
        "M" => nano.checked_mul(1_000_000)?,
        "G" => nano.checked_mul(1_000_000_000)?,
        "T" => nano.checked_mul(1_000_000_000_000)?,
        "P" => nano.checked_mul(1_000_000_000_000_000)?,
        "E" => nano.checked_mul(1_000_000_000_000_000_000)?,
        e if e.starts_with(['e', 'E']) => {
            let exp: i32 = e[1..].parse().ok()?;
            if exp >= 0 {
                nano.checked_mul(10i128.checked_pow(exp as u32)?)?
            } else {
                div_ceil(nano, 10i128.checked_pow((-exp) as u32)?)
            }
        }
        _ => return None,
    };
    Some(if neg { -nano } else { nano })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::PodBuilder;

    #[test]
    fn quantities() {
        let cases = [
            ("1", 1000, 1),
            ("100m", 100, 1),
            ("0.1", 100, 1),
            ("1.5", 1500, 2),
            ("2Gi", 2 * 1024 * 1024 * 1024 * 1000, 2 * 1024 * 1024 * 1024),
            ("128Mi", 128 * 1024 * 1024 * 1000, 128 * 1024 * 1024),
            ("1k", 1_000_000, 1000),
            ("1e3", 1_000_000, 1000),
            ("250u", 1, 1),
            ("110", 110_000, 110),
        ];
        for (s, milli, value) in cases {
            assert_eq!(parse_milli(s), Some(milli), "{s} milli");
            assert_eq!(parse_value(s), Some(value), "{s} value");
        }
        for bad in ["", "abc", "1x", "1..2", "."] {
            assert_eq!(parse_milli(bad), None, "{bad}");
        }
    }

    #[test]
    fn pod_requests_follow_the_init_container_and_sidecar_rules() {
        struct Case {
            name: &'static str,
            pod: Pod,
            cpu: i64,
            mem: i64,
            nz_cpu: i64,
            nz_mem: i64,
        }
        let cases = [
            Case {
                name: "containers add up",
                pod: PodBuilder::new("p").container("500m", "1Gi").container("250m", "1Gi").build(),
                cpu: 750,
                mem: 2 << 30,
                nz_cpu: 750,
                nz_mem: 2 << 30,
            },
            Case {
                name: "a larger init container wins",
                pod: PodBuilder::new("p").container("500m", "1Gi").init_container("2", "512Mi").build(),
                cpu: 2000,
                mem: 1 << 30,
                nz_cpu: 2000,
                nz_mem: 1 << 30,
            },
            Case {
                name: "sidecars run beside the containers and before later init containers",
                pod: PodBuilder::new("p")
                    .container("500m", "1Gi")
                    .sidecar("200m", "100Mi")
                    .init_container("1", "100Mi")
                    .build(),
                cpu: 1200,
                mem: (1 << 30) + (100 << 20),
                nz_cpu: 1200,
                nz_mem: (1 << 30) + (100 << 20),
            },
            Case {
                name: "overhead is added",
                pod: PodBuilder::new("p").container("100m", "").overhead("50m", "10Mi").build(),
                cpu: 150,
                mem: 10 << 20,
                nz_cpu: 150,
                nz_mem: DEFAULT_MEMORY_REQUEST + (10 << 20),
            },
            Case {
                name: "no requests: zero, defaults for scoring",
                pod: PodBuilder::new("p").container("", "").build(),
                cpu: 0,
                mem: 0,
                nz_cpu: DEFAULT_MILLI_CPU_REQUEST,
                nz_mem: DEFAULT_MEMORY_REQUEST,
            },
        ];
        for c in cases {
            let r = pod_requests(&c.pod);
            assert_eq!(
                (r.requests.milli_cpu, r.requests.memory, r.non_zero_milli_cpu, r.non_zero_memory),
                (c.cpu, c.mem, c.nz_cpu, c.nz_mem),
                "{}",
                c.name
            );
        }
    }

    #[test]
    fn extended_resources_are_scalar() {
        let mut list = BTreeMap::new();
        list.insert("example.com/gpu".to_string(), Quantity("2".into()));
        list.insert("hugepages-2Mi".to_string(), Quantity("4Mi".into()));
        list.insert("unknown".to_string(), Quantity("4".into()));
        let r = Resource::from_list(&list);
        assert_eq!(r.scalar("example.com/gpu"), 2);
        assert_eq!(r.scalar("hugepages-2Mi"), 4 << 20);
        assert_eq!(r.scalar("unknown"), 0);
    }
}
