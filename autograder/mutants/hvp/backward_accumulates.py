"""Two .backward() calls on the same leaf: x.grad accumulates and holds ∇f(x) + Hv."""
EXPECT = "accumulates"


def hvp(f, x, v):
    x = x.detach().requires_grad_(True)
    f(x).backward(create_graph=True)
    g = x.grad
    (g * v).sum().backward()
    return x.grad.detach().clone()
