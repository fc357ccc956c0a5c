//! The Binance venue adapter (`live::binance::venue`) with the seam's lifecycle
//! (`StopOrder`, cancel + create) against the fake Binance on 127.0.0.1: the replace as two
//! commands with one stop resting, and the freqtrade failure modes of `EXCHANGES.md` §5.4 as
//! named regression tests. Stream messages are fed to the venue from the fake's tap.
#![cfg(feature = "live")]

use std::future::Future;
use std::time::Duration;

use rust_decimal::Decimal;
use rust_decimal_macros::dec;

use trailstop::engine::{Intent, Side, StopOrigin};
use trailstop::live::binance::request::StopOptions;
use trailstop::live::binance::rest::{RestClient, RestConfig};
use trailstop::live::binance::venue::{Action, BinanceVenue, StreamNews};
use trailstop::live::clock::system_clock;
use trailstop::live::fake_binance::{
    FakeBinance, FakeConfig, Fault, FaultKind, InstrumentSpec, Outgoing, Setup, Tap,
};
use trailstop::live::{Credentials, Secret};
use trailstop::venue::{Command, EngineNews, Phase, RejectReason, StopOrder, VenueEvent};

const KEY: &str = "fake-key-1Vn5";
const SECRET: &str = "fake-secret-6Jd3";
const BTC: &str = "BTCUSDT";
const POS: u64 = 1;

async fn within<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .expect("bounded in time")
}

struct World {
    fake: FakeBinance,
    venue: BinanceVenue,
    tap: Tap,
    life: StopOrder,
}

/// A long of 0.5 at 100 (the mark at 100), managed as position 1.
async fn world() -> World {
    let setup = Setup::new(KEY, SECRET, vec![InstrumentSpec::new(BTC, dec!(0.1))]);
    let fake = within(FakeBinance::start(FakeConfig::new(setup)))
        .await
        .unwrap();
    let tap = fake.tap();
    let rest = RestClient::new(
        RestConfig {
            base_url: fake.rest_url(),
            recv_window_ms: 5000,
            timeout: Duration::from_secs(2),
            clock: system_clock(),
        },
        Some(Credentials {
            api_key: Secret::new(KEY),
            api_secret: Secret::new(SECRET),
        }),
    )
    .unwrap();
    let mut venue = within(BinanceVenue::connect(rest, StopOptions::default(), &[BTC]))
        .await
        .unwrap();
    assert!(!venue.atomic_amend());
    fake.set_price(BTC, dec!(100), true, 1_000);
    fake.open_position(BTC, Side::Long, dec!(0.5), 1_000)
        .unwrap();
    let p = within(venue.rest().positions(Some(BTC))).await.unwrap();
    venue.manage(POS, &p[0]).unwrap();
    let mut w = World {
        fake,
        venue,
        tap,
        life: StopOrder::new(POS, false),
    };
    w.drain().await;
    w
}

fn units(p: Decimal) -> i64 {
    trailstop::engine::Instrument::new(dec!(0.1))
        .units(p)
        .unwrap()
}

impl World {
    /// Feeds the venue what the fake published, until it is quiet for 50 ms.
    async fn drain(&mut self) -> StreamNews {
        let mut all = StreamNews::default();
        while let Ok(Some(out)) =
            tokio::time::timeout(Duration::from_millis(50), self.tap.next()).await
        {
            let text = match out {
                Outgoing::Market { text, .. } | Outgoing::Private { text } => text,
            };
            let n = self.venue.on_message(&text).unwrap();
            all.events.extend(n.events);
            all.prices.extend(n.prices);
            all.discovered.extend(n.discovered);
            all.actions.extend(n.actions);
        }
        all
    }

    /// Runs `command` and every command the lifecycle answers with; the engine news and the
    /// venue's actions, in order.
    async fn run(&mut self, first: Option<Command>, ts: i64) -> (Vec<EngineNews>, Vec<Action>) {
        let (mut news, mut actions) = (Vec::new(), Vec::new());
        let mut next = first;
        while let Some(c) = next.take() {
            let done = within(self.venue.execute(c, ts)).await;
            actions.extend(done.action);
            for e in done.events {
                let r = self.life.on_event(&e);
                news.extend(r.news);
                if r.command.is_some() {
                    next = r.command;
                }
            }
        }
        (news, actions)
    }

