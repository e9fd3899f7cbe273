r"""Exercise ``wolfe_conditions(phi0, dphi0, phi_a, dphi_a, alpha, c1=1e-4, c2=0.9)`` (section 02).

The strong Wolfe conditions (3.7) of Nocedal & Wright for a trial step: the answer is the pair
``(sufficient_decrease, curvature)``. Cases with arguments the reference refuses (``dphi0 ≥ 0``,
``alpha ≤ 0``, constants outside ``0 < c1 < c2 < 1``) expect a ``ValueError``
(:class:`~secondorder.exercises.bfgs_inverse_update.RaisesOnInvalidInput`).

Booleans in the answer
----------------------
``numpy.bool_`` and 0-d boolean tensors behave like ``bool`` wherever a caller uses the answer (``if``,
``and``, unpacking), so they are accepted as such. In the autograder's process a ``numpy.bool_`` arrives
described by its type and ``repr`` (``child_runner._plain``); :func:`as_bool` reads it back from there.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..linesearch import wolfe_conditions
from .base import Case
from .bfgs_inverse_update import RaisesOnInvalidInput
from .generators import draw_random, log_uniform, power_of_two, seed_of

_NAMES = ("sufficient decrease", "curvature")


def as_bool(value) -> bool | None:
    """``value`` as a Python bool when it is one in all but type (numpy or 0-d boolean tensor), else None."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, torch.Tensor) and value.dtype == torch.bool and value.numel() == 1 and value.ndim == 0:
        return bool(value)
    if isinstance(value, dict) and value.get("__unsupported_type__") in ("bool", "bool_"):
        text = str(value.get("repr", ""))
        if text in ("True", "np.True_", "False", "np.False_"):
            return "True" in text
    return None


def _pair_of_bools(out) -> tuple[bool, bool]:
    """``out`` as ``(bool, bool)``, or AssertionError saying what it is instead."""
    if as_bool(out) is not None:
        raise AssertionError("returned a single bool; return the pair (sufficient_decrease, curvature) so the "
                             "line search can tell a step that is too long from one that is too short")
    if out is None:
        raise AssertionError("returned None (did the function forget to return?)")
    if not isinstance(out, tuple | list) or len(out) != 2:
        what = f"{type(out).__name__} of length {len(out)}" if isinstance(out, tuple | list) else type(out).__name__
        raise AssertionError(f"should return a tuple of two bools (sufficient_decrease, curvature), got {what}")
    values = tuple(as_bool(v) for v in out)
    for name, raw, value in zip(_NAMES, out, values):
        if value is None:
            raise AssertionError(f"the {name} result should be a bool, got {type(raw).__name__} "
                                 f"{raw!r:.40}; convert with bool(...)")
    return values


def _rescaled(args: tuple, rng, exact: bool) -> tuple:
    r"""``args`` for :math:`a\,\varphi(t \alpha')` in the step :math:`\alpha' = \alpha / t`, drawn :math:`a, t > 0`.

    :math:`\varphi \to a\varphi` and :math:`\alpha \to \alpha/t` multiply the slopes by :math:`a t`; both
    conditions (and every invalid argument: a sign, a zero, the constants) are invariant under this map.
    ``exact``: :math:`a, t` are powers of two (up to :math:`2^{\pm 30}`), so that every product in the
    conditions is exact and an equality stays an equality; otherwise they are any factors in [1/8, 8]
    (no boundary to keep, and far from overflow at the large and tiny scales of the cases).
    """
    if exact:
        a, t = power_of_two(rng, -30, 30), power_of_two(rng, -30, 30)
    else:
        a, t = log_uniform(rng, 0.125, 8.0), log_uniform(rng, 0.125, 8.0)
    phi0, dphi0, phi_a, dphi_a, alpha, *constants = args
    return (a * phi0, a * t * dphi0, a * phi_a, a * t * dphi_a, alpha / t, *constants)


