"""Loss landscapes of a network: low-dimensional slices through its parameter space.

- The 1-D interpolation of Goodfellow, Vinyals & Saxe (2015): C((1 − α) θ₀ + α θ₁) for α on a grid
  holding 0 and 1 exactly, θ₀ the initial and θ₁ the final parameters. A monotone curve says
  training never had to climb a barrier along the straight line between them.
- A 2-D slice through the final point along two random directions (Li et al., 2018):
  C(θ* + x δ + y η), each direction filter-normalised so that the picture does not depend on the
  scale of each unit's weights (a ReLU network is invariant to rescaling a unit's incoming weights
  by a and its outgoing by 1/a, so unnormalised slices of two networks are not comparable).
- The training trajectory θ₀, …, θ_T, which random directions do not see (in high dimension they are
  almost orthogonal to it), projected on the plane of its first two principal directions (Li et
  al., §7) through θ*, with the loss on that plane.

Every function here is pure: parameters are flat float vectors (jax.flatten_util.ravel_pytree's
order) or the pytree `unravel` gives back, and the loss is whatever `evaluate` computes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

MIN_MOVING = 3  # snapshots besides the final one: centred, two of them span only a line
Evaluate = Callable[[Any], dict]  # params (a pytree) -> {"loss": scalar, "error": scalar, ...}


def alphas(points: int, margin: float = 0.25) -> np.ndarray:
    """`points` values from 0 to 1 evenly (0 and 1 exact), extended by whole steps to about ±`margin` beyond."""
    extra = int(round(margin * (points - 1)))
    return np.arange(-extra, points + extra) / (points - 1)  # k / (points − 1): exactly 1 at k = points − 1


def filter_normalized(direction: list[dict], params: list[dict]) -> list[dict]:
    """Li et al.'s filter normalisation of a direction for a dense network (layers {"w", "b"}, w of shape
    (units out, units in)): each row d_i of a direction's w (one unit's incoming weights, a "filter")
    becomes d_i · ‖θ_i‖ / ‖d_i‖, θ_i the same row of the parameters; biases get no direction
    (zero), as in Li et al.'s default ("ignore biasbn"). Written by hand: no library does this."""
    out = []
    for d, p in zip(direction, params):
        w, theta = np.asarray(d["w"], np.float64), np.asarray(p["w"], np.float64)
        norms = np.linalg.norm(w, axis=1, keepdims=True)
        scale = np.linalg.norm(theta, axis=1, keepdims=True) / np.where(norms > 0, norms, 1.0)
        out.append({"w": (w * scale).astype(np.float32), "b": np.zeros_like(np.asarray(p["b"], np.float32))})
    return out


def random_direction(rng: np.random.Generator, params: list[dict]) -> list[dict]:
    """A Gaussian direction shaped like `params`, filter-normalised against them."""
    drawn = [{k: rng.standard_normal(np.shape(v)) for k, v in layer.items()} for layer in params]
    return filter_normalized(drawn, params)


def principal_plane(trajectory: np.ndarray, final: np.ndarray) -> dict:
    """The first two principal directions of the path and every snapshot's coordinates on them.

    The rows θ_i − θ* of the snapshots other than θ* itself, centred, form M (k × n); its principal
    directions are the top right singular vectors of M. They are found from the k × k Gram matrix
    G = M Mᵀ = U S² Uᵀ (float64 `eigh`), v_j = Mᵀ u_j / s_j: k is a few dozen, n up to millions, so
    this never forms an n × n or runs an SVD over n. Coordinates are (θ_i − θ*) · v_j for every
    snapshot (θ* at the origin); each v_j's sign is chosen so that the first snapshot's coordinate is
    ≥ 0. `explained` is s_j² / Σ s², `captured` each snapshot's share of ‖θ_i − θ*‖² on the plane.
    """
    final = np.asarray(final, np.float64)
    offsets = np.asarray(trajectory, np.float64) - final
    moving = offsets[np.linalg.norm(offsets, axis=1) > 0]
    if len(moving) < MIN_MOVING:
        raise ValueError(f"a principal plane needs {MIN_MOVING} snapshots away from the final point, "
                         f"there are {len(moving)}")
    centred = moving - moving.mean(axis=0)
    values, vectors = np.linalg.eigh(centred @ centred.T)
    values, vectors = np.maximum(values[::-1], 0.0), vectors[:, ::-1]
    # a direction with no variance (a path on a line) is left zero rather than divided by roundoff
    real = values[:2] > 1e-12 * max(values[0], 1e-300)
    directions = (centred.T @ vectors[:, :2] * np.where(real, 1 / np.sqrt(np.where(real, values[:2], 1.0)), 0.0)).T
    coords = offsets @ directions.T
    signs = np.where(coords[0] < 0, -1.0, 1.0)
    directions, coords = directions * signs[:, None], coords * signs
    lengths = np.sum(offsets**2, axis=1)
    captured = np.where(lengths > 0, np.sum(coords**2, axis=1) / np.where(lengths > 0, lengths, 1.0), 1.0)
    return {"directions": directions, "coords": coords,
            "explained": values[:2] / np.sum(values), "captured": captured}


