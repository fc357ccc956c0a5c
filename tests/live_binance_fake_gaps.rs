//! The fake Binance's connection life, user-stream faults, request weights and partial
//! fills, over the wire on 127.0.0.1 (an ephemeral port), with the adapter's own clients
//! (`live::binance::ws`, `rest`) where they are what is tested. Every wait is bounded.
#![cfg(feature = "live")]

mod live_support;

use std::time::Duration;

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

use rust_decimal_macros::dec;

use live_support::binance::{BTC, fake, rest_on, venue_on_a_long, within};
use trailstop::live::TriggerPrice;
use trailstop::live::binance::request::market_stream_path;
use trailstop::live::binance::response::Outcome;
use trailstop::live::binance::rest::RestError;
use trailstop::live::binance::venue::{Action, BinanceVenue, StreamNews};
use trailstop::live::binance::ws::{StreamKind, WsClient, WsConfig, WsEvent};
use trailstop::live::clock::system_clock;
use trailstop::live::fake_binance::{FakeBinance, Outgoing, Pick, Stream, StreamFault, Tap};
use trailstop::venue::{Command, OrderRef, VenueEvent};

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn market_url(fake: &FakeBinance) -> String {
    format!(
        "{}{}",
        fake.ws_url(),
        market_stream_path(&["BTCUSDT"], TriggerPrice::Mark)
    )
}

async fn connect(url: &str) -> Ws {
    within(tokio_tungstenite::connect_async(url))
        .await
        .unwrap()
        .0
}

/// The frames a client hears in `for_`, reading as the adapter's client does (only reading:
/// tungstenite answers a ping by queueing the pong, which goes out on the next read).
async fn read_for(ws: Ws, for_: Duration) -> Vec<Message> {
    let (_sink, mut source) = ws.split();
    let mut heard = Vec::new();
    let until = tokio::time::Instant::now() + for_;
    loop {
        tokio::select! {
            m = source.next() => match m {
                Some(Ok(m)) => heard.push(m),
                other => panic!("the connection ended: {other:?} after {heard:?}"),
            },
            _ = tokio::time::sleep_until(until) => return heard,
        }
    }
}

/// Pings every 40 ms, a drop after 150 ms without a pong: a client that keeps reading
/// answers every ping (tungstenite flushes the queued pong on its next read) and outlives
/// the deadline many times over.
#[tokio::test]
async fn a_reading_client_answers_the_pings_and_stays_connected() {
    let fake = fake(|c| {
        c.ping_every = Duration::from_millis(40);
        c.pong_within = Duration::from_millis(150);
    })
    .await;
    let heard = read_for(
        connect(&market_url(&fake)).await,
        Duration::from_millis(700),
    )
    .await;
    let pings = heard
        .iter()
        .filter(|m| matches!(m, Message::Ping(_)))
        .count();
    assert!(pings >= 10, "{pings} pings: {heard:?}");
    let c = fake.counts(Stream::Market);
    assert_eq!((c.connections, c.dropped_without_pong, c.cut), (1, 0, 0));
    // Each ping heard was answered, but perhaps the last (its pong goes with the next read).
    assert!(c.pongs + 1 >= pings, "{c:?}, {pings} pings");
}

/// A client that does not read sends no pong (tungstenite only queues it): the fake drops
/// the connection once `pong_within` passed, without a close frame.
#[tokio::test]
async fn a_client_that_never_pongs_is_dropped() {
    let fake = fake(|c| {
        c.ping_every = Duration::from_millis(40);
        c.pong_within = Duration::from_millis(150);
    })
    .await;
    let mut ws = connect(&market_url(&fake)).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let c = fake.counts(Stream::Market);
    assert_eq!((c.pongs, c.dropped_without_pong), (0, 1), "{c:?}");
    // What was sent before the drop, then the end: no close frame.
    let mut heard = Vec::new();
    within(async {
        while let Some(Ok(m)) = ws.next().await {
            heard.push(m);
        }
    })
    .await;
    assert!(
        heard.iter().any(|m| matches!(m, Message::Ping(_))),
        "{heard:?}"
    );
    assert!(
        !heard.iter().any(|m| matches!(m, Message::Close(_))),
        "{heard:?}"
    );
}

