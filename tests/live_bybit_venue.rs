//! The async Bybit venue adapter against the fake Bybit on loopback: seam commands become the
//! REST calls and their answers the lifecycle's events; the private stream's messages become
//! events once each, however often Bybit repeats them. Every wait is bounded.
#![cfg(feature = "live")]

use std::future::Future;
use std::time::Duration;

use rust_decimal_macros::dec;

use trailstop::engine::{Instrument, Side};
use trailstop::live::TriggerPrice;
use trailstop::live::bybit::request::{self, PositionFilter, PositionIdx, Target};
use trailstop::live::bybit::rest::{RestClient, RestConfig};
use trailstop::live::bybit::snapshot::NOT_APPLIED;
use trailstop::live::bybit::stream::StreamMessage;
use trailstop::live::bybit::venue::{Action, BybitVenue, Executed, StreamNews};
use trailstop::live::bybit::ws::{StreamKind, WsClient, WsConfig, WsEvent};
use trailstop::live::clock::system_clock;
use trailstop::live::fake_bybit::{FakeBybit, FakeConfig, Fault, FaultKind, InstrumentSpec, Setup};
use trailstop::live::{Credentials, Secret};
use trailstop::venue::{Command, OrderRef, RejectReason, VenueEvent};

const KEY: &str = "venue-key";
const SECRET: &str = "venue-secret";
const BTC: &str = "BTCUSDT";
const T0: i64 = 1_670_889_600_000;

fn creds() -> Credentials {
    Credentials {
        api_key: Secret::new(KEY),
        api_secret: Secret::new(SECRET),
    }
}

async fn within<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .expect("finished within 10 s")
}

fn rest(fake: &FakeBybit, timeout: Duration) -> RestClient {
    RestClient::new(
        RestConfig {
            base_url: fake.rest_url(),
            recv_window_ms: 5000,
            timeout,
            clock: system_clock(),
        },
        Some(creds()),
    )
    .unwrap()
}

fn btc() -> Instrument {
    Instrument::new(dec!(0.5))
}

fn u(p: rust_decimal::Decimal) -> i64 {
    btc().units(p).unwrap()
}

fn oref(seq: u32) -> OrderRef {
    OrderRef { position: 1, seq }
}

/// A fake with BTCUSDT (tick 0.5) and ETHUSDT, a long of 0.5 BTC at 17,000 managed as
/// position 1, and the adapter over a client with `timeout`.
async fn setup(timeout: Duration) -> (FakeBybit, BybitVenue) {
    let fake = FakeBybit::start(FakeConfig::new(Setup::new(
        KEY,
        SECRET,
        vec![
            InstrumentSpec::new(BTC, dec!(0.5)),
            InstrumentSpec::new("ETHUSDT", dec!(0.05)),
        ],
    )))
    .await
    .unwrap();
    fake.set_price(BTC, dec!(17000), true, T0);
    fake.open_position(BTC, Side::Long, dec!(0.5), T0).unwrap();
    let mut venue = within(BybitVenue::connect(
        rest(&fake, timeout),
        TriggerPrice::Mark,
        &[BTC, "ETHUSDT"],
    ))
    .await
    .unwrap();
    let list = within(venue.rest().positions(PositionFilter::Symbol(BTC)))
        .await
        .unwrap();
    venue.manage(1, &list[0]).unwrap();
    (fake, venue)
}

async fn stream(fake: &FakeBybit, kind: StreamKind, topics: &[&str]) -> WsClient {
    let mut c = WsConfig::new(
        &fake.ws_url(),
        kind,
        topics.iter().map(|t| t.to_string()).collect(),
        system_clock(),
    );
    c.credentials = Some(creds());
    let mut ws = WsClient::spawn(c);
    assert!(matches!(
        within(ws.next()).await,
        Some(WsEvent::Connected { .. })
    ));
    ws
}

/// Feeds stream messages to the adapter until `done` says so; all the news, in order.
async fn feed_until(
    venue: &mut BybitVenue,
    ws: &mut WsClient,
    mut done: impl FnMut(&StreamMessage) -> bool,
) -> StreamNews {
    within(async {
        let mut all = StreamNews::default();
        loop {
            let Some(WsEvent::Message(m)) = ws.next().await else {
                continue;
            };
            let n = venue.on_message(&m);
            all.events.extend(n.events);
            all.prices.extend(n.prices);
            all.discovered.extend(n.discovered);
            if done(&m) {
                return all;
            }
        }
    })
    .await
}

fn is_position(m: &StreamMessage) -> bool {
    matches!(m, StreamMessage::Positions { .. })
}

