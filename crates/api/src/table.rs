//! Server-side printing: the `meta.k8s.io/v1` Table that `kubectl get` asks for, with the column
//! definitions and cell computations of upstream `pkg/printers/internalversion/printers.go` (Kubernetes
//! 1.33, generated with `Wide: true` as the API server does), and `duration.HumanDuration` for ages.

use jiff::{SignedDuration, Timestamp};
use serde_json::{Map, Value, json};

use crate::resources::ResourceInfo;
use crate::selector::{LabelSelector, format_labels};

/// What `rows[].object` carries (`?includeObject=`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IncludeObject {
    /// No object.
    None,
    /// A `PartialObjectMetadata` with the object's metadata (the default).
    #[default]
    Metadata,
    /// The whole object.
    Object,
}

impl IncludeObject {
    /// Parses the `includeObject` query value; `""` is the default (`Metadata`), unknown values are `None`
    /// (the API answers 400 `unrecognized includeObject value: "<v>"`).
    pub fn parse(s: &str) -> Option<IncludeObject> {
        match s {
            "" | "Metadata" => Some(IncludeObject::Metadata),
            "None" => Some(IncludeObject::None),
            "Object" => Some(IncludeObject::Object),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// Durations

/// Renders a duration as `k8s.io/apimachinery/pkg/util/duration.HumanDuration` does (~2-3 significant
/// figures: `59s`, `119s`, `2m`, `9m59s`, `10m`, `3h`, `7h59m`, `47h`, `2d`, `7d23h`, `8d`, `729d`, `2y`,
/// `7y364d`, `8y`). Negative durations down to -1s are `0s`; below that `<invalid>`.
pub fn human_duration(d: SignedDuration) -> String {
    let seconds = d.as_secs();
    if seconds < -1 {
        return "<invalid>".into();
    } else if seconds < 0 {
        return "0s".into();
    } else if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 { format!("{minutes}m") } else { format!("{minutes}m{s}s") };
    } else if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        if m == 0 { format!("{hours}h") } else { format!("{hours}h{m}m") }
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 24 * 8 {
        let h = hours % 24;
        if h == 0 { format!("{}d", hours / 24) } else { format!("{}d{h}h", hours / 24) }
    } else if hours < 24 * 365 * 2 {
        format!("{}d", hours / 24)
    } else if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        if dy == 0 { format!("{}y", hours / 24 / 365) } else { format!("{}y{dy}d", hours / 24 / 365) }
    } else {
        format!("{}y", hours / 24 / 365)
    }
}

/// `duration.ShortHumanDuration`: one unit only (`59s`, `59m`, `23h`, `364d`, `1y`).
pub fn short_human_duration(d: SignedDuration) -> String {
    let seconds = d.as_secs();
    if seconds < -1 {
        "<invalid>".into()
    } else if seconds < 0 {
        "0s".into()
    } else if seconds < 60 {
        format!("{seconds}s")
    } else if seconds / 60 < 60 {
        format!("{}m", seconds / 60)
    } else if seconds / 3600 < 24 {
        format!("{}h", seconds / 3600)
    } else if seconds / 3600 < 24 * 365 {
        format!("{}d", seconds / 3600 / 24)
    } else {
        format!("{}y", seconds / 3600 / 24 / 365)
    }
}

/// Go's zero `time.Time` (`0001-01-01T00:00:00Z`), which `metav1.Time.IsZero` treats as unset.
const GO_ZERO_TIME_SECONDS: i64 = -62_135_596_800;

/// Parses an RFC 3339 timestamp; `None` when absent, `null`, unparsable or Go's zero time.
fn timestamp(v: Option<&Value>) -> Option<Timestamp> {
    let ts: Timestamp = v?.as_str()?.parse().ok()?;
    (ts.as_second() != GO_ZERO_TIME_SECONDS).then_some(ts)
}

/// `translateTimestampSince`: the age of a timestamp, `<unknown>` when unset.
fn since(now: Timestamp, ts: Option<Timestamp>) -> String {
    match ts {
        Some(ts) => human_duration(now.duration_since(ts)),
        None => "<unknown>".into(),
    }
}

// ---------------------------------------------------------------------------------------------------
// JSON access helpers

fn at<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, k| v.get(k)).filter(|v| !v.is_null())
}

fn s<'a>(v: &'a Value, path: &str) -> &'a str {
    at(v, path).and_then(Value::as_str).unwrap_or("")
}

fn opt_int(v: &Value, path: &str) -> Option<i64> {
    at(v, path).and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)))
}

fn int(v: &Value, path: &str) -> i64 {
    opt_int(v, path).unwrap_or(0)
}

fn opt_bool(v: &Value, path: &str) -> Option<bool> {
    at(v, path).and_then(Value::as_bool)
}

fn arr<'a>(v: &'a Value, path: &str) -> &'a [Value] {
    at(v, path).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

fn map_len(v: &Value, path: &str) -> usize {
    at(v, path).and_then(Value::as_object).map_or(0, Map::len)
}

fn labels_at<'a>(v: &'a Value, path: &str) -> Option<&'a Map<String, Value>> {
    at(v, path).and_then(Value::as_object)
}

fn annotation<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    at(obj, "metadata.annotations").and_then(|a| a.get(key)).and_then(Value::as_str)
}

fn name(obj: &Value) -> Value {
    Value::from(s(obj, "metadata.name"))
}

fn age(obj: &Value, now: Timestamp) -> Value {
    Value::from(since(now, timestamp(at(obj, "metadata.creationTimestamp"))))
}

fn is_deleting(obj: &Value) -> bool {
    at(obj, "metadata.deletionTimestamp").is_some()
}

/// A quantity's canonical string as stored (`1Gi`, `500m`); `0` when absent.
fn quantity(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(q)) => q.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => "0".into(),
    }
}

/// `intstr.IntOrString.String()`.
fn int_or_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `layoutContainerCells`: container names and images, comma-separated.
fn container_cells(containers: &[Value]) -> (Value, Value) {
    let names: Vec<&str> = containers.iter().map(|c| s(c, "name")).collect();
    let images: Vec<&str> = containers.iter().map(|c| s(c, "image")).collect();
    (Value::from(names.join(",")), Value::from(images.join(",")))
}

/// `metav1.FormatLabelSelector`: `<none>` when empty or absent, `<error>` when invalid.
fn format_label_selector(v: Option<&Value>) -> String {
    match LabelSelector::from_json(v.unwrap_or(&Value::Null)) {
        Ok(sel) => {
            let s = sel.to_string();
            if s.is_empty() { "<none>".into() } else { s }
        }
        Err(_) => "<error>".into(),
    }
}

/// Go's `net.JoinHostPort`.
fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
}

/// `listWithMoreString`.
fn list_with_more(list: &[String], more: bool, count: usize, max: usize) -> String {
    let ret = list.join(",");
    if more {
        format!("{ret} + {} more...", count - max)
    } else if ret.is_empty() {
        "<unset>".into()
    } else {
        ret
    }
}

// ---------------------------------------------------------------------------------------------------
// Column definitions

struct Col {
    name: &'static str,
    ty: &'static str,
    format: &'static str,
    desc: &'static str,
    priority: u8,
}

const fn col(name: &'static str, ty: &'static str, desc: &'static str) -> Col {
    Col { name, ty, format: "", desc, priority: 0 }
}

const fn wide(name: &'static str, ty: &'static str, desc: &'static str) -> Col {
    Col { name, ty, format: "", desc, priority: 1 }
}

const NAME_DESC: &str = "Name must be unique within a namespace. Is required when creating resources, although \
     some resources may allow a client to request the generation of an appropriate name automatically. Name is \
     primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: \
     https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const AGE_DESC: &str = "CreationTimestamp is a timestamp representing the server time when this object was \
     created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not \
     set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null \
     for lists. More info: \
     https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";
const CONTAINERS_DESC: &str = "Names of each container in the template.";
const IMAGES_DESC: &str = "Images referenced by each container in the template.";
const SELECTOR_DESC: &str = "A label query over pods that should match the replica count. More info: \
     https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors";

const NAME: Col = Col { name: "Name", ty: "string", format: "name", desc: NAME_DESC, priority: 0 };
const AGE: Col = col("Age", "string", AGE_DESC);
const CONTAINERS: Col = wide("Containers", "string", CONTAINERS_DESC);
const IMAGES: Col = wide("Images", "string", IMAGES_DESC);
const SELECTOR: Col = wide("Selector", "string", SELECTOR_DESC);

const POD_COLUMNS: &[Col] = &[
    NAME,
    col("Ready", "string", "The aggregate readiness state of this pod for accepting traffic."),
    col("Status", "string", "The aggregate status of the containers in this pod."),
    col(
        "Restarts",
        "string",
        "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
    ),
    AGE,
    wide(
        "IP",
        "string",
        "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.",
    ),
    wide("Node", "string", "NodeName indicates in which node this pod is scheduled."),
    wide("Nominated Node", "string", "nominatedNodeName is set only when this pod preempts other pods on the node."),
    wide("Readiness Gates", "string", "If specified, all readiness gates will be evaluated for pod readiness."),
];

const POD_TEMPLATE_COLUMNS: &[Col] = &[
    NAME,
    col("Containers", "string", CONTAINERS_DESC),
    col("Images", "string", IMAGES_DESC),
    col("Pod Labels", "string", "The labels for the pod template."),
];

const PDB_COLUMNS: &[Col] = &[
    NAME,
    col("Min Available", "string", "The minimum number of pods that must be available."),
    col("Max Unavailable", "string", "The maximum number of pods that may be unavailable."),
    col("Allowed Disruptions", "integer", "Calculated number of pods that may be disrupted at this time."),
    AGE,
];

