//! The raw HTTP/1.1 server on 127.0.0.1 that the live latency benches send to: one thread per
//! keep-alive connection, blocking reads, each request answered by the bench's `answer`; the
//! arrival (its first bytes read) of each request `answer` names is sent on a channel. Not
//! the fake venues: their own work would sit between the requests being measured.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// What a request gets: its body, and a name if its arrival is to be reported.
pub struct Answer {
    pub body: String,
    pub timed: Option<&'static str>,
}

/// `(method, path with query, body)` → the answer.
pub type Answerer = fn(&str, &str, &str) -> Answer;

/// Binds 127.0.0.1:0 and serves every connection; the address and the arrivals.
pub fn start(answer: Answerer) -> (SocketAddr, mpsc::Receiver<(&'static str, Instant)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, arrived) = mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let tx = tx.clone();
            std::thread::spawn(move || serve(conn, tx, answer));
        }
    });
    (addr, arrived)
}

fn serve(mut conn: TcpStream, arrived: mpsc::Sender<(&'static str, Instant)>, answer: Answerer) {
    conn.set_nodelay(true).unwrap();
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut chunk = [0u8; 8192];
    let mut first: Option<Instant> = None;
    loop {
        // A whole request in the buffer?
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let len = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let mut words = head.split_whitespace();
                let method = words.next().unwrap_or("").to_string();
                let path = words.next().unwrap_or("").to_string();
                let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).to_string();
                buf.drain(..end + 4 + len);
                let a = answer(&method, &path, &body);
                if let (Some(name), Some(t)) = (a.timed, first) {
                    let _ = arrived.send((name, t));
                }
                first = if buf.is_empty() {
                    None
                } else {
                    Some(Instant::now())
                };
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{}",
                    a.body.len(),
                    a.body
                );
                if conn.write_all(reply.as_bytes()).is_err() {
                    return;
                }
                continue;
            }
        }
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if buf.is_empty() {
                    first = Some(Instant::now());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
        }
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Prints the percentiles of `v` (sorted here).
pub fn show(name: &str, v: &mut [Duration]) {
    v.sort();
    println!(
        "{name}: n={} p50={:.1} µs p90={:.1} µs p99={:.1} µs p99.9={:.1} µs max={:.1} µs",
        v.len(),
        percentile(v, 0.50).as_secs_f64() * 1e6,
        percentile(v, 0.90).as_secs_f64() * 1e6,
        percentile(v, 0.99).as_secs_f64() * 1e6,
        percentile(v, 0.999).as_secs_f64() * 1e6,
        v.last().unwrap().as_secs_f64() * 1e6,
    );
}
