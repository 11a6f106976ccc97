-- scripts/verify.lua — insightface's verification table for a saved model on .bin packs.
--
--   fvl scripts/verify.lua MODEL.npz PACK.bin [PACK.bin ...] [--no-flip] [--batch 64] [--bgr]
--                          [--size 112x112] [--json out.json]
--
-- MODEL is a file written by fvl.nn.save (architecture + weights). For each pack it prints
-- 10-fold accuracy ± std, VAL@FAR=1e-3, XNorm, EER, AUC and TAR@FAR=1e-3 (fvl.eval.bin_pack:
-- flip test summing raw embeddings, last partial batch included). The image size comes from
-- the model's meta.input (fvl.nn.save{meta = {input = {3, h, w}}}) unless --size is given.
-- A bad argument or file: one line on stderr, exit status 1.
fvl = fvl or require "fvl"   -- also from a stock lua5.4 (LUA_CPATH reaching fvl.so)
local cli = require "fvl.cli"
local int = cli.integer
local parser = cli.parser("fvl scripts/verify.lua", "insightface's verification table for a saved model on .bin packs.")
parser:argument("model", "model file written by fvl.nn.save")
parser:argument("packs", "insightface .bin verification packs"):args("+")
parser:flag("--no-flip", "embed the images only (no flip test)")
parser:option("--batch", "images per forward pass", "64"):convert(int("batch", 1))
parser:flag("--bgr", "feed the channels in B, G, R order")
parser:option("--size", "image size HxW (default: the model's meta.input, else 112x112)")
parser:option("--json", "also write the results to this JSON file")
local a = parser:parse(arg or {})
local function die(msg) io.stderr:write("verify.lua: " .. tostring(msg) .. "\n") os.exit(1) end
local h, w = 112, 112
if a.size then
  h, w = a.size:match("^(%d+)x(%d+)$")
  if not h then die("--size must be HxW, e.g. 112x112, got '" .. a.size .. "'") end
  h, w = tonumber(h), tonumber(w)
end
local files = { a.model }
for _, p in ipairs(a.packs) do files[#files + 1] = p end
local opts = { flip = a.no_flip and "0" or "1", bgr = a.bgr and "1" or "0", json = a.json }
local batch = a.batch

local net, meta = fvl.nn.load(files[1])
if not net then die(meta) end
if not a.size and type(meta) == "table" and type(meta.input) == "table" then  -- from fvl.nn.save's meta
  h, w = meta.input[2] or h, meta.input[3] or w
end
net:evaluate()
print(string.format("model %s, flip %s, batch %d, %sx%s %s", files[1], opts.flip == "1" and "on" or "off",
                    batch, h, w, opts.bgr == "1" and "BGR" or "RGB"))
print(string.format("%-12s %7s %18s %22s %8s %7s %7s %12s", "pack", "pairs", "accuracy", "VAL@FAR=1e-3",
                    "XNorm", "EER", "AUC", "TAR@FAR=1e-3"))
local rows = {}
for i = 2, #files do
  local ok, r = pcall(fvl.eval.bin_pack, net, files[i], { flip = opts.flip == "1", batch = batch,
                                                           bgr = opts.bgr == "1", size = { tonumber(h), tonumber(w) },
                                                           progress = true })
  if not ok then die(r) end
  local val = r.val_1e3
  local tar = r.tar_at_far and r.tar_at_far[1e-3]
  print(string.format("%-12s %7d %9.2f ± %5.2f %% %22s %8.3f %6.2f%% %7.4f %12s", r.name, r.pairs,
                      100 * r.accuracy, 100 * r.std,
                      val and string.format("%.2f ± %.2f %%", 100 * val.tar, 100 * val.std) or "n/a",
                      r.xnorm, 100 * r.eer, r.auc, tar and string.format("%.2f %%", 100 * tar) or "n/a"))
  rows[#rows + 1] = { pack = files[i], name = r.name, pairs = r.pairs, accuracy = r.accuracy, std = r.std,
                      val = val and val.tar or nil, val_std = val and val.std or nil, xnorm = r.xnorm,
                      eer = r.eer, auc = r.auc, tar_at_far_1e3 = tar }
end
if opts.json then
  local okw, werr = fvl.sys.write_atomic(opts.json, fvl.json.encode({ model = files[1], flip = opts.flip == "1",
                                                                      results = rows }, { nonfinite = "null" }) .. "\n")
  if not okw then die(werr) end
end
