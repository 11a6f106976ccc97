-- End-to-end face-data path, driven by tests/cli/faces_e2e.sh: Fashion-MNIST images encoded to
-- JPEG → a folder of identity folders and a .rec (insightface layout) → the threaded loader →
-- a few training steps → fvl.nn.save → fvl.nn.load → a .bin pack → fvl.eval.bin_pack.
-- usage: fvl tests/cli/faces_e2e.lua DIR   (DIR exists and is empty)
local dir = assert(arg[1], "usage: faces_e2e.lua DIR")
local data = fvl.data
fvl.manual_seed(1)
local fm = assert(data.fashion_mnist{ split = "test", limit = 600 })
local function rgb(i)   -- image i as 3×28×28 pixels 0..255
  local g = fm.images:narrow(1, i, 1):reshape(1, 28, 28):mul(255)
  return fvl.cat({ g, g, g }, 1)
end
local function check(cond, msg) if not cond then error(msg, 2) end end

-- 1. a folder of identity folders (JPEG) from the first 400 images
for c = 1, 10 do assert(os.execute(string.format("mkdir -p '%s/faces/class_%02d'", dir, c))) end
for i = 1, 400 do
  local f = assert(io.open(string.format("%s/faces/class_%02d/%04d.jpg", dir, fm.labels:get(i), i), "wb"))
  f:write(data.encode_image(rgb(i), { quality = 95 }))
  f:close()
end
local folder = assert(data.images{ folder = dir .. "/faces" })
check(folder.n == 400 and folder.classes == 10, "folder: " .. tostring(folder))

-- 2. the same images packed into a .rec with the writer (insightface layout + property)
assert(os.execute("mkdir -p '" .. dir .. "/rec'"))
local info = assert(data.folder_to_rec(dir .. "/faces", dir .. "/rec/train.rec"))
check(info.images == 400, "folder_to_rec")
local ds = assert(data.images{ rec = dir .. "/rec/train.rec" })
check(ds.n == 400 and ds.classes == 10 and ds.size[2] == 28, "rec: " .. tostring(ds))
check(table.concat(ds.labels:totable(), ",") == table.concat(folder.labels:totable(), ","), "labels differ")

-- 3. train a few steps from the .rec through the threaded loader
local net = fvl.nn.Sequential{ fvl.nn.Flatten(), fvl.nn.Linear(3 * 28 * 28, 64), fvl.nn.BatchNorm1d(64),
                               fvl.nn.PReLU(64), fvl.nn.Linear(64, 16) }
local head = fvl.loss.arcface{ dim = 16, classes = 10, s = 16, m = 0.2 }
local opt = fvl.optim.sgd({ net, head }, { lr = 0.05, momentum = 0.9 })
local loader = ds:loader{ batch = 64, flip = true, crop = 2, workers = 2, seed = 3 }
local first, last
for epoch = 1, 4 do
  local sum, n = 0, 0
  for b in loader do
    opt:zero_grad()
    local loss = head(net(b.x), b.y)
    loss:backward()
    opt:step()
    sum, n = sum + loss:item(), n + 1
  end
  if epoch == 1 then first = sum / n end
  last = sum / n
end
check(last < first, string.format("training loss did not fall: %g -> %g", first, last))
print(string.format("train: loss %.3f -> %.3f over 4 epochs of %d batches", first, last, #loader))

-- 4. save, load, same outputs
net:evaluate()
assert(fvl.nn.save(dir .. "/model.npz", net, { meta = { input = { 3, 28, 28 } } }))
local net2, meta = assert(fvl.nn.load(dir .. "/model.npz"))
net2:evaluate()
check(meta.input[2] == 28, "meta")
local x = ds:batch({ 1, 2, 3, 4, 5 })
local d = (net:forward(x) - net2:forward(x)):abs():max():item()
check(d == 0, "loaded model differs by " .. d)

-- 5. a .bin pack of 150 pairs from images 401..600 (same class / different class alternating)
local bins, issame = {}, {}
local byclass = {}
for i = 401, 600 do
  local c = fm.labels:get(i)
  byclass[c] = byclass[c] or {}
  table.insert(byclass[c], i)
end
local k = 0
for p = 1, 150 do
  local c = (p % 10) + 1
  local list = byclass[c]
  local a = list[(p % #list) + 1]
  local b
  if p % 2 == 1 then
    b = list[((p + 3) % #list) + 1]
    if b == a then b = list[((p + 4) % #list) + 1] end
  else
    local other = byclass[(c % 10) + 1]
    b = other[(p % #other) + 1]
  end
  bins[#bins + 1] = data.encode_image(rgb(a))
  bins[#bins + 1] = data.encode_image(rgb(b))
  issame[p] = p % 2 == 1
  k = k + 1
end
assert(data.write_bin_pack(dir .. "/val.bin", bins, issame))
local r = fvl.eval.bin_pack(net2, dir .. "/val.bin", { size = { 28, 28 }, batch = 37 })
local r_all = fvl.eval.bin_pack(net2, dir .. "/val.bin", { size = { 28, 28 }, batch = 300 })
check(r.embeddings:size(1) == 300, "every image embedded (last partial batch included)")
check((r.embeddings - r_all.embeddings):abs():max():item() < 1e-4, "batching changes embeddings")
check(r.accuracy > 0.6, "accuracy " .. r.accuracy)
print(r.line)
