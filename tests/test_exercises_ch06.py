"""The chapter 06 checkers accept right answers and reject typical mistakes."""
import torch

from unet_lib.exercises import ch06


def not_implemented(*args):
    raise NotImplementedError


# -- exercise 1: the five inputs of a decoder stage ----------------------------------------------
def test_skip_sources_checker():
    def right(stage):
        return [(f"h{j}", "pool", 2 ** (stage - j)) if j < stage else (f"h{j}", "cat", 1) if j == stage
                else (f"hd{j}", "up", 2 ** (j - stage)) for j in range(1, 6)]

    def bottleneck_as_h5(stage):
        return [("h5", op, k) if name == "hd5" else (name, op, k) for name, op, k in right(stage)]

    def unet_thinking(stage):  # only the same scale and the next deeper one
        return [s for s in right(stage) if s[0] in (f"h{stage}", f"hd{stage + 1}")]

    def deeper_encoder_maps(stage):  # upsamples the ENCODER maps h_j instead of the decoder maps hd_j
        return [(s[0].replace("hd", "h"), s[1], s[2]) if s[0] != "hd5" else s for s in right(stage)]

    def linear_factors(stage):
        return [(n, op, abs(j + 1 - stage) * 2 if op != "cat" else 1) for j, (n, op, _) in enumerate(right(stage))]

    assert ch06.check_skip_sources(right)
    assert ch06.check_skip_sources(ch06.skip_sources)
    assert ch06.check_skip_sources(bottleneck_as_h5)
    for wrong in (unet_thinking, deeper_encoder_maps, linear_factors, not_implemented):
        fb = ch06.check_skip_sources(wrong)
        assert not fb and fb.message


# -- exercise 2: decoder parameters ----------------------------------------------------------------
def test_decoder_parameters_checker():
    def right(f):
        cat, up = f[0], 5 * f[0]
        block = lambda i, o: i * o * 9 + 2 * o  # noqa: E731
        stages = [[f[0], f[1], f[2], f[3], f[4]], [f[0], f[1], f[2], up, f[4]],
                  [f[0], f[1], up, up, f[4]], [f[0], up, up, up, f[4]]]
        return sum(sum(block(s, cat) for s in src) + block(up, up) for src in stages)

    def with_bias(f):
        return right(f) + 4 * (5 * f[0] + 5 * f[0])

    def decoder_maps_with_encoder_width(f):  # treats the deeper decoder maps as if they had features[j] channels
        cat = f[0]
        block = lambda i, o: i * o * 9 + 2 * o  # noqa: E731
        return sum(sum(block(s, cat) for s in f) + block(5 * cat, 5 * cat) for _ in range(4))

    assert ch06.decoder_parameters((64, 128, 256, 512, 1024)) == right((64, 128, 256, 512, 1024))
    assert ch06.check_decoder_parameters(right)
    for wrong in (with_bias, decoder_maps_with_encoder_width, not_implemented):
        fb = ch06.check_decoder_parameters(wrong)
        assert not fb and fb.message


# -- exercise 3: soft IoU loss ---------------------------------------------------------------------
def test_soft_iou_loss_checker():
    def right(p, t):
        inter = (p * t).sum((2, 3))
        union = (p + t - p * t).sum((2, 3))
        return (1 - (inter + 1) / (union + 1)).mean()

    def no_smooth(p, t):
        inter = (p * t).sum((2, 3))
        return (1 - inter / (p + t - p * t).sum((2, 3))).mean()

    def whole_batch(p, t):
        inter = (p * t).sum()
        return 1 - (inter + 1) / ((p + t - p * t).sum() + 1)

    def dice_instead(p, t):
        return (1 - (2 * (p * t).sum((2, 3)) + 1) / ((p + t).sum((2, 3)) + 1)).mean()

    assert ch06.check_soft_iou_loss(right)
    for wrong in (no_smooth, whole_batch, dice_instead, not_implemented):
        fb = ch06.check_soft_iou_loss(wrong)
        assert not fb and fb.message


# -- exercise 4: the CGM gate -------------------------------------------------------------------------
def test_gate_checker():
    def right(logits, cls_logits):
        keep = (cls_logits.argmax(1) == 1).view(-1, 1, 1, 1)
        return torch.where(keep, logits, torch.full_like(logits, -1e4))

    def authors_multiply(logits, cls_logits):
        return logits * cls_logits.argmax(1).float().view(-1, 1, 1, 1)

    def minus_inf(logits, cls_logits):
        keep = (cls_logits.argmax(1) == 1).view(-1, 1, 1, 1)
        return torch.where(keep, logits, torch.full_like(logits, float("-inf")))

    def too_mild(logits, cls_logits):
        keep = (cls_logits.argmax(1) == 1).view(-1, 1, 1, 1)
        return torch.where(keep, logits, logits - 5)

    def gates_everything(logits, cls_logits):
        return torch.full_like(logits, -1e4)

    assert ch06.check_gate(right)
    msg = ch06.check_gate(authors_multiply).message
    assert "0.5" in msg
    for wrong in (minus_inf, too_mild, gates_everything, not_implemented):
        fb = ch06.check_gate(wrong)
        assert not fb and fb.message


def test_soft_iou_loss_checker_rejects_nan_and_none():
    def smooth_only_where_nonempty(p, t):  # right, except 0 / 0 = nan on the empty images
        inter, union = (p * t).sum((2, 3)), (p + t - p * t).sum((2, 3))
        return (1 - torch.where(union > 0, (inter + 1) / (union + 1), inter / union)).mean()

    fb = ch06.check_soft_iou_loss(smooth_only_where_nonempty)
    assert not fb and fb.message.startswith("for an empty target predicted empty your function returned nan")
    assert "smooth = 1" in fb.message
    fb = ch06.check_soft_iou_loss(lambda p, t: None)
    assert not fb and "returned None; it should return a float" in fb.message
    fb = ch06.check_soft_iou_loss(lambda p, t: 1 - (p * t).sum((2, 3)) / (p + t - p * t).sum((2, 3)).clamp_min(1))
    assert not fb and "returned a tensor of shape" in fb.message        # one loss per image, not averaged
    assert ch06.check_soft_iou_loss(lambda p, t: float(1 - ((p * t).sum((2, 3)) + 1).div(
        (p + t - p * t).sum((2, 3)) + 1).mean()))                        # a float is as good as a tensor


def test_gate_checker_names_wrong_types():
    fb = ch06.check_gate(lambda logits, cls_logits: logits.numpy())
    assert not fb and "returned a numpy array of shape (4, 1, 6, 6); it should return a torch.Tensor" in fb.message
    fb = ch06.check_gate(lambda logits, cls_logits: logits * float("nan"))
    assert not fb and "nan" in fb.message
