-- scripts/embed.lua — embeddings of a folder of identity folders or a .rec with a saved model.
--
--   fvl scripts/embed.lua MODEL.npz (FOLDER | TRAIN.rec) OUT.npy [--no-flip] [--batch 64] [--bgr]
--                         [--workers 2]
--
-- Writes OUT.npy (N×D float32, L2-normalised; unless --no-flip the raw outputs of each image and
-- its mirror are summed first), OUT-labels.npy (N int32, 1-based class ids) and OUT-paths.txt
-- (one line per row: the image file, or "FILE.rec#i" = the i-th image of the .rec).
local cli = require "fvl.cli"
local parser = cli.parser("fvl scripts/embed.lua",
  "Embeddings of a folder of identity folders or a .rec with a saved model: OUT.npy (N x D, " ..
  "L2-normalised), OUT-labels.npy (1-based class ids) and OUT-paths.txt.")
parser:argument("model", "MODEL.npz written by fvl.nn.save")
parser:argument("source", "a folder of identity folders, or FILE.rec")
parser:argument("out", "OUT.npy")
parser:flag("--no-flip", "no flip test (default: each image's and its mirror's raw outputs summed)")
parser:option("--batch", "batch size", "64"):convert(cli.integer("batch", 1))
parser:flag("--bgr", "feed channels as BGR")
parser:option("--workers", "decoding threads", "2"):convert(cli.integer("workers", 1))
local o = parser:parse(arg or {})
local opts = { flip = o.no_flip and "0" or "1", batch = o.batch, bgr = o.bgr and "1" or "0", workers = o.workers }
local pos = { o.model, o.source, o.out }
local function die(msg) io.stderr:write("embed.lua: " .. tostring(msg) .. "\n") os.exit(1) end
local model_path, src, out = pos[1], pos[2], pos[3]
if not out:match("%.npy$") then die("OUT must end in .npy, got '" .. out .. "'") end
local net, meta = fvl.nn.load(model_path)
if not net then die(meta) end
net:evaluate()
local is_rec = src:match("%.rec$") ~= nil
local ds, err = fvl.data.images{ rec = is_rec and src or nil, folder = (not is_rec) and src or nil,
                                 bgr = opts.bgr == "1" }
if not ds then die(err) end
local batch, flip = tonumber(opts.batch), opts.flip == "1"
local function run(x) return net:forward(x):detach() end
local ok, e = pcall(function()
  local loader = ds:loader{ batch = batch, shuffle = false, workers = tonumber(opts.workers) }
  local chunks, labels, index = {}, {}, {}
  fvl.no_grad(function()
    for b in loader do
      local emb = run(b.x)
      if flip then
        local W = b.x:size(4)
        local rev = {}
        for i = 1, W do rev[i] = W + 1 - i end
        emb = emb + run(b.x:index(4, fvl.tensor(rev, "int32")))
      end
      chunks[#chunks + 1] = emb:normalize(2)
      labels[#labels + 1] = b.y
      index[#index + 1] = b.index
    end
  end)
  local E = #chunks == 1 and chunks[1] or fvl.cat(chunks, 1)
  local Y = #labels == 1 and labels[1] or fvl.cat(labels, 1)
  local I = #index == 1 and index[1] or fvl.cat(index, 1)
  return { E, Y, I }
end)
if not ok then die(e) end
local E, Y, I = e[1], e[2], e[3]
local stem = out:gsub("%.npy$", "")
local okw, werr = fvl.save(out, E)
if not okw then die(werr) end
okw, werr = fvl.save(stem .. "-labels.npy", Y)
if not okw then die(werr) end
local f = io.open(stem .. "-paths.txt", "w") or die("cannot write " .. stem .. "-paths.txt")
for _, i in ipairs(I:totable()) do
  i = math.tointeger(i)
  f:write(is_rec and string.format("%s#%d", src, i) or ds:file(i), "\n")
end
f:close()
print(string.format("%s: %d embeddings of dimension %d (%d classes) from %s", out, E:size(1), E:size(2), ds.classes, src))
