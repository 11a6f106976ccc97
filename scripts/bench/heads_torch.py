#!/usr/bin/python3
"""PyTorch side of scripts/bench/heads.lua: the same heads, shapes and threads.

Run by heads.lua in the same invocation (Debian python3-torch, /usr/bin/python3; install it for
benchmarks with `apt-get install -y python3-torch`). A training step as a PyTorch user writes it
on the CPU, with plain autograd ops: gradients set to None (`zero_grad(set_to_none=True)`, the
default), then F.normalize + F.linear (cosines), the head's margin and masks on ordinary tensors,
F.cross_entropy, and backward to x and W (and the head's other parameters). One warm-up step, then
the best of `steps` timed steps. Every head runs in its own forked child process, so that the
peak resident memory (VmHWM) printed beside it is that head's alone:

    RESULT <name> <C> <best ms/step> <peak RSS MB>
    SKIP <name> <C> <reason>

Above --probe-above classes, each head is first run at two small class counts; its peak memory
extrapolated linearly to C decides whether it fits the memory available now (/proc/meminfo
MemAvailable, or --mem-mb): a head that would not fit is skipped with the estimate, never started.

Heads (the defaults of fvl.loss, docs/losses.md): softmax, normface, cosface, arcface, combined,
sphereface, mv_softmax, curricularface, circle, center, discface, npcface, adacos,
subcenter_arcface, magface, adaface, elasticface; margin_arcface, margin_curricularface and
margin_adaface (the user-written fvl.loss.margin heads) have the same maths as arcface,
curricularface and adaface and share their peers (timed once, the same figures printed for both).

--check FILE: FILE holds cases written by `heads.lua --check` (the inputs, fvl's loss and
gradients); each peer is computed in float64 on the same inputs and compared:

    CHECK <name> <fvl loss> <torch loss> <loss rel. diff> <dx rel. diff> <dW rel. diff> ok|FAIL
"""
import argparse
import math
import os
import time

import torch
import torch.nn.functional as F

# the fvl.loss heads written as fvl scripts: the same maths as a built-in head
SAME_AS = {"margin_arcface": "arcface", "margin_curricularface": "curricularface",
           "margin_adaface": "adaface"}
SUBCENTER_K = 3


def cosines(x, w):
    return F.linear(F.normalize(x), F.normalize(w)).clamp(-1, 1)


def target_of(cos, y):
    return cos.gather(1, y[:, None])[:, 0]


def with_target(z, y, t):
    return z.scatter(1, y[:, None], t[:, None])


def trig(m, f):
    return f(m) if torch.is_tensor(m) else getattr(math, f.__name__)(m)


def arc_raw(c, m):
    """cos(θ + m) from c = cos θ (m a number or one value per row)."""
    sin = (1 - c * c).clamp(0, 1).sqrt()
    return c * trig(m, torch.cos) - sin * trig(m, torch.sin)


def arc_mm(c, m):
    """ArcFace's target with the "mm" fallback c − m·sin m where θ + m > π."""
    return torch.where(c > math.cos(math.pi - m), arc_raw(c, m), c - m * math.sin(m))


def hard_negatives(cos, y, thr):
    """constant mask of the negatives whose cosine exceeds the row's threshold."""
    hard = cos.detach() > thr.detach()[:, None]
    return hard.scatter(1, y[:, None], False)


def chebyshev(c, m):
    """cos(mθ) as the Chebyshev polynomial T_m(c)."""
    prev, cur = torch.ones_like(c), c
    if m == 0:
        return prev
    for _ in range(m - 1):
        prev, cur = cur, 2 * c * cur - prev
    return cur


