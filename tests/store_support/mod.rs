//! Shared by the store tests: a synthetic market and one position stepped through the paper
//! driver's `apply` with a recording tap, the same path the paper runner takes.

#![allow(dead_code)]

use rust_decimal::Decimal;
use trailstop::backtest::market::Series;
use trailstop::backtest::replay::{After, BarRules, Cursor, Replay};
use trailstop::engine::{Event, Instrument, Position, Side, TrailingConfig};
use trailstop::paper::step::{DetailSource, MarketStep as Input, apply, apply_open};
use trailstop::runner::{Entry, Recorder};
use trailstop::scenario::{DetailBars, Venue};
use trailstop::sim::exchange::VenueModel;
use trailstop::sim::path::{Bar, Policy};
use trailstop::store::{PositionRecord, StepWrite, Store};

pub const DELTA: i64 = 60_000;

/// A position over a series of bars (instrument: 1 decimal, tick 0.1).
#[derive(Debug, Clone)]
pub struct Case {
    pub side: Side,
    pub config: TrailingConfig,
    pub model: VenueModel,
    pub policy: Policy,
    pub bars: Vec<Bar>,
    /// Finer trade ticks inside the bars, replayed where the rules say.
    pub detail: Option<(Series, DetailBars)>,
}

pub fn instrument() -> Instrument {
    Instrument::with_price_decimals(Decimal::new(1, 1), 1)
}

impl Case {
    pub fn simple(side: Side, closes: &[i64]) -> Case {
        let mut config = TrailingConfig::with_distance(Decimal::ONE);
        config.initial_stop_percent = Some(Decimal::from(2));
        config.rate_limit.min_interval_seconds = 0;
        let mut open = 10_000;
        let bars = closes
            .iter()
            .enumerate()
            .map(|(i, &c)| {
                let b = Bar {
                    ts: i as i64 * DELTA,
                    open,
                    high: open.max(c) + 5,
                    low: open.min(c) - 5,
                    close: c,
                };
                open = c;
                b
            })
            .collect();
        Case {
            side,
            config,
            model: VenueModel {
                venue: Venue::Bybit,
                update_latency_ms: 0,
            },
            policy: Policy::Pessimistic,
            bars,
            detail: None,
        }
    }

    pub fn open_input(&self, id: u64) -> Input {
        Input::Open {
            position: Position::new(
                id,
                "TEST",
                self.side,
                instrument().decimal(self.bars[0].open),
                self.bars[0].ts,
            ),
            instrument: instrument(),
            config: self.config.clone(),
            model: self.model,
            rules: BarRules {
                policy: self.policy,
                ambiguity: true,
                detail: self.detail.as_ref().map(|(_, d)| *d),
            },
            // The entry takes the first bar's open; its replay goes on from the next point.
            cursor: Cursor {
                next: 0,
                after: After {
                    ts: i64::MIN,
                    skip_first: true,
                },
            },
        }
    }

    /// The input of the position's next step: its next bar, or the end of the data.
    pub fn next_input(&self, r: &Replay) -> Input {
        let g = r.cursor.next;
        match self.bars.get(g) {
            Some(bar) => Input::bar(g, bar, DELTA, &instrument()),
            None => {
                let last = self.bars.last().unwrap();
                Input::EndOfData {
                    ts: last.ts + DELTA - 1,
                    price: instrument().decimal(last.close),
                }
            }
        }
    }

    pub fn source(&self) -> DetailSource<'_> {
        DetailSource::Market {
            series: self.detail.as_ref().map(|(s, _)| s),
            policy: self.policy,
        }
    }
}

/// One applied step: its entries (inputs and events, as journalled) and the resulting record.
pub type Step = (Vec<Entry>, PositionRecord);

/// The engine events of a step.
pub fn events(step: &Step) -> Vec<Event> {
    step.0
        .iter()
        .filter_map(|e| match e {
            Entry::Event(ev) => Some(ev.clone()),
            Entry::Input(_) => None,
        })
        .collect()
}

fn driver_json(r: &Replay) -> String {
    serde_json::to_string(&r.driver()).unwrap()
}

/// The replay of a stored record (its runner and the paper driver's blob).
pub fn restore(rec: &PositionRecord) -> Replay {
    Replay::from_parts(&rec.runner, serde_json::from_str(&rec.driver).unwrap()).unwrap()
}

/// Opens position `id`.
pub fn open(case: &Case, id: u64) -> (Replay, Step) {
    let input = case.open_input(id);
    let mut tap = Recorder::default();
    let (r, _) = apply_open(&input, &mut tap).unwrap();
    let rec = PositionRecord::after_step(None, r.sim.snapshot(), driver_json(&r), &tap.journal());
    (r, (tap.journal(), rec))
}

/// Applies the next step to an open position.
pub fn step(case: &Case, r: &mut Replay, prev: &PositionRecord) -> Step {
    let mut input = case.next_input(r);
    let mut tap = Recorder::default();
    apply(r, &mut input, case.source(), &mut tap).unwrap();
    let rec =
        PositionRecord::after_step(Some(prev), r.sim.snapshot(), driver_json(r), &tap.journal());
    (tap.journal(), rec)
}

/// Every step of the position until it closes (at the latest at the end of the data).
pub fn run_all(case: &Case, id: u64) -> (Replay, Vec<Step>) {
    let (mut r, first) = open(case, id);
    let mut steps = vec![first];
    while !r.is_closed() {
        let s = step(case, &mut r, &steps.last().unwrap().1);
        steps.push(s);
    }
    (r, steps)
}

pub fn commit(store: &mut Store, steps: &[Step]) {
    let writes = StepWrite::all(steps);
    store.commit(&writes, &[]).unwrap();
}
