//! The Bybit network layer against the fake Bybit on 127.0.0.1 (an ephemeral port): the
//! signed REST client and the stream client of `live::bybit`, each fault of `EXCHANGES.md`
//! §4.3 observed as its classified outcome, and the exact requests sent. Every wait is bounded.
#![cfg(feature = "live")]

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use serde_json::Value;

use trailstop::engine::{Instrument, Side};
use trailstop::live::TriggerPrice;
use trailstop::live::bybit::request::{self, PositionFilter, PositionIdx, StopLoss, Target};
use trailstop::live::bybit::response::{self, Answer, Outcome};
use trailstop::live::bybit::rest::{RestClient, RestConfig, RestError};
use trailstop::live::bybit::snapshot::{self, NOT_APPLIED};
use trailstop::live::bybit::stream::{OrderStatus, StreamMessage, TickerBook, TickerKind};
use trailstop::live::bybit::ws::{StreamKind, WsClient, WsConfig, WsEvent};
use trailstop::live::clock::{ManualClock, system_clock};
use trailstop::live::fake_bybit::{
    FakeBybit, FakeConfig, Fault, FaultKind, InstrumentSpec, Opening, Outgoing, Pace, Replay,
    Setup, Stream, Tick,
};
use trailstop::live::{Credentials, Secret};
use trailstop::sim::path::Policy;
use trailstop::venue::{Command, OrderRef, RejectReason, VenueEvent};

const KEY: &str = "fake-key-7Qx2";
const SECRET: &str = "fake-secret-9bZk4";
const BTC: &str = "BTCUSDT";
/// 2022-12-13 00:00 UTC, the data file's first candle.
const T0: i64 = 1_670_889_600_000;

fn setup() -> Setup {
    Setup::new(KEY, SECRET, vec![InstrumentSpec::new(BTC, dec!(0.5))])
}

fn creds(key: &str, secret: &str) -> Credentials {
    Credentials {
        api_key: Secret::new(key),
        api_secret: Secret::new(secret),
    }
}

async fn start(config: FakeConfig) -> FakeBybit {
    FakeBybit::start(config)
        .await
        .expect("the fake binds 127.0.0.1:0")
}

async fn fake() -> FakeBybit {
    start(FakeConfig::new(setup())).await
}

fn rest(fake: &FakeBybit, credentials: Option<Credentials>, timeout: Duration) -> RestClient {
    RestClient::new(
        RestConfig {
            base_url: fake.rest_url(),
            recv_window_ms: 5000,
            timeout,
            clock: system_clock(),
        },
        credentials,
    )
    .unwrap()
}

fn client(fake: &FakeBybit) -> RestClient {
    rest(fake, Some(creds(KEY, SECRET)), Duration::from_secs(5))
}

/// Awaits `f` for at most 10 s: no test can hang.
async fn within<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .expect("finished within 10 s")
}

fn instrument() -> Instrument {
    Instrument::new(dec!(0.5))
}

fn target(i: &Instrument, side: Side, size: Decimal) -> Target<'_> {
    Target {
        symbol: BTC,
        position_idx: PositionIdx::OneWay,
        side,
        size,
        instrument: i,
    }
}

fn stop(i: &Instrument, price: Decimal) -> StopLoss {
    StopLoss::from_units(BTC, i.units(price).unwrap(), i).unwrap()
}

fn set_stop(i: &Instrument, price: Decimal) -> request::Request {
    request::set_stop(
        &target(i, Side::Long, dec!(0.5)),
        stop(i, price),
        TriggerPrice::Mark,
    )
    .unwrap()
}

/// A long of 0.5 BTC opened at 17,000 (the mark).
fn long_at_17000(fake: &FakeBybit) {
    fake.set_price(BTC, dec!(17000), true, T0);
    fake.open_position(BTC, Side::Long, dec!(0.5), T0).unwrap();
}

fn oref(seq: u32) -> OrderRef {
    OrderRef { position: 1, seq }
}

async fn open_stream(fake: &FakeBybit, kind: StreamKind, topics: &[&str]) -> WsClient {
    let mut c = WsConfig::new(
        &fake.ws_url(),
        kind,
        topics.iter().map(|t| t.to_string()).collect(),
        system_clock(),
    );
    c.credentials = Some(creds(KEY, SECRET));
    c.backoff = Duration::from_millis(50);
    let mut ws = WsClient::spawn(c);
    match within(ws.next()).await {
        Some(WsEvent::Connected { connection: 0, .. }) => ws,
        other => panic!("expected Connected, got {other:?}"),
    }
}

/// The next stream message that `pick` accepts (others skipped), within 10 s.
async fn next_matching<T>(ws: &mut WsClient, mut pick: impl FnMut(&WsEvent) -> Option<T>) -> T {
    within(async {
        loop {
            let e = ws.next().await.expect("the stream task is alive");
            if let Some(t) = pick(&e) {
                return t;
            }
        }
    })
    .await
}

// --- Signing and time -------------------------------------------------------------------------

#[tokio::test]
async fn a_signed_request_is_accepted_and_a_bad_signature_or_key_refused() {
    let fake = fake().await;
    long_at_17000(&fake);
    let ok = within(client(&fake).positions(PositionFilter::Symbol(BTC)))
        .await
        .unwrap();
    assert_eq!(ok.len(), 1);
    assert!(ok[0].is_open());
    assert_eq!(ok[0].avg_price, dec!(17000));

    let wrong_secret = rest(&fake, Some(creds(KEY, "other")), Duration::from_secs(5));
    let e = within(wrong_secret.positions(PositionFilter::Symbol(BTC)))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &e,
            RestError::Refused {
                outcome: Outcome::Auth { code: 10004, .. },
                ..
            }
        ),
        "{e:?}"
    );
    let wrong_key = rest(&fake, Some(creds("nobody", SECRET)), Duration::from_secs(5));
    let e = within(wrong_key.positions(PositionFilter::Symbol(BTC)))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &e,
            RestError::Refused {
                outcome: Outcome::Auth { code: 10003, .. },
                ..
            }
        ),
        "{e:?}"
    );
    // No key at all: refused here, and nothing leaves.
    let sent = fake.requests().len();
    let none = rest(&fake, None, Duration::from_secs(5));
    let r = within(none.send(&set_stop(&instrument(), dec!(16900)))).await;
    assert!(matches!(r.outcome, Outcome::Auth { code: 0, .. }), "{r:?}");
    assert_eq!(fake.requests().len(), sent);
    // The key is not in the client's Debug output.
    assert!(!format!("{:?}", client(&fake)).contains(KEY));
}

