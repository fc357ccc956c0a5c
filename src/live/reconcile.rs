//! Reconciliation before anything moves (`LIVE.md` §4): what the database says against what the
//! exchange says, turned into decisions. Pure: the adapters turn their REST snapshots into a
//! [`Snapshot`], the runner its stored positions into [`Managed`], and carries the decisions out
//! (journalling each). The exchange is the truth about positions and resting stops; the database
//! is the truth about which of them are ours and what our trailing stop has done so far.
//!
//! The rules, in order, for each exchange position (key: symbol + position index):
//! - a stored open position with the same key and side → resumed (a changed size or entry is
//!   journalled: the stop follows on the venue and never loosens); a stored one with the other
//!   side at that key is a different position: the stored one closed while away;
//! - none stored → a new trailing stop (**every managed position has a trailing stop**);
//! - a command journalled without a result → looked up by its client id before anything else;
//! - our stops on it: none where one should rest → placed at once; one at another price than
//!   stored → adopted (the exchange is the truth); several → the tightest valid one kept, the
//!   others cancelled; a stop that is not ours → adopted where the venue holds one stop per
//!   position (Bybit: then only ever moved tighter), else left alone and reported (Binance).
//!
//! And each stored open position whose key has no exchange position closed while away (our
//! stops still resting for it are cancelled).

use std::collections::{BTreeMap, BTreeSet};

use rust_decimal::Decimal;

use crate::engine::Side;
use crate::venue::OrderRef;

/// Which exchange position: the symbol and its position index (0 one-way; hedge mode 1 buy
/// side, 2 sell side).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PositionKey {
    pub symbol: String,
    pub index: u8,
}

/// An open position on the exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VenuePosition {
    pub key: PositionKey,
    pub side: Side,
    pub size: Decimal,
    pub entry: Decimal,
    /// The exchange's time for the snapshot (a new trailing stop opens at it).
    pub ts: i64,
    /// The trigger price now (mark or last), when the snapshot has it: a stop through it is not
    /// valid.
    pub market: Option<Decimal>,
}

/// A stop resting on the exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VenueStop {
    pub key: PositionKey,
    /// The client order id the exchange holds, if any (ours are `ts-<position>-<seq>`).
    pub client_id: Option<String>,
    pub price: Decimal,
}

impl VenueStop {
    /// The order, when the client id is one of ours.
    pub fn ours(&self) -> Option<OrderRef> {
        parse_client_id(self.client_id.as_deref()?)
    }
}

/// `ts-<position>-<seq>` back to its order.
pub fn parse_client_id(id: &str) -> Option<OrderRef> {
    let rest = id.strip_prefix("ts-")?;
    let (position, seq) = rest.split_once('-')?;
    let canonical =
        |s: &str| !(s.is_empty() || s.starts_with('+') || s.len() > 1 && s.starts_with('0'));
    if !canonical(position) || !canonical(seq) {
        return None;
    }
    Some(OrderRef {
        position: position.parse().ok()?,
        seq: seq.parse().ok()?,
    })
}

/// What the exchange holds now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub positions: Vec<VenuePosition>,
    pub stops: Vec<VenueStop>,
}

/// A stored open position, as the runner holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Managed {
    pub position_id: u64,
    pub key: PositionKey,
    pub side: Side,
    pub size: Decimal,
    pub entry: Decimal,
    /// The stop our lifecycle believes rests on the exchange.
    pub resting: Option<Decimal>,
    /// A command journalled before the crash without a recorded result.
    pub pending: Option<OrderRef>,
}

