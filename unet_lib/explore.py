"""Explorers that work without a kernel: a precomputed grid of figures behind sliders, in one HTML output.

With a kernel (Jupyter, Colab) an ``ipywidgets`` explorer recomputes its figure on every move; on the
book's static page nothing would run. :func:`static_explorer` renders every combination of a few
control values once, at build time, and embeds the images with a few lines of JavaScript that swap
them: the page needs nothing but a browser.

    fig_for = lambda threshold, image: ...            # returns a matplotlib Figure
    static_explorer(fig_for, {"image": [0, 1, 2], "threshold": [0.3, 0.5, 0.7]}, labels={"image": [...]})

Numbers (not strings) become a slider, strings a drop-down menu. Keep grids small: each state is
one image (:attr:`StaticExplorer.nbytes` says what the page carries).
"""
from __future__ import annotations

import base64
import html
import io
import itertools
import json
import uuid
from collections.abc import Callable, Mapping, Sequence

__all__ = ["StaticExplorer", "static_explorer", "MAX_STATES"]

#: more states than this make a page too heavy: sample the controls more coarsely
MAX_STATES = 64


def _encode(fig, fmt: str, dpi: int) -> str:
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    if not isinstance(fig, Figure):
        raise TypeError(f"the render function must return a matplotlib Figure, got {type(fig).__name__}: "
                        "build the figure with plt.subplots(...) and return it")
    buf = io.BytesIO()
    kwargs = {"pil_kwargs": {"quality": 80}} if fmt == "jpeg" else {}
    fig.savefig(buf, format=fmt, dpi=dpi, bbox_inches="tight", **kwargs)
    plt.close(fig)
    return f"data:image/{fmt};base64," + base64.b64encode(buf.getvalue()).decode("ascii")


class StaticExplorer:
    """A grid of prerendered states with one control per parameter; shown as HTML by IPython."""

    def __init__(self, controls: dict[str, list], labels: dict[str, list[str]], frames: dict[str, str],
                 title: str | None = None, start: dict[str, int] | None = None):
        self.controls, self.labels, self.frames, self.title = controls, labels, frames, title
        #: index of the value each control shows first
        self.start = {name: (start or {}).get(name, 0) for name in controls}
        self.id = "explorer-" + uuid.uuid4().hex[:8]

    @property
    def nbytes(self) -> int:
        """Size of the HTML this explorer adds to a page, in bytes."""
        return len(self._repr_html_().encode())

    def _control_html(self, k: int, name: str) -> str:
        labels, first = self.labels[name], self.start[name]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in self.controls[name]):
            widget = (f'<input type="range" min="0" max="{len(labels) - 1}" step="1" value="{first}" data-k="{k}">'
                      f'<span class="value">{html.escape(labels[first])}</span>')
        else:
            options = "".join(f'<option value="{i}"{" selected" if i == first else ""}>{html.escape(t)}</option>'
                              for i, t in enumerate(labels))
            widget = f'<select data-k="{k}">{options}</select>'
        return f'<label style="margin-right:1.5em">{html.escape(name)} {widget}</label>'

    def _repr_html_(self) -> str:
        names = list(self.controls)
        title = f"<div><b>{html.escape(self.title)}</b></div>" if self.title else ""
        controls = "".join(self._control_html(k, n) for k, n in enumerate(names))
        first = self.frames[",".join(str(self.start[n]) for n in names)]
        return f"""<div id="{self.id}" class="unet-static-explorer">{title}<div>{controls}</div>
<img style="max-width:100%" src="{first}" alt="explorer figure">
<script>
(function() {{
  var root = document.getElementById("{self.id}");
  var frames = {json.dumps(self.frames)};
  var labels = {json.dumps([self.labels[n] for n in names])};
  var inputs = root.querySelectorAll("[data-k]");
  function update() {{
    var key = [];
    inputs.forEach(function(el) {{
      var k = +el.dataset.k, i = +el.value;
      key[k] = i;
      var span = el.parentNode.querySelector(".value");
      if (span) span.textContent = labels[k][i];
    }});
    root.querySelector("img").src = frames[key.join(",")];
  }}
  inputs.forEach(function(el) {{ el.addEventListener("input", update); }});
}})();
</script></div>"""


def static_explorer(render: Callable[..., object], controls: Mapping[str, Sequence], *,
                    labels: Mapping[str, Sequence[str]] | None = None, title: str | None = None,
                    start: Mapping[str, object] | None = None, fmt: str = "png", dpi: int = 60) -> StaticExplorer:
    """Render ``render(**state)`` for every combination of ``controls`` and wrap the images with sliders.

    Args:
        render: called with one keyword argument per control; returns a matplotlib Figure (closed here).
        controls: control name -> its values, e.g. ``{"threshold": [0.3, 0.5, 0.7]}``; numbers become a
            slider, anything else a drop-down menu.
        labels: optional display text per value (same length as the control's values), e.g. image names.
        title: a line above the controls.
        start: the value a control shows first (default: its first value), e.g. ``{"threshold": 0.5}``.
        fmt: ``"png"`` (line art, masks) or ``"jpeg"`` (photographs; smaller).
        dpi: resolution of the embedded images.

    Returns:
        A :class:`StaticExplorer`: the last expression of a cell displays it.

    Raises:
        ValueError: no controls, a control without values, labels of the wrong length, a start value that
            is not among the control's values, a format other than png/jpeg, or more than
            :data:`MAX_STATES` combinations.
    """
    if not controls:
        raise ValueError("static_explorer needs at least one control, e.g. {'threshold': [0.3, 0.5, 0.7]}")
    if fmt not in ("png", "jpeg"):
        raise ValueError(f"fmt must be 'png' or 'jpeg', got {fmt!r}")
    values = {name: list(v) for name, v in controls.items()}
    for name, v in values.items():
        if not v:
            raise ValueError(f"control {name!r} has no values: give it at least one")
    texts = {name: [str(x) for x in v] for name, v in values.items()}
    for name, given in (labels or {}).items():
        if name not in values:
            raise ValueError(f"labels given for {name!r}, which is not a control (controls: {list(values)})")
        if len(given) != len(values[name]):
            raise ValueError(f"control {name!r} has {len(values[name])} values but {len(given)} labels")
        texts[name] = [str(t) for t in given]
    n_states = 1
    for v in values.values():
        n_states *= len(v)
    if n_states > MAX_STATES:
        sizes = " x ".join(f"{len(v)} {name}" for name, v in values.items())
        raise ValueError(f"{sizes} = {n_states} states is more than {MAX_STATES}: a page would carry "
                         f"{n_states} images; use fewer values per control")
    first = {}
    for name, value in (start or {}).items():
        if name not in values or value not in values[name]:
            raise ValueError(f"start {name}={value!r} is not one of the control's values "
                             f"{values.get(name, '(no such control)')}")
        first[name] = values[name].index(value)
    names = list(values)
    frames = {}
    for index in itertools.product(*(range(len(values[n])) for n in names)):
        state = {n: values[n][i] for n, i in zip(names, index)}
        frames[",".join(map(str, index))] = _encode(render(**state), fmt, dpi)
    return StaticExplorer(values, texts, frames, title, first)
