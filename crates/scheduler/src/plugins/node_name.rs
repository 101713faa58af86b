//! NodeName: a pod that names a node (`spec.nodeName`) fits only there.

use crate::framework::{Plugin, Status, CycleState};
use crate::node_info::NodeInfo;
use crate::pod_info::PodInfo;

pub const NAME: &str = "NodeName";
pub const ERR_REASON: &str = "node(s) didn't match the requested node name";

pub struct NodeName;

impl Plugin for NodeName {
    fn name(&self) -> &'static str {
        NAME
    }

    fn filters(&self) -> bool {
        true
    }

    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Status> {
        match pod.node_name() {
            Some(n) if n != node.name => Err(Status::unresolvable(NAME, ERR_REASON)),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{NodeBuilder, PodBuilder, filter_one};

    #[test]
    fn filter() {
        let cases = [
            ("no node name", PodBuilder::new("p").build(), Ok(())),
            ("same node", PodBuilder::new("p").node("n1").build(), Ok(())),
            ("other node", PodBuilder::new("p").node("n2").build(), Err(ERR_REASON.to_string())),
        ];
        for (name, pod, want) in cases {
            assert_eq!(filter_one(&NodeName, &pod, &NodeBuilder::new("n1").build(), &[]), want, "{name}");
        }
    }
}
