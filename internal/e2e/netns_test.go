package e2e

import (
	"fmt"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
)

// netns is a network namespace joined to the host by a veth pair: the host
// end has hostIP, the namespace end nsIP, in a /30 of 10.231.0.0/16.
type netns struct {
	name         string
	hostIf, nsIf string
	hostIP, nsIP string
}

var netnsCount atomic.Int32

// newNetns creates a namespace and its veth pair; they are removed when
// the test ends, whatever happened. The /30 is picked from the process id
// so that two test runs on one machine don't collide.
func newNetns(t *testing.T) *netns {
	t.Helper()
	id := (os.Getpid()*4 + int(netnsCount.Add(1))) % 16384
	n := &netns{
		name:   fmt.Sprintf("tether-e2e-%d", id),
		hostIf: fmt.Sprintf("te2e%dh", id),
		nsIf:   fmt.Sprintf("te2e%dn", id),
		hostIP: fmt.Sprintf("10.231.%d.%d", id/64, id%64*4+1),
		nsIP:   fmt.Sprintf("10.231.%d.%d", id/64, id%64*4+2),
	}
	// Left over from a run that was killed before its clean-up.
	_, _ = run("ip", "netns", "del", n.name)
	_, _ = run("ip", "link", "del", n.hostIf)
	if out, err := run("ip", "netns", "add", n.name); err != nil {
		if strings.Contains(out, "Operation not permitted") || strings.Contains(out, "Permission denied") {
			t.Fatalf("creating network namespace %s needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN); run the e2e tests as root: %v", n.name, err)
		}
		t.Fatalf("ip netns add: %v", err)
	}
	t.Cleanup(func() {
		// The hub inside was stopped by an earlier clean-up (they run in
		// reverse order); deleting the namespace removes its veth end and
		// with it the pair.
		if out, err := run("ip", "netns", "del", n.name); err != nil {
			t.Errorf("remove network namespace %s: %v %s", n.name, err, out)
		}
		if _, err := run("ip", "link", "show", n.hostIf); err == nil {
			_, _ = run("ip", "link", "del", n.hostIf)
		}
	})
	for _, argv := range [][]string{
		{"ip", "link", "add", n.hostIf, "type", "veth", "peer", "name", n.nsIf, "netns", n.name},
		{"ip", "addr", "add", n.hostIP + "/30", "dev", n.hostIf},
		{"ip", "link", "set", n.hostIf, "up"},
		n.exec("ip", "link", "set", "lo", "up"),
		n.exec("ip", "addr", "add", n.nsIP+"/30", "dev", n.nsIf),
		n.exec("ip", "link", "set", n.nsIf, "up"),
	} {
		mustRun(t, argv...)
	}
	return n
}

// exec is argv run inside the namespace.
func (n *netns) exec(argv ...string) []string {
	return append([]string{"ip", "netns", "exec", n.name}, argv...)
}

// dropNewOutgoing makes the namespace unable to open any connection: every
// NEW outgoing packet is dropped, answers on connections others opened
// (ESTABLISHED, RELATED) pass. That is a cluster-side view of a hub behind
// a one-way firewall, or an agent behind NAT: only the agent can dial.
func (n *netns) dropNewOutgoing(t *testing.T) {
	t.Helper()
	mustRun(t, n.exec("iptables", "-A", "OUTPUT", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT")...)
	mustRun(t, n.exec("iptables", "-A", "OUTPUT", "-m", "conntrack", "--ctstate", "NEW", "-j", "DROP")...)
}

// canDial reports whether a TCP connection from inside the namespace to
// addr succeeds within a few seconds (bash's /dev/tcp, so nothing but
// bash is needed).
func (n *netns) canDial(addr string) bool {
	host, port, _ := net.SplitHostPort(addr)
	_, err := run(n.exec("timeout", "5", "bash", "-c", "exec 3<>/dev/tcp/"+host+"/"+port)...)
	return err == nil
}

// hostListener listens on the host's end of the veth pair and counts the
// connections it accepts.
func (n *netns) hostListener(t *testing.T) (string, *atomic.Int32) {
	t.Helper()
	l, err := net.Listen("tcp", n.hostIP+":0")
	if err != nil {
		t.Fatal(err)
	}
	var accepted atomic.Int32
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	t.Cleanup(func() { l.Close() })
	return l.Addr().String(), &accepted
}
