package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/containerd/containerd/v2/pkg/netns"
	gocni "github.com/containerd/go-cni"
)

// NetworkConfig describes a peer's pod network: one Linux bridge with a
// subnet of its own, through Debian's CNI plugins.
type NetworkConfig struct {
	Name       string         // CNI network name, unique per peer on a machine
	Bridge     string         // bridge device name (at most 15 characters)
	Subnet     string         // pod subnet, e.g. 10.88.11.0/24
	Cluster    []netip.Prefix // the cluster's pod subnets (default 10.88.0.0/16): reached without masquerade
	PluginDirs []string       // where the CNI plugin binaries are (default /usr/lib/cni, /opt/cni/bin)
	StateDir   string         // IPAM state and network namespaces live under here
	// MTU is the MTU of the pods' interfaces and of the bridge (0: the
	// plugin's default, the bridge's or 1500); a pod network that
	// encapsulates (WireGuard) sets its own, smaller one. Pods keep the
	// MTU they were attached with.
	MTU int
}

// DefaultCNIPluginDirs are searched for the CNI plugins.
var defaultCNIPluginDirs = []string{"/usr/lib/cni", "/opt/cni/bin"}

// CNINetwork attaches pod network namespaces to the peer's bridge.
type CNINetwork struct {
	netnsDir string
	ipamDir  string

	mu  sync.RWMutex
	cfg NetworkConfig // Subnet changes with SetSubnet
	cni gocni.CNI
}

func parseSubnet(s string) (netip.Prefix, error) {
	pfx, err := netip.ParsePrefix(s)
	if err != nil || !pfx.Addr().Is4() || pfx.Bits() > 28 {
		return netip.Prefix{}, fmt.Errorf("pod subnet %q: want an IPv4 CIDR of /28 or larger", s)
	}
	return pfx.Masked(), nil
}

// NewCNINetwork checks the configuration and the plugins and prepares the
// network; the bridge itself is created by the plugin on first use.
func NewCNINetwork(cfg NetworkConfig) (*CNINetwork, error) {
	if len(cfg.Bridge) == 0 || len(cfg.Bridge) > 15 {
		return nil, fmt.Errorf("bridge name %q: must be 1 to 15 characters", cfg.Bridge)
	}
	if _, err := parseSubnet(cfg.Subnet); err != nil {
		return nil, err
	}
	if len(cfg.PluginDirs) == 0 {
		cfg.PluginDirs = defaultCNIPluginDirs
	}
	if _, err := findPlugin(cfg.PluginDirs, "bridge"); err != nil {
		return nil, err
	}
	netnsDir := filepath.Join(cfg.StateDir, "netns")
	ipamDir := filepath.Join(cfg.StateDir, "ipam")
	for _, d := range []string{netnsDir, ipamDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("create %s: %w", d, err)
		}
	}
	c, err := newCNI(cfg, ipamDir)
	if err != nil {
		return nil, err
	}
	return &CNINetwork{cfg: cfg, cni: c, netnsDir: netnsDir, ipamDir: ipamDir}, nil
}

// newCNI loads the CNI configuration of cfg.
func newCNI(cfg NetworkConfig, ipamDir string) (gocni.CNI, error) {
	pfx, err := parseSubnet(cfg.Subnet)
	if err != nil {
		return nil, err
	}
	conf := cniConfList(cfg, pfx, ipamDir)
	b, err := json.Marshal(conf)
	if err != nil {
		return nil, err
	}
	cluster := cfg.Cluster
	if len(cluster) == 0 {
		cluster = []netip.Prefix{netip.MustParsePrefix("10.88.0.0/16")}
	}
	if err := ensureMasquerade(cfg.Bridge, pfx, append(slices.Clone(cluster), pfx)); err != nil {
		return nil, err
	}
	c, err := gocni.New(gocni.WithPluginDir(cfg.PluginDirs), gocni.WithPluginConfDir(""),
		gocni.WithConfListBytes(b), gocni.WithLoNetwork)
	if err != nil {
		return nil, fmt.Errorf("load CNI configuration: %w", err)
	}
	return c, nil
}

