-- ArcFace vs CosFace on unseen synthetic identities, in a few lines
local fvl = fvl or require "fvl"
require("fvl.cli").parser("fvl scripts/examples/arc_vs_cos.lua",
  "ArcFace vs CosFace on unseen synthetic identities, in a few lines."):parse(arg or {})
fvl.manual_seed(1)
local data = fvl.data.synthetic_faces{identities = 300, per_identity = 20, test_identities = 100, seed = 1}
for _, name in ipairs{"arcface", "cosface"} do
  local net = fvl.nn.mlp{sizes = {data.train.x:size(2), 256, 64}}
  local head = fvl.loss[name]{dim = 64, classes = 300, s = 32}
  local params = net:parameters()
  for _, p in ipairs(head:parameters()) do params[#params + 1] = p end
  local opt = fvl.optim.sgd(params, {lr = 0.1, momentum = 0.9, weight_decay = 5e-4})
  for epoch = 1, 5 do
    for b in fvl.data.loader(data.train, {batch = 128, shuffle = true, seed = epoch}) do
      opt:zero_grad()
      head(net(b.x), b.y):backward()
      opt:step()
    end
  end
  net:evaluate()
  local emb = fvl.no_grad(function() return net(data.test.x) end)
  print(name, fvl.eval.verify(emb, data.test.labels, {n = 6000, seed = 1}))
end
