//! The runner (`LIVE.md` §1): engine → stop order lifecycle → venue, and back.
//!
//! [`PositionRunner`] is one position driven through the seam: price points go to the engine,
//! its intents through the position's [`StopOrder`] to a [`Venue`], the venue's answers back
//! through the lifecycle to the engine. The simulated exchange is one venue (`sim::venue`);
//! the backtest, the sweep and `paper` drive it, a live runner drives a real one. Nothing here
//! knows candles, bars or market indices, and no trailing rule lives here.

mod tap;

pub use tap::{Entry, Input, Recorder, Silent, Tap, compact};

use serde::{Deserialize, Serialize};

use crate::engine::{
    EngineError, EngineSnapshot, ExitReason, Instrument, Intent, Position, TrailingConfig,
    TrailingStop, fixed,
};
use crate::venue::{
    Command, EngineNews, Reaction, StopOrder, StopOrderSnapshot, Venue, VenueEvent,
};

/// How a position closed. `fill` is in instrument units, before slippage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Close {
    pub ts: i64,
    pub fill: i64,
    pub reason: ExitReason,
}

/// Everything a runner holds but its venue: enough to rebuild it exactly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunnerSnapshot {
    pub engine: EngineSnapshot,
    pub order: StopOrderSnapshot,
    /// Mirrored best and worst prices seen (units, `side.sign() * price`).
    pub best: i64,
    pub worst: i64,
    pub closed: Option<Close>,
}

/// One position: its engine, its stop order on the venue, and the trade's excursions.
#[derive(Debug, Clone)]
pub struct PositionRunner<V> {
    pub engine: TrailingStop,
    pub order: StopOrder,
    pub venue: V,
    pub(crate) sign: i64,
    pub(crate) entry: i64,
    /// Mirrored best and worst prices seen (entry, engine points, the fill).
    pub(crate) best: i64,
    pub(crate) worst: i64,
    pub(crate) closed: Option<Close>,
}

impl<V: Venue> PositionRunner<V> {
    /// Opens the position: the entry is its first price point; a stop the engine wants at
    /// once (an initial stop, an activation at entry) goes to the venue.
    pub fn open<O: Tap>(
        position: &Position,
        instrument: &Instrument,
        config: &TrailingConfig,
        venue: V,
        out: &mut O,
    ) -> Result<PositionRunner<V>, EngineError> {
        if O::RECORDING {
            out.input(Input::Open {
                position: Box::new(position.clone()),
                instrument: *instrument,
                config: Box::new(config.clone()),
                atomic_amend: venue.atomic_amend(),
            });
        }
        let (engine, intent) = TrailingStop::open(position, instrument, config, out)?;
        let entry = instrument
            .units(position.entry_price)
            .expect("checked by TrailingStop::open");
        let sign = position.side.sign();
        let order = StopOrder::new(position.id, venue.atomic_amend());
        let mut r = PositionRunner {
            engine,
            order,
            venue,
            sign,
            entry,
            best: sign * entry,
            worst: sign * entry,
            closed: None,
        };
        r.on_intent(intent, position.opened_at, out);
        Ok(r)
    }

    /// A price point for the engine (the venue has seen it already); returns the close if
    /// the engine's decision closed the position.
    #[inline(always)]
    pub fn on_price<O: Tap>(
        &mut self,
        price: i64,
        ts: i64,
        out: &mut O,
    ) -> Result<Option<Close>, EngineError> {
        if self.closed.is_some() {
            return Err(EngineError::Closed);
        }
        if O::RECORDING {
            out.input(Input::Price { ts, price });
        }
        self.see(price);
        let intent = self.engine.on_price_units(price, ts, out)?;
        Ok(self.on_intent(intent, ts, out))
    }

