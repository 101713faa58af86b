//! ImageLocality: nodes that already have the pod's images score higher, weighted by image size and by how
//! many nodes have the image (so one node holding it does not attract everything).

use crate::cache::Cache;
use crate::framework::{CycleState, MAX_NODE_SCORE, Plugin};
use crate::node_info::NodeInfo;
use crate::pod_info::PodInfo;

pub const NAME: &str = "ImageLocality";
const MB: i64 = 1024 * 1024;
const MIN_THRESHOLD: i64 = 23 * MB;
const MAX_CONTAINER_THRESHOLD: i64 = 1000 * MB;

/// Upstream's `normalizedImageName`: an image without tag or digest means `:latest`.
pub fn normalized_image_name(name: &str) -> String {
    let last = name.rsplit('/').next().unwrap_or(name);
    if last.contains(':') || last.contains('@') { name.to_string() } else { format!("{name}:latest") }
}

pub struct ImageLocality;

impl Plugin for ImageLocality {
    fn name(&self) -> &'static str {
        NAME
    }

    fn scores(&self) -> bool {
        true
    }

    fn pre_score(&self, state: &mut CycleState, pod: &PodInfo, _cache: &Cache, _nodes: &[&NodeInfo]) -> bool {
        let Some(spec) = pod.pod.spec.as_ref() else { return false };
        let images: Vec<(String, String)> = spec
            .init_containers
            .iter()
            .flatten()
            .chain(spec.containers.iter())
            .map(|c| {
                let img = c.image.clone().unwrap_or_default();
                (normalized_image_name(&img), img)
            })
            .collect();
        state.write(NAME, PodImages(images));
        true
    }

    fn score(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo, cache: &Cache) -> i64 {
        let Some(PodImages(images)) = state.read::<PodImages>(NAME) else { return 0 };
        let total = cache.num_nodes().max(1) as i64;
        let mut sum = 0i64;
        if !node.images.is_empty() {
            for (name, img) in images {
                if let Some(size) = node.images.get(name).or_else(|| node.images.get(img)) {
                    let spread = cache.image_node_count(name).max(cache.image_node_count(img)) as i64;
                    sum += (*size as f64 * (spread as f64 / total as f64)) as i64;
                }
            }
        }
        let max = MAX_CONTAINER_THRESHOLD * images.len().max(1) as i64;
        let sum = sum.clamp(MIN_THRESHOLD, max);
        MAX_NODE_SCORE * (sum - MIN_THRESHOLD) / (max - MIN_THRESHOLD)
    }
}

/// The pod's images, normalized and as written, computed once per cycle.
#[derive(Clone)]
struct PodImages(Vec<(String, String)>);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{NodeBuilder, PodBuilder, score_all};

    #[test]
    fn score() {
        let nodes = [
            NodeBuilder::new("n1").image("nginx:latest", 500 * MB).build(),
            NodeBuilder::new("n2").image("nginx:latest", 500 * MB).image("big:1", 2000 * MB).build(),
            NodeBuilder::new("n3").build(),
        ];
        let pod = PodBuilder::new("p").image("nginx").build();
        // 500MB spread over 2 of 3 nodes: 333MB -> (333 - 23) * 100 / (1000 - 23) = 31
        assert_eq!(score_all(&ImageLocality, &pod, &nodes, &[]), vec![31, 31, 0]);
        let big = PodBuilder::new("p").image("big:1").build();
        // 2000MB on one of three nodes: 666MB -> 65
        assert_eq!(score_all(&ImageLocality, &big, &nodes, &[]), vec![0, 65, 0]);
        assert_eq!(normalized_image_name("registry:5000/app"), "registry:5000/app:latest");
        assert_eq!(normalized_image_name("app@sha256:abc"), "app@sha256:abc");
    }
}
