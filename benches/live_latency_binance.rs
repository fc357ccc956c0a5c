//! Binance (issue 12, "Speed", as the Bybit issue's): price event in → signed request out on
//! loopback, and the unprotected window of a replace (Binance has no amend: cancel, then
//! create, nothing resting in between).
//!
//! The path is the runner's own, call for call, as in `live_latency.rs`: a `markPriceUpdate`'s
//! text is parsed by the venue (`BinanceVenue::on_message`), the book steps the real engine
//! and commits the step (SQLite WAL, `synchronous=NORMAL`, on disk), the call waits its turn
//! in the account's pace and is released coalesced (`Book::release`, committed), then
//! `BinanceVenue::execute` builds the `DELETE /fapi/v1/algoOrder`, signs it (HMAC-SHA256 over
//! the query) and reqwest writes it; its answer is committed, the lifecycle asks for the
//! create, which goes the same way. The clocks stop when each request's first bytes reach a
//! raw HTTP server on 127.0.0.1 (its own thread; its wake-up counts too). The unprotected
//! window is the lifecycle's (LIVE.md §5): from the cancel's answer read to the create's
//! answer read, the create's whole round trip and the commits around it included. Every
//! point raises the price 2 ticks, so every point replaces the stop (engine rate limit off);
//! the account's pace (200 orders per 10 s) runs with room to spare, as in the Bybit bench.
//!
//! run with: cargo bench --features live --bench live_latency_binance
//! (points: TS_LATENCY_POINTS, default 10000, after 500 warm-up points)

use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use trailstop::engine::{Side, TrailingConfig};
use trailstop::live::TriggerPrice;
use trailstop::live::binance::request::{PositionSide, StopOptions};
use trailstop::live::binance::rest::{RestClient, RestConfig};
use trailstop::live::binance::snapshot::PositionInfo;
use trailstop::live::binance::venue::BinanceVenue;
use trailstop::live::clock::system_clock;
use trailstop::live::runner::pace::{self, Limit, Pacer};
use trailstop::live::runner::{Book, Opening};
use trailstop::live::{Credentials, Secret};
use trailstop::store::{OpenOptions, Store};
use trailstop::venue::{Command, VenueEvent};

#[path = "support/loopback.rs"]
mod loopback;
use loopback::{Answer, now_ms, show};

const SYMBOL: &str = "BTCUSDT";
const T0: i64 = 1_670_889_600_000;

fn exchange_info() -> String {
    format!(
        r#"{{"timezone":"UTC","serverTime":{},"rateLimits":[
{{"rateLimitType":"REQUEST_WEIGHT","interval":"MINUTE","intervalNum":1,"limit":2400}},
{{"rateLimitType":"ORDERS","interval":"MINUTE","intervalNum":1,"limit":1200}},
{{"rateLimitType":"ORDERS","interval":"SECOND","intervalNum":10,"limit":300}}],
"symbols":[{{"symbol":"BTCUSDT","pair":"BTCUSDT","contractType":"PERPETUAL","status":"TRADING",
"pricePrecision":2,"quantityPrecision":3,"filters":[
{{"filterType":"PRICE_FILTER","minPrice":"556.80","maxPrice":"4529764","tickSize":"0.10"}},
{{"filterType":"LOT_SIZE","minQty":"0.001","maxQty":"1000","stepSize":"0.001"}}]}}]}}"#,
        now_ms()
    )
}

/// A query parameter of `path`.
fn param<'a>(path: &'a str, name: &str) -> &'a str {
    path.split_once('?')
        .map_or("", |(_, q)| q)
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        .unwrap_or("")
}