#[tokio::test]
async fn clock_skew_is_10002_then_resynced_and_retried_once() {
    let fake = fake().await;
    long_at_17000(&fake);
    // The server runs 30 s behind: our timestamps are in its future.
    fake.set_clock_offset(-30_000);
    let c = client(&fake);
    let req = request::position_list(PositionFilter::Symbol(BTC), None).unwrap();
    let r = within(c.send(&req)).await;
    assert_eq!(r.outcome, Outcome::ClockSkew);
    assert_eq!(r.envelope.as_ref().unwrap().ret_code, 10002);
    assert_eq!(
        response::answer(
            &Command::Place {
                order: oref(1),
                stop: 1
            },
            &r.outcome,
            0,
            0
        ),
        Answer::ResyncAndRetry
    );

    let before = fake.requests().len();
    let r = within(c.send_resyncing(&req)).await;
    assert_eq!(r.outcome, Outcome::Done);
    // Refused, /v5/market/time, the retry: three requests.
    let paths: Vec<String> = fake.requests()[before..]
        .iter()
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(
        paths,
        ["/v5/position/list", "/v5/market/time", "/v5/position/list"]
    );
    let offset = c.clock_offset_ms();
    assert!((-31_000..=-29_000).contains(&offset), "offset {offset}");
}

// --- trading-stop, close at market ------------------------------------------------------------

#[tokio::test]
async fn trading_stop_sets_amends_and_takes_34040_as_success() {
    let fake = fake().await;
    long_at_17000(&fake);
    let c = client(&fake);
    let info = within(c.instruments(Some(BTC))).await.unwrap();
    assert_eq!(info.len(), 1);
    let i = info[0].instrument();
    assert_eq!(i.tick_size, dec!(0.5));

    let t = target(&i, Side::Long, dec!(0.5));
    let place = Command::Place {
        order: oref(1),
        stop: i.units(dec!(16900)).unwrap(),
    };
    let req = request::for_command(&place, &t, TriggerPrice::Mark, 0).unwrap();
    let r = within(c.send(&req)).await;
    assert_eq!(r.outcome, Outcome::Done);
    assert_eq!(
        response::answer(&place, &r.outcome, 5, 0),
        Answer::Event(VenueEvent::Accepted {
            order: oref(1),
            stop: place_stop(&place),
            ts: 5,
            venue_id: None
        })
    );
    let p = within(c.positions(PositionFilter::Symbol(BTC)))
        .await
        .unwrap();
    assert_eq!(p[0].stop_loss, Some(dec!(16900)));

    let amend = Command::Amend {
        order: oref(2),
        replaces: oref(1),
        stop: i.units(dec!(16950)).unwrap(),
    };
    let req = request::for_command(&amend, &t, TriggerPrice::Mark, 0).unwrap();
    assert_eq!(within(c.send(&req)).await.outcome, Outcome::Done);
    assert_eq!(fake.position(BTC, 0).stop_loss, Some(dec!(16950)));
    // The same amend again (a retry after an ambiguous outcome): 34040, i.e. done.
    let r = within(c.send(&req)).await;
    assert_eq!(r.envelope.as_ref().unwrap().ret_code, 34040);
    assert_eq!(r.outcome, Outcome::NotModified);
    assert!(matches!(
        response::answer(&amend, &r.outcome, 6, 0),
        Answer::Event(VenueEvent::Accepted { order, .. }) if order == oref(2)
    ));
    // Cancel: the documented "0" removes it.
    let cancel = Command::Cancel { order: oref(2) };
    let req = request::for_command(&cancel, &t, TriggerPrice::Mark, 0).unwrap();
    assert_eq!(within(c.send(&req)).await.outcome, Outcome::Done);
    assert_eq!(fake.position(BTC, 0).stop_loss, None);
}

