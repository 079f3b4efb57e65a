-- POST /api/v1/oidc/exchange, each request with the next ID token of a file (one a line): an ID
-- token is exchanged once, so none is sent twice (bench/workload_identity.py makes enough).
--
-- wrk ... -s exchanges.lua URL -- ID_TOKENS_FILE

local tokens = {}
local next_one = 0

function init(args)
  for line in io.lines(args[1]) do
    tokens[#tokens + 1] = line
  end
end

function request()
  next_one = next_one + 1
  local body = '{"token": "' .. tokens[next_one] .. '"}'
  return wrk.format("POST", "/api/v1/oidc/exchange", { ["Content-Type"] = "application/json" }, body)
end
