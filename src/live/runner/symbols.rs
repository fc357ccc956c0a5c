//! `symbols = ["*"]` (`LIVE.md` §3): every open position of the account is managed, also one
//! opened while running on a symbol not seen yet. Its instrument (tick size) is read and its
//! prices subscribed at once (Bybit's tickers, Binance's mark price or trade stream; kept
//! across reconnects), so its stop is placed on the spot and trails on its own prices. The periodic re-check lists the whole account too, for a
//! position opened while the private stream was down.

use std::collections::BTreeSet;

use tokio::time::Instant;

use super::{Live, LiveError, rest_err};
use crate::engine::Instrument;
use crate::live::bybit::request::PositionFilter;
use crate::live::bybit::rest::RestClient;
use crate::live::bybit::snapshot::PositionInfo;
use crate::live::config::{LiveConfig, Symbols};

/// The settle coin of the account's positions `["*"]` covers (USDT perpetuals).
const SETTLE_COIN: &str = "USDT";

/// The symbols to read and subscribe at start: the configured ones, or (`*`) those with an
/// open position now on the exchange or in the database (`stored`: one closed while away
/// still needs its instrument to be reconciled).
pub(super) async fn at_start(
    config: &LiveConfig,
    rest: &RestClient,
    stored: BTreeSet<String>,
) -> Result<Vec<String>, LiveError> {
    match &config.symbols {
        Symbols::Only(list) => Ok(list.clone()),
        Symbols::All => {
            let list = rest
                .positions(PositionFilter::SettleCoin(SETTLE_COIN))
                .await
                .map_err(rest_err("listing positions"))?;
            let mut set = stored;
            set.extend(
                list.into_iter()
                    .filter(PositionInfo::is_open)
                    .map(|p| p.symbol),
            );
            Ok(set.into_iter().collect())
        }
    }
}

/// A `tickers` topic.
pub(super) fn ticker_topic(symbol: &str) -> String {
    format!("tickers.{symbol}")
}

impl Live {
    /// The instrument of `symbol` for a position found on it: known already, or (`["*"]`)
    /// read now, its tickers subscribed. `None` (logged) when it cannot be managed now; a
    /// later re-check finds the position again.
    pub(super) async fn instrument_for(&mut self, info: &PositionInfo) -> Option<Instrument> {
        let symbol = info.symbol.as_str();
        if let Some(i) = self.venue.instrument(symbol) {
            return Some(*i);
        }
        let not_managed = |why: &str| {
            super::log::warn(&format!(
                "{symbol} positionIdx {}: {why}; not managed",
                info.position_idx.as_u8()
            ))
        };
        if self.config.symbols != Symbols::All {
            not_managed("not an instrument the venue listed");
            return None;
        }
        if !self.rest_allowed() {
            not_managed("its instrument cannot be read during the ban (the ban's end re-checks)");
            return None;
        }
        let instrument = match self.venue.learn(symbol).await {
            Ok(Some(i)) => i,
            Ok(None) => {
                not_managed("not an instrument the venue lists");
                return None;
            }
            Err(e) => {
                not_managed(&format!(
                    "reading its instrument failed ({e}); the next re-check tries again"
                ));
                return None;
            }
        };
        let Some(subscribed) = self.tickers.as_ref().and_then(|t| t.subscribe(symbol)) else {
            not_managed("the market stream has ended");
            return None;
        };
        // It counts for staleness from now: a symbol that never sends a price goes stale.
        self.arrived.insert(symbol.to_string(), Instant::now());
        self.say(&format!(
            "{symbol}: a new symbol: tick size {}, {subscribed} subscribed",
            instrument.tick_size
        ));
        Some(instrument)
    }

    /// `["*"]`: the account's open positions that nothing manages yet, from a listing of the
    /// whole account (the venue's re-check reads only the managed symbols).
    pub(super) async fn discover_all(&mut self, ts: i64) -> Result<(), LiveError> {
        if self.config.symbols != Symbols::All || !self.rest_allowed() {
            return Ok(());
        }
        let list = match self.venue.all_open_positions().await {
            Ok(list) => list,
            Err(e) => {
                self.warn(&format!(
                    "listing the account's positions failed ({e}); next re-check later"
                ));
                return Ok(());
            }
        };
        for info in &list {
            self.open_discovered(info, ts).await?;
        }
        Ok(())
    }
}
