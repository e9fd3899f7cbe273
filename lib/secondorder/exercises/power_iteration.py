r"""Exercise ``power_iteration(matvec, v0, iters=100, tol=1e-6)`` (section 05): the dominant eigenpair.

The student's function must follow :func:`secondorder.spectral.power_iteration` step for step:
:math:`v = v_0/\|v_0\|`; then, for at most ``iters`` products, :math:`w = A v`,
:math:`\lambda = v^\top w`, stop when :math:`|\lambda - \lambda_{\text{prev}}| \le
\mathrm{tol}\,|\lambda|` (or :math:`w = 0`), else :math:`v \leftarrow w/\|w\|`; return
:math:`(\lambda, v)` with :math:`\lambda = v^\top A v` for the returned :math:`v`.

The operator is a :class:`~secondorder.exercises.base.SourceFunction` that counts its calls, so the
checks see the number of products: exactly as many as the reference makes (one more is forgiven), which
catches a second product per iteration, an ignored ``tol`` or ``iters``, and a loop that stops at once.
Every case keeps its stopping test far from the boundary (:func:`stop_margin`), so any correct
arrangement of the arithmetic stops at the same iteration as the reference.
"""

from __future__ import annotations

import math

import torch

from ..spectral import power_iteration
from .base import Case, Exercise, SourceFunction
from .generators import current_draw, draw_random, generator, random_vector

#: Tolerances on (eigenvalue, eigenvector) relative to the reference.
RTOL = {torch.float64: (1e-10, 1e-8), torch.float32: (1e-5, 1e-4)}
_DEFAULT_ITERS, _DEFAULT_TOL = 100, 1e-6


def _gen(seed: int) -> torch.Generator:
    return generator(6000 + seed)


def _orthogonal(n: int, seed: int) -> torch.Tensor:
    Q, R = torch.linalg.qr(torch.randn(n, n, generator=_gen(seed), dtype=torch.float64))
    return Q * torch.sign(torch.diagonal(R))  # (n, n)


#: Under a draw, a case is drawn again until its stopping test is this far from the boundary (see
#: :func:`stop_margin`); the catalogue as written keeps more than 0.02 (``tests/test_sharpness.py``).
DRAWN_MARGIN = 0.03


_ACCEPTED: dict[tuple, int] = {}      # (draw, case key, seed) -> the seed whose inputs were accepted


def _far_from_boundary(build, seed: int, key: tuple) -> tuple:
    """``build(seed)``; under a draw, built again from other seeds until :func:`stop_margin` > :data:`DRAWN_MARGIN`.

    A draw can put the test |λ − λ_prev| ≤ tol·|λ| within rounding of firing one step earlier or later,
    where a correct answer that arranges the arithmetic otherwise would make another number of products.
    ``key`` names the case's other parameters: the accepted seed is remembered per draw, so the search
    (one reference run per try) is made once, not at every ``make_args``.
    """
    draw = current_draw()
    if draw is None:
        return build(seed)
    if (draw, key, seed) in _ACCEPTED:
        return build(_ACCEPTED[draw, key, seed])
    for attempt in range(100):
        args = build(seed + 100_000 * attempt)
        if stop_margin(*args) > DRAWN_MARGIN:
            if len(_ACCEPTED) > 100_000:
                _ACCEPTED.clear()
            _ACCEPTED[draw, key, seed] = seed + 100_000 * attempt
            return args
    raise RuntimeError(f"no draw of case seed {seed} stops {DRAWN_MARGIN} away from its boundary")


def _dense(spectrum, seed: int, dtype=torch.float64, v0_scale: float = 1.0, options=(), v0=None):
    """``(matvec, v0, *options)`` for A = Q diag(spectrum) Qᵀ with a random orthogonal Q."""
    key = ("dense", tuple(float(x) for x in spectrum), dtype, v0_scale, tuple(options),
           v0 if v0 is None or isinstance(v0, int) else tuple(torch.as_tensor(v0).tolist()))
    return _far_from_boundary(lambda s: _dense_once(spectrum, s, dtype, v0_scale, options, v0), seed, key)


