#!/usr/bin/env python3
"""The same trailing-stop sweep in trailstop, in a numba kernel and in vectorbt; prints the
wall-clock times and ratios. Run through scripts/bench-peers (it makes the venv).

Workload (issue 5): >= 500k 1m candles, an entry every 4 h alternating long/short, a 50 x 50
activation x distance grid (2,500 combinations), pessimistic order, rate limits on
(60 s / 0.1 % / emergency 1 %), initial stop 2 %, taker fee 0.05 %, slippage 1 bp.

Data: 525,600 one-minute candles (a year) resampled, in seeded one-day blocks, from the real
FTX BTC-PERP 1m candles of ../shared/data (Jan 2022, 45,031 candles: per-candle open gap,
high, low and close moves relative to the open), rebuilt from 30,000 on a 0.1 tick. Without the
shared data, a seeded geometric random walk.

The numba kernel implements DESIGN §2.1 for the atomic venue (bybit: a sent stop rests at
once): four points per candle (long O-L-H-C, short O-H-L-C), activation, the tick-rounded
ratcheting stop, the initial stop, the rate limit with held improvements and the emergency
override, exit-now for a stop due at or through the market, stop fills at the stop (at the open
on a gap), end of data at the last close. Prices are integer ticks; the percentages are floats
(trailstop uses exact rationals), so a rare boundary case may differ: the script reports how
many cells agree with trailstop to 1e-6.

vectorbt (open source) has no activation threshold and one position at a time per column: it
runs `Portfolio.from_signals(sl_stop=d, sl_trail=True)` over 2,500 columns (the 50 distances,
each 50 times) on the same candles and entries, so the work per column is comparable but its
results are not the same trades; it is a throughput reference.
"""

import argparse
import csv
import math
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

FTX = "nautilus_trader/candles/ftx_BTC-PERP_1m_20211231-20220201.csv"
N = 525_600
T0 = 1_640_995_200_000
TICK = 0.1
GRID = [round(0.1 + 0.05 * i, 2) for i in range(50)]  # 0.10 .. 2.55 %


