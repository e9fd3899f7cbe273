"""Returns only the final estimate instead of every iterate."""
EXPECT = "every iterate"


def secant_method(g, x0, x1, tol=1e-12, max_iter=50):
    x_prev, x_cur = float(x0), float(x1)
    g_prev, g_cur = g(x_prev), g(x_cur)
    for _ in range(max_iter):
        if g_cur == 0 or g_cur == g_prev:
            break
        x_next = x_cur - g_cur * (x_cur - x_prev) / (g_cur - g_prev)
        done = abs(x_next - x_cur) <= tol * max(1.0, abs(x_cur))
        x_prev, g_prev, x_cur = x_cur, g_cur, x_next
        if done:
            break
        g_cur = g(x_cur)
    return [x_cur]
