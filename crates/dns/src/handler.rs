//! One DNS message in, one answer out: cluster names from the index, cached upstream answers, and
//! which questions must be forwarded. Malformed packets and responses are dropped.

use std::sync::{Arc, RwLock};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};

use crate::forward::Forwarder;
use crate::index::{Answer, Index};

/// The EDNS payload size this server advertises (the DNS flag day 2020 value).
const EDNS_PAYLOAD: u16 = 1232;

/// What to do with a received packet.
pub enum Outcome {
    /// Send these bytes back.
    Reply(Vec<u8>),
    /// Not a question we answer (malformed, a response): send nothing.
    Drop,
    /// A name outside the cluster that is not cached: ask the upstreams (`Handler::forward`).
    Forward(Message),
}

/// The cluster DNS's answering logic over the shared index and the forwarder.
pub struct Handler {
    index: Arc<RwLock<Index>>,
    forwarder: Forwarder,
}

impl Handler {
    pub fn new(index: Arc<RwLock<Index>>, forwarder: Forwarder) -> Self {
        Handler { index, forwarder }
    }

    /// Answers `packet` from the index or the cache; `udp` limits the answer to the client's UDP size.
    pub fn handle(&self, packet: &[u8], udp: bool) -> Outcome {
        let Ok(request) = Message::from_vec(packet) else { return Outcome::Drop };
        if request.metadata.message_type != MessageType::Query {
            return Outcome::Drop;
        }
        if request.metadata.op_code != OpCode::Query {
            return self.reply(&request, error_response(&request, ResponseCode::NotImp), udp);
        }
        if request.queries.len() != 1 {
            return self.reply(&request, error_response(&request, ResponseCode::FormErr), udp);
        }
        let query = &request.queries[0];
        let answer = {
            let index = self.index.read().unwrap_or_else(|e| e.into_inner());
            index.lookup(query.name(), query.query_type())
        };
        let mut response = response_to(&request, true);
        match answer {
            Answer::Found { answers, additionals } => {
                response.answers = answers;
                response.additionals = additionals;
            }
            Answer::NoData(soa) => response.authorities.push(soa),
            Answer::NxDomain(soa) => {
                response.metadata.response_code = ResponseCode::NXDomain;
                response.authorities.push(soa);
            }
            Answer::Outside => match self.forwarder.cached(query) {
                Some(cached) => return self.reply(&request, upstream_response(&request, cached), udp),
                None => return Outcome::Forward(request),
            },
        }
        self.reply(&request, response, udp)
    }

    /// Asks the upstreams for a forwarded question: their answer, or SERVFAIL when none answered.
    pub async fn forward(&self, request: Message, udp: bool) -> Option<Vec<u8>> {
        let query = &request.queries[0];
        let response = match self.forwarder.resolve(query, request.metadata.recursion_desired).await {
            Ok(answer) => upstream_response(&request, answer),
            Err(error) => {
                tracing::debug!(name = %query.name(), %error, "forwarding failed");
                error_response(&request, ResponseCode::ServFail)
            }
        };
        encode(response, udp.then(|| udp_limit(&request)))
    }

    fn reply(&self, request: &Message, response: Message, udp: bool) -> Outcome {
        match encode(response, udp.then(|| udp_limit(request))) {
            Some(bytes) => Outcome::Reply(bytes),
            None => Outcome::Drop,
        }
    }
}

/// The largest UDP answer the client accepts: its EDNS size (at least 512, at most 4096), else 512.
fn udp_limit(request: &Message) -> usize {
    request.edns.as_ref().map(|e| e.max_payload().clamp(512, 4096) as usize).unwrap_or(512)
}

/// An empty answer to `request`: its id, question, RD and CD flags, RA set, EDNS when it had EDNS.
fn response_to(request: &Message, authoritative: bool) -> Message {
    let mut response = Message::new(request.metadata.id, MessageType::Response, request.metadata.op_code);
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    response.metadata.checking_disabled = request.metadata.checking_disabled;
    response.metadata.recursion_available = true;
    response.metadata.authoritative = authoritative;
    response.queries = request.queries.clone();
    if request.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_PAYLOAD);
        response.set_edns(edns);
    }
    response
}

fn error_response(request: &Message, code: ResponseCode) -> Message {
    let mut response = response_to(request, false);
    response.metadata.response_code = code;
    response
}

/// An upstream (or cached) answer re-addressed to the client: its id, its question's spelling, our EDNS.
fn upstream_response(request: &Message, upstream: Message) -> Message {
    let mut response = response_to(request, false);
    response.metadata.response_code = upstream.metadata.response_code;
    response.metadata.authentic_data = upstream.metadata.authentic_data;
    response.answers = upstream.answers;
    response.authorities = upstream.authorities;
    response.additionals = upstream.additionals;
    response
}

/// The wire form; over UDP an answer larger than `limit` loses its additionals, then everything, with TC set.
fn encode(mut response: Message, limit: Option<usize>) -> Option<Vec<u8>> {
    let bytes = response.to_vec().ok()?;
    let Some(limit) = limit else { return Some(bytes) };
    if bytes.len() <= limit {
        return Some(bytes);
    }
    response.additionals.clear();
    if let Ok(bytes) = response.to_vec() {
        if bytes.len() <= limit {
            return Some(bytes);
        }
    }
    response.answers.clear();
    response.authorities.clear();
    response.metadata.truncation = true;
    response.to_vec().ok()
}
