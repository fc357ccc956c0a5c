//! `GET /status` and `GET /healthz` (`LIVE.md` §6) on `[http] listen`: a snapshot the run
//! loop publishes after each message it handled (so `last_price_ts` advances only after the
//! commands a point caused were answered), served by a small hyper server.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rust_decimal::Decimal;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::book::{Book, Changed};
use crate::engine::State;
use crate::live::metrics::Metrics;
use crate::runner::RunnerSnapshot;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SymbolStatus {
    pub last_price_ts: i64,
    pub price: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PositionStatus {
    pub position_id: u64,
    pub symbol: String,
    pub side: &'static str,
    pub state: &'static str,
    pub entry_price: Decimal,
    pub desired_stop: Option<Decimal>,
    pub sent_stop: Option<Decimal>,
    pub confirmed_stop: Option<Decimal>,
    /// The client id of the newest stop sent.
    pub order_id: Option<String>,
    /// Since when (exchange time, ms) a stop was sent and none rests, if now.
    pub unprotected_since: Option<i64>,
}

impl PositionStatus {
    /// A position as its runner stands (`runner`) with its last committed record.
    pub fn of(record: &crate::store::PositionRecord, runner: &RunnerSnapshot) -> PositionStatus {
        let e = &runner.engine;
        PositionStatus {
            position_id: e.position.id,
            symbol: e.position.symbol.clone(),
            side: e.position.side.as_str(),
            state: match e.state {
                State::Inactive => "inactive",
                State::Active => "active",
                State::Triggered => "triggered",
            },
            entry_price: e.position.entry_price,
            desired_stop: e.desired.map(|(d, _)| d),
            sent_stop: e.sent.map(|(d, _)| d),
            confirmed_stop: e.confirmed,
            order_id: record.exchange_order_id(),
            unprotected_since: runner.order.unprotected_since,
        }
    }
}

/// One stream's state for `/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StreamStatus {
    pub connected: bool,
    /// Since its last message (local clock, ms); `None` before the first.
    pub last_message_age_ms: Option<u64>,
}

/// What `/status` shows. Prices serialise as decimal strings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Status {
    pub reconciled: bool,
    pub symbols: BTreeMap<String, SymbolStatus>,
    /// Open positions only.
    pub positions: Vec<PositionStatus>,
    /// The public and private streams.
    pub streams: BTreeMap<&'static str, StreamStatus>,
    /// Why the run is not healthy (a stream down, stale prices), if it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub degraded: Option<String>,
    /// Each venue's circuit breaker: `closed`, `open`, `half_open`, `banned`, `rate_limited`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub circuit: BTreeMap<String, String>,
    /// What the gauges need beside the above; they are computed when `/metrics` is scraped.
    #[serde(skip)]
    pub gauges: GaugeInputs,
}

/// The gauges' inputs that `/status` does not show.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GaugeInputs {
    /// When the last price of each symbol arrived (local clock).
    pub arrived: BTreeMap<String, tokio::time::Instant>,
    /// Exchange positions no trailing stop manages.
    pub without_trailing_stop: u64,
    /// Server − local (ms).
    pub clock_offset_ms: i64,
    /// Every (symbol, state) of an open position seen so far: its gauge reads 0 once no
    /// position has it, rather than vanishing.
    pub seen: BTreeMap<String, std::collections::BTreeSet<&'static str>>,
    /// The venue label of `trailstop_circuit_open`, and whether its breaker is open.
    pub venue: String,
    pub circuit_open: bool,
}

impl Status {
    /// The book's open positions and last prices.
    pub fn of(book: &Book, reconciled: bool, degraded: Option<String>) -> Status {
        let symbols = book
            .symbols
            .iter()
            .map(|(s, p)| {
                (
                    s.clone(),
                    SymbolStatus {
                        last_price_ts: p.last_ts,
                        price: p.price,
                    },
                )
            })
            .collect();
        let positions = book
            .slots
            .iter()
            .filter(|(_, s)| s.runner.closed().is_none())
            .map(|(_, s)| PositionStatus::of(&s.record, &s.runner.snapshot()))
            .collect();
        Status {
            reconciled,
            symbols,
            positions,
            streams: BTreeMap::new(),
            degraded,
            circuit: BTreeMap::new(),
            gauges: GaugeInputs::default(),
        }
    }

