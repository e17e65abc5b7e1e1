"""Plotting helpers shared by the chapters of the book (matplotlib).

Each chapter appends its helpers in a section headed with the chapter's name. The library
itself never imports this module, so matplotlib stays an optional dependency.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from torch import Tensor


# ======================================================================= Chapter 3: The solution function
# (also used by Chapter 5: Mathematical proofs)


def point_grid(n: int = 15, lim: float = 3.0, *, dtype: torch.dtype = torch.float64) -> Tensor:
    """An n x n grid of 2D points on [-lim, lim]^2 in row-major order; shape (n * n, 2)."""
    ticks = torch.linspace(-lim, lim, n, dtype=dtype)
    yy, xx = torch.meshgrid(ticks, ticks, indexing="ij")
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)  # (n * n, 2)


def grid_colors(n: int) -> np.ndarray:
    """One RGB colour per node of ``point_grid(n)`` that encodes its starting position; (n * n, 3).

    Left-to-right goes from blue to orange, bottom-to-top from dark to light, so a node can
    be followed after the grid has been moved.
    """
    u = np.tile(np.linspace(0.0, 1.0, n), n)  # column position in [0, 1]
    v = np.repeat(np.linspace(0.0, 1.0, n), n)  # row position in [0, 1]
    left, right = np.array([0.12, 0.35, 0.75]), np.array([0.90, 0.45, 0.10])
    rgb = (1 - u)[:, None] * left + u[:, None] * right
    return np.clip(rgb * (0.55 + 0.45 * v)[:, None] + 0.25 * v[:, None], 0.0, 1.0)


def plot_mesh(ax, points, n: int, *, color="0.55", linewidth: float = 0.6, colors=None, size: float = 7.0,
              zorder: int = 2):
    """Draw the n * n points of a (possibly moved) ``point_grid`` as a mesh on ``ax``.

    Rows and columns of the grid become lines, so folds and compressions show; nodes are
    dots, coloured by ``colors`` (e.g. ``grid_colors(n)``) when given.
    """
    pts = np.asarray(torch.as_tensor(points).detach().cpu(), dtype=float).reshape(n, n, 2)
    for i in range(n):
        ax.plot(pts[i, :, 0], pts[i, :, 1], color=color, lw=linewidth, zorder=zorder)  # rows
        ax.plot(pts[:, i, 0], pts[:, i, 1], color=color, lw=linewidth, zorder=zorder)  # columns
    ax.scatter(pts[..., 0].ravel(), pts[..., 1].ravel(), s=size, c=colors if colors is not None else color,
               zorder=zorder + 1, linewidths=0)


def plot_convergence(ax, step_sizes, errors, *, order: float | None = None, label: str | None = None,
                     marker: str = "o", **kwargs):
    """Log-log plot of errors against step sizes; ``order`` adds a dashed reference line h^order
    through the smallest step (where the asymptotic order shows), labelled with its slope."""
    h = np.asarray(step_sizes, dtype=float)
    e = np.asarray(errors, dtype=float)
    (line,) = ax.loglog(h, e, marker=marker, label=label, **kwargs)
    if order is not None:
        i = int(np.argmin(h))
        ref = e[i] * (h / h[i]) ** order
        ax.loglog(h, ref, ls="--", color=line.get_color(), alpha=0.5, lw=1,
                  label=f"slope {order:g}")
    ax.set_xlabel("step size")
    ax.set_ylabel("error")
    ax.grid(True, which="major", alpha=0.3)
    return line


def figure_png(fig, *, dpi: float | None = None) -> bytes:
    """Render a matplotlib figure to PNG bytes and close it (so it is not also shown inline)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    return buffer.getvalue()


def figure_widget(draw, **controls):
    """Controls above an image that ``draw(**values)`` redraws whenever a control changes.

    ``draw`` takes one keyword per control and returns a matplotlib Figure. The figure travels
    as PNG bytes inside an ``ipywidgets.Image``, not as cell output: the executed notebook
    stores it in the widget state, and ``pytest --nbval`` sees only the widget's text form.
    """
    import ipywidgets as widgets

    image = widgets.Image(format="png")

    def update(_change=None):
        image.value = figure_png(draw(**{name: c.value for name, c in controls.items()}))

    for control in controls.values():
        control.observe(update, names="value")
    update()
    return widgets.VBox([widgets.HBox(list(controls.values())), image])


# ======================================================================= Chapters 1-2: Introduction, Flow matching


