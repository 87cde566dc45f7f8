package agent

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/crdt"
	"github.com/chorus-sh/chorus/placement/subnet"
	"github.com/chorus-sh/chorus/runtime"
	"github.com/chorus-sh/chorus/state"
)

// Pod subnets are claimed in the replicated state, one key per peer that
// only that peer writes (PodSubnet//<peer>), and recorded in the peer's data
// dir (subnet.json). The decision is placement/subnet's Decide; this file
// reads its inputs and carries out its verdict.
const kindPodSubnet = "PodSubnet"

func podSubnetKey(node string) string { return kindPodSubnet + "//" + node }

// subnetRecordFile keeps, in the data dir, the subnet this peer holds.
const subnetRecordFile = "subnet.json"

// subnetSyncWait bounds how long a peer with no subnet of its own waits for
// its first exchange with another peer (to see their claims) before it
// claims one from what it knows: with --join, and (shorter, as the first
// peer of a new cluster waits for nobody) with mDNS discovery alone.
const (
	subnetSyncWait     = 15 * time.Second
	subnetDiscoverWait = 5 * time.Second
)

// claimDoc is a claim as stored, in the data dir and (field by field,
// spec.<name>) in the replicated state.
type claimDoc struct {
	Subnet   string       `json:"subnet"`
	Explicit bool         `json:"explicit,omitempty"`
	Since    subnet.Since `json:"since"`
}

func claimOf(peer string, d claimDoc) (subnet.Claim, error) {
	p, err := netip.ParsePrefix(d.Subnet)
	if err != nil {
		return subnet.Claim{}, fmt.Errorf("subnet %q: %w", d.Subnet, err)
	}
	c := subnet.Claim{Peer: peer, Subnet: p, Explicit: d.Explicit, Since: d.Since}
	if !c.Valid() {
		return subnet.Claim{}, fmt.Errorf("subnet %q: want a masked IPv4 prefix of /8 to /28", d.Subnet)
	}
	return c, nil
}

func docOfClaim(c subnet.Claim) claimDoc {
	return claimDoc{Subnet: c.Subnet.String(), Explicit: c.Explicit, Since: c.Since}
}

// decodeSubnetRecord reads the data dir's record.
func decodeSubnetRecord(peer string, b []byte) (subnet.Claim, error) {
	var d claimDoc
	if err := json.Unmarshal(b, &d); err != nil {
		return subnet.Claim{}, err
	}
	return claimOf(peer, d)
}

// decodeStoredClaim reads a peer's claim from its fields in the replicated
// state (written by any peer, of any version: checked, never trusted).
func decodeStoredClaim(peer string, f map[string]json.RawMessage) (subnet.Claim, error) {
	var d claimDoc
	if err := json.Unmarshal(f["spec.subnet"], &d.Subnet); err != nil {
		return subnet.Claim{}, fmt.Errorf("spec.subnet: %w", err)
	}
	if err := json.Unmarshal(f["spec.since"], &d.Since); err != nil {
		return subnet.Claim{}, fmt.Errorf("spec.since: %w", err)
	}
	if raw, ok := f["spec.explicit"]; ok {
		if err := json.Unmarshal(raw, &d.Explicit); err != nil {
			return subnet.Claim{}, fmt.Errorf("spec.explicit: %w", err)
		}
	}
	return claimOf(peer, d)
}

// storedClaims returns every peer's claim held in the replicated state;
// claims that do not decode are skipped (logged by the caller's caller
// when they concern this peer).
func storedClaims(s *state.Store) map[string]subnet.Claim {
	out := map[string]subnet.Claim{}
	s.Read(func(cs *crdt.State) {
		for _, key := range cs.Keys(kindPodSubnet + "//") {
			_, _, peer := state.SplitKey(key)
			f, ok := cs.Get(key)
			if !ok || peer == "" {
				continue
			}
			if c, err := decodeStoredClaim(peer, f); err == nil {
				out[peer] = c
			}
		}
	})
	return out
}

func sinceOf(st crdt.Stamp) subnet.Since { return subnet.Since{Wall: st.Wall, Logical: st.Logical} }

