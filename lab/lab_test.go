package lab

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

// TestMain doubles as a helper run inside a machine: with LAB_ECHO set it
// serves a TCP echo on that address until killed; with LAB_DIAL it sends
// "hello" to the echo at that address and prints the answer.
func TestMain(m *testing.M) {
	if addr := os.Getenv("LAB_DIAL"); addr != "" {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			fmt.Println("dial:", err)
			os.Exit(1)
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintln(c, "hello")
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			fmt.Println("read:", err)
			os.Exit(1)
		}
		fmt.Print(line)
		os.Exit(0)
	}
	if addr := os.Getenv("LAB_ECHO"); addr != "" {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			fmt.Println("listen:", err)
			os.Exit(1)
		}
		fmt.Println("listening")
		for {
			c, err := l.Accept()
			if err != nil {
				os.Exit(1)
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := c.Write([]byte(line)); err != nil {
						return
					}
				}
			}()
		}
	}
	os.Exit(m.Run())
}

func TestCheck(t *testing.T) {
	for _, l := range []Lab{
		{Name: "", Subnet: netip.MustParsePrefix("10.213.1.0/24")},
		{Name: "Bad_Name", Subnet: netip.MustParsePrefix("10.213.1.0/24")},
		{Name: "ok", Subnet: netip.MustParsePrefix("10.0.0.0/8")},
		{Name: "ok", Subnet: netip.MustParsePrefix("fd00::/64")},
	} {
		if l.Check() == nil {
			t.Errorf("%+v passed the check", l)
		}
	}
	l := Lab{Name: "dev", Subnet: DefaultSubnet("dev")}
	if err := l.Check(); err != nil {
		t.Fatal(err)
	}
	m, err := l.Machine(2)
	if err != nil {
		t.Fatal(err)
	}
	if want := l.Subnet.Addr().As4(); m.Addr.As4() != [4]byte{want[0], want[1], want[2], 12} || m.Name != "dev-2" || len(m.HostVeth) > 15 || len(l.Bridge()) > 15 {
		t.Fatalf("machine 2 = %+v, bridge %q", m, l.Bridge())
	}
	small := Lab{Name: "s", Subnet: netip.MustParsePrefix("10.213.9.0/28")}
	if _, err := small.Machine(5); err == nil {
		t.Fatal("machine 5 of a /28 (16 addresses, machines from .11) was given an address")
	}
}

// A lab of two machines: the host reaches each, they reach each other,
// shaping adds its delay to a round trip, and Delete removes everything.
func TestLab(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("the lab needs root (network namespaces, a bridge); the project's tests run as root")
	}
	l := Lab{Name: fmt.Sprintf("t%d", os.Getpid()), Subnet: netip.MustParsePrefix("10.214.77.0/24")}
	t.Cleanup(func() { _ = l.Delete() })
	ms, err := l.Create(2)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := l.Create(2); err != nil || len(again) != 2 {
		t.Fatalf("second Create: %v %v", again, err)
	}
	if got := l.Machines(); len(got) != 2 {
		t.Fatalf("Machines() = %v", got)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	echo := ms[1].Addr.String() + ":9000"
	cmd := ms[1].Command(self, "-test.run=^$")
	cmd.Env = append(os.Environ(), "LAB_ECHO="+echo)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "listening\n" {
		t.Fatalf("echo in %s: %q %v", ms[1].Name, line, err)
	}
	plain := roundTrip(t, echo)

	// Machine 1 reaches machine 2 over the bridge.
	dial := ms[0].Command(self, "-test.run=^$")
	dial.Env = append(os.Environ(), "LAB_DIAL="+echo)
	if b, err := dial.CombinedOutput(); err != nil || string(b) != "hello\n" {
		t.Fatalf("from %s to %s: %q %v", ms[0].Name, echo, b, err)
	}

	// All lost: the echo is out of reach; then back.
	if err := l.Shape(ms[1], Link{Loss: 100}); err != nil {
		t.Fatal(err)
	}
	if c, err := net.DialTimeout("tcp", echo, time.Second); err == nil {
		c.Close()
		t.Fatalf("dialed %s through a link losing every packet", echo)
	}
	if err := l.Shape(ms[1], Link{}); err != nil {
		t.Fatal(err)
	}
	roundTrip(t, echo)

	// 8 Mbit/s: 1 MB out and back takes about 2 s, at least 1.5 s.
	if err := l.Shape(ms[1], Link{Rate: 8_000_000}); err != nil {
		t.Fatal(err)
	}
	const size = 1_000_000
	if took := transfer(t, echo, size); took < 1500*time.Millisecond {
		t.Fatalf("%d bytes each way at 8 Mbit/s took %v", size, took)
	}
	if err := l.Shape(ms[1], Link{}); err != nil {
		t.Fatal(err)
	}
	host, err := netlink.LinkByName(ms[1].HostVeth)
	if err != nil {
		t.Fatal(err)
	}
	qs, err := netlink.QdiscList(host)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range qs {
		if q.Type() == "tbf" || q.Type() == "netem" {
			t.Fatalf("%s left on %s after a plain Shape", q.Type(), ms[1].HostVeth)
		}
	}

	// A delay needs netem: it works, or says the kernel lacks it.
	const delay = 30 * time.Millisecond
	if err := l.Shape(ms[1], Link{Delay: delay}); err != nil {
		if !strings.Contains(err.Error(), "CONFIG_NET_SCH_NETEM") {
			t.Fatal(err)
		}
		t.Logf("no delay on this kernel: %v", err)
	} else if rtt := roundTrip(t, echo); rtt < 2*delay {
		t.Fatalf("round trip with %v each way: %v (plain: %v)", delay, rtt, plain)
	}
	if err := l.Shape(ms[1], Link{}); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if err := l.Delete(); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if _, err := os.Stat(m.NetNS); err == nil {
			t.Errorf("%s still exists", m.NetNS)
		}
	}
	if _, err := netlink.LinkByName(l.Bridge()); err == nil {
		t.Errorf("bridge %s still exists", l.Bridge())
	}
}

// roundTrip dials the echo at addr and returns the smallest of five round
// trips of a line.
func roundTrip(t *testing.T, addr string) time.Duration {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	best := time.Hour
	for i := range 5 {
		start := time.Now()
		_ = c.SetDeadline(start.Add(5 * time.Second))
		if _, err := fmt.Fprintf(c, "ping %d\n", i); err != nil {
			t.Fatal(err)
		}
		line, err := r.ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "ping") {
			t.Fatalf("echo: %q %v", line, err)
		}
		best = min(best, time.Since(start))
	}
	return best
}

// transfer sends size bytes (one line) to the echo at addr and reads them
// back, and returns how long that took.
func transfer(t *testing.T, addr string, size int) time.Duration {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	start := time.Now()
	_ = c.SetDeadline(start.Add(30 * time.Second))
	line := append([]byte(strings.Repeat("x", size-1)), '\n')
	go func() { _, _ = c.Write(line) }()
	got, err := bufio.NewReaderSize(c, 1<<16).ReadString('\n')
	if err != nil || len(got) != size {
		t.Fatalf("echo of %d bytes: %d bytes, %v", size, len(got), err)
	}
	return time.Since(start)
}
