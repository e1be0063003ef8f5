-- wrk script: plain GETs of the given URL; prints the same BENCH_JSON line as create.lua.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "report.lua")
local threads = {}
function setup(thread) table.insert(threads, thread) end
function response(status, hdrs, body)
  if status >= 300 then errors_seen = (errors_seen or 0) + 1 end
end
function done(summary, latency, requests)
  bench_json(summary, latency, threads)
end
