-- boundary_animations.lua — the README's animated two-class boundaries of the seed's six margin
-- heads (their default margins; SphereFace along its λ annealing, CurricularFace along t):
--   fvl scripts/boundary_animations.lua [DIR]        (default docs/img) → DIR/boundary_<head>.gif
local fvl = fvl or require "fvl"
local cli = require "fvl.cli"
local parser = cli.parser("fvl scripts/boundary_animations.lua",
  "The README's animated two-class boundaries of the seed's six margin heads: DIR/boundary_<head>.gif.")
parser:argument("dir", "output directory", "docs/img"):args("?")
local dir = parser:parse(arg or {}).dir or "docs/img"
os.execute("mkdir -p '" .. dir:gsub("'", "'\\''") .. "'")
local files = fvl.plot.boundary_animations({
  { "sphereface", m = 4 }, { "cosface", m = 0.35 }, { "arcface", m = 0.5 },
  { "mv_softmax", kind = "arc", m = 0.5, t = 0.2 }, { "curricularface", m = 0.5 }, { "npcface" },
}, { dir = dir, frames = 20, hold = 6, width = 420, height = 420, grid = 161 })
for _, f in ipairs(files) do print(f) end
