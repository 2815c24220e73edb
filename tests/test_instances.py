"""Tests of instance targets and instance-level evaluation (unet_lib.instances)."""
from __future__ import annotations

import os

import numpy as np
import pytest

from unet_lib.instances import (
    InstanceScores,
    f1_from_iou,
    iou_matrix,
    label_instances,
    match_instances,
    separate_touching,
    touching_borders,
    touching_labels,
)


def touching_squares():
    """Objects 1 and 2 share an edge (columns 4|5); object 3 stands alone."""
    inst = np.zeros((10, 12), np.int32)
    inst[2:6, 1:5] = 1
    inst[2:6, 5:9] = 2
    inst[8:10, 9:12] = 3
    return inst


# ------------------------------------------------------------------------------------- targets
def test_touching_borders_by_hand():
    inst = touching_squares()
    ridge = touching_borders(inst)
    expected = np.zeros_like(ridge)
    expected[2:6, 4] = expected[2:6, 5] = True         # the two columns either side of the contact
    np.testing.assert_array_equal(ridge, expected)


def test_separate_touching_splits_touching_objects_only():
    inst = touching_squares()
    assert label_instances(inst > 0).max() == 2           # 1 and 2 merge without a ridge
    sep = separate_touching(inst)
    assert sep.dtype == inst.dtype
    assert label_instances(sep > 0).max() == 3            # with the ridge: three objects
    np.testing.assert_array_equal(sep == 3, inst == 3)    # the lone object is untouched
    assert (sep == 1).sum() == 12 and (sep == 2).sum() == 12


def test_diagonal_contact_is_separated_too():
    inst = np.zeros((6, 6), np.int32)
    inst[0:3, 0:3] = 1
    inst[3:6, 3:6] = 2                                   # touch only at a corner
    sep = separate_touching(inst)
    assert sep[2, 2] == 0 and sep[3, 3] == 0
    assert label_instances(sep > 0, connectivity=2).max() == 2


def test_touching_labels():
    inst = touching_squares()
    np.testing.assert_array_equal(touching_labels(inst, distance=1), [1, 2])
    inst[2:6, 5:9] = 0
    inst[2:6, 6:9] = 2                                   # now one background column apart
    np.testing.assert_array_equal(touching_labels(inst, distance=1), [])
    np.testing.assert_array_equal(touching_labels(inst, distance=2), [1, 2])


def test_label_instances_min_size_and_expand():
    mask = np.zeros((10, 10), bool)
    mask[1:4, 1:4] = True
    mask[8, 8] = True                                    # a one-pixel speck
    assert label_instances(mask).max() == 2
    lab = label_instances(mask, min_size=2)
    assert lab.max() == 1 and lab[8, 8] == 0
    grown = label_instances(mask, min_size=2, expand=1)
    assert (grown == 1).sum() == 21                      # 3x3 grown by 1 px (Euclidean): 5x5 less 4 corners
    diag = np.eye(4, dtype=bool)
    assert label_instances(diag, connectivity=1).max() == 4
    assert label_instances(diag, connectivity=2).max() == 1


# ------------------------------------------------------------------------------------- matching
def test_iou_matrix_against_loops():
    rng = np.random.default_rng(0)
    pred = rng.integers(0, 4, (15, 17)).astype(np.int32) * 3      # labels 0, 3, 6, 9
    true = rng.integers(0, 3, (15, 17)).astype(np.int32)
    iou, pids, tids = iou_matrix(pred, true)
    assert pids.tolist() == [3, 6, 9] and tids.tolist() == [1, 2]
    for i, a in enumerate(pids):
        for j, b in enumerate(tids):
            inter = np.sum((pred == a) & (true == b))
            union = np.sum((pred == a) | (true == b))
            assert iou[i, j] == pytest.approx(inter / union)


