package stack

import (
	"net"
	"strconv"
	"testing"
)

// The services' ports are chosen before they bind them: they must not come
// from the range that outgoing connections and port-0 listeners (the other
// tests' servers) draw from.
func TestFreeAddrAvoidsEphemeralPorts(t *testing.T) {
	start := ephemeralPortsStart()
	if start == 0 {
		t.Skip("no /proc/sys/net/ipv4/ip_local_port_range here")
	}
	for range 50 {
		addr, err := freeAddr()
		if err != nil {
			t.Fatal(err)
		}
		_, p, _ := net.SplitHostPort(addr)
		if port, _ := strconv.Atoi(p); port >= start || port < 10000 {
			t.Fatalf("freeAddr %s: want a port in [10000, %d)", addr, start)
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("freeAddr %s is not free: %v", addr, err)
		}
		ln.Close()
	}
}