const RC_COLUMNS: &[Col] = &[
    NAME,
    col("Desired", "integer", "Replicas is the number of desired replicas."),
    col("Current", "integer", "Replicas is the most recently observed number of replicas."),
    col("Ready", "integer", "The number of ready replicas for this replication controller."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

const RS_COLUMNS: &[Col] = &[
    NAME,
    col("Desired", "integer", "Replicas is the number of desired replicas."),
    col("Current", "integer", "Replicas is the most recently observed number of replicas."),
    col("Ready", "integer", "The number of ready replicas for this replica set."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

const DS_COLUMNS: &[Col] = &[
    NAME,
    col("Desired", "integer", "The total number of nodes that should be running the daemon pod."),
    col(
        "Current",
        "integer",
        "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod.",
    ),
    col(
        "Ready",
        "integer",
        "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready.",
    ),
    col("Up-to-date", "integer", "The total number of nodes that are running updated daemon pod"),
    col(
        "Available",
        "integer",
        "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available.",
    ),
    col("Node Selector", "string", "NodeSelector is a selector which must be true for the pod to fit on a node."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

const JOB_COLUMNS: &[Col] = &[
    NAME,
    col("Status", "string", "Status of the job."),
    col("Completions", "string", "The number of pods which reached phase Succeeded."),
    col("Duration", "string", "Time required to complete the job."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

const CRONJOB_COLUMNS: &[Col] = &[
    NAME,
    col("Schedule", "string", "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron."),
    col(
        "Timezone",
        "string",
        "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones.",
    ),
    col(
        "Suspend",
        "boolean",
        "This flag tells the controller to suspend subsequent executions, it does not apply to already started executions.",
    ),
    col("Active", "integer", "A list of pointers to currently running jobs."),
    col("Last Schedule", "string", "Information when was the last time the job was successfully scheduled."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

const SERVICE_COLUMNS: &[Col] = &[
    NAME,
    col("Type", "string", "type determines how the Service is exposed."),
    col("Cluster-IP", "string", "clusterIP is the IP address of the service and is usually assigned randomly."),
    col(
        "External-IP",
        "string",
        "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.",
    ),
    col("Port(s)", "string", "The list of ports that are exposed by this service."),
    AGE,
    wide("Selector", "string", "Route service traffic to pods with label keys and values matching this selector."),
];

const INGRESS_COLUMNS: &[Col] = &[
    NAME,
    col("Class", "string", "The name of the IngressClass resource that should be used for additional configuration"),
    col("Hosts", "string", "Hosts that incoming requests are matched against before the ingress rule"),
    col("Address", "string", "Address is a list containing ingress points for the load-balancer"),
    col("Ports", "string", "Ports of TLS configurations that open"),
    AGE,
];

const INGRESS_CLASS_COLUMNS: &[Col] = &[
    NAME,
    col("Controller", "string", "Controller that is responsible for handling this class"),
    col("Parameters", "string", "A reference to a resource with additional parameters"),
    AGE,
];

const STATEFULSET_COLUMNS: &[Col] =
    &[NAME, col("Ready", "string", "Number of the pod with ready state"), AGE, CONTAINERS, IMAGES];

const ENDPOINTS_COLUMNS: &[Col] =
    &[NAME, col("Endpoints", "string", "The set of all endpoints is the union of all subsets."), AGE];

const NODE_COLUMNS: &[Col] = &[
    NAME,
    col("Status", "string", "The status of the node"),
    col("Roles", "string", "The roles of the node"),
    AGE,
    col("Version", "string", "Kubelet Version reported by the node."),
    wide("Internal-IP", "string", "List of addresses reachable to the node."),
    wide("External-IP", "string", "List of addresses reachable to the node."),
    wide(
        "OS-Image",
        "string",
        "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
    ),
    wide(
        "Kernel-Version",
        "string",
        "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
    ),
    wide(
        "Container-Runtime",
        "string",
        "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
    ),
];

const EVENT_COLUMNS: &[Col] = &[
    col("Last Seen", "string", "The time at which the most recent occurrence of this event was recorded."),
    col("Type", "string", "Type of this event (Normal, Warning), new types could be added in the future"),
    col(
        "Reason",
        "string",
        "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.",
    ),
    col("Object", "string", "The object that this event is about."),
    wide(
        "Subobject",
        "string",
        "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement.",
    ),
    wide("Source", "string", "The component reporting this event. Should be a short machine understandable string."),
    col("Message", "string", "A human-readable description of the status of this operation."),
    wide(
        "First Seen",
        "string",
        "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)",
    ),
    wide("Count", "string", "The number of times this event has occurred."),
    Col { name: "Name", ty: "string", format: "name", desc: NAME_DESC, priority: 1 },
];

const NAMESPACE_COLUMNS: &[Col] = &[NAME, col("Status", "string", "The status of the namespace"), AGE];

const SECRET_COLUMNS: &[Col] = &[
    NAME,
    col("Type", "string", "Used to facilitate programmatic handling of secret data."),
    col("Data", "string", "Data contains the secret data."),
    AGE,
];

const SERVICE_ACCOUNT_COLUMNS: &[Col] = &[
    NAME,
    col(
        "Secrets",
        "string",
        "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use.",
    ),
    AGE,
];

const PV_COLUMNS: &[Col] = &[
    NAME,
    col("Capacity", "string", "capacity is the description of the persistent volume's resources and capacity."),
    col("Access Modes", "string", "accessModes contains all ways the volume can be mounted."),
    col(
        "Reclaim Policy",
        "string",
        "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim.",
    ),
    col("Status", "string", "phase indicates if a volume is available, bound to a claim, or released by a claim."),
    col(
        "Claim",
        "string",
        "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim.",
    ),
    col("StorageClass", "string", "StorageClass of the pv"),
    col("VolumeAttributesClass", "string", "VolumeAttributesClass of the pv"),
    col(
        "Reason",
        "string",
        "reason is a brief CamelCase string that describes any failure and is meant for machine parsing and tidy display in the CLI.",
    ),
    AGE,
    wide(
        "VolumeMode",
        "string",
        "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state.",
    ),
];

const PVC_COLUMNS: &[Col] = &[
    NAME,
    col("Status", "string", "phase represents the current phase of PersistentVolumeClaim."),
    col("Volume", "string", "volumeName is the binding reference to the PersistentVolume backing this claim."),
    col("Capacity", "string", "capacity represents the actual resources of the underlying volume."),
    col("Access Modes", "string", "accessModes contains the actual access modes the volume backing the PVC has."),
    col("StorageClass", "string", "StorageClass of the pvc"),
    col("VolumeAttributesClass", "string", "VolumeAttributesClass of the pvc"),
    AGE,
    wide("VolumeMode", "string", "volumeMode defines what type of volume is required by the claim."),
];

const DEPLOYMENT_COLUMNS: &[Col] = &[
    NAME,
    col("Ready", "string", "Number of the pod with ready state"),
    col(
        "Up-to-date",
        "string",
        "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
    ),
    col(
        "Available",
        "string",
        "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    wide(
        "Selector",
        "string",
        "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment.",
    ),
];

const HPA_COLUMNS: &[Col] = &[
    NAME,
    col(
        "Reference",
        "string",
        "reference to scaled resource; horizontal pod autoscaler will learn the current resource consumption and will set the desired number of pods by using its Scale subresource.",
    ),
    col(
        "Targets",
        "string",
        "metrics contains the specifications for which to use to calculate the desired replica count.",
    ),
    col(
        "MinPods",
        "string",
        "minReplicas is the lower limit for the number of replicas to which the autoscaler can scale down.",
    ),
    col(
        "MaxPods",
        "string",
        "maxReplicas is the upper limit for the number of replicas to which the autoscaler can scale up.",
    ),
    col("Replicas", "string", "currentReplicas is current number of replicas of pods managed by this autoscaler."),
    AGE,
];

const CONFIGMAP_COLUMNS: &[Col] = &[NAME, col("Data", "string", "Data contains the configuration data."), AGE];

const NETWORK_POLICY_COLUMNS: &[Col] =
    &[NAME, col("Pod-Selector", "string", "Selects the pods to which this NetworkPolicy object applies."), AGE];

const ROLE_BINDING_COLUMNS: &[Col] = &[
    NAME,
    col(
        "Role",
        "string",
        "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace.",
    ),
    AGE,
    wide("Users", "string", "Users in the roleBinding"),
    wide("Groups", "string", "Groups in the roleBinding"),
    wide("ServiceAccounts", "string", "ServiceAccounts in the roleBinding"),
];

const CLUSTER_ROLE_BINDING_COLUMNS: &[Col] = &[
    NAME,
    col("Role", "string", "RoleRef can only reference a ClusterRole in the global namespace."),
    AGE,
    wide("Users", "string", "Users in the clusterRoleBinding"),
    wide("Groups", "string", "Groups in the clusterRoleBinding"),
    wide("ServiceAccounts", "string", "ServiceAccounts in the clusterRoleBinding"),
];

const LEASE_COLUMNS: &[Col] =
    &[NAME, col("Holder", "string", "holderIdentity contains the identity of the holder of a current lease."), AGE];

const STORAGE_CLASS_COLUMNS: &[Col] = &[
    NAME,
    col("Provisioner", "string", "provisioner indicates the type of the provisioner."),
    col(
        "ReclaimPolicy",
        "string",
        "reclaimPolicy controls the reclaimPolicy for dynamically provisioned PersistentVolumes of this storage class.",
    ),
    col(
        "VolumeBindingMode",
        "string",
        "volumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound.",
    ),
    col("AllowVolumeExpansion", "string", "allowVolumeExpansion shows whether the storage class allow volume expand."),
    AGE,
];

const CONTROLLER_REVISION_COLUMNS: &[Col] = &[
    NAME,
    col("Controller", "string", "Controller of the object"),
    col("Revision", "string", "Revision indicates the revision of the state represented by Data."),
    AGE,
];

const RESOURCE_QUOTA_COLUMNS: &[Col] = &[
    NAME,
    col("Request", "string", "Request represents a minimum amount of cpu/memory that a container may consume."),
    col(
        "Limit",
        "string",
        "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node.",
    ),
    AGE,
];

const PRIORITY_CLASS_COLUMNS: &[Col] = &[
    NAME,
    col("Value", "integer", "value represents the integer value of this priority class."),
    col(
        "Global-Default",
        "boolean",
        "globalDefault specifies whether this PriorityClass should be considered as the default priority for pods that do not have any priority class.",
    ),
    AGE,
    col("PreemptionPolicy", "string", "preemptionPolicy is the Policy for preempting pods with lower priority."),
];

const ENDPOINT_SLICE_COLUMNS: &[Col] = &[
    NAME,
    col("AddressType", "string", "addressType specifies the type of address carried by this EndpointSlice."),
    col("Ports", "string", "ports specifies the list of network ports exposed by each endpoint in this slice."),
    col("Endpoints", "string", "endpoints is a list of unique endpoints in this slice."),
    AGE,
];

const CSI_DRIVER_COLUMNS: &[Col] = &[
    NAME,
    col("AttachRequired", "boolean", "attachRequired indicates this CSI volume driver requires an attach operation."),
    col(
        "PodInfoOnMount",
        "boolean",
        "podInfoOnMount indicates this CSI volume driver requires additional pod information during mount operations.",
    ),
    col(
        "StorageCapacity",
        "boolean",
        "storageCapacity indicates that the CSI volume driver wants pod scheduling to consider the storage capacity that the driver deployment will report.",
    ),
    col(
        "TokenRequests",
        "string",
        "tokenRequests indicates the CSI driver needs pods' service account tokens it is mounting volume for to do necessary authentication.",
    ),
    col(
        "RequiresRepublish",
        "boolean",
        "requiresRepublish indicates the CSI driver wants `NodePublishVolume` being periodically called to reflect any possible change in the mounted volume.",
    ),
    col("Modes", "string", "volumeLifecycleModes defines what kind of volumes this CSI volume driver supports."),
    AGE,
];

/// The default columns of resources without a printer (`rest.NewDefaultTableConvertor`).
const DEFAULT_COLUMNS: &[Col] = &[NAME, col("Created At", "date", AGE_DESC)];

/// Which printer renders a resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Printer {
    Pod,
    PodTemplate,
    PodDisruptionBudget,
    ReplicationController,
    ReplicaSet,
    DaemonSet,
    Job,
    CronJob,
    Service,
    Ingress,
    IngressClass,
    StatefulSet,
    Endpoints,
    Node,
    Event,
    Namespace,
    Secret,
    ServiceAccount,
    PersistentVolume,
    PersistentVolumeClaim,
    Deployment,
    HorizontalPodAutoscaler,
    ConfigMap,
    NetworkPolicy,
    RoleBinding,
    ClusterRoleBinding,
    Lease,
    StorageClass,
    ControllerRevision,
    ResourceQuota,
    PriorityClass,
    EndpointSlice,
    CsiDriver,
    Default,
}

fn printer(resource: &ResourceInfo) -> Printer {
    match (resource.group, resource.kind) {
        ("", "Pod") => Printer::Pod,
        ("", "PodTemplate") => Printer::PodTemplate,
        ("policy", "PodDisruptionBudget") => Printer::PodDisruptionBudget,
        ("", "ReplicationController") => Printer::ReplicationController,
        ("apps", "ReplicaSet") => Printer::ReplicaSet,
        ("apps", "DaemonSet") => Printer::DaemonSet,
        ("batch", "Job") => Printer::Job,
        ("batch", "CronJob") => Printer::CronJob,
        ("", "Service") => Printer::Service,
        ("networking.k8s.io", "Ingress") => Printer::Ingress,
        ("networking.k8s.io", "IngressClass") => Printer::IngressClass,
        ("apps", "StatefulSet") => Printer::StatefulSet,
        ("", "Endpoints") => Printer::Endpoints,
        ("", "Node") => Printer::Node,
        ("", "Event") | ("events.k8s.io", "Event") => Printer::Event,
        ("", "Namespace") => Printer::Namespace,
        ("", "Secret") => Printer::Secret,
        ("", "ServiceAccount") => Printer::ServiceAccount,
        ("", "PersistentVolume") => Printer::PersistentVolume,
        ("", "PersistentVolumeClaim") => Printer::PersistentVolumeClaim,
        ("apps", "Deployment") => Printer::Deployment,
        ("autoscaling", "HorizontalPodAutoscaler") => Printer::HorizontalPodAutoscaler,
        ("", "ConfigMap") => Printer::ConfigMap,
        ("networking.k8s.io", "NetworkPolicy") => Printer::NetworkPolicy,
        ("rbac.authorization.k8s.io", "RoleBinding") => Printer::RoleBinding,
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => Printer::ClusterRoleBinding,
        ("coordination.k8s.io", "Lease") => Printer::Lease,
        ("storage.k8s.io", "StorageClass") => Printer::StorageClass,
        ("apps", "ControllerRevision") => Printer::ControllerRevision,
        ("", "ResourceQuota") => Printer::ResourceQuota,
        ("scheduling.k8s.io", "PriorityClass") => Printer::PriorityClass,
        ("discovery.k8s.io", "EndpointSlice") => Printer::EndpointSlice,
        ("storage.k8s.io", "CSIDriver") => Printer::CsiDriver,
        // Roles, ClusterRoles, LimitRanges and anything else have no printer upstream.
        _ => Printer::Default,
    }
}

fn column_defs(p: Printer) -> &'static [Col] {
    match p {
        Printer::Pod => POD_COLUMNS,
        Printer::PodTemplate => POD_TEMPLATE_COLUMNS,
        Printer::PodDisruptionBudget => PDB_COLUMNS,
        Printer::ReplicationController => RC_COLUMNS,
        Printer::ReplicaSet => RS_COLUMNS,
        Printer::DaemonSet => DS_COLUMNS,
        Printer::Job => JOB_COLUMNS,
        Printer::CronJob => CRONJOB_COLUMNS,
        Printer::Service => SERVICE_COLUMNS,
        Printer::Ingress => INGRESS_COLUMNS,
        Printer::IngressClass => INGRESS_CLASS_COLUMNS,
        Printer::StatefulSet => STATEFULSET_COLUMNS,
        Printer::Endpoints => ENDPOINTS_COLUMNS,
        Printer::Node => NODE_COLUMNS,
        Printer::Event => EVENT_COLUMNS,
        Printer::Namespace => NAMESPACE_COLUMNS,
        Printer::Secret => SECRET_COLUMNS,
        Printer::ServiceAccount => SERVICE_ACCOUNT_COLUMNS,
        Printer::PersistentVolume => PV_COLUMNS,
        Printer::PersistentVolumeClaim => PVC_COLUMNS,
        Printer::Deployment => DEPLOYMENT_COLUMNS,
        Printer::HorizontalPodAutoscaler => HPA_COLUMNS,
        Printer::ConfigMap => CONFIGMAP_COLUMNS,
        Printer::NetworkPolicy => NETWORK_POLICY_COLUMNS,
        Printer::RoleBinding => ROLE_BINDING_COLUMNS,
        Printer::ClusterRoleBinding => CLUSTER_ROLE_BINDING_COLUMNS,
        Printer::Lease => LEASE_COLUMNS,
        Printer::StorageClass => STORAGE_CLASS_COLUMNS,
        Printer::ControllerRevision => CONTROLLER_REVISION_COLUMNS,
        Printer::ResourceQuota => RESOURCE_QUOTA_COLUMNS,
        Printer::PriorityClass => PRIORITY_CLASS_COLUMNS,
        Printer::EndpointSlice => ENDPOINT_SLICE_COLUMNS,
        Printer::CsiDriver => CSI_DRIVER_COLUMNS,
        Printer::Default => DEFAULT_COLUMNS,
    }
}

/// The `columnDefinitions` of a resource's Table: `{"name","type","format","description","priority"}`.
pub fn columns(resource: &ResourceInfo) -> Vec<Value> {
    column_defs(printer(resource))
        .iter()
        .map(|c| {
            json!({"name": c.name, "type": c.ty, "format": c.format, "description": c.desc, "priority": c.priority})
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------------
// Cells

/// The cells of one object's row, one per column of [`columns`] (priority-1 columns included, as the API
/// server always prints wide). `now` is the reference time for ages.
pub fn cells(resource: &ResourceInfo, obj: &Value, now: Timestamp) -> Vec<Value> {
    match printer(resource) {
        Printer::Pod => pod_cells(obj, now),
        Printer::PodTemplate => {
            let (names, images) = container_cells(arr(obj, "template.spec.containers"));
            vec![name(obj), names, images, format_labels(labels_at(obj, "template.metadata.labels")).into()]
        }
        Printer::PodDisruptionBudget => {
            let bound = |path| at(obj, path).map_or_else(|| "N/A".to_string(), int_or_string);
            vec![
                name(obj),
                bound("spec.minAvailable").into(),
                bound("spec.maxUnavailable").into(),
                int(obj, "status.disruptionsAllowed").into(),
                age(obj, now),
            ]
        }
        Printer::ReplicationController => {
            let (names, images) = container_cells(arr(obj, "spec.template.spec.containers"));
            vec![
                name(obj),
                opt_int(obj, "spec.replicas").unwrap_or(1).into(),
                int(obj, "status.replicas").into(),
                int(obj, "status.readyReplicas").into(),
                age(obj, now),
                names,
                images,
                format_labels(labels_at(obj, "spec.selector")).into(),
            ]
        }
        Printer::ReplicaSet => {
            let (names, images) = container_cells(arr(obj, "spec.template.spec.containers"));
            vec![
                name(obj),
                opt_int(obj, "spec.replicas").unwrap_or(1).into(),
                int(obj, "status.replicas").into(),
                int(obj, "status.readyReplicas").into(),
                age(obj, now),
                names,
                images,
                format_label_selector(at(obj, "spec.selector")).into(),
            ]
        }
        Printer::DaemonSet => {
            let (names, images) = container_cells(arr(obj, "spec.template.spec.containers"));
            vec![
                name(obj),
                int(obj, "status.desiredNumberScheduled").into(),
                int(obj, "status.currentNumberScheduled").into(),
                int(obj, "status.numberReady").into(),
                int(obj, "status.updatedNumberScheduled").into(),
                int(obj, "status.numberAvailable").into(),
                format_labels(labels_at(obj, "spec.template.spec.nodeSelector")).into(),
                age(obj, now),
                names,
                images,
                format_label_selector(at(obj, "spec.selector")).into(),
            ]
        }
        Printer::Job => job_cells(obj, now),
        Printer::CronJob => {
            let last = match timestamp(at(obj, "status.lastScheduleTime")) {
                Some(ts) => since(now, Some(ts)),
                None => "<none>".into(),
            };
            let suspend = match opt_bool(obj, "spec.suspend") {
                Some(true) => "True",
                Some(false) => "False",
                None => "<unset>",
            };
            let tz = at(obj, "spec.timeZone").and_then(Value::as_str).unwrap_or("<none>");
            let (names, images) = container_cells(arr(obj, "spec.jobTemplate.spec.template.spec.containers"));
            vec![
                name(obj),
                s(obj, "spec.schedule").into(),
                tz.into(),
                suspend.into(),
                (arr(obj, "status.active").len() as i64).into(),
                last.into(),
                age(obj, now),
                names,
                images,
                format_label_selector(at(obj, "spec.jobTemplate.spec.selector")).into(),
            ]
        }
        Printer::Service => service_cells(obj, now),
        Printer::Ingress => ingress_cells(obj, now),
        Printer::IngressClass => {
            let parameters = match at(obj, "spec.parameters") {
                Some(p) => {
                    let mut out = s(p, "kind").to_string();
                    if let Some(group) = at(p, "apiGroup").and_then(Value::as_str) {
                        out = format!("{out}.{group}");
                    }
                    format!("{out}/{}", s(p, "name"))
                }
                None => "<none>".into(),
            };
            vec![name(obj), s(obj, "spec.controller").into(), parameters.into(), age(obj, now)]
        }
        Printer::StatefulSet => {
            let (names, images) = container_cells(arr(obj, "spec.template.spec.containers"));
            let ready = format!("{}/{}", int(obj, "status.readyReplicas"), opt_int(obj, "spec.replicas").unwrap_or(1));
            vec![name(obj), ready.into(), age(obj, now), names, images]
        }
        Printer::Endpoints => vec![name(obj), format_endpoints(obj).into(), age(obj, now)],
        Printer::Node => node_cells(obj, now),
        Printer::Event => event_cells(obj, now),
        Printer::Namespace => vec![name(obj), s(obj, "status.phase").into(), age(obj, now)],
        Printer::Secret => {
            vec![name(obj), s(obj, "type").into(), (map_len(obj, "data") as i64).into(), age(obj, now)]
        }
        Printer::ServiceAccount => vec![name(obj), (arr(obj, "secrets").len() as i64).into(), age(obj, now)],
        Printer::PersistentVolume => pv_cells(obj, now),
        Printer::PersistentVolumeClaim => pvc_cells(obj, now),
        Printer::Deployment => {
            let (names, images) = container_cells(arr(obj, "spec.template.spec.containers"));
            let selector = match LabelSelector::from_json(at(obj, "spec.selector").unwrap_or(&Value::Null)) {
                Ok(sel) => sel.to_string(),
                Err(_) => "<invalid>".into(),
            };
            let ready = format!("{}/{}", int(obj, "status.readyReplicas"), opt_int(obj, "spec.replicas").unwrap_or(1));
            vec![
                name(obj),
                ready.into(),
                int(obj, "status.updatedReplicas").into(),
                int(obj, "status.availableReplicas").into(),
                age(obj, now),
                names,
                images,
                selector.into(),
            ]
        }
        Printer::HorizontalPodAutoscaler => hpa_cells(obj, now),
        Printer::ConfigMap => {
            let n = map_len(obj, "data") + map_len(obj, "binaryData");
            vec![name(obj), (n as i64).into(), age(obj, now)]
        }
        Printer::NetworkPolicy => {
            let podsel = at(obj, "spec.podSelector").cloned().unwrap_or_else(|| json!({}));
            vec![name(obj), format_label_selector(Some(&podsel)).into(), age(obj, now)]
        }
        Printer::RoleBinding | Printer::ClusterRoleBinding => role_binding_cells(obj, now),
        Printer::Lease => vec![name(obj), s(obj, "spec.holderIdentity").into(), age(obj, now)],
        Printer::StorageClass => {
            let mut n = s(obj, "metadata.name").to_string();
            if annotation(obj, "storageclass.kubernetes.io/is-default-class") == Some("true")
                || annotation(obj, "storageclass.beta.kubernetes.io/is-default-class") == Some("true")
            {
                n.push_str(" (default)");
            }
            let reclaim = at(obj, "reclaimPolicy").and_then(Value::as_str).unwrap_or("Delete");
            let binding = at(obj, "volumeBindingMode").and_then(Value::as_str).unwrap_or("Immediate");
            vec![
                n.into(),
                s(obj, "provisioner").into(),
                reclaim.into(),
                binding.into(),
                opt_bool(obj, "allowVolumeExpansion").unwrap_or(false).into(),
                age(obj, now),
            ]
        }
        Printer::ControllerRevision => {
            let controller = arr(obj, "metadata.ownerReferences")
                .iter()
                .find(|r| opt_bool(r, "controller") == Some(true))
                .map_or_else(
                    || "<none>".to_string(),
                    |r| {
                        let api_version = s(r, "apiVersion");
                        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
                        let kind = s(r, "kind");
                        if group.is_empty() && kind.is_empty() {
                            s(r, "name").to_string()
                        } else {
                            let gk = if group.is_empty() { kind.to_string() } else { format!("{kind}.{group}") };
                            format!("{}/{}", gk.to_lowercase(), s(r, "name"))
                        }
                    },
                );
            vec![name(obj), controller.into(), int(obj, "revision").into(), age(obj, now)]
        }
        Printer::ResourceQuota => resource_quota_cells(obj, now),
        Printer::PriorityClass => vec![
            name(obj),
            int(obj, "value").into(),
            opt_bool(obj, "globalDefault").unwrap_or(false).into(),
            age(obj, now),
            s(obj, "preemptionPolicy").into(),
        ],
        Printer::EndpointSlice => endpoint_slice_cells(obj, now),
        Printer::CsiDriver => {
            let modes: Vec<&str> = arr(obj, "spec.volumeLifecycleModes").iter().filter_map(Value::as_str).collect();
            let modes = if modes.is_empty() { "<none>".to_string() } else { modes.join(",") };
            let token_requests = match at(obj, "spec.tokenRequests").and_then(Value::as_array) {
                Some(reqs) => reqs.iter().map(|t| s(t, "audience")).collect::<Vec<_>>().join(","),
                None => "<unset>".into(),
            };
            vec![
                name(obj),
                opt_bool(obj, "spec.attachRequired").unwrap_or(true).into(),
                opt_bool(obj, "spec.podInfoOnMount").unwrap_or(false).into(),
                opt_bool(obj, "spec.storageCapacity").unwrap_or(false).into(),
                token_requests.into(),
                opt_bool(obj, "spec.requiresRepublish").unwrap_or(false).into(),
                modes.into(),
                age(obj, now),
            ]
        }
        Printer::Default => {
            let created = timestamp(at(obj, "metadata.creationTimestamp"))
                .map_or_else(|| "0001-01-01T00:00:00Z".to_string(), |ts| ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
            vec![name(obj), created.into()]
        }
    }
}

fn condition_true(conditions: &[Value], ty: &str) -> bool {
    conditions.iter().find(|c| s(c, "type") == ty).is_some_and(|c| s(c, "status") == "True")
}

/// `printPod`: Ready, the Status reason logic, Restarts with the last restart's age, and the wide columns.
fn pod_cells(pod: &Value, now: Timestamp) -> Vec<Value> {
    let init_specs = arr(pod, "spec.initContainers");
    let is_restartable =
        |container: &str| init_specs.iter().any(|c| s(c, "name") == container && s(c, "restartPolicy") == "Always");
    let total =
        arr(pod, "spec.containers").len() + init_specs.iter().filter(|c| s(c, "restartPolicy") == "Always").count();
    let mut ready = 0usize;
    let mut restarts = 0i64;
    let mut restartable_restarts = 0i64;
    let mut last_restart: Option<Timestamp> = None;
    let mut last_restartable_restart: Option<Timestamp> = None;

    let phase = s(pod, "status.phase");
    let mut reason = phase.to_string();
    if !s(pod, "status.reason").is_empty() {
        reason = s(pod, "status.reason").to_string();
    }
    let conditions = arr(pod, "status.conditions");
    if conditions.iter().any(|c| s(c, "type") == "PodScheduled" && s(c, "reason") == "SchedulingGated") {
        reason = "SchedulingGated".into();
    }

    let last_terminated = |c: &Value| timestamp(at(c, "lastState.terminated.finishedAt"));
    let mut initializing = false;
    for (i, c) in arr(pod, "status.initContainerStatuses").iter().enumerate() {
        restarts += int(c, "restartCount");
        last_restart = last_restart.max(last_terminated(c));
        let restartable = is_restartable(s(c, "name"));
        if restartable {
            restartable_restarts += int(c, "restartCount");
            last_restartable_restart = last_restartable_restart.max(last_terminated(c));
        }
        let terminated = at(c, "state.terminated");
        let waiting_reason = s(c, "state.waiting.reason");
        if terminated.is_some_and(|t| int(t, "exitCode") == 0) {
            continue;
        } else if restartable && opt_bool(c, "started") == Some(true) {
            if opt_bool(c, "ready") == Some(true) {
                ready += 1;
            }
            continue;
        } else if let Some(t) = terminated {
            reason = if s(t, "reason").is_empty() {
                if int(t, "signal") != 0 {
                    format!("Init:Signal:{}", int(t, "signal"))
                } else {
                    format!("Init:ExitCode:{}", int(t, "exitCode"))
                }
            } else {
                format!("Init:{}", s(t, "reason"))
            };
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            reason = format!("Init:{waiting_reason}");
        } else {
            reason = format!("Init:{i}/{}", init_specs.len());
        }
        initializing = true;
        break;
    }

    if !initializing || condition_true(conditions, "Initialized") {
        restarts = restartable_restarts;
        last_restart = last_restartable_restart;
        let mut has_running = false;
        for c in arr(pod, "status.containerStatuses").iter().rev() {
            restarts += int(c, "restartCount");
            last_restart = last_restart.max(last_terminated(c));
            let terminated = at(c, "state.terminated");
            if !s(c, "state.waiting.reason").is_empty() {
                reason = s(c, "state.waiting.reason").to_string();
            } else if let Some(t) = terminated {
                reason = if !s(t, "reason").is_empty() {
                    s(t, "reason").to_string()
                } else if int(t, "signal") != 0 {
                    format!("Signal:{}", int(t, "signal"))
                } else {
                    format!("ExitCode:{}", int(t, "exitCode"))
                };
            } else if opt_bool(c, "ready") == Some(true) && at(c, "state.running").is_some() {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            reason = if condition_true(conditions, "Ready") { "Running".into() } else { "NotReady".into() };
        }
    }

    if is_deleting(pod) && s(pod, "status.reason") == "NodeLost" {
        reason = "Unknown".into();
    } else if is_deleting(pod) && phase != "Failed" && phase != "Succeeded" {
        reason = "Terminating".into();
    }

    let restarts_str = match last_restart {
        Some(ts) if restarts != 0 => format!("{restarts} ({} ago)", since(now, Some(ts))),
        _ => restarts.to_string(),
    };

    let or_none = |v: &str| if v.is_empty() { "<none>".to_string() } else { v.to_string() };
    let pod_ip = arr(pod, "status.podIPs").first().map(|ip| s(ip, "ip")).unwrap_or_else(|| s(pod, "status.podIP"));
    let gates = arr(pod, "spec.readinessGates");
    let readiness_gates = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let true_count = gates.iter().filter(|g| condition_true(conditions, s(g, "conditionType"))).count();
        format!("{true_count}/{}", gates.len())
    };
    vec![
        name(pod),
        format!("{ready}/{total}").into(),
        reason.into(),
        restarts_str.into(),
        age(pod, now),
        or_none(pod_ip).into(),
        or_none(s(pod, "spec.nodeName")).into(),
        or_none(s(pod, "status.nominatedNodeName")).into(),
        readiness_gates.into(),
    ]
}

/// The row conditions upstream attaches to finished pods.
fn pod_row_conditions(pod: &Value) -> Option<Value> {
    match s(pod, "status.phase") {
        "Succeeded" => Some(json!([{"type": "Completed", "status": "True", "reason": "Succeeded",
                                    "message": "The pod has completed successfully."}])),
        "Failed" => Some(json!([{"type": "Completed", "status": "True", "reason": "Failed",
                                 "message": "The pod failed."}])),
        _ => None,
    }
}

fn job_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let succeeded = int(obj, "status.succeeded");
    let completions = match opt_int(obj, "spec.completions") {
        Some(c) => format!("{succeeded}/{c}"),
        None => {
            let parallelism = int(obj, "spec.parallelism");
            if parallelism > 1 { format!("{succeeded}/1 of {parallelism}") } else { format!("{succeeded}/1") }
        }
    };
    let start = timestamp(at(obj, "status.startTime"));
    let duration = match (start, timestamp(at(obj, "status.completionTime"))) {
        (None, _) => String::new(),
        (Some(start), None) => human_duration(now.duration_since(start)),
        (Some(start), Some(done)) => human_duration(done.duration_since(start)),
    };
    let conditions = arr(obj, "status.conditions");
    let status = if condition_true(conditions, "Complete") {
        "Complete"
    } else if condition_true(conditions, "Failed") {
        "Failed"
    } else if is_deleting(obj) {
        "Terminating"
    } else if condition_true(conditions, "Suspended") {
        "Suspended"
    } else if condition_true(conditions, "FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    };
    let (names, images) = container_cells(arr(obj, "spec.template.spec.containers"));
    vec![
        name(obj),
        status.into(),
        completions.into(),
        duration.into(),
        age(obj, now),
        names,
        images,
        format_label_selector(at(obj, "spec.selector")).into(),
    ]
}

/// `loadBalancerStatusStringer` (wide: not truncated): the sorted, distinct IPs or hostnames.
fn load_balancer_ingress(status: &Value, path: &str) -> String {
    let mut set: Vec<&str> = arr(status, path)
        .iter()
        .filter_map(|i| {
            let ip = s(i, "ip");
            let host = s(i, "hostname");
            if !ip.is_empty() {
                Some(ip)
            } else if !host.is_empty() {
                Some(host)
            } else {
                None
            }
        })
        .collect();
    set.sort_unstable();
    set.dedup();
    set.join(",")
}

fn service_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let svc_type = at(obj, "spec.type").and_then(Value::as_str).unwrap_or("ClusterIP");
    let cluster_ip =
        arr(obj, "spec.clusterIPs").first().and_then(Value::as_str).unwrap_or_else(|| s(obj, "spec.clusterIP"));
    let cluster_ip = if cluster_ip.is_empty() { "<none>" } else { cluster_ip };
    let external_ips: Vec<&str> = arr(obj, "spec.externalIPs").iter().filter_map(Value::as_str).collect();
    let external = match svc_type {
        "ClusterIP" | "NodePort" => {
            if external_ips.is_empty() {
                "<none>".to_string()
            } else {
                external_ips.join(",")
            }
        }
        "LoadBalancer" => {
            let lb = load_balancer_ingress(obj, "status.loadBalancer.ingress");
            if !external_ips.is_empty() {
                let mut all: Vec<&str> = if lb.is_empty() { Vec::new() } else { lb.split(',').collect() };
                all.extend(&external_ips);
                all.join(",")
            } else if !lb.is_empty() {
                lb
            } else {
                "<pending>".into()
            }
        }
        "ExternalName" => s(obj, "spec.externalName").to_string(),
        _ => "<unknown>".into(),
    };
    let ports: Vec<String> = arr(obj, "spec.ports")
        .iter()
        .map(|p| {
            let protocol = at(p, "protocol").and_then(Value::as_str).unwrap_or("TCP");
            let node_port = int(p, "nodePort");
            if node_port > 0 {
                format!("{}:{node_port}/{protocol}", int(p, "port"))
            } else {
                format!("{}/{protocol}", int(p, "port"))
            }
        })
        .collect();
    let ports = if ports.is_empty() { "<none>".to_string() } else { ports.join(",") };
    vec![
        name(obj),
        svc_type.into(),
        cluster_ip.into(),
        external.into(),
        ports.into(),
        age(obj, now),
        format_labels(labels_at(obj, "spec.selector")).into(),
    ]
}

fn ingress_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let class = at(obj, "spec.ingressClassName").and_then(Value::as_str).unwrap_or("<none>");
    let rules = arr(obj, "spec.rules");
    let max = 3;
    let mut list: Vec<&str> = Vec::new();
    let mut more = false;
    for rule in rules {
        if list.len() == max {
            more = true;
        }
        if !more && !s(rule, "host").is_empty() {
            list.push(s(rule, "host"));
        }
    }
    let hosts = if list.is_empty() {
        "*".to_string()
    } else if more {
        format!("{} + {} more...", list.join(","), rules.len() - max)
    } else {
        list.join(",")
    };
    let address = load_balancer_ingress(obj, "status.loadBalancer.ingress");
    let ports = if arr(obj, "spec.tls").is_empty() { "80" } else { "80, 443" };
    vec![name(obj), class.into(), hosts.into(), address.into(), ports.into(), age(obj, now)]
}

/// `formatEndpoints` with all ports: up to three `ip:port`, then `+ N more...`.
fn format_endpoints(obj: &Value) -> String {
    let subsets = arr(obj, "subsets");
    if subsets.is_empty() {
        return "<none>".into();
    }
    let max = 3;
    let mut list: Vec<String> = Vec::new();
    let mut more = false;
    let mut count = 0;
    for ss in subsets {
        let addresses = arr(ss, "addresses");
        let ports = arr(ss, "ports");
        if ports.is_empty() {
            count += addresses.len();
            for a in addresses {
                if list.len() == max {
                    more = true;
                    break;
                }
                list.push(s(a, "ip").to_string());
            }
            continue;
        }
        for port in ports {
            count += addresses.len();
            for a in addresses {
                if list.len() == max {
                    more = true;
                    break;
                }
                list.push(join_host_port(s(a, "ip"), int(port, "port")));
            }
        }
    }
    let ret = list.join(",");
    if more { format!("{ret} + {} more...", count - max) } else { ret }
}

fn endpoint_slice_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let max = 3;
    let ports = arr(obj, "ports");
    let mut list: Vec<String> = Vec::new();
    let mut more = false;
    for p in ports {
        if list.len() < max {
            let n = match (opt_int(p, "port"), at(p, "name").and_then(Value::as_str)) {
                (Some(port), _) => port.to_string(),
                (None, Some(name)) => name.to_string(),
                (None, None) => "*".to_string(),
            };
            list.push(n);
        } else if list.len() == max {
            more = true;
        }
    }
    let ports_str = list_with_more(&list, more, ports.len(), max);

    let mut list: Vec<String> = Vec::new();
    let mut more = false;
    let mut count = 0;
    for e in arr(obj, "endpoints") {
        for a in arr(e, "addresses").iter().filter_map(Value::as_str) {
            if list.len() < max {
                list.push(a.to_string());
            } else if list.len() == max {
                more = true;
            }
            count += 1;
        }
    }
    let endpoints = list_with_more(&list, more, count, max);
    vec![name(obj), s(obj, "addressType").into(), ports_str.into(), endpoints.into(), age(obj, now)]
}

fn node_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let mut status: Vec<&str> = Vec::new();
    // Only the Ready condition counts (the last one of that type wins, as upstream's map does).
    if let Some(c) = arr(obj, "status.conditions").iter().rev().find(|c| s(c, "type") == "Ready") {
        status.push(if s(c, "status") == "True" { "Ready" } else { "NotReady" });
    }
    if status.is_empty() {
        status.push("Unknown");
    }
    if opt_bool(obj, "spec.unschedulable") == Some(true) {
        status.push("SchedulingDisabled");
    }
    let mut roles: Vec<String> = Vec::new();
    if let Some(labels) = labels_at(obj, "metadata.labels") {
        for (k, v) in labels {
            if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
                if !role.is_empty() {
                    roles.push(role.to_string());
                }
            } else if k == "kubernetes.io/role" && v.as_str().is_some_and(|v| !v.is_empty()) {
                roles.push(v.as_str().unwrap_or_default().to_string());
            }
        }
    }
    roles.sort();
    roles.dedup();
    let roles = if roles.is_empty() { "<none>".to_string() } else { roles.join(",") };
    let address = |ty: &str| {
        arr(obj, "status.addresses")
            .iter()
            .find(|a| s(a, "type") == ty)
            .map_or_else(|| "<none>".to_string(), |a| s(a, "address").to_string())
    };
    let unknown = |path: &str| {
        let v = s(obj, path);
        if v.is_empty() { "<unknown>".to_string() } else { v.to_string() }
    };
    vec![
        name(obj),
        status.join(",").into(),
        roles.into(),
        age(obj, now),
        s(obj, "status.nodeInfo.kubeletVersion").into(),
        address("InternalIP").into(),
        address("ExternalIP").into(),
        unknown("status.nodeInfo.osImage").into(),
        unknown("status.nodeInfo.kernelVersion").into(),
        unknown("status.nodeInfo.containerRuntimeVersion").into(),
    ]
}

/// The first present value among the core/v1 and events.k8s.io/v1 spellings of an Event field.
fn event_field<'a>(obj: &'a Value, core: &str, v1: &str) -> Option<&'a Value> {
    at(obj, core).or_else(|| at(obj, v1))
}

fn event_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let first_ts = timestamp(event_field(obj, "firstTimestamp", "deprecatedFirstTimestamp"));
    let first = match first_ts {
        Some(ts) => since(now, Some(ts)),
        None => since(now, timestamp(at(obj, "eventTime"))),
    };
    let mut last = match timestamp(event_field(obj, "lastTimestamp", "deprecatedLastTimestamp")) {
        Some(ts) => since(now, Some(ts)),
        None => first.clone(),
    };
    let mut count = event_field(obj, "count", "deprecatedCount").and_then(Value::as_i64).unwrap_or(0);
    if let Some(series) = at(obj, "series") {
        last = since(now, timestamp(at(series, "lastObservedTime")));
        count = int(series, "count");
    } else if count == 0 {
        count = 1;
    }
    let involved = event_field(obj, "involvedObject", "regarding").cloned().unwrap_or(Value::Null);
    let kind = s(&involved, "kind").to_lowercase();
    let target = if s(&involved, "name").is_empty() { kind } else { format!("{kind}/{}", s(&involved, "name")) };
    let source = event_field(obj, "source", "deprecatedSource").cloned().unwrap_or(Value::Null);
    let first_non_empty = |a: &str, b: &str| if a.is_empty() { b.to_string() } else { a.to_string() };
    let reporting_controller =
        event_field(obj, "reportingComponent", "reportingController").and_then(Value::as_str).unwrap_or("");
    let component = first_non_empty(s(&source, "component"), reporting_controller);
    let instance = first_non_empty(s(&source, "host"), s(obj, "reportingInstance"));
    let source_str = if instance.is_empty() { component } else { format!("{component}, {instance}") };
    let message = event_field(obj, "message", "note").and_then(Value::as_str).unwrap_or("").trim();
    vec![
        last.into(),
        s(obj, "type").into(),
        s(obj, "reason").into(),
        target.into(),
        s(&involved, "fieldPath").into(),
        source_str.into(),
        message.into(),
        first.into(),
        count.into(),
        name(obj),
    ]
}

/// `helper.GetAccessModesAsString`.
fn access_modes(modes: &[Value]) -> String {
    let has = |m: &str| modes.iter().any(|v| v.as_str() == Some(m));
    [("ReadWriteOnce", "RWO"), ("ReadOnlyMany", "ROX"), ("ReadWriteMany", "RWX"), ("ReadWriteOncePod", "RWOP")]
        .iter()
        .filter(|(mode, _)| has(mode))
        .map(|(_, short)| *short)
        .collect::<Vec<_>>()
        .join(",")
}

/// The storage class of a PV or PVC: the beta annotation first, then `spec.storageClassName`.
fn storage_class(obj: &Value) -> String {
    annotation(obj, "volume.beta.kubernetes.io/storage-class")
        .unwrap_or_else(|| s(obj, "spec.storageClassName"))
        .to_string()
}

fn unset_or(obj: &Value, path: &str) -> String {
    at(obj, path).and_then(Value::as_str).unwrap_or("<unset>").to_string()
}

fn pv_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let claim = match at(obj, "spec.claimRef") {
        Some(c) => format!("{}/{}", s(c, "namespace"), s(c, "name")),
        None => String::new(),
    };
    let phase = if is_deleting(obj) { "Terminating" } else { s(obj, "status.phase") };
    vec![
        name(obj),
        quantity(at(obj, "spec.capacity.storage")).into(),
        access_modes(arr(obj, "spec.accessModes")).into(),
        s(obj, "spec.persistentVolumeReclaimPolicy").into(),
        phase.into(),
        claim.into(),
        storage_class(obj).into(),
        unset_or(obj, "spec.volumeAttributesClassName").into(),
        s(obj, "status.reason").into(),
        age(obj, now),
        unset_or(obj, "spec.volumeMode").into(),
    ]
}

fn pvc_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let phase = if is_deleting(obj) { "Terminating" } else { s(obj, "status.phase") };
    let volume = s(obj, "spec.volumeName");
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        (quantity(at(obj, "status.capacity.storage")), access_modes(arr(obj, "status.accessModes")))
    };
    vec![
        name(obj),
        phase.into(),
        volume.into(),
        capacity.into(),
        modes.into(),
        storage_class(obj).into(),
        unset_or(obj, "spec.volumeAttributesClassName").into(),
        age(obj, now),
        unset_or(obj, "spec.volumeMode").into(),
    ]
}

/// The v2 `metrics` and `currentMetrics` of an HPA; an autoscaling/v1 object's CPU target is converted.
fn hpa_metrics(obj: &Value) -> (Vec<Value>, Vec<Value>) {
    if let Some(specs) = at(obj, "spec.metrics").and_then(Value::as_array) {
        return (specs.clone(), arr(obj, "status.currentMetrics").to_vec());
    }
    let Some(target) = opt_int(obj, "spec.targetCPUUtilizationPercentage") else {
        return (Vec::new(), Vec::new());
    };
    let spec = json!({"type": "Resource",
                      "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": target}}});
    let statuses = match opt_int(obj, "status.currentCPUUtilizationPercentage") {
        Some(current) => vec![json!({"type": "Resource",
                                     "resource": {"name": "cpu", "current": {"averageUtilization": current}}})],
        None => Vec::new(),
    };
    (vec![spec], statuses)
}

