"""``secondorder.minimize`` against scipy.optimize on the 18 Moré–Garbow–Hillstrom problems.

Each problem (:mod:`secondorder.problems.mgh`, standard n, m and x0) is solved four times: our
``"bfgs"`` and scipy's ``BFGS``, our ``"lbfgs"`` and scipy's ``L-BFGS-B`` (no bounds, history 10 in
both). scipy gets the same function and gradient (the torch autograd gradient through float64 numpy
wrappers), the same ``gtol = 1e-5`` on ‖g‖∞ and the same iteration and evaluation budgets; L-BFGS-B's
``ftol`` is set to machine epsilon so that, like ours, it stops on the gradient and not on a stalled
decrease of f. Every run is judged by one test, ‖∇f(x_final)‖∞ ≤ 1e-5 with the gradient recomputed at
the point the solver returned, whatever the solver itself reports.

``python -m bench.mgh`` prints the rows; :func:`results` returns the raw per-problem numbers.
"""

import math

import numpy as np
import scipy.optimize
import secondorder as so
import torch
from secondorder.problems.mgh import MGH_NAMES, MGHProblem, mgh_problem

PAIRS = [("bfgs", "BFGS"), ("lbfgs", "L-BFGS-B")]
GTOL = 1e-5
MAX_ITER = 2000
MAX_FEV = 10 * MAX_ITER     # minimize's default for max_iter; L-BFGS-B's maxfun


def _grad_norm(problem: MGHProblem, x: np.ndarray) -> float:
    return float(problem.grad(torch.from_numpy(np.asarray(x, dtype=np.float64))).abs().max())


def _ours(problem: MGHProblem, method: str) -> dict:
    res = so.minimize(problem.f, problem.x0, method, gtol=GTOL, max_iter=MAX_ITER, max_fev=MAX_FEV)
    return dict(x=res.x.numpy(), fun=res.fun, nfev=res.nfev, nit=res.nit, message=res.message)


def _scipy(problem: MGHProblem, method: str) -> dict:
    def fun(x):
        f, g = problem.value_and_grad(torch.from_numpy(x))
        return float(f), g.numpy()

    options = {"gtol": GTOL, "maxiter": MAX_ITER}
    if method == "L-BFGS-B":
        options |= {"ftol": np.finfo(np.float64).eps, "maxfun": MAX_FEV, "maxcor": 10}
    else:
        options |= {"norm": np.inf}
    res = scipy.optimize.minimize(fun, problem.x0.numpy(), jac=True, method=method, options=options)
    return dict(x=res.x, fun=float(res.fun), nfev=int(res.nfev), nit=int(res.nit), message=str(res.message))


def results(names=MGH_NAMES) -> list[dict]:
    """One dict per problem and method: ``problem, n, m, f_star, method``, then for ``ours`` and
    ``scipy`` each: ``success`` (‖g‖∞ ≤ 1e-5 at the returned point), ``grad_norm``, ``fun``,
    ``nfev``, ``nit``, ``message`` (keys prefixed ``ours_`` and ``scipy_``)."""
    table = []
    for name in names:
        problem = mgh_problem(name)
        for ours, theirs in PAIRS:
            row = dict(problem=name, n=problem.n, m=problem.m, f_star=problem.f_star, method=ours,
                       scipy_method=theirs)
            for who, solve, method in (("ours", _ours, ours), ("scipy", _scipy, theirs)):
                out = solve(problem, method)
                g = _grad_norm(problem, out.pop("x"))
                row |= {f"{who}_success": g <= GTOL, f"{who}_grad_norm": g}
                row |= {f"{who}_{key}": value for key, value in out.items()}
            table.append(row)
    return table


def _geometric_mean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else math.nan


def rows_from(table: list[dict]) -> list[dict]:
    """The benchmark rows for a table from :func:`results`: per problem, then the summaries."""
    rows = []
    for ours, theirs in PAIRS:
        mine = [r for r in table if r["method"] == ours]
        for r in mine:
            note = (f"solved {r['ours_success']}/{r['scipy_success']}, "
                    f"‖g‖∞ {r['ours_grad_norm']:.1e}/{r['scipy_grad_norm']:.1e}, "
                    f"f {r['ours_fun']:.6g}/{r['scipy_fun']:.6g}")
            if not r["ours_success"]:
                note += f"; ours: {r['ours_message']}"
            rows.append(dict(benchmark=f"mgh {ours} vs scipy {theirs}: nfev", case=f"{r['problem']} (n={r['n']})",
                             ours=r["ours_nfev"], anchor=r["scipy_nfev"], ratio=r["ours_nfev"] / r["scipy_nfev"],
                             target="info", note=note))
        solved = sum(r["ours_success"] for r in mine), sum(r["scipy_success"] for r in mine)
        unsolved = [r["problem"] for r in mine if not r["ours_success"]]
        rows.append(dict(benchmark=f"mgh {ours} vs scipy {theirs}: problems solved", case=f"all {len(mine)}",
                         ours=solved[0], anchor=solved[1], ratio=solved[0] / max(solved[1], 1), target="≥ 1.0",
                         note=f"‖g‖∞ ≤ {GTOL:g} at the returned point; ours not: {', '.join(unsolved) or 'none'}"))
        both = [r for r in mine if r["ours_success"] and r["scipy_success"]]
        rows.append(dict(benchmark=f"mgh {ours} vs scipy {theirs}: nfev, geometric mean",
                         case=f"{len(both)} solved by both",
                         ours=_geometric_mean([r["ours_nfev"] for r in both]),
                         anchor=_geometric_mean([r["scipy_nfev"] for r in both]),
                         ratio=_geometric_mean([r["ours_nfev"] / r["scipy_nfev"] for r in both]),
                         target="≤ 1.0", note="geometric mean of the per-problem ratios"))
    return rows


def run() -> list[dict]:
    return rows_from(results())


def main() -> int:
    from bench.__main__ import print_table

    print(f"# Moré–Garbow–Hillstrom problems — torch {torch.__version__}, scipy {scipy.__version__}\n")
    print_table(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