fn place_stop(c: &Command) -> i64 {
    match *c {
        Command::Place { stop, .. } | Command::Amend { stop, .. } => stop,
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn a_stop_on_the_wrong_side_of_the_mark_is_would_trigger() {
    let fake = fake().await;
    long_at_17000(&fake);
    let c = client(&fake);
    let i = instrument();
    let r = within(c.send(&set_stop(&i, dec!(17000.5)))).await;
    let env = r.envelope.clone().unwrap();
    assert_eq!(env.ret_code, 10001);
    assert_eq!(
        env.ret_msg,
        "sl:170005000 set for Buy position should lower base_price:170000000??MarkPrice"
    );
    assert_eq!(r.outcome, Outcome::WouldTrigger);
    let market = i.units(dec!(17000)).unwrap();
    let place = Command::Place {
        order: oref(1),
        stop: i.units(dec!(17000.5)).unwrap(),
    };
    assert_eq!(
        response::answer(&place, &r.outcome, 9, market),
        Answer::Event(VenueEvent::Rejected {
            order: oref(1),
            ts: 9,
            reason: RejectReason::WouldTrigger { market }
        })
    );
    assert_eq!(fake.position(BTC, 0).stop_loss, None, "nothing set");
}

#[tokio::test]
async fn close_at_market_is_reduce_only_and_a_second_finds_nothing() {
    let fake = fake().await;
    long_at_17000(&fake);
    let c = client(&fake);
    let i = instrument();
    let t = target(&i, Side::Long, dec!(0.5));
    let r = within(c.send(&request::close_at_market(&t, "ts-1-c0").unwrap())).await;
    assert_eq!(r.outcome, Outcome::Done);
    let result = r.envelope.unwrap().result;
    assert_eq!(result["orderLinkId"], "ts-1-c0");
    assert_eq!(fake.position(BTC, 0).side, None);
    let close = Command::CloseAtMarket { position: 1 };
    let r = within(c.send(&request::close_at_market(&t, "ts-1-c1").unwrap())).await;
    assert_eq!(r.outcome, Outcome::NoPosition);
    assert_eq!(response::answer(&close, &r.outcome, 0, 0), Answer::ReadBack);
}

// --- Streams ------------------------------------------------------------------------------------

#[tokio::test]
async fn tickers_come_as_a_snapshot_then_deltas_stamped_with_data_time() {
    let fake = fake().await;
    fake.set_price(BTC, dec!(17000), true, T0);
    let mut ws = open_stream(&fake, StreamKind::Public, &["tickers.BTCUSDT"]).await;
    let mut book = TickerBook::new(TriggerPrice::Mark);
    let ticker = |e: &WsEvent| match e {
        WsEvent::Message(StreamMessage::Ticker(t)) => Some(t.clone()),
        _ => None,
    };
    let snap = next_matching(&mut ws, ticker).await;
    assert_eq!(snap.kind, TickerKind::Snapshot);
    assert_eq!((snap.mark_price, snap.ts), (Some(dec!(17000)), T0));
    assert!(book.apply(&snap).is_some());
    fake.set_price(BTC, dec!(17010.5), false, T0 + 20_000);
    fake.set_price(BTC, dec!(17004), false, T0 + 40_000);
    let mut points = Vec::new();
    for _ in 0..2 {
        let d = next_matching(&mut ws, ticker).await;
        assert_eq!(d.kind, TickerKind::Delta);
        points.push(book.apply(&d).unwrap());
    }
    let got: Vec<(Decimal, i64)> = points.iter().map(|p| (p.price, p.ts)).collect();
    assert_eq!(
        got,
        [(dec!(17010.5), T0 + 20_000), (dec!(17004), T0 + 40_000)]
    );
    ws.shutdown().await;
}

#[tokio::test]
async fn pings_every_interval_are_answered_with_pongs() {
    let fake = fake().await;
    let mut c = WsConfig::new(
        &fake.ws_url(),
        StreamKind::Private,
        vec!["position".into()],
        system_clock(),
    );
    c.credentials = Some(creds(KEY, SECRET));
    c.ping_every = Duration::from_millis(100);
    let mut ws = WsClient::spawn(c);
    let mut pongs = 0;
    while pongs < 3 {
        match within(ws.next()).await.unwrap() {
            WsEvent::Message(StreamMessage::Pong) => pongs += 1,
            WsEvent::Connected { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    let received = fake.received();
    let pings = received
        .iter()
        .filter(|(s, t)| *s == Stream::Private && t == r#"{"op":"ping"}"#)
        .count();
    assert!(pings >= 3, "{received:?}");
    // Auth came first, then the subscription, then only pings.
    let auth: Value = serde_json::from_str(&received[0].1).unwrap();
    assert_eq!(auth["op"], "auth");
    assert_eq!(auth["args"][0], KEY);
    assert_eq!(received[1].1, r#"{"op":"subscribe","args":["position"]}"#);
    ws.shutdown().await;
}

#[tokio::test]
async fn a_refused_auth_ends_the_private_stream() {
    let fake = fake().await;
    let mut c = WsConfig::new(
        &fake.ws_url(),
        StreamKind::Private,
        vec!["order".into()],
        system_clock(),
    );
    c.credentials = Some(creds(KEY, "wrong"));
    let mut ws = WsClient::spawn(c);
    match within(ws.next()).await {
        Some(WsEvent::Refused {
            kind: StreamKind::Private,
            reason,
        }) => {
            assert!(reason.contains("10004"), "{reason}");
            assert!(!reason.contains(KEY), "{reason}");
        }
        other => panic!("expected Refused, got {other:?}"),
    }
    assert_eq!(within(ws.next()).await, None, "the task ended");
    assert_eq!(
        fake.connections(Stream::Private),
        1,
        "no reconnect after a refusal"
    );
}

/// The data file replayed as the mark price (DESIGN §3 points, `olhc`), a long opened at the
/// first candle, a stop under the market: the point that crosses it triggers the stop, and
/// the private stream says so with the data time and the fill the backtester would use.
#[tokio::test]
async fn a_stop_triggered_by_the_replayed_mark_produces_the_private_messages() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/BTCUSDT-bybit-1m-20221213.csv");
    let (ticks, tick) =
        trailstop::live::fake_bybit::replay::load(&file, None, Policy::Olhc).unwrap();
    assert_eq!(tick, dec!(0.01), "the prices' own decimals");
    let opening = Opening {
        at: ticks[0].ts,
        side: Side::Long,
        qty: dec!(0.5),
        price: None,
    };
    let mut config = FakeConfig::new(Setup::new(
        KEY,
        SECRET,
        vec![InstrumentSpec::new(BTC, dec!(0.01))],
    ));
    config.replay = Some(Replay::new(BTC, ticks.clone(), vec![opening]));
    let fake = start(config).await;
    let mut ws = open_stream(
        &fake,
        StreamKind::Private,
        &["position", "order", "execution"],
    )
    .await;
    assert!(fake.step(), "the first point opens the long");
    let opened = next_matching(&mut ws, |e| match e {
        WsEvent::Message(StreamMessage::Positions { list, .. }) => Some(list[0].clone()),
        _ => None,
    })
    .await;
    assert!(opened.is_open());
    assert_eq!(opened.avg_price, ticks[0].price);

    // A stop 10 below the entry, then step until the venue reports the close.
    let i = Instrument::new(dec!(0.01));
    let stop_price = ticks[0].price - dec!(10);
    let c = client(&fake);
    let t = Target {
        instrument: &i,
        ..target(&i, Side::Long, dec!(0.5))
    };
    let r =
        within(c.send(&request::set_stop(&t, stop(&i, stop_price), TriggerPrice::Mark).unwrap()))
            .await;
    assert_eq!(r.outcome, Outcome::Done);
    let hit = ticks
        .iter()
        .skip(1)
        .position(|t| t.price <= stop_price)
        .expect("the day's data goes 10 below its open")
        + 1;
    let fill = if ticks[hit].gap {
        ticks[hit].price
    } else {
        stop_price
    };
    for _ in 0..hit {
        assert!(fake.step());
    }
    let order = next_matching(&mut ws, |e| match e {
        WsEvent::Message(StreamMessage::Orders { list, .. })
            if list[0].status == OrderStatus::Filled =>
        {
            Some(list[0].clone())
        }
        _ => None,
    })
    .await;
    assert!(order.is_stop_loss());
    assert_eq!(
        order.stop_event(oref(1), &i).unwrap(),
        Some(VenueEvent::Triggered {
            order: oref(1),
            ts: ticks[hit].ts,
            fill: i.units(fill).unwrap()
        })
    );
    let exec = next_matching(&mut ws, |e| match e {
        WsEvent::Message(StreamMessage::Executions { list, .. }) => Some(list[0].clone()),
        _ => None,
    })
    .await;
    assert!(exec.is_stop_loss_fill());
    assert_eq!(exec.exec_price, fill);
    assert_eq!(exec.exec_time_ms, ticks[hit].ts);
    assert_eq!(exec.closed_size, Some(dec!(0.5)));
    let closed = next_matching(&mut ws, |e| match e {
        WsEvent::Message(StreamMessage::Positions { ts, list }) => Some((*ts, list[0].clone())),
        _ => None,
    })
    .await;
    assert_eq!(closed.0, ticks[hit].ts);
    assert!(!closed.1.is_open());
    assert_eq!(fake.position(BTC, 0).side, None);
    ws.shutdown().await;
}

/// A stand-in for `trailstop live`'s `GET /status`: `last_price_ts` is what the test sets.
async fn status_server(last: std::sync::Arc<std::sync::atomic::AtomicI64>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/status", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let last = last.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let body = format!(
                    r#"{{"reconciled":true,"symbols":{{"BTCUSDT":{{"last_price_ts":{},"price":"1"}}}},"positions":[]}}"#,
                    last.load(std::sync::atomic::Ordering::SeqCst)
                );
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    url
}

/// Lockstep: the fake replays the next point only once the client's status shows the last one
/// processed.
#[tokio::test]
async fn a_lockstep_replay_waits_for_the_client_status() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicI64, Ordering};
    let last = Arc::new(AtomicI64::new(0));
    let url = status_server(last.clone()).await;
    let ticks: Vec<Tick> = (0..3)
        .map(|k| Tick {
            ts: T0 + k * 1000,
            price: dec!(17000) + Decimal::from(k),
            gap: true,
        })
        .collect();
    let mut config = FakeConfig::new(setup());
    config.replay = Some(Replay::new(BTC, ticks, Vec::new()));
    config.pace = Pace::Lockstep {
        status_url: url,
        symbol: BTC.into(),
        poll: Duration::from_millis(5),
    };
    let fake = start(config).await;
    let mut ws = open_stream(&fake, StreamKind::Public, &["tickers.BTCUSDT"]).await;
    let ticker = |e: &WsEvent| match e {
        WsEvent::Message(StreamMessage::Ticker(t)) => Some(t.ts),
        _ => None,
    };
    assert_eq!(next_matching(&mut ws, ticker).await, T0);
    // Not processed yet: nothing more comes.
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(fake.remaining(), 2);
    last.store(T0, Ordering::SeqCst);
    assert_eq!(next_matching(&mut ws, ticker).await, T0 + 1000);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(fake.remaining(), 1);
    last.store(T0 + 1000, Ordering::SeqCst);
    assert_eq!(next_matching(&mut ws, ticker).await, T0 + 2000);
    assert_eq!(fake.remaining(), 0);
    ws.shutdown().await;
}

// --- Faults (EXCHANGES.md §4.3) -----------------------------------------------------------------

/// A stop at 16,900 rests; the next request is for 16,950 under `fault`. Returns the outcome
/// and the read-back resolution of a Query for it.
async fn amend_under(fault: FaultKind) -> (Outcome, VenueEvent, FakeBybit) {
    let fake = fake().await;
    long_at_17000(&fake);
    let i = instrument();
    let c = rest(&fake, Some(creds(KEY, SECRET)), Duration::from_millis(300));
    assert_eq!(
        within(c.send(&set_stop(&i, dec!(16900)))).await.outcome,
        Outcome::Done
    );
    fake.inject(Fault::on(request::PATH_TRADING_STOP, fault));
    let r = within(c.send(&set_stop(&i, dec!(16950)))).await;
    // Resolved as the adapter does after an ambiguous outcome: read the position back.
    let list = within(c.positions(PositionFilter::Symbol(BTC)))
        .await
        .unwrap();
    let sent = i.units(dec!(16950)).unwrap();
    let ev = snapshot::resolve_query(oref(2), sent, list.first(), &i, 7).unwrap();
    (r.outcome, ev, fake)
}

#[tokio::test]
async fn ambiguous_timeout_after_the_venue_applied_reads_back_as_accepted() {
    let hold = Duration::from_millis(1500);
    let (outcome, ev, fake) = amend_under(FaultKind::TimeoutAfterApply { hold }).await;
    assert!(
        matches!(&outcome, Outcome::Ambiguous { detail } if detail == "timed out"),
        "{outcome:?}"
    );
    let amend = Command::Amend {
        order: oref(2),
        replaces: oref(1),
        stop: 1,
    };
    assert_eq!(
        response::answer(&amend, &outcome, 3, 0),
        Answer::Event(VenueEvent::Ambiguous {
            order: oref(2),
            ts: 3
        })
    );
    assert!(
        matches!(ev, VenueEvent::Accepted { order, .. } if order == oref(2)),
        "{ev:?}"
    );
    assert_eq!(fake.position(BTC, 0).stop_loss, Some(dec!(16950)));
}

#[tokio::test]
async fn ambiguous_timeout_before_the_venue_applied_reads_back_as_not_applied() {
    let hold = Duration::from_millis(1500);
    let (outcome, ev, fake) = amend_under(FaultKind::TimeoutBeforeApply { hold }).await;
    assert!(matches!(outcome, Outcome::Ambiguous { .. }), "{outcome:?}");
    assert_eq!(
        ev,
        VenueEvent::Rejected {
            order: oref(2),
            ts: 7,
            reason: RejectReason::Invalid { code: NOT_APPLIED }
        }
    );
    assert_eq!(
        fake.position(BTC, 0).stop_loss,
        Some(dec!(16900)),
        "the old stop rests"
    );
}

#[tokio::test]
async fn http_503_after_applying_is_ambiguous_and_reads_back_as_accepted() {
    let (outcome, ev, _fake) = amend_under(FaultKind::ServerErrorAfterApply).await;
    assert_eq!(
        outcome,
        Outcome::Ambiguous {
            detail: "HTTP 503".into()
        }
    );
    assert!(matches!(ev, VenueEvent::Accepted { .. }), "{ev:?}");
}

#[tokio::test]
async fn injected_base_price_refusal_is_would_trigger() {
    let (outcome, ev, fake) = amend_under(FaultKind::BasePrice).await;
    assert_eq!(outcome, Outcome::WouldTrigger);
    assert!(matches!(ev, VenueEvent::Rejected { .. }));
    assert_eq!(fake.position(BTC, 0).stop_loss, Some(dec!(16900)));
}

#[tokio::test]
async fn rate_limit_10006_waits_until_the_reset_header() {
    let (outcome, _, fake) = amend_under(FaultKind::RateLimited { reset_in_ms: 640 }).await;
    let Outcome::RateLimited { retry_after_ms } = outcome else {
        panic!("{outcome:?}")
    };
    // The reset is 640 ms after the server's answer; the client reads it a little later.
    assert!((400..=640).contains(&retry_after_ms), "{retry_after_ms}");
    let amend = Command::Amend {
        order: oref(2),
        replaces: oref(1),
        stop: 1,
    };
    assert!(matches!(
        response::answer(&amend, &outcome, 0, 0),
        Answer::Event(VenueEvent::Rejected {
            reason: RejectReason::RateLimited { .. },
            ..
        })
    ));
    assert_eq!(fake.position(BTC, 0).stop_loss, Some(dec!(16900)));
}

#[tokio::test]
async fn the_eleventh_order_call_in_a_second_is_rate_limited_until_the_reset() {
    let fake = fake().await;
    long_at_17000(&fake);
    let c = client(&fake);
    let i = instrument();
    let mut outcomes = Vec::new();
    for k in 0..11 {
        let price = dec!(16000) + Decimal::from(k);
        outcomes.push(within(c.send(&set_stop(&i, price))).await);
    }
    assert!(outcomes[..10].iter().all(|r| r.outcome == Outcome::Done));
    let last = &outcomes[10];
    assert_eq!(last.envelope.as_ref().unwrap().ret_code, 10006);
    assert_eq!(last.rate.limit, Some(10));
    assert_eq!(last.rate.remaining, Some(0));
    let Outcome::RateLimited { retry_after_ms } = last.outcome else {
        panic!("{:?}", last.outcome)
    };
    assert!((0..=1000).contains(&retry_after_ms), "{retry_after_ms}");
    // The header on a success says what is left.
    assert_eq!(outcomes[0].rate.remaining, Some(9));
}

#[tokio::test]
async fn a_refused_subscription_ends_the_stream() {
    let fake = fake().await;
    let mut ws = WsClient::spawn(WsConfig::new(
        &fake.ws_url(),
        StreamKind::Public,
        vec!["tickers.NOPEUSDT".into()],
        system_clock(),
    ));
    match within(ws.next()).await {
        Some(WsEvent::Refused { reason, .. }) => {
            assert!(reason.contains("subscribe refused"), "{reason}");
            assert!(reason.contains("tickers.NOPEUSDT"), "{reason}");
        }
        other => panic!("expected Refused, got {other:?}"),
    }
    assert_eq!(within(ws.next()).await, None);
}

#[tokio::test]
async fn http_403_is_banned_and_halts() {
    let (outcome, _, _fake) = amend_under(FaultKind::Forbidden).await;
    assert_eq!(outcome, Outcome::Banned);
    let amend = Command::Amend {
        order: oref(2),
        replaces: oref(1),
        stop: 1,
    };
    assert_eq!(response::answer(&amend, &outcome, 0, 0), Answer::Halt);
}

#[tokio::test]
async fn injected_clock_skew_resyncs_and_the_retry_succeeds() {
    let fake = fake().await;
    long_at_17000(&fake);
    let c = client(&fake);
    fake.inject(Fault::on(request::PATH_TRADING_STOP, FaultKind::ClockSkew));
    let r = within(c.send_resyncing(&set_stop(&instrument(), dec!(16900)))).await;
    assert_eq!(r.outcome, Outcome::Done);
    assert_eq!(fake.position(BTC, 0).stop_loss, Some(dec!(16900)));
    let paths: Vec<String> = fake.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(
        paths,
        [
            "/v5/position/trading-stop",
            "/v5/market/time",
            "/v5/position/trading-stop"
        ]
    );
}

#[tokio::test]
async fn a_dropped_stream_reconnects_and_subscribes_again() {
    let fake = fake().await;
    fake.set_price(BTC, dec!(17000), true, T0);
    let mut ws = open_stream(&fake, StreamKind::Public, &["tickers.BTCUSDT"]).await;
    fake.drop_streams(Some(Stream::Public));
    let reason = next_matching(&mut ws, |e| match e {
        WsEvent::Disconnected { reason, .. } => Some(reason.clone()),
        _ => None,
    })
    .await;
    assert!(!reason.is_empty());
    let n = next_matching(&mut ws, |e| match e {
        WsEvent::Connected { connection, .. } => Some(*connection),
        _ => None,
    })
    .await;
    assert_eq!(n, 1);
    assert_eq!(fake.connections(Stream::Public), 2);
    let subs = fake
        .received()
        .iter()
        .filter(|(_, t)| t.contains("subscribe"))
        .count();
    assert_eq!(subs, 2, "subscribed on each connection");
    fake.set_price(BTC, dec!(17001), false, T0 + 1);
    let t = next_matching(&mut ws, |e| match e {
        WsEvent::Message(StreamMessage::Ticker(t)) if t.ts == T0 + 1 => Some(t.clone()),
        _ => None,
    })
    .await;
    assert_eq!(t.mark_price, Some(dec!(17001)));
    ws.shutdown().await;
}

#[tokio::test]
async fn duplicate_out_of_order_and_spurious_messages_reach_the_client_as_sent() {
    let fake = fake().await;
    long_at_17000(&fake);
    let mut private = open_stream(&fake, StreamKind::Private, &["position", "order"]).await;
    let mut public = open_stream(&fake, StreamKind::Public, &["tickers.BTCUSDT"]).await;
    let c = client(&fake);
    let i = instrument();
    let msg = |e: &WsEvent| match e {
        WsEvent::Message(m @ (StreamMessage::Orders { .. } | StreamMessage::Positions { .. })) => {
            Some(m.clone())
        }
        _ => None,
    };

    // Duplicate: the stop's order update twice (Bybit's double `Filled`, here `Untriggered`).
    fake.duplicate_next_private(1);
    assert_eq!(
        within(c.send(&set_stop(&i, dec!(16900)))).await.outcome,
        Outcome::Done
    );
    let a = next_matching(&mut private, msg).await;
    let b = next_matching(&mut private, msg).await;
    assert!(matches!(a, StreamMessage::Orders { .. }));
    assert_eq!(a, b);
    assert!(matches!(
        next_matching(&mut private, msg).await,
        StreamMessage::Positions { .. }
    ));

    // Swapped: the position update arrives before the order update it follows.
    fake.swap_next_private();
    assert_eq!(
        within(c.send(&set_stop(&i, dec!(16950)))).await.outcome,
        Outcome::Done
    );
    assert!(matches!(
        next_matching(&mut private, msg).await,
        StreamMessage::Positions { .. }
    ));
    assert!(matches!(
        next_matching(&mut private, msg).await,
        StreamMessage::Orders { .. }
    ));

    // Spurious: a position message with nothing changed; the parsed exposure says so.
    fake.spurious_position(BTC, 0);
    let StreamMessage::Positions { list, .. } = next_matching(&mut private, msg).await else {
        unreachable!()
    };
    let before = &within(c.positions(PositionFilter::Symbol(BTC)))
        .await
        .unwrap()[0];
    assert!(list[0].same_exposure(before));
    assert_eq!(list[0].event(1, Some(before), 0, &i).unwrap(), None);

    // A ticker stamped before the last one: the book drops it and counts it.
    let mut book = TickerBook::new(TriggerPrice::Mark);
    let ticker = |e: &WsEvent| match e {
        WsEvent::Message(StreamMessage::Ticker(t)) => Some(t.clone()),
        _ => None,
    };
    book.apply(&next_matching(&mut public, ticker).await);
    fake.set_price(BTC, dec!(17002), false, T0 + 5_000);
    fake.emit(Outgoing::Public {
        symbol: BTC.into(),
        text: format!(
            r#"{{"topic":"tickers.BTCUSDT","type":"delta","data":{{"symbol":"BTCUSDT","markPrice":"16000"}},"cs":1,"ts":{}}}"#,
            T0 + 4_000
        ),
    });
    assert!(
        book.apply(&next_matching(&mut public, ticker).await)
            .is_some()
    );
    assert_eq!(book.apply(&next_matching(&mut public, ticker).await), None);
    assert_eq!(book.dropped_stale, 1);
    assert_eq!(book.prices(BTC).1, Some(dec!(17002)));
    private.shutdown().await;
    public.shutdown().await;
}

#[tokio::test]
async fn a_venue_not_up_yet_is_retried_until_it_is() {
    // A free port, then nothing on it for a while.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut c = WsConfig::new(
        &format!("ws://127.0.0.1:{port}"),
        StreamKind::Public,
        vec!["tickers.BTCUSDT".into()],
        system_clock(),
    );
    c.backoff = Duration::from_millis(20);
    c.max_backoff = Duration::from_millis(80);
    let mut ws = WsClient::spawn(c);
    for _ in 0..2 {
        match within(ws.next()).await {
            Some(WsEvent::Disconnected { reason, .. }) => {
                assert!(reason.starts_with("connect: "), "{reason}")
            }
            other => panic!("expected a failed connect, got {other:?}"),
        }
    }
    let mut config = FakeConfig::new(setup());
    config.listen = format!("127.0.0.1:{port}").parse().unwrap();
    let fake = start(config).await;
    // Failed attempts are not connections: the first success is connection 0.
    let n = next_matching(&mut ws, |e| match e {
        WsEvent::Connected { connection, .. } => Some(*connection),
        _ => None,
    })
    .await;
    assert_eq!(n, 0);
    assert_eq!(fake.connections(Stream::Public), 1);
    ws.shutdown().await;
}

/// `https://` and `wss://` go through rustls (ring, the system's roots): against a plain-HTTP
/// port the handshake fails, and that is an outcome and an event, not a panic (no crypto
/// provider missing, no second TLS stack).
#[tokio::test]
async fn tls_to_a_plain_port_fails_cleanly() {
    let fake = fake().await;
    let https = RestClient::new(
        RestConfig {
            base_url: format!("https://{}", fake.addr()),
            recv_window_ms: 5000,
            timeout: Duration::from_secs(5),
            clock: system_clock(),
        },
        Some(creds(KEY, SECRET)),
    )
    .unwrap();
    let r = within(https.send(&request::server_time())).await;
    assert!(
        matches!(
            r.outcome,
            Outcome::NotSent { .. } | Outcome::Ambiguous { .. }
        ),
        "{r:?}"
    );
    assert_eq!(r.status, None);
    let mut c = WsConfig::new(
        &format!("wss://{}", fake.addr()),
        StreamKind::Public,
        vec!["tickers.BTCUSDT".into()],
        system_clock(),
    );
    c.backoff = Duration::from_secs(5);
    let mut ws = WsClient::spawn(c);
    match within(ws.next()).await {
        Some(WsEvent::Disconnected { reason, .. }) => {
            assert!(reason.starts_with("connect: "), "{reason}")
        }
        other => panic!("expected a failed connect, got {other:?}"),
    }
    ws.shutdown().await;
}

#[tokio::test]
async fn a_silent_connection_is_given_up_and_replaced() {
    let fake = fake().await;
    let mut c = WsConfig::new(
        &fake.ws_url(),
        StreamKind::Private,
        vec!["position".into()],
        system_clock(),
    );
    c.credentials = Some(creds(KEY, SECRET));
    c.ping_every = Duration::from_millis(50);
    c.silent_after = Duration::from_millis(300);
    c.backoff = Duration::from_millis(50);
    let mut ws = WsClient::spawn(c);
    assert!(matches!(
        within(ws.next()).await,
        Some(WsEvent::Connected { connection: 0, .. })
    ));
    // No pong, no data: the link is dead though the socket is open.
    fake.mute_streams(Some(Stream::Private));
    let reason = next_matching(&mut ws, |e| match e {
        WsEvent::Disconnected { reason, .. } => Some(reason.clone()),
        _ => None,
    })
    .await;
    assert!(reason.contains("nothing heard"), "{reason}");
    fake.unmute_streams();
    let n = next_matching(&mut ws, |e| match e {
        WsEvent::Connected { connection, .. } => Some(*connection),
        _ => None,
    })
    .await;
    assert!(n >= 1);
    ws.shutdown().await;
}

// --- Request shapes -----------------------------------------------------------------------------

fn header<'a>(
    r: &'a trailstop::live::fake_bybit::wire::HttpRequest,
    name: &str,
) -> Option<&'a str> {
    r.header(name)
}

