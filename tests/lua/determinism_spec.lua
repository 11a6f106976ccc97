-- Results do not depend on the thread count: a few training steps with 1 and 2 threads give
-- the same bits (margin heads through the cosine and linear-logits kernels, the direct and the
-- im2col convolutions, batch norm, the loader), so a sweep's numbers mean the same on any node.
local fvl = fvl or require "fvl"
local D = dofile(TEST_DIR .. "/lua/determinism/util.lua")
local same_bits, mlp, images = D.same_bits, D.mlp, D.images

describe("training does not depend on the thread count", function()
  it("an MLP with ArcFace and a softmax head: the same bits with 1 and 2 threads", function()
    same_bits(mlp("arcface"), 3, "mlp+arcface")
    same_bits(mlp("softmax"), 3, "mlp+softmax")
  end)
  it("products of any shape (OpenBLAS's own threads split skinny ones differently)", function()
    fvl.manual_seed(2)
    local pairs_ = { { fvl.randn{ 1000, 500 }, fvl.randn{ 500, 3 } }, { fvl.randn{ 3, 700 }, fvl.randn{ 700, 1000 } },
                     { fvl.randn{ 100, 257 }, fvl.randn{ 257, 300 } } }
    local before = fvl.threads()
    for i, p in ipairs(pairs_) do
      fvl.threads(1)
      local one = D.bytes(p[1]:matmul(p[2]))
      fvl.threads(2)
      local two = D.bytes(p[1]:matmul(p[2]))
      fvl.threads(4)
      local four = D.bytes(p[1]:matmul(p[2]))
      expect_true(one == two and one == four, "product " .. i .. " with 1, 2 and 4 threads")
    end
    fvl.threads(before)
  end)
  it("a strided convolution alone (direct and im2col), forward and backward, with 1, 2 and 3 threads", function()
    -- im2col's sample groups once followed the thread count, and a GEMM's bits follow its width;
    -- 32 outputs and 144 taps also take the direct kernels (forward, dW), unless turned off
    fvl.manual_seed(5)
    local x0, w0 = fvl.randn{ 2, 16, 9, 9 }, fvl.randn{ 32, 16, 3, 3 }
    local before, direct0 = fvl.threads(), fvl.F.conv2d_direct()
    for _, direct in ipairs { true, false } do
      fvl.F.conv2d_direct(direct)
      local ref
      for _, n in ipairs { 1, 2, 3 } do
        fvl.threads(n)
        local x, w = x0:clone():requires_grad(), w0:clone():requires_grad()
        local y = fvl.F.conv2d(x, w, nil, 2, 1)
        local loss = (y * y):sum()
        loss:backward()
        local got = D.bytes(y) .. D.bytes(x.grad) .. D.bytes(w.grad)
        if ref == nil then ref = got end
        expect_true(got == ref, "stride-2 conv2d (direct " .. tostring(direct) .. ") with " .. n .. " threads")
      end
    end
    fvl.F.conv2d_direct(direct0)
    fvl.threads(before)
  end)
  it("a small CNN: direct and strided im2col convolutions, batch norm", function()
    local nn = fvl.nn
    local function net()
      return nn.Sequential{ nn.Conv2d(1, 16, 3, { padding = 1 }), nn.PReLU(16), nn.MaxPool2d(2),
                            nn.Conv2d(16, 32, 3, { padding = 1, stride = 2 }), nn.BatchNorm2d(32), nn.ReLU(),
                            nn.Conv2d(32, 32, 3, { padding = 1 }), nn.Flatten(), nn.Linear(32 * 4 * 4, 8) }
    end
    same_bits(images(net, 24, 16), 2, "small cnn")
  end)
end)

D.cleanup()
