// Package gossip is chorus's membership plane and data plane transport.
package gossip

import (
	_ "github.com/hashicorp/memberlist"
	_ "github.com/hashicorp/serf/serf"
	_ "github.com/libp2p/go-libp2p"
	_ "github.com/libp2p/go-libp2p-pubsub"
	_ "github.com/libp2p/go-libp2p/p2p/discovery/mdns"
	_ "github.com/libp2p/go-libp2p/p2p/security/noise"
	_ "github.com/libp2p/go-libp2p/p2p/transport/tcp"
)
