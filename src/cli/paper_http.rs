//! `trailstop paper --http ADDR` (feature `live`): the paper run's `/metrics`, `/status` and
//! `/healthz`, served by the live runner's status server from a thread of its own while the
//! run goes on; the metrics come from the committed steps, as live's do.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;

use crate::live::metrics::Metrics;
use crate::live::runner::status::{self, PositionStatus, Shared, SymbolStatus};
use crate::live::runner::{Status, shared_status};
use crate::paper::Progress;
use crate::store::PositionRecord;

/// The server and what it shows; dropped, it stops serving.
pub struct PaperHttp {
    metrics: Arc<Metrics>,
    status: Shared,
    open: BTreeMap<u64, PositionRecord>,
    symbol: String,
    stop: tokio::sync::watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PaperHttp {
    /// Binds `addr` (a bind error is returned here, before the run starts).
    pub fn start(addr: SocketAddr, symbol: &str) -> anyhow::Result<(PaperHttp, SocketAddr)> {
        let metrics = Arc::new(Metrics::new("sim"));
        let shared = shared_status();
        {
            let mut s = shared.lock().unwrap_or_else(|e| e.into_inner());
            *s = Status::default();
            s.reconciled = true;
            // The gauges come from this status when `/metrics` is scraped.
            s.gauges.venue = "sim".into();
        }
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let (bound_tx, bound_rx) = std::sync::mpsc::channel();
        let (m, sh) = (metrics.clone(), shared.clone());
        let thread = std::thread::spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = bound_tx.send(Err(e));
                    return;
                }
            };
            rt.block_on(async move {
                match status::listen(addr, sh, Some(m), stop_rx).await {
                    Ok((bound, task)) => {
                        let _ = bound_tx.send(Ok(bound));
                        let _ = task.await;
                    }
                    Err(e) => {
                        let _ = bound_tx.send(Err(e));
                    }
                }
            });
        });
        let bound = bound_rx
            .recv()
            .context("the status server's thread ended")?
            .with_context(|| format!("--http {addr}"))?;
        Ok((
            PaperHttp {
                metrics,
                status: shared,
                open: BTreeMap::new(),
                symbol: symbol.to_string(),
                stop,
                thread: Some(thread),
            },
            bound,
        ))
    }

    /// A committed market step: the metrics of its position steps, then the status of the
    /// positions open after it (the gauges' source).
    pub fn on_progress(&mut self, p: Progress<'_>) {
        // Counted and shown under the status lock, so a scrape sees the step whole or not.
        let shared = self.status.clone();
        let mut s = shared.lock().unwrap_or_else(|e| e.into_inner());
        for (entries, record) in p.steps {
            self.metrics.on_step(entries, record);
            if record.closed().is_some() {
                self.open.remove(&record.id());
            } else {
                self.open.insert(record.id(), record.clone());
            }
        }
        s.symbols.insert(
            self.symbol.clone(),
            SymbolStatus {
                last_price_ts: p.ts,
                price: p.price,
            },
        );
        s.positions = self
            .open
            .values()
            .map(|r| PositionStatus::of(r, &r.runner))
            .collect();
        let ids: Vec<u64> = self.open.keys().copied().collect();
        s.remember_labels(&ids);
    }
}

impl Drop for PaperHttp {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
