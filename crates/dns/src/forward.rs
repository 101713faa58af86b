//! Forwarding of names outside the cluster to the upstream nameservers (UDP, then TCP when the answer
//! is truncated), with a cache of their answers bounded by size and TTL.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::RData;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// Why no upstream answered.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("no upstream nameserver is configured")]
    NoUpstream,
    #[error("no upstream nameserver answered: {0}")]
    Failed(String),
}

#[derive(Hash, PartialEq, Eq)]
struct CacheKey {
    name: String,
    qtype: u16,
    qclass: u16,
}

struct Entry {
    response: Message,
    stored: Instant,
    expires: Instant,
}

/// The upstream nameservers and the cache of their answers.
pub struct Forwarder {
    upstreams: Vec<SocketAddr>,
    timeout: Duration,
    capacity: usize,
    max_ttl: Duration,
    negative_ttl: Duration,
    cache: Mutex<HashMap<CacheKey, Entry>>,
}

impl Forwarder {
    pub fn new(
        upstreams: Vec<SocketAddr>,
        timeout: Duration,
        capacity: usize,
        max_ttl: Duration,
        negative_ttl: Duration,
    ) -> Self {
        Forwarder { upstreams, timeout, capacity, max_ttl, negative_ttl, cache: Mutex::new(HashMap::new()) }
    }

    /// A cached answer to `query`, its TTLs lowered by the time it has been cached and capped by the time left.
    pub fn cached(&self, query: &Query) -> Option<Message> {
        let key = cache_key(query);
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let entry = cache.get(&key)?;
        let now = Instant::now();
        if now >= entry.expires {
            return None;
        }
        let age = now.duration_since(entry.stored).as_secs() as u32;
        // As CoreDNS's cache: no TTL beyond the time left in the cache.
        let left = entry.expires.duration_since(now).as_secs().max(1) as u32;
        let mut response = entry.response.clone();
        for record in response.answers.iter_mut().chain(response.authorities.iter_mut()).chain(response.additionals.iter_mut()) {
            record.ttl = record.ttl.saturating_sub(age).min(left);
        }
        Some(response)
    }

    /// Asks the upstreams in order for `query`; a NOERROR or NXDOMAIN answer is cached.
    pub async fn resolve(&self, query: &Query, recursion_desired: bool) -> Result<Message, ForwardError> {
        if self.upstreams.is_empty() {
            return Err(ForwardError::NoUpstream);
        }
        let mut errors = Vec::new();
        for upstream in &self.upstreams {
            match tokio::time::timeout(self.timeout, exchange(*upstream, query, recursion_desired)).await {
                Ok(Ok(response)) => {
                    self.store(query, &response);
                    return Ok(response);
                }
                Ok(Err(e)) => errors.push(format!("{upstream}: {e}")),
                Err(_) => errors.push(format!("{upstream}: no answer within {:?}", self.timeout)),
            }
        }
        Err(ForwardError::Failed(errors.join("; ")))
    }

    fn store(&self, query: &Query, response: &Message) {
        let Some(ttl) = self.cache_ttl(response) else { return };
        let now = Instant::now();
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= self.capacity {
            cache.retain(|_, e| e.expires > now);
            if cache.len() >= self.capacity {
                // Still full: drop the older half.
                let mut ages: Vec<Instant> = cache.values().map(|e| e.stored).collect();
                ages.sort();
                let cut = ages[ages.len() / 2];
                cache.retain(|_, e| e.stored > cut);
            }
        }
        if self.capacity == 0 {
            return;
        }
        cache.insert(cache_key(query), Entry { response: response.clone(), stored: now, expires: now + ttl });
    }

    /// How long an answer may be cached: its smallest TTL up to the maximum; for NXDOMAIN and empty
    /// answers the SOA's negative TTL up to the negative maximum; other answers are not cached.
    fn cache_ttl(&self, response: &Message) -> Option<Duration> {
        if response.metadata.truncation {
            return None;
        }
        let code = response.metadata.response_code;
        let ttl = if code == ResponseCode::NoError && !response.answers.is_empty() {
            let min = response.answers.iter().map(|r| r.ttl).min()?;
            Duration::from_secs(min.into()).min(self.max_ttl)
        } else if code == ResponseCode::NoError || code == ResponseCode::NXDomain {
            let soa = response.authorities.iter().find_map(|r| match &r.data {
                RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
                _ => None,
            })?;
            Duration::from_secs(soa.into()).min(self.negative_ttl)
        } else {
            return None;
        };
        (!ttl.is_zero()).then_some(ttl)
    }
}

fn cache_key(query: &Query) -> CacheKey {
    CacheKey {
        name: crate::index::key_of(query.name()),
        qtype: query.query_type().into(),
        qclass: query.query_class().into(),
    }
}

/// One question to one upstream: over UDP, again over TCP when the UDP answer is truncated.
async fn exchange(upstream: SocketAddr, query: &Query, recursion_desired: bool) -> std::io::Result<Message> {
    let id: u16 = rand::random();
    let mut request = Message::new(id, MessageType::Query, OpCode::Query);
    request.metadata.recursion_desired = recursion_desired;
    request.add_query(query.clone());
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    request.set_edns(edns);
    let bytes = request.to_vec().map_err(std::io::Error::other)?;

    let local: SocketAddr = if upstream.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(upstream).await?;
    socket.send(&bytes).await?;
    let mut buffer = vec![0u8; 4096];
    let response = loop {
        let n = socket.recv(&mut buffer).await?;
        // Anything that is not the answer to this question (spoofed, late, garbled) is ignored.
        if let Ok(message) = Message::from_vec(&buffer[..n]) {
            if answers(&message, id, query) {
                break message;
            }
        }
    };
    if !response.metadata.truncation {
        return Ok(response);
    }
    let mut stream = TcpStream::connect(upstream).await?;
    let length = u16::try_from(bytes.len()).map_err(std::io::Error::other)?;
    let mut framed = Vec::with_capacity(bytes.len() + 2);
    framed.extend_from_slice(&length.to_be_bytes());
    framed.extend_from_slice(&bytes);
    stream.write_all(&framed).await?;
    loop {
        let length = stream.read_u16().await? as usize;
        let mut buffer = vec![0u8; length];
        stream.read_exact(&mut buffer).await?;
        if let Ok(message) = Message::from_vec(&buffer) {
            if answers(&message, id, query) {
                return Ok(message);
            }
        }
    }
}

fn answers(message: &Message, id: u16, query: &Query) -> bool {
    message.metadata.id == id
        && message.metadata.message_type == MessageType::Response
        && message.queries.len() == 1
        && crate::index::key_of(message.queries[0].name()) == crate::index::key_of(query.name())
        && message.queries[0].query_type() == query.query_type()
}