def make(name, x, y, C, given):
    """(parameters, loss function) of head `name`: x B×D, y class ids (0-based); `given` may hold
    w, bias, margins (ElasticFace), else they are drawn / zero as fvl.loss starts them."""
    B, D = x.shape
    dt = x.dtype
    R = C * SUBCENTER_K if name == "subcenter_arcface" else C
    w = given.get("w")
    if w is None:
        w = torch.randn(R, D, dtype=dt).mul_(math.sqrt(2.0 / (R + D)))
    w.requires_grad_()

    def margin(s, target, negatives=None):
        """CE over s·z: the target column T(c), the other columns cos (or negatives(cos, c))."""
        def loss():
            cos = cosines(x, w)
            c = target_of(cos, y)
            z = cos if negatives is None else negatives(cos, c)
            return F.cross_entropy(s * with_target(z, y, target(c)), y)
        return loss

    if name in ("softmax", "center"):
        b = given.get("bias")
        b = torch.zeros(C, dtype=dt) if b is None else b
        b.requires_grad_()
        if name == "softmax":
            return [w, b], lambda: F.cross_entropy(F.linear(x, w, b), y)
        centers = torch.zeros(C, D, dtype=dt)          # fvl: zeros at start, α-rule updates
        lam, alpha = 0.003, 0.5

        def center_loss():
            d = x - centers[y]
            loss = F.cross_entropy(F.linear(x, w, b), y) + lam / B * 0.5 * (d * d).sum()
            with torch.no_grad():                      # c_j ← c_j − α·Σ(c_j − x_i)/(1 + n_j)
                cls, inv = torch.unique(y, return_inverse=True)
                delta = torch.zeros(len(cls), D, dtype=dt).index_add_(0, inv, centers[y] - x)
                n = torch.bincount(inv, minlength=len(cls)).to(dt)
                centers[cls] -= alpha * delta / (1 + n)[:, None]
            return loss
        return [w, b], center_loss
    if name == "normface":
        return [w], margin(64, lambda c: c)
    if name == "cosface":
        return [w], margin(64, lambda c: c - 0.35)
    if name == "arcface":
        return [w], margin(64, lambda c: arc_mm(c, 0.5))
    if name == "combined":                             # m1 1, m2 0.3, m3 0.2, no fallback
        return [w], margin(64, lambda c: torch.cos(torch.acos(c) + 0.3) - 0.2)
    if name == "sphereface":                           # m 4, λ = max(5, 1000/(1 + 0.12·iter)), z = |x|·f
        st = {"iter": 0}

        def sphere_loss():
            st["iter"] += 1
            lam = max(5.0, 1000.0 * (1 + 0.12 * st["iter"]) ** -1)
            cos = cosines(x, w)
            c = target_of(cos, y)
            k = torch.floor(4 * torch.acos(c.detach()) / math.pi)
            psi = (1 - 2 * torch.remainder(k, 2)) * chebyshev(c, 4) - 2 * k
            f = (lam * c + psi) / (1 + lam)
            return F.cross_entropy(x.norm(dim=1, keepdim=True) * with_target(cos, y, f), y)
        return [w], sphere_loss
    if name == "mv_softmax":                           # AM, s 32, m 0.35, t 0.2, adaptive, easy margin
        return [w], margin(32, lambda c: torch.where(c > 0, c - 0.35, c),
                           lambda cos, c: torch.where(hard_negatives(cos, y, c - 0.35), 1.2 * cos + 0.2, cos))
    if name == "curricularface":                       # t ← 0.01·mean c_y + 0.99·t before use
        st = {"t": 0.0}

        def curricular_loss():
            cos = cosines(x, w)
            c = target_of(cos, y)
            st["t"] = 0.01 * c.detach().mean().item() + 0.99 * st["t"]
            t = st["t"]
            z = torch.where(hard_negatives(cos, y, arc_raw(c, 0.5)), cos * (t + cos), cos)
            return F.cross_entropy(64 * with_target(z, y, arc_mm(c, 0.5)), y)
        return [w], curricular_loss
    if name == "circle":                               # γ 256, m 0.25, α constant
        g, m = 256.0, 0.25
        return [w], margin(g, lambda c: (1 + m - c.detach()).clamp(min=0) * (c - (1 - m)),
                           lambda cos, c: (cos.detach() + m).clamp(min=0) * (cos - m))
    if name == "discface":                             # CosFace m 0.35 + 0.4·mean|x̂ − ŵ_y − ξ_eff|
        xi = torch.zeros(D, dtype=dt, requires_grad=True)
        ce = margin(64, lambda c: c - 0.35)

        def disc_loss():
            xi_eff = xi / ((xi * xi).sum().add(1e-30).sqrt() / 0.05).clamp(min=1)
            eps = F.normalize(x) - F.normalize(w[y]) - xi_eff
            return ce() + 0.4 * (eps * eps).sum(1).sqrt().mean()
        return [w, xi], disc_loss
    if name == "npcface":                              # m0 0.4, m1 0.2, t 1.1, α 0.2, easy margin
        def npc_loss():
            cos = cosines(x, w)
            c = target_of(cos, y)
            hard = hard_negatives(cos, y, arc_raw(c, 0.4))
            h = (cos.detach() * hard).sum(1) / hard.sum(1).clamp(min=1)
            m = 0.4 + 0.2 * h
            z = torch.where(hard, 1.1 * cos + 0.2, cos)
            return F.cross_entropy(64 * with_target(z, y, torch.where(c > 0, arc_raw(c, m), c)), y)
        return [w], npc_loss
    if name == "adacos":                               # s ← ln(B_avg)/cos(min(π/4, θ_med)) before use
        st = {"s": math.sqrt(2) * math.log(C - 1)}

        def adacos_loss():
            cos = cosines(x, w)
            with torch.no_grad():
                c = target_of(cos, y)
                e = torch.exp(st["s"] * cos).scatter(1, y[:, None], 0)
                b_avg = e.sum(1).mean().item()
                th = torch.acos(c.clamp(-1 + 1e-7, 1 - 1e-7)).median().item()
                st["s"] = math.log(b_avg) / math.cos(min(math.pi / 4, th))
            return F.cross_entropy(st["s"] * cos, y)
        return [w], adacos_loss
    if name == "subcenter_arcface":                    # K 3: class cosine = max over its sub-centres
        def sub_loss():
            cos = cosines(x, w).view(B, C, SUBCENTER_K).max(2).values
            c = target_of(cos, y)
            return F.cross_entropy(64 * with_target(cos, y, arc_mm(c, 0.5)), y)
        return [w], sub_loss
    if name == "magface":                              # a = clamp(|x|, 10, 110), m(a), easy margin
        def mag_loss():
            a = x.norm(dim=1).clamp(10, 110)
            m = (0.8 - 0.45) / (110 - 10) * (a - 10) + 0.45
            cos = cosines(x, w)
            c = target_of(cos, y)
            ce = F.cross_entropy(64 * with_target(cos, y, torch.where(c > 0, arc_raw(c, m), c)), y)
            return ce + 35 * (a / 110 ** 2 + 1 / a).mean()
        return [w], mag_loss
    if name == "adaface":                              # m 0.4, h 0.333, EMA α 0.01, ε 1e-3
        st = {"mu": 20.0, "sd": 100.0}
        m, h, eps = 0.4, 0.333, 1e-3

        def ada_loss():
            with torch.no_grad():
                n = x.norm(dim=1).clamp(1e-3, 100)
                st["mu"] = 0.01 * n.mean().item() + 0.99 * st["mu"]
                st["sd"] = 0.01 * n.std().item() + 0.99 * st["sd"]
                q = (h * (n - st["mu"]) / (st["sd"] + eps)).clamp(-1, 1)
            cos = cosines(x, w).clamp(-1 + eps, 1 - eps)
            c = target_of(cos, y)
            th = torch.acos(c) - m * q
            thd = th.detach()
            th = torch.where((thd > eps) & (thd < math.pi - eps), th, thd.clamp(eps, math.pi - eps))
            return F.cross_entropy(64 * with_target(cos, y, torch.cos(th) - (m + m * q)), y)
        return [w], ada_loss
    if name == "elasticface":                          # arc, m_i ~ N(0.5, 0.05) each step, no fallback
        fixed = given.get("margins")

        def elastic_loss():
            mg = fixed if fixed is not None else torch.randn(B, dtype=dt) * 0.05 + 0.5
            return margin(64, lambda c: arc_raw(c, mg))()
        return [w], elastic_loss
    return None, None


