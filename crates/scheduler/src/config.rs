//! `SchedulerConfig`: scheduler profiles from a KubeSchedulerConfiguration file
//! (`kubescheduler.config.k8s.io/v1`: profiles, plugins per extension point, pluginConfig args), or from the
//! `spread`/`binpack` shortcut; each profile becomes a `Framework`.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::framework::{Framework, Plugin};
use crate::plugins::image_locality::ImageLocality;
use crate::plugins::inter_pod_affinity::InterPodAffinity;
use crate::plugins::node_affinity::NodeAffinity;
use crate::plugins::node_name::NodeName;
use crate::plugins::node_ports::NodePorts;
use crate::plugins::node_resources_balanced_allocation::NodeResourcesBalancedAllocation;
use crate::plugins::node_resources_fit::{NodeResourcesFit, ScoringStrategy, ScoringStrategyType};
use crate::plugins::node_unschedulable::NodeUnschedulable;
use crate::plugins::pod_topology_spread::{DefaultConstraint, PodTopologySpread, system_default_constraints};
use crate::plugins::taint_toleration::TaintToleration;
use crate::plugins::volume_binding::{VolumeBinding, VolumeListers};
use crate::plugins::{DEFAULT_PLUGINS, DEFAULT_PREEMPTION};

/// The profile pods without `spec.schedulerName` get.
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";

/// A bad scheduler configuration; the message names the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("failed to read scheduler configuration {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("invalid scheduler configuration: {0}")]
    Invalid(String),
}

fn invalid(msg: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(msg.into())
}

/// Leader election on a Lease (`leaderElection` in the file); the scheduler's Lease is
/// `kube-system/kube-scheduler`.
pub use skiff_leaderelection::LeaderElectionConfig;

fn default_leader_election() -> LeaderElectionConfig {
    LeaderElectionConfig::for_lease("kube-scheduler")
}

/// One scheduler profile: which plugins run at which point, with what arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    pub scheduler_name: String,
    /// Pre-filter/filter plugins, in order.
    pub filter: Vec<String>,
    /// Pre-score/score plugins and weights.
    pub score: Vec<(String, i64)>,
    /// DefaultPreemption as post-filter.
    pub preemption: bool,
    pub scoring_strategy: ScoringStrategy,
    pub balanced_resources: Vec<(String, i64)>,
    pub default_constraints: Vec<DefaultConstraint>,
    pub system_defaulted_constraints: bool,
    pub hard_pod_affinity_weight: i64,
    pub ignore_preferred_terms_of_existing_pods: bool,
    /// Overrides the global `percentageOfNodesToScore`.
    pub percentage_of_nodes_to_score: Option<u32>,
}

impl Profile {
    /// Upstream's default profile under this name.
    pub fn new(scheduler_name: &str) -> Self {
        Profile {
            scheduler_name: scheduler_name.into(),
            filter: DEFAULT_PLUGINS.iter().filter(|(n, _)| plugin_filters(n)).map(|(n, _)| n.to_string()).collect(),
            score: DEFAULT_PLUGINS.iter().filter(|(_, w)| *w > 0).map(|(n, w)| (n.to_string(), *w)).collect(),
            preemption: true,
            scoring_strategy: ScoringStrategy::default(),
            balanced_resources: vec![("cpu".into(), 1), ("memory".into(), 1)],
            default_constraints: system_default_constraints(),
            system_defaulted_constraints: true,
            hard_pod_affinity_weight: 1,
            ignore_preferred_terms_of_existing_pods: false,
            percentage_of_nodes_to_score: None,
        }
    }

