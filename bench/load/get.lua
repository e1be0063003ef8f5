-- wrk script: plain GETs of the URL given (the server's floor: a small
-- answer through hyper, the router and every middleware, no database, no
-- signing), reported in the BENCH_JSON line bench/common.py reads.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "report.lua")

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function response(status, headers, body)
  if status >= 300 then
    errors_seen = (errors_seen or 0) + 1
  end
end

function done(summary, latency, requests)
  bench_json(summary, latency, threads)
end