    /// What the venue reported about this position.
    #[inline]
    pub fn on_venue_event<O: Tap>(&mut self, event: &VenueEvent, out: &mut O) -> Option<Close> {
        if self.closed.is_some() {
            return self.closed;
        }
        if O::RECORDING {
            out.input(Input::Venue {
                event: event.clone(),
            });
        }
        let reaction = self.order.on_event(event);
        self.react(reaction, event.ts(), out)
    }

    #[inline(always)]
    fn on_intent<O: Tap>(&mut self, intent: Option<Intent>, ts: i64, out: &mut O) -> Option<Close> {
        let intent = intent?;
        let seq = self.engine.counters().stop_updates;
        let reaction = self.order.on_intent(intent, seq, ts);
        self.react(reaction, ts, out)
    }

    /// Tells the engine the news and sends the command, following the venue's immediate
    /// answers until there is nothing left to do now.
    fn react<O: Tap>(&mut self, mut r: Reaction, mut ts: i64, out: &mut O) -> Option<Close> {
        loop {
            match r.news.take() {
                Some(EngineNews::Confirmed { stop }) => {
                    self.engine.on_stop_confirmed(stop, ts, out)
                }
                Some(EngineNews::WouldTrigger { stop, market }) => {
                    let intent = self.engine.on_stop_rejected(stop, market, ts, out);
                    let seq = self.engine.counters().stop_updates;
                    r.command = r.command.or(self.order.on_intent(intent, seq, ts).command);
                }
                Some(EngineNews::Filled { fill, origin }) => {
                    return Some(self.close_now(ExitReason::of_stop(origin), fill, ts, out));
                }
                Some(EngineNews::Closed { fill, by_us: _ }) => {
                    // The only close this runner asks for is an exit now; a position closed
                    // on the venue by someone else ends the same way (live adapters name it).
                    return Some(self.close_now(ExitReason::ExitNow, fill, ts, out));
                }
                // Nothing for the engine: the stop order stands as the lifecycle says.
                Some(EngineNews::Refused(_)) | None => {}
            }
            let command = r.command.take()?;
            let event = self.venue.execute(command, ts)?;
            if O::RECORDING {
                out.input(Input::Venue {
                    event: event.clone(),
                });
            }
            ts = event.ts();
            r = self.order.on_event(&event);
        }
    }

    /// Closes the position at `fill` (units, before slippage) for `reason` without the venue
    /// (the end of the data in a replay).
    pub fn close<O: Tap>(&mut self, reason: ExitReason, fill: i64, ts: i64, out: &mut O) -> Close {
        if let Some(c) = self.closed {
            return c;
        }
        if O::RECORDING {
            out.input(Input::Close { ts, fill, reason });
        }
        self.close_now(reason, fill, ts, out)
    }

    fn close_now<O: Tap>(&mut self, reason: ExitReason, fill: i64, ts: i64, out: &mut O) -> Close {
        if let Some(c) = self.closed {
            return c;
        }
        self.see(fill);
        self.order.close(ts);
        self.engine.on_closed(reason, fill, ts, out);
        let c = Close { ts, fill, reason };
        self.closed = Some(c);
        c
    }

    /// Applies a changed trailing config at `ts` (the rule of [`TrailingStop::restore_with`]:
    /// the stop never loosens; the new settings apply to future moves).
    pub fn change_config<O: Tap>(
        &mut self,
        config: &TrailingConfig,
        ts: i64,
        out: &mut O,
    ) -> Result<(), EngineError> {
        if O::RECORDING {
            out.input(Input::ConfigChanged {
                ts,
                config: Box::new(config.clone()),
            });
        }
        self.engine = TrailingStop::restore_with(&self.engine.snapshot(), config)?;
        Ok(())
    }

    /// The stop command in flight, to send now that an account rate limit let it go: a newer
    /// stop queued behind it replaces it (the older one never leaves). `None` when no place,
    /// amend or cancel is in flight any more.
    pub fn coalesce<O: Tap>(&mut self, ts: i64, out: &mut O) -> Option<Command> {
        if self.closed.is_some() {
            return None;
        }
        // Only a change is an input: without a newer stop the command is the one journalled.
        if O::RECORDING && self.order.queued() {
            out.input(Input::Coalesce { ts });
        }
        self.order.coalesce()
    }

