//! Price event in → signed `trading-stop` request out, on loopback (issue 11, "Speed"; target
//! p99 ≤ 100 µs without the network).
//!
//! The path is the runner's own, call for call (`live::runner`'s `on_news` → `drain` →
//! `route` → `pump` → `send`): a ticker message's text is parsed (`bybit::stream::parse`), the
//! venue turns it into a price point (`BybitVenue::on_message`), the book steps the real engine
//! and commits the step to the store (SQLite WAL, `synchronous=NORMAL`, a file on disk), the
//! stop call waits its turn in the account's pace and is released coalesced (`Book::release`,
//! committed), the adopted-stop clamp (`Book::never_looser`), then `BybitVenue::execute`
//! builds the request, signs it (HMAC-SHA256) and writes it with reqwest. The clock starts
//! before the parse and stops when the request's first bytes arrive at a raw HTTP server on
//! 127.0.0.1 (its own thread, blocking reads): so the figure includes the loopback write and
//! that thread's wake-up, an upper bound of "excluding the network". Every point raises the
//! price 2 ticks, so every point moves the stop (engine rate limit off: `min_interval 0`,
//! `min_improvement 0`); the account pace runs with room to spare (the 10/s limit would make
//! this a 10-point-a-second bench, and a held call's wait is not latency of the path).
//!
//! run with: cargo bench --features live --bench live_latency
//! (points: TS_LATENCY_POINTS, default 20000, after 1000 warm-up points)

use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use trailstop::engine::{Side, TrailingConfig};
use trailstop::live::TriggerPrice;
use trailstop::live::bybit::request::PositionIdx;
use trailstop::live::bybit::rest::{RestClient, RestConfig};
use trailstop::live::bybit::snapshot::PositionInfo;
use trailstop::live::bybit::stream;
use trailstop::live::bybit::venue::BybitVenue;
use trailstop::live::clock::system_clock;
use trailstop::live::fake_bybit::wire::ticker_message;
use trailstop::live::runner::pace::{self, Limit, Pacer};
use trailstop::live::runner::{Book, Opening};
use trailstop::live::{Credentials, Secret};
use trailstop::store::{OpenOptions, Store};

const SYMBOL: &str = "BTCUSDT";
const T0: i64 = 1_670_889_600_000;
const INSTRUMENTS: &str = include_str!("../tests/fixtures/bybit/http_get_instruments_linear.json");

#[path = "support/loopback.rs"]
mod loopback;
use loopback::{Answer, now_ms, show};

fn envelope(result: &str) -> String {
    format!(
        r#"{{"retCode":0,"retMsg":"OK","result":{result},"retExtInfo":{{}},"time":{}}}"#,
        now_ms()
    )
}

/// Bybit's success envelopes; the `trading-stop` calls' arrivals are timed.
fn answer(_method: &str, path: &str, _body: &str) -> Answer {
    let body = if path.starts_with("/v5/market/time") {
        let ms = now_ms();
        envelope(&format!(
            r#"{{"timeSecond":"{}","timeNano":"{}"}}"#,
            ms / 1000,
            ms as i128 * 1_000_000
        ))
    } else if path.starts_with("/v5/market/instruments-info") {
        INSTRUMENTS.to_string()
    } else {
        envelope("{}")
    };
    Answer {
        body,
        timed: path
            .starts_with("/v5/position/trading-stop")
            .then_some("trading-stop"),
    }
}

