"""unet_lib.explore: explorers that work on the static page."""
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from unet_lib.explore import MAX_STATES, static_explorer  # noqa: E402

calls = []


def render(threshold, image):
    calls.append((threshold, image))
    fig, ax = plt.subplots(figsize=(1, 1))
    ax.set_title(f"{image} {threshold}")
    return fig


def test_every_state_is_rendered_once_and_embedded():
    calls.clear()
    before = plt.get_fignums()
    ex = static_explorer(render, {"threshold": [0.3, 0.5, 0.7], "image": ["a", "b"]},
                         labels={"image": ["first", "second"]}, title="demo")
    assert sorted(calls) == sorted((t, i) for t in (0.3, 0.5, 0.7) for i in "ab")
    assert plt.get_fignums() == before, "every rendered figure is closed"
    page = ex._repr_html_()
    assert len(re.findall(r"data:image/png;base64,", page)) == 6 + 1   # six frames + the first shown
    assert '<input type="range" min="0" max="2"' in page                # numbers: a slider
    assert '<option value="1">second</option>' in page                 # strings: a menu with the labels
    assert '"2,1"' in page and ex.id in page and "demo" in page
    assert ex.nbytes == len(page.encode())


def test_two_explorers_on_one_page_do_not_share_an_id():
    a = static_explorer(render, {"threshold": [0.5], "image": ["a"]})
    b = static_explorer(render, {"threshold": [0.5], "image": ["a"]})
    assert a.id != b.id


def test_jpeg_is_smaller_for_photographs():
    ex = static_explorer(render, {"threshold": [0.5], "image": ["a"]}, fmt="jpeg")
    assert "data:image/jpeg;base64," in ex._repr_html_()


@pytest.mark.parametrize("controls, kwargs, match", [
    ({}, {}, "at least one control"),
    ({"threshold": []}, {}, "no values"),
    ({"threshold": [0.5]}, {"labels": {"threshold": ["a", "b"]}}, "1 values but 2 labels"),
    ({"threshold": [0.5]}, {"labels": {"image": ["a"]}}, "not a control"),
    ({"threshold": [0.5]}, {"fmt": "gif"}, "png' or 'jpeg"),
    ({"threshold": [0.5]}, {"start": {"threshold": 0.7}}, "not one of the control's values"),
    ({"threshold": list(range(MAX_STATES + 1))}, {}, "more than"),
])
def test_bad_grids_are_named(controls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        static_explorer(lambda **s: plt.figure(), controls, **kwargs)


def test_render_must_return_a_figure():
    with pytest.raises(TypeError, match="must return a matplotlib Figure, got NoneType"):
        static_explorer(lambda threshold: None, {"threshold": [0.5]})


def test_start_picks_the_state_shown_first():
    ex = static_explorer(render, {"threshold": [0.3, 0.5, 0.7], "image": ["a", "b"]},
                         start={"threshold": 0.5, "image": "b"})
    page = ex._repr_html_()
    assert f'src="{ex.frames["1,1"]}"' in page
    assert 'value="1" data-k="0"' in page and '<option value="1" selected>b</option>' in page
