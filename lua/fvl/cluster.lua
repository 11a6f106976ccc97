-- fvl.cluster — k-means and clustering agreement (NMI, AMI), installed into fvl.eval
-- (engine/cluster.c; docs/evaluation.md "Clustering quality").
--
--   local assign, centres, inertia = fvl.eval.kmeans(emb, 10, {seed = 1, n_init = 3})
--   fvl.eval.nmi(labels, assign)   fvl.eval.ami(labels, assign)
--   fvl.eval.clustering(emb, labels) --> {nmi=, ami=, k=, inertia=}  (pytorch-metric-learning's NMI/AMI)
local fvl = require "fvl.core"
local util = require "fvl.util"
local C = fvl._cluster
local cluster = {}

local fail = util.fail

--- fvl.eval.kmeans(x, k [, opts]) -> assign, centres, inertia, iterations: k-means of the rows
--- of x (N×D float32, finite) into k clusters (1 <= k <= N). assign: int32 tensor of N
--- cluster ids in 1..k; centres: k×D float32; inertia: Σ squared distance of each row to its
--- centre. Seeding is greedy k-means++ (2 + ⌊ln k⌋ candidates per centre, the one lowering the
--- total squared distance most kept), then Lloyd iterations (nearest centre through sgemm, ties
--- to the lower index; centres to the means) until no row changes cluster, the centres move by
--- at most tol × the mean per-dimension variance, or max_iter updates; an empty cluster takes
--- the row farthest from its centre (from a cluster that keeps another row), so no cluster of
--- the result is empty. opts: seed (default: drawn from the generator fvl.manual_seed sets),
--- n_init (1: runs, the lowest inertia kept), max_iter (300), tol (1e-4), init ("k-means++" |
--- "random": k distinct rows). The same seed gives the same result. Errors: not N×D, k outside
--- 1..N, a non-finite value, unknown options.
function cluster.kmeans(x, k, opts)
  if not util.is_tensor(x) then
    fail(string.format("kmeans: x must be an N×D tensor of embeddings, got %s", type(x)))
  end
  if math.type(k) ~= "integer" then
    fail(string.format("kmeans: k must be an integer number of clusters, got %s",
                       type(k) == "number" and string.format("%g", k) or type(k)))
  end
  return C.kmeans(x, k, opts)
end

-- the binding checks the labels (errors "fn: labels_a: labels[3] = 0 is outside 1..")
local function mutual_info(fn, a, b, want_emi) return C.mutual_info(a, b, want_emi, fn) end

--- fvl.eval.mutual_info(labels_a, labels_b) -> table: the agreement of two labellings of the
--- same rows (lists or int32 tensors of ids >= 1; the ids are names, any integers): mi (mutual
--- information, natural log), h_a, h_b (entropies), nmi, emi (expected mutual information of
--- two random labellings with the same cluster sizes), ami, n, ka, kb (distinct ids in each).
--- Errors: lengths that differ, ids that are not integers >= 1, no rows.
function cluster.mutual_info(labels_a, labels_b) return mutual_info("mutual_info", labels_a, labels_b, true) end

--- fvl.eval.nmi(labels_a, labels_b) -> number: normalised mutual information
--- I(A;B) / ((H(A) + H(B)) / 2), scikit-learn's normalized_mutual_info_score with its default
--- arithmetic mean; 1 when both labellings put everything in one cluster, 0 when I = 0 otherwise.
--- Symmetric; the ids are names (any integers >= 1).
function cluster.nmi(labels_a, labels_b) return mutual_info("nmi", labels_a, labels_b, false).nmi end

--- fvl.eval.ami(labels_a, labels_b) -> number: adjusted mutual information
--- (I - E[I]) / ((H(A) + H(B)) / 2 - E[I]), E[I] exact under the hypergeometric model (the
--- expectation over all labellings with the same cluster sizes), as scikit-learn's
--- adjusted_mutual_info_score: about 0 for a random labelling, 1 for identical ones.
function cluster.ami(labels_a, labels_b) return mutual_info("ami", labels_a, labels_b, true).ami end

--- fvl.eval.clustering(emb, labels [, opts]) -> table: pytorch-metric-learning's clustering
--- scores of embeddings (N×D) with their 1-based labels: k-means of emb into k = #distinct
--- labels clusters (fvl.eval.kmeans, opts passed on: seed, n_init, max_iter, tol, init), then
--- nmi and ami of labels against the cluster ids. Returns {nmi=, ami=, k=, inertia=, assign=}.
function cluster.clustering(emb, labels, opts)
  local fn = "clustering"
  if not util.is_tensor(emb) or emb:dim() ~= 2 then
    fail(string.format("%s: emb must be an N×D tensor of embeddings, got %s", fn,
                       util.is_tensor(emb) and util.shape_str(emb) or type(emb)))
  end
  local r0 = mutual_info(fn, labels, labels, false)   -- checks labels, counts the classes
  if r0.n ~= emb:size(1) then
    fail(string.format("%s: emb has %d rows but labels has %d entries (expected one label per row)",
                       fn, emb:size(1), r0.n))
  end
  local assign, _, inertia = C.kmeans(emb, r0.ka, opts)
  local r = mutual_info(fn, labels, assign, true)
  return { nmi = r.nmi, ami = r.ami, k = r0.ka, inertia = inertia, assign = assign }
end

return cluster
