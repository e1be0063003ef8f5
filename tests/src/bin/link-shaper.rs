//! A network link in user space, for benchmarks over something like a real
//! access link (no kernel netem here): a TCP proxy whose every byte crosses
//! one shared link with a bandwidth and a one-way delay per direction.
//!
//! ```text
//! link-shaper --rtt-ms 40 --up-mbit 50 --down-mbit 50
//!             --route api=127.0.0.1:0=127.0.0.1:8080      NAME=LISTEN=TARGET, as many as needed
//!             --route store=127.0.0.2:3900=127.0.0.1:3900
//!             [--burst-bytes 1514]   depth of each direction's token bucket
//!             [--queue-ms 40]        how far ahead of the wire a connection may queue bytes
//!             [--stats 127.0.0.1:0]  GET it for the counters as JSON
//! ```
//!
//! The model, per direction ("up" is client to server, "down" the answers):
//!
//! - **Bandwidth**: one token bucket per direction shared by every connection
//!   of every route, as one access link is shared by everything a browser
//!   opens: a chunk of n bytes read at t takes n tokens (the bucket may go into
//!   debt, which is the link's queue) and has left the link once the debt is
//!   paid back at the link's rate.
//! - **Latency**: each chunk is delivered one-way delay (RTT / 2) after it has
//!   left the link; chunks wait in a queue with their release times.
//! - **Connection set-up**: a new connection's first request bytes reach the
//!   server no earlier than 1.5 RTT after the connect (SYN, SYN-ACK, then the
//!   data), as over TCP without TLS.
//! - **Back-pressure**: a connection reads its next chunk only once its last
//!   one is within `queue-ms` of leaving the link, so a sender is held back
//!   (by TCP on loopback) instead of the proxy buffering a whole file.
//!
//! It prints `listening NAME ADDR TARGET` per route and `stats ADDR` once ready.
//! The stats count, per route, connections, HTTP/1.1 request heads (by
//! method; bodies skipped by Content-Length) and bytes each way.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

const CHUNK: usize = 16 * 1024;

/// One direction of the link: a token bucket in front of a fixed delay.
/// Times are offsets from the shaper's start, so the arithmetic is testable
/// without a clock.
#[derive(Debug, Clone)]
struct Link {
    /// Bytes per second; 0 for no limit.
    rate: f64,
    /// Bucket depth, bytes.
    burst: f64,
    delay: Duration,
    /// Tokens at `at`; negative is bytes still queued for the wire.
    tokens: f64,
    at: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Slot {
    /// When the chunk's last byte has left the link.
    depart: Duration,
    /// When it is handed to the far end.
    release: Duration,
}

impl Link {
    fn new(mbit: f64, burst: usize, delay: Duration) -> Self {
        Link { rate: mbit * 1e6 / 8.0, burst: burst as f64, delay, tokens: burst as f64, at: Duration::ZERO }
    }