/// `formatHPAMetrics`: at most two targets, `current/target` each.
fn format_hpa_metrics(specs: &[Value], statuses: &[Value]) -> String {
    if specs.is_empty() {
        return "<none>".into();
    }
    let status_of = |i: usize, field: &str| statuses.get(i).and_then(|st| at(st, field));
    let q = |v: Option<&Value>| v.map_or_else(|| "<unknown>".to_string(), |v| quantity(Some(v)));
    let mut list: Vec<String> = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let entry = match s(spec, "type") {
            ty @ ("External" | "Object") => {
                let field = if ty == "External" { "external" } else { "object" };
                let target = at(spec, &format!("{field}.target")).cloned().unwrap_or(Value::Null);
                let status = status_of(i, field);
                if let Some(avg) = at(&target, "averageValue") {
                    let current = q(status.and_then(|st| at(st, "current.averageValue")));
                    format!("{current}/{} (avg)", quantity(Some(avg)))
                } else {
                    let current = match status {
                        Some(st) => at(st, "current.value").map_or_else(|| "<nil>".to_string(), |v| quantity(Some(v))),
                        None => "<unknown>".into(),
                    };
                    format!(
                        "{current}/{}",
                        at(&target, "value").map_or_else(|| "<nil>".to_string(), |v| quantity(Some(v)))
                    )
                }
            }
            "Pods" => {
                let current = match status_of(i, "pods") {
                    Some(st) => quantity(at(st, "current.averageValue")),
                    None => "<unknown>".into(),
                };
                format!("{current}/{}", quantity(at(spec, "pods.target.averageValue")))
            }
            ty @ ("Resource" | "ContainerResource") => {
                let field = if ty == "Resource" { "resource" } else { "containerResource" };
                let resource = s(spec, &format!("{field}.name"));
                let target = at(spec, &format!("{field}.target")).cloned().unwrap_or(Value::Null);
                let status = status_of(i, field);
                if let Some(avg) = at(&target, "averageValue") {
                    let current = match status {
                        Some(st) => quantity(at(st, "current.averageValue")),
                        None => "<unknown>".into(),
                    };
                    format!("{resource}: {current}/{}", quantity(Some(avg)))
                } else {
                    let current = status
                        .and_then(|st| opt_int(st, "current.averageUtilization"))
                        .map_or_else(|| "<unknown>".to_string(), |u| format!("{u}%"));
                    let target = opt_int(&target, "averageUtilization")
                        .map_or_else(|| "<auto>".to_string(), |u| format!("{u}%"));
                    format!("{resource}: {current}/{target}")
                }
            }
            _ => "<unknown type>".into(),
        };
        list.push(entry);
    }
    let max = 2;
    let count = list.len();
    if count > max {
        list.truncate(max);
        format!("{} + {} more...", list.join(", "), count - max)
    } else {
        list.join(", ")
    }
}

