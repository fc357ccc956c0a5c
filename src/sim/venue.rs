//! The simulated exchange as a venue (DESIGN §2.1 step 1 and §3): one position's resting
//! stop-market order. `bybit` amends atomically; `binance` cancels, then creates
//! `update_latency_ms` later, the create judged against the latest price known then.
//! It answers every command at once; price points settle a create in flight and trigger the
//! resting stop. It knows nothing of trailing or update rules.

use serde::{Deserialize, Serialize};

use crate::venue::{Command, OrderRef, RejectReason, Venue, VenueEvent};

use super::path::Point;

/// Which exchange the simulated venue behaves like (`exchange.venue`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum VenueKind {
    /// Cancel, then create: no stop rests in between.
    Binance,
    /// Atomic amend.
    #[default]
    Bybit,
}

/// How the simulated venue treats stop updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VenueModel {
    pub venue: VenueKind,
    pub update_latency_ms: i64,
}

impl VenueModel {
    /// Whether a send takes effect at once (an amend, or a create without latency).
    pub fn instant(&self) -> bool {
        self.venue == VenueKind::Bybit || self.update_latency_ms == 0
    }
}

/// A create in flight: it rests (or is refused) at `at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InFlight {
    pub order: OrderRef,
    pub stop: i64,
    pub at: i64,
}

/// One position's side of the simulated exchange (serialised as a driver's state).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimVenue {
    pub model: VenueModel,
    sign: i64,
    pub(crate) resting: Option<(OrderRef, i64)>,
    pub(crate) pending: Option<InFlight>,
    /// The latest price the venue knows (what a market order fills at).
    pub(crate) last_price: i64,
}

impl SimVenue {
    /// The venue of a position of side `sign` whose entry (its first price) is `entry`.
    pub fn new(model: VenueModel, sign: i64, entry: i64) -> SimVenue {
        SimVenue {
            model,
            sign,
            resting: None,
            pending: None,
            last_price: entry,
        }
    }

    pub(crate) fn with_state(
        model: VenueModel,
        sign: i64,
        resting: Option<(OrderRef, i64)>,
        pending: Option<InFlight>,
        last_price: i64,
    ) -> SimVenue {
        SimVenue {
            model,
            sign,
            resting,
            pending,
            last_price,
        }
    }

    /// The stop resting now, in units.
    #[inline]
    pub fn resting_stop(&self) -> Option<i64> {
        self.resting.map(|(_, s)| s)
    }

    #[inline]
    pub fn has_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// A point at or after a create's time settles it: judged against the latest price known
    /// then (this point if it is exactly then, else the one before), it rests or is refused.
    #[inline(always)]
    pub fn settle(&mut self, pt: Point) -> Option<VenueEvent> {
        let p = self.pending?;
        if pt.ts < p.at {
            return None;
        }
        if pt.ts == p.at {
            self.last_price = pt.price;
        }
        let judged = self.last_price;
        self.pending = None;
        if self.sign * judged <= self.sign * p.stop {
            return Some(VenueEvent::Rejected {
                order: p.order,
                ts: p.at,
                reason: RejectReason::WouldTrigger { market: judged },
            });
        }
        self.resting = Some((p.order, p.stop));
        Some(VenueEvent::Accepted {
            order: p.order,
            stop: p.stop,
            ts: p.at,
            venue_id: None,
        })
    }

    /// The exchange check: a point that crosses the resting stop fills it, at the stop when
    /// the price moved there continuously, at the point when it gapped there (an open, a
    /// trade tick).
    #[inline(always)]
    pub fn check(&mut self, pt: Point) -> Option<VenueEvent> {
        let (order, stop) = self.resting?;
        if self.sign * pt.price > self.sign * stop {
            return None;
        }
        self.resting = None;
        Some(VenueEvent::Triggered {
            order,
            ts: pt.ts,
            fill: if pt.gap { pt.price } else { stop },
        })
    }

    /// The point reached the market (and the engine).
    #[inline(always)]
    pub fn see(&mut self, price: i64) {
        self.last_price = price;
    }
}

impl Venue for SimVenue {
    fn atomic_amend(&self) -> bool {
        self.model.venue == VenueKind::Bybit
    }

    #[inline]
    fn execute(&mut self, command: Command, ts: i64) -> Option<VenueEvent> {
        match command {
            Command::Place { order, stop } => {
                if self.model.instant() {
                    self.resting = Some((order, stop));
                    Some(VenueEvent::Accepted {
                        order,
                        stop,
                        ts,
                        venue_id: None,
                    })
                } else {
                    self.pending = Some(InFlight {
                        order,
                        stop,
                        at: ts + self.model.update_latency_ms,
                    });
                    None
                }
            }
            Command::Amend { order, stop, .. } => {
                self.resting = Some((order, stop));
                Some(VenueEvent::Accepted {
                    order,
                    stop,
                    ts,
                    venue_id: None,
                })
            }
            Command::Cancel { order } => {
                if self.resting.is_some_and(|(o, _)| o == order) {
                    self.resting = None;
                } else if self.pending.is_some_and(|p| p.order == order) {
                    self.pending = None;
                } else {
                    return Some(VenueEvent::Rejected {
                        order,
                        ts,
                        reason: RejectReason::Invalid { code: -2011 },
                    });
                }
                Some(VenueEvent::Cancelled { order, ts })
            }
            Command::CloseAtMarket { position } => {
                self.resting = None;
                self.pending = None;
                Some(VenueEvent::PositionClosed {
                    position,
                    ts,
                    fill: self.last_price,
                })
            }
            Command::Query { order } => match self.resting {
                Some((o, stop)) if o == order => Some(VenueEvent::Accepted {
                    order,
                    stop,
                    ts,
                    venue_id: None,
                }),
                _ => None,
            },
        }
    }
}
