//! NodePorts: a pod's host ports must be free on the node (same protocol and port on an overlapping
//! address conflict).

use crate::cache::Cache;
use crate::framework::{CycleState, Plugin, PreFilterResult, Status};
use crate::node_info::NodeInfo;
use crate::pod_info::PodInfo;

pub const NAME: &str = "NodePorts";
pub const ERR_REASON: &str = "node(s) didn't have free ports for the requested pod ports";

pub struct NodePorts;

impl Plugin for NodePorts {
    fn name(&self) -> &'static str {
        NAME
    }

    fn filters(&self) -> bool {
        true
    }

    fn pre_filter(&self, _state: &mut CycleState, pod: &PodInfo, _cache: &Cache) -> Result<PreFilterResult, Status> {
        Ok(if pod.host_ports.is_empty() { PreFilterResult::Skip } else { PreFilterResult::Continue })
    }

    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Status> {
        let conflict = pod.host_ports.iter().any(|want| node.used_ports.iter().any(|used| used.conflicts(want)));
        if conflict { Err(Status::unschedulable(NAME, ERR_REASON)) } else { Ok(()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{NodeBuilder, PodBuilder, filter_one};

    #[test]
    fn filter() {
        let node = NodeBuilder::new("n").build();
        let used = vec![PodBuilder::new("e").host_port(8080).node("n").build()];
        let cases = [
            ("no ports", PodBuilder::new("p").build(), Ok(())),
            ("free port", PodBuilder::new("p").host_port(9090).build(), Ok(())),
            ("taken port", PodBuilder::new("p").host_port(8080).build(), Err(ERR_REASON.to_string())),
        ];
        for (name, pod, want) in cases {
            assert_eq!(filter_one(&NodePorts, &pod, &node, &used), want, "{name}");
        }
    }
}