def vmhwm_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def mem_available_mb():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    return float("inf")


def in_child(fn):
    """fn() in a forked child process (its own peak RSS); its returned string, or 'ERROR ...'."""
    rd, wr = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(rd)
        try:
            out = fn()
        except BaseException as e:                     # noqa: BLE001 - reported to the parent
            out = "ERROR %s: %s" % (type(e).__name__, str(e).replace("\n", " ")[:300])
        os.write(wr, out.encode())
        os._exit(0)
    os.close(wr)
    chunks = []
    while True:
        b = os.read(rd, 65536)
        if not b:
            break
        chunks.append(b)
    os.close(rd)
    _, status = os.waitpid(pid, 0)
    out = b"".join(chunks).decode()
    if not out:
        out = "ERROR child exited with status %d (killed: out of memory?)" % status
    return out


def time_head(name, a, C, steps):
    """best ms per step and peak RSS MB of head `name` at C classes (run in a child)."""
    def run():
        torch.manual_seed(1)
        x = torch.randn(a.B, a.D, requires_grad=True)
        y = torch.randint(0, C, (a.B,))
        params, loss = make(SAME_AS.get(name, name), x, y, C, {})
        opt = torch.optim.SGD(params, lr=0.1)

        def step():
            t0 = time.perf_counter()
            x.grad = None
            opt.zero_grad(set_to_none=True)
            loss().backward()
            return time.perf_counter() - t0
        step()
        best = min(step() for _ in range(steps))
        return "%.3f %.1f" % (best * 1e3, vmhwm_mb())
    return in_child(run)


