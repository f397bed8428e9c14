-- wrk script: POST a WAV file to the URL's path on every request (the audio endpoints).
--
--   wrk -t1 -c8 -d10s --timeout 10s -s scripts/post_wav.lua 'http://127.0.0.1:8888/snr-detect' -- clip.wav
--
-- The file is read once at start-up; every request carries the same body with its
-- Content-Length, so what is measured is the server: upload, decode, analysis, response.

local body

init = function(args)
   local path = args[1]
   if path == nil then
      error("usage: wrk ... -s post_wav.lua URL -- FILE.wav")
   end
   local file = assert(io.open(path, "rb"))
   body = file:read("*a")
   file:close()
end

request = function()
   return wrk.format("POST", wrk.path, { ["Content-Type"] = "audio/wav" }, body)
end
