//! How Kubernetes objects are named in the control plane's store, which has one flat
//! namespace of DNS-label names (rollouts, templates): `NAMESPACE--NAME`, cut to 63 characters
//! with a digest suffix when longer. The Rollout's uid is kept beside it (an annotation of the
//! stored rollout), so a clash of two long names is detected instead of merged.

use sha2::{Digest, Sha256};

/// The annotation on a stored rollout naming the Kubernetes object it came from.
pub const SOURCE_ANNOTATION: &str = "vireo.dev/kubernetes-source";

fn label(raw: &str) -> String {
    if raw.len() <= 63 {
        return raw.to_string();
    }
    let digest = Sha256::digest(raw.as_bytes());
    let suffix: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    let head = raw[..54].trim_end_matches('-');
    format!("{head}-{suffix}")
}

/// A namespaced object's store name.
pub fn namespaced(ns: &str, name: &str) -> String {
    label(&format!("{ns}--{name}"))
}

/// A ClusterAnalysisTemplate's store name.
pub fn cluster(name: &str) -> String {
    label(&format!("cluster--{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_dns_labels() {
        assert_eq!(namespaced("shop", "checkout"), "shop--checkout");
        assert_eq!(cluster("latency"), "cluster--latency");
        let long = namespaced(
            "a-very-long-namespace-name-for-a-team",
            "and-an-even-longer-rollout-name-here",
        );
        assert!(long.len() <= 63, "{long}");
        assert_ne!(
            long,
            namespaced(
                "a-very-long-namespace-name-for-a-team",
                "and-an-even-longer-rollout-name-hera"
            )
        );
    }
}
