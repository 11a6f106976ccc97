-- ijb_fixture.lua — a tiny IJB directory in insightface's layout, made with fvl's own tools
-- (dofile'd by tests/lua/ijb_spec.lua and tests/cli/eval_ijb.sh):
--   make_ijb(dir [, prefix]) -> info
-- Four synthetic RGB faces (fvl.data.synthetic_faces, 2 identities × 2 images) are aligned
-- crops by construction; each is placed into a larger "loose crop" JPEG through a known
-- similarity (rotated, scaled, shifted), and the template's landmarks through the same map are
-- written, 0-based, to <prefix>_name_5pts_score.txt. One template per face; the 6 pairs of
-- the 4 templates (2 genuine). info.aligned = the 4 aligned faces (4×3×112×112, 0..255),
-- info.maps = the similarities (aligned → loose crop, 0-based), info.identity = {1, 1, 2, 2}.
return function(dir, prefix)
  prefix = prefix or "ijbb"
  os.execute("mkdir -p '" .. dir .. "/meta' '" .. dir .. "/loose_crop'")
  local faces = fvl.data.synthetic_faces{ image = "rgb", size = 112, identities = 2, per_identity = 2,
                                          test_identities = 0, seed = 5 }
  local x = faces.train.x
  local labels = faces.train.labels:totable()
  local order = {}
  for i = 1, #labels do order[#order + 1] = i end
  table.sort(order, function(a, b) return labels[a] < labels[b] or (labels[a] == labels[b] and a < b) end)
  local tpl = fvl.data.face_template(112, { origin = 0 }):totable()
  local tid, pts, maps, aligned, identity = {}, {}, {}, {}, {}
  for k, i in ipairs(order) do
    local face = x[i]:contiguous()
    if face:max():item() <= 1.0001 then face = face * 255 end
    aligned[k], identity[k] = face, labels[i]
    local s, th = 1.25 + 0.1 * k, 0.15 * k - 0.3
    local c, sn = s * math.cos(th), s * math.sin(th)
    local m = { c, -sn, 60 + 3 * k, sn, c, 40 + 2 * k }
    maps[k] = m
    local crop = fvl.data.warp_image(face, m, { size = { 280, 280 }, origin = 0 })   -- the whole face fits
    local name = string.format("%d.jpg", k)
    assert(fvl.sys.write_atomic(dir .. "/loose_crop/" .. name, fvl.data.encode_image(crop, { quality = 95 })))
    local p = {}
    for _, q in ipairs(tpl) do
      p[#p + 1] = string.format("%.4f %.4f", m[1] * q[1] + m[2] * q[2] + m[3], m[4] * q[1] + m[5] * q[2] + m[6])
    end
    pts[k] = string.format("%s %s %.3f", name, table.concat(p, " "), 0.9 - 0.1 * k)
    tid[k] = string.format("%s %d %d", name, k, 100 + k)
  end
  local pairs_ = {}
  for a = 1, 4 do
    for b = a + 1, 4 do
      pairs_[#pairs_ + 1] = string.format("%d %d %d", a, b, identity[a] == identity[b] and 1 or 0)
    end
  end
  local function put(what, lines)
    assert(fvl.sys.write_atomic(string.format("%s/meta/%s_%s.txt", dir, prefix, what), table.concat(lines, "\n") .. "\n"))
  end
  put("face_tid_mid", tid)
  put("name_5pts_score", pts)
  put("template_pair_label", pairs_)
  return { aligned = fvl.cat(aligned):reshape(4, 3, 112, 112), maps = maps, identity = identity, prefix = prefix }
end
