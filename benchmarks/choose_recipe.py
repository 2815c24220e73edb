"""Choose a chapter's cpu-profile budget on the training images only (issue #15).

The official 120 validation images of Kvasir-SEG are what the chapters report on, so nothing may be chosen
on them. This script splits the 880 official training images once (seeded) into 704 to train on and 176
held out, trains the chapters' networks with the book's recipe (``compare.train_contender``) for each
candidate number of epochs, and prints the held-out mean per-image Dice with its bootstrap interval and the
training time. What it found is what the chapters use, with the run quoted in the issue note.

    .venv/bin/python benchmarks/choose_recipe.py --chapter 07 --epochs 6,12
    .venv/bin/python benchmarks/choose_recipe.py --chapter 03 --epochs 12,24

Needs the Kvasir-SEG dataset (``$UNET_BOOK_DATA``); minutes per network and epoch count on 2 CPU cores.
"""
from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from full_profile_cost import CHANNELS_LAST_CHAPTERS  # noqa: E402  (which chapters train channels-last)

from unet_lib import compare, config, data, losses, metrics  # noqa: E402
from unet_lib.compare import Contender  # noqa: E402
from unet_lib.models import FCN, UNet, UNet3Plus, UNetPlusPlus  # noqa: E402

HELD_OUT = 176          # a fifth of the 880 training images


def tuning_split(seed: int = 0) -> tuple[list[str], list[str]]:
    """The official training ids as (704 to train on, 176 held out), by a seeded permutation."""
    ids = data.kvasir_split("train")
    order = np.random.default_rng(seed).permutation(len(ids))
    held = set(order[:HELD_OUT].tolist())
    return [i for k, i in enumerate(ids) if k not in held], [i for k, i in enumerate(ids) if k in held]


def contenders(chapter: str, p: config.Profile) -> list[Contender]:
    """The chapter's networks at its cpu-profile widths."""
    ds = functools.partial(losses.deep_supervision_loss, loss_fn=losses.bce_dice_loss)
    if chapter == "03":
        return [Contender("U-Net", lambda: UNet(3, 1, features=p.features), losses.bce_dice_loss)]
    if chapter == "07":
        w = max(2, p.features // 2)
        f = tuple(k * w for k in (1, 2, 4, 8, 16))
        return [Contender("FCN-8s", lambda: FCN(3, 1, "8s", features=w), losses.bce_dice_loss),
                Contender("U-Net", lambda: UNet(3, 1, features=w), losses.bce_dice_loss),
                Contender("UNet++ (DS)", lambda: UNetPlusPlus(3, 1, features=f, deep_supervision=True), ds,
                          output_fn=lambda outs: outs[-1]),                       # head X^{0,4}, as chapter 07
                Contender("UNet 3+ (DS)", lambda: UNet3Plus(3, 1, features=f, deep_supervision=True), ds,
                          output_fn=lambda outs: outs[0])]                        # head d1
    raise SystemExit(f"chapter {chapter}: only 03 and 07 are set up here")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chapter", required=True, choices=["03", "07"])
    ap.add_argument("--epochs", required=True, help="comma-separated candidates, e.g. 6,12")
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--only", action="append", help="only these networks (by name); repeatable")
    args = ap.parse_args(argv)
    p = config.profile(args.profile)
    train_ids, held_ids = tuning_split()
    train_set = data.KvasirSEG(ids=train_ids, size=p.image_size, progress=False)
    held = data.KvasirSEG(ids=held_ids, size=p.image_size, progress=False)
    loader = DataLoader(held, batch_size=p.batch_size)
    nets = [c for c in contenders(args.chapter, p) if not args.only or c.name in args.only]
    channels_last = args.chapter in CHANNELS_LAST_CHAPTERS          # train as the chapter does
    print(f"# chapter {args.chapter}, {p.name} profile ({p.image_size} px, batch {p.batch_size}, lr {p.lr}): "
          f"{len(train_ids)} training images, {len(held_ids)} held out (all from the official training split)\n")
    print("| network | epochs | held-out Dice (95 % CI) | training s |\n|---|---|---|---|", flush=True)
    for c in nets:
        for epochs in (int(e) for e in args.epochs.split(",")):
            t0 = time.perf_counter()
            run = compare.train_contender(c, train_set, loader, max_epochs=epochs, lr=p.lr, batch_size=p.batch_size,
                                          seed=0, device="cpu", channels_last=channels_last)
            s = metrics.summarize(run.scores["dice"])
            print(f"| {c.name} | {epochs} | {s['mean']:.3f} ({s['ci_low']:.3f}-{s['ci_high']:.3f}) | "
                  f"{time.perf_counter() - t0:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
