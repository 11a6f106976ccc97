-- fvl.loss.margin's fields set between steps follow the constructor's rules: s may go from a number
-- to a function(ctx) (a schedule) or a B tensor and back, target/negative to other functions; any
-- other value is an error at the next call naming the head, the field, expected and actual.
local fvl = fvl or require "fvl"
fvl.threads(1)
local x, y = fvl.randn(4, 3), { 1, 2, 3, 1 }
local function arc(c) return (c:acos() + 0.5):cos() end
local function cos_m(c) return c - 0.35 end

describe("margin head fields set after construction", function()
  it("s: number -> function -> tensor -> number, each the loss it would be from the constructor", function()
    fvl.manual_seed(3)
    local h = fvl.loss.margin { dim = 3, classes = 3, s = 64, target = arc }
    local l64 = h(x, y):item()
    h.s = function(ctx) return 32 end
    local lf = h(x, y):item()
    fvl.manual_seed(3)
    local ref = fvl.loss.margin { dim = 3, classes = 3, s = 32, target = arc }
    expect_near(lf, ref(x, y):item(), 1e-5, 0, "s as a function = the constructor's s = 32")
    h.s = fvl.ones(4) * 32
    expect_near(h(x, y):item(), lf, 1e-5, 0, "a B tensor of 32")
    h.s = 64
    expect_near(h(x, y):item(), l64, 1e-5, 0, "back to a number")
    h.s = -1
    expect_error(function() h(x, y) end, "margin: s = -1 is outside 0..inf (head.s was set after construction)")
    h.s = "big"
    expect_error(function() h(x, y) end,
                 "margin: s must be a number, a B tensor or a function(ctx), got string (head.s was set after construction)")
  end)
  it("s given as a function at construction may become a number, checked", function()
    local h = fvl.loss.margin { dim = 3, classes = 3, s = function(ctx) return 16 end, target = arc, name = "mine" }
    expect_true(h(x, y):item() > 0)
    h.s = 30
    expect_true(h(x, y):item() > 0, "a number after a function")
    h.s = 0 / 0
    expect_error(function() h(x, y) end, "mine: s must be a number, got nan (head.s was set after construction)")
  end)
  it("target and negative: other functions, or a clear error", function()
    fvl.manual_seed(4)
    local h = fvl.loss.margin { dim = 3, classes = 3, s = 30, target = arc }
    h(x, y)
    h.target = cos_m
    fvl.manual_seed(4)
    local ref = fvl.loss.margin { dim = 3, classes = 3, s = 30, target = cos_m }
    expect_near(h(x, y):item(), ref(x, y):item(), 1e-5, 0, "a new target function is used")
    h.negative = function() return { kind = "none" } end
    expect_true(h(x, y):item() > 0, "a negative function added later")
    h.negative = nil
    expect_true(h(x, y):item() > 0, "and removed")
    h.target = 0.5
    expect_error(function() h(x, y) end, "margin: target must be a function(c, ctx) returning the B target values, "
                 .. "got number (head.target was set after construction)")
    h.target = arc
    h.negative = "hard"
    expect_error(function() h(x, y) end, "margin: negative must be a function(c, ctx) or nil, got string (head.negative was set after construction)")
  end)
end)