// preferredSubnet is this peer's first candidate: 10.88.<last octet of
// --bind>.0/24 (or from its name when --bind has no IPv4 address).
func (c *Config) preferredSubnet() int {
	sum := sha256.Sum256([]byte(c.Name))
	ip, _ := netip.ParseAddr(c.Bind)
	return subnet.Preferred(ip, sum[3])
}

// explicitSubnet returns --pod-subnet, parsed (invalid when not given).
func (c *Config) explicitSubnet() (netip.Prefix, error) {
	if c.PodSubnet == "" {
		return netip.Prefix{}, nil
	}
	p, err := netip.ParsePrefix(c.PodSubnet)
	if err != nil || !subnet.Usable(p.Masked()) {
		return netip.Prefix{}, fmt.Errorf("--pod-subnet %q: want an IPv4 CIDR of /8 to /28", c.PodSubnet)
	}
	return p.Masked(), nil
}

// podSubnet returns the pod subnet this peer uses now.
func (a *Agent) podSubnet() netip.Prefix {
	if c := a.subnet.Load(); c != nil {
		return c.Subnet
	}
	return netip.Prefix{}
}

// initialSubnet decides, at start and before the network is set up, the
// subnet this peer starts with: --pod-subnet, else its own (recorded in
// the data dir, or else claimed in the replicated state it saved), else a
// provisional first choice from the claims it holds, confirmed or changed
// once it has exchanged state with another peer (settled reports whether
// it is confirmed already: pods start only then). former is the subnet the
// peer held before, when it starts with another and no other peer claims
// it (its service addresses are then this peer's to remove); else zero.
func (a *Agent) initialSubnet() (claim subnet.Claim, settled bool, former netip.Prefix, err error) {
	explicit, err := a.cfg.explicitSubnet()
	if err != nil {
		return subnet.Claim{}, false, netip.Prefix{}, err
	}
	own, err := a.ownSubnet()
	claims := storedClaims(a.store)
	if err != nil {
		a.log.Warn("the pod subnet record is unreadable: ignored", "path", filepath.Join(a.cfg.DataDir, subnetRecordFile), "err", err)
	}
	if !own.Valid() {
		own = claims[a.cfg.Name]
	}
	d, err := subnet.Decide(subnet.Request{Self: a.cfg.Name, Preferred: a.cfg.preferredSubnet(), Explicit: explicit,
		Own: own, Claims: values(claims), InUse: a.hostNetworks(context.Background()), Now: sinceOf(a.store.Now())})
	if err != nil {
		return subnet.Claim{}, false, netip.Prefix{}, fmt.Errorf("pod subnet: %w", err)
	}
	if own.Valid() && own.Subnet != d.Claim.Subnet && !slices.ContainsFunc(values(claims), func(c subnet.Claim) bool {
		return c.Peer != a.cfg.Name && c.Subnet.Overlaps(own.Subnet)
	}) {
		former = own.Subnet
	}
	fresh := !explicit.IsValid() && !own.Valid()
	alone := len(a.cfg.Join) == 0 && !a.cfg.Discover
	return d.Claim, !fresh || alone, former, nil
}

// hostNetworks returns the IPv4 networks of this machine's interfaces but
// this peer's own bridge and service addresses: what a new claim must
// avoid (other peers on this machine: their bridges, their service and DNS
// addresses on lo; a VPN, the LAN). Unreadable, none.
func (a *Agent) hostNetworks(ctx context.Context) []netip.Prefix {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var out []netip.Prefix
	b, err := exec.CommandContext(ctx, "ip", "-j", "-4", "addr", "show").Output()
	if err != nil {
		a.log.Warn("read the machine's addresses: new pod subnets may overlap them", "err", err)
		return nil
	}
	links, err := runtime.ParseIPAddrJSONLinks(b)
	if err != nil {
		a.log.Warn("read the machine's addresses: new pod subnets may overlap them", "err", err)
		return nil
	}
	var mine netip.Prefix
	if c := a.subnet.Load(); c != nil {
		mine = subnet.ServiceNet(c.Subnet)
	}
	for name, addrs := range links {
		if name == a.cfg.Bridge {
			continue
		}
		for _, p := range addrs {
			if name == "lo" && mine.IsValid() && mine.Contains(p.Addr()) {
				continue
			}
			out = append(out, p.Masked())
		}
	}
	return out
}

