-- Every loss head survives a checkpoint: 3 steps + save + a fresh net, head and optimiser + load +
-- 3 steps give the same losses and the same head tensors, bit for bit, as 6 uninterrupted steps
-- (what scripts/train_face.lua --resume relies on for "any fvl.loss head"). Heads whose forward
-- moves state (AdaCos's dynamic scale, AdaFace's batch mean and std, CurricularFace's t, NPCFace's
-- t, the margin heads' iter) must restore it; diagnostics made by the forward (ElasticFace's
-- last_margins, listed in head.transient_fields) must not make the load fail.
local fvl = fvl or require "fvl"
fvl.threads(2)

local D, C, B = 8, 6, 12
-- every head constructor of fvl.loss that takes {dim, classes}; the others are listed with why
local SKIP = { names = "not a head", use_reference = "not a head", margin = "needs a margin function",
               cosine_head = "a building block", circle_pairwise = "pairs, no classes", Head = "the class" }

local function run(name, from, to, state)
  fvl.manual_seed(5)
  local net = fvl.nn.Sequential { fvl.nn.Linear(10, D), fvl.nn.BatchNorm1d(D) }
  local head = fvl.loss[name] { dim = D, classes = C }
  local opt = fvl.optim.sgd({ net, head }, { lr = 0.05, momentum = 0.9 })
  if state then assert(fvl.load_checkpoint(state, { net = net, head = head, opt = opt })) end
  local losses = {}
  for k = from, to - 1 do
    fvl.manual_seed(1000 + k)   -- the batch is a function of the step, as a loader's is
    local x, y = fvl.randn(B, 10), fvl.randint(C, { B })
    fvl.manual_seed(2000 + k)   -- ElasticFace draws its margins from the engine RNG
    opt:zero_grad()
    local loss = head(net(x), y)
    loss:backward()
    opt:step()
    losses[#losses + 1] = loss:item()
  end
  return losses, net, head, opt
end

describe("every loss head resumes from a checkpoint bit for bit", function()
  local names = {}
  for k, v in pairs(fvl.loss) do if type(v) == "function" and not SKIP[k] then names[#names + 1] = k end end
  table.sort(names)
  it("covers the heads (" .. #names .. ")", function() expect_true(#names >= 18, "heads found: " .. #names) end)
  for _, name in ipairs(names) do
    it(name, function()
      local full, _, hfull = run(name, 0, 6)
      local _, net, head, opt = run(name, 0, 3)
      local dir = tmpdir()
      fvl.save_checkpoint(dir, { net = net, head = head, opt = opt, step = 3 })
      local rest, _, hrest = run(name, 3, 6, dir)
      rmdir(dir)
      for i = 1, 3 do expect_eq(rest[i], full[3 + i], name .. " loss of step " .. (3 + i)) end
      for k, v in pairs(hfull) do
        if type(v) == "number" then expect_eq(hrest[k], v, name .. "." .. k) end
      end
      expect_eq((hrest.weight - hfull.weight):abs():max():item(), 0, name .. ".weight")
    end)
  end
end)
