-- wrk script: POST a fresh small-file declaration to the create endpoint.
-- Env: BENCH_PATH (default /api/v1/uploads), BENCH_TOKEN (one bearer token),
-- BENCH_TOKENS (a file of tokens, one owner each, taken in turn), BENCH_BODY ("json" for our API
-- and the FastAPI presigner, "django" for django-s3-file-upload, "companion"
-- for Uppy Companion's GET /s3/params?filename=...&type=..., its presigned POST),
-- BENCH_PAIR=1: after each create, GET /api/v1/uploads/{id} for the id it returned.
-- BENCH_CYCLE=1 (the embedded default only, whose store is the server itself):
-- every upload whole, three requests: create, the form POST of its 1,024
-- bytes to /storage/v1/form, POST /api/v1/uploads/{id}/complete. wrk keeps no
-- state per connection, so each thread keeps queues: forms to send (from
-- create answers) and uploads to complete (from the 204s' Location, which
-- names the key and so the id); any connection takes the next job.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "report.lua")
local path = os.getenv("BENCH_PATH") or "/api/v1/uploads"
local kind = os.getenv("BENCH_BODY") or "json"
local pair = os.getenv("BENCH_PAIR") == "1"
local cycle = os.getenv("BENCH_CYCLE") == "1"
local forms = {}
local to_complete = {}
local BOUNDARY = "benchboundary7MA4YWxkTrZu0gW"
local FILE = string.rep("x", 1024)
local counter = 0

local ids = {}
local threads = {}

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

local headers = { ["Content-Type"] = "application/json" }
local auth = os.getenv("BENCH_TOKEN")
if auth and auth ~= "" then headers["Authorization"] = "Bearer " .. auth end
-- BENCH_TOKENS: a file of tokens, one per line, each a different owner;
-- the creates take them in turn, so consecutive requests (and the batches
-- the server commits together) belong to different owners.
local tokens = {}
local tokens_file = os.getenv("BENCH_TOKENS")
if tokens_file and tokens_file ~= "" then
  for line in io.lines(tokens_file) do
    if line ~= "" then tokens[#tokens + 1] = { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. line } end
  end
end

local function form_request(form)
  local parts = {}
  for name, value in pairs(form.fields) do
    parts[#parts + 1] = "--" .. BOUNDARY .. '\r\nContent-Disposition: form-data; name="' .. name .. '"\r\n\r\n' .. value .. "\r\n"
  end
  parts[#parts + 1] = "--" .. BOUNDARY .. '\r\nContent-Disposition: form-data; name="file"; filename="f.bin"\r\n' ..
    "Content-Type: application/octet-stream\r\n\r\n" .. FILE .. "\r\n--" .. BOUNDARY .. "--\r\n"
  return wrk.format("POST", form.path, { ["Content-Type"] = "multipart/form-data; boundary=" .. BOUNDARY },
    table.concat(parts))
end

function request()
  if cycle and #to_complete > 0 then
    return wrk.format("POST", "/api/v1/uploads/" .. table.remove(to_complete, 1) .. "/complete", headers, "{}")
  end
  if cycle and #forms > 0 then
    return form_request(table.remove(forms, 1))
  end
  if pair and #ids > 0 then
    local id = table.remove(ids)
    return wrk.format("GET", "/api/v1/uploads/" .. id, headers, nil)
  end
  counter = counter + 1
  local name = string.format("f-%d-%d-%d.bin", tid or 0, counter, math.random(1, 1000000000))
  if kind == "companion" then
    return wrk.format("GET", path .. "?filename=" .. name .. "&type=application%2Foctet-stream", nil, nil)
  end
  local body
  if kind == "datasette" then
    body = string.format('{"filename": "%s", "content_type": "application/octet-stream", "size": 1024}', name)
  elseif kind == "django" then
    body = string.format('{"filename": "%s", "acl": "private"}', name)
  else
    body = string.format('{"name": "%s", "size": 1024, "type": "application/octet-stream"}', name)
  end
  if #tokens > 0 then
    return wrk.format("POST", path, tokens[(counter + (tid or 0) * 7919) % #tokens + 1], body)
  end
  return wrk.format("POST", path, headers, body)
end

function response(status, hdrs, body)
  if status >= 300 then
    errors_seen = (errors_seen or 0) + 1
    if (errors_seen or 0) <= 3 then io.stderr:write("status " .. status .. ": " .. string.sub(body, 1, 200) .. "\n") end
  end
  if cycle and status == 201 then
    local path = string.match(body, '"url"%s*:%s*"https?://[^/"]+(/[^"]*)"')
    local fields = {}
    for name, value in string.gmatch(string.match(body, '"fields"%s*:%s*(%b{})') or "", '"([^"]+)"%s*:%s*"([^"]*)"') do
      fields[name] = value
    end
    if path then table.insert(forms, { path = path, fields = fields }) end
  elseif cycle and status == 204 then
    -- .../uploads/{owner}/{yyyy}/{mm}/{dd}/{id}/{name}
    local id = string.match(hdrs["Location"] or hdrs["location"] or "", "/uploads/[^/]+/%d+/%d+/%d+/([0-9A-Z]+)/")
    if id then table.insert(to_complete, id) end
  end
  if pair and status == 201 then
    local id = string.match(body, '"id"%s*:%s*"([0-9A-Z]+)"')
    if id then table.insert(ids, id) end
  end
end

function done(summary, latency, requests)
  bench_json(summary, latency, threads)
end
