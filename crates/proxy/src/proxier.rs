//! The sync loop: reflectors for Services and EndpointSlices, a debounced sync that applies the smallest nft
//! batch, a periodic repair check, and deleting the table at shutdown.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::Notify;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::model::Model;
use crate::nft::Nft;
use crate::render::{expected_fingerprint, render_diff, render_full, table_intact};
use crate::{Error, ProxyConfig};

/// How long to wait before retrying a failed sync.
const RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// Watches Services and EndpointSlices and keeps the table in line with them until `shutdown`.
pub async fn run(config: ProxyConfig, client: kube::Client, shutdown: CancellationToken) -> Result<(), Error> {
    let nft = Nft::new(config.nft.clone());
    if config.nft.is_empty() {
        return Err(Error::EmptyNftCommand);
    }
    let changed = Arc::new(Notify::new());
    let (services, svc_writer) = reflector::store::<Service>();
    let (slices, slice_writer) = reflector::store::<EndpointSlice>();
    let watches = CancellationToken::new();
    spawn_watch(
        reflector::reflector(svc_writer, watcher(Api::<Service>::all(client.clone()), watcher::Config::default()).default_backoff()),
        "Services",
        changed.clone(),
        watches.clone(),
    );
    spawn_watch(
        reflector::reflector(
            slice_writer,
            watcher(Api::<EndpointSlice>::all(client), watcher::Config::default()).default_backoff(),
        ),
        "EndpointSlices",
        changed.clone(),
        watches.clone(),
    );
    let _stop_watches = watches.drop_guard();

    tokio::select! {
        _ = shutdown.cancelled() => return Ok(()),
        r = async { tokio::join!(services.wait_until_ready(), slices.wait_until_ready()) } => {
            if r.0.is_err() || r.1.is_err() {
                return Err(Error::WatchEnded);
            }
        }
    }
    tracing::info!(table = %config.table, "service proxy: caches synced, loading the nftables table");

    let mut proxier = Proxier { config: &config, nft, current: None, retry_at: None };
    proxier.sync(&services, &slices).await;
    let mut repair = tokio::time::interval_at(Instant::now() + config.repair_interval, config.repair_interval);
    repair.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let retry = proxier.retry_at;
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = changed.notified() => {
                // Debounce: let a burst of changes land, then sync once.
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(config.min_sync_interval) => {}
                }
                proxier.sync(&services, &slices).await;
            }
            _ = async { tokio::time::sleep_until(retry.expect("checked")).await }, if retry.is_some() => {
                proxier.sync(&services, &slices).await;
            }
            _ = repair.tick() => proxier.repair(&services, &slices).await,
        }
    }
    let table = &config.table;
    match proxier.nft.apply(&format!("table ip {table} {{}}\ndelete table ip {table}\n")).await {
        Ok(()) => tracing::info!(%table, "service proxy stopped, table deleted"),
        Err(e) => {
            tracing::warn!(%table, error = %e, "service proxy: could not delete the table at shutdown");
            return Err(e);
        }
    }
    Ok(())
}

/// Drives one reflector stream, waking the sync loop on every event.
fn spawn_watch<S, K>(stream: S, what: &'static str, changed: Arc<Notify>, stop: CancellationToken)
where
    S: futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
    K: Send + 'static,
{
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                ev = stream.next() => match ev {
                    Some(Ok(_)) => changed.notify_one(),
                    Some(Err(e)) => tracing::warn!(error = %e, "service proxy: watching {what} failed, retrying"),
                    None => return,
                },
            }
        }
    });
}

struct Proxier<'a> {
    config: &'a ProxyConfig,
    nft: Nft,
    /// The model whose rendering is in the kernel; None when unknown (first sync, after a failure).
    current: Option<Model>,
    retry_at: Option<Instant>,
}

impl Proxier<'_> {
    fn model(&self, services: &Store<Service>, slices: &Store<EndpointSlice>) -> Model {
        let svcs = services.state();
        let sls = slices.state();
        Model::build(
            self.config.settings(),
            &self.config.node_name,
            svcs.iter().map(|s| s.as_ref()),
            sls.iter().map(|s| s.as_ref()),
        )
    }

    async fn sync(&mut self, services: &Store<Service>, slices: &Store<EndpointSlice>) {
        let model = self.model(services, slices);
        self.apply(model).await;
    }

    async fn apply(&mut self, model: Model) {
        let script = match &self.current {
            Some(current) if current.settings == model.settings => {
                let diff = render_diff(current, &model);
                if diff.is_empty() {
                    self.retry_at = None;
                    return;
                }
                diff
            }
            _ => render_full(&model),
        };
        let full = self.current.is_none();
        match self.nft.apply(&script).await {
            Ok(()) => {
                tracing::debug!(frontends = model.frontends.len(), full, "service proxy: table synced");
                self.current = Some(model);
                self.retry_at = None;
            }
            Err(e) => {
                tracing::warn!(error = %e, full, "service proxy: sync failed, retrying with a full rendering");
                self.current = None;
                self.retry_at = Some(Instant::now() + RETRY_AFTER);
            }
        }
    }

    /// Checks that the table still holds what was loaded; renders it whole again when not.
    async fn repair(&mut self, services: &Store<Service>, slices: &Store<EndpointSlice>) {
        let Some(current) = &self.current else {
            self.sync(services, slices).await;
            return;
        };
        let expected = expected_fingerprint(current);
        match self.nft.fingerprint(&self.config.table).await {
            Ok(Some(actual)) if table_intact(&expected, &actual) => {}
            Ok(found) => {
                tracing::warn!(
                    table = %self.config.table,
                    missing = found.is_none(),
                    "service proxy: the nftables table was changed from outside, rendering it again"
                );
                self.current = None;
                self.sync(services, slices).await;
            }
            Err(e) => tracing::warn!(error = %e, "service proxy: could not read the table back for the repair check"),
        }
    }
}