def evaluate_along(evaluate: Evaluate, unravel: Callable, origin: np.ndarray, directions: np.ndarray,
                   coefficients: np.ndarray) -> dict[str, np.ndarray]:
    """`evaluate(unravel(origin + Σ_j c_j directions_j))` for every row c of `coefficients` (m × d), in one
    compiled program (a lax.map over the rows, so memory stays that of one evaluation)."""
    origin = jnp.asarray(origin, jnp.float32)
    directions = jnp.asarray(directions, jnp.float32).reshape(-1, origin.size)

    @jax.jit
    def run(coefficients):
        return jax.lax.map(lambda c: evaluate(unravel(origin + c @ directions)), coefficients)

    return {k: np.asarray(v, np.float64) for k, v in run(jnp.asarray(coefficients, jnp.float32)).items()}


def interpolation(evaluate: Evaluate, unravel: Callable, start: np.ndarray, end: np.ndarray,
                  alpha: np.ndarray) -> dict[str, list[float]]:
    """Goodfellow et al.'s line: C((1 − α) θ₀ + α θ₁) at each α, formed as written (not θ₀ + α (θ₁ − θ₀)), so
    that α = 0 and α = 1 are θ₀ and θ₁ to the last bit."""
    alpha = np.asarray(alpha, np.float64)
    ends = np.stack([np.asarray(start, np.float32), np.asarray(end, np.float32)])
    values = evaluate_along(evaluate, unravel, np.zeros(ends.shape[1], np.float32), ends,
                            np.stack([1 - alpha, alpha], axis=1))
    return {"alpha": [float(a) for a in alpha], **{k: v.tolist() for k, v in values.items()}}


def plane(evaluate: Evaluate, unravel: Callable, center: np.ndarray, directions: np.ndarray,
          xs: np.ndarray, ys: np.ndarray) -> dict[str, Any]:
    """C(θ* + x d₁ + y d₂) on the grid xs × ys: each metric as a (len(ys), len(xs)) nested list, row = y."""
    grid = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)
    values = evaluate_along(evaluate, unravel, center, directions, grid)
    shape = (len(ys), len(xs))
    return {"x": [float(x) for x in xs], "y": [float(y) for y in ys],
            **{k: v.reshape(shape).tolist() for k, v in values.items()}}


def landscape(evaluate: Evaluate, initial: list[dict], final: list[dict], epochs: np.ndarray,
              trajectory: np.ndarray, *, points: int = 41, resolution: int = 21, span: float = 1.0,
              seed: int = 0) -> dict:
    """The three views for analysis.landscape: the initial-to-final line, the random-direction plane
    (x, y ∈ [−span, span], `resolution` per side) and the trajectory's principal plane (spanning the
    projected path with a 20% margin), each metric of `evaluate` on each."""
    from jax.flatten_util import ravel_pytree

    start, _ = ravel_pytree(initial)
    end, unravel = ravel_pytree(final)
    start, end = np.asarray(start), np.asarray(end)
    rng = np.random.default_rng(seed)
    random_dirs = np.stack([np.asarray(ravel_pytree(random_direction(rng, final))[0]) for _ in range(2)])
    axis = np.linspace(-span, span, resolution)
    pca = principal_plane(trajectory, end)
    (x0, y0), (x1, y1) = pca["coords"].min(axis=0), pca["coords"].max(axis=0)
    pad = 0.2 * max(x1 - x0, y1 - y0, 1e-12)
    xs, ys = np.linspace(x0 - pad, x1 + pad, resolution), np.linspace(y0 - pad, y1 + pad, resolution)
    line = interpolation(evaluate, unravel, start, end, alphas(points))
    at = {a: line["alpha"].index(a) for a in (0.0, 1.0)}
    metrics = [k for k in line if k != "alpha"]
    return {
        "initial": {k: line[k][at[0.0]] for k in metrics},
        "final": {k: line[k][at[1.0]] for k in metrics},
        "interpolation": line,
        "random_plane": {**plane(evaluate, unravel, end, random_dirs, axis, axis), "seed": seed, "span": span,
                         "normalisation": "filter (per unit's incoming weights), biases not moved"},
        "trajectory_plane": {**plane(evaluate, unravel, end, pca["directions"], xs, ys),
                             "explained_variance": pca["explained"].tolist(),
                             "path": {"epoch": [int(e) for e in epochs], "x": pca["coords"][:, 0].tolist(),
                                      "y": pca["coords"][:, 1].tolist(), "captured": pca["captured"].tolist()}},
    }
