-- wrk script for deputy's benchmark (bench/run.sh). Configured by environment
-- variables, so one script serves every scenario:
--
--   BENCH_METHOD    GET or POST (default GET)
--   BENCH_PATH      request path (with query string)
--   BENCH_HEADERS   extra headers, one "Name: value" per line
--   BENCH_BODY      one fixed body for every request (optional)
--   BENCH_BODIES    file with one body per line; each line is sent exactly once.
--                   wrk thread T of BENCH_THREADS takes lines T+1, T+1+N, ...
--   BENCH_THREADS   the -t given to wrk (needed to split BENCH_BODIES)
--   BENCH_LINE_HEADER  with BENCH_BODIES: each line is "<value>\t<body>" and
--                   <value> is sent in this header (e.g. a DPoP proof, unique
--                   per request like the body)
--   BENCH_OK        accepted status class/code: "2xx" (default), "303", ...
--   BENCH_EXPECT    plain substring every accepted body must contain
--   BENCH_CAPTURE   Lua pattern with one capture, matched against the body or,
--                   with BENCH_CAPTURE_IN=location, the Location header; each
--                   capture is appended to BENCH_OUT.<thread> (harvest mode)
--   BENCH_CAPTURE_LINEBUF  flush BENCH_OUT after every line (so the driver can
--                   count captures while wrk runs)
--   BENCH_LIMIT     stop a thread after this many requests (harvest mode)
--   BENCH_NOSTOP    harvest mode: when out of requests, keep the thread alive
--                   (a slow /healthz filler every 50 ms per connection) so the
--                   answers still in flight are read; the driver ends wrk with
--                   SIGINT once the captures stop growing
--
-- When BENCH_BODIES runs out (or BENCH_LIMIT is reached) the thread stops: it
-- records the moment and answers wrk's last calls with a cheap GET /healthz
-- (never a reused body), whose answers are not counted. req/s of a thread that
-- ran out is computed over the time before it ran out.
--
-- done() prints one line "BENCH_RESULT {json}" with the counts, latency
-- percentiles (microseconds) and the status codes seen.

local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
  int clock_gettime(int clk_id, bench_timespec *tp);
]]
local function now_s()
  local ts = ffi.new("bench_timespec")
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) / 1e9
end

local function env(name, default)
  local v = os.getenv(name)
  if v == nil or v == "" then return default end
  return v
end

-- ---------------------------------------------------------------- main state
local threads = {}
local counter = 0

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

-- ------------------------------------------------------------ thread states
local method = env("BENCH_METHOD", "GET")
local path = env("BENCH_PATH", "/")
local ok_spec = env("BENCH_OK", "2xx")
local expect = env("BENCH_EXPECT", nil)
local capture = env("BENCH_CAPTURE", nil)
local capture_in = env("BENCH_CAPTURE_IN", "body")
local limit = tonumber(env("BENCH_LIMIT", "0"))
local nostop = env("BENCH_NOSTOP", nil) ~= nil
local line_header = env("BENCH_LINE_HEADER", nil)

local headers = {}
for line in string.gmatch(env("BENCH_HEADERS", ""), "[^\n]+") do
  local name, value = string.match(line, "^([^:]+):%s*(.*)$")
  if name then headers[name] = value end
end

local reqs = nil      -- pre-formatted unique requests (BENCH_BODIES)
local fixed = nil     -- the one request otherwise
local idx = 0
local health = nil    -- sent after exhaustion
local out = nil

-- counters (read by done() through thread:get)
sent = 0
answered = 0          -- responses to real (non-/healthz filler) requests
stopping = false
unique_total = 0
unique_sent = 0
bad_status = 0
bad_body = 0
captured = 0
exhausted_at = 0
started_at = 0
statuses = {}

local function is_ok(status)
  if ok_spec == "2xx" then return status >= 200 and status < 300 end
  return tostring(status) == ok_spec
end

