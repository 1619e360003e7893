"""Stochastic estimates of a symmetric matrix's spectrum from matvecs: trace and density.

Hutchinson's trace: for a random v with E[v vᵀ] = I,  E[vᵀ A v] = tr(A). With Rademacher v
(entries ±1) the variance of one sample is 2 (‖A‖_F² − Σ_i A_ii²), so the mean of N samples
has standard error √(that / N); the estimate reports the sample version of it.

Stochastic Lanczos quadrature (Golub & Meurant; Ghorbani et al. 2019; google/spectral-density):
the spectral density φ(t) = (1/n) Σ_i δ(t − λ_i) satisfies, for a unit vector v uniform on the
sphere, E[vᵀ f(A) v] = ∫ f φ. Lanczos from v gives T = U Θ Uᵀ, and vᵀ f(A) v ≈ Σ_j U_1j² f(θ_j):
a quadrature rule with nodes θ_j and weights U_1j² (summing to 1). Averaging the rules of a
few random v and smoothing each node with a Gaussian gives the density estimate.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from optlab.curvature.hvp import MatVec, as_partial
from optlab.curvature.lanczos import lanczos, ritz


# Module-level jitted programs: compiled once per operator structure and order, then reused by
# every probe and every later analysis of the same model.
@jax.jit
def _quadratic_forms(matvec, vs: jax.Array) -> jax.Array:
    return jax.lax.map(lambda v: jnp.vdot(v, matvec(v)), vs)


@partial(jax.jit, static_argnums=2)
def _ritz_of_lanczos(matvec, start: jax.Array, order: int):
    return ritz(lanczos(matvec, start, order))


def hutchinson_trace(matvec: MatVec, n: int, probes: int, key: jax.Array, dtype=jnp.float32) -> tuple[float, float]:
    """tr(A) ≈ mean of vᵀ A v over `probes` Rademacher v; returns (estimate, its standard error)."""
    vs = jax.random.rademacher(key, (probes, n), dtype)
    samples = np.asarray(_quadratic_forms(as_partial(matvec), vs), dtype=np.float64)
    stderr = samples.std(ddof=1) / np.sqrt(probes) if probes > 1 else float("nan")
    return float(samples.mean()), float(stderr)


class Quadrature(NamedTuple):
    nodes: np.ndarray  # (probes, order) Ritz values
    weights: np.ndarray  # (probes, order) squared first components; each row sums to 1


def slq(matvec: MatVec, n: int, order: int, probes: int, key: jax.Array, dtype=jnp.float32) -> Quadrature:
    """The quadrature rules of `probes` Lanczos runs of `order` steps from random unit vectors."""
    nodes, weights = [], []
    for k in jax.random.split(key, probes):
        values, vectors = _ritz_of_lanczos(as_partial(matvec), jax.random.normal(k, (n,), dtype), order)
        nodes.append(np.asarray(values, np.float64))
        weights.append(np.asarray(vectors[0, :], np.float64) ** 2)
    return Quadrature(np.array(nodes), np.array(weights))


def density(q: Quadrature, points: int = 400, sigma_fraction: float = 0.01) -> dict:
    """φ on a grid spanning the nodes (plus a margin): Σ weights × Gaussian(σ), averaged over probes.

    σ is `sigma_fraction` of the nodes' range: wide enough to smooth the discrete nodes,
    narrow enough to keep an isolated outlier (the top eigenvalue) visible as a bump. It is
    returned with the curve ({"eigenvalue", "density", "sigma"}): at this width the cluster at
    zero spills onto the negative side, which `negative_density` shows on its own scale.
    """
    lo, hi = float(q.nodes.min()), float(q.nodes.max())
    span = max(hi - lo, 1e-12 * max(abs(lo), abs(hi), 1.0))
    return _smoothed(q.nodes, q.weights, lo, hi, sigma_fraction * span, points)


def negative_density(q: Quadrature, zero_tol: float, points: int = 200, sigma_fraction: float = 0.01) -> dict | None:
    """φ for λ < −zero_tol alone: only the nodes below −zero_tol, each smoothed with σ =
    `sigma_fraction` × |lowest node| (the negative side's own scale), on a grid ending at −zero_tol.

    Weights are the whole spectrum's, so its integral is the negative fraction. None when no
    node is negative.
    """
    negative = q.nodes < -zero_tol
    if not negative.any():
        return None
    lo = float(q.nodes.min())
    sigma = sigma_fraction * abs(lo)
    return _smoothed(q.nodes, np.where(negative, q.weights, 0.0), lo, -zero_tol, sigma, points, right=-zero_tol)


def _smoothed(nodes, weights, lo, hi, sigma, points, right=None) -> dict:
    """Σ_j weights_j N(t; nodes_j, σ²) averaged over probes, on a grid from lo − 5σ to `right` (or hi + 5σ)."""
    grid = np.linspace(lo - 5 * sigma, hi + 5 * sigma if right is None else right, points)
    kernel = np.exp(-((grid[None, None, :] - nodes[..., None]) ** 2) / (2 * sigma**2)) / (sigma * np.sqrt(2 * np.pi))
    phi = np.einsum("pj,pjg->g", weights, kernel) / len(nodes)
    return {"eigenvalue": grid.tolist(), "density": phi.tolist(), "sigma": float(sigma)}


def shares(q: Quadrature, zero_tol: float) -> dict[str, float]:
    """From the quadrature, with |λ| ≤ zero_tol counted as zero: the fractions of eigenvalues below
    −zero_tol (`negative_fraction`, with its standard error over probes) and within ±zero_tol
    (`zero_fraction`), and the negative eigenvalues' share of the absolute mass,
    Σ_{λ<−tol} |λ| / Σ |λ| (≈ 0 near a minimum, large at a saddle).

    Without the tolerance the cluster at zero (exact zeros of always-black pixels and roundoff
    around them, often most of the spectrum) would count as negative or positive by the sign of
    a rounding error.
    """
    negative, zero = q.nodes < -zero_tol, np.abs(q.nodes) <= zero_tol
    w = q.weights / q.weights.sum(axis=1, keepdims=True)
    per_probe = (w * negative).sum(axis=1)
    mass = w * np.abs(q.nodes)
    total = mass.sum()
    return {
        "negative_fraction": float(per_probe.mean()),
        "negative_fraction_stderr": float(per_probe.std(ddof=1) / np.sqrt(len(w))) if len(w) > 1 else 0.0,
        "zero_fraction": float((w * zero).sum(axis=1).mean()),
        "negative_mass_ratio": float((mass * negative).sum() / total) if total > 0 else 0.0,
    }
