-- fvl.optim — optimisers with fused in-place C steps and visible state.
--
--   local opt = fvl.optim.sgd(params, {lr=0.1, momentum=0.9, nesterov=false, dampening=0,
--                                      weight_decay=5e-4, no_decay_bias_bn=true})
--   local opt = fvl.optim.adamw(params, {lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
--                                        weight_decay=0.01, no_decay_bias_bn=false})
--   opt:zero_grad()   opt:step()   opt.lr = sched(step)
--   fvl.optim.clip_grad_norm(params, max_norm) -> total norm before clipping
--
-- `params` is a list of tensors, a module (anything with :parameters()), or a list mixing
-- both (e.g. {net, head}); a tensor that appears twice is updated once.
-- Hyper-parameters are plain fields (opt.lr, opt.momentum, opt.weight_decay, ...) and may be
-- changed between steps. opt.state is a plain table that checkpoints carry:
--   sgd:   {step = k, momentum_buffer = {[i] = tensor}}              (i: index into opt.params)
--   adamw: {step = k, exp_avg = {[i] = tensor}, exp_avg_sq = {[i] = tensor}, param_step = {[i] = n}}
-- no_decay_bias_bn excludes every 1-D parameter (biases, BatchNorm and PReLU weights) from
-- weight decay. The update rules are PyTorch's (SGD with decay added to the gradient; AdamW
-- with decoupled decay and bias correction); see docs/training.md.
local fvl = require "fvl.core"
local util = require "fvl.util"
local F = fvl.F
local fail = util.fail

local optim = {}

