//! The runner (`LIVE.md` §1): engine → stop order lifecycle → venue, and back.
//!
//! [`PositionRunner`] is one position driven through the seam: price points go to the engine,
//! its intents through the position's [`StopOrder`] to a [`Venue`], the venue's answers back
//! through the lifecycle to the engine. The simulated exchange is one venue (`sim::venue`);
//! the backtest, the sweep and `paper` drive it, a live runner drives a real one. Nothing here
//! knows candles, bars or market indices, and no trailing rule lives here.

use serde::{Deserialize, Serialize};

use crate::engine::{
    EngineError, EventSink, ExitReason, Instrument, Intent, Position, TrailingConfig, TrailingStop,
};
use crate::venue::{EngineNews, Reaction, StopOrder, Venue, VenueEvent};

/// How a position closed. `fill` is in instrument units, before slippage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Close {
    pub ts: i64,
    pub fill: i64,
    pub reason: ExitReason,
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
    pub fn open<O: EventSink>(
        position: &Position,
        instrument: &Instrument,
        config: &TrailingConfig,
        venue: V,
        out: &mut O,
    ) -> Result<PositionRunner<V>, EngineError> {
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
    pub fn on_price<O: EventSink>(
        &mut self,
        price: i64,
        ts: i64,
        out: &mut O,
    ) -> Result<Option<Close>, EngineError> {
        if self.closed.is_some() {
            return Err(EngineError::Closed);
        }
        self.see(price);
        let intent = self.engine.on_price_units(price, ts, out)?;
        Ok(self.on_intent(intent, ts, out))
    }

    /// What the venue reported about this position.
    #[inline]
    pub fn on_venue_event<O: EventSink>(
        &mut self,
        event: &VenueEvent,
        out: &mut O,
    ) -> Option<Close> {
        if self.closed.is_some() {
            return self.closed;
        }
        let reaction = self.order.on_event(event);
        self.react(reaction, event.ts(), out)
    }

    #[inline(always)]
    fn on_intent<O: EventSink>(
        &mut self,
        intent: Option<Intent>,
        ts: i64,
        out: &mut O,
    ) -> Option<Close> {
        let intent = intent?;
        let seq = self.engine.counters().stop_updates;
        let reaction = self.order.on_intent(intent, seq, ts);
        self.react(reaction, ts, out)
    }

    /// Tells the engine the news and sends the command, following the venue's immediate
    /// answers until there is nothing left to do now.
    fn react<O: EventSink>(&mut self, mut r: Reaction, mut ts: i64, out: &mut O) -> Option<Close> {
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
                    return Some(self.close(ExitReason::of_stop(origin), fill, ts, out));
                }
                Some(EngineNews::Closed { fill, by_us: _ }) => {
                    // The only close this runner asks for is an exit now; a position closed
                    // on the venue by someone else ends the same way (live adapters name it).
                    return Some(self.close(ExitReason::ExitNow, fill, ts, out));
                }
                // Nothing for the engine: the stop order stands as the lifecycle says.
                Some(EngineNews::Refused(_)) | None => {}
            }
            let command = r.command.take()?;
            let event = self.venue.execute(command, ts)?;
            ts = event.ts();
            r = self.order.on_event(&event);
        }
    }

    /// Closes the position at `fill` (units, before slippage) for `reason` without the venue
    /// (the end of the data in a replay).
    pub fn close<O: EventSink>(
        &mut self,
        reason: ExitReason,
        fill: i64,
        ts: i64,
        out: &mut O,
    ) -> Close {
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
