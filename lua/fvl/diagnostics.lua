-- fvl.diagnostics — is a trained embedding healthy or collapsed? (also reachable as
-- fvl.eval.embedding_stats / centre_stats / class_recall / diagnose / collapse_text)
--
--   local e = fvl.eval.embedding_stats(emb)            -- {n, norm_mean, norm_std, norm_min, norm_max, mrl}
--   local c = fvl.eval.centre_stats(head.weight, {angle = 5})
--       --> {classes, mrl, min_angle, close_pairs, largest_cluster}
--   local r = fvl.eval.class_recall(pred, labels, 10)  -- {recall = {...}, min = , low = {class ids}}
--   local d = fvl.eval.diagnose{emb = emb, labels = y, pred = pred, centres = head.weight,
--                               classes = 10}          -- all of the above, flat, plus
--       d.collapsed (boolean), d.reasons (list of strings)
--   print(fvl.eval.collapse_text(d))                   -- "collapsed: 4 centres within 5°; ..."
--
-- Definitions:
--   norm_*: statistics of the row norms |x_i| (std is the population std).
--   mrl (mean resultant length) of unit vectors u_i: |mean_i u_i| in [0, 1]; 0 when the
--     directions are spread evenly, 1 when all point the same way. Computed on x̂ = x/|x| and on
--     the normalised class centres ŵ_k.
--   min_angle: smallest angle in degrees between two class centres; close_pairs: pairs of centres
--     within `angle` degrees (default 5); largest_cluster: the most centres within `angle` of one
--     centre, itself included (1 when no two centres are that close).
--   class recall: the fraction of class k's samples predicted as k; low = classes whose recall
--     is below `recall` (default 0.02).
--   merged pairs (with predictions, at most 1,000 classes): two centres within `angle` whose
--     classes are confused with each other: at least `confusion` (default 0.15) of the two
--     classes' samples predicted as the other one of the pair. Two classes on one direction are
--     one class for a cosine threshold; the confusion confirms that the model lost the difference
--     (a close pair whose classes are still told apart, e.g. by the norms and biases of an
--     unnormalised head, is not flagged).
--   collapsed: largest_cluster >= `cluster` (default 3: several centres on one direction), a
--     class with recall below `recall` (a class the model has abandoned), or a merged pair.
local fvl = require "fvl.core"
local util = require "fvl.util"
local fail = util.fail

local D = {}

local function check_matrix(fn, key, t)
  if not util.is_tensor(t) or t:dim() ~= 2 then
    fail(string.format("%s: %s must be a 2-D tensor (rows × dim), got %s", fn, key,
                       util.is_tensor(t) and util.shape_str(t) or type(t)))
  end
  if t:size(1) < 1 then fail(string.format("%s: %s has no rows", fn, key)) end
  return t
end

-- |mean of the normalised rows| (rows of zero length count as zero vectors)
local function mrl_of(t)
  local n = t:norm(2, 2):reshape(t:size(1), 1):clamp(1e-12, math.huge)
  local m = (t / n):mean(1)
  return m:norm():item()
end

-- fvl.eval.embedding_stats(emb) -> {n, norm_mean, norm_std, norm_min, norm_max, mrl}: the row norms
-- of an N×D embedding matrix and the mean resultant length (|mean of the normalised rows|: near 1
-- when every embedding points the same way, a collapse). Errors: emb not a matrix with rows.
function D.embedding_stats(emb, opts)
  local fn = "embedding_stats"
  util.check_opts(fn, opts, {})
  local out
  fvl.no_grad(function()
    emb = check_matrix(fn, "emb", emb):detach():float()
    local n = emb:norm(2, 2)
    local mean = n:mean():item()
    local var = math.max(0, (n * n):mean():item() - mean * mean)
    out = { n = emb:size(1), norm_mean = mean, norm_std = math.sqrt(var), norm_min = n:min():item(),
            norm_max = n:max():item(), mrl = mrl_of(emb) }
  end)
  return out
end

