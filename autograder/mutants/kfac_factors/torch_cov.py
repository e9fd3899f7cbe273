"""Uses torch.cov, which subtracts the batch mean and divides by N − 1: a sample covariance."""
EXPECT = "torch.cov"
import torch


def kfac_factors(a, g):
    return torch.cov(a.T), torch.cov(g.T)
