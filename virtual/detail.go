package virtual

import (
	"crypto/tls"
	"net"

	"github.com/fulcrum-adc/fulcrum/profile/tcp"
)

// SideDetail is one side of a proxied connection as the kernel sees it: the
// TCP profile in force, every option read back from the socket, and
// TCP_INFO. `fulcrum show connection ID` prints it.
type SideDetail struct {
	Profile string       `json:"profile"`
	Applied *tcp.Applied `json:"applied,omitempty"`
	Info    *tcp.Info    `json:"tcp_info,omitempty"`
	Error   string       `json:"error,omitempty"`
}

// ConnDetail is the detailed view of one tcp-virtual connection.
type ConnDetail struct {
	Clientside SideDetail     `json:"clientside"`
	Serverside SideDetail     `json:"serverside"`
	ToServer   BufferSnapshot `json:"proxy_buffer_to_server"`
	ToClient   BufferSnapshot `json:"proxy_buffer_to_client"`
}

// HTTPDetail is the detailed view of one http-virtual client connection;
// Serverside is the server connection serving its current request, if any.
type HTTPDetail struct {
	Clientside SideDetail  `json:"clientside"`
	Serverside *SideDetail `json:"serverside,omitempty"`
}

func streamDetail(p *Plan, c, s net.Conn, toServer, toClient *relay) ConnDetail {
	return ConnDetail{
		Clientside: sideDetail(p.Clientside, c),
		Serverside: sideDetail(p.Serverside, s),
		ToServer:   toServer.stats.Snapshot(),
		ToClient:   toClient.stats.Snapshot(),
	}
}

func sideDetail(prof *tcp.Profile, c net.Conn) SideDetail {
	var d SideDetail
	if prof != nil {
		d.Profile = prof.Name
	}
	tc := tcpConnOf(c)
	if tc == nil {
		d.Error = "not a TCP socket"
		return d
	}
	if ap, err := tcp.ReadBack(tc); err == nil {
		d.Applied = &ap
	} else {
		d.Error = err.Error()
	}
	if in, err := tcp.GetInfo(tc); err == nil {
		d.Info = &in
	} else if d.Error == "" {
		d.Error = err.Error()
	}
	return d
}

// tcpConnOf finds the TCP socket under TLS and byte-counting wrappers.
func tcpConnOf(c net.Conn) *net.TCPConn {
	for {
		switch v := c.(type) {
		case *net.TCPConn:
			return v
		case *tls.Conn:
			c = v.NetConn()
		case *countConn:
			c = v.Conn
		case *prefetchConn:
			return v.TCPConn
		default:
			return nil
		}
	}
}