def _dense_once(spectrum, seed: int, dtype, v0_scale: float, options, v0):
    lam = torch.as_tensor(spectrum, dtype=torch.float64)
    n = lam.numel()
    Q = _orthogonal(n, seed)
    A = (Q * lam) @ Q.T
    A = 0.5 * (A + A.T)
    matvec = SourceFunction("lambda v: A @ v", {"A": A.to(dtype)}, label=f"A @ v (n = {n})")
    if v0 is None:
        v0 = v0_scale * random_vector(n, 50 + seed)
    elif isinstance(v0, int):  # an exact eigenvector: column v0 of Q
        v0 = Q[:, v0].clone()
    return (matvec, v0.to(dtype), *options)


def _low_rank(n: int, k: int, seed: int, dtype=torch.float64, options=()):
    """A = diag(d) + U Uᵀ applied in O(nk): the operator never exists as a matrix."""
    return _far_from_boundary(lambda s: _low_rank_once(n, k, s, dtype, options), seed,
                              ("low rank", n, k, dtype, tuple(options)))


def _low_rank_once(n: int, k: int, seed: int, dtype, options):
    g = _gen(seed)
    d = torch.rand(n, generator=g, dtype=torch.float64)
    U = torch.randn(n, k, generator=g, dtype=torch.float64) * torch.tensor([3.0, 2.0, 1.5][:k]) / math.sqrt(n)
    matvec = SourceFunction("lambda v: d * v + U @ (U.T @ v)", {"d": d.to(dtype), "U": U.to(dtype)},
                            label=f"diag(d) + U Uᵀ (n = {n:,})")
    return (matvec, random_vector(n, 70 + seed).to(dtype), *options)


def _null_start(d, v0, seed=0):
    """v0 in the null space of A = diag(d): A v0 = 0 exactly, so λ = 0 at once and w/‖w‖ is 0/0.

    Under a draw: a drawn size, drawn positions of the zeros of d, drawn nonzero entries elsewhere and
    a random v0 supported on the zeros; a rotated basis would leave A v0 at rounding level, not 0.
    """
    rng = draw_random(9600 + seed)
    if rng is not None:
        n = rng.randint(3, 9)
        zeros = set(rng.sample(range(n), rng.randint(1, n - 1)))
        d = [0.0 if i in zeros else rng.choice((-1.0, 1.0)) * rng.uniform(0.5, 4.0) for i in range(n)]
        v0 = [rng.choice((-1.0, 1.0)) * rng.uniform(0.5, 3.0) if i in zeros else 0.0 for i in range(n)]
    d = torch.tensor(d, dtype=torch.float64)
    label = "diag(" + ", ".join(f"{x:g}".replace("-", "−") for x in d.tolist()) + ") v"
    matvec = SourceFunction("lambda v: d * v", {"d": d}, label=label)
    return matvec, torch.tensor(v0, dtype=torch.float64)


def _options(args) -> tuple[int, float]:
    iters = args[2] if len(args) > 2 else _DEFAULT_ITERS
    tol = args[3] if len(args) > 3 else _DEFAULT_TOL
    return iters, tol


def _raw(matvec):
    return matvec.fn if isinstance(matvec, SourceFunction) else matvec


def trace(matvec, v0, iters=_DEFAULT_ITERS, tol=_DEFAULT_TOL):
    """The reference run in float64 with its history: ``[(λ_i, v_i)]`` for every product made."""
    A = _raw(matvec)
    v = v0.double() / v0.double().norm()
    history, lam_prev = [], None
    for i in range(iters):
        w = A(v.to(v0.dtype)).double()
        lam = float(v @ w)
        history.append((lam, v))
        w_norm = float(w.norm())
        if w_norm == 0.0 or (lam_prev is not None and abs(lam - lam_prev) <= tol * abs(lam)):
            break
        lam_prev = lam
        if i + 1 < iters:
            v = w / w_norm
    return history


