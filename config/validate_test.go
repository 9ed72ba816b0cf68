package config

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fulcrum-adc/fulcrum/pool"
)

// TestValidationRules checks that each rule reports exactly one problem,
// on the marked line ("#<-"), with the right object path and a message
// saying what is wrong.
func TestValidationRules(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, src, path, msg string
	}{
		// names
		{"bad pool name", `
pools:
  "we b":     #<-
    members: [{address: 10.0.0.1:80}]
`, "pools.we b", `name "we b" is not valid`},
		{"snat pool named automap", poolWeb + `
snat_pools:
  automap:   #<-
    addresses: [192.0.2.1]
`, "snat_pools.automap", "cannot be called \"automap\""},

		// fastl4
		{"fastl4 with client_ssl", poolWeb + `
virtuals:
  vs:
    type: fastl4
    destination: 127.0.0.1:80
    pool: web
    client_ssl: cert1   #<-
`, "virtuals.vs.client_ssl", "a fastl4 virtual cannot use TLS"},
		{"fastl4 with server_ssl", poolWeb + `
profiles:
  server_ssl:
    up: {}
virtuals:
  vs:
    type: fastl4
    destination: 127.0.0.1:80
    pool: web
    server_ssl: up   #<-
`, "virtuals.vs.server_ssl", "a fastl4 virtual cannot use TLS"},
		{"fastl4_profile on tcp", poolWeb + `
virtuals:
  vs:
    type: tcp
    destination: 127.0.0.1:80
    pool: web
    fastl4_profile: fastl4   #<-
`, "virtuals.vs.fastl4_profile", "applies only to virtuals of type fastl4"},
		{"missing fastl4 profile", poolWeb + `
virtuals:
  vs:
    type: fastl4
    destination: 127.0.0.1:80
    pool: web
    fastl4_profile: nope   #<-
`, "virtuals.vs.fastl4_profile", `fastl4 profile "nope" does not exist`},
		{"fastl4 loose_initiation", `
profiles:
  fastl4:
    f:
      loose_initiation: true   #<-
`, "profiles.fastl4.f.loose_initiation", "loose_initiation cannot work here"},
		{"fastl4 timestamp strip", `
profiles:
  fastl4:
    f:
      tcp_timestamp_mode: strip   #<-
`, "profiles.fastl4.f.tcp_timestamp_mode", "only preserve describes what happens"},
		{"fastl4 wscale rewrite", `
profiles:
  fastl4:
    f:
      tcp_wscale_mode: rewrite   #<-
`, "profiles.fastl4.f.tcp_wscale_mode", "only preserve describes what happens"},
		{"fastl4 wscale unknown", `
profiles:
  fastl4:
    f:
      tcp_wscale_mode: keep   #<-
`, "profiles.fastl4.f.tcp_wscale_mode", `tcp_wscale_mode "keep" is not valid`},
		{"fastl4 kernel_relay", `
profiles:
  fastl4:
    f:
      kernel_relay: maybe   #<-
`, "profiles.fastl4.f.kernel_relay", `kernel_relay "maybe" is not valid`},
		{"fastl4 kernel_relay on (known defect)", `
profiles:
  fastl4:
    f:
      kernel_relay: "on"   #<-
`, "profiles.fastl4.f.kernel_relay", `kernel_relay on is not available in this release`},
		{"fastl4 idle_timeout 0", `
profiles:
  fastl4:
    f:
      idle_timeout: 0s   #<-
`, "profiles.fastl4.f.idle_timeout", "must be longer than 0"},

		// addresses
		{"destination without port", poolWeb + `
virtuals:
  vs:
    type: tcp
    destination: 127.0.0.1  #<-
    pool: web
`, "virtuals.vs.destination", "is not IP:PORT"},
		{"destination port 0", poolWeb + `
virtuals:
  vs:
    type: tcp
    destination: "[::1]:0"  #<-
    pool: web
`, "virtuals.vs.destination", "port must be 1 to 65535"},
		{"destination hostname", poolWeb + `
virtuals:
  vs:
    type: tcp
    destination: localhost:80  #<-
    pool: web
`, "virtuals.vs.destination", "is not IP:PORT"},
		{"destination missing", poolWeb + `
virtuals:
  vs:        #<-
    type: tcp
    pool: web
`, "virtuals.vs.destination", "destination is required"},
		{"member unspecified", vsWeb + `
pools:
  web:
    members:
      - address: 0.0.0.0:80  #<-
`, "pools.web.members[0].address", "needs a real address"},
		{"member port 0", vsWeb + `
pools:
  web:
    members:
      - address: 10.0.0.1:80
      - address: 10.0.0.2:0  #<-
`, "pools.web.members[1].address", "port must be 1 to 65535"},
		{"member not an address", vsWeb + `
pools:
  web:
    members:
      - address: web1:80  #<-
`, "pools.web.members[0].address", "is not IP:PORT"},
		{"member address missing", vsWeb + `
pools:
  web:
    members:
      - ratio: 2  #<-
`, "pools.web.members[0].address", "address is required"},
		{"snat address with port", poolWeb + vsWeb + `    snat: sp
snat_pools:
  sp:
    addresses: [192.0.2.1:80]  #<-
`, "snat_pools.sp.addresses[0]", "is not an IP address"},
		{"snat pool without the members' family", `
pools:
  web:
    members: [{address: "[2001:db8::1]:80"}]
virtuals:
  vs:
    type: tcp
    destination: 127.0.0.1:80
    pool: web
    snat: sp  #<-
snat_pools:
  sp:
    addresses: [192.0.2.1]
`, "virtuals.vs.snat", "has no IPv6 address, so it cannot connect to member [2001:db8::1]:80"},
		{"snat pool without addresses", poolWeb + vsWeb + `    snat: sp
snat_pools:
  sp:
    addresses: []  #<-
`, "snat_pools.sp.addresses", "at least one address"},

		// enums
		{"virtual type", poolWeb + `
virtuals:
  vs:
    type: htp  #<-
    destination: 127.0.0.1:80
    pool: web
`, "virtuals.vs.type", `did you mean "http"`},
		{"virtual type missing", poolWeb + `
virtuals:
  vs:   #<-
    destination: 127.0.0.1:80
    pool: web
`, "virtuals.vs.type", "type is required"},
		{"lb method", vsWeb + `
pools:
  web:
    lb_method: leastconn  #<-
    members: [{address: 10.0.0.1:80}]
`, "pools.web.lb_method", "not valid: use one of round-robin"},
		{"monitor type", poolWeb + vsWeb + `
monitors:
  m:
    type: icmp  #<-
`, "monitors.m.type", `type "icmp" is not valid`},
		{"member state", vsWeb + `
pools:
  web:
    members:
      - address: 10.0.0.1:80
        state: offline  #<-
`, "pools.web.members[0].state", "forced-offline"},
		{"persistence type", poolWeb + vsWeb + `
profiles:
  persistence:
    p:
      type: ssl_id  #<-
`, "profiles.persistence.p.type", `type "ssl_id" is not valid`},
		{"tls min_version", poolWeb + vsWeb + `
profiles:
  server_ssl:
    s:
      min_version: "1.4"  #<-
`, "profiles.server_ssl.s.min_version", "use one of 1.0, 1.1, 1.2, 1.3"},
		{"log level", poolWeb + vsWeb + `
log:
  level: verbose  #<-
`, "log.level", "debug, info, warn, error"},
		{"log format", poolWeb + vsWeb + `
log:
  format: xml  #<-
`, "log.format", "text, json"},
		{"access log directory", poolWeb + vsWeb + `
log:
  access_log: /nonexistent-dir-for-test/access.log  #<-
`, "log.access_log", "does not exist"},
		{"access log format", poolWeb + vsWeb + `
log:
  access_log_format: clf  #<-
`, "log.access_log_format", "json, text"},
		{"syslog socket", poolWeb + vsWeb + `
log:
  access_log: syslog
  syslog_socket: dev/log  #<-
`, "log.syslog_socket", "absolute path"},
		{"management max_connections", poolWeb + vsWeb + `
management:
  max_connections: -1  #<-
`, "management.max_connections", "from 1 to 4096"},

		// references
		{"missing pool", poolWeb + `
virtuals:
  vs:
    type: tcp
    destination: 127.0.0.1:80
    pool: wbe  #<-
`, "virtuals.vs.pool", `pool "wbe" does not exist (defined: web); did you mean "web"?`},
		{"pool required", poolWeb + `
virtuals:
  vs:  #<-
    type: tcp
    destination: 127.0.0.1:80
`, "virtuals.vs.pool", "pool is required"},
		{"missing persistence", poolWeb + vsWeb + `    persistence: nope  #<-
`, "virtuals.vs.persistence", `persistence profile "nope" does not exist (defined: cookie, cookie_insert, source_addr)`},
		{"missing fallback", poolWeb + vsWeb + `    persistence: cookie
    fallback_persistence: nope  #<-
`, "virtuals.vs.fallback_persistence", `persistence profile "nope" does not exist`},
		{"missing http profile", poolWeb + vsWeb + `    http_profile: fast  #<-
`, "virtuals.vs.http_profile", `http profile "fast" does not exist (defined: http)`},
		{"missing client_ssl", poolWeb + vsWeb + `    client_ssl: tls  #<-
`, "virtuals.vs.client_ssl", `client_ssl profile "tls" does not exist (none are defined)`},
		{"missing server_ssl", poolWeb + vsWeb + `    server_ssl: tls  #<-
`, "virtuals.vs.server_ssl", `server_ssl profile "tls" does not exist`},
		{"missing snat pool", poolWeb + vsWeb + `    snat: outside  #<-
`, "virtuals.vs.snat", "choose from: automap, none"},
		{"missing monitor", vsWeb + `
pools:
  web:
    monitors: [http, htp]  #<-
    members: [{address: 10.0.0.1:80}]
`, "pools.web.monitors[1]", `monitor "htp" does not exist (defined: http, https, tcp, udp, virtual_location)`},
		{"monitor listed twice", vsWeb + `
pools:
  web:
    monitors:
      - tcp
      - tcp  #<-
    members: [{address: 10.0.0.1:80}]
`, "pools.web.monitors[1]", "listed twice"},

		// compatibility
		{"http profile on tcp", poolWeb + `
virtuals:
  vs:
    type: tcp
    destination: 127.0.0.1:80
    pool: web
    http_profile: http  #<-
`, "virtuals.vs.http_profile", "only to virtuals of type http (this one is tcp)"},
		{"udp with client_ssl", poolWeb + `
virtuals:
  vs:
    type: udp
    destination: 127.0.0.1:53
    pool: web
    client_ssl: tls  #<-
`, "virtuals.vs.client_ssl", "cannot terminate TLS"},
		{"udp with server_ssl", poolWeb + `
virtuals:
  vs:
    type: udp
    destination: 127.0.0.1:53
    pool: web
    server_ssl: tls  #<-
`, "virtuals.vs.server_ssl", "cannot use TLS"},
		{"cookie persistence on tcp", poolWeb + `
virtuals:
  vs:
    type: tcp
    destination: 127.0.0.1:80
    pool: web
    persistence: cookie  #<-
`, "virtuals.vs.persistence", "is cookie_insert, which reads HTTP"},
		{"universal persistence on udp", poolWeb + `
profiles:
  persistence:
    u: {type: universal, key: "header:X-Session"}
virtuals:
  vs:
    type: udp
    destination: 127.0.0.1:53
    pool: web
    persistence: u  #<-
`, "virtuals.vs.persistence", "is universal, which reads HTTP"},
		{"fallback without persistence", poolWeb + vsWeb + `    fallback_persistence: source_addr  #<-
`, "virtuals.vs.fallback_persistence", "needs persistence"},
		{"fallback not source_addr", poolWeb + vsWeb + `    persistence: source_addr
    fallback_persistence: cookie  #<-
`, "virtuals.vs.fallback_persistence", "must be of type source_addr"},
		{"consistent-hash without key", vsWeb + `
pools:
  web:   #<-
    lb_method: consistent-hash
    members: [{address: 10.0.0.1:80}]
`, "pools.web.hash_key", "consistent-hash needs hash_key"},
		{"bad hash key", vsWeb + `
pools:
  web:
    lb_method: consistent-hash
    hash_key: "header:"  #<-
    members: [{address: 10.0.0.1:80}]
`, "pools.web.hash_key", "names no header"},
		{"bad hash key kind", vsWeb + `
pools:
  web:
    lb_method: consistent-hash
    hash_key: path  #<-
    members: [{address: 10.0.0.1:80}]
`, "pools.web.hash_key", "use source_addr, uri, header:NAME"},
		{"http hash key on tcp virtual", `
pools:
  web:
    lb_method: consistent-hash
    hash_key: "cookie:sid"
    members: [{address: 10.0.0.1:80}]
virtuals:
  vs:
    type: tcp
    destination: 127.0.0.1:80
    pool: web  #<-
`, "virtuals.vs.pool", "hashes on cookie:sid, which needs a virtual of type http"},
		{"universal without key", poolWeb + vsWeb + `    persistence: u
profiles:
  persistence:
    u:  #<-
      type: universal
`, "profiles.persistence.u.key", "universal persistence needs key"},
		{"universal with source_addr key", poolWeb + vsWeb + `    persistence: u
profiles:
  persistence:
    u:
      type: universal
      key: source_addr  #<-
`, "profiles.persistence.u.key", "use uri, header:NAME"},
		{"key on source_addr", poolWeb + vsWeb + `
profiles:
  persistence:
    s:
      type: source_addr
      key: uri  #<-
`, "profiles.persistence.s.key", "only to universal"},
		{"cookie_passive without name", poolWeb + vsWeb + `
profiles:
  persistence:
    p:  #<-
      type: cookie_passive
`, "profiles.persistence.p.cookie_name", "cookie_passive needs cookie_name"},
		{"bad cookie name", poolWeb + vsWeb + `
profiles:
  persistence:
    p:
      type: cookie_passive
      cookie_name: "a b"  #<-
`, "profiles.persistence.p.cookie_name", "not a valid cookie name"},
		{"cookie path", poolWeb + vsWeb + `
profiles:
  persistence:
    p:
      type: cookie_insert
      secret: 0123456789abcdef
      cookie_path: app  #<-
`, "profiles.persistence.p.cookie_path", "must start with /"},
		{"short secret", poolWeb + vsWeb + `
profiles:
  persistence:
    p:
      type: cookie_insert
      secret: short  #<-
`, "profiles.persistence.p.secret", "use at least 16"},
		{"indefinite cookie", poolWeb + vsWeb + `
profiles:
  persistence:
    p:
      type: cookie_insert
      secret: 0123456789abcdef
      timeout: indefinite  #<-
`, "profiles.persistence.p.timeout", "cannot be indefinite"},
		{"zero source_addr timeout", poolWeb + vsWeb + `
profiles:
  persistence:
    p:
      type: source_addr
      timeout: 0  #<-
`, "profiles.persistence.p.timeout", "write indefinite for no limit"},

		// values
		{"ratio 0", vsWeb + `
pools:
  web:
    members:
      - address: 10.0.0.1:80
        ratio: 0  #<-
`, "pools.web.members[0].ratio", "use 1 to 1000000"},
		{"ratio too big", vsWeb + `
pools:
  web:
    members:
      - {address: 10.0.0.1:80, ratio: 1000001}  #<-
`, "pools.web.members[0].ratio", "ratio 1000001 is out of range"},
		{"member connection limit", vsWeb + `
pools:
  web:
    members:
      - address: 10.0.0.1:80
        connection_limit: -1  #<-
`, "pools.web.members[0].connection_limit", "cannot be negative"},
		{"virtual connection limit", poolWeb + vsWeb + `    connection_limit: -5  #<-
`, "virtuals.vs.connection_limit", "cannot be negative"},
		{"priority", vsWeb + `
pools:
  web:
    members:
      - address: 10.0.0.1:80
        priority: -1  #<-
`, "pools.web.members[0].priority", "priority cannot be negative"},
		{"min active members", vsWeb + `
pools:
  web:
    min_active_members: -1  #<-
    members: [{address: 10.0.0.1:80}]
`, "pools.web.min_active_members", "cannot be negative"},
		{"monitor_min_up", vsWeb + `
pools:
  web:
    monitors: [tcp]
    monitor_min_up: 2  #<-
    members: [{address: 10.0.0.1:80}]
`, "pools.web.monitor_min_up", "the pool has 1 monitors"},
		{"monitor timeout not above interval", poolWeb + vsWeb + `
monitors:
  m:
    type: tcp
    interval: 10s
    timeout: 10s  #<-
`, "monitors.m.timeout", "F5 recommends 3 × interval + 1s = 31s"},
		{"monitor interval too short", poolWeb + vsWeb + `
monitors:
  m:
    type: tcp
    interval: 50ms  #<-
    timeout: 1s
`, "monitors.m.interval", "at least 100ms"},
		{"monitor interval indefinite", poolWeb + vsWeb + `
monitors:
  m:
    type: tcp
    interval: indefinite  #<-
    timeout: 16s
`, "monitors.m.interval", "cannot be indefinite"},
		{"monitor up_interval too short", poolWeb + vsWeb + `
monitors:
  m:
    type: tcp
    up_interval: 10ms  #<-
`, "monitors.m.up_interval", "at least 100ms"},
		{"status code", poolWeb + vsWeb + `
monitors:
  m:
    type: http
    status: [200, 700]  #<-
`, "monitors.m.status[1]", "status code 700 is not valid"},
		{"status on tcp monitor", poolWeb + vsWeb + `
monitors:
  m:
    type: tcp
    status: [200]  #<-
`, "monitors.m.status", "only to http and https"},
		{"receive regexp", poolWeb + vsWeb + `
monitors:
  m:
    type: http
    receive: "ok("  #<-
`, "monitors.m.receive", "not a valid regular expression"},
		{"reverse without receive", poolWeb + vsWeb + `
monitors:
  m:
    type: http
    reverse: true  #<-
`, "monitors.m.reverse", "needs receive"},
		{"literal CRLF in send", poolWeb + vsWeb + `
monitors:
  m:
    type: http
    send: 'GET / HTTP/1.0\r\n\r\n'  #<-
`, "monitors.m.send", "double quotes"},
		{"server_name on http monitor", poolWeb + vsWeb + `
monitors:
  m:
    type: http
    server_name: example.com  #<-
`, "monitors.m.server_name", "only to https"},
		{"monitor destination", poolWeb + vsWeb + `
monitors:
  m:
    type: tcp
    destination: "*:http"  #<-
`, "monitors.m.destination", "the port must be * or a number"},
		{"monitor destination alias unspecified", poolWeb + vsWeb + `
monitors:
  m:
    type: tcp
    destination: "0.0.0.0:80"  #<-
`, "monitors.m.destination", "write *:* (the member), *:PORT or IP:PORT"},
		{"prefix_v4", poolWeb + vsWeb + `
profiles:
  persistence:
    p:
      type: source_addr
      prefix_v4: 33  #<-
`, "profiles.persistence.p.prefix_v4", "use 0 to 32"},
		{"prefix_v6", poolWeb + vsWeb + `
profiles:
  persistence:
    p:
      type: source_addr
      prefix_v6: 129  #<-
`, "profiles.persistence.p.prefix_v6", "use 0 to 128"},
		{"max_header_size small", poolWeb + vsWeb + `
profiles:
  http:
    h:
      max_header_size: 512  #<-
`, "profiles.http.h.max_header_size", "use 1KiB to 1MiB"},
		{"max_header_size big", poolWeb + vsWeb + `
profiles:
  http:
    h:
      max_header_size: 2MiB  #<-
`, "profiles.http.h.max_header_size", "use 1KiB to 1MiB"},
		{"max_header_count", poolWeb + vsWeb + `
profiles:
  http:
    h:
      max_header_count: 0  #<-
`, "profiles.http.h.max_header_count", "use 1 to 1000"},
		{"header_timeout", poolWeb + vsWeb + `
profiles:
  http:
    h:
      header_timeout: 0s  #<-
`, "profiles.http.h.header_timeout", "must be longer than 0"},
		{"max_idle_per_member", poolWeb + vsWeb + `
profiles:
  http:
    h:
      max_idle_per_member: -1  #<-
`, "profiles.http.h.max_idle_per_member", "cannot be negative"},
		{"pool without members", vsWeb + `
pools:
  web:
    members: []  #<-
`, "pools.web.members", "at least one member"},
		{"pool without members key", vsWeb + `
pools:
  web:   #<-
    lb_method: ratio
`, "pools.web", "at least one member"},
		{"duplicate member", vsWeb + `
pools:
  web:
    members:
      - address: 10.0.0.1:80
      - address: 10.0.0.2:80
      - address: 10.0.0.1:80  #<-
`, "pools.web.members[2].address", "listed twice in this pool (also members[0])"},
		{"duplicate member ipv4-mapped notation", vsWeb + `
pools:
  web:
    members:
      - address: "[2001:db8::1]:80"
      - address: "[2001:db8:0::1]:80"  #<-
`, "pools.web.members[1].address", "listed twice"},
		{"passive failures", vsWeb + `
pools:
  web:
    passive:
      failures: 0  #<-
    members: [{address: 10.0.0.1:80}]
`, "pools.web.passive.failures", "at least 1"},
		{"passive retry", vsWeb + `
pools:
  web:
    passive:
      retry_time: indefinite  #<-
    members: [{address: 10.0.0.1:80}]
`, "pools.web.passive.retry_time", "cannot be indefinite"},
		{"slow ramp indefinite", vsWeb + `
pools:
  web:
    slow_ramp_time: indefinite  #<-
    members: [{address: 10.0.0.1:80}]
`, "pools.web.slow_ramp_time", "cannot be indefinite"},
		{"idle timeout zero", poolWeb + vsWeb + `    idle_timeout: 0  #<-
`, "virtuals.vs.idle_timeout", "write indefinite for no limit"},
		{"connect timeout indefinite", poolWeb + vsWeb + `    connect_timeout: indefinite  #<-
`, "virtuals.vs.connect_timeout", "cannot be indefinite"},

		// tcp profiles
		{"tcp profile unknown parent", poolWeb + vsWeb + `
profiles:
  tcp:
    wan:
      parent: tcp-wan  #<-
`, "profiles.tcp.wan.parent", `parent "tcp-wan" does not exist`},
		{"tcp profile cycle", poolWeb + vsWeb + `
profiles:
  tcp:
    a:
      parent: b  #<-
    b:
      parent: a
`, "profiles.tcp.a.parent", "inheritance cycle: a → b → a"},
		{"tcp profile redefines a built-in", poolWeb + vsWeb + `
profiles:
  tcp:
    tcp-lan-optimized:  #<-
      nagle: true
`, "profiles.tcp.tcp-lan-optimized", "is a built-in profile and cannot be redefined"},
		{"tcp send_buffer range", poolWeb + vsWeb + `
profiles:
  tcp:
    t:
      send_buffer: 1KiB  #<-
`, "profiles.tcp.t.send_buffer", "out of range: use 4KiB to 64MiB, or auto"},
		{"tcp receive_window syntax", poolWeb + vsWeb + `
profiles:
  tcp:
    t:
      receive_window: lots  #<-
`, "profiles.tcp.t.receive_window", `"lots" is not a size or auto`},
		{"tcp pacing syntax", poolWeb + vsWeb + `
profiles:
  tcp:
    t:
      pacing_rate: fast  #<-
`, "profiles.tcp.t.pacing_rate", `"fast" is not a rate`},
		{"tcp proxy buffer low above high", poolWeb + vsWeb + `
profiles:
  tcp:
    t:
      proxy_buffer_high: 64KiB
      proxy_buffer_low: 128KiB  #<-
`, "profiles.tcp.t.proxy_buffer_low", "must not be larger than proxy_buffer_high"},
		{"tcp inherited proxy buffer high below low", poolWeb + vsWeb + `
profiles:
  tcp:
    t:
      parent: tcp-wan-optimized
      proxy_buffer_high: 96KiB  #<-
`, "profiles.tcp.t.proxy_buffer_high", "must not be larger than proxy_buffer_high (98304)"},
		{"tcp congestion control", poolWeb + vsWeb + `
profiles:
  tcp:
    t:
      congestion_control: nosuchcc  #<-
`, "profiles.tcp.t.congestion_control", `"nosuchcc" is not available in this kernel (available: `},
		{"tcp ip_tos ecn bits", poolWeb + vsWeb + `
profiles:
  tcp:
    t:
      ip_tos: 185  #<-
`, "profiles.tcp.t.ip_tos", "ECN bits"},
		{"tcp min_rto above the per-socket limit", poolWeb + vsWeb + `
profiles:
  tcp:
    t:
      min_rto: 1s  #<-
`, "profiles.tcp.t.min_rto", "TCP_RTO_MIN_US cannot raise the minimum above"},
		{"tcp unknown key", poolWeb + vsWeb + `
profiles:
  tcp:
    t:
      nagel: false  #<-
`, "profiles.tcp.t.nagel", `did you mean "nagle"?`},
		{"clientside tcp unknown", poolWeb + vsWeb + `    clientside_tcp: tcp-lan  #<-
`, "virtuals.vs.clientside_tcp", `tcp profile "tcp-lan" does not exist`},
		{"tcp profile on udp virtual", poolWeb + `
virtuals:
  vs:
    type: udp
    destination: 127.0.0.1:53
    pool: web
    clientside_tcp: tcp  #<-
`, "virtuals.vs.clientside_tcp", "a udp virtual has no TCP profile"},

		// management
		{"management address", poolWeb + vsWeb + `
management:
  address: 9090  #<-
`, "management.address", "is not HOST:PORT"},
		{"management hostname", poolWeb + vsWeb + `
management:
  address: admin.example.com:9090  #<-
`, "management.address", "must be an IP address, localhost or empty"},
		{"token and token_file", poolWeb + vsWeb + `
management:
  token: abc
  token_file: /etc/passwd  #<-
`, "management.token_file", "not both"},
		{"token_file missing", poolWeb + vsWeb + `
management:
  token_file: /nonexistent/token  #<-
`, "management.token_file", "cannot read the token file"},
		{"token with space", poolWeb + vsWeb + `
management:
  token: "a b"  #<-
`, "management.token", "must not contain spaces"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			line := markedLine(t, tc.src)
			if line == 0 {
				t.Fatal("test case has no #<- marker")
			}
			errs := parseErrors(t, tc.src)
			if len(errs) != 1 {
				t.Fatalf("got %d problems, want 1:\n%v", len(errs), errs)
			}
			e := errs[0]
			if e.Path != tc.path || e.Line != line || !strings.Contains(e.Msg, tc.msg) || e.File != "test.yaml" {
				t.Errorf("got  %s:%d: %s: %s\nwant test.yaml:%d: %s: ...%s...", e.File, e.Line, e.Path, e.Msg, line, tc.path, tc.msg)
			}
		})
	}
}

