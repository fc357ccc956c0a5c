//! What the live runner notes beside its book for the gauges and `/status`: the exchange
//! positions it does not manage, and when each stream last spoke.

use std::collections::{BTreeMap, BTreeSet};

use tokio::time::Instant;

use super::Gauges;
use crate::engine::State;
use crate::live::bybit::stream::StreamMessage;
use crate::live::bybit::ws::WsEvent;
use crate::live::runner::Book;
use crate::live::runner::status::StreamStatus;

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

    /// The gauges: positions by symbol and engine state, the unprotected ones (a stop sent,
    /// none resting), the unmanaged ones, price ages, the clock offset, the circuit.
    pub fn gauges(
        &self,
        book: &Book,
        arrived: &BTreeMap<String, Instant>,
        clock_offset_ms: i64,
        venue: &str,
        circuit_open: bool,
    ) -> Gauges {
        let mut g = Gauges {
            without_trailing_stop: self.unmanaged.len() as u64,
            clock_offset_ms,
            ..Gauges::default()
        };
        for slot in book.slots.values().filter(|s| s.runner.closed().is_none()) {
            let state = match slot.runner.engine.state() {
                State::Inactive => "inactive",
                State::Active => "active",
                State::Triggered => "triggered",
            };
            *g.positions
                .entry((slot.driver.symbol.clone(), state))
                .or_default() += 1;
            if slot.runner.order.unprotected_since().is_some() {
                g.unprotected += 1;
            }
        }
        let now = Instant::now();
        for (symbol, at) in arrived {
            g.price_age
                .insert(symbol.clone(), now.duration_since(*at).as_secs_f64());
        }
        g.circuit_open.insert(venue.to_string(), circuit_open);
        g
    }
}
