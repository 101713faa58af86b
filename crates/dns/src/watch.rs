//! Services and EndpointSlices through kube-runtime reflectors into the record index: each change
//! recomputes the records of the one Service it concerns; a (re)list recomputes them all.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tokio_util::sync::CancellationToken;

use crate::index::Index;
use crate::records::{SERVICE_NAME_LABEL, service_records};

enum Change {
    Service(watcher::Event<Service>),
    Slice(watcher::Event<EndpointSlice>),
}

/// Keeps `index` in step with the cluster's Services and EndpointSlices until `shutdown`. Watch errors
/// are retried with kube-runtime's default back-off.
pub async fn watch(client: Client, index: Arc<RwLock<Index>>, ttl: u32, shutdown: CancellationToken) {
    let (services, service_writer) = reflector::store::<Service>();
    let (slices, slice_writer) = reflector::store::<EndpointSlice>();
    let service_events = reflector::reflector(
        service_writer,
        watcher(Api::<Service>::all(client.clone()), watcher::Config::default()),
    )
    .default_backoff()
    .map(|e| e.map(Change::Service))
    .boxed();
    let slice_events = reflector::reflector(
        slice_writer,
        watcher(Api::<EndpointSlice>::all(client), watcher::Config::default()),
    )
    .default_backoff()
    .map(|e| e.map(Change::Slice))
    .boxed();
    let mut events = stream::select(service_events, slice_events);
    let mut state = State { index, services, slices, by_service: HashMap::new(), slice_service: HashMap::new(), ttl };
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => return,
            event = events.next() => event,
        };
        match event {
            None => return,
            Some(Err(error)) => tracing::warn!(%error, "watching Services or EndpointSlices failed; retrying"),
            Some(Ok(Change::Service(event))) => state.service_event(event),
            Some(Ok(Change::Slice(event))) => state.slice_event(event),
        }
    }
}

/// `namespace/name` of a Service.
type ServiceKey = String;

struct State {
    index: Arc<RwLock<Index>>,
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    /// The slices (by name) labelled with each Service.
    by_service: HashMap<ServiceKey, BTreeSet<String>>,
    /// The Service each slice (`namespace/name`) was counted for.
    slice_service: HashMap<String, ServiceKey>,
    ttl: u32,
}

impl State {
    fn service_event(&mut self, event: watcher::Event<Service>) {
        match event {
            watcher::Event::Apply(service) | watcher::Event::Delete(service) => {
                let key = format!("{}/{}", service.namespace().unwrap_or_default(), service.name_any());
                self.update(&key);
            }
            // The store swaps in the listed objects at InitDone; recompute everything then.
            watcher::Event::Init | watcher::Event::InitApply(_) => {}
            watcher::Event::InitDone => self.resync(),
        }
    }

    fn slice_event(&mut self, event: watcher::Event<EndpointSlice>) {
        match event {
            watcher::Event::Apply(slice) => {
                let old = self.unlink(&slice);
                let new = self.link(&slice);
                for key in old.into_iter().chain(new).collect::<BTreeSet<_>>() {
                    self.update(&key);
                }
            }
            watcher::Event::Delete(slice) => {
                if let Some(key) = self.unlink(&slice) {
                    self.update(&key);
                }
            }
            watcher::Event::Init | watcher::Event::InitApply(_) => {}
            watcher::Event::InitDone => {
                self.by_service.clear();
                self.slice_service.clear();
                for slice in self.slices.state() {
                    self.link(&slice);
                }
                self.resync();
            }
        }
    }

    /// Counts `slice` for the Service its label names; that Service's key.
    fn link(&mut self, slice: &EndpointSlice) -> Option<ServiceKey> {
        let namespace = slice.namespace()?;
        let service = slice.labels().get(SERVICE_NAME_LABEL)?;
        let key = format!("{namespace}/{service}");
        self.by_service.entry(key.clone()).or_default().insert(slice.name_any());
        self.slice_service.insert(format!("{namespace}/{}", slice.name_any()), key.clone());
        Some(key)
    }

    /// Forgets `slice`; the key of the Service it was counted for.
    fn unlink(&mut self, slice: &EndpointSlice) -> Option<ServiceKey> {
        let namespace = slice.namespace().unwrap_or_default();
        let key = self.slice_service.remove(&format!("{namespace}/{}", slice.name_any()))?;
        if let Some(names) = self.by_service.get_mut(&key) {
            names.remove(&slice.name_any());
            if names.is_empty() {
                self.by_service.remove(&key);
            }
        }
        Some(key)
    }

    /// Recomputes the records of the Service `key` from the stores.
    fn update(&self, key: &str) {
        let Some((namespace, name)) = key.split_once('/') else { return };
        let service = self.services.get(&ObjectRef::new(name).within(namespace));
        let mut index = self.index.write().unwrap_or_else(|e| e.into_inner());
        match service {
            None => index.remove_service(key),
            Some(service) => {
                let slices: Vec<Arc<EndpointSlice>> = self
                    .by_service
                    .get(key)
                    .into_iter()
                    .flatten()
                    .filter_map(|slice| self.slices.get(&ObjectRef::new(slice).within(namespace)))
                    .collect();
                let slices: Vec<&EndpointSlice> = slices.iter().map(|s| &**s).collect();
                let records = service_records(&service, &slices, index.domain(), self.ttl);
                index.set_service(key, records);
            }
        }
    }

    /// Recomputes every Service and drops the ones that are gone.
    fn resync(&self) {
        let services = self.services.state();
        let keys: BTreeSet<String> = services
            .iter()
            .map(|s| format!("{}/{}", s.namespace().unwrap_or_default(), s.name_any()))
            .collect();
        let gone: Vec<String> = {
            let index = self.index.read().unwrap_or_else(|e| e.into_inner());
            index.services().filter(|k| !keys.contains(*k)).map(str::to_string).collect()
        };
        for key in gone.iter().chain(&keys) {
            self.update(key);
        }
    }
}
