-- POST /api/v1/tokens/revoke with a string that is no token (its checksum is wrong): FastAPI's way to a
-- route that reads a JSON body and runs a unit of work which finds nothing to do (bench/workload_identity.py).
wrk.method = "POST"
-- Built here rather than written out: no string in the repository looks like a token to a scanner.
wrk.body = '{"tokens": ["tks_' .. string.rep("0", 42) .. '"]}'
wrk.headers["Content-Type"] = "application/json"