/// Every connection is cut at its age (`cut_after`; Binance: 24 h), with a close frame.
#[tokio::test]
async fn a_connection_is_cut_at_its_age_with_a_close_frame() {
    let fake = fake(|c| c.cut_after = Duration::from_millis(200)).await;
    let mut ws = connect(&market_url(&fake)).await;
    let mut heard = Vec::new();
    within(async {
        while let Some(Ok(m)) = ws.next().await {
            heard.push(m);
        }
    })
    .await;
    assert!(matches!(heard.last(), Some(Message::Close(_))), "{heard:?}");
    let c = fake.counts(Stream::Market);
    assert_eq!((c.cut, c.open), (1, 0), "{c:?}");
}

/// The adapter's stream client through pings and cuts: it pongs (never dropped for want of
/// one), and after each cut it reconnects (`Connected` with the next connection number, for
/// the driver's REST re-check).
#[tokio::test]
async fn the_adapters_client_pongs_and_reconnects_after_a_cut() {
    let fake = fake(|c| {
        c.ping_every = Duration::from_millis(30);
        c.pong_within = Duration::from_millis(120);
        c.cut_after = Duration::from_millis(400);
    })
    .await;
    let mut config = WsConfig::new(
        &fake.ws_url(),
        StreamKind::Market,
        &market_stream_path(&["BTCUSDT"], TriggerPrice::Mark),
        system_clock(),
    );
    config.backoff = Duration::from_millis(20);
    config.silent_after = Duration::from_millis(100);
    let mut ws = WsClient::spawn(config);
    let mut events = Vec::new();
    within(async {
        while !events.contains(&WsEvent::Connected {
            kind: StreamKind::Market,
            connection: 2,
        }) {
            events.push(ws.next().await.expect("the client runs"));
        }
    })
    .await;
    let lost: Vec<&WsEvent> = events
        .iter()
        .filter(|e| matches!(e, WsEvent::Disconnected { .. }))
        .collect();
    assert_eq!(lost.len(), 2, "{events:?}");
    assert!(
        lost.iter().all(|e| matches!(e,
            WsEvent::Disconnected { reason, .. } if reason.contains("closed by the server"))),
        "{events:?}"
    );
    let c = fake.counts(Stream::Market);
    assert_eq!(c.dropped_without_pong, 0, "{c:?}");
    assert!(c.cut >= 2 && c.pongs >= 10, "{c:?}");
    ws.shutdown().await;
}

/// The user-stream messages the fake publishes next, until `n` of them (market ones skipped).
async fn private_messages(tap: &mut Tap, n: usize) -> Vec<String> {
    let mut got = Vec::new();
    within(async {
        while got.len() < n {
            if let Some(Outgoing::Private { text }) = tap.next().await {
                got.push(text);
            }
        }
    })
    .await;
    got
}

/// `e` and `o.X` of a user-stream message (`X` empty when it has none).
fn kind(text: &str) -> (String, String) {
    let v: serde_json::Value = serde_json::from_str(text).unwrap();
    (
        v["e"].as_str().unwrap_or_default().to_string(),
        v["o"]["X"].as_str().unwrap_or_default().to_string(),
    )
}

fn kinds(texts: &[String]) -> Vec<(String, String)> {
    texts.iter().map(|t| kind(t)).collect()
}

fn k(e: &str, x: &str) -> (String, String) {
    (e.to_string(), x.to_string())
}

const ORDER: OrderRef = OrderRef {
    position: 1,
    seq: 1,
};

/// A stop at 95 for the long, created through the venue (its `NEW` fed back to it).
async fn stop_at_95(venue: &mut BinanceVenue, tap: &mut Tap) -> i64 {
    let stop = venue.instrument(BTC).unwrap().units(dec!(95)).unwrap();
    let done = within(venue.execute(Command::Place { order: ORDER, stop }, 1_000)).await;
    assert!(
        matches!(done.events[..], [VenueEvent::Accepted { .. }]),
        "{done:?}"
    );
    let new = private_messages(tap, 1).await;
    assert_eq!(kinds(&new), vec![k("ALGO_UPDATE", "NEW")]);
    assert_eq!(venue.on_message(&new[0]).unwrap(), StreamNews::default());
    stop
}

