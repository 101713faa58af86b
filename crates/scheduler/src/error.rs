//! The scheduler's errors.

/// Why the scheduler stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("leader election on lease {lease}: {source}")]
    LeaderElection { lease: String, source: kube::Error },
}
