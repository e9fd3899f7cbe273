"""Never stops on the step tolerance: always runs to max_iter (or until g = 0)."""
EXPECT = "tol seems ignored"


def secant_method(g, x0, x1, tol=1e-12, max_iter=50):
    xs = [float(x0), float(x1)]
    g_prev, g_cur = g(x0), g(x1)
    while g_cur != 0 and g_cur != g_prev:
        x_prev, x_cur = xs[-2], xs[-1]
        x_next = x_cur - g_cur * (x_cur - x_prev) / (g_cur - g_prev)
        xs.append(float(x_next))
        if len(xs) - 2 == max_iter:
            break
        g_prev, g_cur = g_cur, g(x_next)
    return xs
