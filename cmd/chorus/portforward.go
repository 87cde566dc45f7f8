package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/chorus-sh/chorus/proxy"
	"github.com/spf13/cobra"
)

// newPortForwardCmd is `chorus port-forward TYPE/NAME [LOCAL:]REMOTE...`:
// local ports that reach a service or a pod through the peer the CLI talks
// to, as kubectl port-forward does.
func newPortForwardCmd(root *rootOptions) *cobra.Command {
	var address string
	cmd := &cobra.Command{
		Use:   "port-forward TYPE/NAME [LOCAL_PORT:]REMOTE_PORT...",
		Short: "Forward local ports to a service or a pod, through the peer",
		Example: `  chorus port-forward service/hello 7080:8080
  chorus port-forward pod/web-5d8f9c7b6a-0 8080`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			kind, name, ok := strings.Cut(args[0], "/")
			if !ok {
				return fmt.Errorf("%q: want TYPE/NAME, e.g. service/hello or pod/web-0", args[0])
			}
			var resource string
			switch strings.ToLower(kind) {
			case "svc", "service", "services":
				resource = "services"
			case "po", "pod", "pods":
				resource = "pods"
			default:
				return fmt.Errorf("port-forward works on services and pods, not %q", kind)
			}
			c, err := root.client()
			if err != nil {
				return err
			}
			// The peer must answer, and accept the token, before anything
			// listens: a refusal ends the command as any server error does
			// rather than each forwarded connection.
			var sv serverVersion
			if err := c.getJSON(cmd.Context(), apiPath("version"), nil, &sv); err != nil {
				return err
			}
			ns := root.namespace()
			var lns []net.Listener
			defer func() {
				for _, ln := range lns {
					ln.Close()
				}
			}()
			var wg sync.WaitGroup
			for _, spec := range args[1:] {
				local, remote, err := parsePortPair(spec)
				if err != nil {
					return err
				}
				ln, err := net.Listen("tcp", net.JoinHostPort(address, strconv.Itoa(local)))
				if err != nil {
					return fmt.Errorf("unable to listen on port %d: %w", local, err)
				}
				lns = append(lns, ln)
				fmt.Fprintf(root.out, "Forwarding from %s -> %d\n", ln.Addr(), remote)
				path := apiPath("namespaces", ns, resource, name, "portforward") + "?port=" + strconv.Itoa(remote)
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						conn, err := ln.Accept()
						if err != nil {
							return
						}
						fmt.Fprintf(root.out, "Handling connection for %d\n", local)
						go func() {
							if err := forwardConn(cmd.Context(), c, path, conn); err != nil {
								fmt.Fprintf(root.errOut, "error: forwarding to %s port %d: %v\n", args[0], remote, err)
							}
						}()
					}
				}()
			}
			<-cmd.Context().Done()
			for _, ln := range lns {
				ln.Close()
			}
			wg.Wait()
			return nil
		},
	}
	cmd.Flags().StringVar(&address, "address", "127.0.0.1", "local address to listen on")
	return cmd
}

func parsePortPair(s string) (local, remote int, err error) {
	l, r, ok := strings.Cut(s, ":")
	if !ok {
		r = l
	}
	if local, err = strconv.Atoi(l); err != nil || local < 0 || local > 65535 {
		return 0, 0, fmt.Errorf("invalid port %q", s)
	}
	if remote, err = strconv.Atoi(r); err != nil || remote < 1 || remote > 65535 {
		return 0, 0, fmt.Errorf("invalid port %q", s)
	}
	return local, remote, nil
}

// forwardConn asks the peer of cl to upgrade an HTTP request to a raw
// connection to the target (with cl's token), then copies bytes both ways.
func forwardConn(ctx context.Context, cl *client, path string, c net.Conn) error {
	defer c.Close()
	host := cl.base.Host
	d := net.Dialer{Timeout: 5 * time.Second}
	pc, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return err
	}
	if cl.base.Scheme == "https" {
		tc := cl.tls.Clone()
		if tc.ServerName == "" {
			tc.ServerName = cl.base.Hostname()
		}
		tlc := tls.Client(pc, tc)
		if err := tlc.HandshakeContext(ctx); err != nil {
			pc.Close()
			return err
		}
		pc = tlc
	}
	defer pc.Close()
	auth := ""
	if cl.token != "" { // api.CheckToken let no CR or LF in
		auth = "Authorization: Bearer " + cl.token + "\r\n"
	}
	req := "POST " + cl.base.Path + path + " HTTP/1.1\r\nHost: " + host + "\r\n" + auth +
		"Connection: Upgrade\r\nUpgrade: chorus-portforward\r\nContent-Length: 0\r\n\r\n"
	if _, err := io.WriteString(pc, req); err != nil {
		return err
	}
	br := bufio.NewReader(pc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		return errors.New(strings.TrimSpace(statusMessage(b, resp.Status)))
	}
	// Bytes the reader already took past the response belong to the target.
	if n := br.Buffered(); n > 0 {
		b, _ := br.Peek(n)
		if _, err := c.Write(b); err != nil {
			return err
		}
	}
	proxy.Splice(c, pc)
	return nil
}

// statusMessage extracts the message of a Kubernetes Status body.
func statusMessage(b []byte, fallback string) string {
	var st struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(b, &st) == nil && st.Message != "" {
		return st.Message
	}
	return fallback
}