/// The exact request line, body and headers of each call, at a fixed clock. The signatures
/// were computed independently (Python's `hmac`) over `timestamp + key + recv_window +
/// payload` for these bytes.
#[tokio::test]
async fn each_call_sends_exactly_these_bytes() {
    const T: i64 = 1_767_000_000_000;
    let clock = ManualClock::new(T);
    let mut config = FakeConfig::new(setup());
    config.clock = clock.clock();
    let fake = start(config).await;
    long_at_17000(&fake);
    let c = RestClient::new(
        RestConfig {
            base_url: fake.rest_url(),
            recv_window_ms: 5000,
            timeout: Duration::from_secs(5),
            clock: clock.clock(),
        },
        Some(creds(KEY, SECRET)),
    )
    .unwrap();
    let i = instrument();
    let t = target(&i, Side::Long, dec!(0.5));
    within(async {
        assert_eq!(c.server_time_ms().await.unwrap(), T);
        c.instruments(Some(BTC)).await.unwrap();
        c.positions(PositionFilter::Symbol(BTC)).await.unwrap();
        assert_eq!(
            c.send(&set_stop(&i, dec!(16900))).await.outcome,
            Outcome::Done
        );
        assert_eq!(
            c.send(&request::remove_stop(&t).unwrap()).await.outcome,
            Outcome::Done
        );
        assert_eq!(
            c.send(&request::close_at_market(&t, "ts-1-c0").unwrap())
                .await
                .outcome,
            Outcome::Done
        );
        let fills = c.executions(BTC, Some(T0)).await.unwrap();
        // Newest first: the close, then the opening.
        assert_eq!(fills.len(), 2);
        assert_eq!(fills[0].order_link_id, "ts-1-c0");
        assert_eq!(fills[0].closed_size, Some(dec!(0.5)));
        assert_eq!(fills[1].closed_size, Some(dec!(0)));
    })
    .await;
    let got = fake.requests();
    let want: [(&str, &str, &str, &str, Option<&str>); 7] = [
        ("GET", "/v5/market/time", "", "", None),
        (
            "GET",
            "/v5/market/instruments-info",
            "category=linear&symbol=BTCUSDT",
            "",
            None,
        ),
        (
            "GET",
            "/v5/position/list",
            "category=linear&symbol=BTCUSDT",
            "",
            Some(SIGN_LIST),
        ),
        (
            "POST",
            "/v5/position/trading-stop",
            "",
            r#"{"category":"linear","symbol":"BTCUSDT","tpslMode":"Full","positionIdx":0,"stopLoss":"16900","slTriggerBy":"MarkPrice","slOrderType":"Market"}"#,
            Some(SIGN_SET),
        ),
        (
            "POST",
            "/v5/position/trading-stop",
            "",
            r#"{"category":"linear","symbol":"BTCUSDT","tpslMode":"Full","positionIdx":0,"stopLoss":"0"}"#,
            Some(SIGN_REMOVE),
        ),
        (
            "POST",
            "/v5/order/create",
            "",
            r#"{"category":"linear","symbol":"BTCUSDT","side":"Sell","orderType":"Market","qty":"0.5","positionIdx":0,"reduceOnly":true,"orderLinkId":"ts-1-c0"}"#,
            Some(SIGN_CLOSE),
        ),
        (
            "GET",
            "/v5/execution/list",
            "category=linear&symbol=BTCUSDT&startTime=1670889600000&limit=100",
            "",
            Some(SIGN_FILLS),
        ),
    ];
    assert_eq!(got.len(), want.len(), "{got:#?}");
    for (r, (method, path, query, body, sign)) in got.iter().zip(want) {
        assert_eq!(
            (
                r.method.as_str(),
                r.path.as_str(),
                r.query.as_str(),
                r.body.as_str()
            ),
            (method, path, query, body)
        );
        match sign {
            Some(sign) => {
                assert_eq!(header(r, "x-bapi-api-key"), Some(KEY), "{path}");
                assert_eq!(
                    header(r, "x-bapi-timestamp"),
                    Some(T.to_string().as_str()),
                    "{path}"
                );
                assert_eq!(header(r, "x-bapi-recv-window"), Some("5000"), "{path}");
                assert_eq!(header(r, "x-bapi-sign"), Some(sign), "{path}: {body}");
            }
            None => {
                let bapi: Vec<_> = r
                    .headers
                    .iter()
                    .filter(|(n, _)| n.starts_with("x-bapi"))
                    .collect();
                assert!(bapi.is_empty(), "{path} is public: {bapi:?}");
            }
        }
        if method == "POST" {
            assert_eq!(
                header(r, "content-type"),
                Some("application/json"),
                "{path}"
            );
        }
    }
}