// TestValidEdgeCases lists configurations that must be accepted.
func TestValidEdgeCases(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"wildcard destinations": poolWeb + `
virtuals:
  any4: {type: tcp, destination: "0.0.0.0:81", pool: web}
  any6: {type: tcp, destination: "[::]:82", pool: web}
`,
		"indefinite timeouts": poolWeb + vsWeb + `    idle_timeout: indefinite
    persistence: p
profiles:
  persistence:
    p: {type: source_addr, timeout: indefinite}
`,
		"slow ramp zero means off": vsWeb + `
pools:
  web:
    slow_ramp_time: 0
    members: [{address: 10.0.0.1:80}]
`,
		"same address different transport": poolWeb + `
virtuals:
  dns_udp: {type: udp, destination: "127.0.0.1:53", pool: web}
  dns_tcp: {type: tcp, destination: "127.0.0.1:53", pool: web}
`,
		"overlap with a disabled virtual": poolWeb + `
virtuals:
  a: {type: http, destination: "0.0.0.0:80", pool: web}
  b: {type: tcp, destination: "127.0.0.1:80", pool: web, enabled: false}
`,
		"unquoted TLS version": poolWeb + vsWeb + `
profiles:
  server_ssl:
    s: {min_version: 1.0}
`,
		"management off": poolWeb + vsWeb + `
management:
  address: "off"
`,
		"consistent hash on source for tcp": `
pools:
  web:
    lb_method: consistent-hash
    hash_key: source_addr
    members: [{address: 10.0.0.1:80}]
virtuals:
  vs: {type: tcp, destination: "127.0.0.1:80", pool: web}
`,
		"universal persistence on http": poolWeb + vsWeb + `    persistence: u
profiles:
  persistence:
    u: {type: universal, key: "query:session"}
`,
		"snat pool": poolWeb + vsWeb + `    snat: outside
snat_pools:
  outside: {addresses: [192.0.2.1, "2001:db8::1"]}
`,
		"yaml anchors and merge keys": `
pools:
  web:
    members:
      - &m {address: 10.0.0.1:80, ratio: 3}
      - <<: *m
        address: 10.0.0.2:80
virtuals:
  vs: {type: http, destination: "127.0.0.1:80", pool: web}
`,
		"durations as integers and sizes with units": poolWeb + vsWeb + `    http_profile: h
profiles:
  http:
    h: {header_timeout: 3, max_header_size: 65536B, response_timeout: 1m30s}
`,
	}
	for name, src := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			mustParse(t, src)
		})
	}
}

