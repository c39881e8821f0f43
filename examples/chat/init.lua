-- The Lua Event Machine's chat server on moonlit's loop: every line a
-- client sends goes to every other client. One task per connection; the
-- server runs in a task of its own, so services start while it serves.
local port = tonumber(moonlit.cmdline["chat.port"]) or 5555
local clients = {}

task(function()
  local server = assert(io.tcp.listen("*", port))
  print("chat: listening on port " .. port)
  server:autospawn(function(client)
    local me = {}
    clients[me] = client
    client:write("Welcome to moonlit chat!\n")
    for line in client:lines() do
      for other, c in pairs(clients) do
        if other ~= me then c:write(line, "\n") end
      end
    end
    clients[me] = nil
  end)
end)
