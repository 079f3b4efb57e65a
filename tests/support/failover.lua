-- What a CI fleet does to the proxy while instances come and go: of every 10 requests, 9 check
-- a token (GET /api/v1/me) and 1 reports a leaked token (POST /api/v1/tokens/revoke, a unit of
-- work; a POST that nginx has sent is never passed on to another instance).
--
-- wrk ... -s failover.lua URL -- TOKEN UNKNOWN_TOKEN
-- prints "failover-statuses: 200=N 202=M ...", "failover-errors: connect=.. read=.. write=.. timeout=.."
-- and "failover-503-without-retry-after: N"

local token, unknown, step = "", "", 0

statuses = {}  -- a global, so that done() can read each thread's with thread:get()
bare_503 = 0   -- 503s that did not say when to try again
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  token, unknown = args[1], args[2]
end

function request()
  step = step + 1
  if step % 10 == 0 then
    return wrk.format("POST", "/api/v1/tokens/revoke", { ["Content-Type"] = "application/json" },
                      '{"tokens": ["' .. unknown .. '"]}')
  end
  return wrk.format("GET", "/api/v1/me", { ["Authorization"] = "Bearer " .. token })
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if status == 503 and headers["retry-after"] == nil and headers["Retry-After"] == nil then
    bare_503 = bare_503 + 1
  end
end

function done(summary, latency, requests)
  local totals, parts, bare = {}, {}, 0
  for _, thread in ipairs(threads) do
    bare = bare + thread:get("bare_503")
    for status, count in pairs(thread:get("statuses")) do
      totals[status] = (totals[status] or 0) + count
    end
  end
  for status, count in pairs(totals) do
    parts[#parts + 1] = status .. "=" .. count
  end
  io.write("failover-statuses: " .. table.concat(parts, " ") .. "\n")
  local e = summary.errors
  io.write(string.format("failover-errors: connect=%d read=%d write=%d timeout=%d\n",
                         e.connect, e.read, e.write, e.timeout))
  io.write("failover-503-without-retry-after: " .. bare .. "\n")
end
