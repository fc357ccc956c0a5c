//! What the live runner notes beside its book for the gauges and `/status`: the exchange
//! positions it does not manage, and when each stream last spoke.

use std::collections::{BTreeMap, BTreeSet};

use tokio::time::Instant;

use super::Gauges;
use crate::live::bybit::stream::StreamMessage;
use crate::live::bybit::ws::WsEvent;
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
/// and engine state, the unprotected ones (a stop sent, none resting), the unmanaged ones,
/// price ages, the clock offset, the circuit.
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
        ..Gauges::default()
    };
    for p in &status.positions {
        *g.positions.entry((p.symbol.clone(), p.state)).or_default() += 1;
        if p.unprotected_since.is_some() {
            g.unprotected += 1;
        }
    }
    let now = Instant::now();
    for (symbol, at) in &inputs.arrived {
        g.price_age
            .insert(symbol.clone(), now.duration_since(*at).as_secs_f64());
    }
    if !inputs.venue.is_empty() {
        g.circuit_open
            .insert(inputs.venue.clone(), inputs.circuit_open);
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Instrument, Side, TrailingConfig};
    use crate::live::runner::status::GaugeInputs;
    use crate::live::runner::{Book, Opening};
    use crate::store::{OpenOptions, Store};
    use rust_decimal_macros::dec;

    /// An open position whose first stop is on its way is counted by symbol and state and as
    /// unprotected; a refused exchange position as without a trailing stop; every symbol's
    /// price age and the circuit are there. The status is kept by [`Status::refresh`], as the
    /// runner keeps it.
    #[test]
    fn gauges_come_from_the_status_and_the_refused_positions() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("g.sqlite"), OpenOptions::runner()).unwrap();
        let mut book = Book::new(store).unwrap();
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
            venue: "bybit".into(),
            circuit_open: false,
        };
        let g = gauges(&status);
        assert_eq!(
            g.positions,
            [(("BTCUSDT".to_string(), "inactive"), 1)]
                .into_iter()
                .collect()
        );
        assert_eq!((g.unprotected, g.without_trailing_stop), (1, 1));
        assert_eq!(g.clock_offset_ms, -7);
        assert!(g.price_age["BTCUSDT"] < 5.0);
        assert!(!g.circuit_open["bybit"]);
        // Once its stop rests, it is protected.
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
        book.commit(&[1]).unwrap();
        let changed = book.take_changed();
        status.refresh(&book, &changed);
        assert_eq!(gauges(&status).unprotected, 0);
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
}