    /// Remembers the (symbol, state) of the open positions among `ids`, for the gauges.
    pub fn remember_labels<'a>(&mut self, ids: impl IntoIterator<Item = &'a u64>) {
        for id in ids {
            let Ok(i) = self.positions.binary_search_by_key(id, |p| p.position_id) else {
                continue;
            };
            let p = &self.positions[i];
            if !self
                .gauges
                .seen
                .get(&p.symbol)
                .is_some_and(|v| v.contains(p.state))
            {
                self.gauges
                    .seen
                    .entry(p.symbol.clone())
                    .or_default()
                    .insert(p.state);
            }
        }
    }

    /// Brings the entries of the positions and symbols in `changed` up to date from `book`
    /// (a position no longer open leaves); the rest is as [`Status::of`] last saw it.
    pub fn refresh(&mut self, book: &Book, changed: &Changed) {
        for symbol in &changed.symbols {
            if let Some(p) = book.symbols.get(symbol) {
                self.symbols.insert(
                    symbol.clone(),
                    SymbolStatus {
                        last_price_ts: p.last_ts,
                        price: p.price,
                    },
                );
            }
        }
        for id in &changed.positions {
            let now = book
                .slots
                .get(id)
                .filter(|s| s.runner.closed().is_none())
                .map(|s| PositionStatus::of(&s.record, &s.runner.snapshot()));
            // Kept in id order, as the book iterates.
            match (
                self.positions.binary_search_by_key(id, |p| p.position_id),
                now,
            ) {
                (Ok(i), Some(p)) => self.positions[i] = p,
                (Ok(i), None) => {
                    self.positions.remove(i);
                }
                (Err(i), Some(p)) => self.positions.insert(i, p),
                (Err(_), None) => {}
            }
        }
    }

    /// `/healthz`: 200 when reconciled and every stream is up, else 503 with the reason.
    fn health(&self) -> (StatusCode, String) {
        match (&self.degraded, self.reconciled) {
            (_, false) => (StatusCode::SERVICE_UNAVAILABLE, "not reconciled\n".into()),
            (Some(why), true) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
            (None, true) => (StatusCode::OK, "ok\n".into()),
        }
    }
}

pub type Shared = Arc<Mutex<Status>>;

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

async fn serve(
    req: Request<Incoming>,
    shared: Shared,
    metrics: Option<Arc<Metrics>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if let ("/metrics", Some(m)) = (req.uri().path(), &metrics) {
        // Rendered under the status lock: the gauges and the counters are of one moment (a
        // writer that counts a step and shows it holds the lock across both).
        let status = shared.lock().unwrap_or_else(|e| e.into_inner());
        m.set_gauges(&crate::live::metrics::watch::gauges(&status));
        let text = m.render();
        drop(status);
        return Ok(reply(StatusCode::OK, "text/plain; version=0.0.4", text));
    }
    let status = shared.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Ok(match req.uri().path() {
        "/status" => reply(
            StatusCode::OK,
            "application/json",
            serde_json::to_string(&status).expect("a status serialises"),
        ),
        "/healthz" => {
            let (code, text) = status.health();
            reply(code, "text/plain", text)
        }
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    })
}