def plot_samples(ax, x, *, title: str | None = None, lim: float = 2.6, color: str = "C0", size: float = 1.5,
                 alpha: float = 0.6):
    """Scatter 2D samples (N, 2) on a square [-lim, lim]^2 panel without ticks."""
    pts = np.asarray(torch.as_tensor(x).detach().cpu(), dtype=float)
    ax.scatter(pts[:, 0], pts[:, 1], s=size, c=color, alpha=alpha, linewidths=0)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    if title is not None:
        ax.set_title(title, fontsize=9)
    return ax


_EXPLORER_CLASS = None


def figure_explorer(draw, **controls):
    """An ipywidgets box: the given controls above a picture of ``draw(**values)``.

    ``draw`` takes the controls' values as keyword arguments and returns a matplotlib figure;
    the picture is redrawn whenever a control changes. The picture is a PNG in an
    ``ipywidgets.Image``, not a plot captured by an ``Output`` widget, so that

    - the notebook's saved widget state holds the picture, and the HTML book shows it
      without a kernel;
    - ``pytest --nbval``, which has no widget front end, sees the same cell output as the
      notebook (an ``Output`` widget's plot would land in the cell instead);
    - the cell's text output is the short ``FigureExplorer(name, ...)``.
    """
    global _EXPLORER_CLASS
    import ipywidgets as widgets

    if _EXPLORER_CLASS is None:

        class FigureExplorer(widgets.VBox):
            def __repr__(self) -> str:
                return f"FigureExplorer({', '.join(self._control_names)})"

        _EXPLORER_CLASS = FigureExplorer

    image = widgets.Image(format="png")

    def update(change=None):
        image.value = figure_png(draw(**{name: c.value for name, c in controls.items()}))

    for control in controls.values():
        control.observe(update, names="value")
    update()
    box = _EXPLORER_CLASS(children=[*controls.values(), image])
    box._control_names = tuple(controls)
    return box


# ======================================================================= Chapter 4: Training objectives