    async fn want(&mut self, stop: Decimal, seq: u32, ts: i64) -> (Vec<EngineNews>, Vec<Action>) {
        let r = self.life.on_intent(
            Intent::PlaceStop {
                price: units(stop),
                origin: StopOrigin::Trailing,
            },
            seq,
            ts,
        );
        self.run(r.command, ts).await
    }

    async fn events_from_stream(&mut self) -> (Vec<EngineNews>, Vec<Action>) {
        let n = self.drain().await;
        let mut news = Vec::new();
        for e in n.events {
            news.extend(self.life.on_event(&e).news);
        }
        (news, n.actions)
    }
}

#[tokio::test]
async fn a_replace_is_cancel_then_create_and_one_stop_rests() {
    let mut w = world().await;
    let (news, actions) = w.want(dec!(95), 1, 2_000).await;
    assert_eq!(
        news,
        [EngineNews::Confirmed {
            stop: units(dec!(95))
        }]
    );
    assert!(actions.is_empty(), "{actions:?}");
    let (news, _) = w.want(dec!(97), 2, 3_000).await;
    assert_eq!(
        news,
        [EngineNews::Confirmed {
            stop: units(dec!(97))
        }]
    );
    let stops = w.fake.resting_stops();
    assert_eq!(stops, [("ts-1-2".to_string(), BTC.to_string(), dec!(97))]);
    // The wire: create, cancel (by clientAlgoId), create.
    let calls: Vec<String> = w
        .fake
        .requests()
        .iter()
        .filter(|r| r.path == "/fapi/v1/algoOrder")
        .map(|r| format!("{} {}", r.method, r.param("clientAlgoId").unwrap()))
        .collect();
    assert_eq!(calls, ["POST ts-1-1", "DELETE ts-1-1", "POST ts-1-2"]);
    // The stream's NEW/CANCELED repeat what the acks said: nothing more for the engine.
    let (news, actions) = w.events_from_stream().await;
    assert!(
        news.is_empty() && actions.is_empty(),
        "{news:?} {actions:?}"
    );
    assert!(matches!(w.life.phase(), Phase::Resting { .. }));
    w.fake.stop().await;
}

/// freqtrade #5451 / #1726: the stop cancelled, the create refused because the price moved
/// (`-2021`): the position is closed at market, no stop is left behind, none re-placed.
#[tokio::test]
async fn freqtrade_cancel_ok_create_would_trigger_closes_at_market() {
    let mut w = world().await;
    w.want(dec!(95), 1, 2_000).await;
    w.fake.inject(Fault::on(
        "POST",
        "/fapi/v1/algoOrder",
        FaultKind::WouldTrigger,
    ));
    let (news, _) = w.want(dec!(97), 2, 3_000).await;
    assert!(
        matches!(news.as_slice(), [EngineNews::WouldTrigger { stop, .. }] if *stop == units(dec!(97))),
        "{news:?}"
    );
    assert!(w.fake.resting_stops().is_empty());
    // The engine's exit: a reduce-only close.
    let close = w.life.on_intent(Intent::ExitNow, 3, 3_000);
    assert_eq!(
        close.command,
        Some(Command::CloseAtMarket { position: POS })
    );
    w.run(close.command, 3_000).await;
    let (news, _) = w.events_from_stream().await;
    assert!(
        matches!(news.as_slice(), [EngineNews::Closed { by_us: true, .. }]),
        "{news:?}"
    );
    assert!(w.fake.positions().is_empty());
    assert!(w.fake.resting_stops().is_empty());
    w.fake.stop().await;
}

/// freqtrade #2799 / #12681 (orphans after `-2011`): the stop triggered while the cancel was
/// on its way; the cancel's `-2011` is looked into, the fill found, and no stop is created on
/// the closed position.
#[tokio::test]
async fn freqtrade_cancel_unknown_because_triggered_never_recreates_a_stop() {
    let mut w = world().await;
    w.want(dec!(95), 1, 2_000).await;
    // The stop fires on the exchange; the stream has not been read yet.
    w.fake.set_price(BTC, dec!(94), false, 2_500);
    let (news, actions) = w.want(dec!(97), 2, 3_000).await;
    assert!(
        matches!(news.as_slice(), [EngineNews::Filled { fill, .. }] if *fill == units(dec!(95))),
        "{news:?} {actions:?}"
    );
    assert!(w.life.is_closed());
    assert!(w.fake.resting_stops().is_empty());
    let creates = w
        .fake
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/fapi/v1/algoOrder")
        .count();
    assert_eq!(creates, 1, "no stop re-created");
    // The stream's fill afterwards is the same close: not told twice.
    let (news, _) = w.events_from_stream().await;
    assert!(news.is_empty(), "{news:?}");
    w.fake.stop().await;
}

