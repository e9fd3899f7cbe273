"""The one-dimensional secant method against scipy's brentq roots: convergence, order, cost, stops."""

import math

import pytest
import secondorder as so
import torch
from scipy.optimize import brentq
from secondorder.secant import GOLDEN_RATIO

# (name, g, x0, x1, bracket for brentq)
SMOOTH = [
    ("cube", lambda x: x**3 - 2, 1.0, 2.0, (1.0, 2.0)),
    ("cos", lambda x: math.cos(x) - x, 0.0, 1.0, (0.0, 1.0)),
    ("exp", lambda x: math.exp(x) - 3, 0.0, 2.0, (0.0, 2.0)),
    ("quartic-gradient", lambda x: 4 * (x - 0.7) ** 3 + 2 * (x - 0.7), 0.0, 0.3, (0.0, 2.0)),
    ("far-start", lambda x: math.atan(x) - 0.5, 3.0, 2.0, (-1.0, 3.0)),
]


class Counted:
    """g with a call counter and a log of the points it was called at."""

    def __init__(self, g):
        self.g, self.points = g, []

    def __call__(self, x):
        self.points.append(x)
        return self.g(x)


@pytest.mark.parametrize("name, g, x0, x1, bracket", SMOOTH, ids=[c[0] for c in SMOOTH])
def test_converges_to_the_brentq_root(name, g, x0, x1, bracket):
    root = brentq(g, *bracket, xtol=1e-15)
    xs = so.secant_method(g, x0, x1)
    assert xs[:2] == [x0, x1]
    assert all(type(x) is float for x in xs)
    assert abs(xs[-1] - root) <= 1e-12 * max(1.0, abs(root))
    assert len(xs) < 52, "converged well before max_iter"


def test_order_is_the_golden_ratio_at_a_simple_root():
    root = math.log(3.0)
    xs = so.secant_method(lambda x: math.exp(x) - 3, 0.0, 2.0)
    errors = [abs(x - root) for x in xs]
    orders = so.estimate_order([e for e in errors if e > 1e-13])    # drop errors at rounding level
    assert abs(orders[-1] - GOLDEN_RATIO) < 0.05
    assert abs(sum(orders[-3:]) / 3 - GOLDEN_RATIO) < 0.05


def test_estimate_order_on_exact_sequences():
    # e_{k+1} = e_k · e_{k-1} has order exactly (1 + √5)/2 in the limit; e_{k+1} = e_k² has order 2.
    e = [0.5, 0.4]
    for _ in range(10):
        e.append(e[-1] * e[-2])
    assert abs(so.estimate_order(e)[-1] - GOLDEN_RATIO) < 1e-3
    quad = [0.5 ** (2**k) for k in range(6)]
    assert so.estimate_order(quad) == pytest.approx([2.0] * 4)
    linear = [0.5**k for k in range(6)]
    assert so.estimate_order(linear) == pytest.approx([1.0] * 4)


def test_estimate_order_marks_uninformative_entries_nan():
    orders = so.estimate_order([1e-2, 1e-4, 0.0, 0.0])
    assert all(math.isnan(p) for p in orders)
    assert math.isnan(so.estimate_order([0.1, 0.1, 0.01])[0])
    assert so.estimate_order(torch.tensor([1e-1, 1e-2, 1e-4])) == pytest.approx([2.0])


@pytest.mark.parametrize("errors", [[0.1, 0.01], [0.1, -0.01, 0.001], [0.1, float("nan"), 0.1], None])
def test_estimate_order_rejects_bad_errors(errors):
    with pytest.raises(ValueError, match="errors"):
        so.estimate_order(errors)


@pytest.mark.parametrize("name, g, x0, x1, bracket", SMOOTH, ids=[c[0] for c in SMOOTH])
def test_each_point_is_evaluated_at_most_once(name, g, x0, x1, bracket):
    counted = Counted(g)
    xs = so.secant_method(counted, x0, x1)
    assert counted.points == xs[: len(counted.points)], "g is called at the iterates, in order"
    # Every iterate but the last exactly once; the last one too unless the step test ended the run.
    stopped_by_step = abs(xs[-1] - xs[-2]) <= 1e-12 * max(1.0, abs(xs[-2]))
    expected = len(xs) - 1 if stopped_by_step else len(xs)
    assert len(counted.points) == expected


def test_max_iter_counts_new_iterates_and_evaluations():
    counted = Counted(lambda x: math.exp(x) - 3)
    xs = so.secant_method(counted, 0.0, 2.0, max_iter=3)
    assert len(xs) == 2 + 3
    assert len(counted.points) == len(xs) - 1
    assert len(so.secant_method(lambda x: x**3 - 2, 1.0, 2.0, max_iter=1)) == 3


def test_tol_loose_stops_early():
    tight = so.secant_method(lambda x: x**3 - 2, 1.0, 2.0)
    loose = so.secant_method(lambda x: x**3 - 2, 1.0, 2.0, tol=1e-3)
    assert len(loose) < len(tight)
    assert loose == tight[: len(loose)]
    assert abs(loose[-1] - loose[-2]) <= 1e-3 * max(1.0, abs(loose[-2]))


