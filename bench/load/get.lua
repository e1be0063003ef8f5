-- wrk script: plain GETs of the given URL; prints the same BENCH_JSON line as create.lua.
local threads = {}
function setup(thread) table.insert(threads, thread) end
function response(status, hdrs, body)
  if status >= 300 then errors_seen = (errors_seen or 0) + 1 end
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
