package runtime

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/chorus-sh/chorus/api"
)

// probeTarget is what a probe needs to reach a container.
type probeTarget struct {
	podIP       string
	containerID string
	ports       []api.ContainerPort
	exec        func(ctx context.Context, id string, cmd []string) (int, []byte, error)
}

// resolvePort turns a probe's port (number or container port name) into a
// number.
func resolvePort(p api.IntOrString, ports []api.ContainerPort) (int, error) {
	if !p.IsString {
		if p.IntVal < 1 || p.IntVal > 65535 {
			return 0, fmt.Errorf("port %d out of range", p.IntVal)
		}
		return int(p.IntVal), nil
	}
	if n, err := strconv.Atoi(p.StrVal); err == nil {
		return n, nil
	}
	for _, cp := range ports {
		if cp.Name == p.StrVal {
			return int(cp.ContainerPort), nil
		}
	}
	return 0, fmt.Errorf("no container port named %q", p.StrVal)
}

// runProbe runs one probe once and returns nil on success, or why it failed.
func runProbe(ctx context.Context, p *api.Probe, t probeTarget) error {
	timeout := time.Duration(max(p.TimeoutSeconds, 1)) * time.Second
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	switch {
	case p.HTTPGet != nil:
		return httpGet(ctx, p.HTTPGet, t)
	case p.TCPSocket != nil:
		port, err := resolvePort(p.TCPSocket.Port, t.ports)
		if err != nil {
			return err
		}
		host := p.TCPSocket.Host
		if host == "" {
			host = t.podIP
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return fmt.Errorf("dial tcp %s:%d: %w", host, port, err)
		}
		c.Close()
		return nil
	case p.Exec != nil:
		return execAction(ctx, p.Exec, t)
	case p.GRPC != nil:
		return grpcCheck(ctx, p.GRPC, t.podIP)
	}
	return fmt.Errorf("probe has no handler")
}

// httpGet runs an httpGet action of a probe or a hook: a status from 200 to
// 399 is success; redirects are not followed.
func httpGet(ctx context.Context, h *api.HTTPGetAction, t probeTarget) error {
	port, err := resolvePort(h.Port, t.ports)
	if err != nil {
		return err
	}
	host := h.Host
	if host == "" {
		host = t.podIP
	}
	scheme := "http"
	if h.Scheme == "HTTPS" {
		scheme = "https"
	}
	path := h.Path
	if path == "" || path[0] != '/' {
		path = "/" + path
	}
	url := scheme + "://" + net.JoinHostPort(host, strconv.Itoa(port)) + path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "chorus-probe/1")
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("HTTP probe failed with statuscode: %d", resp.StatusCode)
	}
	return nil
}

// execAction runs an exec action in the container: exit 0 is success.
func execAction(ctx context.Context, e *api.ExecAction, t probeTarget) error {
	code, out, err := t.exec(ctx, t.containerID, e.Command)
	if err != nil {
		return err
	}
	if code != 0 {
		return fmt.Errorf("command %q exited with %d: %s", e.Command, code, truncate(string(out), 200))
	}
	return nil
}

// grpcCheck asks the standard gRPC health service (grpc.health.v1.Health/
// Check) at the pod's address, in plain text as the kubelet does: SERVING
// is success, with the kubelet's messages otherwise.
func grpcCheck(ctx context.Context, g *api.GRPCAction, podIP string) error {
	addr := net.JoinHostPort(podIP, strconv.Itoa(int(g.Port)))
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUserAgent("chorus-probe/1"))
	if err != nil {
		return fmt.Errorf("failed to connect service %q: %w", addr, err)
	}
	defer conn.Close()
	service := ""
	if g.Service != nil {
		service = *g.Service
	}
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		st, _ := status.FromError(err)
		switch {
		case st.Code() == codes.Unimplemented:
			return fmt.Errorf("this server does not implement the grpc health protocol (grpc.health.v1.Health): %s", st.Message())
		case st.Code() == codes.DeadlineExceeded || errors.Is(err, context.DeadlineExceeded):
			return fmt.Errorf("timeout: health rpc did not complete within the probe's timeout: %w", err)
		}
		return fmt.Errorf("error: health rpc probe failed: %w", err)
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("service unhealthy (responded with %q)", resp.GetStatus().String())
	}
	return nil
}

// runHook runs a lifecycle hook (postStart or preStop) until it ends or
// ctx does: exec in the container, an HTTP GET, or a sleep. A tcpSocket
// hook does nothing, as in Kubernetes.
func runHook(ctx context.Context, h *api.LifecycleHandler, t probeTarget) error {
	switch {
	case h.Exec != nil:
		return execAction(ctx, h.Exec, t)
	case h.HTTPGet != nil:
		return httpGet(ctx, h.HTTPGet, t)
	case h.Sleep != nil:
		timer := time.NewTimer(time.Duration(h.Sleep.Seconds) * time.Second)
		defer timer.Stop()
		select {
		case <-timer.C:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("sleep hook: %w", ctx.Err())
		}
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
