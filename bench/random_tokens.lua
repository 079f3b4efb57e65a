-- GET /api/v1/me, each request presenting one of the tokens in a file, picked at random, as a
-- server with many clients sees them (bench/route_scale.py).
--
-- wrk ... -s random_tokens.lua URL -- TOKENS_FILE

local tokens = {}

function init(args)
  for line in io.lines(args[1]) do
    tokens[#tokens + 1] = line
  end
  math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)"), 16) % 1000003)
end

function request()
  return wrk.format("GET", "/api/v1/me", { ["Authorization"] = "Bearer " .. tokens[math.random(#tokens)] })
end
