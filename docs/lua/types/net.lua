---@meta net
-- LuaLS type stubs for moonlit's `net` module (see docs/lua/net.md).

---@class net.Error
---@field errno integer
---@field sym string  # "EXIST", "NODEV", "OPNOTSUPP", "TIMEDOUT", ...
---@field msg string
---@field EXIST boolean
---@field NODEV boolean
---@field OPNOTSUPP boolean
---@field TIMEDOUT boolean
---@field ADDRNOTAVAIL boolean
---@field SRCH boolean
---@field INVAL boolean
---@field PERM boolean

---@class net.Stats
---@field rx_packets integer
---@field tx_packets integer
---@field rx_bytes integer
---@field tx_bytes integer
---@field rx_errors integer
---@field tx_errors integer
---@field rx_dropped integer
---@field tx_dropped integer

---@alias net.Netns integer|{pid: integer}|{fd: integer}|{path: string}

---@class net.Link
---@field name string
---@field index integer
---@field flags integer
---@field is_up boolean
---@field carrier boolean
---@field running boolean
---@field operstate string
---@field mtu integer
---@field mac string?
---@field kind string?
---@field master integer?
---@field parent integer?
---@field stats net.Stats?
local Link = {}

---@return net.Link? link
---@return net.Error? err
function Link:up() end
---@return net.Link? link
---@return net.Error? err
function Link:down() end
---@param t {up: boolean?, mtu: integer?, mac: string?, name: string?, master: (string|integer|net.Link|false)?, netns: net.Netns?}
---@return net.Link? link
---@return net.Error? err
function Link:set(t) end
---@param mtu integer
---@return net.Link? link
---@return net.Error? err
function Link:set_mtu(mtu) end
---@param mac string
---@return net.Link? link
---@return net.Error? err
function Link:set_mac(mac) end
---@param name string
---@return net.Link? link
---@return net.Error? err
function Link:rename(name) end
---@param master string|integer|net.Link|nil
---@return net.Link? link
---@return net.Error? err
function Link:set_master(master) end
---@param ns net.Netns
---@return true? ok
---@return net.Error? err
function Link:move_to(ns) end
---@return true? ok
---@return net.Error? err
function Link:delete() end
---@return net.Link? link
---@return net.Error? err
function Link:refresh() end
---@class net.AddrOpts
---@field broadcast (string|boolean)?
---@field nodad boolean?
---@field scope (string|integer)?

---@param cidr string  # "10.0.0.2/24", "fd00::1/64"
---@param opts net.AddrOpts?
---@return net.Link? link
---@return net.Error? err
function Link:add_address(cidr, opts) end
---@param cidr string
---@param opts net.AddrOpts?
---@return net.Link? link
---@return net.Error? err
function Link:replace_address(cidr, opts) end
---@param cidr string
---@return net.Link? link
---@return net.Error? err
function Link:del_address(cidr) end
---@param family ("inet"|"inet6")?
---@return net.Address[]? list
---@return net.Error? err
function Link:addresses(family) end

---@class net.Address
---@field address string
---@field prefix integer
---@field cidr string
---@field family "inet"|"inet6"
---@field index integer
---@field link string?
---@field broadcast string?
---@field peer string?
---@field scope string|integer
---@field flags integer
---@field permanent boolean
---@field tentative boolean
---@field label string?

---@class net.Route
---@field to string  # "default" or "net/prefix"
---@field dst_len integer
---@field family "inet"|"inet6"
---@field via string?
---@field dev string?
---@field oif integer?
---@field metric integer?
---@field src string?
---@field scope string|integer
---@field table integer
---@field protocol string|integer
---@field type string|integer

---@class net.RouteSpec
---@field to string
---@field via string?
---@field dev (string|integer|net.Link)?
---@field metric integer?
---@field src string?
---@field scope (string|integer)?
---@field table (integer|"main")?
---@field family ("inet"|"inet6")?
---@field type ("unicast"|"blackhole"|"unreachable"|"prohibit")?

---@class net.Event
---@field type "newlink"|"dellink"|"newaddr"|"deladdr"|"overrun"
---@field name string?
---@field index integer?
---@field up boolean?
---@field carrier boolean?
---@field address string?
---@field family string?
---@field tentative boolean?

