//! A TCP proxy that misbehaves on purpose, for fault tests: put it between
//! the browser and the object store (point `UPLOAD_S3_ENDPOINT` at it; it
//! forwards bytes untouched, so SigV4 signatures over the Host header still
//! hold).
//!
//! ```text
//! fault-proxy --target 127.0.0.1:3900 [--listen 127.0.0.1:0]
//!             [--reset-every N]    reset every Nth connection after it sent some bytes
//!             [--delay-every N --delay-ms MS]   hold every Nth connection MS before forwarding
//!             [--corrupt-puts K]   flip one body byte in the first K PUT requests
//!             [--unavailable-when-down]  answer 503 when the target refuses connections
//! ```
//!
//! It prints `listening on ADDR` once ready, and counts on stderr what it did.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Default)]
struct Options {
    listen: String,
    target: String,
    reset_every: u64,
    delay_every: u64,
    delay_ms: u64,
    corrupt_puts: u64,
    unavailable_when_down: bool,
}

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    resets: AtomicU64,
    delays: AtomicU64,
    corrupted: AtomicU64,
    /// PUTs picked for corruption; claimed when their head is read, so
    /// PUTs on parallel connections cannot both take the last one.
    claimed: AtomicU64,
    unavailable: AtomicU64,
}

fn parse() -> Options {
    let mut options = Options { listen: "127.0.0.1:0".into(), ..Default::default() };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => options.listen = value(),
            "--target" => options.target = value(),
            "--reset-every" => options.reset_every = value().parse().expect("a number"),
            "--delay-every" => options.delay_every = value().parse().expect("a number"),
            "--delay-ms" => options.delay_ms = value().parse().expect("a number"),
            "--corrupt-puts" => options.corrupt_puts = value().parse().expect("a number"),
            "--unavailable-when-down" => options.unavailable_when_down = true,
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(!options.target.is_empty(), "--target HOST:PORT is required");
    options
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let options = Arc::new(parse());
    let counters = Arc::new(Counters::default());
    let listener = TcpListener::bind(&options.listen).await?;
    println!("listening on {}", listener.local_addr()?);
    loop {
        let (client, _) = listener.accept().await?;
        let n = counters.connections.fetch_add(1, Ordering::Relaxed) + 1;
        let (options, counters) = (options.clone(), counters.clone());
        tokio::spawn(async move {
            if let Err(e) = handle(client, n, &options, &counters).await {
                eprintln!("fault-proxy: connection {n}: {e}");
            }
        });
    }
}

async fn handle(mut client: TcpStream, n: u64, options: &Options, counters: &Counters) -> std::io::Result<()> {
    if options.delay_every > 0 && n.is_multiple_of(options.delay_every) {
        counters.delays.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(options.delay_ms)).await;
    }
    let upstream = match TcpStream::connect(&options.target).await {
        Ok(upstream) => upstream,
        Err(e) if options.unavailable_when_down => {
            let total = counters.unavailable.fetch_add(1, Ordering::Relaxed) + 1;
            eprintln!("fault-proxy: target down ({e}); answered 503 ({total} so far)");
            return answer_unavailable(client).await;
        }
        Err(e) => return Err(e),
    };
    let reset = options.reset_every > 0 && n.is_multiple_of(options.reset_every);
    let (mut client_read, mut client_write) = client.split();
    let (mut upstream_read, mut upstream_write) = upstream.into_split();
    let to_store = async {
        let mut requests = RequestScanner::default();
        let mut buf = vec![0u8; 64 * 1024];
        let mut forwarded = 0u64;
        loop {
            let read = client_read.read(&mut buf).await?;
            if read == 0 {
                return upstream_write.shutdown().await;
            }
            requests.scan(&mut buf[..read], options.corrupt_puts, counters);
            upstream_write.write_all(&buf[..read]).await?;
            forwarded += read as u64;
            // Reset mid-request, once some bytes went through.
            if reset && forwarded > 32 * 1024 {
                let total = counters.resets.fetch_add(1, Ordering::Relaxed) + 1;
                eprintln!("fault-proxy: reset connection {n} ({total} resets so far)");
                return Err(std::io::Error::other("reset on purpose"));
            }
        }
    };
    let to_client = tokio::io::copy(&mut upstream_read, &mut client_write);
    let result = tokio::select! {
        r = to_store => r,
        r = to_client => r.map(|_| ()),
    };
    if result.is_err() {
        // Linger 0: closing sends RST, as a broken network would.
        let _ = client.set_zero_linger();
    }
    Ok(())
}