    /// A chunk of `bytes` read at `now` (times before the last call count as
    /// the last call: readers on several threads race to the lock).
    fn schedule(&mut self, now: Duration, bytes: usize) -> Slot {
        if self.rate <= 0.0 {
            return Slot { depart: now, release: now + self.delay };
        }
        let now = now.max(self.at);
        self.tokens = (self.tokens + (now - self.at).as_secs_f64() * self.rate).min(self.burst);
        self.at = now;
        self.tokens -= bytes as f64;
        let wait = if self.tokens >= 0.0 { 0.0 } else { -self.tokens / self.rate };
        let depart = now + Duration::from_secs_f64(wait);
        Slot { depart, release: depart + self.delay }
    }
}

/// Counts the HTTP/1.1 requests on one connection's client-to-server bytes:
/// a head up to `\r\n\r\n`, then Content-Length bytes of body.
#[derive(Default)]
struct RequestCounter {
    head: Vec<u8>,
    body_left: u64,
    /// A chunked or otherwise unframed body: no more counting on this connection.
    lost: bool,
}

impl RequestCounter {
    /// Feeds bytes; returns the methods of the request heads completed in them.
    fn feed(&mut self, mut data: &[u8]) -> Vec<String> {
        let mut methods = Vec::new();
        while !data.is_empty() && !self.lost {
            if self.body_left > 0 {
                let take = (self.body_left as usize).min(data.len());
                self.body_left -= take as u64;
                data = &data[take..];
                continue;
            }
            let Some(end) = find_head_end(&self.head, data) else {
                self.head.extend_from_slice(data);
                if self.head.len() > 256 * 1024 {
                    self.lost = true;
                }
                break;
            };
            self.head.extend_from_slice(&data[..end]);
            data = &data[end..];
            let head = String::from_utf8_lossy(&self.head).to_ascii_lowercase();
            self.head.clear();
            let head = head.trim_start_matches("\r\n"); // tolerated between requests
            methods.push(head.split(' ').next().unwrap_or("").to_ascii_uppercase());
            let mut length = 0;
            for line in head.lines() {
                if let Some(v) = line.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                } else if line.starts_with("transfer-encoding:") && line.contains("chunked") {
                    self.lost = true;
                }
            }
            self.body_left = length;
        }
        methods
    }
}

/// Where the head ends (just past `\r\n\r\n`) in `data`, given what came before.
fn find_head_end(before: &[u8], data: &[u8]) -> Option<usize> {
    let tail_len = before.len().min(3);
    let mut window: Vec<u8> = before[before.len() - tail_len..].to_vec();
    window.extend_from_slice(data);
    window.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4 - tail_len)
}

#[derive(Default)]
struct RouteStats {
    connections: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
    unframed_connections: AtomicU64,
    methods: Mutex<BTreeMap<String, u64>>,
}

struct Route {
    name: String,
    target: String,
    stats: RouteStats,
}

struct Shared {
    epoch: Instant,
    up: Mutex<Link>,
    down: Mutex<Link>,
    rtt: Duration,
    queue: Duration,
}

impl Shared {
    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }
}

struct Options {
    rtt_ms: f64,
    up_mbit: f64,
    down_mbit: f64,
    burst: usize,
    queue_ms: Option<f64>,
    routes: Vec<(String, String, String)>,
    stats: String,
}

fn parse() -> Options {
    let mut o = Options {
        rtt_ms: 0.0,
        up_mbit: 0.0,
        down_mbit: 0.0,
        burst: 1514,
        queue_ms: None,
        routes: Vec::new(),
        stats: "127.0.0.1:0".into(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--rtt-ms" => o.rtt_ms = value().parse().expect("a number"),
            "--up-mbit" => o.up_mbit = value().parse().expect("a number"),
            "--down-mbit" => o.down_mbit = value().parse().expect("a number"),
            "--burst-bytes" => o.burst = value().parse().expect("a number"),
            "--queue-ms" => o.queue_ms = Some(value().parse().expect("a number")),
            "--stats" => o.stats = value(),
            "--route" => {
                let v = value();
                let parts: Vec<&str> = v.splitn(3, '=').collect();
                assert!(parts.len() == 3, "--route NAME=LISTEN=TARGET, got {v}");
                o.routes.push((parts[0].into(), parts[1].into(), parts[2].into()));
            }
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(!o.routes.is_empty(), "at least one --route NAME=LISTEN=TARGET");
    o
}

#[tokio::main]
async fn main() -> io::Result<()> {
    let o = parse();
    let one_way = Duration::from_secs_f64(o.rtt_ms / 2000.0);
    let shared = Arc::new(Shared {
        epoch: Instant::now(),
        up: Mutex::new(Link::new(o.up_mbit, o.burst, one_way)),
        down: Mutex::new(Link::new(o.down_mbit, o.burst, one_way)),
        rtt: one_way * 2,
        // One bandwidth-delay product of queue by default, at least 5 ms.
        queue: Duration::from_secs_f64(o.queue_ms.unwrap_or(o.rtt_ms.max(5.0)) / 1000.0),
    });
    let mut routes = Vec::new();
    for (name, listen, target) in &o.routes {
        let listener = TcpListener::bind(listen).await?;
        println!("listening {name} {} {target}", listener.local_addr()?);
        let route = Arc::new(Route { name: name.clone(), target: target.clone(), stats: RouteStats::default() });
        routes.push(route.clone());
        let shared = shared.clone();
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else { continue };
                let (route, shared) = (route.clone(), shared.clone());
                tokio::spawn(async move {
                    if let Err(e) = handle(client, &route, &shared).await {
                        eprintln!("link-shaper: {}: {e}", route.name);
                    }
                });
            }
        });
    }
    let stats = TcpListener::bind(&o.stats).await?;
    println!("stats {}", stats.local_addr()?);
    loop {
        let (mut conn, _) = stats.accept().await?;
        let body = stats_json(&routes, &shared).to_string();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf).await;
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(answer.as_bytes()).await;
            let _ = conn.shutdown().await;
        });
    }
}

