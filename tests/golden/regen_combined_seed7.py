# Regenerates combined_mm_cavaface for seed 7 with sample 2 moved from θ_y = π-0.30 (exactly on
# cavaface's mm threshold cos(π-m2), m2 = 0.3: a branch that float rounding decides) to π-0.33.
# The reference implementation losses_ref.py is not part of the project: FVL_ORACLE_DIR names its folder.
import os, sys, json, math, torch
sys.path.insert(0, os.environ.get("FVL_ORACLE_DIR", "."))
import losses_ref as L
torch.set_default_dtype(L.DT)
orig = L.make_inputs
def shifted(seed, B=8, D=16, C=11, K=1, norm_range=(0.5, 3.0)):
    x, W, y, g = orig(seed, B, D, C, K, norm_range)
    u = W[int(y[2]) * K] / W[int(y[2]) * K].norm()
    r = x[2].norm(); d = x[2] / r
    w = d - (d @ u) * u; w = w / w.norm()
    th = math.pi - 0.33
    x = x.clone(); x[2] = r * (math.cos(th) * u + math.sin(th) * w)
    return x, W, y, g
L.make_inputs = shifted
specs = [s for s in L.case_specs(7, 32, 24, 40) if s["name"] == "combined_mm_cavaface"]
L.case_specs = lambda seed, B, D, C: specs
doc, rep = L.generate(7, None, 32, 24, 40, check=True)
print(rep)
case = doc["cases"][0]
case["name"] = "combined_mm_cavaface_s2shift"
case["note"] = "sample 2 at theta = pi-0.33 (the generator puts it at pi-0.30 = the mm threshold)"
json.dump(case, open("/tmp/combined_shift.json", "w"))