// cniConfList is the CNI configuration list of cfg's network in subnet
// pfx: the bridge plugin with host-local addresses kept under ipamDir.
func cniConfList(cfg NetworkConfig, pfx netip.Prefix, ipamDir string) map[string]any {
	bridge := map[string]any{
		"type":        "bridge",
		"bridge":      cfg.Bridge,
		"isGateway":   true,
		"ipMasq":      false, // ensureMasquerade's table instead
		"hairpinMode": true,
		// A gateway address left from another subnet is replaced,
		// not fatal ("already has an IP address different from").
		"forceAddress": true,
		"ipam": map[string]any{
			"type":    "host-local",
			"dataDir": ipamDir,
			"ranges":  [][]map[string]string{{{"subnet": pfx.Masked().String()}}},
			"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
		},
	}
	if cfg.MTU > 0 {
		bridge["mtu"] = cfg.MTU
	}
	return map[string]any{"cniVersion": "1.0.0", "name": cfg.Name, "plugins": []any{bridge}}
}

// Subnet returns the pod subnet pods are attached in now.
func (n *CNINetwork) Subnet() string {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.cfg.Subnet
}

// SetSubnet attaches the pods set up from now on in subnet; pods already
// attached keep their addresses until torn down (the caller replaces
// them). The bridge takes the new gateway address at the next RepairBridge
// or pod set-up.
func (n *CNINetwork) SetSubnet(subnet string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	cfg := n.cfg
	cfg.Subnet = subnet
	c, err := newCNI(cfg, n.ipamDir)
	if err != nil {
		return err
	}
	n.cfg, n.cni = cfg, c
	return nil
}

func (n *CNINetwork) plugin() (gocni.CNI, NetworkConfig) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.cni, n.cfg
}

