//! NodeUnschedulable: cordoned nodes (`spec.unschedulable`) take only pods that tolerate the
//! `node.kubernetes.io/unschedulable:NoSchedule` taint.

use k8s_openapi::api::core::v1::Taint;

use crate::framework::{CycleState, Plugin, Status};
use crate::node_info::NodeInfo;
use crate::plugins::taint_toleration::tolerates;
use crate::pod_info::PodInfo;

pub const NAME: &str = "NodeUnschedulable";
pub const ERR_REASON: &str = "node(s) were unschedulable";
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

pub struct NodeUnschedulable;

impl Plugin for NodeUnschedulable {
    fn name(&self) -> &'static str {
        NAME
    }

    fn filters(&self) -> bool {
        true
    }

    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Status> {
        if !node.unschedulable {
            return Ok(());
        }
        let taint = Taint { key: TAINT_UNSCHEDULABLE.into(), effect: "NoSchedule".into(), ..Default::default() };
        if pod.tolerations.iter().any(|t| tolerates(t, &taint)) {
            return Ok(());
        }
        Err(Status::unresolvable(NAME, ERR_REASON))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{NodeBuilder, PodBuilder, filter_one};

    #[test]
    fn filter() {
        let cordoned = NodeBuilder::new("n1").unschedulable().build();
        let cases = [
            ("schedulable node", PodBuilder::new("p").build(), NodeBuilder::new("n1").build(), Ok(())),
            ("cordoned node", PodBuilder::new("p").build(), cordoned.clone(), Err(ERR_REASON.to_string())),
            (
                "tolerating pod",
                PodBuilder::new("p").toleration(TAINT_UNSCHEDULABLE, "Exists", "", "NoSchedule").build(),
                cordoned.clone(),
                Ok(()),
            ),
            ("tolerate everything", PodBuilder::new("p").toleration("", "Exists", "", "").build(), cordoned, Ok(())),
        ];
        for (name, pod, node, want) in cases {
            assert_eq!(filter_one(&NodeUnschedulable, &pod, &node, &[]), want, "{name}");
        }
    }
}
