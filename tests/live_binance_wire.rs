//! The Binance wire against the fake Binance on 127.0.0.1 (an ephemeral port): requests built
//! and signed by `live::binance`, sent over HTTP (reqwest), their answers classified by
//! `live::binance::response`; the market and user streams over WebSocket (tokio-tungstenite),
//! parsed by `live::binance::stream`. Faults of `EXCHANGES.md` §4.3 are observed as their
//! classified outcomes. Every wait is bounded.
#![cfg(feature = "live")]

use std::future::Future;
use std::time::Duration;

use futures_util::StreamExt;
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use tokio_tungstenite::tungstenite::Message;

use trailstop::engine::{Instrument, Side};
use trailstop::live::TriggerPrice;
use trailstop::live::binance::request::{
    self as req, AlgoRef, PositionSide, Request, StopOptions, StopPrice, Target,
};
use trailstop::live::binance::response::{self, Outcome, RateHeaders, Transport};
use trailstop::live::binance::sign;
use trailstop::live::binance::snapshot::{self, AlgoStatus};
use trailstop::live::binance::stream::{self, StreamMessage};
use trailstop::live::clock::system_clock;
use trailstop::live::fake_binance::{
    FakeBinance, FakeConfig, Fault, FaultKind, InstrumentSpec, Setup, Stream,
};
use trailstop::live::{Credentials, Secret};
use trailstop::venue::OrderRef;

const KEY: &str = "fake-key-3Kp8";
const SECRET: &str = "fake-secret-5Wq1";
const BTC: &str = "BTCUSDT";

fn creds() -> Credentials {
    Credentials {
        api_key: Secret::new(KEY),
        api_secret: Secret::new(SECRET),
    }
}

async fn fake(setup: impl FnOnce(&mut Setup)) -> FakeBinance {
    let mut s = Setup::new(KEY, SECRET, vec![InstrumentSpec::new(BTC, dec!(0.1))]);
    setup(&mut s);
    let mut c = FakeConfig::new(s);
    c.tick_every = Duration::from_millis(20);
    within(FakeBinance::start(c)).await.unwrap()
}

async fn within<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .expect("bounded in time")
}

fn now() -> i64 {
    system_clock()()
}

/// Sends `r` signed at the local time; status, headers and body (or the transport's failure).
async fn send(
    fake: &FakeBinance,
    r: &Request,
    timeout: Duration,
) -> Result<(u16, Vec<(String, String)>, String), String> {
    let s = sign::sign(&creds(), r, now(), 5000);
    let url = format!("{}{}", fake.rest_url(), s.path_and_query(r));
    let http = reqwest::Client::new();
    let method = reqwest::Method::from_bytes(r.method.as_str().as_bytes()).unwrap();
    let mut b = http.request(method, url).timeout(timeout);
    if let Some((n, v)) = s.header() {
        b = b.header(n, v);
    }
    let resp = within(b.send()).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or_default().to_string()))
        .collect();
    let body = within(resp.text()).await.map_err(|e| e.to_string())?;
    Ok((status, headers, body))
}

