-- IResNet-34, 50, 100 and 200 against tests/golden/backbones.json (see backbones_spec.lua);
-- labelled slow by its name (building them allocates ~0.7 GB), so the sanitizer pass skips it.
local fvl = fvl or require "fvl"
fvl.threads(2)
dofile(TEST_DIR .. "/lua/backbones_spec.lua")
describe("deep IResNets match PyTorch's build", function()
  for _, d in ipairs { 34, 50, 100, 200 } do
    it("iresnet" .. d, function() BACKBONE_GOLDEN("iresnet" .. d, fvl.nn.iresnet { depth = d }) end)
  end
end)
