"""Each optimizer's first steps on the tiny problem against its textbook update, written out by hand."""

import math

import jax
import numpy as np
import pytest

from optlab import config
from optlab.core import optimizers
from optlab.errors import ConfigError
from optlab.experiments import tiny as tiny_experiment
from optlab.runs import resolve
from tiny_by_hand import grad, hessian

STEPS = 4
START = (0.5, 1.5)


def gd(eta):
    def update(w, g, s, t):
        return w - eta * g, s
    return update


def momentum(eta, alpha):  # the lecture's form: v ← α v − η g, θ ← θ + v
    def update(w, g, v, t):
        v = alpha * v - eta * g
        return w + v, v
    return update


def nesterov(eta, alpha):  # optax's form of Nesterov: t ← g + α t; θ ← θ − η (g + α t)
    def update(w, g, tr, t):
        tr = g + alpha * tr
        return w - eta * (g + alpha * tr), tr
    return update


def adagrad(eta, initial=0.1, eps=1e-7):
    def update(w, g, s, t):
        s = (initial if t == 0 else s) + g**2
        return w - eta * g / np.sqrt(s + eps), s
    return update


def adadelta(eta, rho=0.9, eps=1e-6):
    def update(w, g, s, t):
        eg, ex = s if t else (0.0, 0.0)
        eg = rho * eg + (1 - rho) * g**2
        dx = np.sqrt(ex + eps) / np.sqrt(eg + eps) * g
        ex = rho * ex + (1 - rho) * dx**2
        return w - eta * dx, (eg, ex)
    return update


def rmsprop(eta, decay=0.9, eps=1e-8):
    def update(w, g, nu, t):
        nu = decay * nu + (1 - decay) * g**2
        return w - eta * g / np.sqrt(nu + eps), nu
    return update


def adam(eta, b1=0.9, b2=0.999, eps=1e-8):
    def update(w, g, s, t):
        m, v = s if t else (0.0, 0.0)
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g**2
        m_hat, v_hat = m / (1 - b1 ** (t + 1)), v / (1 - b2 ** (t + 1))
        return w - eta * m_hat / (np.sqrt(v_hat) + eps), (m, v)
    return update


def newton(eta):
    def update(w, g, s, t):
        return w - eta * np.linalg.solve(hessian(w), g), s
    return update


def saddle_free_newton(eta):  # θ ← θ − η Q |Λ|⁻¹ Qᵀ g for H = Q Λ Qᵀ
    def update(w, g, s, t):
        values, q = np.linalg.eigh(hessian(w))
        return w - eta * q @ ((q.T @ g) / np.abs(values)), s
    return update


def loss(w):
    return (w[0] * w[1] - 1.5) ** 2 + 0.04 * (w[0] ** 2 + w[1] ** 2)


def hessian_free(eta, initial_damping=1.0):
    """Martens' step on the tiny problem (no network: B = H, M = (g ⊙ g + λ)^¾): preconditioned CG on
    (H + λI) x = −g from 0.95 × the last step's final iterate; in 2-D its second iterate is the exact
    solve. Backtracking keeps the first iterate if C(w + ηx₁) < C(w + ηx₂). λ × 2/3 when ρ > 3/4,
    × 3/2 when ρ < 1/4, ρ = (C(w + s) − C(w)) / (gᵀs + ½ sᵀHs); the step is kept only if C drops."""
    def update(w, g, state, t):
        damping, previous = (initial_damping, np.zeros(2)) if t == 0 else state
        a = hessian(w) + damping * np.eye(2)
        assert np.all(np.linalg.eigvalsh(a) > 0)  # CG meets no negative curvature
        m_inv = 1 / (g * g + damping) ** 0.75
        x0 = 0.95 * previous
        r = -g - a @ x0
        p = m_inv * r
        x1 = x0 + (r @ (m_inv * r)) / (p @ a @ p) * p
        x2 = np.linalg.solve(a, -g)  # PCG's second iterate, exactly
        s = eta * (x1 if loss(w + eta * x1) < loss(w + eta * x2) else x2)
        model = g @ s + 0.5 * s @ hessian(w) @ s
        rho = (loss(w + s) - loss(w)) / model if model < 0 else -math.inf
        new_damping = damping * 2 / 3 if rho > 0.75 else damping * 1.5 if rho < 0.25 else damping
        return (w + s if loss(w + s) < loss(w) else w), (min(max(new_damping, 1e-6), 1e6), x2)
    return update


CASES = {
    "gd": ({"lr": 0.2}, gd(0.2)),
    "momentum": ({"lr": 0.05, "momentum": 0.8}, momentum(0.05, 0.8)),
    "nesterov": ({"lr": 0.05, "momentum": 0.8}, nesterov(0.05, 0.8)),
    "adagrad": ({"lr": 0.3}, adagrad(0.3)),
    "adadelta": ({"lr": 1.0}, adadelta(1.0)),
    "rmsprop": ({"lr": 0.01}, rmsprop(0.01)),
    "adam": ({"lr": 0.1}, adam(0.1)),
    "newton": ({"lr": 0.7}, newton(0.7)),
    # from a point where H is indefinite, so that |H| ≠ H from the first step
    "saddle-free-newton": ({"lr": 0.5, "start": [-0.5, 2.0]}, saddle_free_newton(0.5)),
    "hessian-free": ({"lr": 1.0}, hessian_free(1.0)),
}