/// The private stream's first message, exactly: `expires` = the clock + 10 s, signed over
/// `"GET/realtime" + expires` (computed independently with Python's `hmac`).
#[tokio::test]
async fn the_stream_auth_and_subscribe_are_exactly_these_messages() {
    const T: i64 = 1_767_000_000_000;
    let clock = ManualClock::new(T);
    let mut config = FakeConfig::new(setup());
    config.clock = clock.clock();
    let fake = start(config).await;
    let mut c = WsConfig::new(
        &fake.ws_url(),
        StreamKind::Private,
        vec!["position".into(), "order".into(), "execution".into()],
        clock.clock(),
    );
    c.credentials = Some(creds(KEY, SECRET));
    let mut ws = WsClient::spawn(c);
    assert!(matches!(
        within(ws.next()).await,
        Some(WsEvent::Connected { .. })
    ));
    let got: Vec<String> = fake.received().into_iter().map(|(_, t)| t).collect();
    assert_eq!(
        got,
        [
            r#"{"op":"auth","args":["fake-key-7Qx2",1767000010000,"8e6bf9a883fa01628bf6f10ab1c4de34478068102ec5236550f4212483a1f67d"]}"#,
            r#"{"op":"subscribe","args":["position","order","execution"]}"#,
        ]
    );
    ws.shutdown().await;
}

