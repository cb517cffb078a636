//! A DNS server on loopback for the proxy's own lookups: A records the
//! test sets (with their TTL) and changes, NXDOMAIN for other names, and a
//! count of the queries each name got.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};
use tokio::net::UdpSocket;

#[derive(Default)]
struct Zone {
    records: HashMap<String, (Vec<Ipv4Addr>, u32)>,
    queries: HashMap<String, u64>,
}

#[derive(Clone)]
pub struct Dns {
    pub addr: SocketAddr,
    zone: Arc<Mutex<Zone>>,
}

impl Dns {
    pub async fn start() -> Dns {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind udp");
        let addr = socket.local_addr().expect("address");
        let zone = Arc::new(Mutex::new(Zone::default()));
        let answers = zone.clone();
        tokio::spawn(async move {
            let mut buffer = vec![0u8; 4096];
            loop {
                let Ok((n, from)) = socket.recv_from(&mut buffer).await else {
                    return;
                };
                let Ok(query) = Message::from_vec(&buffer[..n]) else {
                    continue;
                };
                let answer = answer(&answers, &query);
                if let Ok(bytes) = answer.to_vec() {
                    let _ = socket.send_to(&bytes, from).await;
                }
            }
        });
        Dns { addr, zone }
    }

    /// `name` resolves to `addresses` for `ttl` seconds.
    pub fn set(&self, name: &str, addresses: &[&str], ttl: u32) {
        let addresses = addresses.iter().map(|a| a.parse().expect("IPv4")).collect();
        let mut zone = self.zone.lock().expect("zone");
        zone.records.insert(name.to_owned(), (addresses, ttl));
    }

    /// The A queries `name` got.
    pub fn queries(&self, name: &str) -> u64 {
        let zone = self.zone.lock().expect("zone");
        zone.queries.get(name).copied().unwrap_or(0)
    }
}

fn answer(zone: &Mutex<Zone>, query: &Message) -> Message {
    let mut answer = Message::response(query.metadata.id, query.metadata.op_code);
    answer.metadata.message_type = MessageType::Response;
    answer.metadata.recursion_desired = query.metadata.recursion_desired;
    answer.metadata.recursion_available = true;
    let mut zone = zone.lock().expect("zone");
    for question in &query.queries {
        answer.add_query(question.clone());
        let name = question.name().to_lowercase().to_ascii();
        let name = name.trim_end_matches('.').to_owned();
        let Some((addresses, ttl)) = zone.records.get(&name).cloned() else {
            answer.metadata.response_code = ResponseCode::NXDomain;
            continue;
        };
        if question.query_type() != RecordType::A {
            continue;
        }
        *zone.queries.entry(name).or_default() += 1;
        for ip in addresses {
            answer.add_answer(Record::from_rdata(
                question.name().clone(),
                ttl,
                RData::A(A(ip)),
            ));
        }
    }
    answer
}