/// One reconciliation decision (each is journalled and printed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The stored position goes on as it was.
    Resume { position_id: u64 },
    /// The stored position goes on with the exchange's new size or entry.
    Resized {
        position_id: u64,
        size: Decimal,
        entry: Decimal,
    },
    /// A new trailing stop for an exchange position nobody manages yet; `adopt`: the stop
    /// someone else set on it, on a venue with one stop per position (it only moves tighter).
    Open {
        position: VenuePosition,
        adopt: Option<Decimal>,
    },
    /// A stop with one of our client ids for a position the database does not know: cancelled.
    CancelOrphan { key: PositionKey, client_id: String },
    /// The stored position is gone from the exchange; our stops still resting for it go too.
    ClosedWhileAway {
        position_id: u64,
        cancel: Vec<String>,
    },
    /// A command of ours without a recorded result: look it up by its client id before
    /// anything else is sent for the position.
    LookUp { position_id: u64, order: OrderRef },
    /// The exchange holds this stop for the position: it becomes the resting stop.
    AdoptStop {
        position_id: u64,
        price: Decimal,
        /// The stop is not ours (someone else set it); from now on it only moves tighter.
        foreign: bool,
    },
    /// Several of our stops rest for one position: these are cancelled (the tightest valid one
    /// stays).
    CancelExtra {
        position_id: u64,
        cancel: Vec<String>,
    },
    /// Our stop should rest but none does: place it at once (never rate-gated).
    PlaceMissing { position_id: u64 },
    /// A stop that is not ours, on a venue with several stops per position: left alone.
    ForeignStop { key: PositionKey, price: Decimal },
}

/// Whether the venue holds one stop per position (Bybit's position stop) or any number of stop
/// orders (Binance).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopModel {
    OnePerPosition,
    Orders,
}