/// freqtrade #9267 / #12681 / ccxt #27486 (duplicate stops): a create whose answer was lost
/// after the exchange applied it is looked up by its clientAlgoId and adopted — one stop.
#[tokio::test]
async fn freqtrade_ambiguous_create_is_adopted_never_duplicated() {
    let mut w = world().await;
    w.fake.inject(Fault::on(
        "POST",
        "/fapi/v1/algoOrder",
        FaultKind::ServerErrorAfterApply,
    ));
    let (news, actions) = w.want(dec!(95), 1, 2_000).await;
    assert_eq!(
        news,
        [EngineNews::Confirmed {
            stop: units(dec!(95))
        }]
    );
    assert!(actions.is_empty(), "{actions:?}");
    assert_eq!(w.fake.resting_stops().len(), 1);
    // The same with the connection dropped.
    w.fake.inject(Fault::on(
        "POST",
        "/fapi/v1/algoOrder",
        FaultKind::DropAfterApply,
    ));
    let (news, _) = w.want(dec!(96), 2, 3_000).await;
    assert_eq!(
        news,
        [EngineNews::Confirmed {
            stop: units(dec!(96))
        }]
    );
    assert_eq!(
        w.fake.resting_stops(),
        [("ts-1-2".to_string(), BTC.to_string(), dec!(96))]
    );
    w.fake.stop().await;
}

/// A create that never reached the exchange: the query finds nothing, the position has no
/// stop (the lifecycle's "not applied"), and the next intent places it.
#[tokio::test]
async fn an_ambiguous_create_that_did_not_act_is_not_applied() {
    let mut w = world().await;
    w.fake.inject(Fault::on(
        "POST",
        "/fapi/v1/algoOrder",
        FaultKind::TimeoutBeforeApply {
            hold: Duration::from_millis(20),
        },
    ));
    let (news, _) = w.want(dec!(95), 1, 2_000).await;
    assert!(
        matches!(
            news.as_slice(),
            [EngineNews::Refused(RejectReason::Invalid { .. })]
        ),
        "{news:?}"
    );
    assert_eq!(w.life.phase(), Phase::NoStop);
    assert!(w.fake.resting_stops().is_empty());
    let (news, _) = w.want(dec!(95), 2, 2_100).await;
    assert_eq!(
        news,
        [EngineNews::Confirmed {
            stop: units(dec!(95))
        }]
    );
    w.fake.stop().await;
}

/// freqtrade #12680: the fill of a triggered stop belongs to the new order (`ai`); it is found
/// by that id and reported once, at its price.
#[tokio::test]
async fn freqtrade_the_fill_is_looked_up_by_the_new_order_id() {
    let mut w = world().await;
    w.want(dec!(95), 1, 2_000).await;
    w.fake.set_price(BTC, dec!(90), true, 4_000);
    let (news, actions) = w.events_from_stream().await;
    assert_eq!(
        news,
        [EngineNews::Filled {
            fill: units(dec!(90)),
            origin: StopOrigin::Trailing
        }]
    );
    assert!(actions.is_empty());
    w.fake.stop().await;
}

/// `REJECTED` after `TRIGGERING` (`-4131` at market): the position is bare; the venue asks
/// for a close at market now.
#[tokio::test]
async fn a_stop_rejected_at_trigger_asks_for_a_close_now() {
    let mut w = world().await;
    w.want(dec!(95), 1, 2_000).await;
    w.fake.reject_next_trigger();
    w.fake.set_price(BTC, dec!(94), false, 4_000);
    let (news, actions) = w.events_from_stream().await;
    assert!(news.is_empty(), "{news:?}");
    assert!(
        matches!(actions.as_slice(), [Action::CloseNow { position: POS, reason }] if reason.contains("-4131")),
        "{actions:?}"
    );
    assert_eq!(w.fake.positions().len(), 1);
    let close = w.life.close_at_market();
    w.run(close.command, 4_000).await;
    let (news, _) = w.events_from_stream().await;
    assert!(
        matches!(news.as_slice(), [EngineNews::Closed { by_us: true, .. }]),
        "{news:?}"
    );
    assert!(w.fake.positions().is_empty());
    w.fake.stop().await;
}