fn hpa_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let reference = format!("{}/{}", s(obj, "spec.scaleTargetRef.kind"), s(obj, "spec.scaleTargetRef.name"));
    let (specs, statuses) = hpa_metrics(obj);
    let min_pods = opt_int(obj, "spec.minReplicas").map_or_else(|| "<unset>".to_string(), |m| m.to_string());
    vec![
        name(obj),
        reference.into(),
        format_hpa_metrics(&specs, &statuses).into(),
        min_pods.into(),
        int(obj, "spec.maxReplicas").into(),
        int(obj, "status.currentReplicas").into(),
        age(obj, now),
    ]
}

fn role_binding_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let role = format!("{}/{}", s(obj, "roleRef.kind"), s(obj, "roleRef.name"));
    let (mut users, mut groups, mut sas) = (Vec::new(), Vec::new(), Vec::new());
    for subject in arr(obj, "subjects") {
        match s(subject, "kind") {
            "ServiceAccount" => sas.push(format!("{}/{}", s(subject, "namespace"), s(subject, "name"))),
            "User" => users.push(s(subject, "name").to_string()),
            "Group" => groups.push(s(subject, "name").to_string()),
            _ => {}
        }
    }
    vec![
        name(obj),
        role.into(),
        age(obj, now),
        users.join(", ").into(),
        groups.join(", ").into(),
        sas.join(", ").into(),
    ]
}

