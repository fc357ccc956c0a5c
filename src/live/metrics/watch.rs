//! What the live runner notes beside its book for the gauges and `/status`: the exchange
//! positions it does not manage (until they are managed or leave the exchange), and when
//! each stream last spoke.

use std::collections::{BTreeMap, BTreeSet};

use tokio::time::Instant;

use super::Gauges;
use crate::live::bybit::stream::StreamMessage;
use crate::live::bybit::ws::WsEvent;
use crate::live::runner::exchange::{PositionInfo, from_binance};
use crate::live::runner::status::{Status, StreamStatus};

#[derive(Debug, Default)]
pub struct Watch {
    /// Exchange positions (symbol, position index) seen open and not managed.
    pub unmanaged: BTreeSet<(String, u8)>,
    connected: BTreeMap<&'static str, bool>,
    last_message: BTreeMap<&'static str, Instant>,
}

impl Watch {
    /// A stream event: connection state and message times.
    pub fn on_ws(&mut self, ev: &WsEvent) {
        match ev {
            WsEvent::Connected { kind, .. } => {
                self.connected.insert(kind.as_str(), true);
            }
            WsEvent::Disconnected { kind, .. } | WsEvent::Refused { kind, .. } => {
                self.connected.insert(kind.as_str(), false);
            }
            WsEvent::Message(m) => {
                if let StreamMessage::Positions { list, .. } = m {
                    self.flat(list);
                }
                // Pongs and replies name no stream; the data messages do.
                let kind = match m {
                    StreamMessage::Ticker(_) => "public",
                    StreamMessage::Positions { .. }
                    | StreamMessage::Orders { .. }
                    | StreamMessage::Executions { .. } => "private",
                    _ => return,
                };
                self.last_message.insert(kind, Instant::now());
            }
            WsEvent::Unreadable { .. } => {}
        }
    }

    /// A Binance stream event, under the same names: the market stream is `public`, the user
    /// stream `private`.
    pub fn on_binance(&mut self, ev: &crate::live::binance::ws::WsEvent) {
        use crate::live::binance::stream::StreamMessage as M;
        use crate::live::binance::ws::{StreamKind, WsEvent as E};
        let name = |k: &StreamKind| match k {
            StreamKind::Market => "public",
            StreamKind::Private => "private",
        };
        match ev {
            E::Connected { kind, .. } => {
                self.connected.insert(name(kind), true);
            }
            E::Disconnected { kind, .. } | E::Refused { kind, .. } => {
                self.connected.insert(name(kind), false);
            }
            E::Message(m) => {
                if let M::Account(a) = m {
                    let list: Vec<PositionInfo> = a.positions.iter().map(from_binance).collect();
                    self.flat(&list);
                }
                let kind = match m {
                    M::Price(_) => "public",
                    M::Algo(_) | M::Order(_) | M::Account(_) => "private",
                    _ => return,
                };
                self.last_message.insert(kind, Instant::now());
            }
            E::Unreadable { .. } => {}
        }
    }

    /// Positions a message says are flat leave the unmanaged set (closed by hand,
    /// liquidated: nothing is left to protect).
    fn flat(&mut self, list: &[PositionInfo]) {
        for p in list.iter().filter(|p| !p.is_open()) {
            self.unmanaged
                .remove(&(p.symbol.clone(), p.position_idx.as_u8()));
        }
    }

    /// After a listing of every open position of the account: an unmanaged one not in it
    /// has left the exchange (its close was missed while a stream was down).
    pub fn listed(&mut self, open: &[PositionInfo]) {
        self.unmanaged.retain(|(symbol, idx)| {
            open.iter()
                .any(|p| p.is_open() && p.symbol == *symbol && p.position_idx.as_u8() == *idx)
        });
    }