fn events(e: Executed) -> Vec<VenueEvent> {
    assert_eq!(e.action, None, "{e:?}");
    e.events
}

#[tokio::test]
async fn place_amend_retry_and_cancel_answer_as_the_lifecycle_expects() {
    let (fake, mut venue) = setup(Duration::from_secs(5)).await;
    assert!(venue.atomic_amend());
    let place = Command::Place {
        order: oref(1),
        stop: u(dec!(16900)),
    };
    assert_eq!(
        events(within(venue.execute(place, 10)).await),
        [VenueEvent::Accepted {
            order: oref(1),
            stop: u(dec!(16900)),
            ts: 10,
            venue_id: None
        }]
    );
    let amend = Command::Amend {
        order: oref(2),
        replaces: oref(1),
        stop: u(dec!(16950)),
    };
    let accepted = |ts| {
        vec![VenueEvent::Accepted {
            order: oref(2),
            stop: u(dec!(16950)),
            ts,
            venue_id: None,
        }]
    };
    assert_eq!(events(within(venue.execute(amend, 11)).await), accepted(11));
    // Sent again (a retry): Bybit's 34040 is the same acceptance.
    assert_eq!(events(within(venue.execute(amend, 12)).await), accepted(12));
    assert_eq!(fake.position(BTC, 0).stop_loss, Some(dec!(16950)));
    let cancel = Command::Cancel { order: oref(2) };
    assert_eq!(
        events(within(venue.execute(cancel, 13)).await),
        [VenueEvent::Cancelled {
            order: oref(2),
            ts: 13
        }]
    );
    assert_eq!(fake.position(BTC, 0).stop_loss, None);
    // A position it does not manage is the driver's bug, said as such.
    let other = Command::CloseAtMarket { position: 9 };
    assert!(matches!(
        within(venue.execute(other, 14)).await.action,
        Some(Action::Fatal { .. })
    ));
}

#[tokio::test]
async fn a_stop_through_the_market_is_refused_with_the_last_mark_seen() {
    let (fake, mut venue) = setup(Duration::from_secs(5)).await;
    let mut public = stream(&fake, StreamKind::Public, &["tickers.BTCUSDT"]).await;
    let news = feed_until(&mut venue, &mut public, |m| {
        matches!(m, StreamMessage::Ticker(_))
    })
    .await;
    assert_eq!(news.prices.len(), 1);
    assert_eq!((news.prices[0].price, news.prices[0].ts), (dec!(17000), T0));
    let place = Command::Place {
        order: oref(1),
        stop: u(dec!(17000.5)),
    };
    assert_eq!(
        events(within(venue.execute(place, 20)).await),
        [VenueEvent::Rejected {
            order: oref(1),
            ts: 20,
            reason: RejectReason::WouldTrigger {
                market: u(dec!(17000))
            }
        }]
    );
    public.shutdown().await;
}

#[tokio::test]
async fn without_a_streamed_price_the_refusal_carries_the_mark_read_back() {
    let (_fake, mut venue) = setup(Duration::from_secs(5)).await;
    let place = Command::Place {
        order: oref(1),
        stop: u(dec!(17000)),
    };
    assert_eq!(
        events(within(venue.execute(place, 21)).await),
        [VenueEvent::Rejected {
            order: oref(1),
            ts: 21,
            reason: RejectReason::WouldTrigger {
                market: u(dec!(17000))
            }
        }]
    );
}

#[tokio::test]
async fn an_ambiguous_amend_is_resolved_by_the_query_either_way() {
    let (fake, mut venue) = setup(Duration::from_millis(300)).await;
    let place = Command::Place {
        order: oref(1),
        stop: u(dec!(16900)),
    };
    within(venue.execute(place, 1)).await;
    let hold = Duration::from_millis(1500);
    for (fault, applied) in [
        (FaultKind::TimeoutAfterApply { hold }, true),
        (FaultKind::TimeoutBeforeApply { hold }, false),
    ] {
        let seq = if applied { 2 } else { 3 };
        let stop = if applied {
            u(dec!(16950))
        } else {
            u(dec!(16980))
        };
        fake.inject(Fault::on(request::PATH_TRADING_STOP, fault));
        let amend = Command::Amend {
            order: oref(seq),
            replaces: oref(seq - 1),
            stop,
        };
        assert_eq!(
            events(within(venue.execute(amend, 5)).await),
            [VenueEvent::Ambiguous {
                order: oref(seq),
                ts: 5
            }]
        );
        let got = events(within(venue.execute(Command::Query { order: oref(seq) }, 6)).await);
        let want = if applied {
            VenueEvent::Accepted {
                order: oref(seq),
                stop,
                ts: 6,
                venue_id: None,
            }
        } else {
            VenueEvent::Rejected {
                order: oref(seq),
                ts: 6,
                reason: RejectReason::Invalid { code: NOT_APPLIED },
            }
        };
        assert_eq!(got, [want]);
    }
    assert_eq!(fake.position(BTC, 0).stop_loss, Some(dec!(16950)));
}