-- flatten params (tensors, modules, lists of either) into a list of distinct leaf tensors
local function collect(fn, params)
  local out, seen = {}, {}
  local function add(v, where)
    if util.is_tensor(v) then
      if v:dtype() ~= "float32" then fail(string.format("%s: %s is an int32 tensor, expected float32", fn, where)) end
      if not v.is_leaf then
        fail(string.format("%s: %s is a computed tensor, expected a leaf parameter (requires_grad)", fn, where))
      end
      if not seen[v] then
        seen[v] = true
        out[#out + 1] = v
      end
    elseif type(v) == "table" and type(v.parameters) == "function" then
      local get = v.parameters   -- read once more and used: an __index may answer differently each time
      local ps = type(get) == "function" and get(v) or nil
      if type(ps) ~= "table" then fail(string.format("%s: %s:parameters() gave %s, expected a list", fn, where, util.typename(ps))) end
      for i, p in ipairs(ps) do add(p, where .. ":parameters()[" .. i .. "]") end
    elseif type(v) == "table" then
      for i, p in ipairs(v) do add(p, where .. "[" .. i .. "]") end
    else
      fail(string.format("%s: %s is a %s, expected tensors or modules", fn, where, type(v)))
    end
  end
  add(params, "params")
  if #out == 0 then fail(fn .. ": params is empty (no tensors to optimise)") end
  -- tensors compare by identity; a userdata may wrap the same tensor twice, keep the first
  return out
end

local Optimizer = util.class("Optimizer")
optim.Optimizer = Optimizer
Optimizer.__call = nil

-- opt:zero_grad() -> opt: sets the gradient of every parameter to nil (PyTorch's set_to_none: the
-- next backward writes fresh gradients, no pass over the memory).
function Optimizer:zero_grad()
  for _, p in ipairs(self.params) do
    p.grad = nil
    util.row_grads[p] = nil
  end
  return self
end

function Optimizer:describe()
  local keys = {}
  for _, k in ipairs(self.hyper_names) do keys[#keys + 1] = k .. "=" .. tostring(self[k]) end
  return string.format("%s(%d tensors, %s)", self.kind, #self.params, table.concat(keys, ", "))
end

-- opt:hyper() -> {lr=, momentum=, ...}: the hyper-parameters as a plain table (a copy, for logs
-- and checkpoints): SGD's lr, momentum, dampening, nesterov, weight_decay, no_decay_bias_bn;
-- AdamW's lr, beta1, beta2, eps, weight_decay, no_decay_bias_bn.
function Optimizer:hyper()
  local h = {}
  for _, k in ipairs(self.hyper_names) do h[k] = self[k] end
  return h
end

local function decay_of(self, i)
  if self.no_decay_bias_bn and self.params[i]:dim() <= 1 then return 0 end
  return self.weight_decay
end

-- opt:load_state(st): replaces opt.state with `st` (as from a checkpoint: ck.opt.state), checking
-- every per-parameter entry against opt.params. Errors (naming the optimiser): st not a table, an
-- index that matches no parameter, a tensor whose shape differs from its parameter's.
function Optimizer:load_state(st)
  if type(st) ~= "table" then fail(self.kind .. ":load_state: expected a state table, got " .. type(st)) end
  local new = {}
  for k, v in pairs(st) do
    if type(v) == "table" then
      local t = {}
      for i, x in pairs(v) do
        if math.type(i) ~= "integer" or i < 1 or i > #self.params then
          fail(string.format("%s:load_state: state.%s[%s] does not match a parameter (the optimiser has %d)",
                             self.kind, k, tostring(i), #self.params))
        end
        if util.is_tensor(x) then
          if util.shape_str(x) ~= util.shape_str(self.params[i]) then
            fail(string.format("%s:load_state: state.%s[%d] is %s but parameter %d is %s", self.kind, k, i,
                               util.shape_str(x), i, util.shape_str(self.params[i])))
          end
          x = x:detach():contiguous():clone()
        end
        t[i] = x
      end
      new[k] = t
    else
      new[k] = v
    end
  end
  self.state = new
  return self
end

-- Partial FC (fvl.loss.sharded): a parameter whose gradient lives on a sampled copy of some of
-- its rows (util.row_grads[p] = {rows =, param =}) is stepped on those rows only: the rows of the
-- state tensors are gathered, the fused step runs on the K rows, rows and state are written back.
-- Rows not sampled (and their momentum / moments) are untouched.
local function row_grad(p)
  if p.grad ~= nil then return nil end
  local rg = util.row_grads[p]
  if rg and rg.param.grad ~= nil then return rg end
end
local function as_rows(t) return t:dim() == 1 and t:reshape(t:numel(), 1) or t end
local function row_step(p, rg, states, stepfn)
  local rows = rg.rows
  local sub = rg.param:detach()
  local subs = {}
  for k, st in ipairs(states) do subs[k] = st:index(1, rows):contiguous() end
  stepfn(sub, rg.param.grad:contiguous(), subs)
  F.copy_rows(as_rows(p:detach()), rows, as_rows(sub))
  for k, st in ipairs(states) do F.copy_rows(as_rows(st), rows, as_rows(subs[k])) end
end

-- ------------------------------------------------------------------ SGD
local SGD = util.class("SGD", Optimizer)
SGD.__call = nil

--- SGD with momentum (PyTorch's update): params is a list of tensors and/or modules (their
--- parameters()); opts: lr (required), momentum (0), dampening (0, in 0..1), nesterov (false;
--- needs momentum > 0 and dampening = 0), weight_decay (0), no_decay_bias_bn (false: true skips
--- weight decay on biases and batch-norm parameters). opt:step() after backward, opt:zero_grad().
function optim.sgd(params, opts)
  local fn = "optim.sgd"
  opts = util.check_opts(fn, opts, { "lr", "momentum", "dampening", "nesterov", "weight_decay", "no_decay_bias_bn" })
  local self = setmetatable({}, SGD)
  self.kind = "sgd"
  self.params = collect(fn, params)
  if opts.lr == nil then fail(fn .. ": option lr is required") end
  self.lr = util.number(fn, "lr", opts.lr, nil, 0)
  self.momentum = util.number(fn, "momentum", opts.momentum, 0, 0)
  self.dampening = util.number(fn, "dampening", opts.dampening, 0, 0, 1)
  self.nesterov = util.boolean(fn, "nesterov", opts.nesterov, false)
  self.weight_decay = util.number(fn, "weight_decay", opts.weight_decay, 0, 0)
  self.no_decay_bias_bn = util.boolean(fn, "no_decay_bias_bn", opts.no_decay_bias_bn, false)
  if self.nesterov and (self.momentum <= 0 or self.dampening ~= 0) then
    fail(fn .. ": nesterov needs momentum > 0 and dampening = 0")
  end
  self.hyper_names = { "lr", "momentum", "dampening", "nesterov", "weight_decay", "no_decay_bias_bn" }
  self.state = { step = 0, momentum_buffer = {} }
  return self
end

function SGD:step()
  local lr = self.lr
  if type(lr) ~= "number" or lr ~= lr or lr < 0 then
    fail("sgd:step: lr = " .. tostring(lr) .. " (expected a number >= 0)")
  end
  local st = self.state
  local bufs = st.momentum_buffer
  local mom = self.momentum
  local o = { lr = lr, momentum = mom, dampening = self.dampening, weight_decay = 0,
              nesterov = self.nesterov, first = false }
  for i, p in ipairs(self.params) do
    local g = p.grad
    local rg = row_grad(p)
    if rg then
      o.weight_decay = decay_of(self, i)
      local states = {}
      if mom > 0 then
        o.first = bufs[i] == nil
        bufs[i] = bufs[i] or fvl.zeros(p:shape())
        states[1] = bufs[i]
      end
      row_step(p, rg, states, function(sub, sg, ss) F.sgd_step(sub, sg, ss[1], o) end)
    elseif g ~= nil then
      o.weight_decay = decay_of(self, i)
      local buf = nil
      if mom > 0 then
        buf = bufs[i]
        o.first = buf == nil
        if buf == nil then
          buf = fvl.zeros(p:shape())
          bufs[i] = buf
        end
      end
      F.sgd_step(p, g, buf, o)
    end
  end
  st.step = st.step + 1
  return self
end

-- ------------------------------------------------------------------ AdamW
local AdamW = util.class("AdamW", Optimizer)
AdamW.__call = nil

--- AdamW (decoupled weight decay): opts lr (1e-3), beta1 (0.9), beta2 (0.999) or betas =
--- {beta1, beta2} (each < 1), eps (1e-8), weight_decay (0.01), no_decay_bias_bn (false).
function optim.adamw(params, opts)
  local fn = "optim.adamw"
  opts = util.check_opts(fn, opts, { "lr", "beta1", "beta2", "betas", "eps", "weight_decay", "no_decay_bias_bn" })
  local self = setmetatable({}, AdamW)
  self.kind = "adamw"
  self.params = collect(fn, params)
  self.lr = util.number(fn, "lr", opts.lr, 1e-3, 0)
  local b1, b2 = opts.beta1, opts.beta2
  if opts.betas ~= nil then
    if type(opts.betas) ~= "table" or #opts.betas ~= 2 then fail(fn .. ": betas must be {beta1, beta2}") end
    b1, b2 = opts.betas[1], opts.betas[2]
  end
  self.beta1 = util.number(fn, "beta1", b1, 0.9, 0, 1)
  self.beta2 = util.number(fn, "beta2", b2, 0.999, 0, 1)
  if self.beta1 >= 1 or self.beta2 >= 1 then fail(fn .. ": beta1 and beta2 must be < 1") end
  self.eps = util.number(fn, "eps", opts.eps, 1e-8, 0)
  self.weight_decay = util.number(fn, "weight_decay", opts.weight_decay, 0.01, 0)
  self.no_decay_bias_bn = util.boolean(fn, "no_decay_bias_bn", opts.no_decay_bias_bn, false)
  self.hyper_names = { "lr", "beta1", "beta2", "eps", "weight_decay", "no_decay_bias_bn" }
  self.state = { step = 0, exp_avg = {}, exp_avg_sq = {}, param_step = {} }
  return self
end

function AdamW:step()
  local lr = self.lr
  if type(lr) ~= "number" or lr ~= lr or lr < 0 then
    fail("adamw:step: lr = " .. tostring(lr) .. " (expected a number >= 0)")
  end
  local st = self.state
  local o = { lr = lr, beta1 = self.beta1, beta2 = self.beta2, eps = self.eps, weight_decay = 0, step = 1 }
  for i, p in ipairs(self.params) do
    local g = p.grad
    local rg = row_grad(p)
    if g ~= nil or rg then
      if st.exp_avg[i] == nil then
        st.exp_avg[i] = fvl.zeros(p:shape())
        st.exp_avg_sq[i] = fvl.zeros(p:shape())
        st.param_step[i] = 0
      end
      st.param_step[i] = st.param_step[i] + 1
      o.step = st.param_step[i]
      o.weight_decay = decay_of(self, i)
      if rg then
        row_step(p, rg, { st.exp_avg[i], st.exp_avg_sq[i] },
                 function(sub, sg, ss) F.adamw_step(sub, sg, ss[1], ss[2], o) end)
      else
        F.adamw_step(p, g, st.exp_avg[i], st.exp_avg_sq[i], o)
      end
    end
  end
  st.step = st.step + 1
  return self
end

-- ------------------------------------------------------------------ gradient clipping
-- scales all gradients so that their global L2 norm is at most max_norm; returns the norm
-- before clipping (a non-finite norm is returned and nothing is scaled)
function optim.clip_grad_norm(params, max_norm)
  local fn = "optim.clip_grad_norm"
  local ps = collect(fn, params)
  max_norm = util.number(fn, "max_norm", max_norm, nil, 0)
  local grads, ss = {}, 0
  for _, p in ipairs(ps) do
    local g = p.grad
    if g ~= nil then
      grads[#grads + 1] = g
      ss = ss + F.sumsq(g)
    end
  end
  local total = math.sqrt(ss)
  if total ~= total or total == math.huge then return total end
  if total > max_norm then
    local s = max_norm / (total + 1e-6)
    for _, g in ipairs(grads) do F.scale_(g, s) end
  end
  return total
end

return optim
