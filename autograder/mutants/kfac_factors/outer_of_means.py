"""Averages a and g over the batch first, then takes one outer product: ā āᵀ instead of the mean of a_n a_nᵀ."""
EXPECT = "outer product of the batch means"
import torch


def kfac_factors(a, g):
    a_bar, g_bar = a.mean(dim=0), g.mean(dim=0)
    return torch.outer(a_bar, a_bar), torch.outer(g_bar, g_bar)