// ownSubnet reads this peer's record; none is the zero claim.
func (a *Agent) ownSubnet() (subnet.Claim, error) {
	b, err := os.ReadFile(filepath.Join(a.cfg.DataDir, subnetRecordFile))
	if errors.Is(err, os.ErrNotExist) {
		return subnet.Claim{}, nil
	}
	if err != nil {
		return subnet.Claim{}, err
	}
	return decodeSubnetRecord(a.cfg.Name, b)
}

func values(m map[string]subnet.Claim) []subnet.Claim {
	out := make([]subnet.Claim, 0, len(m))
	for _, c := range m {
		out = append(out, c)
	}
	return out
}

// subnetLoop claims this peer's subnet and keeps it: a peer with none of
// its own first waits for an exchange with another peer (bounded by
// subnetSyncWait) so that it sees their claims before it claims; then,
// whenever the state changes, the claims are decided again, and a peer
// whose claim lost (a concurrent claim, an explicit subnet) moves.
func (a *Agent) subnetLoop(ctx context.Context) {
	if !a.subnetSettled.Load() {
		wait := subnetSyncWait
		if len(a.cfg.Join) == 0 {
			wait = subnetDiscoverWait
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-a.store.Exchanged():
		case <-t.C:
			a.log.Warn("no exchange with another peer yet: the pod subnet is claimed from the claims this peer knows", "waited", wait)
		}
		t.Stop()
	}
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		changed := a.store.Changed()
		if err := a.settleSubnet(ctx); err != nil {
			a.log.Error("pod subnet", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-tick.C:
		}
	}
}

// settleSubnet decides this peer's subnet from the claims it holds, moves
// to it if it changed, and claims it.
func (a *Agent) settleSubnet(ctx context.Context) error {
	explicit, err := a.cfg.explicitSubnet()
	if err != nil {
		return err
	}
	claims := storedClaims(a.store)
	var own subnet.Claim
	if a.subnetSettled.Load() {
		own = *a.subnet.Load()
	} else if c, ok := claims[a.cfg.Name]; ok {
		own = c // the cluster remembers this peer's claim (its data dir was lost)
	}
	req := subnet.Request{Self: a.cfg.Name, Preferred: a.cfg.preferredSubnet(), Explicit: explicit,
		Own: own, Claims: values(claims), Now: sinceOf(a.store.Now())}
	if !own.Valid() || slices.ContainsFunc(values(claims), func(c subnet.Claim) bool {
		return c.Peer != a.cfg.Name && c.Subnet.Overlaps(own.Subnet)
	}) {
		req.InUse = a.hostNetworks(ctx) // read only when a new subnet may be picked
	}
	d, err := subnet.Decide(req)
	if err != nil {
		return err
	}
	if len(d.Clashes) > 0 {
		if !a.subnetClash.Swap(true) {
			msg := fmt.Sprintf("--pod-subnet %s overlaps the --pod-subnet of peer(s) %s: both keep it, and their pods' addresses may collide; give one of them another subnet",
				d.Claim.Subnet, strings.Join(d.Clashes, ", "))
			a.log.Error(msg, "subnet", d.Claim.Subnet.String(), "peers", d.Clashes)
			a.events.record(api.ObjectReference{Kind: kindNode, Name: a.cfg.Name}, "Warning", "PodSubnetClash", msg)
		}
	} else {
		a.subnetClash.Store(false)
	}
	cur := *a.subnet.Load()
	if d.Claim != cur {
		if err := a.moveSubnet(ctx, cur, d.Claim, d.Reason); err != nil {
			return err
		}
	}
	if !a.subnetSettled.Swap(true) {
		a.log.Info("pod subnet claimed", "subnet", d.Claim.Subnet.String(), "services", subnet.ServiceNet(d.Claim.Subnet).String(), "explicit", d.Claim.Explicit)
		select {
		case a.kick <- struct{}{}:
		default:
		}
	}
	if err := a.writeSubnetRecord(d.Claim); err != nil {
		return err
	}
	if stored, ok := claims[a.cfg.Name]; ok && stored == d.Claim {
		return nil
	}
	doc := docOfClaim(d.Claim)
	sub, _ := json.Marshal(doc.Subnet)
	since, _ := json.Marshal(doc.Since)
	explicitRaw, _ := json.Marshal(doc.Explicit)
	if err := a.store.WriteFields(podSubnetKey(a.cfg.Name), map[string]json.RawMessage{
		"kind": json.RawMessage(`"` + kindPodSubnet + `"`), "spec.subnet": sub, "spec.since": since, "spec.explicit": explicitRaw,
	}); err != nil {
		return fmt.Errorf("claim pod subnet %s: %w", d.Claim.Subnet, err)
	}
	return nil
}

