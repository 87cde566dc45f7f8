package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/runtime"
)

// The chorus.sh/v1 group (api/chorusv1.go): images, peers and their
// resource usage, served by the API server as live resources (computed at
// each request, never watched). What is gathered from every peer (peers'
// figures, usage) is asked of each other alive peer at the same path as
// this peer (askPeers): a request another peer forwarded is answered with
// this peer's own objects only.

var (
	grImages = schema.GroupResource{Group: api.GroupChorus, Resource: "images"}
	grPeers  = schema.GroupResource{Group: api.GroupChorus, Resource: "peers"}

	grSecretRotations = schema.GroupResource{Group: api.GroupChorus, Resource: "secretrotations"}
)

// forwardedKey marks the context of a request another peer passed on.
type forwardedKey struct{}

// markForwarded puts in the request's context whether another peer passed
// it on (header X-Chorus-Forwarded-By), for code that sees only the
// context (the Kubernetes API's backend).
func markForwarded(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(headerForwarded) != "" {
			r = r.WithContext(context.WithValue(r.Context(), forwardedKey{}, true))
		}
		h.ServeHTTP(w, r)
	})
}

// forwarded reports whether ctx is that of a request another peer passed on.
func forwarded(ctx context.Context) bool {
	v, _ := ctx.Value(forwardedKey{}).(bool)
	return v
}

// errNotJoined answers a request about images before the peer has joined.
func errNotJoined() error {
	return apierrors.NewServiceUnavailable("the peer has not joined its cluster yet")
}

// imageObjects lists the images of the cluster at their current content:
// those this peer holds and those only others hold, with how many alive
// peers hold that content.
func (a *Agent) imageObjects(ctx context.Context) ([]api.Image, error) {
	if a.images == nil {
		return nil, errNotJoined()
	}
	imgs, err := a.images.store.Images(ctx)
	if err != nil {
		return nil, err
	}
	inv := a.images.inventory()
	items := []api.Image{}
	seen := map[string]bool{}
	for _, i := range imgs {
		if strings.HasPrefix(i.Name, "sha256:") {
			continue
		}
		seen[i.Name] = true
		e, ok := inv[i.Name]
		local := entryOf(i)
		switch {
		case !ok || newer(local, e.imageEntry):
			// Here only, or loaded here and not yet published.
			e.imageEntry, e.Peers = local, 1
		case e.Digest == local.Digest && !a.published(i):
			e.Peers++
		}
		items = append(items, api.NewImage(e.Name, e.Digest, e.Size, e.Unpacked, int32(e.Peers)))
	}
	for name, e := range inv {
		if !seen[name] {
			items = append(items, api.NewImage(name, e.Digest, e.Size, e.Unpacked, int32(e.Peers)))
		}
	}
	sort.Slice(items, func(i, j int) bool { return items[i].Name < items[j].Name })
	return items, nil
}

// published reports whether this peer's inventory already lists img as it is.
func (a *Agent) published(img runtime.Image) bool {
	raw, ok := a.store.RawFields(nodeImagesKey(a.cfg.Name))["spec."+img.Name]
	var e imageEntry
	return ok && json.Unmarshal(raw, &e) == nil && e.Digest == img.Digest
}

// imageObject is an image of this peer's store as an Image object.
func imageObject(img runtime.Image, removedFrom string) api.Image {
	o := api.NewImage(img.Name, img.Digest, img.Size, img.Unpacked, 0)
	o.RemovedFrom = removedFrom
	return o
}

// serveImageLoad loads the image archive (OCI or docker) of the request's
// body: POST /apis/chorus.sh/v1/images. It answers 201 with the list of
// the images loaded.
func (a *Agent) serveImageLoad(w http.ResponseWriter, r *http.Request) {
	if a.images == nil {
		writeError(w, errNotJoined())
		return
	}
	pr := &progressReader{r: bufio.NewReaderSize(r.Body, 1<<20)}
	start := time.Now()
	imgs, err := a.images.store.LoadImages(r.Context(), pr, a.images.loadVersion())
	if errors.Is(err, runtime.ErrImageTooLarge) {
		a.log.Warn("image load refused", "err", err, "bytes", pr.n)
		writeStatus(w, http.StatusRequestEntityTooLarge, string(metav1.StatusReasonRequestEntityTooLarge), withLimitFlag(err).Error())
		return
	}
	if err != nil {
		writeError(w, apierrors.NewBadRequest(fmt.Sprintf("image load: %v (want an OCI or docker archive, as 'docker save' writes)", err)))
		return
	}
	l := api.ImageList{TypeMeta: metav1.TypeMeta{APIVersion: api.APIVersionChorus, Kind: "ImageList"}, Items: []api.Image{}}
	for _, img := range imgs {
		a.images.used(img.Name)
		a.log.Info("image loaded", "image", img.Name, "digest", img.Digest, "bytes", pr.n, "unpacked", img.Unpacked, "took", time.Since(start).Round(time.Millisecond))
		l.Items = append(l.Items, imageObject(img, ""))
	}
	a.images.published()
	writeJSON(w, http.StatusCreated, l)
}

