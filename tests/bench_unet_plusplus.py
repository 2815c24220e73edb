"""Benchmark: how much faster is a pruned UNet++ (L1..L3) than the full network (L4)?

Not a test (pytest collects only ``test_*.py``): timing assertions flake on shared
machines, so the tests count parameters and MACs and this script measures time.
All four depths are timed in one process, round-robin, and reported as ratios to
L4, the only numbers worth comparing across machines (DESIGN section 7).

    flock /tmp/unetbook-cpu.lock .venv/bin/python tests/bench_unet_plusplus.py
    .venv/bin/python tests/bench_unet_plusplus.py --features 32 --in-channels 1 --size 256 --batch 1

Chapter 05 of the book.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout's unet_lib

from unet_lib.measure import count_macs, count_parameters, latency_ratios  # noqa: E402
from unet_lib.models import UNetPlusPlus  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--features", type=int, default=8, help="width f of level 0 (levels: f, 2f, ..., 16f)")
    ap.add_argument("--in-channels", type=int, default=3)
    ap.add_argument("--size", type=int, default=96, help="image side")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--norm", default="batch", choices=["batch", "instance", "none"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    net = UNetPlusPlus(args.in_channels, 1, features=args.features, deep_supervision=True,
                       norm=None if args.norm == "none" else args.norm).to(args.device).eval()
    x = torch.randn(args.batch, args.in_channels, args.size, args.size, device=args.device)
    pruned = {f"L{L}": net.prune(L) for L in range(1, 5)}
    timing = latency_ratios(pruned, x, baseline="L4", repeats=args.repeats, warmup=args.warmup)
    macs4 = count_macs(pruned["L4"], x)
    params4 = count_parameters(pruned["L4"])

    print(f"UNet++ pruning benchmark: features {net.features}, {args.batch} x {args.in_channels} x "
          f"{args.size} x {args.size}, device {args.device}, {torch.get_num_threads()} threads, "
          f"median of {args.repeats} round-robin repeats")
    print(f"{'depth':>5} {'params':>10} {'params/L4':>9} {'MACs/img':>12} {'MACs/L4':>8} "
          f"{'ms/batch':>9} {'time/L4':>8}")
    for name, model in pruned.items():
        params, macs = count_parameters(model), count_macs(model, x)
        t = timing[name]
        print(f"{name:>5} {params:>10,} {params / params4:>9.3f} {macs:>12,} {macs / macs4:>8.3f} "
              f"{1000 * t['seconds']:>9.1f} {t['ratio']:>8.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
