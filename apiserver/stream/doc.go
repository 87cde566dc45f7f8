// Package stream serves the streaming subresources of pods the way a
// kube-apiserver and kubelet do, so that kubectl exec, attach and
// port-forward (and client-go's remotecommand and portforward clients) work
// against a chorus peer unchanged.
//
// Exec and attach speak the WebSocket channel protocols (v5.channel.k8s.io,
// which kubectl 1.30 and later try first, v4.channel.k8s.io and the older
// channel.k8s.io, binary or base64) and, as the fallback kubectl takes when a
// WebSocket upgrade is refused, SPDY/3.1 with X-Stream-Protocol-Version
// v4.channel.k8s.io down to channel.k8s.io. Port-forward speaks
// portforward.k8s.io over SPDY/3.1, over SPDY tunnelled in a WebSocket
// (SPDY/3.1+portforward.k8s.io, kubectl's first choice since 1.31), and the
// v4.channel.k8s.io WebSocket form web clients use.
//
// The protocols are the libraries': the kubelet's streaming server
// (k8s.io/cri-streaming) serves SPDY and the WebSocket port-forward, and
// k8s.io/streaming's wsstream the WebSocket channels. This package adds what a
// kube-apiserver adds in front of a kubelet: the v5 WebSocket exec, the
// WebSocket tunnel for port-forward, the query parameters of PodExecOptions,
// PodAttachOptions and PodPortForwardOptions, and exit codes reported as a
// v1 Status.
//
// The commands, attachments and connections themselves are the caller's,
// through the Execer, Attacher and PortForwarder interfaces.
package stream
