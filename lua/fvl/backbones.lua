-- fvl.backbones — the face-recognition backbones, installed into fvl.nn by nn.lua:
--
--   fvl.nn.iresnet{depth = 18|34|50|100|200, dim = 512, dropout = 0, fp16 = false, input_size = 112}
--   fvl.nn.mobilefacenet{dim = 512|128, scale = 1, blocks = {1, 4, 6, 2}, input_size = 112}
--   fvl.nn.fold_batchnorm(net)     -- folds every BatchNorm that follows a conv/linear into it (eval only)
--   fvl.nn.flops(net, {3, 112, 112})  -- multiply-adds ×2 per image of the convolutions and linear layers
--   fvl.nn.fused([on])            -- BatchNorm + PReLU in one kernel, and in evaluation without
--                                    gradients conv + BN + PReLU in one (default on); false = separate layers
--
-- IResNet follows insightface's arcface_torch iresnet.py: stem conv3×3(3→64) → BN → PReLU; four
-- stages (64, 128, 256, 512 channels) of IBasicBlock, the first block of each with stride 2 and a
-- 1×1-conv + BN downsample; block = BN → conv3×3 → BN → PReLU → conv3×3(stride) → BN, plus the
-- shortcut, nothing after the sum; head BN2d → flatten → dropout → Linear(512·7·7 → dim) → BN1d
-- whose weight is fixed at 1 (a buffer, not trained). Convolutions start normal(0, 0.1).
-- MobileFaceNet follows insightface's mobilefacenet.py with scale = 1 (the paper's widths, Chen et
-- al. 2018; scale = 2 is insightface's "mbf"): ConvBlock = conv + BN + PReLU, LinearBlock = conv +
-- BN, DepthWise = 1×1 ConvBlock → 3×3 grouped ConvBlock → 1×1 LinearBlock (+ input when residual),
-- GDC head = 7×7 depthwise LinearBlock → flatten → Linear(512 → dim, no bias) → BN1d.
-- State names follow the PyTorch modules (conv1, bn1, prelu, layer1.1.bn2, ..., features.weight),
-- with 1-based indices inside containers. In evaluation mode the forward records no autograd tape.
local fvl = require "fvl.core"
local util = require "fvl.util"
local F = fvl.F
local fail = util.fail

