r"""Optimizers as ``torch.optim.Optimizer`` subclasses: thin wrappers around the library's kernels.

=======================  ===================================================================
:class:`LBFGS`           limited-memory BFGS; a drop-in for :class:`torch.optim.LBFGS`
:class:`BFGS`            dense inverse-Hessian BFGS for small models (:math:`n \le 20000`)
:class:`KFAC`            Kronecker-factored natural gradient for ``nn.Linear`` layers
:class:`Shampoo`         left/right preconditioned matrices, :math:`L^{-1/4} G R^{-1/4}`, grafted
:class:`SOAP`            Adam in Shampoo's eigenbasis
:class:`Muon`            orthogonalized momentum (Newton–Schulz) for matrices, AdamW for the rest
=======================  ===================================================================
"""

from secondorder.optim.bfgs import BFGS
from secondorder.optim.kfac import KFAC
from secondorder.optim.lbfgs import LBFGS, compact_coefficients
from secondorder.optim.muon import Muon, split_muon_params
from secondorder.optim.shampoo import Shampoo
from secondorder.optim.soap import SOAP

__all__ = ["BFGS", "KFAC", "LBFGS", "SOAP", "Muon", "Shampoo", "compact_coefficients", "split_muon_params"]