def _on_the_boundary(rng, slope: float) -> tuple:
    r"""Drawn ``(φ(0), φ'(0), φ(α), φ'(α), α, c1, c2)`` with both conditions holding with equality.

    φ(α) = φ(0) + c1 α φ'(0) and φ'(α) = ``slope`` · c2 |φ'(0)| (``slope`` = ±1), every number a dyadic
    fraction of a few bits, so that the products and the sum are exact in any order of evaluation.
    """
    i, j = sorted(rng.sample(range(1, 64), 2))
    c1, c2 = i / 64, j / 64                                   # 0 < c1 < c2 < 1
    alpha, dphi0 = rng.randint(1, 64) / 16, -rng.randint(1, 256) / 16
    phi0 = rng.randint(-2**16, 2**16) / 256
    return phi0, dphi0, phi0 + c1 * alpha * dphi0, slope * c2 * abs(dphi0), alpha, c1, c2


def _case(id, group, *args, hidden=True, tensors=False, exact=False, boundary=None):
    """A case from literal arguments; a hidden one is rescaled under a draw (:func:`_rescaled`).

    ``boundary`` (±1, the sign of φ'(α)): under a draw, the numbers themselves are drawn on the
    boundary of both conditions (:func:`_on_the_boundary`) before the exact rescaling.
    """
    def make():
        rng = draw_random(seed_of(f"wolfe/{id}")) if hidden else None
        if rng is None:
            return _as_args(args, tensors)
        drawn_args = args if boundary is None else _on_the_boundary(rng, boundary)
        return _as_args(_rescaled(drawn_args, rng, exact or boundary is not None), tensors)
    return Case(id, group, make, hidden=hidden)


def _as_args(args: tuple, tensors: bool) -> tuple:
    if tensors:
        return tuple(torch.tensor(a, dtype=torch.float64) for a in args[:5]) + tuple(args[5:])
    return tuple(args)


