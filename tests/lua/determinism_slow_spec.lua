-- The full networks of determinism_spec.lua: LeNet++ and a small ResNet give the same bits after
-- a few training steps with 1 and 2 threads, on both convolution paths. ('slow' in the name: not
-- in the sanitizer pass, where a -O0 LeNet++ takes minutes.)
local fvl = fvl or require "fvl"
local D = dofile(TEST_DIR .. "/lua/determinism/util.lua")
local same_bits, images = D.same_bits, D.images

describe("training does not depend on the thread count (full networks)", function()
  it("LeNet++ (direct convolutions) and a small ResNet (batch norm, strided im2col convolutions)", function()
    same_bits(images(function() return fvl.nn.lenetpp{ dim = 8 } end, 96, 28), 2, "lenetpp")
    same_bits(images(function() return fvl.nn.resnet_small{ dim = 8, width = 8 } end, 96, 28), 2, "resnet_small")
  end)
  it("and with the im2col path for every convolution", function()
    fvl.F.conv2d_direct(false)
    local ok, err = pcall(same_bits, images(function() return fvl.nn.lenetpp{ dim = 8 } end, 96, 28), 2,
                          "lenetpp (im2col)")
    fvl.F.conv2d_direct(true)
    if not ok then error(err, 0) end
  end)
end)

D.cleanup()
