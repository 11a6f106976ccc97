-- fvl.eval.kmeans / nmi / ami / mutual_info / clustering (engine/cluster.c): NMI, AMI and E[I]
-- against scikit-learn golden values (tests/golden/sklearn_cluster.json, made by
-- tests/golden/make_cluster_golden.py), k-means against sklearn's optimum on separable blobs and
-- against its own definition (every row at its nearest centre, every centre the mean of its
-- rows), determinism, k = 1, k = N, duplicate rows, identification's nmi option, errors.
local json = fvl.json

local function golden()
  local f = assert(io.open(TEST_DIR .. "/golden/sklearn_cluster.json", "rb"))
  local d = json.decode(f:read("a"))
  f:close()
  return d
end

-- the integer formula of the large golden cases (see make_cluster_golden.py)
local function formula(n, p, d, m)
  local t = {}
  for i = 0, n - 1 do t[i + 1] = (i * p + i // d) % m + 1 end
  return fvl.tensor(t, "int32")
end

-- C well-separated blobs of `per` rows in D dimensions, rows shuffled; returns x, truth
local function blobs(C, per, D, spread, seed)
  fvl.manual_seed(seed)
  local centres = fvl.randn(C, D) * 20
  local lab = {}
  for i = 1, C * per do lab[i] = (i * 7) % C + 1 end
  local x = centres:index(1, fvl.tensor(lab, "int32")) + fvl.randn(C * per, D) * spread
  return x, lab
end

-- the k-means definition checked directly: nearest centre, centres = means
local function check_fixed_point(x, assign, centres, inertia, what)
  local X, A, Cn = x:totable(), assign:totable(), centres:totable()
  local k, D = #Cn, #X[1]
  local sums, cnt, tot = {}, {}, 0
  for j = 1, k do sums[j] = {}; cnt[j] = 0; for t = 1, D do sums[j][t] = 0 end end
  for i, row in ipairs(X) do
    local best, bj = math.huge, 0
    for j = 1, k do
      local s = 0
      for t = 1, D do s = s + (row[t] - Cn[j][t]) ^ 2 end
      if s < best then best, bj = s, j end
    end
    local s = 0
    for t = 1, D do s = s + (row[t] - Cn[A[i]][t]) ^ 2 end
    expect_true(s <= best * (1 + 1e-5) + 1e-9, what .. ": row " .. i .. " is not at its nearest centre")
    tot = tot + s
    cnt[A[i]] = cnt[A[i]] + 1
    for t = 1, D do sums[A[i]][t] = sums[A[i]][t] + row[t] end
  end
  for j = 1, k do
    expect_true(cnt[j] > 0, what .. ": cluster " .. j .. " is empty")
    for t = 1, D do expect_near(Cn[j][t], sums[j][t] / cnt[j], 1e-5, 1e-5, what .. ": centre " .. j) end
  end
  expect_near(inertia, tot, 1e-6, 1e-9, what .. ": inertia")
end

describe("eval.nmi / ami / mutual_info", function()
  for _, c in ipairs(golden().cases) do
    it("equals scikit-learn on case '" .. c.name .. "'", function()
      local a, b
      if c.a then a, b = c.a, c.b
      else a, b = formula(c.n, c.pa, c.da, c.ma), formula(c.n, c.pb, c.db, c.mb) end
      local r = fvl.eval.mutual_info(a, b)
      expect_eq(r.ka, c.ka, "ka")
      expect_eq(r.kb, c.kb, "kb")
      expect_near(r.mi, c.mi, 1e-10, 1e-13, "mi")
      expect_near(r.h_a, c.h_a, 1e-12, 1e-14, "h_a")
      expect_near(r.h_b, c.h_b, 1e-12, 1e-14, "h_b")
      expect_near(r.nmi, c.nmi, 1e-10, 1e-12, "nmi")
      expect_near(r.emi, c.emi, 1e-9, 1e-12, "emi")
      expect_near(r.ami, c.ami, 1e-8, 1e-10, "ami")
      expect_near(fvl.eval.nmi(a, b), c.nmi, 1e-10, 1e-12, "nmi()")
      expect_near(fvl.eval.ami(a, b), c.ami, 1e-8, 1e-10, "ami()")
      -- symmetric
      expect_near(fvl.eval.ami(b, a), c.ami, 1e-8, 1e-10, "ami(b, a)")
    end)
  end
  it("takes checked labels, lists and int32 tensors alike", function()
    local a, b = { 1, 1, 2, 2, 3, 3 }, { 1, 1, 2, 3, 3, 3 }
    local r1 = fvl.eval.ami(a, b)
    expect_eq(fvl.eval.ami(fvl.tensor(a, "int32"), fvl.tensor(b, "int32")), r1, "tensors")
    expect_eq(fvl.eval.ami(fvl._check_labels(a, "test", 6, 3), b), r1, "checked labels")
  end)
  it("refuses bad labels naming the function and argument", function()
    expect_error(function() fvl.eval.nmi({ 1, 2 }, { 1, 2, 3 }) end, "nmi: labels_a has 2 entries but labels_b has 3")
    expect_error(function() fvl.eval.ami({ 1, 0 }, { 1, 2 }) end, "ami: labels_a")
    expect_error(function() fvl.eval.ami({ 1, 2 }, { 1, 2.5 }) end, "ami: labels_b")
    expect_error(function() fvl.eval.nmi({}, {}) end, "nmi: labels_a: expected at least one label")
    expect_error(function() fvl.eval.nmi("x", { 1 }) end, "nmi: labels_a: labels must be")
  end)
end)

describe("eval.kmeans", function()
  it("finds scikit-learn's optimum on separable blobs", function()
    local g = golden().kmeans[1]
    local x = fvl.tensor(g.x)
    for _, init in ipairs { "k-means++", "random" } do
      local a, c, inertia = fvl.eval.kmeans(x, g.k, { seed = 5, n_init = 4, init = init })
      expect_near(inertia, g.inertia, 1e-4, 0, init .. ": inertia")
      expect_near(fvl.eval.nmi(a, g.sklearn_labels), 1, 0, 1e-12, init .. ": partition = sklearn's")
      expect_near(fvl.eval.nmi(a, g.truth), 1, 0, 1e-12, init .. ": partition = the blobs")
      check_fixed_point(x, a, c, inertia, init)
    end
  end)
  it("recovers blobs exactly for every seed (k-means++) and is a fixed point of Lloyd's step", function()
    local x, lab = blobs(12, 25, 16, 0.3, 7)
    for seed = 1, 6 do
      local a, c, inertia = fvl.eval.kmeans(x, 12, { seed = seed })
      expect_near(fvl.eval.ami(a, lab), 1, 0, 1e-12, "seed " .. seed)
      check_fixed_point(x, a, c, inertia, "seed " .. seed)
    end
  end)
  it("is deterministic for a seed, at any thread count; the default seed follows manual_seed", function()
    local x = fvl.randn(400, 24)
    local a1, c1, i1 = fvl.eval.kmeans(x, 9, { seed = 11, n_init = 3 })
    local threads = fvl.threads()
    fvl.threads(1)
    local ok, a2, c2, i2 = pcall(fvl.eval.kmeans, x, 9, { seed = 11, n_init = 3 })
    fvl.threads(threads)
    assert(ok, a2)
    expect_eq(i2, i1, "inertia, 1 thread")
    expect_eq((a1 - a2):abs():max():item(), 0, "assignments, 1 thread")
    expect_eq((c1 - c2):abs():max():item(), 0, "centres, 1 thread")
    fvl.manual_seed(3)
    local _, _, j1 = fvl.eval.kmeans(x, 9)
    fvl.manual_seed(3)
    local _, _, j2 = fvl.eval.kmeans(x, 9)
    expect_eq(j2, j1, "manual_seed")
    -- more restarts never end worse than the first one alone (run 0 is the same run)
    local _, _, one = fvl.eval.kmeans(x, 9, { seed = 11, n_init = 1 })
    expect_true(i1 <= one, "n_init = 3 keeps the lowest inertia")
  end)
  it("k = 1 gives the mean and the total squared deviation", function()
    local x = fvl.randn(50, 5) * 3 + 1
    local a, c, inertia, iters = fvl.eval.kmeans(x, 1, { seed = 1 })
    expect_eq(a:max():item(), 1, "one cluster")
    expect_eq(a:min():item(), 1, "one cluster")
    local X, tot, mean = x:totable(), 0, { 0, 0, 0, 0, 0 }
    for _, r in ipairs(X) do for t = 1, 5 do mean[t] = mean[t] + r[t] / 50 end end
    for _, r in ipairs(X) do for t = 1, 5 do tot = tot + (r[t] - mean[t]) ^ 2 end end
    for t = 1, 5 do expect_near(c[1][t], mean[t], 1e-5, 1e-6, "centre") end
    expect_near(inertia, tot, 1e-6, 0, "inertia")
    expect_true(iters >= 1, "iterations")
  end)
  it("k = N puts every row in its own cluster with inertia 0", function()
    local x = fvl.randn(30, 4)
    local a, c, inertia = fvl.eval.kmeans(x, 30, { seed = 2 })
    local seen = {}
    for _, v in ipairs(a:totable()) do seen[v] = true end
    for j = 1, 30 do expect_true(seen[j], "cluster " .. j .. " used") end
    expect_near(inertia, 0, 0, 1e-9, "inertia")
    check_fixed_point(x, a, c, inertia, "k = N")
  end)
  it("handles duplicate rows: no empty cluster, exact recovery of repeated points", function()
    local same = fvl.ones(10, 3) * 2
    for _, init in ipairs { "k-means++", "random" } do
      local a, _, inertia = fvl.eval.kmeans(same, 3, { seed = 1, init = init })
      local cnt = { 0, 0, 0 }
      for _, v in ipairs(a:totable()) do cnt[v] = cnt[v] + 1 end
      for j = 1, 3 do expect_true(cnt[j] >= 1, init .. ": cluster " .. j .. " is not empty") end
      expect_eq(inertia, 0, init .. ": inertia of identical rows")
    end
    local pts = { { 0, 0 }, { 5, 5 }, { -4, 7 } }
    local rows, lab = {}, {}
    for i = 1, 15 do rows[i] = pts[(i - 1) % 3 + 1]; lab[i] = (i - 1) % 3 + 1 end
    for seed = 1, 5 do
      local a, _, inertia = fvl.eval.kmeans(fvl.tensor(rows), 3, { seed = seed })
      expect_eq(inertia, 0, "repeated points, seed " .. seed)
      expect_near(fvl.eval.nmi(a, lab), 1, 0, 1e-12, "repeated points, seed " .. seed)
    end
  end)
  it("refuses bad input naming the function, argument, expected and actual", function()
    local x = fvl.randn(5, 2)
    expect_error(function() fvl.eval.kmeans(x, 0) end, "kmeans: k = 0 is outside 1..5")
    expect_error(function() fvl.eval.kmeans(x, 6) end, "kmeans: k = 6 is outside 1..5")
    expect_error(function() fvl.eval.kmeans(x, 2.5) end, "kmeans: k must be an integer")
    expect_error(function() fvl.eval.kmeans(x, 2, { n_init = 0 }) end, "kmeans: n_init = 0 is outside")
    expect_error(function() fvl.eval.kmeans(x, 2, { seeds = 1 }) end, "seeds")
    expect_error(function() fvl.eval.kmeans(x, 2, { init = "pp" }) end, "init")
    expect_error(function() fvl.eval.kmeans(fvl.randn(5), 2) end, "kmeans: x must be 2-D")
    local bad = x:clone()
    bad[3][2] = 0 / 0
    expect_error(function() fvl.eval.kmeans(bad, 2) end, "kmeans: x[3][2] = nan is not a finite number")
  end)
end)

describe("eval.clustering and identification's nmi", function()
  it("scores embeddings as pytorch-metric-learning: k-means into #labels clusters", function()
    local x, lab = blobs(6, 20, 8, 0.2, 3)
    local r = fvl.eval.clustering(x, lab, { seed = 1 })
    expect_eq(r.k, 6, "k")
    expect_near(r.nmi, 1, 0, 1e-12, "nmi")
    expect_near(r.ami, 1, 0, 1e-12, "ami")
    -- noisy blobs: the scores equal nmi/ami of the labels against the returned assignment
    local y, lab2 = blobs(6, 20, 8, 25, 4)
    local r2 = fvl.eval.clustering(y, lab2, { seed = 1 })
    expect_true(r2.nmi < 1 and r2.nmi > 0, "noisy nmi in (0, 1)")
    expect_eq(r2.nmi, fvl.eval.nmi(lab2, r2.assign), "nmi of the assignment")
    expect_eq(r2.ami, fvl.eval.ami(lab2, r2.assign), "ami of the assignment")
    expect_error(function() fvl.eval.clustering(x, { 1, 2 }) end, "clustering: emb has 120 rows but labels has 2")
  end)
  it("identification adds nmi and ami of the queries on request", function()
    local g, gl = blobs(5, 10, 8, 0.2, 9)
    local p, pl = blobs(5, 4, 8, 0.2, 9)
    local r = fvl.eval.identification(g, gl, p, pl, { nmi = true, kmeans = { seed = 2 } })
    local c = fvl.eval.clustering(p, pl, { seed = 2 })
    expect_eq(r.nmi, c.nmi, "nmi from the probes")
    expect_eq(r.ami, c.ami, "ami from the probes")
    expect_true(tostring(r):find("NMI", 1, true) ~= nil, "summary shows NMI")
    local loo = fvl.eval.identification(g, gl, nil, nil, { nmi = true, kmeans = { seed = 2 } })
    expect_eq(loo.nmi, fvl.eval.clustering(g, gl, { seed = 2 }).nmi, "leave-one-out: the gallery")
    expect_eq(fvl.eval.identification(g, gl).nmi, nil, "off by default")
    expect_error(function() fvl.eval.identification(g, gl, nil, nil, { kmeans = {} }) end,
                 "identification: kmeans options given without nmi = true")
  end)
end)
