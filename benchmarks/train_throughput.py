"""Training throughput of the book's trainings on this machine, as ratios (issue #15).

For every training setup of a profile (default ``cpu``: what the rendered book is built with), one real
training step (forward, loss, backward, Adam) is timed at the profile's batch and image size, **before**
(contiguous tensors, the code before issue #15) and **after** (the memory layout the chapter now trains in,
``channels_last`` for chapters 03, 06 and 07: ``full_profile_cost.CHANNELS_LAST_CHAPTERS``), and reported as

* images per second and achieved GFLOP/s of the chapter's step (``torch.utils.flop_counter`` FLOPs of the
  step over its measured time),
* the ratio of both steps to this machine's **ceiling**, measured in the same process at the same thread
  count: the forward and backward of one large convolution (64 -> 64 channels, 3x3, batch 16 at the
  profile's image size), the best rate these cores reach in float32, and the ratio after / before,
* the share of a training spent **outside its steps**: validation (forward passes and scores of the
  validation images after every epoch) and data (making the training items in the training process; none
  when DataLoader workers make them), from measured per-item and per-image times,
* with ``--variants``, the ratio of other step variants to the step before, timed interleaved in the same
  run (``channels_last`` everywhere; ``torch.compile``, with its compile time to weigh against the
  training's length).

Times are the median of interleaved repeats after warm-up; the numbers to compare are the ratios, not the
seconds (machines differ; a second job on the same cores stalls the threads).

    .venv/bin/python benchmarks/train_throughput.py                    # the cpu profile, every chapter
    .venv/bin/python benchmarks/train_throughput.py --chapter 07 --variants channels_last,compile

Needs no dataset (synthetic batches of the real shapes); about three minutes on 2 CPU cores.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import full_profile_cost as cost  # noqa: E402  (the chapters' training setups, shared with the cost estimate)

from unet_lib import config  # noqa: E402
from unet_lib.compare import deployed  # noqa: E402

VARIANTS = ("channels_last", "compile")


def _flops(fn: Callable[[], None]) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def _median_times(fns: dict[str, Callable[[], None]], repeats: int, warmup: int = 2) -> dict[str, float]:
    """Median seconds per call of each function, calls interleaved so that a disturbance hits all alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def ceiling(size: int, batch: int = 16, channels: int = 64, repeats: int = 5) -> float:
    """FLOP/s of a large 3x3 convolution's forward and backward at this thread count (float32)."""
    conv = nn.Conv2d(channels, channels, 3, padding=1)
    x = torch.randn(batch, channels, size, size, requires_grad=True)

    def step():
        conv(x).sum().backward()

    flops = _flops(step)
    return flops / _median_times({"conv": step}, repeats)["conv"]


def train_step(setup: cost.Setup, variant: str = "before") -> tuple[Callable[[], None], nn.Module]:
    """One training step of ``setup`` as ``fit`` runs it (Adam); ``variant`` ``"channels_last"`` changes the memory
    format, ``"compile"`` compiles the network, anything else keeps contiguous tensors."""
    torch.manual_seed(0)
    model = setup.build()
    model.train()
    batch = setup.make_batch()
    if variant == "channels_last":
        model = model.to(memory_format=torch.channels_last)
        batch = (batch[0].contiguous(memory_format=torch.channels_last), *batch[1:])
    forward = torch.compile(model) if variant == "compile" else model
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    image, target, *extra = batch

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = setup.loss_fn(forward(image), target, *extra)
        loss.backward()
        optimizer.step()

    return step, model


def validation_seconds(setup: cost.Setup, model: nn.Module, scoring: dict[str, float]) -> float:
    """Seconds of one training's validation: ``setup.eval_images`` forward passes of the deployed network
    (after every epoch and at the end) and their scores."""
    if setup.eval_images == 0:
        return 0.0
    net = deployed(copy.deepcopy(model)).eval()
    x = torch.rand(min(setup.eval_images, 16), setup.in_channels, setup.eval_size, setup.eval_size)

    @torch.no_grad()
    def forward():
        net(x)

    per_image = _median_times({"val": forward}, repeats=3, warmup=1)["val"] / len(x)
    per_score = scoring["instances"] if setup.chapter == "04" else scoring["kvasir"]
    return setup.eval_images * (per_image + per_score)