-- fvl.eval.centre_stats(centres [, opts]) -> {classes, mrl, min_angle, close_pairs,
-- largest_cluster, pairs}: the class centres' (a head's weight) smallest pairwise angle in degrees,
-- the number of pairs closer than opts.angle (5°), the largest group of centres within that angle
-- of one centre, their mean resultant length, and (up to 1,000 classes) the close pairs
-- themselves, pairs = {{a =, b =, angle =}, ...} (nil when there is none).
function D.centre_stats(centres, opts)
  local fn = "centre_stats"
  opts = util.check_opts(fn, opts, { "angle" })
  local angle = util.number(fn, "angle", opts.angle, 5, 0, 180)
  local out
  fvl.no_grad(function()
    local w = check_matrix(fn, "centres", centres):detach():float()
    local C = w:size(1)
    out = { classes = C, mrl = mrl_of(w), min_angle = 180, close_pairs = 0, largest_cluster = 1 }
    if C < 2 then return end
    local wn = fvl.normalize(w, 2)
    local cos = wn:matmul(wn:t()):contiguous()
    for k = 1, C do cos:set(k, k, -2) end            -- a centre is not its own neighbour
    local cmax = math.min(1, math.max(-1, cos:max():item()))
    out.min_angle = math.deg(math.acos(cmax))
    local near = cos:ge(math.cos(math.rad(angle))):float()
    out.close_pairs = math.floor(near:sum():item() / 2 + 0.5)
    out.largest_cluster = math.floor(near:sum(2):max():item() + 0.5) + 1
    -- the close pairs themselves (a < b, angle in degrees), for up to 1,000 classes
    if out.close_pairs > 0 and C <= 1000 then
      out.pairs = {}
      local ct = cos:totable()
      local cmin = math.cos(math.rad(angle))
      for a = 1, C do
        for b = a + 1, C do
          local v = ct[a][b]
          if v >= cmin then
            out.pairs[#out.pairs + 1] = { a = a, b = b, angle = math.deg(math.acos(math.min(1, math.max(-1, v)))) }
          end
        end
      end
    end
  end)
  return out
end

-- fvl.eval.class_recall(pred, labels, classes [, opts]) -> {recall = {per class}, min, low}: each
-- class's recall of 1-based predictions pred against labels (false for classes without samples),
-- the smallest, and the classes below opts.recall (0.02). Errors: lengths that differ; a label
-- outside 1..classes.
function D.class_recall(pred, labels, classes, opts)
  local fn = "class_recall"
  opts = util.check_opts(fn, opts, { "recall" })
  local thr = util.number(fn, "recall", opts.recall, 0.02, 0, 1)
  local C = util.integer(fn, "classes", classes, nil, 1)
  local p = util.is_tensor(pred) and pred:totable() or pred
  local y = util.is_tensor(labels) and labels:totable() or labels
  if type(p) ~= "table" or type(y) ~= "table" then fail(fn .. ": pred and labels must be 1-D tensors or lists") end
  if #p ~= #y then fail(string.format("%s: pred has %d values but labels has %d", fn, #p, #y)) end
  local hit, cnt = {}, {}
  for k = 1, C do hit[k], cnt[k] = 0, 0 end
  for i = 1, #y do
    local k = y[i]
    if type(k) ~= "number" or k < 1 or k > C or k ~= math.floor(k) then
      fail(string.format("%s: labels[%d] = %s is outside 1..%d", fn, i, tostring(k), C))
    end
    cnt[k] = cnt[k] + 1
    if p[i] == k then hit[k] = hit[k] + 1 end
  end
  local out = { recall = {}, min = 1, low = {} }
  for k = 1, C do
    if cnt[k] > 0 then
      local r = hit[k] / cnt[k]
      out.recall[k] = r
      if r < out.min then out.min = r end
      if r < thr then out.low[#out.low + 1] = k end
    else
      out.recall[k] = false                         -- no sample of this class
    end
  end
  return out
end

-- the fraction of the samples of classes a and b predicted as the other one of the pair
local function mutual_confusion(p, y, a, b)
  local n, wrong = 0, 0
  for i = 1, #y do
    local k = y[i]
    if k == a or k == b then
      n = n + 1
      if p[i] == (k == a and b or a) then wrong = wrong + 1 end
    end
  end
  return n > 0 and wrong / n or 0
end

--- Everything at once, flat (suitable for sweep metrics and results files).
--- t = {emb=, centres=, pred=, labels=, classes=, angle=5, recall=0.02, cluster=3, confusion=0.15}
--- Adds merged_pairs (count) and merged ({a, b, angle, confusion} per merged pair) when pred,
--- labels and centres are given.
function D.diagnose(t)
  local fn = "diagnose"
  t = util.check_opts(fn, t, { "emb", "centres", "pred", "labels", "classes", "angle", "recall", "cluster",
                               "confusion" })
  local angle = util.number(fn, "angle", t.angle, 5, 0, 180)
  local rthr = util.number(fn, "recall", t.recall, 0.02, 0, 1)
  local cluster = util.integer(fn, "cluster", t.cluster, 3, 2)
  local cthr = util.number(fn, "confusion", t.confusion, 0.15, 0, 1)
  local cpairs
  local d = { collapsed = false, reasons = {} }
  if t.emb ~= nil then
    local e = D.embedding_stats(t.emb)
    d.norm_mean, d.norm_std, d.norm_min, d.norm_max, d.mrl_x = e.norm_mean, e.norm_std, e.norm_min, e.norm_max, e.mrl
  end
  if t.centres ~= nil then
    local c = D.centre_stats(t.centres, { angle = angle })
    d.mrl_centres, d.min_centre_angle, d.close_centre_pairs, d.largest_centre_cluster =
      c.mrl, c.min_angle, c.close_pairs, c.largest_cluster
    cpairs = c.pairs
    if c.largest_cluster >= cluster then
      d.collapsed = true
      d.reasons[#d.reasons + 1] = string.format("%d centres within %g° of one centre", c.largest_cluster, angle)
    end
  end
  if t.pred ~= nil then
    if t.labels == nil or t.classes == nil then fail(fn .. ": pred needs labels= and classes=") end
    local r = D.class_recall(t.pred, t.labels, t.classes, { recall = rthr })
    d.min_recall, d.low_recall_classes, d.recall = r.min, #r.low, r.recall
    if #r.low > 0 then
      d.collapsed = true
      d.reasons[#d.reasons + 1] = string.format("%d class%s with recall < %g%% (class %s)", #r.low,
        #r.low == 1 and "" or "es", 100 * rthr, table.concat(r.low, ", "))
    end
    if t.centres ~= nil and t.classes <= 1000 then
      local p = util.is_tensor(t.pred) and t.pred:totable() or t.pred
      local y = util.is_tensor(t.labels) and t.labels:totable() or t.labels
      d.merged_pairs, d.merged = 0, {}
      for _, pr in ipairs(cpairs or {}) do
        local conf = mutual_confusion(p, y, pr.a, pr.b)
        if conf >= cthr then
          d.merged_pairs = d.merged_pairs + 1
          d.merged[#d.merged + 1] = { a = pr.a, b = pr.b, angle = pr.angle, confusion = conf }
          d.collapsed = true
          d.reasons[#d.reasons + 1] = string.format("classes %d and %d merged (centres %.1f° apart, %.0f%% of " ..
            "their samples predicted as the other)", pr.a, pr.b, pr.angle, 100 * conf)
        end
      end
    end
  end
  return d
end

-- fvl.eval.collapse_text(d) -> string: "healthy", or "collapsed: <reasons>" for a table from
-- fvl.eval.diagnose.
function D.collapse_text(d)
  if type(d) ~= "table" then fail("collapse_text: d must be a table from fvl.eval.diagnose, got " .. util.typename(d)) end
  if not d.collapsed then return "healthy" end
  if type(d.reasons) ~= "table" then fail("collapse_text: d.reasons must be a list of strings, got " .. util.typename(d.reasons)) end
  local reasons = {}
  for i, r in ipairs(d.reasons) do reasons[i] = tostring(r) end
  return "collapsed: " .. table.concat(reasons, "; ")
end

return D
