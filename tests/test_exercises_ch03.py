"""The chapter 03 checkers accept the reference answers and reject typical mistakes."""
import pytest
import torch

from unet_lib.exercises import Feedback, ch03
from unet_lib.measure import count_parameters
from unet_lib.models.blocks import DoubleConv, center_crop
from unet_lib.models.unet import valid_output_size


def not_implemented(*args):
    raise NotImplementedError


# -- exercise 1: output size of the 2015 U-Net -----------------------------------------------------
def output_size(n):
    for _ in range(4):
        n -= 4
        if n <= 0 or n % 2:
            return None
        n //= 2
    n -= 4
    for _ in range(4):
        n = 2 * n - 4
    return n if n > 0 else None


def test_output_size_checker():
    assert ch03.check_output_size(output_size)

    def library(n):
        try:
            return valid_output_size(n)
        except ValueError:
            return None

    assert ch03.check_output_size(library)
    assert ch03.check_output_size(lambda n: float(output_size(n)) if output_size(n) else None)   # 388.0 is 388
    fb = ch03.check_output_size(lambda n: n - 184)                  # forgets that the sizes must fit
    assert not fb and "cannot be processed" in fb.message
    fb = ch03.check_output_size(lambda n: None)
    assert not fb and "you returned None, but the output is" in fb.message
    assert not ch03.check_output_size(not_implemented)


# -- exercise 2: centre crop -------------------------------------------------------------------------
def test_center_crop_checker():
    assert ch03.check_center_crop(center_crop)
    fb = ch03.check_center_crop(lambda x, h, w: x[..., :h, :w])
    assert not fb and "wrong pixels" in fb.message
    fb = ch03.check_center_crop(lambda x, h, w: x[..., :h, : w + 1])
    assert not fb and "gave shape" in fb.message
    fb = ch03.check_center_crop(lambda x, h, w: center_crop(x, h, w).numpy())
    assert not fb and "it should return a torch.Tensor" in fb.message


# -- exercise 3: parameters of a DoubleConv ------------------------------------------------------------
def test_double_conv_params_checker():
    def right(cin, cout, bn):
        return 9 * cin * cout + 9 * cout * cout + (4 * cout if bn else 2 * cout)

    assert ch03.check_double_conv_params(right)
    assert ch03.check_double_conv_params(
        lambda cin, cout, bn: count_parameters(DoubleConv(cin, cout, norm="batch" if bn else None)))
    fb = ch03.check_double_conv_params(lambda cin, cout, bn: 9 * cin * cout + 9 * cout * cout)    # no biases
    assert not fb and "plus one bias per output channel" in fb.message
    fb = ch03.check_double_conv_params(lambda cin, cout, bn: right(cin, cout, False))          # BN ignored
    assert not fb and "batch norm" in fb.message
    fb = ch03.check_double_conv_params(lambda cin, cout, bn: torch.tensor(right(cin, cout, bn)))
    assert fb                                                                                  # a 0-d tensor is fine


# -- unusable answers: None, nan and a wrong type are "not yet" with the problem named -----------
BAD_ANSWERS = {
    "None": (lambda *args, **kwargs: None, "returned None"),
    "nan": (lambda *args, **kwargs: float("nan"), "returned nan (not a number)"),
    "a string": (lambda *args, **kwargs: "0.5", "returned a str ('0.5')"),
}


@pytest.mark.parametrize("bad", BAD_ANSWERS)
@pytest.mark.parametrize("check", [ch03.check_output_size, ch03.check_center_crop, ch03.check_double_conv_params],
                         ids=["check_output_size", "check_center_crop", "check_double_conv_params"])
def test_unusable_answers_are_named(check, bad):
    fn, problem = BAD_ANSWERS[bad]
    fb = check(fn)
    assert isinstance(fb, Feedback) and not fb and str(fb).startswith("Not yet: ")
    assert problem in fb.message and "raised" not in fb.message    # the checker itself never crashes