/// The `ACCOUNT_UPDATE` of a trigger sent first (the flat position before any word of its
/// fill) and its `FINISHED` twice: the venue does not close at the last price but asks for a
/// re-check, which finds the stop's fill at its trigger's time; what follows is no news.
#[tokio::test]
async fn a_flat_position_told_before_its_fill_is_settled_by_a_recheck() {
    let fake = fake(|_| {}).await;
    let mut tap = fake.tap();
    let mut venue = venue_on_a_long(&fake).await;
    private_messages(&mut tap, 1).await; // the opening's ACCOUNT_UPDATE
    let stop = stop_at_95(&mut venue, &mut tap).await;
    fake.inject_stream(StreamFault::first(Pick::account()));
    fake.inject_stream(StreamFault::twice(Pick::algo("FINISHED")));
    // Crossed continuously at 94: filled at the stop, 95.
    fake.set_price(BTC, dec!(94), false, 2_000);
    let msgs = private_messages(&mut tap, 6).await;
    assert_eq!(
        kinds(&msgs),
        vec![
            k("ACCOUNT_UPDATE", ""),
            k("ALGO_UPDATE", "TRIGGERING"),
            k("ALGO_UPDATE", "TRIGGERED"),
            k("ORDER_TRADE_UPDATE", "FILLED"),
            k("ALGO_UPDATE", "FINISHED"),
            k("ALGO_UPDATE", "FINISHED"),
        ]
    );
    let flat = venue.on_message(&msgs[0]).unwrap();
    assert_eq!((flat.events, flat.actions), (vec![], vec![Action::Recheck]));
    let found = within(venue.recheck(9_999)).await.unwrap();
    assert_eq!(
        found.events,
        vec![VenueEvent::Triggered {
            order: ORDER,
            ts: 2_000,
            fill: stop
        }]
    );
    for m in &msgs[1..] {
        assert_eq!(venue.on_message(m).unwrap(), StreamNews::default(), "{m}");
    }
}

/// The fill and `FINISHED` sent after the flat `ACCOUNT_UPDATE`, everything twice: once the
/// stop was seen firing the flat position waits for its fill (no re-check, no close at the
/// last price), the fill closes it once, and the repeats are no news.
#[tokio::test]
async fn a_flat_position_after_the_stop_fired_waits_for_its_fill() {
    let fake = fake(|_| {}).await;
    let mut tap = fake.tap();
    let mut venue = venue_on_a_long(&fake).await;
    private_messages(&mut tap, 1).await;
    let stop = stop_at_95(&mut venue, &mut tap).await;
    for e in ["ALGO_UPDATE", "ORDER_TRADE_UPDATE", "ACCOUNT_UPDATE"] {
        fake.inject_stream(StreamFault::twice(Pick::event(e)).always());
    }
    fake.inject_stream(StreamFault::last(Pick::order("FILLED")));
    fake.inject_stream(StreamFault::last(Pick::algo("FINISHED")));
    fake.set_price(BTC, dec!(94), false, 2_000);
    let msgs = private_messages(&mut tap, 10).await;
    assert_eq!(
        kinds(&msgs),
        vec![
            k("ALGO_UPDATE", "TRIGGERING"),
            k("ALGO_UPDATE", "TRIGGERING"),
            k("ALGO_UPDATE", "TRIGGERED"),
            k("ALGO_UPDATE", "TRIGGERED"),
            k("ACCOUNT_UPDATE", ""),
            k("ACCOUNT_UPDATE", ""),
            k("ORDER_TRADE_UPDATE", "FILLED"),
            k("ORDER_TRADE_UPDATE", "FILLED"),
            k("ALGO_UPDATE", "FINISHED"),
            k("ALGO_UPDATE", "FINISHED"),
        ]
    );
    let mut events = Vec::new();
    for m in &msgs {
        let n = venue.on_message(m).unwrap();
        assert_eq!(n.actions, vec![], "{m}");
        events.extend(n.events);
    }
    assert_eq!(
        events,
        vec![VenueEvent::Triggered {
            order: ORDER,
            ts: 2_000,
            fill: stop
        }]
    );
}

/// A fake whose IP may use 40 of weight per 2 s window (Binance: 2400 per minute), banning
/// for 1 s.
async fn light_weight() -> FakeBinance {
    fake(|c| {
        c.setup.request_weight_per_min = 40;
        c.setup.weight_window_ms = 2_000;
        c.setup.ban_ms = 1_000;
    })
    .await
}