#[tokio::test]
async fn rate_limits_and_bans_become_actions() {
    let mut w = world().await;
    w.fake.inject(Fault::on(
        "POST",
        "/fapi/v1/algoOrder",
        FaultKind::RateLimited { retry_after_s: 2 },
    ));
    let (news, _) = w.want(dec!(95), 1, 2_000).await;
    assert_eq!(
        news,
        [EngineNews::Refused(RejectReason::RateLimited {
            retry_after_ms: 2000
        })]
    );
    w.fake
        .inject(Fault::any(FaultKind::Banned { for_ms: 60_000 }));
    let done = within(w.venue.execute(
        Command::Place {
            order: trailstop::venue::OrderRef {
                position: POS,
                seq: 2,
            },
            stop: units(dec!(95)),
        },
        2_100,
    ))
    .await;
    assert!(
        matches!(done.action, Some(Action::Halt { until_ms: Some(_) })),
        "{done:?}"
    );
    // The venue's event types stay the seam's.
    assert!(
        done.events
            .iter()
            .all(|e| !matches!(e, VenueEvent::Accepted { .. }))
    );
    w.fake.stop().await;
}

/// The exchange coarsened the tick (0.1 → 0.5) and a stop of the old grid is refused
/// (`-4014`): the venue reads `exchangeInfo` again and sends the same create once more, on the
/// new grid and never looser (a long's 97.3 up to 97.5), not a fatal refusal. The next stop
/// goes on the new grid at once, without another refusal.
#[tokio::test]
async fn a_stop_off_a_changed_tick_is_rerounded_and_sent_again() {
    let mut w = world().await;
    w.fake.set_tick(BTC, dec!(0.5));
    let (news, actions) = w.want(dec!(97.3), 1, 2_000).await;
    assert_eq!(
        news,
        [EngineNews::Confirmed {
            stop: units(dec!(97.5))
        }]
    );
    assert!(actions.is_empty(), "{actions:?}");
    assert_eq!(
        w.fake.resting_stops(),
        [("ts-1-1".to_string(), BTC.to_string(), dec!(97.5))]
    );
    let (news, actions) = w.want(dec!(98.1), 2, 3_000).await;
    assert_eq!(
        news,
        [EngineNews::Confirmed {
            stop: units(dec!(98.5))
        }]
    );
    assert!(actions.is_empty(), "{actions:?}");
    // The wire: refused, the tick read again, the same create on the new grid; then a plain
    // replace.
    let calls: Vec<String> = w
        .fake
        .requests()
        .iter()
        .filter(|r| r.path == "/fapi/v1/algoOrder" || r.path == "/fapi/v1/exchangeInfo")
        .skip(1) // the exchangeInfo of connect
        .map(|r| {
            format!(
                "{} {} {}",
                r.method,
                r.path,
                r.param("triggerPrice").unwrap_or_default()
            )
        })
        .collect();
    assert_eq!(
        calls,
        [
            "POST /fapi/v1/algoOrder 97.3",
            "GET /fapi/v1/exchangeInfo ",
            "POST /fapi/v1/algoOrder 97.5",
            "DELETE /fapi/v1/algoOrder ",
            "POST /fapi/v1/algoOrder 98.5",
        ]
    );
    w.fake.stop().await;
}

/// `manage` says why it refuses, as a typed error: a position managed twice, a second
/// position on a key taken, a symbol the venue did not list.
#[tokio::test]
async fn managing_twice_or_an_unlisted_symbol_is_a_typed_error() {
    use trailstop::live::binance::venue::ManageError;
    let mut w = world().await;
    let p = within(w.venue.rest().positions(Some(BTC))).await.unwrap();
    assert_eq!(
        w.venue.manage(POS, &p[0]),
        Err(ManageError::AlreadyManaged { position: POS })
    );
    let taken = w.venue.manage(2, &p[0]).unwrap_err();
    assert_eq!(
        taken,
        ManageError::KeyTaken {
            symbol: BTC.into(),
            position_side: "BOTH",
            position: POS
        }
    );
    assert_eq!(
        taken.to_string(),
        "BTCUSDT positionSide BOTH: already managed as position 1"
    );
    let mut eth = p[0].clone();
    eth.symbol = "ETHUSDT".into();
    let unknown = w.venue.manage(3, &eth).unwrap_err();
    assert_eq!(
        unknown,
        ManageError::UnknownSymbol {
            symbol: "ETHUSDT".into()
        }
    );
    assert_eq!(
        unknown.to_string(),
        "ETHUSDT: not an instrument the venue listed"
    );
    w.fake.stop().await;
}
