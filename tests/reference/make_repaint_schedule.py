#!/usr/bin/env python3
"""The RePaint time schedule (Lugmayr et al. 2022, "RePaint: Inpainting using Denoising
Diffusion Probabilistic Models", Sec. 4.2 "Resampling" and Algorithm 1), written from the
paper's description, as the list of states visited, for tests/test_inpaint.c.

The paper: sampling goes down from x_T one step at a time; resampling "jumps back" j steps
(x_{t+j} ~ q(x_{t+j} | x_t)) and denoises them again, r times in all per segment of j steps
(jump length j, resample count r; r = 1 is plain sampling). The authors' schedule jumps from the
states that are multiples of j (0, j, 2j, ...) that have a full segment above them, every time
the descent arrives at such a state, until that state has made its r - 1 jumps.

States here are the sampler's step indices: n-1 is x_T (the first, noisiest step), 0 the last
noisy state, -1 the result. Only the Python standard library is needed.

Writes tests/data/inpaint/repaint_schedules.txt: one line per case,
    n jump resample : s0 s1 s2 ...
Run: python3 tests/reference/make_repaint_schedule.py
"""
import os

CASES = [
    (10, 2, 3),     # small, checked by hand below
    (20, 5, 2),
    (25, 10, 10),   # a partial top segment
    (50, 10, 10),   # the paper's j = r = 10
    (100, 10, 10),
    (250, 10, 10),  # the paper's 250-step setting
    (7, 3, 1),      # r = 1: plain sampling
    (16, 4, 4),
    (9, 8, 2),      # one segment
]


def schedule(n, jump, resample):
    jumps_made = {}
    states = [n - 1]
    t = n - 1
    while t > -1:
        t -= 1
        states.append(t)
        segment_above = t >= 0 and t % jump == 0 and t + jump < n
        if segment_above and jumps_made.get(t, 0) < resample - 1:
            jumps_made[t] = jumps_made.get(t, 0) + 1
            t += jump
            states.append(t)
    return states


def check(states, n, jump, resample):
    # Denoising passes per step: r for every step inside a resampled segment, 1 elsewhere.
    down = {}
    for a, b in zip(states, states[1:]):
        assert b == a - 1 or b == a + jump, (a, b)
        if b == a - 1:
            down[a] = down.get(a, 0) + 1
    top = max(j for j in range(0, n, jump) if j + jump < n) + jump if n > jump else 0
    for s in range(n):
        want = resample if (n > jump and 1 <= s <= top) else 1
        assert down[s] == want, (n, jump, resample, s, down[s], want)
    assert states[0] == n - 1 and states[-1] == -1


def main():
    assert schedule(10, 2, 3)[:14] == [9, 8, 7, 6, 8, 7, 6, 8, 7, 6, 5, 4, 6, 5]
    here = os.path.dirname(os.path.abspath(__file__))
    out = os.path.join(here, "..", "data", "inpaint", "repaint_schedules.txt")
    lines = []
    for n, j, r in CASES:
        s = schedule(n, j, r)
        check(s, n, j, r)
        lines.append("%d %d %d : %s" % (n, j, r, " ".join(str(v) for v in s)))
    with open(out, "w") as f:
        f.write("# RePaint schedules (tests/reference/make_repaint_schedule.py): n jump resample : states\n")
        f.write("\n".join(lines) + "\n")
    print("wrote", out, "(%d cases)" % len(lines))


if __name__ == "__main__":
    main()
