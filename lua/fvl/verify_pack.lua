-- fvl.verify_pack — insightface's verification protocol on a .bin pack: fvl.eval.bin_pack.
--
--   local r = fvl.eval.bin_pack(net, "lfw.bin", {flip = true, batch = 64})
--   print(r.line)   --> lfw: acc 99.50 ± 0.30 %  VAL@FAR=1e-3 98.10 ± 0.80 %  XNorm 22.31 ...
--
-- Embeddings: every image (normalised (x − 127.5)/127.5, RGB unless bgr = true) goes through the
-- model in evaluation mode without gradients, in batches of `batch`, the last partial batch
-- included; with flip = true the mirrored image goes through too and the two raw outputs are
-- summed before L2 normalisation. XNorm = mean L2 norm of the raw outputs (both views), as
-- insightface logs it. Pair i = images (2i − 1, 2i); score = cosine of the normalised embeddings
-- (equivalently d² = 2 − 2 cos). 10-fold accuracy ± std with the threshold chosen on the other
-- 9 folds, VAL@FAR=1e-3 per fold, plus TAR@FAR, EER and AUC over all pairs (fvl.eval.verification).
-- progress = true draws a progress bar with images/s and ETA on stderr (a 12,000-image pack through
-- an IResNet-50 on a CPU takes minutes).
local fvl = require "fvl.core"
local util = require "fvl.util"

local M = {}
local fail = function(msg) error(msg, 0) end

local function run_model(model, x)
  if type(model) == "function" then return model(x) end
  return model:forward(x)
end

function M.embed_pack(model, pack, opts)
  local fn = "bin_pack"
  local B = opts.batch
  local n = pack.images
  local emb, xnorm_sum, xnorm_cnt = nil, 0, 0   -- emb: n×D, filled batch by batch (no fvl.cat of
                                                -- n/B pieces: a 12,000-image pack is 188 batches of 64)
  local dopts = { size = opts.size, bgr = opts.bgr, channels = opts.channels, resize = opts.resize }
  fvl.no_grad(function()
    local i = 1
    while i <= n do
      local b = math.min(B, n - i + 1)          -- the last partial batch too
      local x = pack:decode(i, b, dopts)
      local e = run_model(model, x)
      if not util.is_tensor(e) or e:dim() ~= 2 or e:size(1) ~= b then
        fail(string.format("%s: the model must return B×D embeddings, got %s for a batch of %d", fn,
                           util.is_tensor(e) and util.shape_str(e) or type(e), b))
      end
      e = e:detach():contiguous()
      xnorm_sum = xnorm_sum + e:norm(2, 2):sum():item()
      xnorm_cnt = xnorm_cnt + b
      if opts.flip then
        local f = run_model(model, pack:decode(i, b, { size = opts.size, bgr = opts.bgr, resize = opts.resize,
                                                     channels = opts.channels, flip = true }))
        f = f:detach():contiguous()
        xnorm_sum = xnorm_sum + f:norm(2, 2):sum():item()
        xnorm_cnt = xnorm_cnt + b
        e = e + f
      end
      if not emb then emb = fvl.zeros({ n, e:size(2) }) end
      emb:narrow(1, i, b):copy(e)
      if opts.progress then opts.progress:update(b) end
      i = i + b
    end
  end)
  return emb, xnorm_sum / math.max(1, xnorm_cnt)
end

-- the pack's images (the first one's size) against the size the model takes: with resize, a
-- one-line note on stderr (returned; printed once per pack and size in a process: a training run
-- verifies the same pack at every epoch); without, an error naming both sizes
local noted = {}
function M.size_note(fn, pack, o)
  if pack.images == 0 then return nil end
  local img = require("fvl.data").decode_image(pack:bytes(1))
  local h, w = img:size(2), img:size(3)
  if h == o.size[1] and w == o.size[2] then return nil end
  if not o.resize then
    fail(string.format("%s: %s holds %dx%d images but the model takes %dx%d (resize = true resizes them)",
                       fn, pack.path, w, h, o.size[2], o.size[1]))
  end
  local note = string.format("%s: %s: resizing its %dx%d images to %dx%d, the model's input (bilinear)",
                             fn, pack.name or pack.path, w, h, o.size[2], o.size[1])
  if not noted[note] then
    noted[note] = true
    io.stderr:write(note, "\n")
  end
  return note