def stop_margin(matvec, v0, iters=_DEFAULT_ITERS, tol=_DEFAULT_TOL) -> float:
    r"""How far the stopping test is from its boundary: the smallest :math:`|\log(r)|` over the run.

    :math:`r_i = |\lambda_i - \lambda_{i-1}| / (\mathrm{tol}\,|\lambda_i|)`; the test fires at
    :math:`r \le 1`. A margin of 0.1 means every :math:`r` is at least 10 % away from 1, far more than
    rounding can move it. With ``tol == 0`` the test fires when λ repeats exactly, which rounding decides:
    the margin is 0 when successive λ come within 1000 ε_mach of each other, infinite otherwise.
    """
    history = trace(matvec, v0, iters, tol)
    margins = [math.inf]
    for (a, _), (b, _) in zip(history, history[1:]):
        if tol > 0 and b != 0:
            r = abs(b - a) / (tol * abs(b))
            margins.append(abs(math.log(r)) if r > 0 else math.inf)
        elif tol == 0 and abs(b - a) <= 1e3 * torch.finfo(torch.float64).eps * abs(b):
            margins.append(0.0)
    return min(margins)


def _run(matvec, v0, iters, tol, rayleigh="vAv", normalize=True, test="relative", pair="current",
         absolute_value=False, stop_first=False):
    """Power iteration with one knob per typical mistake, in float64; returns (λ, v, products).

    ``test``: ``"relative"`` (right), ``"absolute"`` (no |λ| factor), ``"signed"`` (tol·λ without |·|),
    ``"vector"`` (stop when ‖w/‖w‖ − v‖ ≤ tol) or ``"none"``.
    """
    A = _raw(matvec)
    v = v0.double() / v0.double().norm() if normalize else v0.double()
    lam_prev, lam, products = None, None, 0
    for i in range(iters):
        w = A(v.to(v0.dtype)).double()
        products += 1
        lam = {"vAv": v @ w, "norm": w.norm(), "vAv/vv": (v @ w) / (v @ v), "vAv/|v|": (v @ w) / v.norm()}[rayleigh]
        lam = float(lam)
        if absolute_value:
            lam = abs(lam)
        if test == "vector":
            converged = float((w / w.norm() - v / v.norm()).norm()) <= tol
        else:
            converged = lam_prev is not None and {
                "relative": abs(lam - lam_prev) <= tol * abs(lam),
                "absolute": abs(lam - lam_prev) <= tol,
                "signed": abs(lam - lam_prev) <= tol * lam,
                "none": False}[test]
        if stop_first or converged or float(w.norm()) == 0.0:
            break
        lam_prev = lam
        if pair == "ahead" or i + 1 < iters:
            v = w / w.norm() if normalize else w
    return lam, v, products