func TestDuplicateListeners(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		a, b       string // type destination
		overlap    bool   // virtual "second" clashes with "first"
		management string // management.address ("" = default 127.0.0.1:9090)
		mgmtClash  bool   // management.address clashes with virtual "first"
	}{
		{"same address and port", "tcp 127.0.0.1:80", "http 127.0.0.1:80", true, "", false},
		{"different ports", "tcp 127.0.0.1:80", "tcp 127.0.0.1:81", false, "", false},
		{"different addresses", "tcp 127.0.0.1:80", "tcp 127.0.0.2:80", false, "", false},
		{"udp and tcp", "udp 127.0.0.1:53", "tcp 127.0.0.1:53", false, "", false},
		{"udp and udp", "udp 127.0.0.1:53", "udp 127.0.0.1:53", true, "", false},
		{"ipv4 wildcard covers ipv4", "tcp 0.0.0.0:80", "http 192.0.2.1:80", true, "", false},
		{"ipv4 wildcard after specific", "http 192.0.2.1:80", "tcp 0.0.0.0:80", true, "", false},
		{"ipv4 wildcard does not cover ipv6", "tcp 0.0.0.0:80", "tcp [2001:db8::1]:80", false, "", false},
		{"ipv4 wildcard does not cover ipv6 loopback", "tcp 0.0.0.0:80", "tcp [::1]:80", false, "", false},
		// Virtuals on [::] are IPv6-only (IPV6_V6ONLY).
		{"ipv6 wildcard does not cover ipv4", "tcp [::]:80", "tcp 127.0.0.1:80", false, "", false},
		{"ipv4 and ipv6 wildcards coexist", "udp 0.0.0.0:53", "udp [::]:53", false, "", false},
		{"ipv6 wildcard covers ipv6", "udp [::]:53", "udp [::1]:53", true, "", false},
		{"ipv6 specific before wildcard", "http [::1]:80", "tcp [::]:80", true, "", false},
		{"ipv4-mapped equals ipv4", "tcp [::ffff:127.0.0.1]:80", "tcp 127.0.0.1:80", true, "", false},
		{"management overlaps virtual", "tcp 0.0.0.0:9090", "tcp 10.0.0.1:1", false, "", true},
		{"management on another port", "tcp 0.0.0.0:8080", "tcp 10.0.0.1:1", false, "", false},
		// The management API's wildcard is one dual-stack socket.
		{"management ipv4 wildcard takes ipv6 too", "tcp [::1]:9090", "tcp 10.0.0.1:1", false, "0.0.0.0:9090", true},
		{"management ipv6 wildcard takes ipv4 too", "tcp 127.0.0.1:9090", "tcp 10.0.0.1:1", false, "[::]:9090", true},
		{"management wildcard and udp virtual", "udp 127.0.0.1:9090", "tcp 10.0.0.1:1", false, ":9090", false},
		{"management ipv6 loopback and ipv4 virtual", "tcp 0.0.0.0:9090", "tcp 10.0.0.1:1", false, "[::1]:9090", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ta, da, _ := strings.Cut(tc.a, " ")
			tb, db, _ := strings.Cut(tc.b, " ")
			src := poolWeb + fmt.Sprintf(`
virtuals:
  first:
    type: %s
    destination: "%s"
    pool: web
  second:
    type: %s
    destination: "%s"  #<-
    pool: web
`, ta, da, tb, db)
			if tc.management != "" {
				src += fmt.Sprintf("management:\n  address: %q\n", tc.management)
			}
			errs := parseErrors(t, src)
			switch {
			case tc.overlap:
				if len(errs) != 1 || errs[0].Path != "virtuals.second.destination" || errs[0].Line != markedLine(t, src) ||
					!strings.Contains(errs[0].Msg, `overlaps virtual "first" (line 8)`) {
					t.Fatalf("want one overlap error on virtuals.second.destination, got:\n%v", errs)
				}
			case tc.mgmtClash:
				if len(errs) != 1 || errs[0].Path != "management.address" || !strings.Contains(errs[0].Msg, `overlaps virtual "first"`) {
					t.Fatalf("want a management overlap error, got:\n%v", errs)
				}
			default:
				if errs != nil {
					t.Fatalf("unexpected errors:\n%v", errs)
				}
			}
		})
	}
}

