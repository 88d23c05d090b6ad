-- wrk script of `bench/run.py`: sends one request shape with `Authorization: Bearer <token>`,
-- cycling through the tokens of a file (one per line) from an offset:
--   wrk -t1 -c16 -d10s --latency -s bench/tokens.lua http://127.0.0.1:PORT/ -- \
--     FILE [OFFSET [METHOD PATH BODY_FILE ['Name: value']...]]
-- METHOD and PATH default to GET and /; BODY_FILE "-" sends no body; every further argument is
-- a header. Every request is formatted once at start, so the Lua cost per request is a table
-- lookup and is the same for every configuration. Each wrk thread has its own copy and
-- counter (run -t1).
local requests, n, i = {}, 0, 0

function init(args)
  local method, path, body = args[3] or "GET", args[4] or "/", nil
  if args[5] and args[5] ~= "-" then
    local f = assert(io.open(args[5], "rb"))
    body = f:read("*a")
    f:close()
  end
  local extra = {}
  for k = 6, #args do
    local name, value = args[k]:match("^([^:]+):%s*(.*)$")
    extra[name] = value
  end
  for line in io.lines(args[1]) do
    if #line > 0 then
      n = n + 1
      local headers = { ["Authorization"] = "Bearer " .. line }
      for name, value in pairs(extra) do
        headers[name] = value
      end
      requests[n] = wrk.format(method, path, headers, body)
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
