-- wrk script of `bench/run`: sends `GET /` with `Authorization: Bearer <token>`, cycling through
-- the tokens of a file (one per line) from an offset:
--   wrk -t1 -c16 -d10s --latency -s bench/tokens.lua http://127.0.0.1:PORT/ -- FILE [OFFSET]
-- Every request is formatted once at start, so the Lua cost per request is a table lookup and
-- is the same for every configuration. Each wrk thread has its own copy and counter (run -t1).
local requests, n, i = {}, 0, 0

function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then
      n = n + 1
      requests[n] = wrk.format("GET", "/", { ["Authorization"] = "Bearer " .. line })
    end
  end
  if n == 0 then
    error("no tokens in " .. args[1])
  end
  i = tonumber(args[2] or "0")
end

function request()
  local r = requests[(i % n) + 1]
  i = i + 1
  return r
end