def bench(a):
    torch.set_num_threads(a.threads)
    print("torch %s, %d threads" % (torch.__version__, torch.get_num_threads()), flush=True)
    done = {}                                          # peer → its RESULT (margin_<name> reuses <name>'s)
    for name in a.heads.split(","):
        peer = SAME_AS.get(name, name)
        if peer in done:
            print("RESULT %s %d %s" % (name, a.C, done[peer]), flush=True)
            continue
        if make(peer, torch.zeros(1, 1), torch.zeros(1, dtype=torch.long), 2, {})[0] is None:
            print("SKIP %s %d no PyTorch version in heads_torch.py" % (name, a.C), flush=True)
            continue
        if a.C > a.probe_above:
            c1, c2 = a.probe_C, 2 * a.probe_C
            p1, p2 = time_head(name, a, c1, 1), time_head(name, a, c2, 1)
            if p1.startswith("ERROR") or p2.startswith("ERROR"):
                print("SKIP %s %d memory probe failed: %s" % (name, a.C, p1 if p1.startswith("ERROR") else p2),
                      flush=True)
                continue
            h1, h2 = float(p1.split()[1]), float(p2.split()[1])
            est = (h1 + (h2 - h1) / (c2 - c1) * (a.C - c1)) * 1.1 + 256
            avail = a.mem_mb if a.mem_mb > 0 else mem_available_mb()
            print("MEM %s %d %.0f %.0f" % (name, a.C, est, avail), flush=True)
            if est > avail:
                print("SKIP %s %d needs ~%.0f MB (peak at C=%d, %d extrapolated), %.0f MB available"
                      % (name, a.C, est, c1, c2, avail), flush=True)
                continue
        out = time_head(name, a, a.C, a.steps)
        if out.startswith("ERROR"):
            print("SKIP %s %d %s" % (name, a.C, out), flush=True)
        else:
            done[peer] = out
            print("RESULT %s %d %s" % (name, a.C, out), flush=True)


def read_cases(path):
    """cases of `heads.lua --check`: 'case name B D C R' then 'key v1 v2 ...' lines, 'end'."""
    cases, cur = [], None
    with open(path) as f:
        for line in f:
            p = line.split()
            if not p:
                continue
            if p[0] == "case":
                cur = {"name": p[1], "B": int(p[2]), "D": int(p[3]), "C": int(p[4]), "R": int(p[5])}
            elif p[0] == "end":
                cases.append(cur)
                cur = None
            else:
                cur[p[0]] = [float(v) for v in p[1:]]
    return cases


def rel(a, b):
    return (a - b).norm().item() / max(b.norm().item(), 1e-30)


def check(a):
    """every case's peer in float64 on fvl's inputs: loss and gradients against fvl's."""
    torch.set_num_threads(a.threads)
    bad = 0
    for cs in read_cases(a.check):
        name, B, D, C, R = cs["name"], cs["B"], cs["D"], cs["C"], cs["R"]
        dt = torch.float64
        x = torch.tensor(cs["x"], dtype=dt).view(B, D).requires_grad_()
        y = torch.tensor(cs["y"], dtype=torch.long)
        given = {"w": torch.tensor(cs["w"], dtype=dt).view(R, D)}
        if "margins" in cs:
            given["margins"] = torch.tensor(cs["margins"], dtype=dt)
        params, loss = make(SAME_AS.get(name, name), x, y, C, given)
        if params is None:
            print("CHECK %s no PyTorch version" % name)
            continue
        L = loss()
        L.backward()
        lt, lf = L.item(), cs["loss"][0]
        dl = abs(lt - lf) / max(abs(lt), 1e-6)
        dx = rel(torch.tensor(cs["gx"], dtype=dt).view(B, D), x.grad)
        dw = rel(torch.tensor(cs["gw"], dtype=dt).view(R, D), params[0].grad)
        ok = dl <= a.tol and dx <= a.gtol and dw <= a.gtol
        bad += 0 if ok else 1
        print("CHECK %s %.8g %.8g %.2e %.2e %.2e %s" % (name, lf, lt, dl, dx, dw, "ok" if ok else "FAIL"),
              flush=True)
    return 1 if bad else 0


def main():
    ap = argparse.ArgumentParser(description="PyTorch side of scripts/bench/heads.lua")
    ap.add_argument("--heads", default="softmax,normface,cosface,arcface,combined")
    ap.add_argument("--C", type=int, default=100000)
    ap.add_argument("--B", type=int, default=256)
    ap.add_argument("--D", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--probe-above", type=int, default=200000,
                    help="above this C, estimate each head's peak memory first and skip what would not fit")
    ap.add_argument("--probe-C", type=int, default=40000,
                    help="the memory probe's class counts: this and twice it (B×C buffers above glibc's 32 MB "
                    "mmap threshold, as at C: smaller ones are reused from the heap and do not extrapolate)")
    ap.add_argument("--mem-mb", type=float, default=0,
                    help="memory the peers may use (default: MemAvailable when each head starts)")
    ap.add_argument("--check", help="compare the peers with fvl's heads on the cases of this file (float64)")
    ap.add_argument("--tol", type=float, default=1e-5, help="--check: loss relative tolerance")
    ap.add_argument("--gtol", type=float, default=1e-4, help="--check: gradient relative tolerance (norm)")
    a = ap.parse_args()
    if a.check:
        raise SystemExit(check(a))
    bench(a)


if __name__ == "__main__":
    main()