class PowerIteration(Exercise):
    """``power_iteration(matvec, v0, iters=100, tol=1e-6)``: (λ, v) of largest |λ|, one product per step."""

    name = "power_iteration"
    reference = staticmethod(power_iteration)
    arg_names = ("matvec", "v0", "iters", "tol")

    def __init__(self):
        self._calls = None

    def catalogue(self):
        f32 = torch.float32
        return [
            Case("dominant λ = 5/n=5", "dominant eigenpair", lambda: _dense([5.0, 2.0, 1.0, -1.0, 0.5], 0)),
            Case("negative dominant λ = −4/n=6", "sign of λ", lambda: _dense([-4.0, 2.0, 1.5, 1.0, -0.5, 0.1], 1)),
            Case("iters=5, slow convergence", "iters limit",
                 lambda: _dense([1.0, 0.95, 0.5, 0.2, -0.3, 0.1, 0.05], 2, options=(5,))),
            Case("float32/tol=1e-3", "dtype", lambda: _dense([3.0, 1.0, 0.5, -0.2], 3, f32, options=(100, 1e-3))),
            Case("v0 in the null space/n=4", "Av = 0",
                 lambda: _null_start([0.0, 2.0, 0.0, -1.0], [1.0, 0.0, -3.0, 0.0])),
            # hidden
            Case("n=40/tol=1e-8", "dominant eigenpair",
                 lambda: _dense(torch.linspace(-1.0, 2.0, 40).tolist() + [3.0], 10, options=(300, 1e-8)),
                 hidden=True),
            Case("negative dominant/float32", "sign of λ",
                 lambda: _dense([-6.0, 3.0, 2.0, -1.0, 0.5], 11, f32, options=(100, 1e-4)), hidden=True),
            Case("negative dominant/slow/iters=7", "sign of λ",
                 lambda: _dense([-1.0, 0.9, 0.5, -0.2, 0.1], 12, options=(7,)), hidden=True),
            Case("tol=0: all iters", "iters limit", lambda: _dense([2.0, 1.8, 0.5], 13, options=(30, 0.0)),
                 hidden=True),
            Case("iters=1", "iters limit", lambda: _dense([4.0, 1.0, -1.0, 2.0], 14, options=(1,)), hidden=True),
            Case("tol=1e-2: loose", "tol", lambda: _dense([2.0, 1.5, 1.0, 0.3], 15, options=(100, 1e-2)),
                 hidden=True),
            Case("λ ≈ 1e6", "scale", lambda: _dense([2e6, 1.5e6, 1e5, -1e6], 16, options=(200, 1e-9)),
                 hidden=True),
            Case("λ ≈ 1e-6", "scale", lambda: _dense([3e-6, 2.5e-6, 1e-6, -5e-7], 17, options=(200, 1e-7)),
                 hidden=True),
            Case("‖v0‖ = 1e8", "scale", lambda: _dense([5.0, 4.0, 1.0, 0.5], 18, v0_scale=1e8), hidden=True),
            Case("v0 is an eigenvector", "dominant eigenpair",
                 lambda: _dense([2.0, 1.0, 0.5, -0.5], 19, v0=0), hidden=True),
            Case("v0 in the null space", "Av = 0",
                 lambda: _null_start([3.0, 0.0, 1.0, 0.0, -2.0], [0.0, 1.5, 0.0, -2.0, 0.0], seed=1),
                 hidden=True),
            Case("diag + low rank/n=20,000", "dominant eigenpair",
                 lambda: _low_rank(20_000, 3, 21, options=(200, 1e-7)), hidden=True),
            Case("diag + low rank/float32", "dtype",
                 lambda: _low_rank(500, 2, 22, f32, options=(100, 1e-3)), hidden=True),
        ]

    def expected(self, args):
        return power_iteration(_raw(args[0]), *args[1:])

    def reference_products(self, args) -> int:
        """How many products the reference makes on ``args`` (counted on its own run, in the case's dtype)."""
        fn, count = _raw(args[0]), [0]

        def counted(v):
            count[0] += 1
            return fn(v)

        power_iteration(counted, *args[1:])
        return count[0]

    def judge(self, case, args, out, args_after=None, error=None, calls=None, flops=None):
        self._calls = calls[0] if calls else None
        return super().judge(case, args, out, args_after=args_after, error=error, calls=calls, flops=flops)

    def compare(self, case, args, out, expected):
        matvec, v0 = args[:2]
        iters, tol = _options(args)
        lam_ref, v_ref = expected
        if not isinstance(out, tuple | list) or len(out) != 2:
            raise AssertionError(f"should return the pair (eigenvalue, eigenvector), got {_describe(out)}")
        lam, v = out
        if isinstance(lam, torch.Tensor) and lam.numel() == v0.numel() and not (
                isinstance(v, torch.Tensor) and v.numel() == v0.numel()):
            raise AssertionError("returned (eigenvector, eigenvalue): the order is (eigenvalue, eigenvector)")
        if not (isinstance(lam, float | int) and not isinstance(lam, bool)) and not (
                isinstance(lam, torch.Tensor) and lam.numel() == 1):
            raise AssertionError(f"the eigenvalue should be a number (a 0-d tensor), got {_describe(lam)}")
        if not isinstance(v, torch.Tensor) or v.shape != v0.shape or v.dtype != v0.dtype:
            raise AssertionError(f"the eigenvector should be a tensor like v0 (shape {tuple(v0.shape)}, "
                                 f"{v0.dtype}), got {_describe(v)}")
        lam = float(lam)
        rtol_lam, rtol_v = RTOL.get(v0.dtype, RTOL[torch.float32])
        v64, ref64 = v.detach().double(), v_ref.double()
        if not (math.isfinite(lam) and bool(torch.isfinite(v64).all())):
            raise AssertionError("the result contains NaN or infinite values")
        norm = float(v64.norm())
        if not abs(norm - 1.0) <= 10 * rtol_v:
            raise AssertionError(f"the eigenvector has norm {norm:.6g}; return it normalized to ‖v‖ = 1")
        products = self._products_note(args)
        if float(lam_ref) < 0 < lam and abs(lam + float(lam_ref)) <= 1e-2 * abs(float(lam_ref)):
            raise AssertionError(f"eigenvalue {lam:.10g}, expected {float(lam_ref):.10g}: the sign is lost. The "
                                 "dominant eigenvalue is negative here; λ = vᵀAv (the Rayleigh quotient of the unit "
                                 "v) keeps its sign, ‖Av‖ and |λ| do not")
        if not abs(lam - float(lam_ref)) <= rtol_lam * max(abs(float(lam_ref)), 1e-300):
            raise AssertionError(f"eigenvalue {lam:.10g}, expected {float(lam_ref):.10g}{products}")
        err = float((v64 - ref64).norm())
        if not err <= rtol_v:
            raise AssertionError(f"the eigenvector differs from the expected one by {err:.1e} (tolerance "
                                 f"{rtol_v:.0e}): return the v whose Rayleigh quotient is the eigenvalue")

    def _products_note(self, args) -> str:
        if self._calls is None:
            return ""
        ref = self.reference_products(args)
        if self._calls == ref:
            return ""
        return f" (your function made {self._calls} products with A, the reference {ref})"

    def check_calls(self, case, args, calls):
        if not calls:
            return
        made, ref = calls[0], self.reference_products(args)
        if made <= ref + 1:
            return
        if ref > 1 and abs(made - 2 * ref) <= 1:
            raise AssertionError(f"matvec was called {made} times for {ref} iterations: one product per "
                                 "iteration is enough, since w = A v gives both λ = vᵀw and the next v = w/‖w‖ "
                                 "(each product can cost a Hessian-vector product)")
        raise AssertionError(f"matvec was called {made} times; the iteration should stop after {ref} products, "
                             "where |λ − λ_prev| ≤ tol·|λ| first holds")

    def diagnose(self, case, args, out):
        matvec, v0 = args[:2]
        iters, tol = _options(args)
        lam, v = out
        lam = float(lam)
        v = v.detach().double()
        ref_lam, ref_v, ref_products = _run(matvec, v0, iters, tol)
        if not (math.isfinite(lam) and bool(torch.isfinite(v).all())):
            start = v0.double() / v0.double().norm()
            if float(_raw(matvec)(start.to(v0.dtype)).double().norm()) == 0.0:
                return ("A v = 0 here (v0 lies in the null space of A): stop as soon as w = 0 — λ = 0 is exact, "
                        "while w/‖w‖ would be 0/0")
            return ("the result is not finite: a v that is never normalized grows or shrinks like λᵏ until it "
                    "overflows (or underflows to 0) — v = v0/‖v0‖ first, then v = w/‖w‖ every iteration")
        if ref_lam < 0 < lam and abs(lam + ref_lam) <= 1e-2 * abs(ref_lam):
            return None                                           # compare() has named the lost sign
        made = self._calls
        rtol_lam, rtol_v = RTOL.get(v0.dtype, RTOL[torch.float32])
        # The same tolerances as compare(): values within them are right, and only the cost can be wrong.
        values_right = abs(lam - ref_lam) <= rtol_lam * abs(ref_lam) and float((v - ref_v).norm()) <= rtol_v
        variants = [
            ("λ = ‖Av‖ (a norm ratio) instead of the Rayleigh quotient vᵀAv: it loses the sign and converges "
             "more slowly", dict(rayleigh="norm")),
            ("returned |λ|: the sign of the dominant eigenvalue is lost; λ = vᵀAv is negative when the "
             "dominant eigenvalue is", dict(absolute_value=True)),
            ("tol seems ignored: stop as soon as |λ − λ_prev| ≤ tol·|λ|", dict(test="none")),
            ("the test is absolute: stop when |λ − λ_prev| ≤ tol·|λ|, relative to λ", dict(test="absolute")),
            ("the test is |λ − λ_prev| ≤ tol·λ, without |·| around λ: for a negative dominant eigenvalue the bound is "
             "negative and never holds; use tol·|λ|", dict(test="signed")),
            ("the stopping test compares successive vectors, ‖v − v_prev‖ ≤ tol: the test is on the eigenvalue, "
             "|λ − λ_prev| ≤ tol·|λ| (v converges more slowly than λ, and for λ < 0 it flips sign every step)",
             dict(test="vector")),
            ("the loop stops after the first product: compare λ with the previous iteration's λ (there is "
             "none on the first)", dict(stop_first=True)),
            ("v is one step ahead of λ: on the last iteration v was replaced by w/‖w‖ after λ = vᵀw; return "
             "the v that gave λ", dict(pair="ahead")),
            ("v is never normalized: v = v0/‖v0‖ first, then v = w/‖w‖, and λ = vᵀw with the unit v",
             dict(normalize=False, rayleigh="vAv/vv")),
            ("the Rayleigh quotient of an unnormalized v is vᵀAv/‖v‖², not vᵀAv/‖v‖ (or keep v at unit norm)",
             dict(normalize=False, rayleigh="vAv/|v|")),
        ]
        matches = []
        for message, knobs in variants:
            try:
                alt_lam, alt_v, alt_products = _run(matvec, v0, iters, tol, **knobs)
            except Exception:  # a variant that cannot run here matches nothing
                continue
            if not (math.isfinite(alt_lam) and bool(torch.isfinite(alt_v).all())):
                continue
            if alt_products == ref_products and abs(alt_lam - ref_lam) <= rtol_lam * abs(ref_lam) and \
                    float((alt_v / alt_v.norm() - ref_v).norm()) <= rtol_v:
                continue                                          # not telling on this case
            same_lam = abs(lam - alt_lam) <= 10 * rtol_lam * max(abs(alt_lam), 1e-300)
            unit = alt_v / alt_v.norm()
            same_v = min(float((v - unit).norm()), float((v - alt_v).norm())) <= 10 * rtol_v
            if same_lam and same_v and (made is None or made == alt_products):
                matches.append(message)
        if matches:                          # several mistakes give this output here: name each
            return " — or ".join(matches)
        if values_right:
            return None                                           # only the cost is wrong: check_calls says so
        if made is not None:
            if made > iters:
                return f"iters = {iters} allows at most {iters} products; the loop made {made}"
            if made < ref_products:
                return (f"the loop stopped after {made} products, the reference after {ref_products}: the "
                        "test is |λ − λ_prev| ≤ tol·|λ| between successive Rayleigh quotients")
            if made > ref_products + 1:
                return (f"the loop ran on to {made} products although the test |λ − λ_prev| ≤ tol·|λ| held after "
                        f"{ref_products}")
        if abs(abs(lam) - abs(ref_lam)) <= 10 * rtol_lam * abs(ref_lam) and lam * ref_lam < 0:
            return "the eigenvalue has the wrong sign: λ = vᵀAv keeps the sign of the dominant eigenvalue"
        return None


def _describe(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)} ({value.dtype})"
    return f"{type(value).__name__} {value!r}"[:80]


__all__ = ["PowerIteration", "stop_margin", "trace"]