async fn answer_unavailable(mut client: TcpStream) -> std::io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    // Read the request head (and whatever body arrived) before answering, as a server would.
    let _ = tokio::time::timeout(Duration::from_millis(200), client.read(&mut buf)).await;
    let body = "SlowDown: the store is unavailable";
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
         Access-Control-Allow-Origin: *\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    client.write_all(response.as_bytes()).await?;
    client.shutdown().await
}

/// Follows the HTTP/1.1 requests of one connection (headers, then
/// Content-Length body bytes) to find PUT bodies to corrupt.
#[derive(Default)]
struct RequestScanner {
    head: Vec<u8>,
    body_left: u64,
    body_seen: u64,
    corrupt_this: bool,
}

impl RequestScanner {
    fn scan(&mut self, mut data: &mut [u8], corrupt_puts: u64, counters: &Counters) {
        while !data.is_empty() {
            if self.body_left > 0 {
                let take = (self.body_left as usize).min(data.len());
                // Flip a byte 1000 bytes into the body (or the last one of a short body).
                let target = 1000u64.min(self.body_seen + self.body_left - 1);
                if self.corrupt_this && (self.body_seen..self.body_seen + take as u64).contains(&target) {
                    data[(target - self.body_seen) as usize] ^= 0x01;
                    self.corrupt_this = false;
                    let total = counters.corrupted.fetch_add(1, Ordering::Relaxed) + 1;
                    eprintln!("fault-proxy: corrupted a PUT body ({total} so far)");
                }
                self.body_left -= take as u64;
                self.body_seen += take as u64;
                data = &mut data[take..];
                continue;
            }
            // Collecting a request head.
            let Some(end) = find_head_end(&self.head, data) else {
                self.head.extend_from_slice(data);
                if self.head.len() > 64 * 1024 {
                    self.head.clear();
                }
                return;
            };
            self.head.extend_from_slice(&data[..end]);
            let head = String::from_utf8_lossy(&self.head).to_ascii_lowercase();
            self.body_left = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
                .unwrap_or(0);
            self.body_seen = 0;
            self.corrupt_this = head.starts_with("put ")
                && self.body_left > 0
                && counters
                    .claimed
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| (n < corrupt_puts).then_some(n + 1))
                    .is_ok();
            self.head.clear();
            data = &mut data[end..];
        }
    }
}

/// Where the head ends (just past `\r\n\r\n`) in `data`, given what came before.
fn find_head_end(before: &[u8], data: &[u8]) -> Option<usize> {
    let tail_len = before.len().min(3);
    let mut window: Vec<u8> = before[before.len() - tail_len..].to_vec();
    window.extend_from_slice(data);
    window.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4 - tail_len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupts_exactly_one_byte_of_the_first_put_body_across_reads() {
        let counters = Counters::default();
        let mut scanner = RequestScanner::default();
        let body = vec![0u8; 3000];
        let mut stream = b"PUT /b/k?partNumber=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 3000\r\n\r\n".to_vec();
        stream.extend_from_slice(&body);
        stream.extend_from_slice(b"PUT /b/k?partNumber=2 HTTP/1.1\r\nContent-Length: 3000\r\n\r\n");
        stream.extend_from_slice(&body);
        let original = stream.clone();
        // Arbitrary read boundaries, one splitting the head terminator.
        let cuts = [10, 60, 61, 62, 900, 1500, 4000, stream.len()];
        let mut start = 0;
        for cut in cuts {
            scanner.scan(&mut stream[start..cut], 1, &counters);
            start = cut;
        }
        let diffs: Vec<usize> = (0..stream.len()).filter(|&i| stream[i] != original[i]).collect();
        assert_eq!(diffs.len(), 1, "exactly one byte flipped, and only in the first PUT");
        let head_len = original.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        assert_eq!(diffs[0], head_len + 1000);
        assert_eq!(counters.corrupted.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn regression_parallel_puts_share_one_corruption() {
        // Two connections read their PUT heads before either body arrives:
        // only the first may be corrupted (seen in CI: two were).
        let counters = Counters::default();
        let head = b"PUT /b/k?partNumber=1 HTTP/1.1\r\nContent-Length: 3000\r\n\r\n".to_vec();
        let (mut first, mut second) = (RequestScanner::default(), RequestScanner::default());
        first.scan(&mut head.clone(), 1, &counters);
        second.scan(&mut head.clone(), 1, &counters);
        let (mut body1, mut body2) = (vec![0u8; 3000], vec![0u8; 3000]);
        first.scan(&mut body1, 1, &counters);
        second.scan(&mut body2, 1, &counters);
        let flipped = body1.iter().chain(&body2).filter(|b| **b != 0).count();
        assert_eq!(flipped, 1);
        assert_eq!(counters.corrupted.load(Ordering::Relaxed), 1);
    }
}
