-- wrk script: HTTP/1.1 pipelining. Each write carries DEPTH requests for the URL's path (16 by
-- default; `wrk ... -s scripts/pipeline.lua URL -- 8` for another depth), concatenated.
--
-- Counting: wrk checks the string once at start-up, counts the requests in it, and then waits
-- for that many responses on the connection before it writes the next batch. Each response is
-- counted as one request in wrk's "N requests in" and Requests/sec, so the figures are per
-- request, comparable with a non-pipelined run.

local depth = 16
local batch

init = function(args)
   if args[1] ~= nil then
      depth = tonumber(args[1])
   end
   local requests = {}
   for i = 1, depth do
      requests[i] = wrk.format(nil, wrk.path)
   end
   batch = table.concat(requests)
end

request = function()
   return batch
end
