"""The chapter 02 checkers accept the reference answers and reject typical mistakes."""
import numpy as np
import torch

from unet_lib.exercises import ch02
from unet_lib.models import FCN, count_parameters
from unet_lib.models.fcn import bilinear_kernel, receptive_field


# -- exercise 1: bilinear kernel ----------------------------------------------------------------
def test_bilinear_kernel_checker_accepts_reference_numpy_and_torch():
    assert ch02.check_bilinear_kernel(bilinear_kernel)
    assert ch02.check_bilinear_kernel(lambda f: bilinear_kernel(f).numpy())
    assert ch02.check_bilinear_kernel(lambda f: bilinear_kernel(f).tolist())


def test_bilinear_kernel_checker_rejects_mistakes():
    def off_centre(f):  # centre f instead of f - 0.5: not symmetric
        t = 1 - np.abs(np.arange(2 * f) - f) / f
        return np.outer(t, t)

    def normalised(f):  # a kernel that sums to 1 is an average, not an interpolation
        k = bilinear_kernel(f)
        return k / k.sum()

    def not_implemented(f):
        raise NotImplementedError

    for wrong in (off_centre, normalised, not_implemented, lambda f: np.ones((2 * f, 2 * f)), lambda f: np.ones(3)):
        fb = ch02.check_bilinear_kernel(wrong)
        assert not fb and fb.message


# -- exercise 2: receptive field ----------------------------------------------------------------
def test_receptive_field_checker():
    assert ch02.check_receptive_field(receptive_field)

    def stride_after(layers):  # multiplies the jump before adding: a common slip
        r, j = 1, 1
        for k, s in layers:
            j *= s
            r += (k - 1) * j
        return r, j

    def only_rf(layers):
        return receptive_field(layers)[0]

    assert not ch02.check_receptive_field(stride_after)
    assert not ch02.check_receptive_field(only_rf)
    assert not ch02.check_receptive_field(lambda layers: (1 + sum(k - 1 for k, s in layers), 1))


# -- exercise 3: skip parameters ----------------------------------------------------------------
def test_skip_parameters_reference_matches_the_models():
    for features, k in ((4, 1), (8, 3), (2, 21)):
        base = count_parameters(FCN(3, k, "32s", features=features))
        for variant in ("32s", "16s", "8s"):
            extra = count_parameters(FCN(3, k, variant, features=features)) - base
            assert ch02.skip_parameters(features, k, variant) == extra


def test_skip_parameters_checker():
    assert ch02.check_skip_parameters(ch02.skip_parameters)
    fb = ch02.check_skip_parameters(lambda f, k, v: ch02.skip_parameters(f, k, "16s") if v != "32s" else 0)
    assert not fb and "pool3" in fb.message
    no_bias = lambda f, k, v: {"32s": 0, "16s": 8 * f * k + 16 * k * k, "8s": 12 * f * k + 32 * k * k}[v]  # noqa: E731
    assert not ch02.check_skip_parameters(no_bias)
    assert not ch02.check_skip_parameters(lambda f, k, v: torch.tensor(1.0) / 0)  # an exception is feedback


def test_wrong_types_and_shapes_are_named():
    fb = ch02.check_bilinear_kernel(lambda f: np.ones(3))
    assert not fb and "got shape (3,)" in fb.message                     # the shape hint, not a crash on .T
    fb = ch02.check_receptive_field(lambda layers: receptive_field(layers)[0])
    assert not fb and "it should return a pair (receptive_field, output_stride)" in fb.message
    fb = ch02.check_skip_parameters(lambda f, k, v: ch02.skip_parameters(f, k, v) + 0.5)
    assert not fb and "it should return an int (a whole number)" in fb.message   # no longer truncated by int()
