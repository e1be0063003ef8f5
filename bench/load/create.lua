-- wrk script: POST a fresh small-file declaration to the create endpoint.
-- Env: BENCH_PATH (default /api/v1/uploads), BENCH_BODY ("json" for our API
-- and the FastAPI presigner, "django" for django-s3-file-upload),
-- BENCH_PAIR=1: after each create, GET /api/v1/uploads/{id} for the id it returned.
local path = os.getenv("BENCH_PATH") or "/api/v1/uploads"
local kind = os.getenv("BENCH_BODY") or "json"
local pair = os.getenv("BENCH_PAIR") == "1"
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

function request()
  if pair and #ids > 0 then
    local id = table.remove(ids)
    return wrk.format("GET", "/api/v1/uploads/" .. id, headers, nil)
  end
  counter = counter + 1
  local name = string.format("f-%d-%d-%d.bin", tid or 0, counter, math.random(1, 1000000000))
  local body
  if kind == "datasette" then
    body = string.format('{"filename": "%s", "content_type": "application/octet-stream", "size": 1024}', name)
  elseif kind == "django" then
    body = string.format('{"filename": "%s", "acl": "private"}', name)
  else
    body = string.format('{"name": "%s", "size": 1024, "type": "application/octet-stream"}', name)
  end
  return wrk.format("POST", path, headers, body)
end

function response(status, hdrs, body)
  if status >= 300 then
    errors_seen = (errors_seen or 0) + 1
    if (errors_seen or 0) <= 3 then io.stderr:write("status " .. status .. ": " .. string.sub(body, 1, 200) .. "\n") end
  end
  if pair and status == 201 then
    local id = string.match(body, '"id"%s*:%s*"([0-9A-Z]+)"')
    if id then table.insert(ids, id) end
  end
end

function done(summary, latency, requests)
  local s = summary.duration / 1e6
  local bad = 0
  for _, t in ipairs(threads) do bad = bad + (t:get("errors_seen") or 0) end
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "seconds": %.3f, "rps": %.1f, "p50_ms": %.3f, "p90_ms": %.3f, "p99_ms": %.3f, "max_ms": %.3f, "non2xx": %d, "errors": %d}\n',
    summary.requests, s, summary.requests / s,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
    bad, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
