r"""Curvature without matrices: Hessian-vector products, curvature operators of models, and CG.

==========================================  ===============================================================
:func:`hvp`                                 :math:`\nabla^2 f(x) v` by double backward (Pearlmutter 1994)
:func:`hessian_vector_product`              the same by ``method`` in :data:`HVP_METHODS`
:func:`model_hvp`                           Hessian-vector product of ``loss_fn(model(inputs), targets)``
:class:`HessianOperator`                    :math:`\nabla^2_\theta L` as a linear operator
:class:`GGNOperator`                        generalized Gauss–Newton :math:`J^\top H_L J`
:class:`FisherOperator`                     true Fisher, exact or Monte Carlo
:class:`EmpiricalFisherOperator`            :math:`c \sum_i \nabla \ell_i \nabla \ell_i^\top`
:func:`cg`                                  conjugate gradient with a negative-curvature exit
:func:`hessian_free_step`                   Newton–CG / Hessian-free step
:func:`natural_gradient_step`               :math:`-(F + \lambda I)^{-1} \nabla L` by CG
==========================================  ===============================================================

Every operator supports ``A @ v`` for ``v`` of shape ``(n,)`` or ``(n, k)`` (flat vectors in
``model.parameters()`` order), ``to_dense()`` and ``to_scipy()``.
"""

from .cg import CGResult, cg, hessian_free_step, natural_gradient_step
from .hvp import HVP_METHODS, finite_difference_step, hessian_vector_product, hvp, hvp_at
from .operators import (
    LOSSES,
    CurvatureOperator,
    EmpiricalFisherOperator,
    FisherOperator,
    GGNOperator,
    HessianOperator,
    model_hvp,
)

__all__ = [
    "HVP_METHODS",
    "LOSSES",
    "CGResult",
    "CurvatureOperator",
    "EmpiricalFisherOperator",
    "FisherOperator",
    "GGNOperator",
    "HessianOperator",
    "cg",
    "finite_difference_step",
    "hessian_free_step",
    "hessian_vector_product",
    "hvp",
    "hvp_at",
    "model_hvp",
    "natural_gradient_step",
]
