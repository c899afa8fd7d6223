-- wrk script: POST the file named by $WRK_BODY, read as bytes (V2 binary bodies too),
-- with the headers in $WRK_HEADERS, one "Name: value" per line.
local file = assert(io.open(os.getenv("WRK_BODY"), "rb"))
wrk.method = "POST"
wrk.body = file:read("*a")
file:close()
for line in (os.getenv("WRK_HEADERS") or ""):gmatch("[^\n]+") do
  local name, value = line:match("^([^:]+):%s*(.*)$")
  wrk.headers[name] = value
end