    /// Applies a recorded input (rebuilding a position from its journal). An opening is not
    /// an input to an open runner; see [`PositionRunner::open_from`].
    pub fn apply<O: Tap>(&mut self, input: &Input, out: &mut O) -> Result<(), EngineError> {
        match input {
            Input::Open { .. } => return Err(EngineError::Closed),
            Input::Price { ts, price } => {
                self.on_price(*price, *ts, out)?;
            }
            Input::Prices { points } => {
                for &(ts, price) in points {
                    self.on_price(price, ts, out)?;
                }
            }
            Input::Venue { event } => {
                if self.closed.is_some() {
                    return Err(EngineError::Closed);
                }
                self.on_venue_event(event, out);
            }
            Input::Close { ts, fill, reason } => {
                if self.closed.is_some() {
                    return Err(EngineError::Closed);
                }
                self.close(*reason, *fill, *ts, out);
            }
            Input::ConfigChanged { ts, config } => self.change_config(config, *ts, out)?,
            Input::Coalesce { ts } => {
                if self.closed.is_some() {
                    return Err(EngineError::Closed);
                }
                self.coalesce(*ts, out);
            }
        }
        Ok(())
    }

    /// Everything but the venue.
    pub fn snapshot(&self) -> RunnerSnapshot {
        RunnerSnapshot {
            engine: self.engine.snapshot(),
            order: self.order.snapshot(),
            best: self.best,
            worst: self.worst,
            closed: self.closed,
        }
    }

    /// Rebuilds a runner from [`PositionRunner::snapshot`] on `venue` (whose own state the
    /// driver restored).
    pub fn restore(snap: &RunnerSnapshot, venue: V) -> Result<PositionRunner<V>, EngineError> {
        let engine = TrailingStop::restore(&snap.engine)?;
        let position = &snap.engine.position;
        let entry = fixed::to_units(position.entry_price, engine.instrument().price_decimals)
            .ok_or(EngineError::NotRepresentable {
                what: "entry_price",
                value: position.entry_price,
                decimals: engine.instrument().price_decimals,
            })?;
        Ok(PositionRunner {
            sign: position.side.sign(),
            entry,
            engine,
            order: StopOrder::restore(&snap.order),
            venue,
            best: snap.best,
            worst: snap.worst,
            closed: snap.closed,
        })
    }

    #[inline]
    pub(crate) fn see(&mut self, price: i64) {
        let m = self.sign * price;
        self.best = self.best.max(m);
        self.worst = self.worst.min(m);
    }

    pub fn closed(&self) -> Option<Close> {
        self.closed
    }
    pub fn unprotected_ms(&self) -> i64 {
        self.order.unprotected_ms()
    }
    /// Largest favourable excursion in instrument units (≥ 0).
    pub fn favourable_units(&self) -> i64 {
        self.best - self.sign * self.entry
    }
    /// Largest adverse excursion in instrument units (≥ 0).
    pub fn adverse_units(&self) -> i64 {
        self.sign * self.entry - self.worst
    }
}

impl PositionRunner<Silent> {
    /// Opens a runner from a recorded opening on a venue that answers nothing at once.
    /// `None` when the input is not an opening.
    pub fn open_from<O: Tap>(
        input: &Input,
        out: &mut O,
    ) -> Option<Result<PositionRunner<Silent>, EngineError>> {
        match input {
            Input::Open {
                position,
                instrument,
                config,
                atomic_amend,
            } => Some(PositionRunner::open(
                position,
                instrument,
                config,
                Silent {
                    atomic: *atomic_amend,
                },
                out,
            )),
            _ => None,
        }
    }
}
