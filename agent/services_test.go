package agent

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/state"
)

func TestServiceNetAddresses(t *testing.T) {
	n, err := newServiceNet("10.88.98.0/24")
	if err != nil {
		t.Fatal(err)
	}
	ips := n.assign([]string{"Service/default/a", "Service/default/b"})
	var list []string
	for _, ip := range ips {
		list = append(list, ip)
	}
	if err := n.sync(context.Background(), list); err != nil {
		t.Fatal(err)
	}
	out, _ := exec.Command("ip", "-o", "-4", "addr", "show", "dev", "lo").Output()
	if strings.Count(string(out), "10.89.98.") != 3 {
		t.Fatalf("want the DNS address and 2 service addresses on lo:\n%s", out)
	}
	m, _ := newServiceNet("10.88.98.0/24")
	m.removeAll(context.Background())
	out, _ = exec.Command("ip", "-o", "-4", "addr", "show", "dev", "lo").Output()
	if strings.Contains(string(out), "10.89.98.") {
		t.Fatalf("addresses left on lo:\n%s", out)
	}
}

func TestNodePortAllocation(t *testing.T) {
	st, err := state.Open(t.TempDir()+"/state.crdt", "n1")
	if err != nil {
		t.Fatal(err)
	}
	a := &Agent{store: st}
	svc := func(name string, nodePort int32) *api.Service {
		return &api.Service{Metadata: api.ObjectMeta{Name: name, Namespace: "default"},
			Spec: api.ServiceSpec{Type: "NodePort", Selector: map[string]string{"app": name},
				Ports: []api.ServicePort{{Port: 8080, TargetPort: api.FromInt(8080), NodePort: nodePort}}}}
	}
	first := svc("a", 0)
	if err := a.allocateNodePorts([]api.Object{first}); err != nil {
		t.Fatal(err)
	}
	p := first.Spec.Ports[0].NodePort
	if p < nodePortMin || p > nodePortMax {
		t.Fatalf("allocated %d, outside 30000-32767", p)
	}
	// The same manifest gets the same port.
	again := svc("a", 0)
	if err := a.allocateNodePorts([]api.Object{again}); err != nil || again.Spec.Ports[0].NodePort != p {
		t.Fatalf("re-allocation gave %d, want %d (%v)", again.Spec.Ports[0].NodePort, p, err)
	}
	if _, err := st.Apply([]api.Object{first}, time.Now(), false); err != nil {
		t.Fatal(err)
	}
	// Another service never gets a port in use, even one whose hash starts there.
	for i := 0; i < 50; i++ {
		other := svc(fmt.Sprintf("b%d", i), 0)
		if err := a.allocateNodePorts([]api.Object{other}); err != nil {
			t.Fatal(err)
		}
		if other.Spec.Ports[0].NodePort == p {
			t.Fatalf("service b%d got port %d, already allocated to a", i, p)
		}
	}
	// ClusterIP services carry no nodePort.
	cip := svc("c", 31000)
	cip.Spec.Type = "ClusterIP"
	if err := a.allocateNodePorts([]api.Object{cip}); err != nil || cip.Spec.Ports[0].NodePort != 0 {
		t.Fatalf("ClusterIP service kept nodePort %d (%v)", cip.Spec.Ports[0].NodePort, err)
	}
}