function init(args)
  local tid = tonumber(wrk.thread:get("tid")) or 0
  local nthreads = tonumber(env("BENCH_THREADS", "1"))
  local bodies = env("BENCH_BODIES", nil)
  if headers["Content-Type"] == nil and method == "POST" then
    headers["Content-Type"] = "application/x-www-form-urlencoded"
  end
  if bodies then
    reqs = {}
    local i = 0
    for line in io.lines(bodies) do
      if line ~= "" then
        if i % nthreads == tid then
          if line_header then
            local value, body = string.match(line, "^([^\t]*)\t(.*)$")
            local h = {}
            for k, v in pairs(headers) do h[k] = v end
            h[line_header] = value
            reqs[#reqs + 1] = wrk.format(method, path, h, body)
          else
            reqs[#reqs + 1] = wrk.format(method, path, headers, line)
          end
        end
        i = i + 1
      end
    end
    unique_total = #reqs
  else
    fixed = wrk.format(method, path, headers, env("BENCH_BODY", nil))
  end
  health = wrk.format("GET", "/healthz", {}, nil)
  if capture then
    out = assert(io.open(env("BENCH_OUT", "/tmp/bench-capture") .. "." .. tid, "w"))
    if env("BENCH_CAPTURE_LINEBUF", nil) then out:setvbuf("line") end
  end
  started_at = now_s()
end

local function stop()
  if not stopping then
    stopping = true
    exhausted_at = now_s() - started_at
  end
  if not nostop then wrk.thread:stop() end
  return health
end

if nostop then
  function delay()
    if stopping then return 50 end
    return 0
  end
end

function request()
  if stopping or (limit > 0 and sent >= limit) then
    return stop()
  end
  sent = sent + 1
  if reqs then
    idx = idx + 1
    local r = reqs[idx]
    if r == nil then
      return stop()
    end
    reqs[idx] = nil -- never sent twice; lets the memory go
    unique_sent = idx
    return r
  end
  return fixed
end

function response(status, hdrs, body)
  if stopping and status == 200 and string.find(body, '"status":"ok"', 1, true) then
    return -- a /healthz filler
  end
  answered = answered + 1
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
  if not is_ok(status) then
    bad_status = bad_status + 1
    return
  end
  if expect and not string.find(body, expect, 1, true) then
    bad_body = bad_body + 1
    return
  end
  if capture then
    local subject = body
    if capture_in ~= "body" then
      subject = hdrs[capture_in] or hdrs[string.lower(capture_in)]
        or hdrs[(string.gsub(capture_in, "^%l", string.upper))] or ""
    end
    local v = string.match(subject, capture)
    if v then
      out:write(v, "\n")
      captured = captured + 1
    end
  end
end

-- ------------------------------------------------------------ main state
local function json_statuses(t)
  local parts = {}
  for k, v in pairs(t) do parts[#parts + 1] = string.format('"%s":%d', k, v) end
  return "{" .. table.concat(parts, ",") .. "}"
end

function done(summary, latency, requests)
  local agg = { bad_status = 0, bad_body = 0, captured = 0, unique_total = 0,
                unique_sent = 0, exhausted = 0, exhausted_at = 0, answered = 0,
                rate = 0 }
  local duration_s = summary.duration / 1e6
  local st = {}
  for _, t in ipairs(threads) do
    agg.bad_status = agg.bad_status + (t:get("bad_status") or 0)
    agg.bad_body = agg.bad_body + (t:get("bad_body") or 0)
    agg.captured = agg.captured + (t:get("captured") or 0)
    agg.unique_total = agg.unique_total + (t:get("unique_total") or 0)
    agg.unique_sent = agg.unique_sent + (t:get("unique_sent") or 0)
    local n = t:get("answered") or 0
    agg.answered = agg.answered + n
    local ex = t:get("exhausted_at") or 0
    if ex > 0 then
      agg.exhausted = agg.exhausted + 1
      if ex > agg.exhausted_at then agg.exhausted_at = ex end
      agg.rate = agg.rate + n / ex
    else
      agg.rate = agg.rate + n / duration_s
    end
    local s = t:get("statuses") or {}
    for k, v in pairs(s) do st[k] = (st[k] or 0) + v end
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f,' ..
    '"answered":%d,"rate":%.1f,' ..
    '"bad_status":%d,"bad_body":%d,"captured":%d,"unique_total":%d,"unique_sent":%d,' ..
    '"exhausted_threads":%d,"exhausted_at_s":%.3f,' ..
    '"socket_errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"statuses":%s}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
    agg.answered, agg.rate,
    agg.bad_status, agg.bad_body, agg.captured, agg.unique_total, agg.unique_sent,
    agg.exhausted, agg.exhausted_at,
    e.connect, e.read, e.write, e.status, e.timeout,
    json_statuses(st)))
end