/// Each endpoint weighs what Binance's pages say (`positionSide/dual` 30, `positionRisk` 5,
/// the time 1, an order 0), every answer carries the weight used — refusals too — and the
/// adapter's client keeps the last figure.
#[tokio::test]
async fn every_answer_says_the_weight_used_and_the_client_keeps_it() {
    let fake = light_weight().await;
    let rest = rest_on(&fake);
    assert_eq!(rest.used_weight_1m(), None);
    within(rest.hedge_mode()).await.unwrap();
    assert_eq!(rest.used_weight_1m(), Some(30));
    within(rest.positions(Some(BTC))).await.unwrap();
    assert_eq!(rest.used_weight_1m(), Some(35));
    // Without the key, refused (-2015): counted, and said.
    let r = within(reqwest::get(format!(
        "{}/fapi/v2/positionRisk",
        fake.rest_url()
    )))
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(
        r.headers()
            .get("x-mbx-used-weight-1m")
            .map(|v| v.to_str().unwrap().to_string()),
        Some("40".into())
    );
    // The window passes: the weight is free again.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    within(rest.server_time_ms()).await.unwrap();
    assert_eq!(rest.used_weight_1m(), Some(1));
}

/// Over the weight: HTTP 429 `-1003` with `Retry-After`; a client that sends again during
/// it earns the 418, and the adapter's client then sends nothing until the ban ends. A
/// client that waits it out is served.
#[tokio::test]
async fn over_the_weight_429_then_418_for_a_client_that_keeps_going() {
    let fake = light_weight().await;
    let rest = rest_on(&fake);
    within(rest.hedge_mode()).await.unwrap();
    let refused = within(rest.hedge_mode()).await.unwrap_err();
    let RestError::Refused {
        outcome: Outcome::RateLimited { retry_after_ms },
        ..
    } = refused
    else {
        panic!("{refused:?}")
    };
    assert!(
        (1_000..=2_000).contains(&retry_after_ms),
        "{retry_after_ms}"
    );
    assert_eq!(
        rest.used_weight_1m(),
        Some(30),
        "the refused call not counted"
    );
    // Waiting it out: served.
    tokio::time::sleep(Duration::from_millis(retry_after_ms as u64)).await;
    within(rest.hedge_mode()).await.unwrap();
    // Over again, and going on at once: banned.
    within(rest.hedge_mode()).await.unwrap_err();
    let banned = within(rest.server_time_ms()).await.unwrap_err();
    assert!(
        matches!(
            banned,
            RestError::Refused {
                outcome: Outcome::Banned { .. },
                ..
            }
        ),
        "{banned:?}"
    );
    assert!(rest.banned_until().is_some());
    // Nothing more goes to the host during the ban.
    let sent = fake.requests().len();
    within(rest.server_time_ms()).await.unwrap_err();
    assert_eq!(fake.requests().len(), sent);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    within(rest.server_time_ms()).await.unwrap();
}

/// Fills in three executions, each a tick further (a market order walking the book).
async fn three_part_fills() -> FakeBinance {
    fake(|c| {
        c.setup.fill_parts = 3;
        c.setup.fill_slip_ticks = 1;
    })
    .await
}

/// `(l, L, z, ap)` of an `ORDER_TRADE_UPDATE`.
fn execution(text: &str) -> (String, String, String, String) {
    let v: serde_json::Value = serde_json::from_str(text).unwrap();
    let f = |k: &str| v["o"][k].as_str().unwrap_or_default().to_string();
    (f("l"), f("L"), f("z"), f("ap"))
}

fn x(l: &str, p: &str, z: &str, ap: &str) -> (String, String, String, String) {
    (l.into(), p.into(), z.into(), ap.into())
}

