//! Two candidates for one Lease against the in-process API server.

use std::time::Duration;

use skiff_leaderelection::{LeaderElectionConfig, LeaderElector, run_while_leader};
use tokio_util::sync::CancellationToken;

fn config(identity: &str) -> LeaderElectionConfig {
    LeaderElectionConfig {
        lease_duration: Duration::from_millis(600),
        renew_deadline: Duration::from_millis(400),
        retry_period: Duration::from_millis(100),
        identity: Some(identity.into()),
        ..LeaderElectionConfig::for_lease("test-component")
    }
}

#[tokio::test]
async fn one_holder_at_a_time_and_release_hands_over() {
    let server = skiff_apiserver::testing::start_admin().await;
    let client = kube::Client::new(server.router.clone(), "default");
    let mut a = LeaderElector::new(client.clone(), config("a"));
    let mut b = LeaderElector::new(client.clone(), config("b"));
    assert!(a.try_acquire_or_renew().await.unwrap(), "the first candidate takes the free lease");
    assert!(!b.try_acquire_or_renew().await.unwrap(), "the second waits while the lease is fresh");
    assert!(a.try_acquire_or_renew().await.unwrap(), "the holder renews");
    a.release().await;
    assert!(b.try_acquire_or_renew().await.unwrap(), "a released lease is taken at once");
    assert!(!a.try_acquire_or_renew().await.unwrap(), "and the old holder is now refused");
    // A holder that stops renewing loses the lease once the others have seen it unchanged for its duration.
    let mut seen = false;
    for _ in 0..40 {
        if a.try_acquire_or_renew().await.unwrap() {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen, "an expired lease is taken over");
}

#[tokio::test]
async fn the_component_runs_only_while_leading() {
    let server = skiff_apiserver::testing::start_admin().await;
    let client = kube::Client::new(server.router.clone(), "default");
    let running = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let shutdown = CancellationToken::new();
    let mut tasks = Vec::new();
    for id in ["x", "y"] {
        let running = running.clone();
        tasks.push(tokio::spawn(run_while_leader(client.clone(), config(id), "test", shutdown.clone(), move |token, _| {
            let running = running.clone();
            async move {
                running.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                token.cancelled().await;
                running.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            }
        })));
    }
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(running.load(std::sync::atomic::Ordering::SeqCst) <= 1, "never two leaders at once");
    }
    assert_eq!(running.load(std::sync::atomic::Ordering::SeqCst), 1, "one leader runs the component");
    shutdown.cancel();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(running.load(std::sync::atomic::Ordering::SeqCst), 0);
}