def make_candles(shared, seed=42):
    rng = np.random.default_rng(seed)
    path = os.path.join(shared, FTX) if shared else None
    if path and os.path.exists(path):
        rows = np.loadtxt(path, delimiter=",", skiprows=1, usecols=(1, 2, 3, 4))
        o, h, l, c = rows.T
        gap = np.log(o[1:] / c[:-1])
        up, dn, cl = np.log(h / o)[1:], np.log(l / o)[1:], np.log(c / o)[1:]
        days = len(gap) // 1440
        starts = rng.integers(0, len(gap) - 1440, size=N // 1440 + 1)
        idx = np.concatenate([np.arange(s, s + 1440) for s in starts])[:N]
        g, u, d, k = gap[idx], up[idx], dn[idx], cl[idx]
        source = f"resampled in one-day blocks from {FTX} ({days} days)"
    else:
        sig = 0.0008
        z = rng.standard_normal((N, 4)) * sig / 2
        path_ = np.cumsum(z, axis=1)
        g = np.zeros(N)
        u = np.maximum(path_.max(axis=1), 0)
        d = np.minimum(path_.min(axis=1), 0)
        k = path_[:, -1]
        source = "seeded geometric random walk (shared data absent)"
    log_open = math.log(30_000.0) + np.concatenate([[0.0], np.cumsum(g + k)[:-1]])
    # Keep the walk in a BTC-like band so a year of resampled days does not drift away.
    log_open -= np.linspace(0, log_open[-1] - math.log(30_000.0), N)
    q = lambda x: np.round(x / TICK).astype(np.int64)
    op = q(np.exp(log_open))
    cl_ = q(np.exp(log_open + k))
    hi = np.maximum(q(np.exp(log_open + u)), np.maximum(op, cl_))
    lo = np.minimum(q(np.exp(log_open + d)), np.minimum(op, cl_))
    ts = T0 + np.arange(N, dtype=np.int64) * 60_000
    return ts, op, hi, lo, cl_, source


def write_inputs(work, ts, op, hi, lo, cl):
    data = os.path.join(work, "candles.csv")
    with open(data, "w") as f:
        f.write("timestamp,open,high,low,close\n")
        for row in zip(ts, op, hi, lo, cl):
            f.write("%d,%d.%d,%d.%d,%d.%d,%d.%d\n" % (
                row[0], row[1] // 10, row[1] % 10, row[2] // 10, row[2] % 10,
                row[3] // 10, row[3] % 10, row[4] // 10, row[4] % 10))
    scen = os.path.join(work, "bench.toml")
    with open(scen, "w") as f:
        f.write(f"""name = "bench-peers"
[data]
candles = "candles.csv"
symbol = "SYNTH"
tick_size = "0.1"
[entries]
every = "4h"
side = "alternate"
[exchange]
venue = "bybit"
taker_fee = "0.0005"
slippage_bps = "1"
[trailing]
activation_percent = "0.5"
distance_percent = "0.5"
initial_stop_percent = "2.0"
[intrabar]
policy = "pessimistic"
""")
    return scen


def entries_every_4h(ts):
    # DESIGN §3: every 4 h from the first open; the data has no gaps, so every 240th candle.
    idx = np.arange(0, len(ts), 240, dtype=np.int64)
    side = np.where(np.arange(len(idx)) % 2 == 0, 1, -1).astype(np.int64)
    return idx, side


def numba_kernel():
    import numba as nb

    @nb.njit
    def position(op, hi, lo, cl, ts, e, s, act, dist, init, fee, slip):
        """One position from candle e; returns (pnl %, bars held)."""
        n = len(op)
        entry = op[e]
        ent = entry * TICK
        # Prices in ticks, mirrored by the side so that "higher is better".
        def stop_of(x, pct):  # trailing/initial stop from an extreme, rounded to the safe side
            if s == 1:
                return math.floor(x * (1.0 - pct / 100.0) + 1e-9)
            return math.ceil(x * (1.0 + pct / 100.0) - 1e-9)
        best = entry
        active = act == 0.0
        if s == 1:
            act_px = entry * (1.0 + act / 100.0)
        else:
            act_px = entry * (1.0 - act / 100.0)
        desired = stop_of(entry, init)
        if active:
            c = stop_of(entry, dist)
            if s * c > s * desired:
                desired = c
        sent = desired
        resting = desired
        last_sent = ts[e]
        fill = -1.0
        exit_bar = n - 1
        for b in range(e, n):
            t = ts[b]
            for k in range(4):
                if b == e and k == 0:
                    continue
                if k == 0:
                    p, pt, gap = op[b], t, True
                elif k == 3:
                    p, pt, gap = cl[b], t + 59_999, False
                else:
                    low_first = s == 1  # pessimistic
                    first = lo[b] if low_first else hi[b]
                    second = hi[b] if low_first else lo[b]
                    p = first if k == 1 else second
                    pt = t + (20_000 if k == 1 else 40_000)
                    gap = False
                # 1. the exchange
                if s * p <= s * resting:
                    fill = p if gap else resting
                    fill = fill * TICK * (1.0 - s * slip / 10_000.0)
                    break
                # 2. the engine
                if s * p > s * best:
                    best = p
                if not active:
                    if (s == 1 and p >= act_px - 1e-9) or (s == -1 and p <= act_px + 1e-9):
                        active = True
                if active:
                    c = stop_of(best, dist)
                    if s * c > s * desired:
                        desired = c
                # 3. the update policy
                if s * desired > s * sent:
                    imp = abs(desired - sent) / sent * 100.0
                    normal = pt - last_sent >= 60_000 and imp >= 0.1 - 1e-12
                    if normal or imp >= 1.0 - 1e-12:
                        if s * desired >= s * p:
                            fill = p * TICK * (1.0 - s * slip / 10_000.0)
                            break
                        sent = desired
                        resting = desired
                        last_sent = pt
            if fill >= 0.0:
                exit_bar = b
                break
        if fill < 0.0:
            fill = cl[n - 1] * TICK
        r = fill / ent
        gross = (r - 1.0) * 100.0 if s == 1 else (1.0 - r) * 100.0
        return gross - fee * 100.0 * (1.0 + r), exit_bar - e + 1

    @nb.njit(parallel=True)
    def sweep(op, hi, lo, cl, ts, eidx, eside, acts, dists, init, fee, slip):
        na, nd = len(acts), len(dists)
        total = np.zeros(na * nd)
        steps = np.zeros(na * nd, dtype=np.int64)
        for j in nb.prange(na * nd):
            a, d = acts[j // nd], dists[j % nd]
            acc, st = 0.0, 0
            for i in range(len(eidx)):
                pnl, bars = position(op, hi, lo, cl, ts, eidx[i], eside[i], a, d, init, fee, slip)
                acc += pnl
                st += bars
            total[j] = acc
            steps[j] = st
        return total, steps

    return sweep


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trailstop", required=True)
    ap.add_argument("--shared", default=None)
    ap.add_argument("--skip-vectorbt", action="store_true")
    args = ap.parse_args()
    threads = os.environ.get("NUMBA_NUM_THREADS") or str(os.cpu_count())
    ts, op, hi, lo, cl, source = make_candles(args.shared)
    print(f"data: {len(ts)} 1m candles, {source}")
    work = tempfile.mkdtemp(prefix="bench-peers-")
    scen = write_inputs(work, ts, op, hi, lo, cl)
    eidx, eside = entries_every_4h(ts)
    print(f"entries: {len(eidx)} (every 4 h, alternating); grid 50 x 50; {threads} threads")
    results = {}
    cpu = {}  # CPU seconds (user + system, all threads): a figure that other load barely moves

    def child_cpu():
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        return r.ru_utime + r.ru_stime

    # trailstop, end to end (load, sweep, tables), both venues' models.
    grid = ["--grid", "activation_percent=0.1:2.55:0.05", "--grid", "distance_percent=0.1:2.55:0.05"]
    for venue, extra in [("bybit", []), ("binance", ["--set", "exchange.venue=binance",
                                                     "--set", "exchange.update_latency_ms=300"])]:
        out = os.path.join(work, f"ts-{venue}")
        t, c0 = time.perf_counter(), child_cpu()
        subprocess.run([args.trailstop, "sweep", scen, "--quiet", "--no-band", "--no-report",
                        "--out", out, *grid, *extra], check=True)
        results[f"trailstop ({venue})"] = time.perf_counter() - t
        cpu[f"trailstop ({venue})"] = child_cpu() - c0

    for k, v in results.items():
        print(f"{k}: {v:.2f} s", flush=True)

    # numba: compile outside the timing, then the full grid.
    sweep = numba_kernel()
    acts = np.array(GRID)
    dists = np.array(GRID)
    sweep(op[:2000], hi[:2000], lo[:2000], cl[:2000], ts[:2000], eidx[:5], eside[:5],
          acts[:2], dists[:2], 2.0, 0.0005, 1.0)
    t, c0 = time.perf_counter(), time.process_time()
    totals, steps = sweep(op, hi, lo, cl, ts, eidx, eside, acts, dists, 2.0, 0.0005, 1.0)
    results["numba kernel"] = time.perf_counter() - t
    cpu["numba kernel"] = time.process_time() - c0
    total_steps = int(steps.sum())

    # Agreement with trailstop (bybit model) cell by cell.
    with open(os.path.join(work, "ts-bybit", "sweep.csv")) as f:
        rows = list(csv.DictReader(f))
    ts_tot = np.array([float(r["total_return_pct"]) for r in rows])
    agree = int(np.sum(np.abs(ts_tot - totals) < 1e-6))
    close = int(np.sum(np.abs(ts_tot - totals) < 1e-2))
    print(f"numba kernel: {results['numba kernel']:.2f} s; {agree}/2500 cells agree", flush=True)
    np.save(os.path.join(work, "numba_totals.npy"), totals)

    if not args.skip_vectorbt:
        import pandas as pd
        import vectorbt as vbt
        idx = pd.to_datetime(ts, unit="ms")
        o, h, l, c = (pd.Series(x * TICK, index=idx) for x in (op, hi, lo, cl))
        long_e = np.zeros(len(ts), bool)
        short_e = np.zeros(len(ts), bool)
        long_e[eidx[eside == 1]] = True
        short_e[eidx[eside == -1]] = True
        # 50 calls of 50 columns (the 50 distances): the 2,500 columns without materialising
        # 525,600 x 2,500 arrays (10 GB each) at once.
        sl = (np.array(GRID) / 100.0)[None, :]
        le, se = pd.Series(long_e, index=idx), pd.Series(short_e, index=idx)
        run = lambda: vbt.Portfolio.from_signals(
            c, entries=le, short_entries=se, open=o, high=h, low=l, sl_stop=sl, sl_trail=True,
            fees=0.0005, slippage=0.0001, freq="1min").total_return()
        run()  # compile outside the timing
        t, c0 = time.perf_counter(), time.process_time()
        for _ in range(50):
            run()
        cpu["vectorbt from_signals"] = time.process_time() - c0
        results["vectorbt from_signals"] = time.perf_counter() - t

    base = results["trailstop (bybit)"]
    print(f"candle-position steps (numba's count, all 2,500 cells): {total_steps:,}")
    print(f"{'run':<26} {'wall s':>8} {'M steps/s':>10} {'that/trailstop':>15} "
          f"{'CPU s':>8} {'M steps/CPU-s':>14}")
    for k, v in results.items():
        c = cpu.get(k, float("nan"))
        print(f"{k:<26} {v:8.2f} {total_steps / v / 1e6:10.1f} {v / base:14.2f}x "
              f"{c:8.1f} {total_steps / c / 1e6:14.1f}")
    print(f"numba vs trailstop (bybit) totals: {agree}/2500 cells within 1e-6, "
          f"{close}/2500 within 0.01 pp")
    print(f"inputs and outputs: {work}")


if __name__ == "__main__":
    sys.exit(main())