func TestOverlaps(t *testing.T) {
	t.Parallel()
	ap := netip.MustParseAddrPort
	cases := []struct {
		a, b string
		want bool
	}{
		{"1.2.3.4:80", "1.2.3.4:80", true},
		{"1.2.3.4:80", "1.2.3.4:81", false},
		{"0.0.0.0:80", "1.2.3.4:80", true},
		{"1.2.3.4:80", "0.0.0.0:80", true},
		{"0.0.0.0:80", "[::1]:80", false},
		{"[::]:80", "1.2.3.4:80", false},
		{"[::]:80", "0.0.0.0:80", false},
		{"[::]:80", "[::1]:80", true},
		{"[::1]:80", "[::]:80", true},
		{"[::]:80", "[::]:80", true},
		{"[::1]:80", "[::2]:80", false},
		{"[::ffff:1.2.3.4]:80", "1.2.3.4:80", true},
		{"[::ffff:0.0.0.0]:80", "1.2.3.4:80", true},
		{"[::]:80", "[::ffff:1.2.3.4]:80", false},
	}
	for _, tc := range cases {
		if got := Overlaps(ap(tc.a), ap(tc.b)); got != tc.want {
			t.Errorf("Overlaps(%s, %s) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cert, key := writeCert(t, dir, "good", []string{"www.example.test"}, time.Now().Add(24*time.Hour))
	otherCert, otherKey := writeCert(t, dir, "other", []string{"a.example.test", "b.example.test"}, time.Now().Add(24*time.Hour))
	noNamesCert, noNamesKey := writeCert(t, dir, "nonames", nil, time.Now().Add(24*time.Hour))
	expCert, expKey := writeCert(t, dir, "expired", []string{"old.example.test"}, time.Now().Add(-24*time.Hour))
	notPEM := filepath.Join(dir, "notpem.txt")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	withProfile := func(profile string) string {
		return poolWeb + vsWeb + "    client_ssl: tls\nprofiles:\n" + profile
	}
	t.Run("valid with SNI default names", func(t *testing.T) {
		t.Parallel()
		c := mustParse(t, withProfile(fmt.Sprintf(`
  client_ssl:
    tls:
      cert: %s
      key: %s
      sni:
        - {cert: %s, key: %s}
        - {cert: %s, key: %s, server_names: ["*.example.test"]}
`, cert, key, otherCert, otherKey, cert, key)))
		p := c.Profiles.ClientSSL["tls"]
		if got := strings.Join(p.SNI[0].ServerNames, ","); got != "a.example.test,b.example.test" {
			t.Errorf("default SNI names = %q, want the certificate's DNS names", got)
		}
		if got := strings.Join(p.SNI[1].ServerNames, ","); got != "*.example.test" {
			t.Errorf("explicit SNI names = %q", got)
		}
		if len(p.ALPN) != 1 || p.ALPN[0] != "http/1.1" {
			t.Errorf("ALPN on an http virtual = %v, want [http/1.1]", p.ALPN)
		}
		if p.MinVersion != "1.2" {
			t.Errorf("MinVersion = %q", p.MinVersion)
		}
	})
	cases := []struct {
		name, profile, path, msg string
	}{
		{"missing key", fmt.Sprintf(`
  client_ssl:
    tls:
      cert: %s
`, cert), "profiles.client_ssl.tls.key", "key is required"},
		{"missing both", `
  client_ssl:
    tls: {min_version: "1.3"}
`, "profiles.client_ssl.tls", "needs cert and key"},
		{"cert file not found", fmt.Sprintf(`
  client_ssl:
    tls: {cert: %s/nope.crt, key: %s}
`, dir, key), "profiles.client_ssl.tls.cert", "nope.crt"},
		{"mismatched key", fmt.Sprintf(`
  client_ssl:
    tls: {cert: %s, key: %s}
`, cert, otherKey), "profiles.client_ssl.tls.cert", "private key does not match public key"},
		{"not PEM", fmt.Sprintf(`
  client_ssl:
    tls: {cert: %s, key: %s}
`, notPEM, key), "profiles.client_ssl.tls.cert", "notpem.txt"},
		{"sni without names", fmt.Sprintf(`
  client_ssl:
    tls:
      cert: %s
      key: %s
      sni: [{cert: %s, key: %s}]
`, cert, key, noNamesCert, noNamesKey), "profiles.client_ssl.tls.sni[0].server_names", "names no DNS names"},
		{"sni bad name", fmt.Sprintf(`
  client_ssl:
    tls:
      cert: %s
      key: %s
      sni: [{cert: %s, key: %s, server_names: ["a b"]}]
`, cert, key, cert, key), "profiles.client_ssl.tls.sni[0].server_names[0]", "is not a server name"},
		{"h2 on http virtual", fmt.Sprintf(`
  client_ssl:
    tls: {cert: %s, key: %s, alpn: [h2, http/1.1]}
`, cert, key), "profiles.client_ssl.tls.alpn", "HTTP/2 is not built yet"},
		{"server_ssl cert without key", fmt.Sprintf(`
  client_ssl:
    tls: {cert: %s, key: %s}
  server_ssl:
    s: {cert: %s}
`, cert, key, cert), "profiles.server_ssl.s.key", "needs both"},
		{"server_ssl CA not PEM", fmt.Sprintf(`
  client_ssl:
    tls: {cert: %s, key: %s}
  server_ssl:
    s: {ca: %s, verify: true}
`, cert, key, notPEM), "profiles.server_ssl.s.ca", "holds no PEM certificate"},
		{"server_ssl CA is a directory", fmt.Sprintf(`
  client_ssl:
    tls: {cert: %s, key: %s}
  server_ssl:
    s: {ca: %s}
`, cert, key, dir), "profiles.server_ssl.s.ca", "not a regular file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			errs := parseErrors(t, withProfile(tc.profile))
			if len(errs) != 1 || errs[0].Path != tc.path || !strings.Contains(errs[0].Msg, tc.msg) || errs[0].Line == 0 {
				t.Fatalf("want one error at %s containing %q, got:\n%v", tc.path, tc.msg, errs)
			}
		})
	}
	t.Run("expired certificate is a notice", func(t *testing.T) {
		t.Parallel()
		c := mustParse(t, withProfile(fmt.Sprintf(`
  client_ssl:
    tls: {cert: %s, key: %s}
`, expCert, expKey)))
		if len(c.Notices) != 1 || !strings.Contains(c.Notices[0], "expired on") {
			t.Errorf("notices = %q, want one about expiry", c.Notices)
		}
	})
	t.Run("server_ssl valid", func(t *testing.T) {
		t.Parallel()
		c := mustParse(t, poolWeb+vsWeb+fmt.Sprintf(`    server_ssl: s
profiles:
  server_ssl:
    s: {ca: %s, cert: %s, key: %s, verify: true, server_name: api.internal}
`, cert, cert, key))
		if c.Profiles.ServerSSL["s"].MinVersion != "1.2" {
			t.Errorf("server_ssl min_version default not applied")
		}
	})
}

func TestNotYetBuiltKeysSayWhy(t *testing.T) {
	src := "mirroring:\n  a: {}\netherip:\n  t: {}\nprofiles:\n  isession:\n    x: {}\npools:\n  p:\n    members: [{address: 127.0.0.1:1}]\nvirtuals:\n  v: {destination: 127.0.0.1:1, type: tcp, pool: p, lbsp: true}\n"
	_, err := Parse([]byte(src), "f.yaml")
	if err == nil {
		t.Fatal("configuration with unbuilt features accepted")
	}
	for _, want := range []string{"f.yaml:1: mirroring: there is no top-level mirroring section", "f.yaml:3: etherip: EtherIP tunnels are configured in tunnels, with type: etherip (docs/etherip.md)",
		`f.yaml:12: virtuals.v.lbsp: "lbsp" is not a virtual's key: LBSP is a persistence profile type`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

// TestMaxRatioIsThePools checks that check and the balancer agree on the
// largest ratio: the pool's limit is valid, one more is refused.
func TestMaxRatioIsThePools(t *testing.T) {
	t.Parallel()
	src := func(r int) string {
		return vsWeb + fmt.Sprintf("pools:\n  web:\n    members:\n      - {address: 10.0.0.1:80, ratio: %d}\n", r)
	}
	if errs := parseErrors(t, src(pool.MaxRatio)); errs != nil {
		t.Fatalf("ratio %d (pool.MaxRatio) refused: %v", pool.MaxRatio, errs)
	}
	errs := parseErrors(t, src(pool.MaxRatio+1))
	if len(errs) != 1 || errs[0].Path != "pools.web.members[0].ratio" {
		t.Fatalf("ratio %d accepted or misplaced: %v", pool.MaxRatio+1, errs)
	}
}