#[tokio::test]
async fn a_triggered_stop_is_one_event_however_often_bybit_repeats_it() {
    let (fake, mut venue) = setup(Duration::from_secs(5)).await;
    let mut private = stream(
        &fake,
        StreamKind::Private,
        &["position", "order", "execution"],
    )
    .await;
    let place = Command::Place {
        order: oref(1),
        stop: u(dec!(16900)),
    };
    within(venue.execute(place, 1)).await;
    // The set's own order and position messages: nothing for the lifecycle.
    let news = feed_until(&mut venue, &mut private, is_position).await;
    assert_eq!(news.events, []);
    // The order topic's `Filled` twice, then the execution, then the flat position.
    fake.duplicate_next_private(1);
    fake.set_price(BTC, dec!(16890), false, T0 + 20_000);
    let news = feed_until(&mut venue, &mut private, is_position).await;
    assert_eq!(
        news.events,
        [VenueEvent::Triggered {
            order: oref(1),
            ts: T0 + 20_000,
            fill: u(dec!(16900))
        }]
    );
    assert_eq!(news.discovered, []);
    private.shutdown().await;
}

#[tokio::test]
async fn a_close_at_market_is_closed_by_its_own_execution() {
    let (fake, mut venue) = setup(Duration::from_secs(5)).await;
    let mut private = stream(
        &fake,
        StreamKind::Private,
        &["position", "order", "execution"],
    )
    .await;
    fake.set_price(BTC, dec!(17100), false, T0 + 1_000);
    let close = Command::CloseAtMarket { position: 1 };
    assert_eq!(
        within(venue.execute(close, 2)).await,
        Executed::default(),
        "the answer comes on the stream"
    );
    let news = feed_until(&mut venue, &mut private, is_position).await;
    assert_eq!(
        news.events,
        [VenueEvent::PositionClosed {
            position: 1,
            ts: T0 + 1_000,
            fill: u(dec!(17100))
        }]
    );
    let req = &fake.requests()[fake.requests().len() - 1];
    assert!(
        req.body.contains(r#""orderLinkId":"ts-1-c1""#),
        "{}",
        req.body
    );
    // A second close finds nothing to reduce: read back, flat, nothing more to report.
    assert_eq!(within(venue.execute(close, 3)).await, Executed::default());
    private.shutdown().await;
}

#[tokio::test]
async fn spurious_resized_foreign_and_cancelled_by_others() {
    let (fake, mut venue) = setup(Duration::from_secs(5)).await;
    let mut private = stream(
        &fake,
        StreamKind::Private,
        &["position", "order", "execution"],
    )
    .await;
    let place = Command::Place {
        order: oref(1),
        stop: u(dec!(16900)),
    };
    within(venue.execute(place, 1)).await;
    feed_until(&mut venue, &mut private, is_position).await;

    // Nothing changed: nothing to tell.
    fake.spurious_position(BTC, 0);
    assert_eq!(
        feed_until(&mut venue, &mut private, is_position).await,
        StreamNews::default()
    );
    // Added to at 17,100: the same position, resized, entry averaged.
    fake.set_price(BTC, dec!(17100), false, T0 + 1_000);
    fake.open_position(BTC, Side::Long, dec!(0.5), T0 + 1_000)
        .unwrap();
    let news = feed_until(&mut venue, &mut private, is_position).await;
    assert_eq!(
        news.events,
        [VenueEvent::PositionChanged {
            position: 1,
            ts: T0 + 1_000,
            entry: u(dec!(17050)),
            quantity: dec!(1)
        }]
    );
    // A position nobody manages: discovered, for the driver to adopt.
    fake.set_price("ETHUSDT", dec!(1200), true, T0 + 2_000);
    fake.open_position("ETHUSDT", Side::Short, dec!(3), T0 + 2_000)
        .unwrap();
    let news = feed_until(&mut venue, &mut private, is_position).await;
    assert_eq!(news.events, []);
    assert_eq!(news.discovered.len(), 1);
    assert_eq!(news.discovered[0].symbol, "ETHUSDT");
    assert_eq!(news.discovered[0].side, Some(Side::Short));

    // Someone else removes our stop: the lifecycle hears it was cancelled.
    let i = btc();
    let other = rest(&fake, Duration::from_secs(5));
    let t = Target {
        symbol: BTC,
        position_idx: PositionIdx::OneWay,
        side: Side::Long,
        size: dec!(1),
        instrument: &i,
    };
    within(other.send(&request::remove_stop(&t).unwrap())).await;
    let news = feed_until(&mut venue, &mut private, is_position).await;
    assert_eq!(
        news.events,
        [VenueEvent::Cancelled {
            order: oref(1),
            ts: T0 + 2_000
        }]
    );
    private.shutdown().await;
}

#[tokio::test]
async fn venue_faults_become_events_or_actions() {
    let (fake, mut venue) = setup(Duration::from_secs(5)).await;
    let place = |seq| Command::Place {
        order: oref(seq),
        stop: u(dec!(16900)),
    };
    // 10006: refused for now, with the wait the reset header gives (800 ms after the server's
    // time; the client's estimate of that time may be some ms behind on a loaded machine).
    fake.inject(Fault::on(
        request::PATH_TRADING_STOP,
        FaultKind::RateLimited { reset_in_ms: 800 },
    ));
    let got = events(within(venue.execute(place(1), 1)).await);
    assert!(
        matches!(
            got[..],
            [VenueEvent::Rejected {
                reason: RejectReason::RateLimited { retry_after_ms },
                ..
            }] if (500..=1_000).contains(&retry_after_ms)
        ),
        "{got:?}"
    );
    // 10002 once: resynced and sent again inside the one call.
    fake.inject(Fault::on(request::PATH_TRADING_STOP, FaultKind::ClockSkew));
    assert!(matches!(
        events(within(venue.execute(place(2), 2)).await)[..],
        [VenueEvent::Accepted { .. }]
    ));
    // 403: no event, halt.
    fake.inject(Fault::on(request::PATH_TRADING_STOP, FaultKind::Forbidden));
    assert_eq!(
        within(venue.execute(place(3), 3)).await.action,
        Some(Action::Halt)
    );
    // A close whose answer is lost after it acted: read back flat, closed at the last fill.
    fake.inject(Fault::on(
        request::PATH_ORDER_CREATE,
        FaultKind::ServerErrorAfterApply,
    ));
    let close = Command::CloseAtMarket { position: 1 };
    assert_eq!(
        events(within(venue.execute(close, 4)).await),
        [VenueEvent::PositionClosed {
            position: 1,
            ts: 4,
            fill: u(dec!(17000))
        }]
    );
}

/// Messages lost in a stream gap (a muted private stream): the REST re-check finds what
/// happened — a resize, then the stop's fill — and tells each once.
#[tokio::test]
async fn the_recheck_after_a_gap_finds_what_the_stream_missed() {
    let (fake, mut venue) = setup(Duration::from_secs(5)).await;
    let mut private = stream(
        &fake,
        StreamKind::Private,
        &["position", "order", "execution"],
    )
    .await;
    let place = Command::Place {
        order: oref(1),
        stop: u(dec!(16900)),
    };
    within(venue.execute(place, 1)).await;
    feed_until(&mut venue, &mut private, is_position).await;
    assert_eq!(
        within(venue.recheck(2)).await.unwrap(),
        StreamNews::default()
    );

    fake.mute_streams(None);
    fake.set_price(BTC, dec!(17100), false, T0 + 1_000);
    fake.open_position(BTC, Side::Long, dec!(0.5), T0 + 1_000)
        .unwrap();
    let news = within(venue.recheck(3)).await.unwrap();
    assert_eq!(
        news.events,
        [VenueEvent::PositionChanged {
            position: 1,
            ts: 3,
            entry: u(dec!(17050)),
            quantity: dec!(1)
        }]
    );
    fake.set_price(BTC, dec!(16800), true, T0 + 2_000);
    let news = within(venue.recheck(4)).await.unwrap();
    assert_eq!(
        news.events,
        [VenueEvent::Triggered {
            order: oref(1),
            ts: T0 + 2_000,
            fill: u(dec!(16800))
        }]
    );
    assert_eq!(
        within(venue.recheck(5)).await.unwrap(),
        StreamNews::default()
    );
    let asked = fake
        .requests()
        .iter()
        .filter(|r| r.path == "/v5/execution/list")
        .count();
    assert_eq!(asked, 1, "fills read only for the position found flat");
    private.shutdown().await;
}