const SIGN_LIST: &str = "4688962627a1d7bf863f4a40619ec8d51f04df601cf0c604ec88c45fcc62c5d4";
const SIGN_SET: &str = "ab7d0b24422de3c62f85943f446d3782585fa717c892786d0846fd7848f035ff";
const SIGN_REMOVE: &str = "a690de3f4656034dec0c228cb97d28d8de9e28d41c94a0c73b26316d9f6f7599";
const SIGN_FILLS: &str = "d069a4b1fe7dedf163f55c13e1c7528f7c8cc8568b5b02f2ded125e66f7fc12f";
const SIGN_CLOSE: &str = "3da840f4ee7a82abb501d4f4eec5d4a52c9f9b1c5e56a87bb14c3a941a5a2d48";

/// Real Bybit's `10004` message echoes the signed text, API key included: the key never reaches
/// the reply, the outcome or the error (a raw server on 127.0.0.1 answers like Bybit does).
#[tokio::test]
async fn a_signature_error_that_echoes_the_key_does_not_carry_it() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let Ok((mut s, _)) = listener.accept().await else {
            return;
        };
        let mut buf = vec![0u8; 8192];
        let mut got = Vec::new();
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        let body = format!(
            r#"{{"retCode":10004,"retMsg":"error sign! origin_string[1767000000000{KEY}5000category=linear]","result":{{}},"retExtInfo":{{}},"time":1767000000000}}"#
        );
        let resp = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = s.write_all(resp.as_bytes()).await;
    });
    let c = RestClient::new(
        RestConfig {
            base_url,
            recv_window_ms: 5000,
            timeout: Duration::from_secs(5),
            clock: system_clock(),
        },
        Some(creds(KEY, SECRET)),
    )
    .unwrap();
    let req = trailstop::live::bybit::request::position_list(
        trailstop::live::bybit::request::PositionFilter::Symbol(BTC),
        None,
    )
    .unwrap();
    let reply = within(c.send(&req)).await;
    let text = format!("{reply:?} {}", reply.body);
    assert!(text.contains("error sign!"), "{text}");
    assert!(!text.contains(KEY), "{text}");
    assert!(text.contains("<api key>"), "{text}");
    server.abort();
}
