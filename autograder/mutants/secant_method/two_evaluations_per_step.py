"""Evaluates g at both points in every step instead of keeping the previous value."""
EXPECT = "evaluate g once"


def secant_method(g, x0, x1, tol=1e-12, max_iter=50):
    xs = [float(x0), float(x1)]
    while True:
        x_prev, x_cur = xs[-2], xs[-1]
        g_prev, g_cur = g(x_prev), g(x_cur)
        if g_cur == 0 or g_cur == g_prev:
            break
        x_next = x_cur - g_cur * (x_cur - x_prev) / (g_cur - g_prev)
        xs.append(float(x_next))
        if abs(x_next - x_cur) <= tol * max(1.0, abs(x_cur)) or len(xs) - 2 == max_iter:
            break
    return xs