// writeSubnetRecord records c in the data dir (and in peer.json, which
// chorus reset reads), when it changed.
func (a *Agent) writeSubnetRecord(c subnet.Claim) error {
	path := filepath.Join(a.cfg.DataDir, subnetRecordFile)
	b, err := json.Marshal(docOfClaim(c))
	if err != nil {
		return err
	}
	if old, err := os.ReadFile(path); err == nil && string(old) == string(b) {
		return nil
	}
	if err := writeFileAtomic(path, b); err != nil {
		return fmt.Errorf("record pod subnet: %w", err)
	}
	return a.writePeerFile()
}

// writePeerFile records the configuration the peer runs with, its pod
// subnet as used now.
func (a *Agent) writePeerFile() error {
	cfg := a.cfg
	if p := a.podSubnet(); p.IsValid() {
		cfg.PodSubnet = p.String()
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(cfg.DataDir, peerFile), b); err != nil {
		return fmt.Errorf("write %s: %w", peerFile, err)
	}
	return nil
}

func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// moveSubnet carries this peer from one subnet to another: the network
// attaches new pods in the new one (the bridge repaired), the service
// addresses and the DNS server follow, and the pods attached in the old
// one are replaced (started again with addresses in the new one).
func (a *Agent) moveSubnet(ctx context.Context, from, to subnet.Claim, reason string) error {
	if from.Subnet == to.Subnet { // the same subnet, claimed anew
		a.subnet.Store(&to)
		return nil
	}
	if err := a.nw.SetSubnet(to.Subnet.String()); err != nil {
		return err
	}
	a.subnet.Store(&to)
	if _, err := a.nw.RepairBridge(ctx, a.log); err != nil {
		a.log.Warn("repair the pod bridge", "err", err)
	}
	if err := a.svcNet.setSubnet(ctx, to.Subnet); err != nil {
		a.log.Warn("service addresses", "err", err)
	}
	if a.proxy != nil {
		if err := a.proxy.SetDNSAddr(hostPort(a.svcNet.dnsIP(), 53)); err != nil {
			a.log.Warn("move the DNS server", "err", err)
		}
	}
	replaced := a.pods.ReplaceOutside(to.Subnet)
	if reason == "" {
		a.log.Info("pod subnet chosen after seeing the other peers' claims", "provisional", from.Subnet.String(), "subnet", to.Subnet.String())
	} else {
		a.log.Warn("pod subnet moved", "from", from.Subnet.String(), "to", to.Subnet.String(), "why", reason, "pods_restarted", replaced)
		a.events.record(api.ObjectReference{Kind: kindNode, Name: a.cfg.Name}, "Warning", "PodSubnetMoved",
			fmt.Sprintf("from %s to %s: %s; %d pod(s) restarted", from.Subnet, to.Subnet, reason, len(replaced)))
	}
	select {
	case a.kick <- struct{}{}:
	default:
	}
	return nil
}

// removeServiceNet takes off lo the service addresses of the subnet this
// peer held before it started with another (initialSubnet's former).
func (a *Agent) removeServiceNet(former netip.Prefix) {
	n, err := newServiceNet(former.String())
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n.removeAll(ctx)
	a.log.Info("service addresses of the former pod subnet removed", "subnet", former.String())
}