    fn plugin(&self, name: &str, claims: &VolumeListers) -> Arc<dyn Plugin> {
        match name {
            "NodeUnschedulable" => Arc::new(NodeUnschedulable),
            "NodeName" => Arc::new(NodeName),
            "TaintToleration" => Arc::new(TaintToleration),
            "NodeAffinity" => Arc::new(NodeAffinity),
            "NodePorts" => Arc::new(NodePorts),
            "NodeResourcesFit" => Arc::new(NodeResourcesFit { strategy: self.scoring_strategy.clone() }),
            "VolumeBinding" => Arc::new(VolumeBinding { listers: claims.clone() }),
            "PodTopologySpread" => Arc::new(PodTopologySpread {
                default_constraints: self.default_constraints.clone(),
                system_defaulted: self.system_defaulted_constraints,
            }),
            "InterPodAffinity" => Arc::new(InterPodAffinity {
                hard_pod_affinity_weight: self.hard_pod_affinity_weight,
                ignore_preferred_terms_of_existing_pods: self.ignore_preferred_terms_of_existing_pods,
            }),
            "NodeResourcesBalancedAllocation" => {
                Arc::new(NodeResourcesBalancedAllocation { resources: self.balanced_resources.clone() })
            }
            "ImageLocality" => Arc::new(ImageLocality),
            other => unreachable!("plugin {other} was validated when the profile was built"),
        }
    }

    /// The profile's framework; `claims` holds the claim, volume and class listers for VolumeBinding.
    pub fn framework(&self, global_percentage: u32, claims: &VolumeListers) -> Framework {
        Framework {
            scheduler_name: self.scheduler_name.clone(),
            filter_plugins: self.filter.iter().map(|n| self.plugin(n, claims)).collect(),
            score_plugins: self.score.iter().map(|(n, w)| (self.plugin(n, claims), *w)).collect(),
            preemption: self.preemption,
            percentage_of_nodes_to_score: self.percentage_of_nodes_to_score.unwrap_or(global_percentage),
        }
    }
}

fn plugin_filters(name: &str) -> bool {
    !matches!(name, "NodeResourcesBalancedAllocation" | "ImageLocality")
}

fn plugin_scores(name: &str) -> bool {
    matches!(
        name,
        "TaintToleration" | "NodeAffinity" | "NodeResourcesFit" | "PodTopologySpread" | "InterPodAffinity"
            | "NodeResourcesBalancedAllocation" | "ImageLocality"
    )
}

fn known_plugin(name: &str) -> bool {
    DEFAULT_PLUGINS.iter().any(|(n, _)| *n == name)
}

fn default_weight(name: &str) -> i64 {
    DEFAULT_PLUGINS.iter().find(|(n, _)| *n == name).map_or(1, |(_, w)| (*w).max(1))
}

/// The scheduler's configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchedulerConfig {
    pub profiles: Vec<Profile>,
    /// 0: adaptive (50% minus 1% per 125 nodes, at least 5% and 100 nodes), as upstream.
    pub percentage_of_nodes_to_score: u32,
    pub pod_initial_backoff: Duration,
    pub pod_max_backoff: Duration,
    /// Unschedulable pods are retried at least this often even without a cluster event (5 minutes).
    pub pod_max_in_unschedulable: Duration,
    pub leader_election: LeaderElectionConfig,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            profiles: vec![Profile::new(DEFAULT_SCHEDULER_NAME)],
            percentage_of_nodes_to_score: 0,
            pod_initial_backoff: Duration::from_secs(1),
            pod_max_backoff: Duration::from_secs(10),
            pod_max_in_unschedulable: Duration::from_secs(300),
            leader_election: default_leader_election(),
        }
    }
}

impl SchedulerConfig {
    /// Kubernetes' default: LeastAllocated scoring spreads pods over nodes.
    pub fn spread() -> Self {
        Self::default()
    }

    /// Bin packing: MostAllocated scoring fills nodes before using empty ones.
    pub fn binpack() -> Self {
        let mut c = Self::default();
        c.profiles[0].scoring_strategy.kind = ScoringStrategyType::MostAllocated;
        c
    }

    /// The `--scheduler-strategy` shortcut: `spread` or `binpack`.
    pub fn from_strategy(name: &str) -> Result<Self, ConfigError> {
        match name {
            "spread" => Ok(Self::spread()),
            "binpack" => Ok(Self::binpack()),
            other => Err(invalid(format!("unknown scheduler strategy {other:?}: expected \"spread\" or \"binpack\""))),
        }
    }

    /// What `skiff server --scheduler-config FILE` / `--scheduler-strategy spread|binpack` ask for: the file,
    /// the shortcut, or Kubernetes' defaults; both at once is an error.
    pub fn load(file: Option<&Path>, strategy: Option<&str>) -> Result<Self, ConfigError> {
        match (file, strategy) {
            (Some(_), Some(_)) => Err(invalid("--scheduler-config and --scheduler-strategy cannot be used together: set the scoring strategy in the file's NodeResourcesFit pluginConfig")),
            (Some(f), None) => Self::from_file(f),
            (None, Some(s)) => Self::from_strategy(s),
            (None, None) => Ok(Self::default()),
        }
    }