def sample_row(samples: dict, *, lim: float = 2.6, panel_size: float = 2.0, colors=None):
    """One row of ``plot_samples`` panels, one per (title -> (N, 2) points) entry; returns the figure."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(samples), figsize=(panel_size * len(samples), panel_size + 0.3))
    axes = np.atleast_1d(axes)
    for i, (ax, (title, pts)) in enumerate(zip(axes, samples.items())):
        color = colors[i] if colors is not None else "C0"
        plot_samples(ax, pts, title=title, lim=lim, color=color)
    fig.tight_layout()
    return fig


def plot_gap_histogram(ax, gaps, *, label: str | None = None, low: float = 1e-4, high: float = 1.0,
                       bins: int = 60, **kwargs):
    """Step histogram of positive gaps (e.g. t - l) on a log axis from ``low`` to ``high``,
    normalised to a density in log10(gap)."""
    g = np.asarray(torch.as_tensor(gaps).detach().cpu(), dtype=float)
    edges = np.logspace(np.log10(low), np.log10(high), bins + 1)
    weights = np.full(g.shape, 1.0 / (len(g) * (np.log10(edges[1]) - np.log10(edges[0]))))
    ax.hist(np.clip(g, low, high), bins=edges, weights=weights, histtype="step", label=label, **kwargs)
    ax.set_xscale("log")
    ax.set_xlim(low, high)


# ======================================================================= Chapters 6 and 9: Classifier-free guidance, SoFlow and diffusion models


def scatter_by_class(ax, x, y, *, title: str | None = None, lim: float = 2.6, size: float = 1.5,
                     alpha: float = 0.5, colors=("C0", "C1", "C2", "C3", "C4", "C5", "C6", "C7")):
    """Scatter 2D samples x (N, 2) coloured by integer class y (N,) on [-lim, lim]^2, no ticks."""
    pts = np.asarray(torch.as_tensor(x).detach().cpu(), dtype=float)
    labels = np.asarray(torch.as_tensor(y).detach().cpu())
    for k in np.unique(labels):
        sel = labels == k
        ax.scatter(pts[sel, 0], pts[sel, 1], s=size, color=colors[int(k) % len(colors)], alpha=alpha,
                   linewidths=0, rasterized=True)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    if title is not None:
        ax.set_title(title, fontsize=9)
    return ax


def plot_metric_vs_nfe(ax, nfes, values, *, label: str | None = None, floor: float | None = None,
                       marker: str = "o", **kwargs):
    """A sample metric against the number of network evaluations on log-log axes; ``floor``
    (the metric between two data samples) is drawn once as a dotted grey line when positive
    (an energy distance floor can be slightly negative, and a log axis cannot show it)."""
    (line,) = ax.loglog(np.asarray(nfes, dtype=float), np.asarray(values, dtype=float), marker=marker,
                        label=label, **kwargs)
    if floor is not None and floor > 0 and not getattr(ax, "_floor_drawn", False):
        ax.axhline(floor, color="0.5", ls=":", lw=1, label="data floor")
        ax._floor_drawn = True
    ax.set_xlabel("network evaluations (NFE)")
    ax.grid(True, which="major", alpha=0.3)
    return line


# ======================================================================= Chapter 7: The DiT architecture


def tile_images(x, nrow: int, *, pad: int = 1, pad_value: float = 1.0) -> np.ndarray:
    """Images x (N, C, H, W) in [-1, 1] tiled row by row, ``nrow`` per row, into an (h, w) or
    (h, w, 3) array in [0, 1] with ``pad`` pixels of ``pad_value`` between them."""
    x = np.asarray(torch.as_tensor(x).detach().float().cpu().clamp(-1, 1), dtype=float) * 0.5 + 0.5
    n, c, h, w = x.shape
    rows = -(-n // nrow)
    out = np.full((c, rows * (h + pad) + pad, nrow * (w + pad) + pad), pad_value, dtype=float)
    for i in range(n):
        r, q = divmod(i, nrow)
        out[:, pad + r * (h + pad): pad + r * (h + pad) + h, pad + q * (w + pad): pad + q * (w + pad) + w] = x[i]
    return out[0] if c == 1 else out.transpose(1, 2, 0)


def show_images(ax, x, nrow: int, *, title: str | None = None, pad: int = 1, pad_value: float = 1.0):
    """``tile_images`` drawn on ``ax`` in grey (one channel) or colour, without ticks."""
    ax.imshow(tile_images(x, nrow, pad=pad, pad_value=pad_value), cmap="gray", vmin=0, vmax=1,
              interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title is not None:
        ax.set_title(title, fontsize=9)
    return ax


def draw_patch_grid(ax, height: int, width: int, patch: int, *, color: str = "tab:red", numbers: bool = True,
                    fontsize: float = 7.0):
    """Patch boundaries of a (height, width) image shown with imshow, and each patch's token
    index (row-major, the order of DiT's token sequence)."""
    for k in range(0, height + 1, patch):
        ax.axhline(k - 0.5, color=color, lw=1)
    for k in range(0, width + 1, patch):
        ax.axvline(k - 0.5, color=color, lw=1)
    if numbers:
        cols = width // patch
        for i in range(height // patch):
            for j in range(cols):
                ax.text(j * patch + patch / 2 - 0.5, i * patch + patch / 2 - 0.5, str(i * cols + j), color=color,
                        ha="center", va="center", fontsize=fontsize)
    return ax


# ======================================================================= Chapter 8: Comparison with other one-step methods


def plot_metric_curves(ax, curves: dict, *, xlabel: str, ylabel: str, floor: float | None = None, logx: bool = True,
                       styles: dict | None = None):
    """One line per method on a log y axis: ``curves`` maps name -> (xs, values).

    ``floor`` draws a dotted horizontal line (e.g. the data-vs-data value of the metric);
    ``styles`` maps name -> keyword arguments of ``ax.plot`` (colour, marker, ...).
    """
    for name, (xs, values) in curves.items():
        style = {"marker": "o", "ms": 4, "lw": 1.5, **((styles or {}).get(name, {}))}
        ax.plot(np.asarray(xs, dtype=float), np.asarray(values, dtype=float), label=name, **style)
    if floor is not None:
        ax.axhline(floor, color="0.5", ls=":", lw=1, label="data floor")
    if logx:
        ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="major", alpha=0.3)
    return ax


def sample_small_multiples(rows: dict, *, lim: float = 2.6, panel_size: float = 1.9, colors: dict | None = None):
    """A grid of ``plot_samples`` panels: ``rows`` maps row name -> {panel title: (N, 2) points}.

    Rows may hold different numbers of panels; missing cells stay empty. The row name labels
    the first panel of each row. Returns the figure.
    """
    import matplotlib.pyplot as plt

    ncols = max(len(panels) for panels in rows.values())
    fig, axes = plt.subplots(len(rows), ncols, figsize=(panel_size * ncols, (panel_size + 0.25) * len(rows)),
                             squeeze=False)
    for r, (row_name, panels) in enumerate(rows.items()):
        color = (colors or {}).get(row_name, "C0")
        for c in range(ncols):
            ax = axes[r, c]
            if c >= len(panels):
                ax.axis("off")
                continue
            title, pts = list(panels.items())[c]
            plot_samples(ax, pts, title=title, lim=lim, color=color)
        axes[r, 0].set_ylabel(row_name, fontsize=9)
    fig.tight_layout()
    return fig
