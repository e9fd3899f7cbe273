"""Keeps only the diagonal of each factor."""
EXPECT = "only the diagonal"
import torch


def kfac_factors(a, g):
    N = a.shape[0]
    return torch.diag((a * a).sum(dim=0) / N), torch.diag((g * g).sum(dim=0) / N)