    /// Reads a KubeSchedulerConfiguration YAML (or JSON) file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
        Self::from_yaml(&text)
    }

    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        let file: FileConfig = serde_saphyr::from_str(text).map_err(|e| invalid(e.to_string()))?;
        file.into_config()
    }

    pub fn profile(&self, scheduler_name: &str) -> Option<&Profile> {
        self.profiles.iter().find(|p| p.scheduler_name == scheduler_name)
    }
}

// The file format. Some fields are accepted only so that upstream files load; they are never read.

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
struct FileConfig {
    api_version: Option<String>,
    kind: Option<String>,
    profiles: Option<Vec<FileProfile>>,
    percentage_of_nodes_to_score: Option<u32>,
    pod_initial_backoff_seconds: Option<u64>,
    pod_max_backoff_seconds: Option<u64>,
    leader_election: Option<FileLeaderElection>,
    // Accepted and ignored: they configure parts of kube-scheduler Skiff does not have.
    parallelism: Option<serde_json::Value>,
    client_connection: Option<serde_json::Value>,
    debugging_configuration: Option<serde_json::Value>,
    enable_profiling: Option<serde_json::Value>,
    enable_contention_profiling: Option<serde_json::Value>,
    health_z_bind_address: Option<serde_json::Value>,
    metrics_bind_address: Option<serde_json::Value>,
    delay_cache_until_active: Option<serde_json::Value>,
    extenders: Option<Vec<serde_json::Value>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FileLeaderElection {
    leader_elect: Option<bool>,
    lease_duration: Option<String>,
    renew_deadline: Option<String>,
    retry_period: Option<String>,
    resource_lock: Option<String>,
    resource_name: Option<String>,
    resource_namespace: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FileProfile {
    scheduler_name: Option<String>,
    percentage_of_nodes_to_score: Option<u32>,
    plugins: Option<FilePlugins>,
    plugin_config: Option<Vec<FilePluginConfig>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FilePlugins {
    pre_enqueue: Option<FilePluginSet>,
    queue_sort: Option<FilePluginSet>,
    pre_filter: Option<FilePluginSet>,
    filter: Option<FilePluginSet>,
    post_filter: Option<FilePluginSet>,
    pre_score: Option<FilePluginSet>,
    score: Option<FilePluginSet>,
    reserve: Option<FilePluginSet>,
    permit: Option<FilePluginSet>,
    pre_bind: Option<FilePluginSet>,
    bind: Option<FilePluginSet>,
    post_bind: Option<FilePluginSet>,
    multi_point: Option<FilePluginSet>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FilePluginSet {
    enabled: Option<Vec<FilePlugin>>,
    disabled: Option<Vec<FilePlugin>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePlugin {
    name: String,
    weight: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePluginConfig {
    name: String,
    args: Option<serde_json::Value>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
struct NodeResourcesFitArgs {
    api_version: Option<String>,
    kind: Option<String>,
    scoring_strategy: Option<FileScoringStrategy>,
    ignored_resources: Option<Vec<String>>,
    ignored_resource_groups: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FileScoringStrategy {
    #[serde(rename = "type")]
    kind: Option<String>,
    resources: Option<Vec<FileResource>>,
    requested_to_capacity_ratio: Option<FileRatio>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileResource {
    name: String,
    weight: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRatio {
    shape: Vec<FileShapePoint>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileShapePoint {
    utilization: i64,
    score: i64,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
struct PodTopologySpreadArgs {
    api_version: Option<String>,
    kind: Option<String>,
    default_constraints: Option<Vec<FileConstraint>>,
    defaulting_type: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FileConstraint {
    max_skew: i32,
    topology_key: String,
    when_unsatisfiable: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
struct InterPodAffinityArgs {
    api_version: Option<String>,
    kind: Option<String>,
    hard_pod_affinity_weight: Option<i64>,
    ignore_preferred_terms_of_existing_pods: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
struct BalancedAllocationArgs {
    api_version: Option<String>,
    kind: Option<String>,
    resources: Option<Vec<FileResource>>,
}

/// Parses a Go duration (`15s`, `1m30s`, `500ms`).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let mut total = 0f64;
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let n: f64 = rest[..end].parse().ok()?;
        rest = &rest[end..];
        let unit_end = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let mult = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += n * mult;
        rest = &rest[unit_end..];
    }
    Some(Duration::from_secs_f64(total))
}

fn resources(list: Vec<FileResource>, field: &str) -> Result<Vec<(String, i64)>, ConfigError> {
    list.into_iter()
        .enumerate()
        .map(|(i, r)| {
            let w = r.weight.unwrap_or(1);
            if !(1..=100).contains(&w) {
                return Err(invalid(format!("{field}[{i}].weight: Invalid value: {w}: resource weight of {} should be in range [1, 100]", r.name)));
            }
            Ok((r.name, w))
        })
        .collect()
}

impl FileConfig {
    fn into_config(self) -> Result<SchedulerConfig, ConfigError> {
        if let Some(v) = &self.api_version
            && v != "kubescheduler.config.k8s.io/v1"
        {
            return Err(invalid(format!("apiVersion: unsupported value {v:?}: expected \"kubescheduler.config.k8s.io/v1\"")));
        }
        if let Some(k) = &self.kind
            && k != "KubeSchedulerConfiguration"
        {
            return Err(invalid(format!("kind: unsupported value {k:?}: expected \"KubeSchedulerConfiguration\"")));
        }
        if self.extenders.as_ref().is_some_and(|e| !e.is_empty()) {
            return Err(invalid("extenders: scheduler extenders are not supported"));
        }
        let mut c = SchedulerConfig::default();
        if let Some(p) = self.percentage_of_nodes_to_score {
            if p > 100 {
                return Err(invalid(format!("percentageOfNodesToScore: Invalid value: {p}: not in valid range [0-100]")));
            }
            c.percentage_of_nodes_to_score = p;
        }
        if let Some(s) = self.pod_initial_backoff_seconds {
            if s == 0 {
                return Err(invalid("podInitialBackoffSeconds: Invalid value: 0: must be greater than 0"));
            }
            c.pod_initial_backoff = Duration::from_secs(s);
        }
        if let Some(s) = self.pod_max_backoff_seconds {
            c.pod_max_backoff = Duration::from_secs(s);
        }
        if c.pod_max_backoff < c.pod_initial_backoff {
            return Err(invalid("podMaxBackoffSeconds: Invalid value: must be greater than or equal to PodInitialBackoffSeconds"));
        }
        if let Some(le) = self.leader_election {
            let dur = |v: Option<String>, field: &str, default: Duration| -> Result<Duration, ConfigError> {
                match v {
                    None => Ok(default),
                    Some(s) => parse_duration(&s).ok_or_else(|| invalid(format!("leaderElection.{field}: invalid duration {s:?}"))),
                }
            };
            let d = default_leader_election();
            if let Some(lock) = &le.resource_lock
                && lock != "leases"
            {
                return Err(invalid(format!("leaderElection.resourceLock: unsupported value {lock:?}: only \"leases\"")));
            }
            c.leader_election = LeaderElectionConfig {
                leader_elect: le.leader_elect.unwrap_or(true),
                lease_duration: dur(le.lease_duration, "leaseDuration", d.lease_duration)?,
                renew_deadline: dur(le.renew_deadline, "renewDeadline", d.renew_deadline)?,
                retry_period: dur(le.retry_period, "retryPeriod", d.retry_period)?,
                resource_namespace: le.resource_namespace.unwrap_or(d.resource_namespace),
                resource_name: le.resource_name.unwrap_or(d.resource_name),
                identity: None,
            };
            if c.leader_election.renew_deadline >= c.leader_election.lease_duration {
                return Err(invalid("leaderElection.renewDeadline: must be less than leaseDuration"));
            }
        }
        if let Some(profiles) = self.profiles
            && !profiles.is_empty()
        {
            c.profiles.clear();
            let mut names = HashSet::new();
            for (i, fp) in profiles.into_iter().enumerate() {
                let p = fp.into_profile(i)?;
                if !names.insert(p.scheduler_name.clone()) {
                    return Err(invalid(format!("profiles[{i}].schedulerName: Duplicate value: {:?}", p.scheduler_name)));
                }
                c.profiles.push(p);
            }
        }
        Ok(c)
    }
}

impl FileProfile {
    fn into_profile(self, i: usize) -> Result<Profile, ConfigError> {
        let name = self.scheduler_name.unwrap_or_else(|| DEFAULT_SCHEDULER_NAME.into());
        if name.is_empty() {
            return Err(invalid(format!("profiles[{i}].schedulerName: Required value")));
        }
        let mut p = Profile::new(&name);
        if let Some(pct) = self.percentage_of_nodes_to_score {
            if pct > 100 {
                return Err(invalid(format!("profiles[{i}].percentageOfNodesToScore: Invalid value: {pct}: not in valid range [0-100]")));
            }
            p.percentage_of_nodes_to_score = Some(pct);
        }
        if let Some(plugins) = self.plugins {
            let field = |point: &str| format!("profiles[{i}].plugins.{point}");
            // multiPoint first, then the specific points override it, as upstream.
            if let Some(set) = plugins.multi_point {
                apply_set(&mut p, set, &field("multiPoint"), true, true)?;
            }
            for (point, set) in [("preFilter", plugins.pre_filter), ("filter", plugins.filter)] {
                if let Some(set) = set {
                    apply_set(&mut p, set, &field(point), true, false)?;
                }
            }
            for (point, set) in [("preScore", plugins.pre_score), ("score", plugins.score)] {
                if let Some(set) = set {
                    apply_set(&mut p, set, &field(point), false, true)?;
                }
            }
            if let Some(set) = plugins.post_filter {
                for (j, d) in set.disabled.iter().flatten().enumerate() {
                    match d.name.as_str() {
                        DEFAULT_PREEMPTION | "*" => p.preemption = false,
                        other => return Err(invalid(format!("{}.disabled[{j}]: unknown plugin {other:?}", field("postFilter")))),
                    }
                }
                for (j, e) in set.enabled.iter().flatten().enumerate() {
                    match e.name.as_str() {
                        DEFAULT_PREEMPTION => p.preemption = true,
                        other => return Err(invalid(format!("{}.enabled[{j}]: unknown plugin {other:?}", field("postFilter")))),
                    }
                }
            }
            let fixed = [
                ("preEnqueue", plugins.pre_enqueue, "SchedulingGates"),
                ("queueSort", plugins.queue_sort, "PrioritySort"),
                ("reserve", plugins.reserve, "VolumeBinding"),
                ("permit", plugins.permit, ""),
                ("preBind", plugins.pre_bind, "VolumeBinding"),
                ("bind", plugins.bind, "DefaultBinder"),
                ("postBind", plugins.post_bind, ""),
            ];
            for (point, set, allowed) in fixed {
                for (j, e) in set.into_iter().flat_map(|s| s.enabled.unwrap_or_default()).enumerate() {
                    if e.name != allowed {
                        return Err(invalid(format!("{}.enabled[{j}]: unknown plugin {:?}", field(point), e.name)));
                    }
                }
            }
        }
        for (j, pc) in self.plugin_config.into_iter().flatten().enumerate() {
            let f = format!("profiles[{i}].pluginConfig[{j}]");
            let args = pc.args.unwrap_or(serde_json::Value::Object(Default::default()));
            let bad = |e: serde_json::Error| invalid(format!("{f}.args: {e}"));
            match pc.name.as_str() {
                "NodeResourcesFit" => {
                    let a: NodeResourcesFitArgs = serde_json::from_value(args).map_err(bad)?;
                    if a.ignored_resources.as_ref().is_some_and(|v| !v.is_empty())
                        || a.ignored_resource_groups.as_ref().is_some_and(|v| !v.is_empty())
                    {
                        return Err(invalid(format!("{f}.args: ignoredResources and ignoredResourceGroups are not supported yet")));
                    }
                    if let Some(s) = a.scoring_strategy {
                        p.scoring_strategy = scoring_strategy(s, &format!("{f}.args.scoringStrategy"))?;
                    }
                }
                "PodTopologySpread" => {
                    let a: PodTopologySpreadArgs = serde_json::from_value(args).map_err(bad)?;
                    match a.defaulting_type.as_deref().unwrap_or("System") {
                        "System" => {
                            if a.default_constraints.as_ref().is_some_and(|c| !c.is_empty()) {
                                return Err(invalid(format!("{f}.args.defaultConstraints: Invalid value: must be empty for System defaulting type")));
                            }
                        }
                        "List" => {
                            p.system_defaulted_constraints = false;
                            p.default_constraints = Vec::new();
                            for (k, c) in a.default_constraints.unwrap_or_default().into_iter().enumerate() {
                                if c.max_skew < 1 {
                                    return Err(invalid(format!("{f}.args.defaultConstraints[{k}].maxSkew: Invalid value: {}: must be greater than zero", c.max_skew)));
                                }
                                if !matches!(c.when_unsatisfiable.as_str(), "DoNotSchedule" | "ScheduleAnyway") {
                                    return Err(invalid(format!("{f}.args.defaultConstraints[{k}].whenUnsatisfiable: Unsupported value: {:?}", c.when_unsatisfiable)));
                                }
                                p.default_constraints.push(DefaultConstraint {
                                    max_skew: c.max_skew,
                                    topology_key: c.topology_key,
                                    when_unsatisfiable: c.when_unsatisfiable,
                                });
                            }
                        }
                        other => return Err(invalid(format!("{f}.args.defaultingType: Unsupported value: {other:?}"))),
                    }
                }
                "InterPodAffinity" => {
                    let a: InterPodAffinityArgs = serde_json::from_value(args).map_err(bad)?;
                    if let Some(w) = a.hard_pod_affinity_weight {
                        if !(0..=100).contains(&w) {
                            return Err(invalid(format!("{f}.args.hardPodAffinityWeight: Invalid value: {w}: not in valid range [0-100]")));
                        }
                        p.hard_pod_affinity_weight = w;
                    }
                    if let Some(i) = a.ignore_preferred_terms_of_existing_pods {
                        p.ignore_preferred_terms_of_existing_pods = i;
                    }
                }
                "NodeResourcesBalancedAllocation" => {
                    let a: BalancedAllocationArgs = serde_json::from_value(args).map_err(bad)?;
                    if let Some(r) = a.resources {
                        p.balanced_resources = resources(r, &format!("{f}.args.resources"))?;
                    }
                }
                "DefaultPreemption" | "NodeAffinity" | "VolumeBinding" => {
                    // Their arguments (candidate node counts, addedAffinity, bind timeouts) are not implemented:
                    // refuse them rather than ignore them.
                    let set: Vec<&String> = args
                        .as_object()
                        .map(|m| m.keys().filter(|k| !matches!(k.as_str(), "apiVersion" | "kind")).collect())
                        .unwrap_or_default();
                    if !set.is_empty() {
                        return Err(invalid(format!("{f}.args: {} arguments are not supported yet: {set:?}", pc.name)));
                    }
                }
                other => return Err(invalid(format!("{f}.name: unknown plugin {other:?}"))),
            }
        }
        Ok(p)
    }
}

fn scoring_strategy(s: FileScoringStrategy, field: &str) -> Result<ScoringStrategy, ConfigError> {
    let mut out = ScoringStrategy::default();
    if let Some(r) = s.resources {
        out.resources = resources(r, &format!("{field}.resources"))?;
    }
    out.kind = match s.kind.as_deref().unwrap_or("LeastAllocated") {
        "LeastAllocated" => ScoringStrategyType::LeastAllocated,
        "MostAllocated" => ScoringStrategyType::MostAllocated,
        "RequestedToCapacityRatio" => {
            let Some(ratio) = s.requested_to_capacity_ratio else {
                return Err(invalid(format!("{field}.requestedToCapacityRatio: Required value")));
            };
            if ratio.shape.is_empty() {
                return Err(invalid(format!("{field}.requestedToCapacityRatio.shape: Required value: at least one point must be specified")));
            }
            let mut prev = -1;
            for (k, pt) in ratio.shape.iter().enumerate() {
                if !(0..=100).contains(&pt.utilization) || pt.utilization <= prev {
                    return Err(invalid(format!("{field}.requestedToCapacityRatio.shape[{k}].utilization: Invalid value: {}: utilization values must be sorted in increasing order and in range [0, 100]", pt.utilization)));
                }
                if !(0..=10).contains(&pt.score) {
                    return Err(invalid(format!("{field}.requestedToCapacityRatio.shape[{k}].score: Invalid value: {}: not in valid range [0-10]", pt.score)));
                }
                prev = pt.utilization;
            }
            ScoringStrategyType::RequestedToCapacityRatio(ratio.shape.iter().map(|p| (p.utilization, p.score)).collect())
        }
        other => {
            return Err(invalid(format!("{field}.type: Unsupported value: {other:?}: supported values: \"LeastAllocated\", \"MostAllocated\", \"RequestedToCapacityRatio\"")));
        }
    };
    Ok(out)
}

/// Applies one extension point's enabled/disabled lists to the filter and/or score sets.
fn apply_set(p: &mut Profile, set: FilePluginSet, field: &str, filter: bool, score: bool) -> Result<(), ConfigError> {
    for (j, d) in set.disabled.unwrap_or_default().into_iter().enumerate() {
        if d.name == "*" {
            if filter {
                p.filter.clear();
            }
            if score {
                p.score.clear();
            }
            if filter && score {
                p.preemption = false;
            }
            continue;
        }
        if d.name == DEFAULT_PREEMPTION && filter && score {
            p.preemption = false;
            continue;
        }
        if !known_plugin(&d.name) {
            return Err(invalid(format!("{field}.disabled[{j}]: unknown plugin {:?}", d.name)));
        }
        if filter {
            p.filter.retain(|n| *n != d.name);
        }
        if score {
            p.score.retain(|(n, _)| *n != d.name);
        }
    }
    for (j, e) in set.enabled.unwrap_or_default().into_iter().enumerate() {
        if e.name == DEFAULT_PREEMPTION && filter && score {
            p.preemption = true;
            continue;
        }
        if !known_plugin(&e.name) {
            return Err(invalid(format!("{field}.enabled[{j}]: unknown plugin {:?}", e.name)));
        }
        if filter && plugin_filters(&e.name) && !p.filter.contains(&e.name) {
            p.filter.push(e.name.clone());
        } else if filter && !score && !plugin_filters(&e.name) {
            return Err(invalid(format!("{field}.enabled[{j}]: plugin {:?} does not filter", e.name)));
        }
        if score && plugin_scores(&e.name) {
            let w = e.weight.unwrap_or_else(|| default_weight(&e.name));
            if !(1..=100).contains(&w) {
                return Err(invalid(format!("{field}.enabled[{j}].weight: Invalid value: {w}: must be in range [1, 100]")));
            }
            match p.score.iter_mut().find(|(n, _)| *n == e.name) {
                Some(entry) => entry.1 = w,
                None => p.score.push((e.name.clone(), w)),
            }
        } else if score && !filter {
            return Err(invalid(format!("{field}.enabled[{j}]: plugin {:?} does not score", e.name)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_shortcuts() {
        let c = SchedulerConfig::default();
        assert_eq!(c.profiles.len(), 1);
        let p = &c.profiles[0];
        assert_eq!(p.scheduler_name, "default-scheduler");
        assert!(p.filter.contains(&"NodeResourcesFit".to_string()));
        assert!(p.score.contains(&("TaintToleration".to_string(), 3)));
        assert_eq!(SchedulerConfig::from_strategy("binpack").unwrap().profiles[0].scoring_strategy.kind, ScoringStrategyType::MostAllocated);
        assert_eq!(SchedulerConfig::from_strategy("spread").unwrap(), SchedulerConfig::default());
        assert!(SchedulerConfig::from_strategy("pack").unwrap_err().to_string().contains("\"pack\""));
    }

    #[test]
    fn a_kube_scheduler_configuration_file() {
        let yaml = r#"
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
percentageOfNodesToScore: 50
podInitialBackoffSeconds: 2
leaderElection:
  leaderElect: false
  leaseDuration: 20s
  renewDeadline: 15s
  retryPeriod: 500ms
profiles:
- schedulerName: default-scheduler
- schedulerName: bin-packing
  plugins:
    score:
      disabled:
      - name: ImageLocality
      enabled:
      - name: NodeResourcesFit
        weight: 5
  pluginConfig:
  - name: NodeResourcesFit
    args:
      scoringStrategy:
        type: MostAllocated
        resources:
        - name: cpu
          weight: 2
        - name: memory
          weight: 1
- schedulerName: ratio
  plugins:
    multiPoint:
      disabled:
      - name: PodTopologySpread
    postFilter:
      disabled:
      - name: DefaultPreemption
  pluginConfig:
  - name: NodeResourcesFit
    args:
      scoringStrategy:
        type: RequestedToCapacityRatio
        requestedToCapacityRatio:
          shape:
          - utilization: 0
            score: 0
          - utilization: 100
            score: 10
"#;
        let c = SchedulerConfig::from_yaml(yaml).unwrap();
        assert_eq!(c.percentage_of_nodes_to_score, 50);
        assert_eq!(c.pod_initial_backoff, Duration::from_secs(2));
        assert!(!c.leader_election.leader_elect);
        assert_eq!(c.leader_election.retry_period, Duration::from_millis(500));
        assert_eq!(c.profiles.len(), 3);
        let bp = c.profile("bin-packing").unwrap();
        assert_eq!(bp.scoring_strategy.kind, ScoringStrategyType::MostAllocated);
        assert_eq!(bp.scoring_strategy.resources, vec![("cpu".to_string(), 2), ("memory".to_string(), 1)]);
        assert!(bp.score.contains(&("NodeResourcesFit".to_string(), 5)));
        assert!(!bp.score.iter().any(|(n, _)| n == "ImageLocality"));
        assert!(bp.filter.contains(&"NodeResourcesFit".to_string()));
        let r = c.profile("ratio").unwrap();
        assert!(!r.preemption);
        assert!(!r.filter.contains(&"PodTopologySpread".to_string()));
        assert!(!r.score.iter().any(|(n, _)| n == "PodTopologySpread"));
        assert_eq!(r.scoring_strategy.kind, ScoringStrategyType::RequestedToCapacityRatio(vec![(0, 0), (100, 10)]));
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let cases = [
            ("profiles:\n- schedulerName: a\n- schedulerName: a\n", "profiles[1].schedulerName: Duplicate value"),
            ("profiles:\n- plugins:\n    score:\n      enabled:\n      - name: Nope\n", "unknown plugin \"Nope\""),
            ("profiles:\n- pluginConfig:\n  - name: NodeResourcesFit\n    args:\n      scoringStrategy:\n        type: Random\n", "type: Unsupported value: \"Random\""),
            ("percentageOfNodesToScore: 101\n", "percentageOfNodesToScore"),
            ("profilez: []\n", "profilez"),
            ("apiVersion: kubescheduler.config.k8s.io/v1beta3\n", "apiVersion"),
            ("profiles:\n- pluginConfig:\n  - name: NodeAffinity\n    args:\n      addedAffinity: {}\n", "NodeAffinity arguments are not supported yet"),
            ("leaderElection:\n  leaseDuration: soon\n", "leaderElection.leaseDuration"),
            ("profiles:\n- plugins:\n    score:\n      enabled:\n      - name: NodeAffinity\n        weight: 1000\n", "weight"),
        ];
        for (yaml, want) in cases {
            let err = SchedulerConfig::from_yaml(yaml).unwrap_err().to_string();
            assert!(err.contains(want), "{yaml}: {err}");
        }
        let missing = SchedulerConfig::from_file("/nonexistent/scheduler.yaml").unwrap_err().to_string();
        assert!(missing.contains("/nonexistent/scheduler.yaml"), "{missing}");
    }

    #[test]
    fn load_takes_the_file_or_the_shortcut() {
        assert_eq!(SchedulerConfig::load(None, None).unwrap(), SchedulerConfig::default());
        assert_eq!(SchedulerConfig::load(None, Some("binpack")).unwrap(), SchedulerConfig::binpack());
        let both = SchedulerConfig::load(Some(Path::new("/x.yaml")), Some("spread")).unwrap_err().to_string();
        assert!(both.contains("cannot be used together"), "{both}");
        let dir = std::env::temp_dir().join(format!("skiff-scheduler-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("c.yaml");
        std::fs::write(&f, "profiles:\n- schedulerName: only\n").unwrap();
        let c = SchedulerConfig::load(Some(&f), None);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(c.unwrap().profiles[0].scheduler_name, "only");
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("15s"), Some(Duration::from_secs(15)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("5"), None);
    }
}