fn stats_json(routes: &[Arc<Route>], shared: &Shared) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for r in routes {
        let s = &r.stats;
        out.insert(
            r.name.clone(),
            serde_json::json!({
                "connections": s.connections.load(Ordering::Relaxed),
                "requests": s.methods.lock().unwrap().values().sum::<u64>(),
                "methods": *s.methods.lock().unwrap(),
                "bytes_up": s.bytes_up.load(Ordering::Relaxed),
                "bytes_down": s.bytes_down.load(Ordering::Relaxed),
                "unframed_connections": s.unframed_connections.load(Ordering::Relaxed),
            }),
        );
    }
    let up = shared.up.lock().unwrap().clone();
    let down = shared.down.lock().unwrap().clone();
    serde_json::json!({
        "routes": out,
        "link": {
            "rtt_ms": shared.rtt.as_secs_f64() * 1000.0,
            "up_mbit": up.rate * 8.0 / 1e6,
            "down_mbit": down.rate * 8.0 / 1e6,
            "burst_bytes": up.burst,
            "queue_ms": shared.queue.as_secs_f64() * 1000.0,
        },
    })
}

async fn handle(client: TcpStream, route: &Route, shared: &Arc<Shared>) -> io::Result<()> {
    let accepted = shared.now();
    route.stats.connections.fetch_add(1, Ordering::Relaxed);
    let upstream = TcpStream::connect(&route.target).await?;
    client.set_nodelay(true)?;
    upstream.set_nodelay(true)?;
    let (client_read, client_write) = client.into_split();
    let (upstream_read, upstream_write) = upstream.into_split();
    let first_byte = first_request_byte(accepted, shared.rtt);
    let up = pump(client_read, upstream_write, shared, true, first_byte, route);
    let down = pump(upstream_read, client_write, shared, false, Duration::ZERO, route);
    tokio::try_join!(up, down).map(|_| ())
}

/// The earliest a new connection's first request byte reaches the server:
/// SYN (one way), SYN-ACK (back), then the data (one way).
fn first_request_byte(accepted: Duration, rtt: Duration) -> Duration {
    accepted + rtt + rtt / 2
}

