-- The normal day of the embedded store, as one wrk thread's requests: people on My Tokens
-- creating tokens and reading the page, clients presenting tokens never used before (so that
-- every check writes `last used`), and a monitor on /healthz. Of every 20 requests:
--   1 GET /healthz, 1 GET /tokens, 1 POST /tokens (a new token), 17 GET /api/v1/me with a fresh token
-- (the test's small team, tests/system/test_store_under_load.py, makes about 1 page request in 50).
--
-- wrk ... -s bench/mixed.lua URL -- TOKENS_FILE FIRST_TOKEN SESSIONS_FILE RUN_ID
--   TOKENS_FILE    one unused token per line; FIRST_TOKEN is the 1-based line to start at, so
--                  that each run presents tokens no earlier run used
--   SESSIONS_FILE  "COOKIE CSRF" per line: signed-in browser sessions and their forms' CSRF token
--   RUN_ID         makes the names of the tokens this run creates unique

local tokens, sessions = {}, {}
local next_token, step, run_id = 1, 0, "run"

-- Globals, so that done() can read each thread's counts with thread:get().
statuses = {}
fresh_tokens = 0
reused_tokens = 0

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  for line in io.lines(args[1]) do
    tokens[#tokens + 1] = line
  end
  next_token = tonumber(args[2])
  for line in io.lines(args[3]) do
    local cookie, csrf = line:match("^(%S+) (%S+)$")
    sessions[#sessions + 1] = { cookie = cookie, csrf = csrf }
  end
  run_id = args[4]
end

local function token_check()
  local token = tokens[next_token]
  if next_token <= #tokens then
    fresh_tokens = fresh_tokens + 1
    next_token = next_token + 1
  else
    reused_tokens = reused_tokens + 1
    token = tokens[(step % #tokens) + 1]
  end
  return wrk.format("GET", "/api/v1/me", { ["Authorization"] = "Bearer " .. token })
end

function request()
  step = step + 1
  local slot = step % 20
  local session = sessions[(math.floor(step / 20) % #sessions) + 1]
  if slot == 0 then
    return wrk.format("GET", "/healthz")
  elseif slot == 7 then
    return wrk.format("GET", "/tokens", { ["Cookie"] = session.cookie })
  elseif slot == 14 then
    local body = "name=" .. run_id .. "-" .. step .. "&expiration=never&expires_on=&csrf_token=" .. session.csrf
    return wrk.format("POST", "/tokens", {
      ["Cookie"] = session.cookie,
      ["Content-Type"] = "application/x-www-form-urlencoded",
    }, body)
  end
  return token_check()
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local totals, fresh, reused = {}, 0, 0
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      totals[status] = (totals[status] or 0) + count
    end
    fresh = fresh + thread:get("fresh_tokens")
    reused = reused + thread:get("reused_tokens")
  end
  local parts = {}
  for status, count in pairs(totals) do
    parts[#parts + 1] = status .. "=" .. count
  end
  io.write("mixed-statuses: " .. table.concat(parts, " ") .. "\n")
  io.write("mixed-tokens: fresh=" .. fresh .. " reused=" .. reused .. "\n")
  io.write(string.format("mixed-max-ms: %.1f\n", latency.max / 1000))
end