fn resource_quota_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let mut resources: Vec<&String> = labels_at(obj, "status.hard").map(|h| h.keys().collect()).unwrap_or_default();
    resources.sort();
    let (mut requests, mut limits) = (Vec::new(), Vec::new());
    for r in resources {
        let used = quantity(at(obj, "status.used").and_then(|u| u.get(r.as_str())));
        let hard = quantity(at(obj, "status.hard").and_then(|h| h.get(r.as_str())));
        let entry = format!("{r}: {used}/{hard}");
        let pieces: Vec<&str> = r.split('.').collect();
        if pieces.len() > 1 && pieces[0] == "limits" { limits.push(entry) } else { requests.push(entry) }
    }
    vec![name(obj), requests.join(", ").into(), limits.join(", ").into(), age(obj, now)]
}

// ---------------------------------------------------------------------------------------------------
// Rows and tables

/// The `PartialObjectMetadata` of an object: its metadata without `managedFields`.
pub fn partial_object_metadata(obj: &Value) -> Value {
    let mut metadata = obj.get("metadata").cloned().unwrap_or_else(|| json!({}));
    if let Some(m) = metadata.as_object_mut() {
        m.remove("managedFields");
    }
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": metadata})
}

/// The full object with `kind` and `apiVersion` first (filled in from the resource when missing).
fn full_object(resource: &ResourceInfo, obj: &Value) -> Value {
    let Some(map) = obj.as_object() else { return obj.clone() };
    let mut out = Map::new();
    out.insert("kind".into(), map.get("kind").cloned().unwrap_or_else(|| resource.kind.into()));
    out.insert("apiVersion".into(), map.get("apiVersion").cloned().unwrap_or_else(|| resource.api_version().into()));
    for (k, v) in map {
        if k != "kind" && k != "apiVersion" {
            out.insert(k.clone(), v.clone());
        }
    }
    Value::Object(out)
}