/// A stop's fill in three executions: `PARTIALLY_FILLED` twice (each followed by the smaller
/// position), then `FILLED` with the exact average, `FINISHED`, the flat position. The venue
/// tells one trigger, at the volume-weighted price of the executions, only at `FILLED`, and
/// no size change while the order fills.
#[tokio::test]
async fn a_stop_filled_in_three_executions_triggers_once_at_their_average() {
    let fake = three_part_fills().await;
    let mut tap = fake.tap();
    let mut venue = venue_on_a_long(&fake).await;
    private_messages(&mut tap, 1).await;
    stop_at_95(&mut venue, &mut tap).await;
    fake.set_price(BTC, dec!(94), false, 2_000);
    let msgs = private_messages(&mut tap, 9).await;
    assert_eq!(
        kinds(&msgs),
        vec![
            k("ALGO_UPDATE", "TRIGGERING"),
            k("ALGO_UPDATE", "TRIGGERED"),
            k("ORDER_TRADE_UPDATE", "PARTIALLY_FILLED"),
            k("ACCOUNT_UPDATE", ""),
            k("ORDER_TRADE_UPDATE", "PARTIALLY_FILLED"),
            k("ACCOUNT_UPDATE", ""),
            k("ORDER_TRADE_UPDATE", "FILLED"),
            k("ALGO_UPDATE", "FINISHED"),
            k("ACCOUNT_UPDATE", ""),
        ]
    );
    // 0.166 at 95, 0.166 at 94.9, 0.168 at 94.8: 47.4498 / 0.5 = 94.8996.
    assert_eq!(
        [&msgs[2], &msgs[4], &msgs[6]].map(|m| execution(m)),
        [
            x("0.166", "95", "0.166", "95"),
            x("0.166", "94.9", "0.332", "94.95"),
            x("0.168", "94.8", "0.5", "94.8996"),
        ]
    );
    let sizes: Vec<String> = [&msgs[3], &msgs[5], &msgs[8]]
        .iter()
        .map(|m| {
            let v: serde_json::Value = serde_json::from_str(m).unwrap();
            v["a"]["P"][0]["pa"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(sizes, ["0.334", "0.168", "0"]);
    let mut told = Vec::new();
    for (i, m) in msgs.iter().enumerate() {
        let n = venue.on_message(m).unwrap();
        assert_eq!(n.actions, vec![], "{m}");
        told.extend(n.events.into_iter().map(|e| (i, e)));
    }
    let avg = venue.instrument(BTC).unwrap().units(dec!(94.8996)).unwrap();
    assert_eq!(
        told,
        vec![(
            6,
            VenueEvent::Triggered {
                order: ORDER,
                ts: 2_000,
                fill: avg
            }
        )]
    );
    assert!(fake.positions().is_empty());
}

/// A close at market in three executions (at the mark, 100, walking down): one
/// `PositionClosed` at their average once filled, and the algo stop left alone.
#[tokio::test]
async fn a_close_at_market_in_three_executions_closes_once_at_their_average() {
    let fake = three_part_fills().await;
    let mut tap = fake.tap();
    let mut venue = venue_on_a_long(&fake).await;
    private_messages(&mut tap, 1).await;
    let done = within(venue.execute(Command::CloseAtMarket { position: 1 }, 1_500)).await;
    assert_eq!(done.events, vec![], "{done:?}");
    let msgs = private_messages(&mut tap, 6).await;
    assert_eq!(
        kinds(&msgs),
        vec![
            k("ORDER_TRADE_UPDATE", "PARTIALLY_FILLED"),
            k("ACCOUNT_UPDATE", ""),
            k("ORDER_TRADE_UPDATE", "PARTIALLY_FILLED"),
            k("ACCOUNT_UPDATE", ""),
            k("ORDER_TRADE_UPDATE", "FILLED"),
            k("ACCOUNT_UPDATE", ""),
        ]
    );
    let mut told = Vec::new();
    for m in &msgs {
        told.extend(venue.on_message(m).unwrap().events);
    }
    // 0.166 at 100, 0.166 at 99.9, 0.168 at 99.8: 99.8996.
    let avg = venue.instrument(BTC).unwrap().units(dec!(99.8996)).unwrap();
    assert_eq!(
        told,
        vec![VenueEvent::PositionClosed {
            position: 1,
            ts: 1_000,
            fill: avg
        }]
    );
}

/// The command's new flags refuse what cannot be: no pings, no executions, a negative slip.
#[test]
fn the_commands_flags_refuse_zero_timers_and_parts() {
    let data = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/data/BTCUSDT-bybit-1m-20221213.csv"
    );
    for (flag, value, says) in [
        ("--ping-every-ms", "0", "--ping-every-ms 0: must be > 0"),
        ("--cut-after-ms", "0", "--cut-after-ms 0: must be > 0"),
        ("--fill-parts", "0", "--fill-parts 0: must be >= 1"),
        (
            "--fill-slip-ticks",
            "-1",
            "--fill-slip-ticks -1: must be >= 0",
        ),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_trailstop"))
            .args(["fake-binance", data, "--listen", "127.0.0.1:0"])
            .arg(format!("{flag}={value}"))
            .env("BINANCE_API_KEY", "k")
            .env("BINANCE_API_SECRET", "s")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flag}: {err}");
        assert_eq!(err.matches(says).count(), 1, "{flag}: {err}");
    }
}