// removeImage removes one image from this peer: DELETE
// /apis/chorus.sh/v1/images/NAME, ?force=true to remove it while pods here
// use it. It answers the image removed.
func (a *Agent) removeImage(ctx context.Context, objName string, force bool) (api.Image, error) {
	if a.images == nil {
		return api.Image{}, errNotJoined()
	}
	name, err := runtime.NormalizeImage(api.ImageReference(objName))
	if err != nil {
		return api.Image{}, apierrors.NewBadRequest(err.Error())
	}
	if pod, ok := a.podImages()[name]; ok && !force {
		return api.Image{}, apierrors.NewConflict(grImages, objName, fmt.Errorf("image %s is used by pod %s on peer %s: remove the pod first, or use --force (the pod runs on, and fetches the image again when it next starts a container)", name, pod, a.cfg.Name))
	}
	img, err := a.images.store.LocalImage(ctx, name)
	if err == nil {
		err = a.images.store.RemoveImage(ctx, name)
	}
	if errdefs.IsNotFound(err) {
		return api.Image{}, &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure, Code: http.StatusNotFound,
			Reason: metav1.StatusReasonNotFound, Message: fmt.Sprintf("image %s is not on peer %s", name, a.cfg.Name),
			Details: &metav1.StatusDetails{Name: objName, Group: grImages.Group, Kind: grImages.Resource}}}
	}
	if err != nil {
		return api.Image{}, err
	}
	a.log.Info("image removed", "image", name, "digest", img.Digest, "forced", force)
	a.images.published()
	return imageObject(img, a.cfg.Name), nil
}

// pruneImages removes the images no pod on this peer uses that another
// alive peer holds with the same content: DELETE /apis/chorus.sh/v1/images;
// with ?all=true every image no pod here uses. It answers those removed.
func (a *Agent) pruneImages(ctx context.Context, all bool) ([]api.Image, error) {
	if a.images == nil {
		return nil, errNotJoined()
	}
	imgs, err := a.images.store.Images(ctx)
	if err != nil {
		return nil, err
	}
	removed, err := a.images.remove(ctx, imgs, time.Now(), 0, all)
	out := make([]api.Image, 0, len(removed))
	for _, img := range removed {
		out = append(out, imageObject(img, a.cfg.Name))
	}
	return out, err
}

// replication is this peer's replication and gossip figures.
func (a *Agent) replication() *api.PeerReplication {
	gs := a.gossip.Stats()
	merged, rejected := a.store.Deltas()
	return &api.PeerReplication{
		Objects:           int32(len(a.store.List(api.KindDeployment, "")) + len(a.store.List(api.KindService, "")) + len(a.store.List(api.KindNamespace, ""))),
		DeltasMerged:      merged,
		DeltasRejected:    rejected,
		MalformedMessages: a.repl.malformed.Load(),
		AntiEntropyRounds: a.repl.rounds.Load(),
		BytesOut:          a.repl.bytesOut.Load(),
		BytesIn:           a.repl.bytesIn.Load(),
		GossipRejected:    gs.GossipRejected,
		PubsubRejected:    gs.PubsubRejected,
		StreamsRejected:   gs.StreamsRejected,
		DeltasDropped:     gs.DeltasDropped,
		EventsDropped:     gs.EventsDropped,
		InvalidObjects:    a.store.Invalid(),
		StateFileSetAside: a.store.SetAside(),
		PendingReplicas:   int32(a.sched.pendingCount()),
	}
}

// peersTimeout bounds how long a listing of peers waits for each other
// peer's figures.
const peersTimeout = 2 * time.Second