---@class net.EventSocket
local EventSocket = {}
---@return integer? fd
function EventSocket:fd() end
---@param timeout number?
---@return boolean? readable
---@return net.Error? err
function EventSocket:wait(timeout) end
---@return net.Event[]? events
---@return net.Error? err
function EventSocket:read() end
function EventSocket:close() end

---@class net
local net = {}

---@param which string|integer
---@return net.Link? link
---@return net.Error? err
function net.link(which) end

---@return net.Link[]? links
---@return net.Error? err
function net.links() end

---@class net.CreateSpec
---@field kind "veth"|"bridge"|"vlan"|"macvlan"|"dummy"|"bond"
---@field name string
---@field peer string?
---@field peer_netns net.Netns?
---@field link (string|integer|net.Link)?
---@field id integer?
---@field mode string?
---@field stp boolean?
---@field mtu integer?
---@field mac string?
---@field up boolean?
---@field master (string|integer|net.Link)?

---@param spec net.CreateSpec
---@return net.Link? link
---@return net.Error? err
function net.create(spec) end

---@param opts {family: ("inet"|"inet6")?, link: (string|integer|net.Link)?}?
---@return net.Address[]? list
---@return net.Error? err
function net.addresses(opts) end

---@param opts {family: ("inet"|"inet6")?, table: (integer|"main"|"local"|"all")?, dev: (string|integer|net.Link)?}?
---@return net.Route[]? list
---@return net.Error? err
function net.routes(opts) end

---@param r net.RouteSpec
---@return true? ok
---@return net.Error? err
function net.add_route(r) end
---@param r net.RouteSpec
---@return true? ok
---@return net.Error? err
function net.replace_route(r) end
---@param r net.RouteSpec
---@return true? ok
---@return net.Error? err
function net.del_route(r) end

---@param name string
---@param opts {up: boolean?, carrier: boolean?, timeout: number?}?
---@return net.Link? link
---@return net.Error? err
function net.wait_link(name, opts) end

---@param name string
---@param want string|{family: string?, address: string?, scope: string|integer|nil, timeout: number?, tentative: boolean?}|nil  # "10.0.0.2", "10.0.0.2/24", "inet", "inet6", nil (any), or one options table (family "inet" unless given)
---@param opts {timeout: number?, tentative: boolean?, scope: string|integer|nil}?
---@return table? address  # as net.addresses lists it: {address=, prefix=, cidr=, family=, scope=, ...}
---@return net.Link|net.Error|nil link_or_err
function net.wait_address(name, want, opts) end

---@class net.Lease
---@field address string
---@field prefix integer
---@field cidr string
---@field server string
---@field router string?
---@field routers string[]
---@field dns string[]
---@field search string[]
---@field hostname string?
---@field mtu integer?
---@field lease integer  # seconds, from when it was obtained
---@field t1 integer
---@field t2 integer
---@field expires_in number  # seconds from now
---@field t1_in number
---@field t2_in number

--- `network.interface "eth0" { dhcp = {...} }` (or `dhcp = true`: the defaults).
---@class net.DhcpSettings
---@field hostname string?      # sent in option 12
---@field client_id string?     # option 61 (default: type 1 + the MAC)
---@field use_dns boolean?      # default true
---@field use_routes boolean?   # default true
---@field use_hostname boolean? # default false: sethostname with the lease's option 12
---@field probe boolean?        # default true: ARP-probe a new address, DECLINE it on a conflict
---@field release boolean?      # default false: RELEASE at shutdown
---@field on_lease fun(ifname: string, lease: net.Lease?, event: "bound"|"lost")? # run as a task

--- `network.interface "eth0" { ipv6 = {...} }`
---@class net.Ipv6Settings
---@field accept_ra boolean?  # true: SLAAC (accept_ra = autoconf = 1), false: both 0

--- The DHCP lease the init holds for `name`, or nil.
---@param name string
---@return net.Lease?
function net.lease(name) end

---@return net.EventSocket? events
---@return net.Error? err
function net.events() end

return net
