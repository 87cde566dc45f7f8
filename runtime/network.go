package runtime

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/containerd/containerd/v2/pkg/netns"
	gocni "github.com/containerd/go-cni"
)

// NetworkConfig describes a peer's pod network: one Linux bridge with a
// subnet of its own, through Debian's CNI plugins.
type NetworkConfig struct {
	Name       string   // CNI network name, unique per peer on a machine
	Bridge     string   // bridge device name (at most 15 characters)
	Subnet     string   // pod subnet, e.g. 10.88.11.0/24
	Cluster    string   // every pod subnet of the cluster (default 10.88.0.0/16): reached without masquerade
	PluginDirs []string // where the CNI plugin binaries are (default /usr/lib/cni, /opt/cni/bin)
	StateDir   string   // IPAM state and network namespaces live under here
}

// DefaultClusterCIDR holds every peer's pod subnet unless told otherwise.
const DefaultClusterCIDR = "10.88.0.0/16"

// DefaultCNIPluginDirs are searched for the CNI plugins.
var defaultCNIPluginDirs = []string{"/usr/lib/cni", "/opt/cni/bin"}

// CNINetwork attaches pod network namespaces to the peer's bridge.
type CNINetwork struct {
	cfg      NetworkConfig
	cni      gocni.CNI
	netnsDir string
}

// NewCNINetwork checks the configuration and the plugins and prepares the
// network; the bridge itself is created by the plugin on first use.
func NewCNINetwork(cfg NetworkConfig) (*CNINetwork, error) {
	if len(cfg.Bridge) == 0 || len(cfg.Bridge) > 15 {
		return nil, fmt.Errorf("bridge name %q: must be 1 to 15 characters", cfg.Bridge)
	}
	pfx, err := netip.ParsePrefix(cfg.Subnet)
	if err != nil || !pfx.Addr().Is4() || pfx.Bits() > 28 {
		return nil, fmt.Errorf("pod subnet %q: want an IPv4 CIDR of /28 or larger", cfg.Subnet)
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
	conf := map[string]any{
		"cniVersion": "1.0.0",
		"name":       cfg.Name,
		"plugins": []any{
			map[string]any{
				"type":        "bridge",
				"bridge":      cfg.Bridge,
				"isGateway":   true,
				"ipMasq":      false, // ensureMasquerade's table instead
				"hairpinMode": true,
				"ipam": map[string]any{
					"type":    "host-local",
					"dataDir": ipamDir,
					"ranges":  [][]map[string]string{{{"subnet": pfx.Masked().String()}}},
					"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
				},
			},
		},
	}
	b, err := json.Marshal(conf)
	if err != nil {
		return nil, err
	}
	cluster, err := netip.ParsePrefix(cmp.Or(cfg.Cluster, DefaultClusterCIDR))
	if err != nil {
		return nil, fmt.Errorf("cluster pod network %q: %w", cfg.Cluster, err)
	}
	if err := ensureMasquerade(cfg.Bridge, pfx, cluster); err != nil {
		return nil, err
	}
	c, err := gocni.New(gocni.WithPluginDir(cfg.PluginDirs), gocni.WithPluginConfDir(""),
		gocni.WithConfListBytes(b), gocni.WithLoNetwork)
	if err != nil {
		return nil, fmt.Errorf("load CNI configuration: %w", err)
	}
	return &CNINetwork{cfg: cfg, cni: c, netnsDir: netnsDir}, nil
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
	_ = n.cni.Remove(ctx, podID, "")
	ns, err := netns.NewNetNS(n.netnsDir)
	if err != nil {
		return PodNetwork{}, fmt.Errorf("create network namespace: %w", err)
	}
	res, err := n.cni.Setup(ctx, podID, ns.GetPath())
	if err != nil {
		_ = n.cni.Remove(ctx, podID, ns.GetPath())
		_ = ns.Remove()
		return PodNetwork{}, fmt.Errorf("attach pod %s to bridge %s: %w", podID, n.cfg.Bridge, err)
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
	if nw.NetNSPath != "" {
		if _, err := os.Stat(nw.NetNSPath); err == nil {
			if err := n.cni.Remove(ctx, podID, nw.NetNSPath); err != nil {
				errs = append(errs, fmt.Errorf("detach pod %s: %w", podID, err))
			}
			if err := netns.LoadNetNS(nw.NetNSPath).Remove(); err != nil {
				errs = append(errs, fmt.Errorf("remove network namespace: %w", err))
			}
		} else if err := n.cni.Remove(ctx, podID, ""); err != nil {
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