return function(nn)
  local Module = nn.Module
  local fused = true
  -- fvl.nn.fused([on]) -> boolean: whether the backbones run BatchNorm + PReLU as one kernel
  -- (default true; the previous setting when on is given). false runs them as separate layers, for
  -- comparing the two.
  function nn.fused(on)
    local old = fused
    if on ~= nil then fused = not not on end
    return old
  end

  local function class(name)
    local C = nn.class(name)
    setmetatable(C, { __index = Module, __call = function(_, ...) return C.create(...) end })
    return C
  end

  -- y → prelu(bn(y)): one fused kernel when bn is an (unfolded) BatchNorm2d
  local function bn_prelu(bn, prelu, y)
    if fused and prelu and bn.class_name == "BatchNorm2d" and y:dim() == 4 and y:size(2) == bn.num_features then
      local training = bn.training or not bn.running_mean
      return F.bn_prelu(y, bn.running_mean, bn.running_var, bn.weight, bn.bias, prelu.weight, training,
                        bn.momentum, bn.eps)
    end
    y = bn(y)
    if prelu then y = prelu(y) end
    return y
  end

  -- Evaluation without gradients: conv → BatchNorm2d (running statistics, or Identity once
  -- folded, or none) → PReLU (or none) as one kernel, the BN and PReLU applied in the
  -- convolution's stores (F.conv2d_bn_act): two passes over the output fewer. Returns nil when
  -- that does not apply (training, gradients on, fused off, other layers): the caller runs the
  -- layers one by one.
  local function fused_eval(conv, bn, prelu, x)
    if not fused or conv.training or fvl.grad_enabled() or not util.is_tensor(x) or x:dim() ~= 4
        or x:size(2) ~= conv.in_channels or (prelu and prelu.class_name ~= "PReLU") then
      return nil
    end
    local isbn = bn and bn.class_name == "BatchNorm2d"
    if bn and not (isbn or bn.class_name == "Identity") then return nil end
    if isbn and (bn.training or not bn.running_mean or bn.num_features ~= conv.out_channels) then return nil end
    local H, W = x:size(3), x:size(4)
    if H + 2 * conv.ph < conv.kh or W + 2 * conv.pw < conv.kw then return nil end   -- Conv2d's message
    conv.out_hw = { (H + 2 * conv.ph - conv.kh) // conv.sh + 1, (W + 2 * conv.pw - conv.kw) // conv.sw + 1 }
    return F.conv2d_bn_act(x, conv.weight, conv.bias, { conv.sh, conv.sw }, { conv.ph, conv.pw }, conv.groups,
                           isbn and bn.running_mean or nil, isbn and bn.running_var or nil,
                           isbn and bn.weight or nil, isbn and bn.bias or nil, isbn and bn.eps or 1e-5,
                           prelu and prelu.weight or nil)
  end

  -- Training (batch statistics): conv → BatchNorm2d → PReLU (or none) as one tracked op
  -- (F.conv2d_bn_act_train: the same values and gradients as the separate layers, bit for bit;
  -- depthwise layers run BN while each channel's planes are in cache). nil when it does not apply.
  local function fused_train(conv, bn, prelu, x)
    if not fused or not (bn and bn.class_name == "BatchNorm2d" and (bn.training or not bn.running_mean))
        or not util.is_tensor(x) or x:dim() ~= 4 or x:size(2) ~= conv.in_channels
        or bn.num_features ~= conv.out_channels or (prelu and prelu.class_name ~= "PReLU") then
      return nil
    end
    local H, W = x:size(3), x:size(4)
    if H + 2 * conv.ph < conv.kh or W + 2 * conv.pw < conv.kw then return nil end   -- Conv2d's message
    conv.out_hw = { (H + 2 * conv.ph - conv.kh) // conv.sh + 1, (W + 2 * conv.pw - conv.kw) // conv.sw + 1 }
    if x:size(1) * conv.out_hw[1] * conv.out_hw[2] < 2 then return nil end          -- BatchNorm's message
    return F.conv2d_bn_act_train(x, conv.weight, conv.bias, { conv.sh, conv.sw }, { conv.ph, conv.pw }, conv.groups,
                                 bn.running_mean, bn.running_var, bn.weight, bn.bias, bn.eps,
                                 prelu and prelu.weight or nil, bn.momentum)
  end

  -- F.conv2d_bn_act's reference path (the separate layers, same arguments; internal: for tests and benches)
  function F._conv2d_bn_act_reference(x, w, b, stride, padding, groups, rm, rv, gamma, beta, eps, a)
    groups = groups or 1
    local y = groups > 1 and F.conv2d_grouped(x, w, b, stride, padding, groups) or F.conv2d(x, w, b, stride, padding)
    if rm and a then return F.bn_prelu(y, rm, rv, gamma, beta, a, false, 0.1, eps or 1e-5) end
    if rm then return F.batch_norm(y, rm, rv, gamma, beta, false, 0.1, eps or 1e-5) end
    if a then return F.prelu(y, a) end
    return y
  end

  -- the top-level forward of a backbone: no tape in evaluation mode
  local function top_forward(self, x)
    if not util.is_tensor(x) or x:dim() ~= 4 or x:size(2) ~= 3 or x:size(3) ~= self.input_size
        or x:size(4) ~= self.input_size then
      fail(string.format("%s: input is %s, expected batch×3×%d×%d", self.name,
                         util.is_tensor(x) and util.shape_str(x) or type(x), self.input_size, self.input_size))
    end
    if self.training then return self:body(x) end
    return fvl.no_grad(function() return self:body(x) end)
  end

  -- spatial size after a 3×3 convolution with stride 2 and padding 1
  local function down(n) return (n - 1) // 2 + 1 end

  local function fixed_bn1d(dim)
    local bn = nn.BatchNorm1d(dim)
    -- insightface fixes the feature BN's weight at 1 (requires_grad = False): keep it as a buffer
    for i, n in ipairs(bn._params) do if n == "weight" then table.remove(bn._params, i) break end end
    bn.weight = nil
    bn:register_buffer("weight", fvl.ones(dim))
    return bn
  end

  -- ---------------------------------------------------------------- IResNet
  local IBasicBlock = class("IBasicBlock")
  nn.IBasicBlock = IBasicBlock
  -- fvl.nn.IBasicBlock(in_channels, out_channels, stride) -> module: IResNet's residual block
  -- BN → conv3×3 → BN → PReLU → conv3×3(stride) → BN plus the shortcut (a 1×1 conv + BN when the
  -- shape changes). Used by fvl.nn.iresnet.
  function IBasicBlock.create(cin, cout, stride)
    local self = Module.new(IBasicBlock)
    self.in_channels, self.out_channels, self.stride = cin, cout, stride
    self:add_module("bn1", nn.BatchNorm2d(cin))
    self:add_module("conv1", nn.Conv2d(cin, cout, 3, { padding = 1, bias = false }))
    self:add_module("bn2", nn.BatchNorm2d(cout))
    self:add_module("prelu", nn.PReLU(cout))
    self:add_module("conv2", nn.Conv2d(cout, cout, 3, { stride = stride, padding = 1, bias = false }))
    self:add_module("bn3", nn.BatchNorm2d(cout))
    if stride ~= 1 or cin ~= cout then
      self:add_module("downsample", nn.Sequential {
        nn.Conv2d(cin, cout, 1, { stride = stride, bias = false }), nn.BatchNorm2d(cout) })
    end
    self._folds = { { "conv1", "bn2" }, { "conv2", "bn3" } }
    return self
  end
  function IBasicBlock:describe()
    return string.format("IBasicBlock(%d, %d, stride=%d)", self.in_channels, self.out_channels, self.stride)
  end
  function IBasicBlock:forward(x)
    local h = self.bn1(x)
    local out = fused_eval(self.conv1, self.bn2, self.prelu, h)
    if out then
      out = fused_eval(self.conv2, self.bn3, nil, out)
    else
      out = self.bn3(self.conv2(bn_prelu(self.bn2, self.prelu, self.conv1(h))))
    end
    local ds = self.downsample
    return out + (ds and (fused_eval(ds[ds._children[1]], ds[ds._children[2]], nil, x) or ds(x)) or x)
  end

  local IResNet = class("IResNet")
  nn.IResNet = IResNet
  local depths = { [18] = { 2, 2, 2, 2 }, [34] = { 3, 4, 6, 3 }, [50] = { 3, 4, 14, 3 },
                   [100] = { 3, 13, 30, 3 }, [200] = { 6, 26, 60, 6 } }
  -- fvl.nn.iresnet([opts]) -> module: the IResNet face backbone (insightface's arcface_torch layout
  -- and state names) for 3×input_size×input_size images, giving dim-sized embeddings. opts: depth
  -- (50; 18|34|50|100|200), dim (512), dropout (0, before the last linear layer), input_size (112,
  -- at least 16), fp16 (false; true is an error: the engine computes in float32).
  -- Errors: another depth, dropout >= 1, unknown options.
  function nn.iresnet(opts)
    local fn = "iresnet"
    opts = util.check_opts(fn, opts, { "depth", "dim", "dropout", "fp16", "input_size" })
    local depth = util.integer(fn, "depth", opts.depth, 50, 1)
    if not depths[depth] then fail(string.format("iresnet: depth = %d (expected 18|34|50|100|200)", depth)) end
    local dim = util.integer(fn, "dim", opts.dim, 512, 1)
    local p = util.number(fn, "dropout", opts.dropout, 0, 0)
    if p >= 1 then fail(string.format("iresnet: dropout = %g (expected 0 <= p < 1)", p)) end
    if util.boolean(fn, "fp16", opts.fp16, false) then
      fail("iresnet: fp16 = true is not available: this CPU engine computes in float32 (use fp16 = false)")
    end
    local size = util.integer(fn, "input_size", opts.input_size, 112, 16)
    local self = Module.new(IResNet)
    self.name, self.depth, self.dim, self.input_size = "iresnet" .. depth, depth, dim, size
    self:add_module("conv1", nn.Conv2d(3, 64, 3, { padding = 1, bias = false }))
    self:add_module("bn1", nn.BatchNorm2d(64))
    self:add_module("prelu", nn.PReLU(64))
    local cin, hw = 64, size
    for s, width in ipairs { 64, 128, 256, 512 } do
      local stage = nn.Sequential {}
      for b = 1, depths[depth][s] do
        stage:add(IBasicBlock(cin, width, b == 1 and 2 or 1))
        cin = width
      end
      hw = down(hw)
      self:add_module("layer" .. s, stage)
    end
    self.feature_hw = hw
    self:add_module("bn2", nn.BatchNorm2d(512))
    self:add_module("dropout", nn.Dropout(p))
    self:add_module("fc", nn.Linear(512 * hw * hw, dim))
    self:add_module("features", fixed_bn1d(dim))
    self._folds = { { "conv1", "bn1" } }
    self._head_folds = { { "bn2", "fc" } }
    self._linear_folds = { { "fc", "features" } }
    fvl.no_grad(function()
      self:apply(function(m) if m.class_name == "Conv2d" then m.weight:normal_(0, 0.1) end end)
    end)
    return self
  end
  function IResNet:describe()
    return string.format("IResNet(depth=%d, dim=%d, input %d×%d)", self.depth, self.dim, self.input_size,
                         self.input_size)
  end
  IResNet.forward = top_forward
  -- net:body(x) -> embeddings: the network's computation without the evaluation-mode shortcut of
  -- forward (which records no autograd tape); forward calls it.
  function IResNet:body(x)
    x = fused_eval(self.conv1, self.bn1, self.prelu, x) or bn_prelu(self.bn1, self.prelu, self.conv1(x))
    x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
    x = self.bn2(x)
    x = self.dropout(x:reshape(x:size(1), x:numel() // x:size(1)))
    return self.features(self.fc(x))
  end

  -- ---------------------------------------------------------------- MobileFaceNet
  local ConvBlock = class("ConvBlock")   -- conv + BN (+ PReLU unless linear)
  nn.ConvBlock = ConvBlock
  -- fvl.nn.ConvBlock(in_channels, out_channels, kernel [, opts]) -> module: MobileFaceNet's conv +
  -- BN (+ PReLU unless opts.linear); opts stride (1), padding (0), groups (1), linear (false).
  function ConvBlock.create(cin, cout, k, opts)
    opts = util.check_opts("ConvBlock", opts, { "stride", "padding", "groups", "linear" })
    local self = Module.new(ConvBlock)
    self.linear = opts.linear or false
    self:add_module("conv", nn.Conv2d(cin, cout, k, { stride = opts.stride or 1, padding = opts.padding or 0,
                                                      groups = opts.groups or 1, bias = false }))
    self:add_module("bn", nn.BatchNorm2d(cout))
    if not self.linear then self:add_module("prelu", nn.PReLU(cout)) end
    self._folds = { { "conv", "bn" } }
    return self
  end
  function ConvBlock:describe()
    return string.format("%s(%s)", self.linear and "LinearBlock" or "ConvBlock", self.conv:describe())
  end
  function ConvBlock:forward(x)
    return fused_eval(self.conv, self.bn, self.prelu, x) or fused_train(self.conv, self.bn, self.prelu, x)
        or bn_prelu(self.bn, self.prelu, self.conv(x))
  end

  local DepthWise = class("DepthWise")
  nn.DepthWise = DepthWise
  -- fvl.nn.DepthWise(in_channels, out_channels, stride, groups [, residual]) -> module:
  -- MobileFaceNet's block 1×1 ConvBlock → 3×3 grouped ConvBlock (stride) → 1×1 linear ConvBlock,
  -- plus the input when residual (false).
  function DepthWise.create(cin, cout, stride, groups, residual)
    local self = Module.new(DepthWise)
    self.residual = residual or false
    self:add_module("layers", nn.Sequential {
      ConvBlock(cin, groups, 1),
      ConvBlock(groups, groups, 3, { stride = stride, padding = 1, groups = groups }),
      ConvBlock(groups, cout, 1, { linear = true }) })
    return self
  end
  function DepthWise:forward(x)
    local y = self.layers(x)
    if self.residual then y = y + x end
    return y
  end

  local function residual(c, n, groups)
    local r = nn.Sequential {}
    for _ = 1, n do r:add(DepthWise(c, c, 1, groups, true)) end
    return r
  end

  local MobileFaceNet = class("MobileFaceNet")
  nn.MobileFaceNet = MobileFaceNet
  -- fvl.nn.mobilefacenet([opts]) -> module: the MobileFaceNet face backbone (insightface's
  -- mobilefacenet.py; scale = 2 is its "mbf") for 3×input_size×input_size images. opts: dim (512),
  -- scale (1: the paper's widths), blocks ({1, 4, 6, 2}: the residual blocks per stage), input_size
  -- (112), fp16 (false; true is an error). Errors: blocks not a list of 4 counts; unknown options.
  function nn.mobilefacenet(opts)
    local fn = "mobilefacenet"
    opts = util.check_opts(fn, opts, { "dim", "scale", "blocks", "input_size", "fp16" })
    local dim = util.integer(fn, "dim", opts.dim, 512, 1)
    local sc = util.integer(fn, "scale", opts.scale, 1, 1)
    if util.boolean(fn, "fp16", opts.fp16, false) then
      fail("mobilefacenet: fp16 = true is not available: this CPU engine computes in float32 (use fp16 = false)")
    end
    local blocks = opts.blocks or { 1, 4, 6, 2 }
    if type(blocks) ~= "table" or #blocks ~= 4 then
      fail("mobilefacenet: blocks must be a list of 4 block counts, e.g. {1, 4, 6, 2}")
    end
    for i = 1, 4 do util.integer(fn, "blocks[" .. i .. "]", blocks[i], nil, 1) end
    local size = util.integer(fn, "input_size", opts.input_size, 112, 16)
    local self = Module.new(MobileFaceNet)
    self.name, self.dim, self.scale, self.input_size = "mobilefacenet", dim, sc, size
    local c1, c2 = 64 * sc, 128 * sc
    local layers = nn.Sequential { ConvBlock(3, c1, 3, { stride = 2, padding = 1 }) }
    if blocks[1] == 1 then
      layers:add(ConvBlock(c1, c1, 3, { padding = 1, groups = 64 }))
    else
      layers:add(residual(c1, blocks[1], 128))
    end
    layers:add(DepthWise(c1, c1, 2, 128))
    layers:add(residual(c1, blocks[2], 128))
    layers:add(DepthWise(c1, c2, 2, 256))
    layers:add(residual(c2, blocks[3], 256))
    layers:add(DepthWise(c2, c2, 2, 512))
    layers:add(residual(c2, blocks[4], 256))
    self:add_module("layers", layers)
    self:add_module("conv_sep", ConvBlock(c2, 512, 1))
    local hw = down(down(down(down(size))))
    self.feature_hw = hw
    self:add_module("features", nn.Sequential {
      ConvBlock(512, 512, hw, { groups = 512, linear = true }), nn.Flatten(),
      nn.Linear(512, dim, { bias = false }), nn.BatchNorm1d(dim) })
    self.features._linear_folds = { { "3", "4" } }
    -- insightface: kaiming normal (fan_out, relu) for convolutions and the linear layer
    self:apply(function(m)
      if m.class_name == "Conv2d" or m.class_name == "Linear" then
        nn.init.kaiming_normal_(m.weight, { mode = "fan_out", nonlinearity = "relu" })
      end
    end)
    return self
  end
  function MobileFaceNet:describe()
    return string.format("MobileFaceNet(dim=%d, scale=%d, input %d×%d)", self.dim, self.scale, self.input_size,
                         self.input_size)
  end
  MobileFaceNet.forward = top_forward
  -- net:body(x) -> embeddings: the network's computation (forward calls it; in evaluation mode
  -- without recording an autograd tape).
  function MobileFaceNet:body(x) return self.features(self.conv_sep(self.layers(x))) end

  -- ---------------------------------------------------------------- BatchNorm folding
  -- per-channel scale s = γ/√(var+ε) and shift t = β − s·mean of an evaluation-mode BatchNorm
  local function bn_affine(bn)
    if not bn.running_mean then fail("fold_batchnorm: a BatchNorm without running statistics cannot be folded") end
    local inv = (bn.running_var + bn.eps):sqrt()
    local s = bn.weight and (bn.weight / inv) or (inv * 0 + 1) / inv
    local t = (bn.bias or s * 0) - s * bn.running_mean
    return s:detach(), t:detach()
  end
  -- conv (no BN between) followed by bn: w ← s·w per output channel, b ← s·b + t
  local function fold_conv(conv, bn)
    local s, t = bn_affine(bn)
    local O = conv.out_channels
    local w = conv.weight * s:reshape(O, 1, 1, 1)
    local b = conv.bias and (conv.bias * s + t) or t
    conv.weight:copy(w)
    if conv.bias then conv.bias:copy(b) else conv:register_parameter("bias", b:clone()) end
  end
  -- linear followed by a BatchNorm1d: rows scaled
  local function fold_linear(lin, bn)
    local s, t = bn_affine(bn)
    local w = lin.weight * s:reshape(lin.out_features, 1)
    local b = lin.bias and (lin.bias * s + t) or t
    lin.weight:copy(w)
    if lin.bias then lin.bias:copy(b) else lin:register_parameter("bias", b:clone()) end
  end
  -- a BatchNorm2d (C channels of hw×hw) before flatten → linear: columns scaled, bias shifted
  local function fold_head(bn, lin)
    local s, t = bn_affine(bn)
    local C = bn.num_features
    local per = lin.in_features // C
    local se = s:reshape(C, 1):matmul(fvl.ones(1, per)):reshape(1, lin.in_features)
    local te = t:reshape(C, 1):matmul(fvl.ones(1, per)):reshape(lin.in_features, 1)
    local b = lin.weight:matmul(te):reshape(lin.out_features)
    if lin.bias then b = b + lin.bias end
    lin.weight:copy(lin.weight * se)
    if lin.bias then lin.bias:copy(b) else lin:register_parameter("bias", b:clone()) end
  end

  -- Folds, in place, every BatchNorm that directly follows a convolution or linear layer (and the
  -- IResNet head's BN2d before its linear layer) into that layer's weight and bias, replacing the
  -- BatchNorm by Identity. Exact up to rounding in evaluation mode; the folded network is for
  -- inference (the BN2d in front of each IBasicBlock's first conv stays: the conv's zero padding
  -- makes that fold inexact). Returns net.
  function nn.fold_batchnorm(net)
    if not util.isinstance(net, nn.Module) then
      fail("fold_batchnorm: net must be an fvl.nn module, got " .. util.typename(net))
    end
    if net.training then fail("fold_batchnorm: call net:evaluate() first (folding uses the running statistics)") end
    local function is_bn(m) return m and (m.class_name == "BatchNorm2d" or m.class_name == "BatchNorm1d") end
    fvl.no_grad(function()
      net:apply(function(m)
        for _, pr in ipairs(m._folds or {}) do
          if m[pr[1]] and is_bn(m[pr[2]]) then
            fold_conv(m[pr[1]], m[pr[2]])
            m:add_module(pr[2], nn.Identity())
          end
        end
        for _, pr in ipairs(m._head_folds or {}) do
          if is_bn(m[pr[1]]) then
            fold_head(m[pr[1]], m[pr[2]])
            m:add_module(pr[1], nn.Identity())
          end
        end
        for _, pr in ipairs(m._linear_folds or {}) do
          if is_bn(m[pr[2]]) then
            fold_linear(m[pr[1]], m[pr[2]])
            m:add_module(pr[2], nn.Identity())
          end
        end
        if m.class_name == "Sequential" then   -- Conv2d directly followed by BatchNorm2d
          for i = 1, #m._children - 1 do
            local a, b = m[m._children[i]], m[m._children[i + 1]]
            if a.class_name == "Conv2d" and b.class_name == "BatchNorm2d" then
              fold_conv(a, b)
              m:add_module(m._children[i + 1], nn.Identity())
            end
          end
        end
      end)
    end)
    net.folded = true
    return net
  end

  -- FLOPs per image (2 × multiply-adds of every Conv2d and Linear; BN, PReLU and sums not
  -- counted, as in the usual backbone tables), from one evaluation-mode forward of a 1-image batch.
  function nn.flops(net, chw)
    if not util.isinstance(net, nn.Module) then fail("flops: net must be an fvl.nn module, got " .. util.typename(net)) end
    if type(chw) ~= "table" or #chw ~= 3 then fail("flops: expected the input shape {C, H, W}") end
    local was = net.training
    net:evaluate()
    fvl.no_grad(function() net(fvl.zeros(1, chw[1], chw[2], chw[3])) end)
    net:train(was)
    local total = 0
    net:apply(function(m)
      if m.class_name == "Conv2d" then
        total = total + 2 * m.out_channels * (m.in_channels // m.groups) * m.kh * m.kw * m.out_hw[1] * m.out_hw[2]
      elseif m.class_name == "Linear" then
        total = total + 2 * m.in_features * m.out_features
      end
    end)
    return total
  end
end
