-- POST /api/v1/tokens/revoke with a string that is no token (its checksum is wrong): FastAPI's way to a
-- route that reads a JSON body and runs a unit of work which finds nothing to do (bench/workload_identity.py).
wrk.method = "POST"
wrk.body = '{"tokens": ["tks_000000000000000000000000000000000000000000"]}'
wrk.headers["Content-Type"] = "application/json"