async fn outcome(fake: &FakeBinance, r: &Request) -> (Outcome, String) {
    match send(fake, r, Duration::from_secs(5)).await {
        Ok((status, headers, body)) => {
            let rate =
                RateHeaders::from_pairs(headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
            let o = response::outcome(&Transport::Answered {
                status,
                rate,
                body: &body,
            });
            (o, body)
        }
        Err(e) if e.contains("timed out") || e.contains("operation timed out") => {
            (response::outcome(&Transport::TimedOut), String::new())
        }
        Err(e) => (
            response::outcome(&Transport::ResetAfterSend(e)),
            String::new(),
        ),
    }
}

fn instrument() -> Instrument {
    Instrument::new(dec!(0.1))
}

fn place(seq: u32, stop: Decimal) -> Request {
    let i = instrument();
    let t = Target {
        symbol: BTC,
        position_side: PositionSide::Both,
        side: Side::Long,
        size: dec!(0.5),
        instrument: &i,
    };
    let s = StopPrice::from_units(BTC, i.units(stop).unwrap(), &i).unwrap();
    req::new_stop(
        &t,
        s,
        StopOptions::default(),
        &OrderRef { position: 1, seq }.client_id(),
    )
    .unwrap()
}

/// A long of 0.5 at 100 (the mark at 100).
fn long_at_100(fake: &FakeBinance) {
    fake.set_price(BTC, dec!(100), true, 1_000);
    fake.open_position(BTC, Side::Long, dec!(0.5), 1_000)
        .unwrap();
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(url: &str) -> Ws {
    within(tokio_tungstenite::connect_async(url))
        .await
        .unwrap()
        .0
}

/// The next text frame parsed, skipping what `pick` refuses.
async fn next<T>(ws: &mut Ws, mut pick: impl FnMut(StreamMessage) -> Option<T>) -> T {
    within(async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    if let Some(v) = pick(stream::parse(t.as_str()).unwrap()) {
                        return v;
                    }
                }
                Some(Ok(_)) => {}
                other => panic!("stream ended: {other:?}"),
            }
        }
    })
    .await
}

#[tokio::test]
async fn signed_requests_are_accepted_and_a_bad_key_or_clock_refused() {
    let fake = fake(|_| {}).await;
    let (o, body) = outcome(&fake, &req::position_risk(Some(BTC)).unwrap()).await;
    assert_eq!(o, Outcome::Done, "{body}");
    assert_eq!(snapshot::positions(&body).unwrap().len(), 1);
    let (o, body) = outcome(&fake, &req::exchange_info()).await;
    assert_eq!(o, Outcome::Done);
    assert_eq!(
        snapshot::exchange_info(&body)
            .unwrap()
            .symbol(BTC)
            .unwrap()
            .tick_size,
        dec!(0.1)
    );
    // The exact query on the wire: the client's parameters, recvWindow, timestamp, signature.
    assert_eq!(fake.requests().last().unwrap().query, "");
    let r = req::position_mode();
    outcome(&fake, &r).await;
    let got = fake.requests().last().unwrap().clone();
    assert_eq!(got.method, "GET");
    assert_eq!(got.path, "/fapi/v1/positionSide/dual");
    assert!(
        got.query.starts_with("recvWindow=5000&timestamp="),
        "{}",
        got.query
    );
    let (plain, sig) = got.query.rsplit_once("&signature=").unwrap();
    assert_eq!(sig, sign::signature(&Secret::new(SECRET), plain));
    assert_eq!(got.header("x-mbx-apikey"), Some(KEY));

    // A skewed server: -1021.
    fake.set_clock_offset(10_000);
    let (o, _) = outcome(&fake, &r).await;
    assert_eq!(o, Outcome::ClockSkew);
    let (_, body) = outcome(&fake, &req::server_time()).await;
    let server = snapshot::server_time(&body).unwrap();
    assert!((server - now() - 10_000).abs() < 2_000, "{server}");
    fake.stop().await;
}

