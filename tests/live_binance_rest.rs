//! The Binance REST client (`live::binance::rest`) against the fake Binance on 127.0.0.1: the
//! clock offset and the `-1021` resync, the typed reads, a stop looked up by `clientAlgoId`,
//! and a 418 ban honoured (nothing sent to the host until it ends). Every wait is bounded.
#![cfg(feature = "live")]

use std::future::Future;
use std::time::Duration;

use rust_decimal_macros::dec;

use trailstop::engine::{Instrument, Side};
use trailstop::live::binance::request::{
    self as req, AlgoRef, PositionSide, StopOptions, StopPrice, Target,
};
use trailstop::live::binance::response::Outcome;
use trailstop::live::binance::rest::{RestClient, RestConfig, RestError};
use trailstop::live::binance::snapshot::AlgoStatus;
use trailstop::live::clock::system_clock;
use trailstop::live::fake_binance::{
    FakeBinance, FakeConfig, Fault, FaultKind, InstrumentSpec, Setup,
};
use trailstop::live::{Credentials, Secret};

const KEY: &str = "fake-key-8Rt4";
const SECRET: &str = "fake-secret-2Yh6";
const BTC: &str = "BTCUSDT";

async fn within<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .expect("bounded in time")
}

async fn fake(setup: impl FnOnce(&mut Setup)) -> FakeBinance {
    let mut s = Setup::new(KEY, SECRET, vec![InstrumentSpec::new(BTC, dec!(0.1))]);
    setup(&mut s);
    within(FakeBinance::start(FakeConfig::new(s)))
        .await
        .unwrap()
}

fn client(fake: &FakeBinance) -> RestClient {
    RestClient::new(
        RestConfig {
            base_url: fake.rest_url(),
            recv_window_ms: 5000,
            timeout: Duration::from_secs(5),
            clock: system_clock(),
        },
        Some(Credentials {
            api_key: Secret::new(KEY),
            api_secret: Secret::new(SECRET),
        }),
    )
    .unwrap()
}

#[tokio::test]
async fn the_clock_offset_is_measured_and_a_1021_resynced_once() {
    let fake = fake(|_| {}).await;
    fake.set_clock_offset(20_000);
    let rest = client(&fake);
    // Unsynced: -1021, then resynced and sent once more.
    let list = within(rest.positions(Some(BTC))).await.unwrap();
    assert_eq!(list.len(), 1);
    let offset = rest.clock_offset_ms();
    assert!((offset - 20_000).abs() < 2_000, "{offset}");
    let paths: Vec<String> = fake.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(
        paths,
        [
            "/fapi/v2/positionRisk",
            "/fapi/v1/time",
            "/fapi/v2/positionRisk"
        ]
    );
    // A -1021 injected twice in a row: resynced once, then returned as it is.
    fake.inject(Fault::any(FaultKind::ClockSkew));
    fake.inject(Fault::on(
        "GET",
        "/fapi/v1/positionSide/dual",
        FaultKind::ClockSkew,
    ));
    let e = within(rest.hedge_mode()).await.unwrap_err();
    assert!(
        matches!(&e, RestError::Refused { outcome: Outcome::ClockSkew, endpoint } if endpoint == "GET /fapi/v1/positionSide/dual"),
        "{e:?}"
    );
    assert!(!within(rest.hedge_mode()).await.unwrap());
    fake.stop().await;
}

#[tokio::test]
async fn typed_reads_and_a_stop_by_client_algo_id() {
    let fake = fake(|_| {}).await;
    let rest = client(&fake);
    within(rest.sync_clock()).await.unwrap();
    let info = within(rest.exchange_info()).await.unwrap();
    assert_eq!(info.symbol(BTC).unwrap().tick_size, dec!(0.1));
    fake.set_price(BTC, dec!(100), true, 1_000);
    fake.open_position(BTC, Side::Long, dec!(0.5), 1_000)
        .unwrap();
    let p = within(rest.positions(None)).await.unwrap();
    assert_eq!(p[0].side(), Some(Side::Long));
    assert_eq!(
        within(rest.stop(AlgoRef::Client("ts-1-1"))).await.unwrap(),
        None
    );
    let i = Instrument::new(dec!(0.1));
    let t = Target {
        symbol: BTC,
        position_side: PositionSide::Both,
        side: Side::Long,
        size: dec!(0.5),
        instrument: &i,
    };
    let stop = StopPrice::from_units(BTC, i.units(dec!(95)).unwrap(), &i).unwrap();
    let r = req::new_stop(&t, stop, StopOptions::default(), "ts-1-1").unwrap();
    assert_eq!(within(rest.send(&r)).await.outcome, Outcome::Done);
    let s = within(rest.stop(AlgoRef::Client("ts-1-1")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((s.status, s.trigger_price), (AlgoStatus::New, dec!(95)));
    assert_eq!(within(rest.open_stops(Some(BTC))).await.unwrap().len(), 1);
    let key = within(rest.listen_key()).await.unwrap();
    assert!(!key.is_empty());
    within(rest.keep_listen_key()).await.unwrap();
    fake.expire_listen_key();
    let e = within(rest.keep_listen_key()).await.unwrap_err();
    assert!(
        matches!(
            e,
            RestError::Refused {
                outcome: Outcome::BadListenKey,
                ..
            }
        ),
        "{e:?}"
    );
    fake.stop().await;
}

#[tokio::test]
async fn after_a_418_nothing_is_sent_to_the_host_until_the_ban_ends() {
    let fake = fake(|_| {}).await;
    let rest = client(&fake);
    within(rest.sync_clock()).await.unwrap();
    fake.inject(Fault::any(FaultKind::Banned { for_ms: 400 }));
    let reply = within(rest.send(&req::position_mode())).await;
    assert!(
        matches!(reply.outcome, Outcome::Banned { .. }),
        "{:?}",
        reply.outcome
    );
    assert!(rest.banned_until().is_some());
    let sent = fake.requests().len();
    let reply = within(rest.send(&req::position_mode())).await;
    assert!(matches!(reply.outcome, Outcome::Banned { .. }));
    assert_eq!(reply.status, None);
    assert_eq!(fake.requests().len(), sent, "nothing reached the host");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(rest.banned_until(), None);
    assert!(!within(rest.hedge_mode()).await.unwrap());
    fake.stop().await;
}