def measure(p: config.Profile, chapters: set[str] | None, variants: tuple[str, ...], repeats: int) -> dict:
    """Every setup's step before (contiguous, the code before issue #15) and after (the chapter's own layout),
    and each of ``variants``, timed interleaved; FLOPs, ceiling ratios and the share outside the steps."""
    setups = [s for s in cost.full_setups(p) if chapters is None or s.chapter in chapters]
    items = cost.data_item_seconds(p)
    scoring = cost.scoring_seconds(p.image_size)
    peak = ceiling(p.image_size)
    rows = []
    for s in setups:
        step_before, model = train_step(s)
        steps, compile_s = {"before": step_before}, None
        # the chapter's own layout, then the asked-for variants (each built once)
        for v in dict.fromkeys((("channels_last",) if s.channels_last else ()) + variants):
            t0 = time.perf_counter()
            steps[v], _ = train_step(s, v)
            if v == "compile":
                steps[v]()                                    # the first call compiles
                compile_s = time.perf_counter() - t0
        flops = _flops(step_before)
        t = _median_times(steps, repeats)
        after = t["channels_last"] if s.channels_last else t["before"]
        # one training as the chapter runs it: its steps, the items made in the training process, its validation
        steps_s = s.steps * after
        data_s = s.steps * s.batch * (items.get(s.data, 0.0) if s.workers == 0 else 0.0)
        val_s = validation_seconds(s, model, scoring)
        total = steps_s + data_s + val_s
        row = {"chapter": s.chapter, "setup": s.name, "batch": s.batch, "px": s.size, "gflop_step": flops / 1e9,
               "layout": "channels_last" if s.channels_last else "contiguous", "images_s": s.batch / after,
               "before_of_ceiling": flops / t["before"] / peak, "after_of_ceiling": flops / after / peak,
               "after_over_before": after / t["before"], "gflops": flops / after / 1e9,
               "outside": (data_s + val_s) / total, "val_share": val_s / total, "training_min": total * s.runs / 60,
               "ratios": {v: t[v] / t["before"] for v in variants}, "compile_s": compile_s}
        rows.append(row)
        print(f"  {s.chapter} {s.name}: {row['images_s']:.0f} img/s, {row['gflops']:.0f} GFLOP/s "
              f"({row['after_of_ceiling']:.2f} of the ceiling)", file=sys.stderr, flush=True)
    return {"ceiling_gflops": peak / 1e9, "rows": rows, "threads": torch.get_num_threads()}


def table(result: dict, variants: tuple[str, ...]) -> str:
    head = ["ch", "setup", "batch x px", "GFLOP/step", "layout", "images/s", "GFLOP/s", "of ceiling, before -> after",
            "step after / before", "outside steps (val)", "training min"] + [f"{v} / before" for v in variants]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in result["rows"]:
        cells = [r["chapter"], r["setup"], f"{r['batch']} x {r['px']}", f"{r['gflop_step']:.1f}", r["layout"],
                 f"{r['images_s']:.0f}", f"{r['gflops']:.0f}",
                 f"{r['before_of_ceiling']:.2f} -> {r['after_of_ceiling']:.2f}", f"{r['after_over_before']:.2f}",
                 f"{r['outside']:.0%} ({r['val_share']:.0%})", f"{r['training_min']:.1f}"]
        for v in variants:
            extra = f" (compiles in {r['compile_s']:.0f} s)" if v == "compile" and r["compile_s"] else ""
            cells.append(f"{r['ratios'][v]:.2f}{extra}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="cpu", help="the profile whose trainings to time (default cpu)")
    ap.add_argument("--chapter", action="append", help="only these chapters (02..07); repeatable")
    ap.add_argument("--variants", default="", help=f"comma-separated, from {VARIANTS}")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    variants = tuple(v for v in args.variants.split(",") if v)
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        ap.error(f"unknown variant(s) {unknown}: choose from {VARIANTS}")
    p = config.profile(args.profile)
    t0 = time.perf_counter()
    result = measure(p, set(args.chapter) if args.chapter else None, variants, args.repeats)
    print(f"# Training throughput, {p.name} profile ({p.image_size} px, width {p.features}, batch {p.batch_size}), "
          f"{result['threads']} torch threads\n")
    print(f"Ceiling (same process): a 64->64 3x3 convolution's forward and backward, batch 16 at {p.image_size} px, "
          f"float32: {result['ceiling_gflops']:.0f} GFLOP/s. 'of ceiling' = a step's GFLOP/s over it. 'outside "
          "steps' = share of a training spent in validation and in making training items in the training process "
          "(val = validation alone). 'training min' = the training's estimated minutes (steps x step time + "
          "validation + data) at this machine's speed, all its seeds and arms.\n")
    print(table(result, variants))
    print(f"\n(benchmark ran in {time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