end

function M.bin_pack(model, pack, opts)
  local fn = "bin_pack"
  opts = util.check_opts(fn, opts, { "flip", "batch", "size", "bgr", "channels", "folds", "name", "progress", "resize" })
  if type(model) ~= "function" and not (type(model) == "table" and model.forward) then
    fail(fn .. ": model must be an fvl.nn module or a function images -> embeddings, got " .. type(model))
  end
  if type(pack) == "string" then
    local p, err = require("fvl.data").bin_pack(pack)
    if not p then fail(err) end
    pack = p
  elseif type(pack) ~= "table" or type(pack.decode) ~= "function" or type(pack.bytes) ~= "function" then
    fail(fn .. ": pack must be a .bin path or a fvl.data.bin_pack result, got " .. type(pack))
  end
  local o = {
    flip = util.boolean(fn, "flip", opts.flip, true),
    batch = util.integer(fn, "batch", opts.batch, 64, 1),
    bgr = util.boolean(fn, "bgr", opts.bgr, false),
    channels = util.integer(fn, "channels", opts.channels, 3, 1),
    size = opts.size or { 112, 112 },
    resize = util.boolean(fn, "resize", opts.resize, true),
  }
  local insize = opts.size == nil and type(model) == "table" and math.tointeger(model.input_size)
  if insize then o.size = { insize, insize } end   -- the model's own input (fvl.nn.iresnet{input_size =})
  if type(o.size) ~= "table" or #o.size ~= 2 then fail(fn .. ": size must be {h, w}") end
  local note = M.size_note(fn, pack, o)
  local folds = util.integer(fn, "folds", opts.folds, 10, 2)
  if pack.pairs < folds then
    fail(string.format("%s: %s has %d pairs, fewer than folds = %d", fn, pack.path, pack.pairs, folds))
  end
  local was_training = type(model) == "table" and model.training
  if was_training and model.evaluate then model:evaluate() end
  if util.boolean(fn, "progress", opts.progress, false) then   -- a bar (images/s, ETA) on stderr
    o.progress = require("fvl.progress").new { total = pack.images, title = (opts.name or pack.name) .. " (verification)",
                                               unit = "img" }
  end
  local ok, emb, xnorm = pcall(M.embed_pack, model, pack, o)
  if o.progress then o.progress:close() end
  if was_training and model.train then model:train(true) end
  if not ok then error(emb, 0) end
  local e = emb:normalize(2)
  local N = pack.pairs
  local odd, even = {}, {}
  for i = 1, N do odd[i], even[i] = 2 * i - 1, 2 * i end
  local a = e:index(1, fvl.tensor(odd, "int32"))
  local b = e:index(1, fvl.tensor(even, "int32"))
  local scores = (a * b):sum(2):reshape(N)
  local eval = require "fvl.eval"
  local r = eval.verification(scores, pack.issame, { folds = folds })
  r.xnorm = xnorm
  r.pairs = N
  r.name = opts.name or pack.name
  r.flip = o.flip
  r.embeddings = emb
  r.note = note
  local val = r.val and r.val[1e-3]
  r.val_1e3 = val
  r.line = string.format("%s: acc %.2f ± %.2f %%  VAL@FAR=1e-3 %s  XNorm %.3f  EER %.2f %%  AUC %.4f  (%d pairs%s)",
                         r.name, 100 * r.accuracy, 100 * r.std,
                         val and string.format("%.2f ± %.2f %%", 100 * val.tar, 100 * val.std) or "n/a",
                         xnorm, 100 * r.eer, r.auc, N, o.flip and ", flip" or "")
  return r
end

return M
