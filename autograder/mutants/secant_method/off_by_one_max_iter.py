"""Makes max_iter − 1 new iterates (the loop counts x1 as one of them)."""
EXPECT = "off by one"


def secant_method(g, x0, x1, tol=1e-12, max_iter=50):
    xs = [float(x0), float(x1)]
    g_prev, g_cur = g(x0), g(x1)
    while g_cur != 0 and g_cur != g_prev:
        x_prev, x_cur = xs[-2], xs[-1]
        x_next = x_cur - g_cur * (x_cur - x_prev) / (g_cur - g_prev)
        xs.append(float(x_next))
        if abs(x_next - x_cur) <= tol * max(1.0, abs(x_cur)) or len(xs) - 1 == max_iter:
            break
        g_prev, g_cur = g_cur, g(x_next)
    return xs
