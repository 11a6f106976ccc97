-- scripts/verify.lua — insightface's verification table for a saved model on .bin packs.
--
--   fvl scripts/verify.lua MODEL.npz PACK.bin [PACK.bin ...] [flip=1] [batch=64] [bgr=0]
--                          [size=112x112] [json=out.json]
--
-- MODEL is a file written by fvl.nn.save (architecture + weights). For each pack it prints
-- 10-fold accuracy ± std, VAL@FAR=1e-3, XNorm, EER, AUC and TAR@FAR (fvl.eval.bin_pack: flip
-- test summing raw embeddings, last partial batch included). Exit status 1 on a bad argument
-- or file, with the message on stderr.
local usage = "usage: fvl scripts/verify.lua MODEL.npz PACK.bin [PACK.bin ...] [flip=1] [batch=64] [bgr=0] [size=112x112] [json=out.json]"
local opts = { flip = "1", batch = "64", bgr = "0", size = "112x112" }
local size_given = false
local files = {}
for _, a in ipairs(arg or {}) do
  local k, v = a:match("^(%w+)=(.*)$")
  if k then
    if opts[k] == nil and k ~= "json" then io.stderr:write("verify.lua: unknown option '" .. k .. "'\n" .. usage .. "\n") os.exit(1) end
    opts[k] = v
    if k == "size" then size_given = true end
  else
    files[#files + 1] = a
  end
end
if #files < 2 then io.stderr:write(usage .. "\n") os.exit(1) end
local function die(msg) io.stderr:write("verify.lua: " .. tostring(msg) .. "\n") os.exit(1) end
local h, w = opts.size:match("^(%d+)x(%d+)$")
if not h then die("size must be HxW, got '" .. opts.size .. "'") end
local batch = tonumber(opts.batch)
if not batch or batch < 1 or batch ~= math.floor(batch) then die("batch must be a positive integer") end

local net, meta = fvl.nn.load(files[1])
if not net then die(meta) end
if not size_given and type(meta) == "table" and type(meta.input) == "table" then  -- from fvl.nn.save's meta
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
                                                           bgr = opts.bgr == "1", size = { tonumber(h), tonumber(w) } })
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
  local f = io.open(opts.json, "w") or die("cannot write " .. opts.json)
  f:write(fvl.json.encode({ model = files[1], flip = opts.flip == "1", results = rows }, { nonfinite = "null" }), "\n")
  f:close()
end
