-- fvl.megaface — MegaFace feature files and identification with distractors, installed into
-- fvl.eval (engine/megaface.c; docs/evaluation.md "MegaFace").
--
--   fvl.eval.export_megaface("feat/facescrub", emb, names, {suffix = "_fvl.bin"})
--   local r = fvl.eval.megaface_rank1(probe_emb, probe_labels, distractor_emb)
--   r.rank1  r.cmc[k]  r.tar_at_far[1e-6]  r.n_pairs
local fvl = require "fvl.core"
local util = require "fvl.util"
local M = fvl._megaface
local megaface = {}

local fail = util.fail

local function check_path(fn, key, v)
  if type(v) ~= "string" or v == "" then
    fail(string.format("%s: %s must be a non-empty string (a path), got %s", fn, key,
                       type(v) == "string" and "''" or type(v)))
  end
end

--- fvl.eval.save_megaface_feature(path, vec): writes one feature (a 1-D float32 tensor of D
--- finite values) as the MegaFace devkit's feature file — four little-endian int32 (D, 1, 4, 5 =
--- 32-bit float) then the D float32 — atomically (a temporary file renamed over path).
--- Errors: not 1-D, non-finite values, an unwritable path.
function megaface.save_megaface_feature(path, vec)
  check_path("save_megaface_feature", "path", path)
  return M.save(path, vec)
end

--- fvl.eval.load_megaface_feature(path) -> tensor: reads one devkit feature file into a 1-D
--- float32 tensor of D values. Strict: the header must be (D >= 1, 1, 4, 5), the file exactly
--- 16 + 4·D bytes, every value finite; otherwise an error naming the file and what was found.
function megaface.load_megaface_feature(path)
  check_path("load_megaface_feature", "path", path)
  return M.load(path)
end

local function check_names(fn, names, n)
  if type(names) ~= "table" then
    fail(string.format("%s: names must be a list of relative paths (one per row), got %s", fn, type(names)))
  end
  if #names ~= n then
    fail(string.format("%s: emb has %d rows but names has %d entries (one file name per row)", fn, n, #names))
  end
end

--- fvl.eval.export_megaface(dir, emb, names [, opts]) -> count: writes row i of emb (N×D) to
--- dir/names[i]..suffix as a devkit feature file, making the directories — the layout the
--- devkit's run_experiment.py reads (names as its image lists give them, e.g.
--- "Adam_Brody/Adam_Brody_1.png"; suffix = its file_ending argument). opts: suffix
--- ("_fvl.bin"). Each file goes through a temporary and a rename (never half-written under its
--- name) and one syncfs at the end makes them durable (no fsync per file: 10⁶ files stay
--- minutes, not hours). Errors: rows and names that differ, a name
--- that is not a relative path inside dir (absolute, "..", empty), non-finite values.
function megaface.export_megaface(dir, emb, names, opts)
  local fn = "export_megaface"
  opts = util.check_opts(fn, opts, { "suffix" })
  check_path(fn, "dir", dir)
  if not util.is_tensor(emb) or emb:dim() ~= 2 then
    fail(string.format("%s: emb must be an N×D tensor, got %s", fn,
                       util.is_tensor(emb) and util.shape_str(emb) or type(emb)))
  end
  check_names(fn, names, emb:size(1))
  local suffix = opts.suffix == nil and "_fvl.bin" or opts.suffix
  if type(suffix) ~= "string" then fail(fn .. ": suffix must be a string, got " .. type(suffix)) end
  return M.export(dir, emb, names, suffix)
end

--- fvl.eval.load_megaface_features(dir, names [, opts]) -> tensor: the N×D float32 matrix of
--- the feature files dir/names[i]..suffix (each read as fvl.eval.load_megaface_feature; all
--- must have the same D). opts: suffix ("_fvl.bin"). Errors: a missing or malformed file
--- (named), sizes that differ.
function megaface.load_megaface_features(dir, names, opts)
  local fn = "load_megaface_features"
  opts = util.check_opts(fn, opts, { "suffix" })
  check_path(fn, "dir", dir)
  if type(names) ~= "table" or #names == 0 then
    fail(string.format("%s: names must be a non-empty list of relative paths, got %s", fn,
                       type(names) == "table" and "an empty list" or type(names)))
  end
  local suffix = opts.suffix == nil and "_fvl.bin" or opts.suffix
  if type(suffix) ~= "string" then fail(fn .. ": suffix must be a string, got " .. type(suffix)) end
  local rows, D = {}, nil
  for i, name in ipairs(names) do
    if type(name) ~= "string" then fail(string.format("%s: names[%d] must be a string, got %s", fn, i, type(name))) end
    local v = M.load(dir .. "/" .. name .. suffix)
    if D and v:numel() ~= D then
      fail(string.format("%s: %s has %d values but the earlier files have %d", fn, name .. suffix, v:numel(), D))
    end
    D = v:numel()
    rows[i] = v:view(1, D)
  end
  return fvl.cat(rows, 1)
end

--- fvl.eval.megaface_rank1(probes, probe_labels, distractors [, opts]) -> table: MegaFace
--- challenge 1 identification. For every probe image and every other image of its identity,
--- that image is put in a gallery with all the distractors; rank = 1 + the distractors more
--- similar to the probe than it (cosine; ties count for the true match). Returns rank1 (the
--- fraction of such pairs at rank 1), cmc[k] for each asked rank, n_pairs, n_probes_used
--- (probes whose identity has another image), and the verification variant: tar_at_far[far]
--- (genuine = probe pairs of one identity, impostors = every probe × distractor; present when
--- #impostors >= 1/far) with threshold (same when the cosine is above it), n_genuine,
--- n_impostor. Scores are made in sgemm blocks: no probes × distractors matrix is held, so 10⁶
--- distractors need only their own matrix. opts: k (a rank or list of ranks, 1..1000; rank 1
--- always), far (1e-6; false: no verification), block (distractor rows per sgemm, 0: 4096).
--- Errors: feature sizes that differ, labels, non-finite values, unknown options.
function megaface.megaface_rank1(probes, probe_labels, distractors, opts)
  local fn = "megaface_rank1"
  opts = util.check_opts(fn, opts, { "k", "far", "block" })
  for key, v in pairs { probes = probes, distractors = distractors } do
    if not util.is_tensor(v) or v:dim() ~= 2 then
      fail(string.format("%s: %s must be an N×D tensor of features, got %s", fn, key,
                         util.is_tensor(v) and util.shape_str(v) or type(v)))
    end
  end
  local ks, seen = { 1 }, { [1] = true }
  for _, k in ipairs(type(opts.k) == "table" and opts.k or { opts.k }) do
    k = util.integer(fn, "k", k, nil, 1)
    if k > 1000 then fail(string.format("%s: k = %d is outside 1..1000", fn, k)) end
    if not seen[k] then seen[k] = true; ks[#ks + 1] = k end
  end
  local far = opts.far
  if far == nil then far = 1e-6 end
  if far == false then far = 0
  elseif type(far) ~= "number" or not (far > 0 and far < 1) then
    fail(string.format("%s: far = %s, expected a rate in (0, 1) or false", fn, tostring(far)))
  end
  local block = util.integer(fn, "block", opts.block, 0, 0)
  local r = M.eval(probes, probe_labels, distractors, ks, far, block)
  r.rank1 = r.cmc[1]
  for _, k in ipairs(ks) do r["rank" .. k] = r.cmc[k] end
  r.tar_at_far = {}
  if r.tar then r.tar_at_far[far] = r.tar; r.tar = nil end
  r.n_distractors = distractors:size(1)
  return r
end

return megaface
