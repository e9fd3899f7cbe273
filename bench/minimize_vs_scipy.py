"""``secondorder.minimize`` against scipy.optimize on the same problems: evaluations and wall time."""

import numpy as np
import scipy.optimize
import secondorder as so
import torch
from secondorder.problems import logistic_regression, rosenbrock

from bench.timing import best_time

PAIRS = [("bfgs", "BFGS"), ("lbfgs", "L-BFGS-B")]


def _problems():
    yield "Rosenbrock 2-D", rosenbrock(2)
    yield "Rosenbrock 5-D", rosenbrock(5, x0=torch.tensor([1.3, 0.7, 0.8, 1.9, 1.2], dtype=torch.float64))
    yield "logistic regression (breast cancer)", logistic_regression()


def _scipy_fun(problem):
    def fun(x):
        f, g = problem.value_and_grad(torch.from_numpy(x))
        return float(f), g.numpy()
    return fun


def _pair(name, problem, ours, theirs) -> list[dict]:
    x0 = problem.x0.numpy()
    fun = _scipy_fun(problem)
    res = so.minimize(problem.f, problem.x0, ours)
    ref = scipy.optimize.minimize(fun, x0, jac=True, method=theirs)
    t_ours = best_time(lambda: so.minimize(problem.f, problem.x0, ours), repeat=3)
    t_ref = best_time(lambda: scipy.optimize.minimize(fun, x0, jac=True, method=theirs), repeat=3)
    gap = float(np.abs(res.x.numpy() - ref.x).max())
    return [dict(benchmark=f"{ours} vs scipy {theirs}: nfev", case=name, ours=res.nfev, anchor=ref.nfev,
                 ratio=res.nfev / ref.nfev, target="≤ 1.2",
                 note=f"‖x − x_scipy‖∞ {gap:.0e}, success {res.success}/{bool(ref.success)}"),
            dict(benchmark=f"{ours} vs scipy {theirs}: wall time", case=name, ours=t_ours, anchor=t_ref,
                 ratio=t_ours / t_ref, target="info",
                 note="torch autograd vs numpy gradient; Python-level loop in both")]


def run() -> list[dict]:
    return [row for name, problem in _problems() for ours, theirs in PAIRS
            for row in _pair(name, problem, ours, theirs)]