def test_flat_secant_stops_without_dividing_by_zero():
    counted = Counted(lambda x: x * x - 4)                     # g(-1) = g(1) = -3
    assert so.secant_method(counted, -1.0, 1.0) == [-1.0, 1.0]
    assert len(counted.points) == 2


def test_exact_root_stops():
    assert so.secant_method(lambda x: x**3 - 8, 1.0, 2.0) == [1.0, 2.0]
    # A linear g (the gradient of a quadratic): the secant slope is exact and one step lands on the root.
    counted = Counted(lambda x: 3 * (x - 0.5))
    assert so.secant_method(counted, 0.0, 1.0) == [0.0, 1.0, 0.5]
    assert counted.points == [0.0, 1.0, 0.5]
    # A root at x0: the first secant step returns to it exactly.
    assert so.secant_method(lambda x: x**3 - 8, 2.0, 3.0) == [2.0, 3.0, 2.0]


def test_g_may_return_a_0d_tensor_and_iterates_stay_floats():
    xs = so.secant_method(lambda x: torch.tensor(x, dtype=torch.float64) ** 3 - 2, 1.0, 2.0)
    assert all(type(x) is float for x in xs)
    assert xs == pytest.approx(so.secant_method(lambda x: x**3 - 2, 1.0, 2.0), rel=1e-12)
    assert so.secant_method(lambda x: x - 1, torch.tensor(0.0), 3)[-1] == 1.0


@pytest.mark.parametrize("kwargs, name", [
    (dict(x0=float("nan")), "x0"), (dict(x1=float("inf")), "x1"), (dict(x0="a"), "x0"),
    (dict(x0=1.0, x1=1.0), "x0 and x1"), (dict(tol=-1e-3), "tol"), (dict(tol=float("nan")), "tol"),
    (dict(max_iter=0), "max_iter"), (dict(max_iter=2.5), "max_iter"), (dict(max_iter=True), "max_iter"),
    (dict(g=3.0), "g"),
])
def test_bad_input_raises_naming_the_argument(kwargs, name):
    args = dict(g=lambda x: x - 1, x0=0.0, x1=2.0) | kwargs
    with pytest.raises(ValueError, match=name):
        so.secant_method(**args)


def test_g_returning_a_vector_is_an_error():
    with pytest.raises(ValueError, match="g must return"):
        so.secant_method(lambda x: torch.ones(2) * x, 0.0, 1.0)


# -- the graded exercise built on secant_method ------------------------------------------------------


def _exercise():
    from secondorder.exercises import get_exercise

    return get_exercise("secant_method")


def _student(step=None, evaluations_per_step=1, drop=0):
    """A student's secant_method with one mistake."""
    def secant_method(g, x0, x1, tol=1e-12, max_iter=50):
        xs = [float(x0), float(x1)]
        g0, g1 = float(g(x0)), float(g(x1))
        for _ in range(max_iter):
            if evaluations_per_step == 2:
                g0, g1 = float(g(xs[-2])), float(g(xs[-1]))
            if g1 == 0 or g1 == g0:
                break
            xp, xc = xs[-2], xs[-1]
            xs.append(step(xp, xc, g0, g1) if step else xc - g1 * (xc - xp) / (g1 - g0))
            if abs(xs[-1] - xc) <= tol * max(1.0, abs(xc)):
                break
            g0, g1 = g1, float(g(xs[-1]))
        return xs[drop:]
    return secant_method


def test_exercise_reference_passes_every_case():
    verdict = _exercise().run_in_process(so.secant_method, hidden=True)
    assert verdict.fraction == 1, verdict.summary()


@pytest.mark.parametrize("student, cause", [
    (_student(step=lambda xp, xc, gp, gc: xc - gc * (xp - xc) / (gc - gp)), "wrong sign"),
    (_student(step=lambda xp, xc, gp, gc: xc - gp * (xc - xp) / (gc - gp)), "older point"),
    (_student(evaluations_per_step=2), "g was called"),
    (_student(drop=2), "x0 and x1 are missing"),
], ids=["flipped-slope", "old-numerator", "evaluates-twice", "omits-starts"])
def test_exercise_names_the_misconception(student, cause):
    verdict = _exercise().run_in_process(student)
    assert verdict.fraction < 1
    assert cause in verdict.summary()


def test_exercise_arguments_survive_a_weights_only_round_trip():
    import io

    exercise = _exercise()
    for case in exercise.cases():
        args = case.make_args()
        buffer = io.BytesIO()
        torch.save(exercise.encode_args(args), buffer)
        buffer.seek(0)
        decoded = exercise.decode_args(torch.load(buffer, weights_only=True))
        out = so.secant_method(*decoded)
        assert exercise.judge(case, case.make_args(), out).passed, case.id


def test_exercise_checks_the_call_count_reported_from_another_process():
    exercise = _exercise()
    case = exercise.cases()[0]
    out = so.secant_method(*exercise.decode_args(exercise.encode_args(case.make_args())))
    assert exercise.judge(case, case.make_args(), out, calls=[len(out)]).passed
    verdict = exercise.judge(case, case.make_args(), out, calls=[2 * len(out)])
    assert not verdict.passed and "g was called" in verdict.message