def by_hand(update, start=START, steps=STEPS):
    w, state, path = np.array(start), 0.0, [np.array(start)]
    for t in range(steps):
        w, state = update(w, grad(w), state, t)
        path.append(w)
    return np.array(path)


@pytest.mark.parametrize("name", sorted(CASES))
def test_first_steps_match_the_textbook_update(name):
    settings, update = CASES[name]
    cfg = resolve.resolve([config.Layer(
        {"experiment": "tiny", "optimizer": name, "steps": STEPS, "start": list(START), **settings}, "flag")])
    history, *_ = tiny_experiment.simulate(cfg)
    start = settings.get("start", START)
    np.testing.assert_allclose(history["params"], by_hand(update, start), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(history["lr"][:-1], settings["lr"], rtol=1e-15)
    np.testing.assert_allclose(history["grad_norm"][0], np.linalg.norm(grad(start)), rtol=1e-12)


def check_every_registered_optimizer_has_a_case() -> None:
    """Raise AssertionError naming each registered optimizer that has no hand-written case in CASES."""
    names = optimizers.OPTIMIZERS.names()
    # kfac needs a network's layers: checked by hand in test_hessian_free_kfac.py instead
    missing = sorted(set(names) - set(CASES) - {n for n in names if optimizers.OPTIMIZERS[n].needs_network})
    if missing:
        raise AssertionError(f"registered optimizers without a hand-written case in CASES: {', '.join(missing)}")


def test_every_registered_optimizer_is_checked_by_hand():
    check_every_registered_optimizer_has_a_case()
    assert set(CASES) <= set(optimizers.OPTIMIZERS.names())
    assert {"gd", "momentum", "nesterov", "newton", "adagrad", "adadelta", "rmsprop", "adam"} <= set(CASES)


def test_the_completeness_check_names_an_optimizer_registered_without_a_case():
    name = "zz-unchecked-dummy"
    assert name not in optimizers.OPTIMIZERS.names()
    # gd's own spec under another name: the check looks at names only, never builds it
    optimizers.OPTIMIZERS.register(name, "a dummy with no hand-written case", optimizers.OPTIMIZERS["gd"])
    try:
        assert name in optimizers.OPTIMIZERS.names()
        with pytest.raises(AssertionError, match=f"without a hand-written case in CASES: {name}$"):
            check_every_registered_optimizer_has_a_case()
    finally:
        # The registry has no public removal yet: take the dummy out of its private dict so that
        # no later test sees it.
        del optimizers.OPTIMIZERS._entries[name]
    assert name not in optimizers.OPTIMIZERS.names()
    check_every_registered_optimizer_has_a_case()  # without the dummy the check passes again


def test_schedules_reach_the_optimizer():
    cfg = resolve.resolve([config.Layer(
        {"experiment": "tiny", "optimizer": "gd", "lr": 0.2, "lr_schedule": "anneal", "steps": 4, "start": list(START)},
        "flag")])
    history, *_ = tiny_experiment.simulate(cfg)
    # anneal, half the run: 2 steps at η, then linear decay η → 0 over the last 2 steps
    np.testing.assert_allclose(history["lr"][:-1], [0.2, 0.2, 0.2, 0.1])
    w = np.array(START)
    for eta in (0.2, 0.2, 0.2, 0.1):
        w = w - eta * grad(w)
    np.testing.assert_allclose(history["params"][-1], w, rtol=1e-12)


def test_dense_hessian_methods_refuse_large_problems_naming_size_and_memory():
    optimizers.check_size("newton", 4096, 8)  # fits
    optimizers.check_size("adam", 10**9, 4)  # first-order methods never refuse
    with pytest.raises(ConfigError) as error:
        optimizers.check_size("newton", 229_735, 4)
    message = str(error.value)
    assert "229,735 parameters" in message
    assert "211.1 GB" in message  # 229,735² × 4 bytes


def test_newton_transformation_takes_the_loss_through_value_fn():
    with jax.enable_x64(True):
        loss = lambda w: (w[0] * w[1] - 1.5) ** 2 + 0.04 * (w[0] ** 2 + w[1] ** 2)  # noqa: E731
        w = jax.numpy.asarray(START)
        tx = optimizers.newton(1.0)
        updates, _ = tx.update(jax.grad(loss)(w), tx.init(w), w, value_fn=loss)
        np.testing.assert_allclose(np.asarray(updates), -np.linalg.solve(hessian(START), grad(START)), rtol=1e-12)
        assert math.isfinite(float(loss(w + updates)))