// RepairBridge makes the bridge's IPv4 addresses exactly the gateway of
// the pod subnet (its first address) when the bridge exists: an address
// left from an older subnet (a peer whose subnet changed) would make
// every pod set-up fail, and adopted pods need their gateway. It logs and
// returns what it changed; a missing bridge is left for the plugin to make.
func (n *CNINetwork) RepairBridge(ctx context.Context, log *slog.Logger) ([]string, error) {
	_, cfg := n.plugin()
	pfx, err := parseSubnet(cfg.Subnet)
	if err != nil {
		return nil, err
	}
	out, err := exec.CommandContext(ctx, "ip", "-j", "-4", "addr", "show", "dev", cfg.Bridge).Output()
	if err != nil {
		if _, statErr := os.Stat(filepath.Join("/sys/class/net", cfg.Bridge)); errors.Is(statErr, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("read the addresses of bridge %s: %w", cfg.Bridge, err)
	}
	have, err := ParseIPAddrJSON(out)
	if err != nil {
		return nil, fmt.Errorf("read the addresses of bridge %s: %w", cfg.Bridge, err)
	}
	gw := netip.PrefixFrom(pfx.Addr().Next(), pfx.Bits())
	del, add := BridgeRepair(have, gw)
	var done []string
	for _, a := range del {
		if b, err := exec.CommandContext(ctx, "ip", "addr", "del", a.String(), "dev", cfg.Bridge).CombinedOutput(); err != nil {
			return done, fmt.Errorf("remove %s from bridge %s: %s: %w", a, cfg.Bridge, strings.TrimSpace(string(b)), err)
		}
		done = append(done, "removed "+a.String()+" (not of pod subnet "+pfx.String()+")")
	}
	if add {
		if b, err := exec.CommandContext(ctx, "ip", "addr", "add", gw.String(), "dev", cfg.Bridge).CombinedOutput(); err != nil {
			return done, fmt.Errorf("add %s to bridge %s: %s: %w", gw, cfg.Bridge, strings.TrimSpace(string(b)), err)
		}
		done = append(done, "added gateway "+gw.String())
	}
	for _, d := range done {
		log.Warn("pod bridge repaired", "bridge", cfg.Bridge, "subnet", pfx.String(), "change", d)
	}
	return done, nil
}

// BridgeRepair returns the addresses to remove from a bridge holding have
// so that its IPv4 addresses are gw alone, and whether gw must be added.
func BridgeRepair(have []netip.Prefix, gw netip.Prefix) (del []netip.Prefix, add bool) {
	add = true
	for _, a := range have {
		if !a.Addr().Is4() {
			continue
		}
		if a == gw {
			add = false
			continue
		}
		del = append(del, a)
	}
	return del, add
}

// ParseIPAddrJSON reads the addresses of `ip -j addr show` (iproute2's
// JSON): every address of every interface listed.
func ParseIPAddrJSON(b []byte) ([]netip.Prefix, error) {
	links, err := ParseIPAddrJSONLinks(b)
	if err != nil {
		return nil, err
	}
	var out []netip.Prefix
	names := make([]string, 0, len(links))
	for name := range links {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		out = append(out, links[name]...)
	}
	return out, nil
}

// ParseIPAddrJSONLinks reads `ip -j addr show` by interface name.
func ParseIPAddrJSONLinks(b []byte) (map[string][]netip.Prefix, error) {
	var links []struct {
		IfName   string `json:"ifname"`
		AddrInfo []struct {
			Local     string `json:"local"`
			PrefixLen int    `json:"prefixlen"`
		} `json:"addr_info"`
	}
	if err := json.Unmarshal(b, &links); err != nil {
		return nil, fmt.Errorf("ip -j addr: %w", err)
	}
	out := map[string][]netip.Prefix{}
	for _, l := range links {
		for _, a := range l.AddrInfo {
			if a.Local == "" {
				continue // an entry of an address filtered out
			}
			ip, err := netip.ParseAddr(a.Local)
			if err != nil {
				return nil, fmt.Errorf("ip -j addr: address %q: %w", a.Local, err)
			}
			p := netip.PrefixFrom(ip, a.PrefixLen)
			if !p.IsValid() {
				return nil, fmt.Errorf("ip -j addr: prefix length %d of %s", a.PrefixLen, ip)
			}
			out[l.IfName] = append(out[l.IfName], p)
		}
	}
	return out, nil
}

func findPlugin(dirs []string, name string) (string, error) {
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	return "", fmt.Errorf("CNI plugin %q not found in %v: install Debian's containernetworking-plugins", name, dirs)
}

// Setup creates a network namespace for the pod and attaches it.
func (n *CNINetwork) Setup(ctx context.Context, podID string) (PodNetwork, error) {
	// An address still held under this pod's id (its previous incarnation
	// died with the peer before it could be released) would make the
	// allocation fail forever: release it first. DEL is idempotent.
	cni, cfg := n.plugin()
	_ = cni.Remove(ctx, podID, "")
	ns, err := netns.NewNetNS(n.netnsDir)
	if err != nil {
		return PodNetwork{}, fmt.Errorf("create network namespace: %w", err)
	}
	res, err := cni.Setup(ctx, podID, ns.GetPath())
	if err != nil {
		_ = cni.Remove(ctx, podID, ns.GetPath())
		_ = ns.Remove()
		return PodNetwork{}, fmt.Errorf("attach pod %s to bridge %s: %w", podID, cfg.Bridge, err)
	}
	nw := PodNetwork{NetNSPath: ns.GetPath()}
	if eth, ok := res.Interfaces["eth0"]; ok {
		for _, ipc := range eth.IPConfigs {
			if ipc.IP.To4() != nil {
				nw.IP = ipc.IP.String()
				break
			}
		}
	}
	if nw.IP == "" {
		_ = n.Teardown(ctx, podID, nw)
		return PodNetwork{}, fmt.Errorf("attach pod %s: CNI returned no IPv4 address", podID)
	}
	return nw, nil
}

// Teardown detaches the pod and removes its network namespace. Missing
// pieces are not errors.
func (n *CNINetwork) Teardown(ctx context.Context, podID string, nw PodNetwork) error {
	var errs []error
	cni, _ := n.plugin()
	if nw.NetNSPath != "" {
		if _, err := os.Stat(nw.NetNSPath); err == nil {
			if err := cni.Remove(ctx, podID, nw.NetNSPath); err != nil {
				errs = append(errs, fmt.Errorf("detach pod %s: %w", podID, err))
			}
			if err := netns.LoadNetNS(nw.NetNSPath).Remove(); err != nil {
				errs = append(errs, fmt.Errorf("remove network namespace: %w", err))
			}
		} else if err := cni.Remove(ctx, podID, ""); err != nil {
			errs = append(errs, fmt.Errorf("release address of pod %s: %w", podID, err))
		}
	}
	return errors.Join(errs...)
}

// NetNSPaths lists the network namespaces this network created, for
// garbage collection of leftovers.
func (n *CNINetwork) NetNSPaths() ([]string, error) {
	ents, err := os.ReadDir(n.netnsDir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		out = append(out, filepath.Join(n.netnsDir, e.Name()))
	}
	return out, nil
}