/// One Table row: `{"cells": [...], "conditions"?: [...], "object"?: ...}`.
pub fn row(resource: &ResourceInfo, obj: &Value, include_object: IncludeObject, now: Timestamp) -> Value {
    let mut row = Map::new();
    row.insert("cells".into(), Value::Array(cells(resource, obj, now)));
    if printer(resource) == Printer::Pod
        && let Some(conditions) = pod_row_conditions(obj)
    {
        row.insert("conditions".into(), conditions);
    }
    match include_object {
        IncludeObject::None => {}
        IncludeObject::Metadata => {
            row.insert("object".into(), partial_object_metadata(obj));
        }
        IncludeObject::Object => {
            row.insert("object".into(), full_object(resource, obj));
        }
    }
    Value::Object(row)
}

/// A whole `meta.k8s.io/v1` Table of `objs` (a list, a single get, or one watch event). `with_columns`
/// false gives `"columnDefinitions": []` (watch events after the first, `?noHeaders`-style). The caller
/// may add `metadata.continue` for paginated lists.
pub fn table(
    resource: &ResourceInfo,
    objs: &[Value],
    include_object: IncludeObject,
    now: Timestamp,
    resource_version: &str,
    with_columns: bool,
) -> Value {
    let rows: Vec<Value> = objs.iter().map(|o| row(resource, o, include_object, now)).collect();
    table_from_rows(resource, rows, resource_version, with_columns)
}

/// A Table of rows made with [`row`]; the rows are moved in, not copied.
pub fn table_from_rows(resource: &ResourceInfo, rows: Vec<Value>, resource_version: &str, with_columns: bool) -> Value {
    let mut metadata = Map::new();
    if !resource_version.is_empty() {
        metadata.insert("resourceVersion".into(), resource_version.into());
    }
    let column_definitions = if with_columns { columns(resource) } else { Vec::new() };
    let mut table = Map::new();
    table.insert("kind".into(), "Table".into());
    table.insert("apiVersion".into(), "meta.k8s.io/v1".into());
    table.insert("metadata".into(), Value::Object(metadata));
    table.insert("columnDefinitions".into(), Value::Array(column_definitions));
    table.insert("rows".into(), Value::Array(rows));
    Value::Object(table)
}

// ---------------------------------------------------------------------------------------------------
// Custom resources: a Name column, then the CRD version's `additionalPrinterColumns` (JSONPath cells).

const NAME_DESCRIPTION: &str = "Name must be unique within a namespace. Is required when creating resources, although some \
resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for \
creation idempotence and configuration definition. Cannot be updated. More info: \
https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";

/// The column definitions of a custom resource version.
pub fn custom_columns(columns: &[crate::crd::PrinterColumn]) -> Vec<Value> {
    let mut out = vec![json!({"name": "Name", "type": "string", "format": "name", "description": NAME_DESCRIPTION, "priority": 0})];
    out.extend(columns.iter().map(|c| {
        json!({"name": c.name, "type": c.type_, "format": c.format, "description": c.description, "priority": c.priority})
    }));
    out
}

/// One cell of a printer column: dates as ages (`5m`), other values as JSON, absent values as null.
fn custom_cell(c: &crate::crd::PrinterColumn, obj: &Value, now: Timestamp) -> Value {
    let found = crate::crd::jsonpath::find(obj, &c.json_path);
    let Some(first) = found.first() else { return Value::Null };
    match c.type_.as_str() {
        "date" => match first.as_str().and_then(|s| s.parse::<Timestamp>().ok()) {
            Some(ts) => Value::String(since(now, Some(ts))),
            None => (*first).clone(),
        },
        "integer" | "number" | "boolean" => (*first).clone(),
        _ if found.len() > 1 => Value::String(
            found.iter().map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())).collect::<Vec<_>>().join(","),
        ),
        _ => match first {
            Value::String(_) => (*first).clone(),
            other => Value::String(other.to_string()),
        },
    }
}

/// One Table row of a custom object.
pub fn custom_row(resource: &ResourceInfo, columns: &[crate::crd::PrinterColumn], obj: &Value, include_object: IncludeObject, now: Timestamp) -> Value {
    let mut cells = vec![name(obj)];
    cells.extend(columns.iter().map(|c| custom_cell(c, obj, now)));
    let mut row = Map::new();
    row.insert("cells".into(), Value::Array(cells));
    match include_object {
        IncludeObject::None => {}
        IncludeObject::Metadata => {
            row.insert("object".into(), partial_object_metadata(obj));
        }
        IncludeObject::Object => {
            row.insert("object".into(), full_object(resource, obj));
        }
    }
    Value::Object(row)
}

