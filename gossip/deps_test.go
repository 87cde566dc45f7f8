package gossip

import _ "go.uber.org/goleak"