/// The decisions for this snapshot, in a stable order: exchange positions by key, then stored
/// positions gone from the exchange by id.
pub fn reconcile(managed: &[Managed], snap: &Snapshot, model: StopModel) -> Vec<Decision> {
    let mut out = Vec::new();
    let mut stops: BTreeMap<&PositionKey, Vec<&VenueStop>> = BTreeMap::new();
    for s in &snap.stops {
        stops.entry(&s.key).or_default().push(s);
    }
    let mut positions: Vec<&VenuePosition> = snap.positions.iter().collect();
    positions.sort_by(|a, b| a.key.cmp(&b.key));
    let mut kept: BTreeSet<u64> = BTreeSet::new();
    for p in positions {
        let here: &[&VenueStop] = stops.get(&p.key).map_or(&[], |v| v.as_slice());
        let Some(m) = managed.iter().find(|m| m.key == p.key && m.side == p.side) else {
            let foreign = here.iter().find(|s| s.ours().is_none());
            let adopt = match model {
                StopModel::OnePerPosition => foreign.map(|s| s.price),
                StopModel::Orders => None,
            };
            out.push(Decision::Open {
                position: p.clone(),
                adopt,
            });
            if model == StopModel::Orders {
                for s in here.iter().filter(|s| s.ours().is_none()) {
                    out.push(Decision::ForeignStop {
                        key: p.key.clone(),
                        price: s.price,
                    });
                }
            }
            continue;
        };
        kept.insert(m.position_id);
        let id = m.position_id;
        out.push(if m.size == p.size && m.entry == p.entry {
            Decision::Resume { position_id: id }
        } else {
            Decision::Resized {
                position_id: id,
                size: p.size,
                entry: p.entry,
            }
        });
        if let Some(order) = m.pending {
            // Nothing else for this position until the lookup is answered.
            out.push(Decision::LookUp {
                position_id: id,
                order,
            });
            continue;
        }
        let ours: Vec<&VenueStop> = here
            .iter()
            .copied()
            .filter(|s| s.ours().is_some_and(|o| o.position == id))
            .collect();
        let foreign: Vec<&VenueStop> = here
            .iter()
            .copied()
            .filter(|s| s.ours().is_none_or(|o| o.position != id))
            .collect();
        let valid = |s: &&VenueStop| match (p.market, p.side) {
            (Some(mk), Side::Long) => s.price < mk,
            (Some(mk), Side::Short) => s.price > mk,
            (None, _) => true,
        };
        let tighter = |a: &&VenueStop, b: &&VenueStop| match p.side {
            Side::Long => a.price.cmp(&b.price),
            Side::Short => b.price.cmp(&a.price),
        };
        match (ours.as_slice(), model) {
            // The position's one stop carries no id of ours (Bybit): it is ours when it is at
            // the price we sent, else someone else's, adopted.
            ([], StopModel::OnePerPosition) if !foreign.is_empty() => {
                if m.resting != Some(foreign[0].price) {
                    out.push(Decision::AdoptStop {
                        position_id: id,
                        price: foreign[0].price,
                        foreign: true,
                    });
                }
            }
            ([], _) => {
                if m.resting.is_some() {
                    out.push(Decision::PlaceMissing { position_id: id });
                }
            }
            ([one], _) => {
                if m.resting != Some(one.price) {
                    out.push(Decision::AdoptStop {
                        position_id: id,
                        price: one.price,
                        foreign: false,
                    });
                }
            }
            (several, _) => {
                let best = several
                    .iter()
                    .copied()
                    .filter(|s| valid(s))
                    .max_by(|a, b| tighter(a, b))
                    .or_else(|| several.iter().copied().max_by(|a, b| tighter(a, b)))
                    .expect("several");
                let cancel = several
                    .iter()
                    .filter(|s| !std::ptr::eq(**s, best))
                    .filter_map(|s| s.client_id.clone())
                    .collect();
                out.push(Decision::CancelExtra {
                    position_id: id,
                    cancel,
                });
                if m.resting != Some(best.price) {
                    out.push(Decision::AdoptStop {
                        position_id: id,
                        price: best.price,
                        foreign: false,
                    });
                }
            }
        }
        if model == StopModel::Orders {
            for s in foreign.iter().filter(|s| s.ours().is_none()) {
                out.push(Decision::ForeignStop {
                    key: p.key.clone(),
                    price: s.price,
                });
            }
        }
    }
    // Ours by their id, for no stored position (the database was replaced or lost), or resting
    // on another symbol than their position's.
    let home: BTreeMap<u64, &PositionKey> =
        managed.iter().map(|m| (m.position_id, &m.key)).collect();
    for s in &snap.stops {
        if let (Some(o), Some(id)) = (s.ours(), &s.client_id)
            && home.get(&o.position).is_none_or(|k| **k != s.key)
        {
            out.push(Decision::CancelOrphan {
                key: s.key.clone(),
                client_id: id.clone(),
            });
        }
    }
    let mut gone: Vec<&Managed> = managed
        .iter()
        .filter(|m| !kept.contains(&m.position_id))
        .collect();
    gone.sort_by_key(|m| m.position_id);
    for m in gone {
        let cancel = snap
            .stops
            .iter()
            .filter(|s| s.key == m.key && s.ours().is_some_and(|o| o.position == m.position_id))
            .filter_map(|s| s.client_id.clone())
            .collect();
        out.push(Decision::ClosedWhileAway {
            position_id: m.position_id,
            cancel,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rust_decimal_macros::dec;

    fn key(symbol: &str) -> PositionKey {
        PositionKey {
            symbol: symbol.into(),
            index: 0,
        }
    }

    fn venue(symbol: &str, side: Side, size: Decimal, entry: Decimal) -> VenuePosition {
        VenuePosition {
            key: key(symbol),
            side,
            size,
            entry,
            ts: 1_000,
            market: Some(entry),
        }
    }

    fn managed(id: u64, symbol: &str, side: Side, resting: Option<Decimal>) -> Managed {
        Managed {
            position_id: id,
            key: key(symbol),
            side,
            size: dec!(1),
            entry: dec!(100),
            resting,
            pending: None,
        }
    }

    fn ours(symbol: &str, id: u64, seq: u32, price: Decimal) -> VenueStop {
        VenueStop {
            key: key(symbol),
            client_id: Some(OrderRef { position: id, seq }.client_id()),
            price,
        }
    }

    fn foreign(symbol: &str, price: Decimal) -> VenueStop {
        VenueStop {
            key: key(symbol),
            client_id: None,
            price,
        }
    }

    #[test]
    fn client_ids_round_trip_and_only_ours_parse() {
        let o = OrderRef {
            position: 17,
            seq: 3,
        };
        assert_eq!(parse_client_id(&o.client_id()), Some(o));
        for bad in [
            "ts-17", "ts--3", "ts-017-3", "ts-+1-3", "x-1-2", "ts-1-2-3", "ts-a-1", "",
        ] {
            assert_eq!(parse_client_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn stored_positions_resume_resize_or_closed_while_away() {
        let m = [
            managed(1, "BTC", Side::Long, Some(dec!(95))),
            managed(2, "ETH", Side::Short, Some(dec!(105))),
            managed(3, "SOL", Side::Long, Some(dec!(90))),
        ];
        let snap = Snapshot {
            positions: vec![
                venue("BTC", Side::Long, dec!(1), dec!(100)),
                venue("ETH", Side::Short, dec!(2), dec!(101)),
                venue("XRP", Side::Long, dec!(5), dec!(0.5)),
            ],
            stops: vec![
                ours("BTC", 1, 1, dec!(95)),
                ours("ETH", 2, 4, dec!(105)),
                ours("SOL", 3, 2, dec!(90)),
            ],
        };
        let d = reconcile(&m, &snap, StopModel::Orders);
        assert_eq!(
            d,
            vec![
                Decision::Resume { position_id: 1 },
                Decision::Resized {
                    position_id: 2,
                    size: dec!(2),
                    entry: dec!(101)
                },
                Decision::Open {
                    position: snap.positions[2].clone(),
                    adopt: None
                },
                Decision::ClosedWhileAway {
                    position_id: 3,
                    cancel: vec!["ts-3-2".into()]
                },
            ]
        );
    }

    #[test]
    fn a_pending_command_is_looked_up_before_anything_else() {
        let mut m = managed(1, "BTC", Side::Long, Some(dec!(95)));
        let order = OrderRef {
            position: 1,
            seq: 2,
        };
        m.pending = Some(order);
        // Two stops rest (the create may have gone through): nothing is cancelled before the
        // lookup says which is which.
        let snap = Snapshot {
            positions: vec![venue("BTC", Side::Long, dec!(1), dec!(100))],
            stops: vec![ours("BTC", 1, 1, dec!(95)), ours("BTC", 1, 2, dec!(96))],
        };
        assert_eq!(
            reconcile(&[m], &snap, StopModel::Orders),
            vec![
                Decision::Resume { position_id: 1 },
                Decision::LookUp {
                    position_id: 1,
                    order
                }
            ]
        );
    }

    #[test]
    fn several_of_ours_keep_the_tightest_valid_one() {
        let m = [
            managed(1, "BTC", Side::Long, Some(dec!(95))),
            managed(2, "ETH", Side::Short, Some(dec!(110))),
        ];
        let mut btc = venue("BTC", Side::Long, dec!(1), dec!(100));
        btc.market = Some(dec!(97));
        let mut eth = venue("ETH", Side::Short, dec!(1), dec!(100));
        eth.market = Some(dec!(103));
        let snap = Snapshot {
            positions: vec![btc, eth],
            stops: vec![
                // Long: 98 is through the market (97), so 96 is the tightest valid one.
                ours("BTC", 1, 1, dec!(95)),
                ours("BTC", 1, 2, dec!(96)),
                ours("BTC", 1, 3, dec!(98)),
                // Short: the lowest above the market (103).
                ours("ETH", 2, 1, dec!(110)),
                ours("ETH", 2, 2, dec!(104)),
            ],
        };
        let d = reconcile(&m, &snap, StopModel::Orders);
        assert_eq!(
            d,
            vec![
                Decision::Resume { position_id: 1 },
                Decision::CancelExtra {
                    position_id: 1,
                    cancel: vec!["ts-1-1".into(), "ts-1-3".into()]
                },
                Decision::AdoptStop {
                    position_id: 1,
                    price: dec!(96),
                    foreign: false
                },
                Decision::Resume { position_id: 2 },
                Decision::CancelExtra {
                    position_id: 2,
                    cancel: vec!["ts-2-1".into()]
                },
                Decision::AdoptStop {
                    position_id: 2,
                    price: dec!(104),
                    foreign: false
                },
            ]
        );
    }

    #[test]
    fn a_missing_stop_is_placed_and_a_moved_one_adopted() {
        let m = [
            managed(1, "BTC", Side::Long, Some(dec!(95))),
            managed(2, "ETH", Side::Long, Some(dec!(95))),
            managed(3, "SOL", Side::Long, None),
        ];
        let snap = Snapshot {
            positions: vec![
                venue("BTC", Side::Long, dec!(1), dec!(100)),
                venue("ETH", Side::Long, dec!(1), dec!(100)),
                venue("SOL", Side::Long, dec!(1), dec!(100)),
            ],
            stops: vec![ours("ETH", 2, 1, dec!(94))],
        };
        assert_eq!(
            reconcile(&m, &snap, StopModel::Orders),
            vec![
                Decision::Resume { position_id: 1 },
                Decision::PlaceMissing { position_id: 1 },
                Decision::Resume { position_id: 2 },
                Decision::AdoptStop {
                    position_id: 2,
                    price: dec!(94),
                    foreign: false
                },
                // Not yet activated and no initial stop: nothing should rest.
                Decision::Resume { position_id: 3 },
            ]
        );
    }

    #[test]
    fn foreign_stops_are_adopted_on_bybit_and_left_alone_on_binance() {
        let m = [managed(1, "BTC", Side::Long, Some(dec!(95)))];
        let snap = Snapshot {
            positions: vec![
                venue("BTC", Side::Long, dec!(1), dec!(100)),
                venue("ETH", Side::Short, dec!(1), dec!(100)),
            ],
            stops: vec![foreign("BTC", dec!(93)), foreign("ETH", dec!(104))],
        };
        assert_eq!(
            reconcile(&m, &snap, StopModel::OnePerPosition),
            vec![
                Decision::Resume { position_id: 1 },
                Decision::AdoptStop {
                    position_id: 1,
                    price: dec!(93),
                    foreign: true
                },
                Decision::Open {
                    position: snap.positions[1].clone(),
                    adopt: Some(dec!(104))
                },
            ]
        );
        // Bybit's one stop at the price we sent is ours: nothing to do.
        let same = Snapshot {
            positions: snap.positions[..1].to_vec(),
            stops: vec![foreign("BTC", dec!(95))],
        };
        assert_eq!(
            reconcile(&m, &same, StopModel::OnePerPosition),
            vec![Decision::Resume { position_id: 1 }]
        );
        // Binance: not ours → reported, never touched; our own stop is missing → placed.
        assert_eq!(
            reconcile(&m, &snap, StopModel::Orders),
            vec![
                Decision::Resume { position_id: 1 },
                Decision::PlaceMissing { position_id: 1 },
                Decision::ForeignStop {
                    key: key("BTC"),
                    price: dec!(93)
                },
                Decision::Open {
                    position: snap.positions[1].clone(),
                    adopt: None
                },
                Decision::ForeignStop {
                    key: key("ETH"),
                    price: dec!(104)
                },
            ]
        );
    }

    #[test]
    fn a_flipped_side_is_a_new_position_and_orphans_of_ours_are_cancelled() {
        let m = [managed(1, "BTC", Side::Long, Some(dec!(95)))];
        let snap = Snapshot {
            positions: vec![venue("BTC", Side::Short, dec!(1), dec!(100))],
            stops: vec![ours("BTC", 1, 1, dec!(95)), ours("ETH", 9, 1, dec!(50))],
        };
        assert_eq!(
            reconcile(&m, &snap, StopModel::Orders),
            vec![
                Decision::Open {
                    position: snap.positions[0].clone(),
                    adopt: None
                },
                Decision::CancelOrphan {
                    key: key("ETH"),
                    client_id: "ts-9-1".into()
                },
                Decision::ClosedWhileAway {
                    position_id: 1,
                    cancel: vec!["ts-1-1".into()]
                },
            ]
        );
    }

    /// Random stored positions and exchange states (a few symbols, both sides, our stops,
    /// foreign ones, pending commands).
    fn world() -> impl Strategy<Value = (Vec<Managed>, Snapshot)> {
        let symbols = ["A", "B", "C", "D"];
        let side = prop_oneof![Just(Side::Long), Just(Side::Short)];
        let stored = prop::collection::vec(
            (
                0usize..4,
                side.clone(),
                prop::option::of(90i64..99),
                any::<bool>(),
            ),
            0..4,
        );
        let live = prop::collection::vec((0usize..4, side, 1i64..4), 0..4);
        let stops = prop::collection::vec((0usize..4, 0u64..6, 1u32..4, 85i64..99), 0..6);
        (stored, live, stops).prop_map(move |(stored, live, stops)| {
            let mut managed: Vec<Managed> = Vec::new();
            for (i, (s, side, resting, pending)) in stored.into_iter().enumerate() {
                if managed.iter().any(|m| m.key.symbol == symbols[s]) {
                    continue; // one-way: one position per symbol
                }
                let id = i as u64 + 1;
                managed.push(Managed {
                    position_id: id,
                    key: key(symbols[s]),
                    side,
                    size: dec!(1),
                    entry: dec!(100),
                    resting: resting.map(Decimal::from),
                    pending: pending.then_some(OrderRef {
                        position: id,
                        seq: 1,
                    }),
                });
            }
            let mut positions: Vec<VenuePosition> = Vec::new();
            for (s, side, size) in live {
                if positions.iter().any(|p| p.key.symbol == symbols[s]) {
                    continue;
                }
                positions.push(venue(symbols[s], side, Decimal::from(size), dec!(100)));
            }
            let stops = stops
                .into_iter()
                .map(|(s, id, seq, price)| {
                    let price = Decimal::from(price);
                    if id == 0 {
                        foreign(symbols[s], price)
                    } else {
                        ours(symbols[s], id, seq, price)
                    }
                })
                .collect();
            (managed, Snapshot { positions, stops })
        })
    }

    proptest! {
        /// After the decisions, the managed positions are exactly the exchange's (each one
        /// resumed, resized or opened once; every stored one gone is closed), and no position
        /// keeps more than one stop of ours.
        #[test]
        fn after_reconciliation_the_database_is_the_exchange((m, snap) in world()) {
            let d = reconcile(&m, &snap, StopModel::Orders);
            let mut held: BTreeSet<PositionKey> = BTreeSet::new();
            let mut closed = BTreeSet::new();
            let mut cancelled: BTreeSet<String> = BTreeSet::new();
            for x in &d {
                match x {
                    Decision::Resume { position_id } | Decision::Resized { position_id, .. } => {
                        let k = m.iter().find(|m| m.position_id == *position_id).unwrap().key.clone();
                        prop_assert!(held.insert(k));
                    }
                    Decision::Open { position, .. } => prop_assert!(held.insert(position.key.clone())),
                    Decision::ClosedWhileAway { position_id, cancel } => {
                        prop_assert!(closed.insert(*position_id));
                        cancelled.extend(cancel.iter().cloned());
                    }
                    Decision::CancelExtra { cancel, .. } => cancelled.extend(cancel.iter().cloned()),
                    Decision::CancelOrphan { client_id, .. } => {
                        cancelled.insert(client_id.clone());
                    }
                    _ => {}
                }
            }
            let exchange: BTreeSet<PositionKey> = snap.positions.iter().map(|p| p.key.clone()).collect();
            prop_assert_eq!(&held, &exchange);
            for mm in &m {
                let kept = snap.positions.iter().any(|p| p.key == mm.key && p.side == mm.side);
                prop_assert_eq!(closed.contains(&mm.position_id), !kept);
            }
            // Our stops left resting: at most one per kept position (unless a lookup is due),
            // none for a position that is gone or unknown.
            for mm in &m {
                let left = snap.stops.iter().filter(|s| {
                    s.ours().is_some_and(|o| o.position == mm.position_id)
                        && !cancelled.contains(s.client_id.as_ref().unwrap())
                }).count();
                if closed.contains(&mm.position_id) {
                    prop_assert_eq!(left, 0);
                } else if mm.pending.is_none() {
                    prop_assert!(left <= 1, "position {} keeps {} stops", mm.position_id, left);
                }
            }
            for s in &snap.stops {
                if let Some(o) = s.ours()
                    && !m.iter().any(|mm| mm.position_id == o.position && mm.key == s.key)
                {
                    prop_assert!(cancelled.contains(s.client_id.as_ref().unwrap()));
                }
            }
        }
    }
}