/// Binance's answers; the algo order calls' arrivals are timed.
fn answer(method: &str, path: &str, _body: &str) -> Answer {
    let (body, timed) = if path.starts_with("/fapi/v1/time") {
        (format!(r#"{{"serverTime":{}}}"#, now_ms()), None)
    } else if path.starts_with("/fapi/v1/exchangeInfo") {
        (exchange_info(), None)
    } else if path.starts_with("/fapi/v1/positionSide/dual") {
        (r#"{"dualSidePosition":false}"#.to_string(), None)
    } else if path.starts_with("/fapi/v1/algoOrder") && method == "DELETE" {
        (
            format!(
                r#"{{"algoId":1,"clientAlgoId":"{}","code":"200","msg":"success"}}"#,
                param(path, "clientAlgoId")
            ),
            Some("cancel"),
        )
    } else if path.starts_with("/fapi/v1/algoOrder") && method == "POST" {
        let ms = now_ms();
        (
            format!(
                r#"{{"algoId":2,"clientAlgoId":"{}","algoType":"CONDITIONAL","orderType":"STOP_MARKET","symbol":"BTCUSDT","side":"SELL","positionSide":"BOTH","timeInForce":"GTC","quantity":"0","algoStatus":"NEW","triggerPrice":"{}","workingType":"MARK_PRICE","closePosition":true,"priceProtect":false,"reduceOnly":false,"createTime":{ms},"updateTime":{ms}}}"#,
                param(path, "clientAlgoId"),
                param(path, "triggerPrice"),
            ),
            Some("create"),
        )
    } else {
        (
            format!(r#"{{"code":-1000,"msg":"not in the bench: {path}"}}"#),
            None,
        )
    };
    Answer { body, timed }
}

fn mark_price(price: Decimal, ts: i64) -> String {
    format!(
        r#"{{"stream":"btcusdt@markPrice@1s","data":{{"e":"markPriceUpdate","E":{ts},"s":"{SYMBOL}","p":"{price}","i":"{price}","P":"{price}","r":"0.0001","T":{}}}}}"#,
        ts + 3_600_000
    )
}

/// When each call of one point left and was answered.
#[derive(Default)]
struct Timeline {
    cancel_answered: Option<Instant>,
    create_answered: Option<Instant>,
    calls: usize,
}

fn main() {
    let points: usize = std::env::var("TS_LATENCY_POINTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let warm = 500;
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
        let options = StopOptions {
            trigger: TriggerPrice::Mark,
            price_protect: false,
        };
        let mut venue = BinanceVenue::connect(rest, options, &[SYMBOL])
            .await
            .unwrap();
        let instrument = *venue.instrument(SYMBOL).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("bench.sqlite"), OpenOptions::runner()).unwrap();
        let mut book = Book::new(store).unwrap();
        book.atomic_amend = venue.atomic_amend();
        let entry = Decimal::from(17_000);
        let info = PositionInfo {
            symbol: SYMBOL.into(),
            position_side: PositionSide::Both,
            amount: Decimal::ONE,
            entry_price: entry,
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
            window_ms: 10_000,
        });
        let started = Instant::now();
        let mono = |t: Instant| t.duration_since(started).as_millis() as i64;

        // Every call the position queues, through the pace, until none is left (a replace's
        // create follows its cancel's answer).
        let send_all = async |book: &mut Book, venue: &mut BinanceVenue, pacer: &mut Pacer| {
            let mut t = Timeline::default();
            loop {
                let queued = book.take_commands(id);
                if queued.is_empty() && pacer.waiting() == 0 {
                    return t;
                }
                for (cmd, ts) in queued {
                    let u = pace::urgency(&cmd).unwrap_or_else(|| panic!("a stop call: {cmd:?}"));
                    pacer.hold(id, u, ts);
                }
                while let Some((p, ts)) = pacer.pop(mono(Instant::now())) {
                    let Some(cmd) = book.release(p) else { continue };
                    book.commit(&[p]).unwrap();
                    pacer.start();
                    let ex = venue.execute(cmd, ts).await;
                    let answered = Instant::now();
                    pacer.end(mono(answered));
                    assert_eq!(ex.action, None, "{ex:?}");
                    match (cmd, ex.events.as_slice()) {
                        (Command::Cancel { .. }, [VenueEvent::Cancelled { .. }]) => {
                            t.cancel_answered = Some(answered)
                        }
                        (Command::Place { .. }, [VenueEvent::Accepted { .. }]) => {
                            t.create_answered = Some(answered)
                        }
                        other => panic!("not a replace's answer: {other:?}"),
                    }
                    for e in &ex.events {
                        book.on_event(p, e);
                    }
                    book.commit(&[p]).unwrap();
                    t.calls += 1;
                }
            }
        };
        // The first price: the first stop (a create alone), untimed.
        let news = venue.on_message(&mark_price(entry, T0 + 1)).unwrap();
        for p in &news.prices {
            book.on_price(&p.symbol, p.price, p.ts).unwrap();
        }
        assert_eq!(send_all(&mut book, &mut venue, &mut pacer).await.calls, 1);
        while arrived.try_recv().is_ok() {}

        let texts: Vec<String> = (1..=(warm + points) as i64)
            .map(|k| {
                mark_price(
                    entry + Decimal::from(k) / Decimal::from(5),
                    T0 + 1 + k * 1000,
                )
            })
            .collect();
        let mut to_cancel = Vec::with_capacity(points);
        let mut to_create = Vec::with_capacity(points);
        let mut unprotected = Vec::with_capacity(points);
        let mut whole = Vec::with_capacity(points);
        for (n, text) in texts.iter().enumerate() {
            let t0 = Instant::now();
            let news = venue.on_message(text).unwrap();
            let mut t = Timeline::default();
            for p in &news.prices {
                let ids = book.on_price(&p.symbol, p.price, p.ts).unwrap().unwrap();
                assert_eq!(ids, vec![id]);
                t = send_all(&mut book, &mut venue, &mut pacer).await;
            }
            let t1 = Instant::now();
            assert_eq!(t.calls, 2, "every point replaces the stop (point {n})");
            let (c, at_cancel) = arrived.recv().unwrap();
            let (p, at_create) = arrived.recv().unwrap();
            assert_eq!((c, p), ("cancel", "create"));
            if n >= warm {
                to_cancel.push(at_cancel.duration_since(t0));
                to_create.push(at_create.duration_since(t0));
                unprotected.push(t.create_answered.unwrap() - t.cancel_answered.unwrap());
                whole.push(t1.duration_since(t0));
            }
        }
        show(
            "markPrice in -> signed cancel (DELETE algoOrder) at the loopback server",
            &mut to_cancel,
        );
        show(
            "markPrice in -> signed create (POST algoOrder) at the loopback server",
            &mut to_create,
        );
        show(
            "unprotected window: cancel answered -> create answered (loopback)",
            &mut unprotected,
        );
        show(
            "markPrice in -> replace done and committed (two loopback round trips)",
            &mut whole,
        );
        let stop = book.slots[&id].runner.order.resting().unwrap().stop;
        println!(
            "final stop {} after {} points",
            instrument.decimal(stop),
            texts.len()
        );
    });
}
