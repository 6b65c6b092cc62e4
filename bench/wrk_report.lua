-- wrk script used by the bench drivers (bench/harness.py run_wrk).
--
-- Environment:
--   WRK_BODY     request body (JSON); the request is a POST with Content-Type application/json.
--   WRK_BODIES   several bodies separated by newlines, sent in rotation (overrides WRK_BODY).
--   WRK_METHOD   method (default: POST when a body is given, else GET).
--
-- done() prints one line, "WRK_JSON {...}", with the latency percentiles (microseconds), every status
-- code seen, wrk's socket errors, and how many 429 responses lacked a Retry-After header.

local bodies = {}
local many = os.getenv("WRK_BODIES")
if many ~= nil and many ~= "" then
  for line in string.gmatch(many, "[^\n]+") do
    table.insert(bodies, line)
  end
else
  local one = os.getenv("WRK_BODY")
  if one ~= nil and one ~= "" then
    table.insert(bodies, one)
  end
end

wrk.method = os.getenv("WRK_METHOD") or (#bodies > 0 and "POST" or "GET")
if #bodies > 0 then
  wrk.body = bodies[1]
  wrk.headers["Content-Type"] = "application/json"
end

if #bodies > 1 then
  local i = 0
  request = function()
    i = i % #bodies + 1
    return wrk.format(nil, nil, nil, bodies[i])
  end
end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  codes = {}
  no_retry_after = 0
end

function response(status, headers, body)
  local key = tostring(status)
  codes[key] = (codes[key] or 0) + 1
  if status == 429 and headers["Retry-After"] == nil and headers["retry-after"] == nil then
    no_retry_after = no_retry_after + 1
  end
end

function done(summary, latency, requests)
  local merged = {}
  local missing = 0
  for _, thread in ipairs(threads) do
    local thread_codes = thread:get("codes") or {}
    for code, count in pairs(thread_codes) do
      merged[code] = (merged[code] or 0) + count
    end
    missing = missing + (thread:get("no_retry_after") or 0)
  end
  local parts = {}
  for code, count in pairs(merged) do
    table.insert(parts, string.format('"%s": %d', code, count))
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"duration_us": %d, "requests": %d, "bytes": %d, '
      .. '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, '
      .. '"latency_us": {"min": %d, "mean": %.1f, "max": %d, "stdev": %.1f, '
      .. '"p50": %d, "p90": %d, "p99": %d, "p999": %d}, '
      .. '"codes": {%s}, "no_retry_after": %d}\n',
    summary.duration, summary.requests, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.max, latency.stdev,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    table.concat(parts, ", "), missing
  ))
end