class WolfeConditions(RaisesOnInvalidInput):
    """``wolfe_conditions(...)``: (φ(α) ≤ φ(0) + c1 α φ'(0), |φ'(α)| ≤ c2 |φ'(0)|); ValueError on bad input."""

    name = "wolfe_conditions"
    reference = staticmethod(wolfe_conditions)
    arg_names = ("phi0", "dphi0", "phi_a", "dphi_a", "alpha", "c1", "c2")

    def catalogue(self):
        inf = math.inf
        return [
            # (phi0, dphi0, phi_a, dphi_a, alpha[, c1, c2])
            _case("both-hold", "strong Wolfe", 1.0, -2.0, 0.2, -0.1, 0.5, hidden=False),
            _case("too-long", "sufficient decrease", 1.0, -2.0, 1.1, 3.0, 2.0, hidden=False),
            _case("overshoot/slope-too-positive", "strong curvature", 1.0, -2.0, 0.3, 1.9, 0.5, hidden=False),
            _case("invalid/dphi0>0", "valid input", 1.0, 0.5, 0.9, 0.1, 0.1, hidden=False),
            # visible: one per common mistake, with other numbers than the hidden ones below
            _case("too-short/slope-negative", "strong curvature", 1.0, -2.0, 0.7, -1.9, 0.1, hidden=False),
            _case("alpha-large/c1=0.2", "sufficient decrease", 1.0, -1.0, 0.3, 0.1, 5.0, 0.2, 0.9, hidden=False),
            _case("alpha-small/c1=0.5", "sufficient decrease", 1.0, -2.0, 0.985, -1.0, 0.01, 0.5, 0.9, hidden=False),
            _case("just-above-phi0", "sufficient decrease", 1.0, -2.0, 1.00005, 0.1, 0.5, hidden=False),
            _case("boundary/curvature-equal", "≤, not <", 1.0, -2.0, 0.2, 1.0, 1.0, 0.25, 0.5, hidden=False),
            _case("invalid/alpha=-2", "valid input", 1.0, -2.0, 0.5, -1.0, -2.0, hidden=False),
            _case("invalid/c1>c2/0.8>0.3", "valid input", 1.0, -2.0, 0.5, 0.1, 1.0, 0.8, 0.3, hidden=False),
            # hidden: each pins down one misconception
            _case("too-short/slope-still-steep", "strong curvature", 1.0, -2.0, 0.9, -1.95, 0.05),
            _case("uses-c1-not-c2", "constants", 1.0, -1.0, 0.5, 0.5, 1.0),
            _case("custom-constants", "constants", 1.0, -1.0, 0.7, 0.2, 1.0, 0.25, 0.5),
            _case("custom-constants/curvature-fails", "constants", 1.0, -1.0, 0.7, 0.6, 1.0, 0.25, 0.5),
            _case("alpha-small", "sufficient decrease", 1.0, -1.0, 0.99, -0.5, 0.01, 0.5, 0.9),
            _case("alpha-large", "sufficient decrease", 1.0, -1.0, 0.5, 0.1, 10.0, 0.1, 0.9),
            _case("barely-above-phi0", "sufficient decrease", 1.0, -1.0, 1.00005, 0.1, 1.0),
            _case("boundary/equalities", "≤, not <", 1.0, -1.0, 0.75, 0.75, 0.5, 0.5, 0.75, boundary=1.0),
            _case("boundary/negative-slope", "≤, not <", 1.0, -1.0, 0.75, -0.75, 0.5, 0.5, 0.75, boundary=-1.0),
            _case("large-scale", "scale", 1e8, -1e6, 1e8 - 50.0, 2e5, 1e-3),
            _case("tiny-scale", "scale", 1e-10, -1e-12, 0.0, -1e-13, 1.0),
            _case("non-finite-trial", "sufficient decrease", 1.0, -2.0, inf, inf, 1.0),
            _case("tensors/both-hold", "0-d tensors", 1.0, -2.0, 0.2, -0.1, 0.5, tensors=True),
            _case("tensors/too-long", "0-d tensors", 1.0, -2.0, 1.1, 3.0, 2.0, tensors=True),
            _case("invalid/dphi0=0", "valid input", 1.0, 0.0, 0.9, 0.1, 0.1),
            _case("invalid/dphi0>0/tensors", "valid input", 1.0, 0.5, 0.9, 0.1, 0.1, tensors=True),
            _case("invalid/alpha=0", "valid input", 1.0, -1.0, 1.0, -1.0, 0.0),
            _case("invalid/alpha<0", "valid input", 1.0, -1.0, 2.0, -1.0, -0.5),
            _case("invalid/c1>c2", "valid input", 1.0, -1.0, 0.5, 0.1, 1.0, 0.9, 0.1),
            _case("invalid/c1=c2", "valid input", 1.0, -1.0, 0.5, 0.1, 1.0, 0.5, 0.5),
            _case("invalid/c2=1", "valid input", 1.0, -1.0, 0.5, 0.1, 1.0, 1e-4, 1.0),
            _case("invalid/c1=0", "valid input", 1.0, -1.0, 0.5, 0.1, 1.0, 0.0, 0.9),
        ]

    def invalid_reason(self, args):
        try:
            wolfe_conditions(*args)
        except ValueError as exc:
            return str(exc)
        return None

    def compare(self, case, args, out, expected):
        got = _pair_of_bools(out)
        if got == expected:
            return
        phi0, dphi0, phi_a, dphi_a, alpha, c1, c2 = _floats(args)
        # 12 significant digits and the difference: at φ(0) = 1e8 a bound 1e8 − 0.1 and a value 1e8 − 50 differ
        # in the 9th digit, which the default 6 would hide.
        if got[0] != expected[0]:
            bound = phi0 + c1 * alpha * dphi0
            raise AssertionError(
                f"sufficient decrease should be {expected[0]}: φ(α) = {phi_a:.12g} and φ(0) + c1·α·φ'(0) = "
                f"{phi0:.12g} + {c1:g}·{alpha:g}·({dphi0:.12g}) = {bound:.12g}, so φ(α) − (φ(0) + c1·α·φ'(0)) = "
                f"{phi_a - bound:.3g}")
        bound = c2 * abs(dphi0)
        raise AssertionError(
            f"curvature should be {expected[1]}: the strong condition compares |φ'(α)| = {abs(dphi_a):.12g} "
            f"with c2·|φ'(0)| = {c2:g}·{abs(dphi0):.12g} = {bound:.12g} (difference {abs(dphi_a) - bound:.3g})")

    def diagnose(self, case, args, out):
        try:
            got = _pair_of_bools(out)
        except AssertionError:
            return None
        phi0, dphi0, phi_a, dphi_a, alpha, c1, c2 = _floats(args)
        armijo = phi_a <= phi0 + c1 * alpha * dphi0
        strong = abs(dphi_a) <= c2 * abs(dphi0)
        variants = [
            ("the inequalities should be ≤, not < (a step exactly on the bound is acceptable)",
             (phi_a < phi0 + c1 * alpha * dphi0, abs(dphi_a) < c2 * abs(dphi0))),
            ("the weak curvature condition φ'(α) ≥ c2·φ'(0) was used; the strong one bounds |φ'(α)| ≤ c2·|φ'(0)|, "
             "which also rejects steps that overshoot to a steep upward slope",
             (armijo, dphi_a >= c2 * dphi0)),
            ("c1 and c2 look swapped: c1 (small, 1e-4) goes with sufficient decrease, c2 (0.9) with curvature",
             (phi_a <= phi0 + c2 * alpha * dphi0, abs(dphi_a) <= c1 * abs(dphi0))),
            ("the step length α is missing from sufficient decrease: φ(α) ≤ φ(0) + c1·α·φ'(0)",
             (phi_a <= phi0 + c1 * dphi0, strong)),
            ("the sign of φ'(0) is off: φ'(0) < 0, so φ(0) + c1·α·φ'(0) lies *below* φ(0) (no minus sign or abs "
             "in front of the c1 term)", (phi_a <= phi0 - c1 * alpha * dphi0, strong)),
            ("the sign of φ'(0) is off in the curvature condition: compare |φ'(α)| with c2·|φ'(0)| = −c2·φ'(0)",
             (armijo, abs(dphi_a) <= c2 * dphi0)),
            ("the absolute value of φ'(α) is missing: a slope −|φ'(0)| that is still steep must fail too",
             (armijo, dphi_a <= c2 * abs(dphi0))),
            ("the two results are in the wrong order: return (sufficient_decrease, curvature)", (strong, armijo)),
        ]
        expected = (armijo, strong)
        if got == expected:
            return None
        matches = list(dict.fromkeys(message for message, variant in variants
                                     if tuple(bool(v) for v in variant) == got))
        if len(matches) > 1:          # this case cannot tell them apart: name each, not just the first
            return "this answer fits more than one mistake: " + "; or ".join(
                f"({i}) {message}" for i, message in enumerate(matches, 1))
        return matches[0] if matches else None

    def diagnose_refused(self, case, args, error):
        phi0, dphi0, phi_a, dphi_a, alpha, c1, c2 = _floats(args)
        message = ("raised ValueError for valid arguments (φ'(0) < 0, α > 0 and 0 < c1 < c2 < 1 all hold): raise only "
                   "for those three, and answer every other case with the pair of bools")
        if not (math.isfinite(phi_a) and math.isfinite(dphi_a)):
            return message + (" — a trial step where φ(α) or φ'(α) is infinite or NaN is valid input: it fails the "
                              "conditions, and the line search then shortens the step")
        return message

    def diagnose_invalid(self, case, args, out):
        phi0, dphi0, phi_a, dphi_a, alpha, c1, c2 = _floats(args)
        if not dphi0 < 0:
            return "dphi0 ≥ 0 means d is not a descent direction: check dphi0 < 0 and raise ValueError otherwise"
        if not alpha > 0:
            return "a step length must be positive: check alpha > 0 and raise ValueError otherwise"
        return "the constants must satisfy 0 < c1 < c2 < 1: check them and raise ValueError otherwise"


def _floats(args) -> tuple[float, ...]:
    """``(phi0, dphi0, phi_a, dphi_a, alpha, c1, c2)`` as floats, with the defaults filled in."""
    values = list(args) + [1e-4, 0.9][len(args) - 5:]
    return tuple(float(v) for v in values)