#[tokio::test]
async fn a_stop_lives_on_the_user_stream_and_triggers_into_a_new_order() {
    let fake = fake(|_| {}).await;
    long_at_100(&fake);
    let (o, body) = outcome(&fake, &req::listen_key_create()).await;
    assert_eq!(o, Outcome::Done, "{body}");
    let key = snapshot::listen_key(&body).unwrap();
    let mut user = connect(&format!(
        "{}{}",
        fake.ws_url(),
        req::private_stream_path(&key)
    ))
    .await;
    let mut market = connect(&format!(
        "{}{}",
        fake.ws_url(),
        req::market_stream_path(&[BTC], TriggerPrice::Mark)
    ))
    .await;
    // Both connections are up before anything is published.
    within(async {
        while fake.connections(Stream::Private) < 1 || fake.connections(Stream::Market) < 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;

    let (o, body) = outcome(&fake, &place(1, dec!(95))).await;
    assert_eq!(o, Outcome::Done, "{body}");
    let created = snapshot::algo_order(&body).unwrap();
    let new = next(&mut user, |m| match m {
        StreamMessage::Algo(a) => Some(a),
        _ => None,
    })
    .await;
    assert_eq!(
        (new.status, new.algo_id),
        (AlgoStatus::New, created.algo_id)
    );

    fake.set_price(BTC, dec!(94), false, 2_000);
    let p = next(&mut market, |m| match m {
        StreamMessage::Price(p) => Some(p),
        _ => None,
    })
    .await;
    assert_eq!((p.price, p.ts), (dec!(94), 2_000));
    let mut statuses = Vec::new();
    let mut ai = None;
    let mut fill_order = None;
    while statuses.last() != Some(&AlgoStatus::Finished) {
        match next(&mut user, Some).await {
            StreamMessage::Algo(a) => {
                if a.status == AlgoStatus::Triggered {
                    ai = a.actual_order_id.clone();
                }
                statuses.push(a.status);
            }
            StreamMessage::Order(o) => fill_order = Some(o),
            _ => {}
        }
    }
    assert_eq!(
        statuses,
        [
            AlgoStatus::Triggering,
            AlgoStatus::Triggered,
            AlgoStatus::Finished
        ]
    );
    let fill_order = fill_order.unwrap();
    assert!(fill_order.is_order(&ai.unwrap()));
    assert_eq!(fill_order.filled_at(), Some(dec!(95)));
    assert!(fake.positions().is_empty());
    fake.stop().await;
}

#[tokio::test]
async fn the_algo_rules_over_the_wire() {
    let fake = fake(|_| {}).await;
    long_at_100(&fake);
    assert_eq!(
        outcome(&fake, &place(1, dec!(100))).await.0,
        Outcome::WouldTrigger
    );
    assert_eq!(outcome(&fake, &place(1, dec!(95))).await.0, Outcome::Done);
    assert_eq!(
        outcome(&fake, &place(2, dec!(96))).await.0,
        Outcome::AlreadyExists
    );
    fake.set_tick(BTC, dec!(1));
    let cancel = req::cancel_stop(AlgoRef::Client("ts-1-1")).unwrap();
    assert_eq!(outcome(&fake, &cancel).await.0, Outcome::Done);
    assert_eq!(
        outcome(&fake, &place(2, dec!(95.5))).await.0,
        Outcome::Precision { code: -4014 }
    );
    assert_eq!(outcome(&fake, &cancel).await.0, Outcome::NotFound);
    let (o, body) = outcome(&fake, &req::query_stop(AlgoRef::Client("ts-1-7")).unwrap()).await;
    assert_eq!(o, Outcome::NotFound);
    assert!(body.contains("-2013"), "{body}");
    let (_, body) = outcome(&fake, &req::open_stops(None).unwrap()).await;
    assert!(snapshot::open_algo_orders(&body).unwrap().is_empty());
    fake.stop().await;
}

#[tokio::test]
async fn ambiguous_creates_are_resolved_by_client_algo_id() {
    let fake = fake(|_| {}).await;
    long_at_100(&fake);
    // Applied, then 503 -1006: ambiguous; the query finds the stop (one rests).
    fake.inject(Fault::on(
        "POST",
        "/fapi/v1/algoOrder",
        FaultKind::ServerErrorAfterApply,
    ));
    let (o, _) = outcome(&fake, &place(1, dec!(95))).await;
    assert!(matches!(o, Outcome::Ambiguous { .. }), "{o:?}");
    let (_, body) = outcome(&fake, &req::query_stop(AlgoRef::Client("ts-1-1")).unwrap()).await;
    assert_eq!(snapshot::algo_order(&body).unwrap().status, AlgoStatus::New);
    assert_eq!(fake.resting_stops().len(), 1);
    outcome(&fake, &req::cancel_stop(AlgoRef::Client("ts-1-1")).unwrap()).await;

    // Applied, then the connection dropped: ambiguous as well.
    fake.inject(Fault::on(
        "POST",
        "/fapi/v1/algoOrder",
        FaultKind::DropAfterApply,
    ));
    let (o, _) = outcome(&fake, &place(2, dec!(95))).await;
    assert!(matches!(o, Outcome::Ambiguous { .. }), "{o:?}");
    assert_eq!(fake.resting_stops()[0].0, "ts-1-2");
    outcome(&fake, &req::cancel_stop(AlgoRef::Client("ts-1-2")).unwrap()).await;

    // Not applied (a timeout before): the query finds nothing; the same id is placed again.
    fake.inject(Fault::on(
        "POST",
        "/fapi/v1/algoOrder",
        FaultKind::TimeoutBeforeApply {
            hold: Duration::from_millis(50),
        },
    ));
    let (o, _) = outcome(&fake, &place(3, dec!(95))).await;
    assert!(matches!(o, Outcome::Ambiguous { .. }), "{o:?}");
    let (o, _) = outcome(&fake, &req::query_stop(AlgoRef::Client("ts-1-3")).unwrap()).await;
    assert_eq!(o, Outcome::NotFound);
    assert_eq!(outcome(&fake, &place(3, dec!(95))).await.0, Outcome::Done);
    assert_eq!(fake.resting_stops().len(), 1);
    fake.stop().await;
}

#[tokio::test]
async fn rate_limits_then_a_ban_and_the_stop_keeps_resting() {
    let fake = fake(|s| {
        s.orders_per_10s = 1;
        s.retry_after_s = 2;
        s.ban_ms = 300;
    })
    .await;
    long_at_100(&fake);
    assert_eq!(outcome(&fake, &place(1, dec!(95))).await.0, Outcome::Done);
    assert_eq!(
        outcome(&fake, &place(2, dec!(96))).await.0,
        Outcome::RateLimited {
            retry_after_ms: 2000
        }
    );
    let (o, _) = outcome(&fake, &req::position_mode()).await;
    assert!(
        matches!(
            o,
            Outcome::Banned {
                until_ms: Some(_),
                ..
            }
        ),
        "{o:?}"
    );
    assert_eq!(fake.resting_stops().len(), 1);
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(outcome(&fake, &req::position_mode()).await.0, Outcome::Done);
    fake.stop().await;
}

#[tokio::test]
async fn the_listen_key_expires_the_user_stream_closes_and_a_dead_key_is_refused() {
    let fake = fake(|s| s.listen_key_ttl_ms = 300).await;
    let (_, body) = outcome(&fake, &req::listen_key_create()).await;
    let key = snapshot::listen_key(&body).unwrap();
    let mut user = connect(&format!(
        "{}{}",
        fake.ws_url(),
        req::private_stream_path(&key)
    ))
    .await;
    let ts = next(&mut user, |m| match m {
        StreamMessage::ListenKeyExpired { ts } => Some(ts),
        _ => None,
    })
    .await;
    assert!(ts > 0);
    // Then the connection closes.
    within(async {
        loop {
            match user.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert_eq!(
        outcome(&fake, &req::listen_key_keepalive()).await.0,
        Outcome::BadListenKey
    );
    let refused = tokio_tungstenite::connect_async(format!(
        "{}{}",
        fake.ws_url(),
        req::private_stream_path(&key)
    ))
    .await;
    assert!(refused.is_err());
    // A new key works again.
    let (_, body) = outcome(&fake, &req::listen_key_create()).await;
    assert_ne!(snapshot::listen_key(&body).unwrap(), key);
    fake.stop().await;
}

#[tokio::test]
async fn dropped_stream_connections_end_and_reconnect() {
    let fake = fake(|_| {}).await;
    let path = req::market_stream_path(&[BTC], TriggerPrice::Last);
    let mut market = connect(&format!("{}{}", fake.ws_url(), path)).await;
    within(async {
        while fake.connections(Stream::Market) < 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    fake.drop_streams(Some(Stream::Market));
    within(async {
        loop {
            match market.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    let mut again = connect(&format!("{}{}", fake.ws_url(), path)).await;
    within(async {
        while fake.connections(Stream::Market) < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    fake.set_price(BTC, dec!(101.5), true, 5_000);
    // aggTrade on a last-price stream.
    let p = next(&mut again, |m| match m {
        StreamMessage::Price(p) => Some(p),
        _ => None,
    })
    .await;
    assert_eq!((p.price, p.ts), (dec!(101.5), 5_000));
    fake.stop().await;
}

mod client {
    //! The stream client of `live::binance::ws` against the fake.
    use super::*;
    use trailstop::live::binance::ws::{StreamKind, WsClient, WsConfig, WsEvent};

    async fn next_event(ws: &mut WsClient, mut pick: impl FnMut(&WsEvent) -> bool) -> WsEvent {
        within(async {
            loop {
                let e = ws.next().await.expect("the client runs");
                if pick(&e) {
                    return e;
                }
            }
        })
        .await
    }

    #[tokio::test]
    async fn the_market_client_reconnects_after_a_drop() {
        let fake = fake(|_| {}).await;
        let path = req::market_stream_path(&[BTC], TriggerPrice::Mark);
        let mut c = WsConfig::new(&fake.ws_url(), StreamKind::Market, &path, system_clock());
        c.backoff = Duration::from_millis(20);
        let mut ws = WsClient::spawn(c);
        let e = next_event(&mut ws, |e| matches!(e, WsEvent::Connected { .. })).await;
        assert_eq!(
            e,
            WsEvent::Connected {
                kind: StreamKind::Market,
                connection: 0
            }
        );
        fake.set_price(BTC, dec!(100.5), true, 7_000);
        let e = next_event(&mut ws, |e| matches!(e, WsEvent::Message(_))).await;
        assert!(
            matches!(&e, WsEvent::Message(StreamMessage::Price(p)) if p.price == dec!(100.5) && p.ts == 7_000),
            "{e:?}"
        );
        fake.drop_streams(Some(Stream::Market));
        next_event(&mut ws, |e| matches!(e, WsEvent::Disconnected { .. })).await;
        let e = next_event(&mut ws, |e| matches!(e, WsEvent::Connected { .. })).await;
        assert_eq!(
            e,
            WsEvent::Connected {
                kind: StreamKind::Market,
                connection: 1
            }
        );
        fake.set_price(BTC, dec!(101), true, 8_000);
        let e = next_event(&mut ws, |e| matches!(e, WsEvent::Message(_))).await;
        assert!(
            matches!(&e, WsEvent::Message(StreamMessage::Price(p)) if p.ts == 8_000),
            "{e:?}"
        );
        ws.shutdown().await;
        fake.stop().await;
    }

    #[tokio::test]
    async fn a_dead_listen_key_is_refused_and_ends_the_client() {
        let fake = fake(|_| {}).await;
        let path = req::private_stream_path("no-such-key");
        let mut ws = WsClient::spawn(WsConfig::new(
            &fake.ws_url(),
            StreamKind::Private,
            &path,
            system_clock(),
        ));
        let e = next_event(&mut ws, |_| true).await;
        assert!(
            matches!(&e, WsEvent::Refused { kind: StreamKind::Private, reason } if reason.contains("400")),
            "{e:?}"
        );
        assert_eq!(within(ws.next()).await, None);
        fake.stop().await;
    }

    #[tokio::test]
    async fn the_user_stream_delivers_the_expiry() {
        let fake = fake(|s| s.listen_key_ttl_ms = 400).await;
        let (_, body) = outcome(&fake, &req::listen_key_create()).await;
        let key = snapshot::listen_key(&body).unwrap();
        let mut c = WsConfig::new(
            &fake.ws_url(),
            StreamKind::Private,
            &req::private_stream_path(&key),
            system_clock(),
        );
        c.backoff = Duration::from_millis(20);
        let mut ws = WsClient::spawn(c);
        next_event(&mut ws, |e| matches!(e, WsEvent::Connected { .. })).await;
        next_event(&mut ws, |e| {
            matches!(e, WsEvent::Message(StreamMessage::ListenKeyExpired { .. }))
        })
        .await;
        // The connection closes; the reconnect with the dead key is refused.
        next_event(&mut ws, |e| matches!(e, WsEvent::Disconnected { .. })).await;
        let e = next_event(&mut ws, |_| true).await;
        assert!(matches!(e, WsEvent::Refused { .. }), "{e:?}");
        fake.stop().await;
    }
}
