package placement

import (
	"cmp"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Node is a peer that replicas may be placed on.
type Node struct {
	Name     string
	Labels   map[string]string
	Cordoned bool  // unschedulable: gets no replica at all
	CPUMilli int64 // allocatable CPU in millicores (<= 0: unlimited)
	MemBytes int64 // allocatable memory in bytes (<= 0: unlimited)
}

// Replica is one desired pod replica.
type Replica struct {
	// Key identifies the replica, e.g. "default/web-5d8f9c7b6a-3". Keys are
	// unique; of several replicas with one key, one (chosen deterministically)
	// is placed and the others are ignored.
	Key string
	// Group is the deployment the replica belongs to, e.g. "default/web".
	// Replicas of one group are spread over distinct nodes when possible.
	// "" means the replica is in no group.
	Group string
	// NodeSelector lists node labels the node must carry, with those values.
	NodeSelector map[string]string
	// CPUMilli and MemBytes are the requests (<= 0: none).
	CPUMilli int64
	MemBytes int64
	// SpreadKey is an optional node label (a topology key such as "zone"):
	// replicas of the group are also spread over distinct values of it when
	// possible. A node without the label is a domain of its own.
	SpreadKey string
	// Pin, when not "", is the only node the replica may go to (DaemonSet
	// style). Pinned replicas still respect cordon, selector and capacity.
	Pin string
	// Affinity, when not "", replaces Key in the scores and in the order
	// replicas are placed in: replicas with one Affinity rank the nodes the
	// same way. The agent gives ordinal i of a deployment the same Affinity
	// whatever its template, so that a new template's pods go where the old
	// template's pods were.
	Affinity string
	// Ordinal is the replica's position in its Group (replica i of a
	// deployment: i). Replicas are placed in increasing Ordinal, so the
	// replicas a scale-up adds to a group are placed after those it keeps
	// and, without bound or capacity pressure, move none of them (see the
	// package documentation). Replicas in no group may leave it 0.
	Ordinal int
}

// DefaultLoadFactor is the load factor used when Options.LoadFactor is not
// positive.
const DefaultLoadFactor = 0.25

// Options tune Assign.
type Options struct {
	// LoadFactor is ε in the load bound B = ⌈(1+ε)·R/U⌉ (see the package
	// documentation). Zero, negative or NaN means DefaultLoadFactor; +Inf
	// means no bound.
	LoadFactor float64
}

// Result is a placement: every replica is in exactly one of the two maps.
type Result struct {
	Assign  map[string]string // replica key -> node name
	Pending map[string]string // replica key -> why it fits nowhere
}

// Assign places replicas on nodes. It is a pure function of its arguments'
// values: the order of nodes and replicas and the iteration order of the
// label maps do not matter. See the package documentation for the algorithm
// and its guarantees.
func Assign(nodes []Node, replicas []Replica, opts Options) Result {
	p := newPlanner(nodes, replicas, opts)
	for _, i := range p.order {
		p.place(&p.reps[i])
	}
	p.explain()
	return p.res
}

// Bound returns the load bound B that Assign enforces for these arguments:
// ⌈(1+ε)·R/U⌉, see the package documentation. It is 0 when no node is
// schedulable and math.MaxInt when there is no bound. It costs about as much
// as the preparation of an Assign (everything but the placing).
func Bound(nodes []Node, replicas []Replica, opts Options) int {
	return newPlanner(nodes, replicas, opts).bound
}

// rep is a replica, prepared.
type rep struct {
	key      string
	kh       uint64 // key hash: processing order and slot
	ord      int    // Ordinal: processing order
	rk       uint64 // score key
	slot     uint32
	cls      int32 // selector class
	group    int32 // -1: none
	skey     int32 // spread key, -1: none
	pin      int32 // node index; -1: not pinned; -2: pinned to an unknown node
	feasible int32 // nodes satisfying the static constraints (cordon, selector, pin)
	cpu, mem int64
}

// class is the set of schedulable nodes matching one node selector.
type class struct {
	nodes  []int32  // node indices, ascending
	hashes []uint64 // their name hashes
	member []uint64 // bitset over all node indices, for classes of 64+ nodes
	th     uint8    // level threshold of candidate lists
	cands  map[uint32]*candList
	nofit  [][2]int64 // minimal requests known to fit no node of the class
}

func (c *class) has(n int32) bool {
	if c.member == nil {
		_, ok := slices.BinarySearch(c.nodes, n)
		return ok
	}
	return c.member[n>>6]&(1<<(uint(n)&63)) != 0
}

// candList is, for one slot and class, every node of the class whose level is
// at least some threshold, sorted by level (descending) then node index.
// Every node of the class outside the list scores below every node in it.
type candList struct {
	nodes  []int32
	levels []uint8
	all    bool // the list holds the whole class
}

// group is the placement state of one group.
type group struct {
	nodes idSet     // distinct nodes holding a replica of the group
	doms  []domUsed // per spread key asked for: domains holding a replica
	cls   int32     // class of every replica placed so far; -2 none yet, -1 mixed
}

type domUsed struct {
	key int32
	set idSet
}

// idSet is a small set of int32: a list, plus a map once it grows.
type idSet struct {
	list []int32
	m    map[int32]struct{}
}

func (s *idSet) has(x int32) bool {
	if s.m != nil {
		_, ok := s.m[x]
		return ok
	}
	for _, y := range s.list {
		if y == x {
			return true
		}
	}
	return false
}

func (s *idSet) add(x int32) bool {
	if s.has(x) {
		return false
	}
	s.list = append(s.list, x)
	if s.m != nil {
		s.m[x] = struct{}{}
	} else if len(s.list) > 16 {
		s.m = make(map[int32]struct{}, 2*len(s.list))
		for _, y := range s.list {
			s.m[y] = struct{}{}
		}
	}
	return true
}

type planner struct {
	// Nodes, indexed in name order.
	names    []string
	hashes   []uint64
	labels   []map[string]string
	cordoned []bool
	cpuFree  []int64 // remaining CPU (math.MaxInt64 if unlimited)
	memFree  []int64
	cpuLim   []bool
	memLim   []bool
	load     []int
	openPos  []int32 // position in open, -1 if at the bound
	open     []int32 // schedulable nodes below the bound, in no order
	byName   map[string]int32
	labelIdx map[string]map[string][]int32 // label -> value -> schedulable nodes, ascending
	nCordon  int
	bound    int

	classes  []*class
	classIdx map[string]int32
	groups   []group
	skeys    []string
	domains  [][]int32 // per spread key, lazily: domain of every node
	domCount map[[2]int32]int

	reps    []rep
	order   []int32
	pending []*rep
	res     Result

	buf  []scored
	cbuf []int32
}

type scored struct {
	score uint64
	n     int32
}

func newPlanner(nodes []Node, replicas []Replica, opts Options) *planner {
	p := &planner{classIdx: map[string]int32{}, domCount: map[[2]int32]int{}}

	// Nodes in name order; of duplicate names the least by nodeCmp is kept.
	ns := slices.Clone(nodes)
	slices.SortFunc(ns, nodeCmp)
	ns = slices.CompactFunc(ns, func(a, b Node) bool { return a.Name == b.Name })
	nn := len(ns)
	p.names = make([]string, nn)
	p.hashes = make([]uint64, nn)
	p.labels = make([]map[string]string, nn)
	p.cordoned = make([]bool, nn)
	p.cpuFree = make([]int64, nn)
	p.memFree = make([]int64, nn)
	p.cpuLim = make([]bool, nn)
	p.memLim = make([]bool, nn)
	p.load = make([]int, nn)
	p.openPos = make([]int32, nn)
	p.byName = make(map[string]int32, nn)
	p.labelIdx = map[string]map[string][]int32{}
	for i, n := range ns {
		p.names[i] = n.Name
		p.hashes[i] = nodeHash(n.Name)
		p.labels[i] = n.Labels
		p.cordoned[i] = n.Cordoned
		p.cpuFree[i], p.cpuLim[i] = limit(n.CPUMilli)
		p.memFree[i], p.memLim[i] = limit(n.MemBytes)
		p.byName[n.Name] = int32(i)
		p.openPos[i] = -1
		if n.Cordoned {
			p.nCordon++
			continue
		}
		p.openPos[i] = int32(len(p.open))
		p.open = append(p.open, int32(i))
		for k, v := range n.Labels {
			if p.labelIdx[k] == nil {
				p.labelIdx[k] = map[string][]int32{}
			}
			p.labelIdx[k][v] = append(p.labelIdx[k][v], int32(i))
		}
	}

	// Replicas, prepared in input order.
	p.reps = make([]rep, len(replicas))
	groupIdx := map[string]int32{}
	skeyIdx := map[string]int32{}
	for i := range replicas {
		p.reps[i] = p.prepare(&replicas[i], groupIdx, skeyIdx)
	}
	p.groups = make([]group, len(groupIdx))
	for i := range p.groups {
		p.groups[i].cls = -2
	}
	p.domains = make([][]int32, len(p.skeys))

	// Sorted by key hash and key; of duplicate keys the least by replicaCmp
	// is kept.
	type ent struct {
		kh  uint64
		ord int
		i   int32
		f   int32
	}
	ents := make([]ent, len(p.reps))
	for i := range ents {
		ents[i] = ent{kh: p.reps[i].kh, ord: p.reps[i].ord, i: int32(i)}
	}
	slices.SortFunc(ents, func(a, b ent) int {
		if a.kh != b.kh {
			return cmp.Compare(a.kh, b.kh)
		}
		return replicaCmp(&replicas[a.i], &replicas[b.i])
	})
	ents = slices.CompactFunc(ents, func(a, b ent) bool { return a.kh == b.kh && p.reps[a.i].key == p.reps[b.i].key })

	// Static feasibility, R and the bound.
	placeable := 0
	for k := range ents {
		r := &p.reps[ents[k].i]
		c := p.classes[r.cls]
		switch {
		case r.pin == -1:
			r.feasible = int32(len(c.nodes))
		case r.pin >= 0 && c.has(r.pin):
			r.feasible = 1
		}
		if r.feasible > 0 {
			placeable++
		}
		ents[k].f = r.feasible
	}
	p.bound = loadBound(opts.LoadFactor, placeable, nn-p.nCordon)

	// Processing order: most constrained first (fewest statically feasible
	// nodes), then by ordinal, then by key hash and key (unique now).
	slices.SortFunc(ents, func(a, b ent) int {
		switch {
		case a.f != b.f:
			return cmp.Compare(a.f, b.f)
		case a.ord != b.ord:
			return cmp.Compare(a.ord, b.ord)
		case a.kh != b.kh:
			return cmp.Compare(a.kh, b.kh)
		}
		return strings.Compare(p.reps[a.i].key, p.reps[b.i].key)
	})
	p.order = make([]int32, len(ents))
	for k, e := range ents {
		p.order[k] = e.i
	}

	p.res = Result{
		Assign:  make(map[string]string, len(p.reps)),
		Pending: map[string]string{},
	}
	return p
}

// limit turns an allocatable amount into (free, limited).
func limit(v int64) (int64, bool) {
	if v <= 0 {
		return math.MaxInt64, false
	}
	return v, true
}

// loadBound is B = ⌈(1+ε)·R/U⌉, computed in IEEE-754 double precision
// exactly as written (each operation rounded, no fused operations).
func loadBound(e float64, r, u int) int {
	if u <= 0 {
		return 0
	}
	if !(e > 0) {
		e = DefaultLoadFactor
	}
	if math.IsInf(e, 1) {
		return math.MaxInt
	}
	x := float64(1 + e)
	x = float64(x * float64(r))
	x = float64(x / float64(u))
	x = math.Ceil(x)
	if x >= 1<<53 {
		return math.MaxInt
	}
	return max(int(x), 1)
}

func (p *planner) prepare(r *Replica, groupIdx, skeyIdx map[string]int32) rep {
	x := rep{key: r.Key, ord: r.Ordinal, group: -1, skey: -1, pin: -1, cpu: max(r.CPUMilli, 0), mem: max(r.MemBytes, 0)}
	hk := r.Key
	if r.Affinity != "" {
		hk = r.Affinity
	}
	x.kh, x.slot, x.rk = keyHashes(hk)
	x.cls = p.classOf(r.NodeSelector)
	if r.Group != "" {
		g, ok := groupIdx[r.Group]
		if !ok {
			g = int32(len(groupIdx))
			groupIdx[r.Group] = g
		}
		x.group = g
		if r.SpreadKey != "" {
			k, ok := skeyIdx[r.SpreadKey]
			if !ok {
				k = int32(len(p.skeys))
				skeyIdx[r.SpreadKey] = k
				p.skeys = append(p.skeys, r.SpreadKey)
			}
			x.skey = k
		}
	}
	if r.Pin != "" {
		x.pin = -2
		if n, ok := p.byName[r.Pin]; ok {
			x.pin = n
		}
	}
	return x
}

// classOf returns the class of a node selector, creating it if needed.
func (p *planner) classOf(sel map[string]string) int32 {
	key := ""
	if len(sel) > 0 {
		key = selectorString(sel)
	}
	if c, ok := p.classIdx[key]; ok {
		return c
	}
	c := &class{}
	add := func(i int32) {
		c.nodes = append(c.nodes, i)
		c.hashes = append(c.hashes, p.hashes[i])
	}
	if len(sel) == 0 {
		for i := range p.names {
			if !p.cordoned[i] {
				add(int32(i))
			}
		}
	} else {
		// Walk the nodes carrying the rarest of the selector's labels.
		var short []int32
		first := true
		for k, v := range sel {
			l := p.labelIdx[k][v]
			if first || len(l) < len(short) {
				short, first = l, false
			}
		}
		for _, i := range short {
			if matches(p.labels[i], sel) {
				add(i)
			}
		}
	}
	if len(c.nodes) >= 64 {
		c.member = make([]uint64, (len(p.names)+63)/64)
		for _, i := range c.nodes {
			c.member[i>>6] |= 1 << (uint(i) & 63)
		}
	}
	// About 1.5*minCands of the class's nodes have a level >= th.
	if want := 3 * minCands / 2; len(c.nodes) > want {
		c.th = uint8(256 - (256*want+len(c.nodes)-1)/len(c.nodes))
	}
	id := int32(len(p.classes))
	p.classes = append(p.classes, c)
	p.classIdx[key] = id
	return id
}

func matches(labels, sel map[string]string) bool {
	for k, v := range sel {
		if w, ok := labels[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// selectorString is a canonical, injective encoding of a label map.
func selectorString(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(strconv.Quote(k))
		b.WriteByte('=')
		b.WriteString(strconv.Quote(m[k]))
		b.WriteByte(',')
	}
	return b.String()
}

// nodeCmp orders nodes by name, then (for duplicate names) by every field.
func nodeCmp(a, b Node) int {
	if c := strings.Compare(a.Name, b.Name); c != 0 {
		return c
	}
	return cmp.Or(
		boolCmp(a.Cordoned, b.Cordoned),
		cmp.Compare(a.CPUMilli, b.CPUMilli),
		cmp.Compare(a.MemBytes, b.MemBytes),
		strings.Compare(selectorString(a.Labels), selectorString(b.Labels)),
	)
}

// replicaCmp orders replicas by key, then (for duplicate keys) by every
// field.
func replicaCmp(a, b *Replica) int {
	if c := strings.Compare(a.Key, b.Key); c != 0 {
		return c
	}
	return cmp.Or(
		strings.Compare(a.Group, b.Group),
		cmp.Compare(a.Ordinal, b.Ordinal),
		strings.Compare(a.Pin, b.Pin),
		strings.Compare(a.Affinity, b.Affinity),
		strings.Compare(a.SpreadKey, b.SpreadKey),
		cmp.Compare(a.CPUMilli, b.CPUMilli),
		cmp.Compare(a.MemBytes, b.MemBytes),
		strings.Compare(selectorString(a.NodeSelector), selectorString(b.NodeSelector)),
	)
}

func boolCmp(a, b bool) int {
	switch {
	case a == b:
		return 0
	case !a:
		return -1
	}
	return 1
}

// place decides one replica.
func (p *planner) place(r *rep) {
	n := int32(-1)
	switch {
	case r.feasible == 0:
	case r.pin >= 0:
		if p.fits(r.pin, r) {
			n = r.pin // below the bound or not: it is the only feasible node
		}
	default:
		c := p.classes[r.cls]
		if c.noFit(r) {
			break
		}
		wantNode, wantDom := p.spreadWanted(r)
		n = p.search(r, c, wantNode, wantDom)
		if n < 0 {
			n = p.overflow(r, c)
		}
		if n < 0 {
			c.addNoFit(r)
		}
	}
	if n < 0 {
		p.pending = append(p.pending, r)
		return
	}
	p.commit(r, n)
}

// noFit reports whether requests at least r's are known to fit no node of
// the class. Free capacity only decreases during a placement, so once some
// requests fit nowhere they never will again.
func (c *class) noFit(r *rep) bool {
	for _, s := range c.nofit {
		if r.cpu >= s[0] && r.mem >= s[1] {
			return true
		}
	}
	return false
}

// addNoFit records that r's requests fit no node of the class, keeping only
// the minimal requests known not to fit.
func (c *class) addNoFit(r *rep) {
	c.nofit = slices.DeleteFunc(c.nofit, func(s [2]int64) bool { return s[0] >= r.cpu && s[1] >= r.mem })
	c.nofit = append(c.nofit, [2]int64{r.cpu, r.mem})
}

func (p *planner) fits(n int32, r *rep) bool {
	return r.cpu <= p.cpuFree[n] && r.mem <= p.memFree[n]
}

// usable reports whether a node of the replica's class may take it without
// relaxing anything: it fits and is below the bound.
func (p *planner) usable(n int32, r *rep) bool {
	return p.openPos[n] >= 0 && r.cpu <= p.cpuFree[n] && r.mem <= p.memFree[n]
}

// spreadWanted tells which spread constraints can still be met at all; when
// the group already covers every node (or every domain) of the class, the
// corresponding tier is skipped instead of searched for in vain.
func (p *planner) spreadWanted(r *rep) (wantNode, wantDom bool) {
	if r.group < 0 {
		return false, false
	}
	g := &p.groups[r.group]
	if g.cls != r.cls { // group nodes may lie outside the class: no shortcut
		return true, r.skey >= 0
	}
	if len(g.nodes.list) >= len(p.classes[r.cls].nodes) {
		return false, false
	}
	if r.skey < 0 {
		return true, false
	}
	return true, len(p.domSet(g, r.skey).list) < p.classDomains(r.cls, r.skey)
}

// tier ranks a node for a replica: 1 spread fully respected, 2 only the node
// spread respected, 3 the group already has a replica there.
func (p *planner) tier(r *rep, n int32, wantNode, wantDom bool) int {
	if !wantNode {
		return 1
	}
	g := &p.groups[r.group]
	if g.nodes.has(n) {
		return 3
	}
	if wantDom && p.domSet(g, r.skey).has(p.domainOf(r.skey, n)) {
		return 2
	}
	return 1
}

// search returns the best-scoring usable node of the best non-empty tier, or
// -1 if no node of the class is usable.
func (p *planner) search(r *rep, c *class, wantNode, wantDom bool) int32 {
	cl := p.candidates(c, r.slot)
	best2, best3 := int32(-1), int32(-1)
	nodes, levels := cl.nodes, cl.levels
	for i := 0; i < len(nodes); {
		lv := levels[i]
		buf := p.buf[:0]
		for ; i < len(nodes) && levels[i] == lv; i++ {
			if n := nodes[i]; p.usable(n, r) {
				buf = append(buf, scored{rscore(r.rk, p.hashes[n]), n})
			}
		}
		p.buf = buf
		if len(buf) == 0 {
			continue
		}
		// Usually the first node is the answer: find it without sorting.
		top := 0
		for j := 1; j < len(buf); j++ {
			if scoredLess(buf[top], buf[j]) {
				top = j
			}
		}
		if p.tier(r, buf[top].n, wantNode, wantDom) == 1 {
			return buf[top].n
		}
		slices.SortFunc(buf, func(a, b scored) int {
			if scoredLess(b, a) {
				return -1
			}
			return 1
		})
		for _, x := range buf {
			switch p.tier(r, x.n, wantNode, wantDom) {
			case 1:
				return x.n
			case 2:
				if best2 < 0 {
					best2 = x.n
				}
			default:
				if best3 < 0 {
					best3 = x.n
				}
			}
		}
	}
	if !cl.all {
		return p.scan(r, c, wantNode, wantDom)
	}
	if best2 >= 0 {
		return best2
	}
	return best3
}

// scoredLess orders nodes of one level: by fine score, then by index
// (names are sorted, so index order is name order).
func scoredLess(a, b scored) bool {
	return a.score < b.score || a.score == b.score && a.n > b.n
}

// full is a node's whole score for a replica.
type full struct {
	lv uint8
	sc uint64
	n  int32
}

func (a full) less(b full) bool {
	if a.lv != b.lv {
		return a.lv < b.lv
	}
	if a.sc != b.sc {
		return a.sc < b.sc
	}
	return a.n > b.n
}

// scan is search over the whole class, for when the candidate list has no
// node of the first tier: the argmax, per tier, over every usable node.
func (p *planner) scan(r *rep, c *class, wantNode, wantDom bool) int32 {
	sk := slotKey(r.slot)
	var best [3]full
	for t := range best {
		best[t].n = -1
	}
	visit := func(n int32) {
		if !p.usable(n, r) {
			return
		}
		t := p.tier(r, n, wantNode, wantDom) - 1
		h := p.hashes[n]
		f := full{levelOf(sk, h), rscore(r.rk, h), n}
		if best[t].n < 0 || best[t].less(f) {
			best[t] = f
		}
	}
	if len(c.nodes) <= len(p.open) {
		for _, n := range c.nodes {
			visit(n)
		}
	} else {
		for _, n := range p.open {
			if c.has(n) {
				visit(n)
			}
		}
	}
	for _, b := range best {
		if b.n >= 0 {
			return b.n
		}
	}
	return -1
}

// overflow is the last resort once every node of the class that fits the
// replica is at the bound: the least loaded of them, best score first.
func (p *planner) overflow(r *rep, c *class) int32 {
	sk := slotKey(r.slot)
	best, bestLoad := full{n: -1}, 0
	for _, n := range c.nodes {
		if !p.fits(n, r) {
			continue
		}
		h := p.hashes[n]
		f := full{levelOf(sk, h), rscore(r.rk, h), n}
		if best.n < 0 || p.load[n] < bestLoad || p.load[n] == bestLoad && best.less(f) {
			best, bestLoad = f, p.load[n]
		}
	}
	return best.n
}

// candidates returns (computing it on first use) the candidate list of a
// slot in a class: every node of the class whose level is at least a
// threshold, with at least minCands nodes unless the class is smaller.
// Levels are uniform, so the class's threshold c.th lets about 1.5*minCands
// nodes in; in the rare case that lets in fewer than minCands, the
// threshold is lowered until enough are in.
func (p *planner) candidates(c *class, slot uint32) *candList {
	if cl, ok := c.cands[slot]; ok {
		return cl
	}
	if c.cands == nil {
		c.cands = map[uint32]*candList{}
	}
	sk := slotKey(slot)
	th := c.th
	var hist [256]int32
	var buf []int32
	for {
		buf = p.cbuf[:0]
		for i, h := range c.hashes {
			if l := levelOf(sk, h); l >= th {
				buf = append(buf, int32(i))
				hist[l]++
			}
		}
		p.cbuf = buf
		if len(buf) >= minCands || th == 0 {
			break
		}
		th = uint8(max(int(th)-8, 0))
		hist = [256]int32{}
	}
	// Counting sort by level, descending; node order within a level.
	var start [256]int32
	pos := int32(0)
	for l := 255; l >= int(th); l-- {
		start[l] = pos
		pos += hist[l]
	}
	cl := &candList{nodes: make([]int32, len(buf)), levels: make([]uint8, len(buf)), all: len(buf) == len(c.nodes)}
	for _, i := range buf {
		l := levelOf(sk, c.hashes[i])
		k := start[l]
		start[l]++
		cl.nodes[k] = c.nodes[i]
		cl.levels[k] = l
	}
	c.cands[slot] = cl
	return cl
}

// commit places r on n.
func (p *planner) commit(r *rep, n int32) {
	p.load[n]++
	if p.cpuLim[n] {
		p.cpuFree[n] -= r.cpu
	}
	if p.memLim[n] {
		p.memFree[n] -= r.mem
	}
	if p.load[n] >= p.bound && p.openPos[n] >= 0 {
		i := p.openPos[n]
		last := p.open[len(p.open)-1]
		p.open[i] = last
		p.openPos[last] = i
		p.open = p.open[:len(p.open)-1]
		p.openPos[n] = -1
	}
	p.res.Assign[r.key] = p.names[n]
	if r.group < 0 {
		return
	}
	g := &p.groups[r.group]
	switch g.cls {
	case -2:
		g.cls = r.cls
	case r.cls, -1:
	default:
		g.cls = -1
	}
	if g.nodes.add(n) {
		for i := range g.doms {
			d := &g.doms[i]
			d.set.add(p.domainOf(d.key, n))
		}
	}
}

// domainOf is the spread domain of node n for spread key k: an id of the
// label value, or, for a node without the label, an id of its own.
func (p *planner) domainOf(k int32, n int32) int32 {
	if p.domains[k] == nil {
		d := make([]int32, len(p.names))
		vals := map[string]int32{}
		key := p.skeys[k]
		for i, l := range p.labels {
			v, ok := l[key]
			if !ok {
				d[i] = -1 - int32(i)
				continue
			}
			id, ok := vals[v]
			if !ok {
				id = int32(len(vals))
				vals[v] = id
			}
			d[i] = id
		}
		p.domains[k] = d
	}
	return p.domains[k][n]
}

// domSet returns the domains of spread key k holding a replica of g.
func (p *planner) domSet(g *group, k int32) *idSet {
	for i := range g.doms {
		if g.doms[i].key == k {
			return &g.doms[i].set
		}
	}
	d := domUsed{key: k}
	for _, n := range g.nodes.list {
		d.set.add(p.domainOf(k, n))
	}
	g.doms = append(g.doms, d)
	return &g.doms[len(g.doms)-1].set
}

// classDomains is the number of distinct domains of spread key k in a class.
func (p *planner) classDomains(cls, k int32) int {
	if v, ok := p.domCount[[2]int32{cls, k}]; ok {
		return v
	}
	var s idSet
	for _, n := range p.classes[cls].nodes {
		s.add(p.domainOf(k, n))
	}
	p.domCount[[2]int32{cls, k}] = len(s.list)
	return len(s.list)
}

// Reasons a node is not available, worded as kube-scheduler does.
const (
	whyPin      = "node(s) didn't match pinned node name"
	whyCordon   = "node(s) were unschedulable"
	whySelector = "node(s) didn't match node selector"
	whyCPU      = "Insufficient cpu"
	whyMem      = "Insufficient memory"
)

// explain gives every pending replica its reason, from the final state.
func (p *planner) explain() {
	type shape struct {
		cls, pin int32
		cpu, mem int64
	}
	cache := map[shape]string{}
	for _, r := range p.pending {
		k := shape{r.cls, r.pin, r.cpu, r.mem}
		why, ok := cache[k]
		if !ok {
			why = p.reason(r)
			cache[k] = why
		}
		p.res.Pending[r.key] = why
	}
}

// reason explains why a replica fits no node: per node the first failing
// check among pin, cordon, selector, resources (both resources are reported
// when both are short).
func (p *planner) reason(r *rep) string {
	total := len(p.names)
	if total == 0 {
		return "no nodes available to schedule pods"
	}
	var pin, cordon, selector, cpu, mem int
	resources := func(n int32) {
		if r.cpu > p.cpuFree[n] {
			cpu++
		}
		if r.mem > p.memFree[n] {
			mem++
		}
	}
	c := p.classes[r.cls]
	switch {
	case r.pin == -2:
		pin = total
	case r.pin >= 0:
		pin = total - 1
		switch {
		case p.cordoned[r.pin]:
			cordon++
		case !c.has(r.pin):
			selector++
		default:
			resources(r.pin)
		}
	default:
		cordon = p.nCordon
		selector = total - p.nCordon - len(c.nodes)
		for _, n := range c.nodes {
			resources(n)
		}
	}
	counts := map[string]int{whyPin: pin, whyCordon: cordon, whySelector: selector, whyCPU: cpu, whyMem: mem}
	type item struct {
		why string
		n   int
	}
	var items []item
	for why, n := range counts {
		if n > 0 {
			items = append(items, item{why, n})
		}
	}
	slices.SortFunc(items, func(a, b item) int {
		return cmp.Or(cmp.Compare(b.n, a.n), strings.Compare(a.why, b.why))
	})
	var b strings.Builder
	b.WriteString("0/")
	b.WriteString(strconv.Itoa(total))
	b.WriteString(" nodes are available: ")
	for i, it := range items {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Itoa(it.n))
		b.WriteByte(' ')
		b.WriteString(it.why)
	}
	return b.String()
}
