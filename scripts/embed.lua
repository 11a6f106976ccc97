-- scripts/embed.lua — embeddings of a folder of identity folders or a .rec with a saved model.
--
--   fvl scripts/embed.lua MODEL.npz (FOLDER | TRAIN.rec) OUT.npy [--no-flip] [--batch 64]
--                         [--bgr] [--workers 2]
--
-- Writes OUT.npy (N×D float32, L2-normalised; by default the raw outputs of each image and its
-- mirror are summed first), OUT-labels.npy (N int32, 1-based class ids) and OUT-paths.txt (one
-- line per row: the image file, or "FILE.rec#i" = the i-th image of the .rec).
-- A bad argument or file: one line on stderr, exit status 1.
fvl = fvl or require "fvl"   -- also from a stock lua5.4 (LUA_CPATH reaching fvl.so)
local cli = require "fvl.cli"
local int = cli.integer
local parser = cli.parser("fvl scripts/embed.lua", "Embeddings of a folder of identity folders or a .rec with a saved model.")
parser:argument("model", "model file written by fvl.nn.save")
parser:argument("source", "a folder of identity folders, or a .rec file")
parser:argument("out", "output .npy file")
parser:flag("--no-flip", "embed the images only (no flip test)")
parser:option("--batch", "images per forward pass", "64"):convert(int("batch", 1))
parser:flag("--bgr", "feed the channels in B, G, R order")
parser:option("--workers", "decoding threads", "2"):convert(int("workers", 0))
local a = parser:parse(arg or {})
local function die(msg) io.stderr:write("embed.lua: " .. tostring(msg) .. "\n") os.exit(1) end
local model_path, src, out = a.model, a.source, a.out
if not out:match("%.npy$") then die("OUT must end in .npy, got '" .. out .. "'") end
local opts = { bgr = a.bgr and "1" or "0", workers = a.workers }
local net, meta = fvl.nn.load(model_path)
if not net then die(meta) end
net:evaluate()
local is_rec = src:match("%.rec$") ~= nil
local ds, err = fvl.data.images{ rec = is_rec and src or nil, folder = (not is_rec) and src or nil,
                                 bgr = opts.bgr == "1" }
if not ds then die(err) end
local want = type(meta) == "table" and type(meta.input) == "table" and meta.input
if want and (want[2] ~= ds.size[2] or want[3] ~= ds.size[3]) then   -- the loader does not resize
  die(string.format("the model takes %dx%d images (its meta.input) but %s holds %dx%d images: align and resize them "
                    .. "to the model's size first", want[3], want[2], src, ds.size[3], ds.size[2]))
end
local batch, flip = a.batch, not a.no_flip
local function run(x) return net:forward(x):detach() end
local ok, e = pcall(function()
  local loader = ds:loader{ batch = batch, shuffle = false, workers = tonumber(opts.workers) }
  -- N×D filled batch by batch (no fvl.cat of N/B pieces: it takes at most 64)
  local E, Y, I = nil, fvl.zeros({ ds.n }, "int32"), fvl.zeros({ ds.n }, "int32")
  local bar = fvl.progress.new { total = ds.n, title = "embed " .. src, unit = "img" }
  local pos = 1
  fvl.no_grad(function()
    for b in loader do
      local emb = run(b.x)
      if flip then
        local W = b.x:size(4)
        local rev = {}
        for i = 1, W do rev[i] = W + 1 - i end
        emb = emb + run(b.x:index(4, fvl.tensor(rev, "int32")))
      end
      local n = b.x:size(1)
      if not E then E = fvl.zeros({ ds.n, emb:size(2) }) end
      E:narrow(1, pos, n):copy(emb:normalize(2))
      Y:narrow(1, pos, n):copy(b.y)
      I:narrow(1, pos, n):copy(b.index)
      pos = pos + n
      bar:update(n)
    end
  end)
  bar:close()
  return { E, Y, I }
end)
if not ok then die(e) end
local E, Y, I = e[1], e[2], e[3]
local stem = out:gsub("%.npy$", "")
local okw, werr = fvl.save(out, E)
if not okw then die(werr) end
okw, werr = fvl.save(stem .. "-labels.npy", Y)
if not okw then die(werr) end
local lines = {}
for k, i in ipairs(I:totable()) do
  i = math.tointeger(i)
  lines[k] = (is_rec and string.format("%s#%d", src, i) or ds:file(i)) .. "\n"
end
okw, werr = fvl.sys.write_atomic(stem .. "-paths.txt", table.concat(lines))
if not okw then die(werr) end
print(string.format("%s: %d embeddings of dimension %d (%d classes) from %s", out, E:size(1), E:size(2), ds.classes, src))