def test_perfect_prediction_scores_one():
    inst = touching_squares()
    s = match_instances(inst * 5, inst)
    assert (s.tp, s.fp, s.fn, s.merged) == (3, 0, 0, 0)
    assert s.f1 == s.precision == s.recall == 1.0 and s.mean_matched_iou == 1.0
    assert sorted(s.matched_true) == [1, 2, 3]


def test_merged_nuclei_count_as_misses():
    inst = touching_squares()
    pred = label_instances(inst > 0)                    # objects 1 and 2 come out as one component
    s = match_instances(pred, inst)
    # the merged component has IoU 16/32 = 0.5 with each: but it can match only one of them
    assert (s.tp, s.fp, s.fn, s.merged) == (2, 0, 1, 2)
    assert s.f1 == pytest.approx(2 * 2 / (2 * 2 + 0 + 1))
    assert s.precision == 1.0 and s.recall == pytest.approx(2 / 3)
    pred2 = label_instances(separate_touching(inst) > 0)  # the separated target: 3 objects, IoU 12/16
    s2 = match_instances(pred2, inst)
    assert (s2.tp, s2.fp, s2.fn, s2.merged) == (3, 0, 0, 0)
    assert s2.mean_matched_iou == pytest.approx((0.75 + 0.75 + 1.0) / 3)


def test_threshold_and_empty_cases():
    true = np.zeros((8, 8), np.int32)
    true[0:4, 0:4] = 1                                   # 16 px
    pred = np.zeros_like(true)
    pred[0:4, 0:2] = 1                                   # 8 px inside: IoU 0.5
    assert match_instances(pred, true, 0.5).tp == 1
    assert match_instances(pred, true, 0.51).tp == 0
    empty = np.zeros_like(true)
    assert match_instances(empty, empty).f1 == 1.0
    s = match_instances(empty, true)
    assert (s.tp, s.fp, s.fn, s.f1, s.recall) == (0, 0, 1, 0.0, 0.0)
    s = match_instances(pred, empty)
    assert (s.tp, s.fp, s.fn, s.f1, s.precision) == (0, 1, 0, 0.0, 0.0)
    with pytest.raises(ValueError, match="label"):
        match_instances(pred > 0, true)


def test_scores_add_up_over_images():
    a, b = InstanceScores(3, 1, 2, 0, (0.9, 0.8, 0.7)), InstanceScores(1, 0, 1, 2, (0.6,))
    s = a + b
    assert (s.tp, s.fp, s.fn, s.merged) == (4, 1, 3, 2) and s.f1 == pytest.approx(8 / 12)
    assert s.as_dict()["recall"] == pytest.approx(4 / 7)


def test_f1_from_iou_is_one_to_one():
    iou = np.array([[0.9, 0.6],
                    [0.7, 0.2],
                    [0.0, 0.1]])
    # pairs >= 0.5 greedily by IoU: (0, 0) at 0.9, then (1, 0) is blocked, (0, 1) is blocked: TP = 1
    assert f1_from_iou(iou) == pytest.approx(2 * 1 / (3 + 2))
    assert f1_from_iou(np.array([[0.5]])) == 1.0
    assert f1_from_iou(np.zeros((0, 3))) == 0.0
    assert f1_from_iou(np.zeros((0, 0))) == 1.0


@pytest.mark.skipif(not os.environ.get("UNET_BOOK_DATA"), reason="UNET_BOOK_DATA is not set (real DSB2018 data)")
def test_real_nuclei_ridge_splits_them():
    from unet_lib.data import dsb_ids, load_dsb_instances

    _, inst = load_dsb_instances(dsb_ids()[0])
    n = len(np.unique(inst)) - 1
    merged = match_instances(label_instances(inst > 0), inst)
    split = match_instances(label_instances(separate_touching(inst) > 0, expand=1), inst)
    assert merged.fn > 0 and merged.merged > 0           # the subset was chosen for touching nuclei
    assert split.tp >= n - 2 and split.merged == 0       # the ridge keeps (almost) all of them apart