/// A Table of custom objects from rows made by [`custom_row`].
pub fn custom_table_from_rows(columns: &[crate::crd::PrinterColumn], rows: Vec<Value>, resource_version: &str, with_columns: bool) -> Value {
    let mut metadata = Map::new();
    if !resource_version.is_empty() {
        metadata.insert("resourceVersion".into(), resource_version.into());
    }
    let mut table = Map::new();
    table.insert("kind".into(), "Table".into());
    table.insert("apiVersion".into(), "meta.k8s.io/v1".into());
    table.insert("metadata".into(), Value::Object(metadata));
    table.insert("columnDefinitions".into(), Value::Array(if with_columns { custom_columns(columns) } else { Vec::new() }));
    table.insert("rows".into(), Value::Array(rows));
    Value::Object(table)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::find;

    fn now() -> Timestamp {
        "2025-06-01T12:00:00Z".parse().unwrap()
    }

    fn res(group: &str, version: &str, plural: &str) -> &'static ResourceInfo {
        find(group, version, plural).unwrap()
    }

    fn column_names(r: &ResourceInfo) -> Vec<String> {
        columns(r).iter().map(|c| c["name"].as_str().unwrap().to_string()).collect()
    }

    #[test]
    fn human_duration_matches_upstream() {
        let d = |secs: i64| human_duration(SignedDuration::from_secs(secs));
        assert_eq!(d(0), "0s");
        assert_eq!(d(-1), "0s");
        assert_eq!(human_duration(SignedDuration::from_millis(-1900)), "0s");
        assert_eq!(d(-2), "<invalid>");
        assert_eq!(d(59), "59s");
        assert_eq!(d(119), "119s");
        assert_eq!(d(120), "2m");
        assert_eq!(d(5 * 60 + 30), "5m30s");
        assert_eq!(d(9 * 60 + 59), "9m59s");
        assert_eq!(d(10 * 60 + 30), "10m");
        assert_eq!(d(179 * 60), "179m");
        assert_eq!(d(3 * 3600), "3h");
        assert_eq!(d(3 * 3600 + 25 * 60), "3h25m");
        assert_eq!(d(8 * 3600 + 59 * 60), "8h");
        assert_eq!(d(47 * 3600), "47h");
        assert_eq!(d(48 * 3600), "2d");
        assert_eq!(d((2 * 24 + 5) * 3600), "2d5h");
        assert_eq!(d(8 * 24 * 3600 + 3600), "8d");
        assert_eq!(d(45 * 24 * 3600), "45d");
        assert_eq!(d(729 * 24 * 3600), "729d");
        assert_eq!(d(730 * 24 * 3600), "2y");
        assert_eq!(d(731 * 24 * 3600), "2y1d");
        assert_eq!(d(8 * 365 * 24 * 3600 + 5 * 24 * 3600), "8y");
        let sd = |secs: i64| short_human_duration(SignedDuration::from_secs(secs));
        assert_eq!(sd(59), "59s");
        assert_eq!(sd(3599), "59m");
        assert_eq!(sd(86399), "23h");
        assert_eq!(sd(400 * 86400), "1y");
        assert_eq!(sd(-5), "<invalid>");
    }

    #[test]
    fn pod_running_with_ip_and_node() {
        let pods = res("", "v1", "pods");
        assert_eq!(
            column_names(pods),
            ["Name", "Ready", "Status", "Restarts", "Age", "IP", "Node", "Nominated Node", "Readiness Gates"]
        );
        let cols = columns(pods);
        assert_eq!(cols[0]["format"], "name");
        assert_eq!(cols[0]["priority"], 0);
        assert_eq!(cols[5]["priority"], 1);
        let pod = json!({
            "metadata": {"name": "nginx", "namespace": "default", "creationTimestamp": "2025-06-01T11:59:58Z"},
            "spec": {"nodeName": "node-1", "containers": [{"name": "nginx", "image": "nginx"}]},
            "status": {"phase": "Running", "podIP": "10.244.0.62", "podIPs": [{"ip": "10.244.0.62"}],
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [{"name": "nginx", "ready": true, "restartCount": 0,
                    "state": {"running": {"startedAt": "2025-06-01T11:59:59Z"}}}]}
        });
        assert_eq!(
            cells(pods, &pod, now()),
            vec![
                json!("nginx"),
                json!("1/1"),
                json!("Running"),
                json!("0"),
                json!("2s"),
                json!("10.244.0.62"),
                json!("node-1"),
                json!("<none>"),
                json!("<none>")
            ]
        );
    }

    #[test]
    fn pod_container_creating_and_crash_loop() {
        let pods = res("", "v1", "pods");
        let pod = json!({
            "metadata": {"name": "web", "creationTimestamp": "2025-06-01T11:55:00Z"},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
            "status": {"phase": "Pending", "containerStatuses": [
                {"name": "a", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}},
                {"name": "b", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}]}
        });
        let c = cells(pods, &pod, now());
        assert_eq!(c[1], "0/2");
        assert_eq!(c[2], "ContainerCreating");
        assert_eq!(c[4], "5m");
        assert_eq!(c[5], "<none>");
        assert_eq!(c[6], "<none>");

        let crash = json!({
            "metadata": {"name": "crash", "creationTimestamp": "2025-06-01T10:00:00Z"},
            "spec": {"containers": [{"name": "a"}]},
            "status": {"phase": "Running", "containerStatuses": [{"name": "a", "ready": false, "restartCount": 5,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": "2025-06-01T11:55:00Z"}}}]}
        });
        let c = cells(pods, &crash, now());
        assert_eq!(c[1], "0/1");
        assert_eq!(c[2], "CrashLoopBackOff");
        assert_eq!(c[3], "5 (5m ago)");
        assert_eq!(c[4], "120m");
    }

    #[test]
    fn pod_terminating_completed_init_and_evicted() {
        let pods = res("", "v1", "pods");
        let terminating = json!({
            "metadata": {"name": "t", "creationTimestamp": "2025-06-01T11:00:00Z",
                         "deletionTimestamp": "2025-06-01T12:00:30Z"},
            "spec": {"containers": [{"name": "a"}]},
            "status": {"phase": "Running", "containerStatuses": [{"name": "a", "ready": true,
                "state": {"running": {}}}]}
        });
        let c = cells(pods, &terminating, now());
        assert_eq!(c[1], "1/1");
        assert_eq!(c[2], "Terminating");

        let completed = json!({
            "metadata": {"name": "job-x", "creationTimestamp": "2025-06-01T11:00:00Z"},
            "spec": {"containers": [{"name": "a"}]},
            "status": {"phase": "Succeeded", "containerStatuses": [{"name": "a", "ready": false,
                "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}
        });
        assert_eq!(cells(pods, &completed, now())[2], "Completed");
        let r = row(pods, &completed, IncludeObject::None, now());
        assert_eq!(r["conditions"][0]["reason"], "Succeeded");
        assert!(r.get("object").is_none());

        let init = json!({
            "metadata": {"name": "i"},
            "spec": {"initContainers": [{"name": "i1"}, {"name": "i2"}], "containers": [{"name": "a"}]},
            "status": {"phase": "Pending", "initContainerStatuses": [
                {"name": "i1", "state": {"terminated": {"exitCode": 0}}},
                {"name": "i2", "state": {"running": {}}}]}
        });
        let c = cells(pods, &init, now());
        assert_eq!(c[2], "Init:1/2");
        assert_eq!(c[4], "<unknown>");

        let init_failed = json!({
            "metadata": {"name": "i"},
            "spec": {"initContainers": [{"name": "i1"}], "containers": [{"name": "a"}]},
            "status": {"phase": "Pending", "initContainerStatuses": [
                {"name": "i1", "restartCount": 2, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}
        });
        let c = cells(pods, &init_failed, now());
        assert_eq!(c[2], "Init:CrashLoopBackOff");
        assert_eq!(c[3], "2");

        let sidecar = json!({
            "metadata": {"name": "s"},
            "spec": {"initContainers": [{"name": "proxy", "restartPolicy": "Always"}], "containers": [{"name": "a"}]},
            "status": {"phase": "Running", "conditions": [{"type": "Initialized", "status": "True"}],
                "initContainerStatuses": [{"name": "proxy", "started": true, "ready": true, "restartCount": 1,
                    "state": {"running": {}}}],
                "containerStatuses": [{"name": "a", "ready": true, "state": {"running": {}}}]}
        });
        let c = cells(pods, &sidecar, now());
        assert_eq!(c[1], "2/2");
        assert_eq!(c[2], "Running");
        assert_eq!(c[3], "1");

        let evicted = json!({
            "metadata": {"name": "e"},
            "spec": {"containers": [{"name": "a"}]},
            "status": {"phase": "Failed", "reason": "Evicted"}
        });
        assert_eq!(cells(pods, &evicted, now())[2], "Evicted");
        assert_eq!(row(pods, &evicted, IncludeObject::None, now())["conditions"][0]["reason"], "Failed");

        let gated = json!({
            "metadata": {"name": "g"},
            "spec": {"containers": [{"name": "a"}], "readinessGates": [{"conditionType": "x/ready"}]},
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
                "reason": "SchedulingGated"}, {"type": "x/ready", "status": "True"}]}
        });
        let c = cells(pods, &gated, now());
        assert_eq!(c[2], "SchedulingGated");
        assert_eq!(c[8], "1/1");
    }

    #[test]
    fn deployment_two_of_three() {
        let deploys = res("apps", "v1", "deployments");
        assert_eq!(
            column_names(deploys),
            ["Name", "Ready", "Up-to-date", "Available", "Age", "Containers", "Images", "Selector"]
        );
        let d = json!({
            "metadata": {"name": "web", "creationTimestamp": "2025-06-01T09:00:00Z"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"},
                                                          {"name": "side", "image": "busybox"}]}}},
            "status": {"replicas": 3, "readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}
        });
        assert_eq!(
            cells(deploys, &d, now()),
            vec![
                json!("web"),
                json!("2/3"),
                json!(3),
                json!(2),
                json!("3h"),
                json!("nginx,side"),
                json!("nginx:1.27,busybox"),
                json!("app=web")
            ]
        );
        let rs = res("apps", "v1", "replicasets");
        let r = json!({"metadata": {"name": "web-abc"}, "spec": {"replicas": 2,
            "selector": {"matchLabels": {"app": "web", "pod-template-hash": "abc"}},
            "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx"}]}}},
            "status": {"replicas": 2, "readyReplicas": 1}});
        let c = cells(rs, &r, now());
        assert_eq!(c[1..4], [json!(2), json!(2), json!(1)]);
        assert_eq!(c[7], "app=web,pod-template-hash=abc");
        let sts = res("apps", "v1", "statefulsets");
        let s = json!({"metadata": {"name": "db"}, "spec": {"replicas": 3}, "status": {"readyReplicas": 1}});
        assert_eq!(cells(sts, &s, now())[1], "1/3");
    }

    #[test]
    fn service_ports_and_external_ip() {
        let svcs = res("", "v1", "services");
        let svc = json!({
            "metadata": {"name": "web", "creationTimestamp": "2025-06-01T11:00:00Z"},
            "spec": {"type": "NodePort", "clusterIP": "10.96.12.34", "clusterIPs": ["10.96.12.34"],
                     "selector": {"app": "web"},
                     "ports": [{"port": 80, "protocol": "TCP", "targetPort": 8080},
                               {"port": 443, "nodePort": 30443, "protocol": "TCP"}]}
        });
        assert_eq!(
            cells(svcs, &svc, now()),
            vec![
                json!("web"),
                json!("NodePort"),
                json!("10.96.12.34"),
                json!("<none>"),
                json!("80/TCP,443:30443/TCP"),
                json!("60m"),
                json!("app=web")
            ]
        );
        let lb = json!({"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer", "clusterIP": "10.0.0.1",
            "ports": [{"port": 53, "protocol": "UDP", "nodePort": 31000}]}});
        let c = cells(svcs, &lb, now());
        assert_eq!(c[3], "<pending>");
        assert_eq!(c[4], "53:31000/UDP");
        assert_eq!(c[6], "<none>");
        let ext = json!({"metadata": {"name": "x"}, "spec": {"type": "ExternalName", "externalName": "example.com"}});
        let c = cells(svcs, &ext, now());
        assert_eq!(c[2], "<none>");
        assert_eq!(c[3], "example.com");
        assert_eq!(c[4], "<none>");
    }

    #[test]
    fn node_ready_with_role() {
        let nodes = res("", "v1", "nodes");
        assert_eq!(
            column_names(nodes),
            [
                "Name",
                "Status",
                "Roles",
                "Age",
                "Version",
                "Internal-IP",
                "External-IP",
                "OS-Image",
                "Kernel-Version",
                "Container-Runtime"
            ]
        );
        let node = json!({
            "metadata": {"name": "node-1", "creationTimestamp": "2025-05-30T12:00:00Z",
                "labels": {"node-role.kubernetes.io/control-plane": "", "kubernetes.io/hostname": "node-1"}},
            "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
                "addresses": [{"type": "InternalIP", "address": "192.168.1.10"}, {"type": "Hostname", "address": "node-1"}],
                "nodeInfo": {"kubeletVersion": "v1.33.1", "osImage": "Debian GNU/Linux 12 (bookworm)",
                    "kernelVersion": "6.1.0", "containerRuntimeVersion": "skiff://0.1.0"}}
        });
        assert_eq!(
            cells(nodes, &node, now()),
            vec![
                json!("node-1"),
                json!("Ready,SchedulingDisabled"),
                json!("control-plane"),
                json!("2d"),
                json!("v1.33.1"),
                json!("192.168.1.10"),
                json!("<none>"),
                json!("Debian GNU/Linux 12 (bookworm)"),
                json!("6.1.0"),
                json!("skiff://0.1.0")
            ]
        );
        let bare = json!({"metadata": {"name": "n2"}});
        let c = cells(nodes, &bare, now());
        assert_eq!(c[1], "Unknown");
        assert_eq!(c[2], "<none>");
        assert_eq!(c[7], "<unknown>");
    }

    #[test]
    fn event_row() {
        let events = res("", "v1", "events");
        assert_eq!(
            column_names(events),
            ["Last Seen", "Type", "Reason", "Object", "Subobject", "Source", "Message", "First Seen", "Count", "Name"]
        );
        let ev = json!({
            "metadata": {"name": "nginx.17f", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "nginx", "fieldPath": "spec.containers{nginx}"},
            "reason": "Pulled", "type": "Normal", "message": "Successfully pulled image \"nginx\"\n",
            "source": {"component": "kubelet", "host": "node-1"},
            "firstTimestamp": "2025-06-01T11:50:00Z", "lastTimestamp": "2025-06-01T11:59:00Z", "count": 3
        });
        assert_eq!(
            cells(events, &ev, now()),
            vec![
                json!("60s"),
                json!("Normal"),
                json!("Pulled"),
                json!("pod/nginx"),
                json!("spec.containers{nginx}"),
                json!("kubelet, node-1"),
                json!("Successfully pulled image \"nginx\""),
                json!("10m"),
                json!(3),
                json!("nginx.17f")
            ]
        );
        // events.k8s.io/v1 shape, no deprecated timestamps: eventTime, count 1, reporting controller.
        let events_v1 = res("events.k8s.io", "v1", "events");
        let ev1 = json!({
            "metadata": {"name": "web.1"}, "eventTime": "2025-06-01T11:58:00.000000Z",
            "regarding": {"kind": "Deployment", "name": "web"}, "reason": "ScalingReplicaSet", "type": "Normal",
            "note": "Scaled up", "reportingController": "deployment-controller"
        });
        let c = cells(events_v1, &ev1, now());
        assert_eq!(c[0], "2m");
        assert_eq!(c[3], "deployment/web");
        assert_eq!(c[5], "deployment-controller");
        assert_eq!(c[6], "Scaled up");
        assert_eq!(c[7], "2m");
        assert_eq!(c[8], 1);
    }

    #[test]
    fn secret_configmap_namespace_and_default() {
        let secrets = res("", "v1", "secrets");
        assert_eq!(column_names(secrets), ["Name", "Type", "Data", "Age"]);
        let secret = json!({"metadata": {"name": "tls", "creationTimestamp": "2025-06-01T11:59:00Z"},
            "type": "kubernetes.io/tls", "data": {"tls.crt": "YQ==", "tls.key": "Yg=="}});
        assert_eq!(
            cells(secrets, &secret, now()),
            vec![json!("tls"), json!("kubernetes.io/tls"), json!(2), json!("60s")]
        );
        let cms = res("", "v1", "configmaps");
        let cm = json!({"metadata": {"name": "c"}, "data": {"a": "1"}, "binaryData": {"b": "AA=="}});
        assert_eq!(cells(cms, &cm, now())[1], 2);
        let ns = res("", "v1", "namespaces");
        let n = json!({"metadata": {"name": "default"}, "status": {"phase": "Active"}});
        assert_eq!(cells(ns, &n, now())[1], "Active");
        let roles = res("rbac.authorization.k8s.io", "v1", "roles");
        assert_eq!(column_names(roles), ["Name", "Created At"]);
        assert_eq!(columns(roles)[1]["type"], "date");
        let role = json!({"metadata": {"name": "r", "creationTimestamp": "2025-06-01T10:00:00.5Z"}});
        assert_eq!(cells(roles, &role, now()), vec![json!("r"), json!("2025-06-01T10:00:00Z")]);
        let sa = res("", "v1", "serviceaccounts");
        assert_eq!(cells(sa, &json!({"metadata": {"name": "default"}}), now())[1], 0);
    }

    #[test]
    fn jobs_cronjobs_and_daemonsets() {
        let jobs = res("batch", "v1", "jobs");
        let job = json!({"metadata": {"name": "pi", "creationTimestamp": "2025-06-01T11:00:00Z"},
            "spec": {"completions": 1, "selector": {"matchLabels": {"job-name": "pi"}},
                     "template": {"spec": {"containers": [{"name": "pi", "image": "perl"}]}}},
            "status": {"succeeded": 1, "startTime": "2025-06-01T11:00:00Z", "completionTime": "2025-06-01T11:00:42Z",
                       "conditions": [{"type": "SuccessCriteriaMet", "status": "True"},
                                      {"type": "Complete", "status": "True"}]}});
        assert_eq!(
            cells(jobs, &job, now()),
            vec![
                json!("pi"),
                json!("Complete"),
                json!("1/1"),
                json!("42s"),
                json!("60m"),
                json!("pi"),
                json!("perl"),
                json!("job-name=pi")
            ]
        );
        let running = json!({"metadata": {"name": "p"}, "spec": {"parallelism": 3},
            "status": {"startTime": "2025-06-01T11:57:00Z"}});
        let c = cells(jobs, &running, now());
        assert_eq!(c[1], "Running");
        assert_eq!(c[2], "0/1 of 3");
        assert_eq!(c[3], "3m");
        let cj = res("batch", "v1", "cronjobs");
        let cron = json!({"metadata": {"name": "hello"}, "spec": {"schedule": "*/1 * * * *", "suspend": false},
            "status": {"active": [{"name": "hello-1"}], "lastScheduleTime": "2025-06-01T11:59:00Z"}});
        let c = cells(cj, &cron, now());
        assert_eq!(c[1..6], [json!("*/1 * * * *"), json!("<none>"), json!("False"), json!(1), json!("60s")]);
        let ds = res("apps", "v1", "daemonsets");
        let d = json!({"metadata": {"name": "agent"}, "spec": {"template": {"spec": {
            "nodeSelector": {"kubernetes.io/os": "linux"}, "containers": [{"name": "a", "image": "i"}]}}},
            "status": {"desiredNumberScheduled": 1, "currentNumberScheduled": 1, "numberReady": 1}});
        let c = cells(ds, &d, now());
        assert_eq!(c[6], "kubernetes.io/os=linux");
        assert_eq!(c[10], "<none>");
    }

    #[test]
    fn other_printers() {
        let ep = res("", "v1", "endpoints");
        let e = json!({"metadata": {"name": "web"}, "subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"},
            {"ip": "fd00::3"}, {"ip": "10.0.0.4"}], "ports": [{"port": 80}]}]});
        assert_eq!(cells(ep, &e, now())[1], "10.0.0.1:80,10.0.0.2:80,[fd00::3]:80 + 1 more...");
        assert_eq!(cells(ep, &json!({"metadata": {"name": "x"}}), now())[1], "<none>");

        let slices = res("discovery.k8s.io", "v1", "endpointslices");
        let sl = json!({"metadata": {"name": "web-x"}, "addressType": "IPv4", "ports": [{"port": 80, "name": "http"}],
            "endpoints": [{"addresses": ["10.0.0.1"]}]});
        assert_eq!(cells(slices, &sl, now())[1..4], [json!("IPv4"), json!("80"), json!("10.0.0.1")]);
        assert_eq!(cells(slices, &json!({"metadata": {"name": "e"}}), now())[2], "<unset>");

        let hpa = res("autoscaling", "v2", "horizontalpodautoscalers");
        let h = json!({"metadata": {"name": "web"}, "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"},
            "minReplicas": 1, "maxReplicas": 5, "metrics": [{"type": "Resource", "resource": {"name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": 80}}}]},
            "status": {"currentReplicas": 2, "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu",
            "current": {"averageUtilization": 12, "averageValue": "12m"}}}]}});
        assert_eq!(
            cells(hpa, &h, now())[1..6],
            [json!("Deployment/web"), json!("cpu: 12%/80%"), json!("1"), json!(5), json!(2)]
        );
        let hpa_v1 = res("autoscaling", "v1", "horizontalpodautoscalers");
        let h1 = json!({"metadata": {"name": "w"}, "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "w"},
            "maxReplicas": 3, "targetCPUUtilizationPercentage": 50}});
        assert_eq!(cells(hpa_v1, &h1, now())[2..4], [json!("cpu: <unknown>/50%"), json!("<unset>")]);

        let rb = res("rbac.authorization.k8s.io", "v1", "rolebindings");
        let b = json!({"metadata": {"name": "b"}, "roleRef": {"kind": "Role", "name": "reader"},
            "subjects": [{"kind": "User", "name": "alice"}, {"kind": "ServiceAccount", "name": "sa", "namespace": "ns"},
                         {"kind": "Group", "name": "devs"}]});
        let c = cells(rb, &b, now());
        assert_eq!(c[1], "Role/reader");
        assert_eq!(c[3..6], [json!("alice"), json!("devs"), json!("ns/sa")]);

        let pvc = res("", "v1", "persistentvolumeclaims");
        let claim = json!({"metadata": {"name": "data"}, "spec": {"volumeName": "pv-1", "storageClassName": "local"},
            "status": {"phase": "Bound", "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"]}});
        assert_eq!(
            cells(pvc, &claim, now())[1..7],
            [json!("Bound"), json!("pv-1"), json!("1Gi"), json!("RWO"), json!("local"), json!("<unset>")]
        );
        let pv = res("", "v1", "persistentvolumes");
        let vol = json!({"metadata": {"name": "pv-1"}, "spec": {"capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteMany", "ReadWriteOnce"], "persistentVolumeReclaimPolicy": "Retain",
            "claimRef": {"namespace": "default", "name": "data"}}, "status": {"phase": "Bound"}});
        assert_eq!(
            cells(pv, &vol, now())[1..7],
            [json!("1Gi"), json!("RWO,RWX"), json!("Retain"), json!("Bound"), json!("default/data"), json!("")]
        );

        let rq = res("", "v1", "resourcequotas");
        let q = json!({"metadata": {"name": "q"}, "status": {"hard": {"pods": "10", "limits.cpu": "2",
            "requests.memory": "1Gi"}, "used": {"pods": "3", "limits.cpu": "500m"}}});
        assert_eq!(
            cells(rq, &q, now())[1..3],
            [json!("pods: 3/10, requests.memory: 0/1Gi"), json!("limits.cpu: 500m/2")]
        );

        let sc = res("storage.k8s.io", "v1", "storageclasses");
        let class = json!({"metadata": {"name": "local", "annotations":
            {"storageclass.kubernetes.io/is-default-class": "true"}}, "provisioner": "skiff.io/local"});
        assert_eq!(
            cells(sc, &class, now())[0..5],
            [json!("local (default)"), json!("skiff.io/local"), json!("Delete"), json!("Immediate"), json!(false)]
        );

        let cr = res("apps", "v1", "controllerrevisions");
        let rev = json!({"metadata": {"name": "web-1", "ownerReferences": [{"apiVersion": "apps/v1",
            "kind": "StatefulSet", "name": "web", "controller": true}]}, "revision": 2});
        assert_eq!(cells(cr, &rev, now())[1..3], [json!("statefulset.apps/web"), json!(2)]);

        let pdb = res("policy", "v1", "poddisruptionbudgets");
        let p =
            json!({"metadata": {"name": "p"}, "spec": {"minAvailable": "50%"}, "status": {"disruptionsAllowed": 1}});
        assert_eq!(cells(pdb, &p, now())[1..4], [json!("50%"), json!("N/A"), json!(1)]);

        let ing = res("networking.k8s.io", "v1", "ingresses");
        let i = json!({"metadata": {"name": "i"}, "spec": {"ingressClassName": "nginx",
            "rules": [{"host": "a.example.com"}, {"host": "b.example.com"}], "tls": [{}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.168.0.9"}]}}});
        assert_eq!(
            cells(ing, &i, now())[1..5],
            [json!("nginx"), json!("a.example.com,b.example.com"), json!("192.168.0.9"), json!("80, 443")]
        );

        let np = res("networking.k8s.io", "v1", "networkpolicies");
        let n = json!({"metadata": {"name": "deny"}, "spec": {"podSelector": {}}});
        assert_eq!(cells(np, &n, now())[1], "<none>");

        let lease = res("coordination.k8s.io", "v1", "leases");
        let l = json!({"metadata": {"name": "node-1"}, "spec": {"holderIdentity": "node-1"}});
        assert_eq!(cells(lease, &l, now())[1], "node-1");

        let pt = res("", "v1", "podtemplates");
        let t = json!({"metadata": {"name": "t"}, "template": {"metadata": {"labels": {"a": "b"}},
            "spec": {"containers": [{"name": "c", "image": "img"}]}}});
        assert_eq!(cells(pt, &t, now()), vec![json!("t"), json!("c"), json!("img"), json!("a=b")]);

        let pc = res("scheduling.k8s.io", "v1", "priorityclasses");
        let c = json!({"metadata": {"name": "high"}, "value": 1000, "preemptionPolicy": "PreemptLowerPriority"});
        assert_eq!(
            cells(pc, &c, now())[1..5].to_vec(),
            vec![json!(1000), json!(false), json!("<unknown>"), json!("PreemptLowerPriority")]
        );

        let csi = res("storage.k8s.io", "v1", "csidrivers");
        let drv = json!({"metadata": {"name": "d"}, "spec": {"volumeLifecycleModes": ["Persistent"]}});
        assert_eq!(
            cells(csi, &drv, now())[1..7],
            [json!(true), json!(false), json!(false), json!("<unset>"), json!(false), json!("Persistent")]
        );
    }

    #[test]
    fn every_resource_has_as_many_cells_as_columns() {
        let obj = json!({"metadata": {"name": "x", "creationTimestamp": "2025-06-01T11:00:00Z"}});
        for r in crate::resources::RESOURCES {
            assert_eq!(columns(r).len(), cells(r, &obj, now()).len(), "{}", r.plural);
        }
    }

    #[test]
    fn whole_table_with_object_modes() {
        let pods = res("", "v1", "pods");
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "nginx", "namespace": "default", "labels": {"run": "nginx"}, "uid": "u-1",
                         "resourceVersion": "1012", "creationTimestamp": "2025-06-01T11:59:58Z",
                         "managedFields": [{"manager": "kubectl"}]},
            "spec": {"containers": [{"name": "nginx", "image": "nginx"}]},
            "status": {"phase": "Pending"}
        });
        let t = table(pods, std::slice::from_ref(&pod), IncludeObject::Metadata, now(), "1025", true);
        assert_eq!(t["kind"], "Table");
        assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
        assert_eq!(t["metadata"], json!({"resourceVersion": "1025"}));
        assert_eq!(t["columnDefinitions"].as_array().unwrap().len(), 9);
        let object = &t["rows"][0]["object"];
        assert_eq!(object["kind"], "PartialObjectMetadata");
        assert_eq!(object["apiVersion"], "meta.k8s.io/v1");
        assert_eq!(object["metadata"]["labels"]["run"], "nginx");
        assert!(object["metadata"].get("managedFields").is_none());
        assert!(t["rows"][0].get("conditions").is_none());

        let bare = json!({"metadata": {"name": "nginx"}, "spec": {}});
        let t = table(pods, &[bare], IncludeObject::Object, now(), "", false);
        assert_eq!(t["metadata"], json!({}));
        assert_eq!(t["columnDefinitions"], json!([]));
        let object = &t["rows"][0]["object"];
        assert_eq!(object["kind"], "Pod");
        assert_eq!(object["apiVersion"], "v1");
        assert_eq!(object["spec"], json!({}));

        let t = table(pods, &[pod], IncludeObject::None, now(), "7", true);
        assert!(t["rows"][0].get("object").is_none());
        assert_eq!(table(pods, &[], IncludeObject::Metadata, now(), "7", true)["rows"], json!([]));

        assert_eq!(IncludeObject::parse(""), Some(IncludeObject::Metadata));
        assert_eq!(IncludeObject::parse("Object"), Some(IncludeObject::Object));
        assert_eq!(IncludeObject::parse("None"), Some(IncludeObject::None));
        assert_eq!(IncludeObject::parse("All"), None);
    }
}
