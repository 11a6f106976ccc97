-- fvl.data.synthetic_faces{image = "rgb"}: RGB face images of identities under nuisances.
local fvl = fvl or require "fvl"
local sf = fvl.data.synthetic_faces

describe("synthetic RGB faces", function()
  it("shapes, labels, range, determinism across thread counts", function()
    local o = { image = "rgb", size = 24, identities = 5, per_identity = 3, test_identities = 2,
                test_per_identity = 4, seed = 3 }
    fvl.threads(1)
    local a = sf(o)
    fvl.threads(2)
    local b = sf(o)
    expect_eq(table.concat(a.train.x:shape(), "x"), "15x3x24x24")
    expect_eq(table.concat(a.test.x:shape(), "x"), "8x3x24x24")
    expect_eq(a.train.labels:min():item(), 1)
    expect_eq(a.train.labels:max():item(), 5)
    expect_eq(a.test.labels:max():item(), 2)
    expect_true(a.train.x:min():item() >= 0 and a.train.x:max():item() <= 255, "pixels in 0..255")
    expect_eq((a.train.x - b.train.x):abs():max():item(), 0, "same images with 1 and 2 threads")
    expect_eq((a.test.x - b.test.x):abs():max():item(), 0, "same test images")
    expect_eq(a.info.size, 24)
  end)
  it("without nuisances an identity renders identically; identities differ", function()
    local d = sf { image = "rgb", size = 32, identities = 4, per_identity = 2, test_identities = 0,
                   nuisance = 0, illumination = 0, noise = 0 }
    local x = d.train.x
    -- the face region (centre) is identical within an identity and differs between identities
    local function centre(i) return x:select(1, i):narrow(2, 10, 12):narrow(3, 10, 12) end
    expect_eq((centre(1) - centre(2)):abs():max():item(), 0, "centre of identity 1, images 1 and 2")
    expect_true((centre(1) - centre(3)):abs():mean():item() > 5, "identities 1 and 2 differ")
  end)
  it("errors", function()
    expect_error(function() sf { image = "rgb", size = 4 } end, "size = 4")
    expect_error(function() sf { image = "rgb", out_dim = 4 } end, "out_dim is not used by image=\"rgb\"")
    expect_error(function() sf { image = "vector", size = 32 } end, "size is for image=\"rgb\"")
  end)
end)