/// Listens on `addr`; the bound address (port 0 picks one). Serves `/status`, `/healthz`
/// and, given `metrics`, `/metrics` until `stop`.
pub async fn listen(
    addr: SocketAddr,
    shared: Shared,
    metrics: Option<Arc<Metrics>>,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((socket, _)) = accepted else { continue };
                    let s = shared.clone();
                    let m = metrics.clone();
                    tokio::spawn(async move {
                        let service = service_fn(move |req| serve(req, s.clone(), m.clone()));
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(socket), service)
                            .await;
                    });
                }
                _ = stop.changed() => break,
            }
        }
    });
    Ok((bound, task))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Instrument, Side, TrailingConfig};
    use crate::live::runner::book::Opening;
    use crate::store::{OpenOptions, Store};
    use rust_decimal_macros::dec;

    /// The `LIVE.md` §6 shape: prices as decimal strings, open positions only.
    #[test]
    fn status_has_the_documented_shape() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.sqlite"), OpenOptions::runner()).unwrap();
        let mut book = Book::new(store).unwrap();
        book.on_price("BTCUSDT", dec!(17100.5), 1_670_889_600_000)
            .unwrap();
        let config: TrailingConfig = toml::from_str(
            "activation_percent = \"0.5\"\ndistance_percent = \"0.4\"\ninitial_stop_percent = \"1\"",
        )
        .unwrap();
        let o = Opening {
            symbol: "BTCUSDT".into(),
            position_idx: 0,
            side: Side::Long,
            entry: dec!(17050),
            size: dec!(0.5),
            opened_at: 1_670_889_600_000,
            foreign_stop: None,
        };
        book.open(&o, &Instrument::with_price_decimals(dec!(0.5), 1), &config)
            .unwrap();
        let v: serde_json::Value = serde_json::to_value(Status::of(&book, true, None)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "reconciled": true,
                "symbols": {"BTCUSDT": {"last_price_ts": 1_670_889_600_000_i64, "price": "17100.5"}},
                "positions": [{
                    "position_id": 1, "symbol": "BTCUSDT", "side": "long", "state": "inactive",
                    "entry_price": "17050", "desired_stop": "16879.5", "sent_stop": "16879.5",
                    "confirmed_stop": null, "order_id": "ts-1-1",
                    "unprotected_since": 1_670_889_600_000_i64
                }],
                "streams": {}
            })
        );
        let (code, text) = Status::of(&book, false, None).health();
        assert_eq!((code.as_u16(), text.as_str()), (503, "not reconciled\n"));
        let (code, _) = Status::of(&book, true, None).health();
        assert_eq!(code.as_u16(), 200);
    }

    /// A status kept by [`Status::refresh`] from the book's changes alone equals the one
    /// built from the whole book after every kind of step: opening, prices of one symbol and
    /// of another, an answer, a close; the untouched positions' entries are not rebuilt.
    #[test]
    fn refreshing_what_changed_equals_rebuilding_the_whole_book() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("r.sqlite"), OpenOptions::runner()).unwrap();
        let mut book = Book::new(store).unwrap();
        let config: TrailingConfig = toml::from_str(
            "activation_percent = \"0.5\"\ndistance_percent = \"0.4\"\ninitial_stop_percent = \"1\"",
        )
        .unwrap();
        let instrument = Instrument::with_price_decimals(dec!(0.5), 1);
        let mut status = Status::default();
        let check = |book: &mut Book, status: &mut Status| {
            let changed = book.take_changed();
            status.refresh(book, &changed);
            assert_eq!(*status, Status::of(book, false, None));
            changed
        };
        for (i, symbol) in ["BTCUSDT", "ETHUSDT", "BTCUSDT"].into_iter().enumerate() {
            let o = Opening {
                symbol: symbol.into(),
                position_idx: i as u8,
                side: if i == 1 { Side::Short } else { Side::Long },
                entry: dec!(1000),
                size: dec!(1),
                opened_at: 1_000,
                foreign_stop: None,
            };
            book.open(&o, &instrument, &config).unwrap();
            check(&mut book, &mut status);
        }
        book.on_price("BTCUSDT", dec!(1010), 2_000).unwrap();
        let changed = check(&mut book, &mut status);
        assert_eq!(changed.positions, [1, 3].into_iter().collect());
        assert_eq!(
            changed.symbols,
            ["BTCUSDT".to_string()].into_iter().collect()
        );
        book.on_price("ETHUSDT", dec!(990), 2_500).unwrap();
        check(&mut book, &mut status);
        // An older point is dropped: nothing changes.
        book.on_price("ETHUSDT", dec!(980), 2_400).unwrap();
        assert!(check(&mut book, &mut status).symbols.is_empty());
        let (cmd, ts) = book.take_commands(2)[0];
        let crate::venue::Command::Place { order, stop } = cmd else {
            panic!("{cmd:?}")
        };
        let accepted = crate::venue::VenueEvent::Accepted {
            order,
            stop,
            ts,
            venue_id: None,
        };
        book.on_event(2, &accepted);
        book.commit(&[2]).unwrap();
        let changed = check(&mut book, &mut status);
        assert_eq!(changed.positions, [2].into_iter().collect());
        book.remove(1);
        check(&mut book, &mut status);
        assert_eq!(
            status
                .positions
                .iter()
                .map(|p| p.position_id)
                .collect::<Vec<_>>(),
            [2, 3]
        );
    }
}