    /// Each stream's state for `/status`.
    pub fn streams(&self) -> BTreeMap<&'static str, StreamStatus> {
        let now = Instant::now();
        ["public", "private"]
            .into_iter()
            .map(|k| {
                (
                    k,
                    StreamStatus {
                        connected: self.connected.get(k).copied().unwrap_or(false),
                        last_message_age_ms: self
                            .last_message
                            .get(k)
                            .map(|at| now.duration_since(*at).as_millis() as u64),
                    },
                )
            })
            .collect()
    }
}

/// The gauges, from what `/status` holds when `/metrics` is scraped: positions by symbol
/// and engine state, the unmanaged ones, price ages, the clock offset, the circuit. (The
/// unprotected ones are counted at each commit, by [`super::Metrics::on_step`]: a scrape
/// during a slow create sees them before the runner publishes.)
pub fn gauges(status: &Status) -> Gauges {
    let inputs = &status.gauges;
    let mut g = Gauges {
        without_trailing_stop: inputs.without_trailing_stop,
        clock_offset_ms: inputs.clock_offset_ms,
        positions: inputs
            .seen
            .iter()
            .flat_map(|(symbol, states)| states.iter().map(|s| ((symbol.clone(), *s), 0)))
            .collect(),
        circuit_open: inputs.circuit_open,
        ..Gauges::default()
    };
    for p in &status.positions {
        *g.positions.entry((p.symbol.clone(), p.state)).or_default() += 1;
    }
    let now = Instant::now();
    for (symbol, at) in &inputs.arrived {
        g.price_age
            .insert(symbol.clone(), now.duration_since(*at).as_secs_f64());
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Instrument, Side, TrailingConfig};
    use crate::live::runner::exchange::PositionIdx;
    use crate::live::runner::status::GaugeInputs;
    use crate::live::runner::{Book, Opening};
    use crate::store::{OpenOptions, Store};
    use rust_decimal_macros::dec;

    /// An open position whose first stop is on its way is counted by symbol and state, and
    /// as unprotected from the commit that sent it to the one that saw it rest; a refused
    /// exchange position as without a trailing stop; every symbol's price age and the circuit
    /// are there. The status is kept by [`Status::refresh`], as the runner keeps it.
    #[test]
    fn gauges_come_from_the_status_and_the_refused_positions() {
        use crate::live::metrics::{Metrics, names, sample};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("g.sqlite"), OpenOptions::runner()).unwrap();
        let mut book = Book::new(store).unwrap();
        let metrics = std::sync::Arc::new(Metrics::new("bybit"));
        book.metrics = Some(metrics.clone());
        let unprotected = || sample(&metrics.render(), names::UNPROTECTED, &[]);
        let config: TrailingConfig = toml::from_str(
            "activation_percent = \"1\"\ndistance_percent = \"1\"\ninitial_stop_percent = \"1\"",
        )
        .unwrap();
        let o = Opening {
            symbol: "BTCUSDT".into(),
            position_idx: 0,
            side: Side::Long,
            entry: dec!(100),
            size: dec!(1),
            opened_at: 1_000,
            foreign_stop: None,
        };
        book.open(&o, &Instrument::with_price_decimals(dec!(0.1), 1), &config)
            .unwrap();
        assert_eq!(unprotected(), Some(1.0));
        let w = Watch::default();
        let mut status = Status::default();
        let changed = book.take_changed();
        status.refresh(&book, &changed);
        status.remember_labels(&changed.positions);
        status.gauges = GaugeInputs {
            seen: status.gauges.seen.clone(),
            arrived: [("BTCUSDT".to_string(), Instant::now())]
                .into_iter()
                .collect(),
            without_trailing_stop: 1,
            clock_offset_ms: -7,
            circuit_open: false,
        };
        let g = gauges(&status);
        assert_eq!(
            g.positions,
            [(("BTCUSDT".to_string(), "inactive"), 1)]
                .into_iter()
                .collect()
        );
        assert_eq!(g.without_trailing_stop, 1);
        assert_eq!(g.clock_offset_ms, -7);
        assert!(g.price_age["BTCUSDT"] < 5.0);
        assert!(!g.circuit_open);
        // Once its stop rests (committed), it is protected.
        let (cmd, ts) = book.take_commands(1)[0];
        let crate::venue::Command::Place { order, stop } = cmd else {
            panic!("{cmd:?}")
        };
        book.on_event(
            1,
            &crate::venue::VenueEvent::Accepted {
                order,
                stop,
                ts,
                venue_id: None,
            },
        );
        assert_eq!(unprotected(), Some(1.0), "not before the commit");
        book.commit(&[1]).unwrap();
        assert_eq!(unprotected(), Some(0.0));
        let changed = book.take_changed();
        status.refresh(&book, &changed);
        // Closed, its gauge reads 0 rather than vanishing.
        book.remove(1);
        let changed = book.take_changed();
        status.refresh(&book, &changed);
        assert_eq!(
            gauges(&status).positions,
            [(("BTCUSDT".to_string(), "inactive"), 0)]
                .into_iter()
                .collect()
        );
        let s = w.streams();
        assert!(!s["public"].connected);
        assert_eq!(s["private"].last_message_age_ms, None);
    }

    fn flat(symbol: &str, idx: PositionIdx) -> PositionInfo {
        PositionInfo {
            symbol: symbol.into(),
            position_idx: idx,
            side: None,
            size: dec!(0),
            avg_price: dec!(0),
            stop_loss: None,
            mark_price: None,
            updated_ms: None,
        }
    }

    /// An unmanaged position leaves the set when a position message says it is flat (Bybit's
    /// `position` topic, Binance's `ACCOUNT_UPDATE`), or when a listing of the account's open
    /// positions no longer has it; an open one stays.
    #[test]
    fn unmanaged_positions_leave_when_they_close() {
        use crate::live::binance::request::PositionSide;
        use crate::live::binance::stream::{AccountUpdate, StreamMessage as B};
        let keys = |w: &Watch| w.unmanaged.iter().cloned().collect::<Vec<_>>();
        let mut w = Watch::default();
        for k in [
            ("DOGEUSDT", 0),
            ("XRPUSDT", 1),
            ("XRPUSDT", 2),
            ("SOLUSDT", 0),
        ] {
            w.unmanaged.insert((k.0.into(), k.1));
        }
        let mut open = flat("XRPUSDT", PositionIdx::HedgeSell);
        open.side = Some(Side::Short);
        open.size = dec!(3);
        w.on_ws(&WsEvent::Message(StreamMessage::Positions {
            ts: 1,
            list: vec![flat("DOGEUSDT", PositionIdx::OneWay), open.clone()],
        }));
        assert_eq!(
            keys(&w),
            [
                ("SOLUSDT".to_string(), 0),
                ("XRPUSDT".to_string(), 1),
                ("XRPUSDT".to_string(), 2)
            ]
        );
        let binance = |symbol: &str, side, amount| crate::live::binance::snapshot::PositionInfo {
            symbol: symbol.into(),
            position_side: side,
            amount,
            entry_price: dec!(0),
            mark_price: None,
            updated_ms: None,
        };
        w.on_binance(&crate::live::binance::ws::WsEvent::Message(B::Account(
            AccountUpdate {
                ts: 2,
                reason: "ORDER".into(),
                positions: vec![
                    binance("XRPUSDT", PositionSide::Long, dec!(0)),
                    binance("XRPUSDT", PositionSide::Short, dec!(-3)),
                ],
            },
        )));
        assert_eq!(
            keys(&w),
            [("SOLUSDT".to_string(), 0), ("XRPUSDT".to_string(), 2)]
        );
        w.listed(&[open]);
        assert_eq!(keys(&w), [("XRPUSDT".to_string(), 2)]);
        w.listed(&[]);
        assert!(w.unmanaged.is_empty());
    }
}