// peerObjects returns the members as Peers, sorted by name: this one with
// its figures and, unless onlySelf, every other with the figures it
// answers within peersTimeout (none when it does not).
func (a *Agent) peerObjects(ctx context.Context, onlySelf bool) []api.Peer {
	figures := map[string]*api.PeerReplication{a.cfg.Name: a.replication()}
	if !onlySelf {
		askPeersOwn(a, ctx, api.PathChorusV1+"/peers", nil, peersTimeout, func(peer string, p api.Peer) {
			figures[peer] = p.Status.Replication
		})
	}
	apiAddrs := map[string]string{}
	for _, m := range a.gossip.Members() {
		apiAddrs[m.Name] = m.Tags[tagAPI]
	}
	var out []api.Peer
	for _, n := range a.nodes() {
		if onlySelf && n.Metadata.Name != a.cfg.Name {
			continue
		}
		p := api.Peer{TypeMeta: metav1.TypeMeta{APIVersion: api.APIVersionChorus, Kind: api.KindPeer},
			ObjectMeta: metav1.ObjectMeta{Name: n.Metadata.Name, Labels: nodeLabels(n), UID: types.UID(uidFrom("peer0000", n.Metadata.Name))},
			Spec:       api.PeerSpec{Unschedulable: n.Spec.Unschedulable},
			Status: api.PeerStatus{Phase: n.Status.Phase, Serving: n.Metadata.Name == a.cfg.Name, Version: n.Status.NodeInfo["kubeletVersion"],
				API: apiAddrs[n.Metadata.Name], Pods: int32(n.Status.PodCount), Replication: figures[n.Metadata.Name]}}
		if t := n.Metadata.CreationTimestamp; t != nil {
			p.CreationTimestamp = metav1.NewTime(*t)
		}
		for _, ad := range n.Status.Addresses {
			p.Status.Addresses = append(p.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeAddressType(ad.Type), Address: ad.Address})
		}
		out = append(out, p)
	}
	return out
}

// servePeerLeave serves POST /apis/chorus.sh/v1/peers/NAME/leave: the peer
// NAME stops its pods, tells the others it is leaving (status Left, not
// Dead) and exits. A request for another peer is passed to it.
func (a *Agent) servePeerLeave(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		writeError(w, apierrors.NewMethodNotSupported(schema.GroupResource{Group: api.GroupChorus, Resource: "peers/leave"}, r.Method))
		return
	}
	name := r.PathValue("name")
	if name != a.cfg.Name {
		addr, ok := a.memberTag(name, tagAPI)
		if !ok || r.Header.Get(headerForwarded) != "" {
			writeError(w, apierrors.NewConflict(grPeers, name, fmt.Errorf("peer %s is not alive", name)))
			return
		}
		a.forwardTo(w, r, name, addr, "peer "+name)
		return
	}
	a.log.Info("leaving the cluster")
	a.leaving.Store(true)
	a.pods.Sync(nil)
	deadline := time.Now().Add(60 * time.Second)
	for a.pods.PodCount() > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	self := a.peerObjects(r.Context(), true)
	if err := a.gossip.Leave(); err != nil {
		writeError(w, err)
		return
	}
	if len(self) == 1 {
		self[0].Status.Phase = api.PeerLeft
		writeJSON(w, http.StatusOK, self[0])
	} else {
		writeJSON(w, http.StatusOK, api.Peer{TypeMeta: metav1.TypeMeta{APIVersion: api.APIVersionChorus, Kind: api.KindPeer},
			ObjectMeta: metav1.ObjectMeta{Name: a.cfg.Name}, Status: api.PeerStatus{Phase: api.PeerLeft}})
	}
	go a.leave()
}

// askPeersOwn asks every other alive peer (askPeers) for its own object
// of a chorus.sh/v1 resource at path: a list it answers, to a peer, with
// only its own object, which each is called with.
func askPeersOwn[T any, PT interface {
	*T
	GetName() string
}](a *Agent, ctx context.Context, path string, q url.Values, timeout time.Duration, each func(peer string, obj T)) {
	a.askPeers(ctx, path, q, timeout, func(peer string, body []byte) {
		var l api.ObjectList[T]
		if err := json.Unmarshal(body, &l); err != nil {
			a.log.Debug("ask a peer", "peer", peer, "path", path, "err", err)
			return
		}
		for i := range l.Items {
			if PT(&l.Items[i]).GetName() == peer {
				each(peer, l.Items[i])
			}
		}
	})
}

// peerUsages is the resource usage of this peer and, unless onlySelf, of
// every other alive peer that answers within usageTimeout, sorted by
// peer, as PeerUsage objects.
func (a *Agent) peerUsages(ctx context.Context, q usageQuery, onlySelf bool) []api.PeerUsage {
	if onlySelf {
		return []api.PeerUsage{a.localUsage(q)}
	}
	return a.clusterUsage(ctx, q)
}