fn main() {
    let points: usize = std::env::var("TS_LATENCY_POINTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let warm = 1_000;
    let (addr, arrived) = loopback::start(answer);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let creds = Credentials {
            api_key: Secret::new("bench-key"),
            api_secret: Secret::new("bench-secret"),
        };
        let rest = RestClient::new(
            RestConfig {
                base_url: format!("http://{addr}"),
                recv_window_ms: 5000,
                timeout: Duration::from_secs(5),
                clock: system_clock(),
            },
            Some(creds),
        )
        .unwrap();
        let mut venue = BybitVenue::connect(rest, TriggerPrice::Mark, &[SYMBOL])
            .await
            .unwrap();
        let instrument = *venue.instrument(SYMBOL).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("bench.sqlite"), OpenOptions::runner()).unwrap();
        let mut book = Book::new(store).unwrap();
        let entry = Decimal::from(17_000);
        let info = PositionInfo {
            symbol: SYMBOL.into(),
            position_idx: PositionIdx::OneWay,
            side: Some(Side::Long),
            size: Decimal::ONE,
            avg_price: entry,
            stop_loss: None,
            mark_price: Some(entry),
            updated_ms: Some(T0),
        };
        let config: TrailingConfig = toml::from_str(
            r#"activation_percent = "0"
distance_percent = "1"
[rate_limit]
min_interval_seconds = 0
min_improvement_percent = "0"
"#,
        )
        .unwrap();
        let id = book.next_id();
        venue.manage(id, &info).unwrap();
        book.open(
            &Opening {
                symbol: SYMBOL.into(),
                position_idx: 0,
                side: Side::Long,
                entry,
                size: Decimal::ONE,
                opened_at: T0,
                foreign_stop: None,
            },
            &instrument,
            &config,
        )
        .unwrap();
        // The room to spare (see the module comment): the same code, a limit never reached.
        let mut pacer = Pacer::new(Limit {
            calls: usize::MAX / 2,
            window_ms: 1000,
        });
        let started = Instant::now();
        let mono = |t: Instant| t.duration_since(started).as_millis() as i64;

        // The first stop, then the ticker snapshot: untimed.
        // Returns the calls sent and when the last was handed to the venue adapter.
        let send_all = async |book: &mut Book, venue: &mut BybitVenue, pacer: &mut Pacer| {
            let mut sent = 0;
            let mut handed = None;
            for (cmd, ts) in book.take_commands(id) {
                if let Some(u) = pace::urgency(&cmd) {
                    pacer.hold(id, u, ts);
                } else {
                    panic!("only stop calls here: {cmd:?}");
                }
            }
            while let Some((p, ts)) = pacer.pop(mono(Instant::now())) {
                let Some(cmd) = book.release(p) else { continue };
                book.commit(&[p]).unwrap();
                let cmd = book.never_looser(p, cmd);
                pacer.start();
                handed = Some(Instant::now());
                let ex = venue.execute(cmd, ts).await;
                pacer.end(mono(Instant::now()));
                assert_eq!(ex.action, None, "{ex:?}");
                for e in &ex.events {
                    book.on_event(p, e);
                }
                book.commit(&[p]).unwrap();
                sent += 1;
            }
            (sent, handed)
        };
        assert_eq!(send_all(&mut book, &mut venue, &mut pacer).await.0, 1);
        arrived.recv().unwrap();
        let snap = ticker_message(SYMBOL, true, entry, 1, T0 + 1);
        let news = venue.on_message(&stream::parse(&snap).unwrap());
        for p in &news.prices {
            book.on_price(&p.symbol, p.price, p.ts).unwrap();
        }
        send_all(&mut book, &mut venue, &mut pacer).await;
        while arrived.try_recv().is_ok() {}

        let texts: Vec<String> = (1..=(warm + points) as i64)
            .map(|k| {
                let price = entry + Decimal::from(k); // 2 ticks of 0.5
                ticker_message(SYMBOL, false, price, 1 + k as u64, T0 + 1 + k)
            })
            .collect();
        let mut to_wire = Vec::with_capacity(points);
        let mut round_trip = Vec::with_capacity(points);
        let mut to_adapter = Vec::with_capacity(points);
        let mut committed = Vec::with_capacity(points);
        for (n, text) in texts.iter().enumerate() {
            let t0 = Instant::now();
            let msg = stream::parse(text).unwrap();
            let news = venue.on_message(&msg);
            let mut sent = 0;
            let mut handed = None;
            let mut stepped = t0;
            for p in &news.prices {
                let ids = book.on_price(&p.symbol, p.price, p.ts).unwrap().unwrap();
                stepped = Instant::now();
                assert_eq!(ids, vec![id]);
                let (n, h) = send_all(&mut book, &mut venue, &mut pacer).await;
                sent += n;
                handed = h;
            }
            let t1 = Instant::now();
            assert_eq!(sent, 1, "every point moves the stop (point {n})");
            let (_, at) = arrived.recv().unwrap();
            if n >= warm {
                to_wire.push(at.duration_since(t0));
                round_trip.push(t1.duration_since(t0));
                to_adapter.push(handed.unwrap().duration_since(t0));
                committed.push(stepped.duration_since(t0));
            }
        }
        show(
            "ticker in -> engine stepped, step committed",
            &mut committed,
        );
        show(
            "ticker in -> command handed to BybitVenue::execute",
            &mut to_adapter,
        );
        show(
            "ticker in -> signed trading-stop at the loopback server",
            &mut to_wire,
        );
        show(
            "ticker in -> answer read and committed (one loopback round trip)",
            &mut round_trip,
        );
        let stop = book.slots[&id].runner.order.resting().unwrap().stop;
        println!(
            "final stop {} after {} points",
            instrument.decimal(stop),
            texts.len()
        );
    });
}