/// Moves one direction of a connection across the link: the reader schedules
/// each chunk on the shared bucket, the writer hands it over at its release.
async fn pump(
    mut src: OwnedReadHalf,
    mut dst: OwnedWriteHalf,
    shared: &Arc<Shared>,
    up: bool,
    not_before: Duration,
    route: &Route,
) -> io::Result<()> {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Duration, Vec<u8>)>();
    let epoch = shared.epoch;
    let writer = async move {
        while let Some((release, data)) = rx.recv().await {
            tokio::time::sleep_until(epoch + release).await;
            if data.is_empty() {
                return dst.shutdown().await;
            }
            dst.write_all(&data).await?;
        }
        Ok(())
    };
    let reader = async move {
        let link = if up { &shared.up } else { &shared.down };
        let mut counter = up.then(RequestCounter::default);
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = src.read(&mut buf).await?;
            // The end of the stream travels behind the bytes before it.
            let slot = link.lock().unwrap().schedule(shared.now(), n);
            let release = slot.release.max(not_before);
            let _ = tx.send((release, buf[..n].to_vec()));
            if n == 0 {
                return Ok::<(), io::Error>(());
            }
            let stats = &route.stats;
            if up {
                stats.bytes_up.fetch_add(n as u64, Ordering::Relaxed);
            } else {
                stats.bytes_down.fetch_add(n as u64, Ordering::Relaxed);
            }
            if let Some(counter) = counter.as_mut() {
                let was_lost = counter.lost;
                let methods = counter.feed(&buf[..n]);
                if !methods.is_empty() {
                    let mut m = stats.methods.lock().unwrap();
                    for method in methods {
                        *m.entry(method).or_default() += 1;
                    }
                }
                if counter.lost && !was_lost {
                    stats.unframed_connections.fetch_add(1, Ordering::Relaxed);
                }
            }
            if let Some(wait) = slot.depart.checked_sub(shared.queue)
                && wait > shared.now()
            {
                tokio::time::sleep_until(epoch + wait).await;
            }
        }
    };
    tokio::try_join!(reader, writer).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn ms(d: Duration) -> f64 {
        d.as_secs_f64() * 1000.0
    }

    /// A 40 ms, 50 Mbit/s link (20 ms each way), one MTU of burst.
    fn link() -> (Link, Link) {
        (Link::new(50.0, 1514, 20 * MS), Link::new(50.0, 1514, 20 * MS))
    }

    /// A request of `up` bytes sent at `t` in chunks, answered at once with
    /// `down` bytes: when the last answer byte is handed to the client.
    fn exchange(up_link: &mut Link, down_link: &mut Link, t: Duration, up: usize, down: usize) -> Duration {
        let mut at_server = t;
        let mut left = up;
        while left > 0 {
            let n = left.min(CHUNK);
            at_server = up_link.schedule(t, n).release;
            left -= n;
        }
        let mut at_client = at_server;
        let mut left = down;
        while left > 0 {
            let n = left.min(CHUNK);
            at_client = down_link.schedule(at_server, n).release;
            left -= n;
        }
        at_client
    }

    #[test]
    fn a_small_request_takes_one_round_trip_plus_its_size_over_the_bandwidth() {
        let (mut up, mut down) = link();
        // 200 KiB up, a 300-byte answer: 40 ms + 204,800 bytes / 6.25 MB/s = 40 + 32.8 ms (less the burst).
        let done = exchange(&mut up, &mut down, Duration::ZERO, 200 * 1024, 300);
        let expected = 40.0 + (200.0 * 1024.0 - 1514.0) / 6.25e6 * 1000.0 + 0.0;
        assert!((ms(done) - expected).abs() < 0.1, "{} ms, expected about {expected} ms", ms(done));
        // A tiny one: about the round trip alone.
        let (mut up, mut down) = link();
        let done = exchange(&mut up, &mut down, Duration::ZERO, 400, 200);
        assert!((ms(done) - 40.0).abs() < 0.01, "{} ms", ms(done));
    }

    #[test]
    fn connections_share_one_bucket() {
        let (mut up, _) = link();
        // Two connections each put 1 MB on the link at the same moment: the
        // second finishes when 2 MB have gone through, as on one access link.
        let first = up.schedule(Duration::ZERO, 1_000_000);
        let second = up.schedule(Duration::ZERO, 1_000_000);
        assert!((ms(first.depart) - (1_000_000.0 - 1514.0) / 6250.0).abs() < 0.01);
        assert!((ms(second.depart) - (2_000_000.0 - 1514.0) / 6250.0).abs() < 0.01);
        assert_eq!(second.release, second.depart + 20 * MS);
    }

    #[test]
    fn the_rate_holds_over_a_long_stream_and_an_idle_link_keeps_only_its_burst() {
        let (mut up, _) = link();
        // 64 MiB in 16 KiB chunks read as fast as allowed: 64 MiB / 6.25 MB/s.
        let mut last = Slot { depart: Duration::ZERO, release: Duration::ZERO };
        for _ in 0..(64 * 1024 / 16) {
            last = up.schedule(Duration::ZERO, CHUNK);
        }
        let expected = (64.0 * 1024.0 * 1024.0 - 1514.0) / 6250.0;
        assert!((ms(last.depart) - expected).abs() < 0.5, "{} ms vs {expected}", ms(last.depart));
        // An hour idle, then 10 KB: only one burst's worth goes at once.
        let later = last.depart + Duration::from_secs(3600);
        let slot = up.schedule(later, 10_000);
        assert!((ms(slot.depart - later) - (10_000.0 - 1514.0) / 6250.0).abs() < 0.01);
        // A chunk within the burst leaves at once.
        let much_later = slot.depart + Duration::from_secs(1);
        assert_eq!(up.schedule(much_later, 1000).depart, much_later);
    }

    #[test]
    fn a_request_on_a_new_connection_takes_two_round_trips() {
        let (mut up, mut down) = link();
        let accepted = 100 * MS;
        let at_server = up.schedule(accepted, 300).release.max(first_request_byte(accepted, 40 * MS));
        let answered = down.schedule(at_server, 300).release;
        assert_eq!(answered - accepted, 80 * MS);
    }

    #[test]
    fn an_unlimited_link_only_delays() {
        let mut l = Link::new(0.0, 0, 20 * MS);
        let s = l.schedule(5 * MS, 1 << 30);
        assert_eq!(s, Slot { depart: 5 * MS, release: 25 * MS });
    }

    #[test]
    fn a_late_reader_does_not_move_the_clock_back() {
        let (mut up, _) = link();
        let a = up.schedule(10 * MS, 100_000);
        // A thread that read its clock before the last call got the lock after it.
        let b = up.schedule(9 * MS, 100_000);
        assert!(b.depart > a.depart);
        assert!((ms(b.depart - a.depart) - 16.0).abs() < 0.01);
    }

    #[test]
    fn counts_requests_across_reads_and_skips_bodies() {
        let mut stream = b"OPTIONS /api/v1/uploads HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        stream.extend_from_slice(b"POST /api/v1/uploads HTTP/1.1\r\nContent-Length: 40\r\n\r\n");
        // A body that looks like a request head must not be counted.
        stream.extend_from_slice(b"GET /x HTTP/1.1\r\nHost: y\r\n\r\n0123456789ab");
        stream.extend_from_slice(b"PUT /b/k?partNumber=1 HTTP/1.1\r\ncontent-length: 5\r\n\r\nhello");
        stream.extend_from_slice(b"GET /b/k HTTP/1.1\r\n\r\n");
        for cuts in [vec![stream.len()], (1..stream.len()).collect::<Vec<_>>(), vec![3, 47, 48, 49, 50, 90, 140]] {
            let mut counter = RequestCounter::default();
            let mut seen = Vec::new();
            let mut start = 0;
            for cut in cuts.into_iter().chain([stream.len()]) {
                seen.extend(counter.feed(&stream[start..cut]));
                start = cut;
            }
            assert_eq!(seen, ["OPTIONS", "POST", "PUT", "GET"]);
        }
    }

    #[test]
    fn a_chunked_body_stops_the_count_instead_of_miscounting() {
        let mut counter = RequestCounter::default();
        let seen = counter.feed(b"POST /f HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nGET /\r\n0\r\n\r\n");
        assert_eq!(seen, ["POST"]);
        assert!(counter.lost);
        assert!(counter.feed(b"GET / HTTP/1.1\r\n\r\n").is_empty());
    }
}
