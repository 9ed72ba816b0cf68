package mirror

import (
	"fmt"
	"net"
)

func free(addr string, port int) bool {
	ln, err := net.Listen("tcp", fmt.Sprintf("%s:%d", addr, port))
	if err != nil {
		return false
	}
	ln.Close()
	return true
}
