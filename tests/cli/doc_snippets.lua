-- The docs are true: runs what README.md and docs/*.md show.
--  1. every fenced block opened with "```lua runnable" runs, as written, in a fresh `fvl`
--     process whose working directory holds small data made here with the project's own tools
--     (runs/, aligned/ = an identity folder of PNGs, faces_emore/train.rec + .idx + property,
--     faces_emore/lfw.bin, lfw/pairs.txt + lfw/NAME/NAME_000K.jpg, emb.npy + labels.npy,
--     model.npz). A line "<!-- setup: CODE -->" directly above the fence runs CODE first (for
--     a fragment that uses a name such as x or net defined in the text around it).
--  2. every relative link of those files (and DEVELOPERS.md) names a file that exists, and a
--     "#anchor" on a .md file names one of its headings (GitHub's anchor rule).
--  3. every `fvl scripts/NAME.lua ... --option` they show names an existing script and an option
--     that the script's --help lists.
--     A plain block right after a runnable one is the output it prints (numbers compared
--     only with FVL_DOCS_EXACT=1, on the machine the figures came from).
--  4. every repository path they name (scripts/..., docs/runs/..., tests/... with an extension)
--     exists.
-- usage: fvl tests/cli/doc_snippets.lua FVL TMPDIR [FILE.md ...]   (from the repository root)
local FVL, tmp = assert(arg[1], "usage: doc_snippets.lua FVL TMPDIR"), assert(arg[2])
local files = {}
for i = 3, #arg do files[#files + 1] = arg[i] end
if #files == 0 then
  files = { "README.md" }
  local p = assert(io.popen("ls docs/*.md"))
  for f in p:lines() do files[#files + 1] = f end
  p:close()
end
local fails, ran = 0, 0
local function fail(fmt, ...) fails = fails + 1; print("FAIL: " .. fmt:format(...)) end
local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end
local function slurp(path) local f = assert(io.open(path, "rb")); local s = f:read("a"); f:close(); return s end
local function exists(path) return fvl.sys.realpath(path) ~= nil end
local function spit(path, s) local f = assert(io.open(path, "wb")); f:write(s); f:close() end

-- the fixture data, made once -------------------------------------------------------------
local function make_fixture(dir)
  local data, sys = fvl.data, fvl.sys
  sys.mkdirs(dir .. "/runs"); sys.mkdirs(dir .. "/faces_emore")
  local K, per, S = 4, 3, 112
  local d = data.synthetic_faces{ image = "rgb", size = S, identities = K, per_identity = per,
                                  test_identities = 2, test_per_identity = 2, seed = 1 }
  local x, y = d.train.x, d.train.labels:totable()
  for i = 1, #y do
    local name = ("person_%d"):format(y[i])
    sys.mkdirs(("%s/aligned/%s"):format(dir, name)); sys.mkdirs(("%s/lfw/%s"):format(dir, name))
    local img = x:select(1, i):contiguous()
    spit(("%s/aligned/%s/%02d.png"):format(dir, name, i), data.encode_image(img, { format = "png" }))
    spit(("%s/lfw/%s/%s_%04d.jpg"):format(dir, name, name, (i - 1) % per + 1), data.encode_image(img))
  end
  assert(data.folder_to_rec(dir .. "/aligned", dir .. "/faces_emore/train.rec", { property = true }))
  assert(data.write_pairs_pack(dir .. "/faces_emore/lfw.bin", x, d.train.labels, { pairs = 20, seed = 1 }))
  -- LFW's pairs.txt: 10 folds of 1 same-person and 1 different-person pair each
  local lines = { "10\t1" }
  for f = 1, 10 do
    local a, b = (f - 1) % K + 1, f % K + 1
    lines[#lines + 1] = ("person_%d\t%d\t%d"):format(a, (f - 1) % per + 1, f % per + 1)
    lines[#lines + 1] = ("person_%d\t%d\tperson_%d\t%d"):format(a, f % per + 1, b, (f + 1) % per + 1)
  end
  spit(dir .. "/lfw/pairs.txt", table.concat(lines, "\n") .. "\n")
  fvl.save(dir .. "/emb.npy", fvl.randn(12, 8))
  fvl.save(dir .. "/labels.npy", d.train.labels)
  local net = fvl.nn.mobilefacenet{ dim = 16, input_size = 56 }
  net:evaluate()
  assert(fvl.nn.save(dir .. "/model.npz", net, { meta = { input = { 3, 56, 56 } } }))
end

-- 1. the runnable blocks ---------------------------------------------------------------------
local fixture = tmp .. "/fixture"
local ok, err = pcall(make_fixture, fixture)
if not ok then fail("making the fixture data: %s", err) end
local blocks, anchors, texts = {}, {}, {}
for _, file in ipairs(files) do
  local text = slurp(file)
  texts[file] = text
  local ln, open, prev, last = 0, nil, nil, nil
  for line in (text .. (text:sub(-1) == "\n" and "" or "\n")):gmatch("(.-)\n") do
    ln = ln + 1
    local fence, info = line:match("^(%s*```+)%s*(.*)$")
    if open then
      if fence and info == "" then
        if open.runnable then blocks[#blocks + 1] = open end
        -- a plain block right after a runnable one (blank lines between) is its output
        if open.output_of then open.output_of.expected = open.lines end
        last = open.runnable and open or nil
        open = nil
      else open.lines[#open.lines + 1] = line end
    elseif fence then
      open = { file = file, line = ln, runnable = info:match("^lua%s+runnable") ~= nil,
               setup = prev and prev:match("^<!%-%- setup: (.*) %-%->$"), lines = {},
               output_of = info == "" and last or nil }
      last = nil
    elseif line:match("%S") then
      last = nil
    end
    prev = line
  end
  if open then fail("%s:%d: the code block is never closed", file, open.line) end
end
for i, b in ipairs(blocks) do
  local dir = ("%s/run%03d"):format(tmp, i)
  os.execute(("cp -r %s %s"):format(q(fixture), q(dir)))
  spit(dir .. "/snippet.lua", (b.setup and (b.setup .. "\n") or "") .. table.concat(b.lines, "\n") .. "\n")
  local cmd = ("cd %s && FVL_THREADS=1 timeout 120 %s snippet.lua > out.txt 2>&1"):format(q(dir), q(FVL))
  local okr = os.execute(cmd)
  ran = ran + 1
  if not okr then
    fail("%s:%d: the runnable lua block fails:\n%s", b.file, b.line, slurp(dir .. "/out.txt"))
  elseif b.expected then
    -- the output shown: same lines in order (blanks collapsed, "$ command" lines skipped,
    -- "..." matches anything). Numbers are compared only with FVL_DOCS_EXACT=1: another CPU or
    -- build (AVX2 or AVX-512 kernels, the sanitizer build's flags) rounds differently, so by
    -- default a number matches any number; the docs' figures come from the development machine.
    local exact = os.getenv("FVL_DOCS_EXACT") == "1"
    local function norm(l)
      l = l:gsub("%s+", " ")
      if not exact then l = l:gsub("%d[%d.]*", "0") end
      return l
    end
    local got = {}
    for l in slurp(dir .. "/out.txt"):gmatch("[^\n]+") do got[#got + 1] = norm(l) end
    local k = 1
    for _, want in ipairs(b.expected) do
      if not want:match("^%$ ") then
        local pat = "^" .. norm(want):gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0")
                                     :gsub("%%%.%%%.%%%.", ".-") .. "$"
        if not (got[k] and got[k]:match(pat)) then
          fail("%s:%d: the block prints\n  %s\nwhere the docs show\n  %s", b.file, b.line,
               tostring(got[k]), want)
          break
        end
        k = k + 1
      end
    end
  end
end
local per_file = {}
for _, b in ipairs(blocks) do per_file[b.file] = (per_file[b.file] or 0) + 1 end
if not per_file["README.md"] then fail("README.md has no runnable lua block") end

-- 2. relative links -------------------------------------------------------------------------
local function slug(h)   -- GitHub: lower case, drop punctuation but - and _, spaces to -
  h = h:gsub("`", ""):lower()
  h = h:gsub("[^%w%- _\128-\255]", ""):gsub(" ", "-")
  return h
end
local function headings(file)
  if anchors[file] then return anchors[file] end
  local set, seen = {}, {}
  local ok2, text = pcall(slurp, file)
  if ok2 then
    local infence = false
    for line in text:gmatch("[^\n]*") do
      if line:match("^%s*```") then infence = not infence end
      local h = not infence and line:match("^#+%s+(.-)%s*$")
      if h then
        local s = slug(h)
        local n = seen[s]; seen[s] = (n or -1) + 1
        set[n and (s .. "-" .. seen[s]) or s] = true
      end
    end
  end
  anchors[file] = set
  return set
end
local linkfiles = { "DEVELOPERS.md" }
for _, f in ipairs(files) do linkfiles[#linkfiles + 1] = f end
local nlinks = 0
for _, file in ipairs(linkfiles) do
  local text = texts[file] or slurp(file)
  local base = file:match("^(.*)/[^/]*$") or "."
  for target in text:gmatch("%]%(([^)%s]+)%)") do
    if not target:match("^%a[%w+.-]*:") then          -- not http:, mailto:, ...
      nlinks = nlinks + 1
      local path, anchor = target:match("^([^#]*)#?(.*)$")
      local full = path == "" and file or (base .. "/" .. path)
      if not exists(full) then
        fail("%s: the link (%s) names %s, which does not exist", file, target, full)
      elseif anchor ~= "" and full:match("%.md$") and not headings(full)[anchor] then
        fail("%s: the link (%s): %s has no heading with the anchor #%s", file, target, full, anchor)
      end
    end
  end
end

-- 3. script options -------------------------------------------------------------------------
local helps, nopts, reported = {}, 0, {}
for _, file in ipairs(linkfiles) do
  for line in texts[file] and texts[file]:gmatch("[^\n]+") or io.lines(file) do
    for script, rest in line:gmatch("fvl%s+([%w_/]+%.lua)([^`|;)]*)") do
      if script:match("^scripts/") or script:match("^tools/") then
        if not exists(script) then
          if not reported[script] then fail("%s: `fvl %s`: no such script", file, script) end
          reported[script] = true
        else
          if not helps[script] then
            local p = io.popen(("%s %s --help 2>&1"):format(q(FVL), q(script)))
            helps[script] = p:read("a"); p:close()
          end
          for opt in (" " .. rest):gmatch("%s(%-%-[%a][%w-]*)") do
            nopts = nopts + 1
            local key = script .. " " .. opt
            if not (helps[script] .. " "):find(opt:gsub("%-", "%%-") .. "[^%w-]") and not reported[key] then
              reported[key] = true
              fail("%s: `fvl %s ... %s`: %s --help lists no such option", file, script, opt, script)
            end
          end
        end
      end
    end
  end
end

-- 4. repository paths named in the text -----------------------------------------------------
-- a path such as `scripts/bench/heads.lua` or docs/runs/bench/x.txt names a file or directory
-- that exists (placeholders such as scripts/configs/NAME.lua and globs are skipped)
local npaths = 0
for _, file in ipairs(linkfiles) do
  local text = texts[file] or slurp(file)
  for p in (" " .. text):gmatch("[%s`(]((%a+)/[%w_./-]*%w)") do
    local top = p:match("^(%a+)/")
    if (top == "tools" or top == "scripts" or top == "tests" or top == "engine" or top == "lua"
        or top == "app" or top == "docs" or top == "cmake")
       and p:match("%.%a+$") and not p:match("NAME") and not p:match("/x[./]") then
      npaths = npaths + 1
      if not exists(p) and not reported[p] then
        reported[p] = true
        fail("%s: names %s, which does not exist", file, p)
      end
    end
  end
end

print(("doc_snippets: %d runnable lua blocks run (%s), %d relative links, %d script options, %d paths checked, %d failures")
      :format(ran, (function() local t = {} for f, n in pairs(per_file) do t[#t + 1] = f .. " " .. n end
                                table.sort(t) return table.concat(t, ", ") end)(), nlinks, nopts, npaths, fails))
os.exit(fails == 0 and 0 or 1)
