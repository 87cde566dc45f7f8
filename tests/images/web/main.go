// Command web is a tiny HTTP server used as a test container image.
//
// It listens on :$PORT (default 8080, or the -port flag) and serves:
//
//	GET /              "hello from <pod name>\n" (env POD_NAME, else the hostname;
//	                   env GREETING replaces "hello")
//	GET /healthz       200 "ok", or 500 forever once /fail was called (liveness)
//	GET /fail          breaks liveness
//	GET /ready         200 "ready", or 503 while readiness is toggled off
//	GET /toggle-ready  flips readiness
//	GET /env           the environment, one KEY=VALUE per line, sorted
//	GET /exit?code=N   exits the process with code N
//	GET /burn?ms=N     spins on the CPU for N ms (1-10000), then answers
//	                   "burned N ms on <pod name>"
//	GET /lookup?host=H the addresses H resolves to (the pod's resolver), one per line
//	GET /get?url=U     fetches U from inside the pod and returns its status and body
//	GET /remote        the caller's address as the pod sees it
//	GET /zero?bytes=N  N zero bytes (at most 10^10), for throughput
//	GET (other paths)  404 "no page <path> on <pod name>\n"
//
// With $UDP_PORT set it also answers each UDP datagram on that port with
// "<pod name>:<datagram>".
//
// It prints "listening on :PORT" once the port is open, then one line per
// request to stdout, and exits 0 on SIGTERM or SIGINT.
//
// The image has no shell; to give `exec` something to run, a first argument
// naming a mode runs it instead of the server:
//
//	/app echo ARGS...       prints ARGS, space-separated, and a newline to stdout
//	/app fail N [MSG...]    prints MSG (default "failing with N") to stderr, exits N
//	/app sleep S [MSG...]   waits S seconds, then prints MSG
//	/app cat                copies stdin to stdout, then prints "<n> bytes" to stderr
//	/app tty                prints "tty=true rows=R cols=C" when stdin is a terminal
//	                        (its size), else "tty=false"
//	/app hostname           prints the hostname (the pod's name) to stdout
//	/app env NAME           prints the value of the variable NAME, exits 1 if unset
//	/app readfile PATH      prints the file at PATH (exits 1 on an error)
//	/app writefile PATH S   writes S to the file at PATH
//	/app appendfile PATH S  appends S and a newline to the file at PATH (made if missing)
//	/app fetch URL          prints the body of a GET of URL; exits 1 unless it answers 200
//	/app throughput URL     reads the body of a GET of URL and prints "<bytes> bytes <MB/s> MB/s"
//	/app security           prints "key: value" lines about its confinement: the Uid,
//	                        Gid, Groups, CapEff, CapBnd, NoNewPrivs and Seccomp lines of
//	                        /proc/self/status, uid_map (/proc/self/uid_map), then
//	                        "write /", "mount tmpfs" and "userns"
//	                        (a child in a new user and mount namespace mounting a tmpfs):
//	                        "ok" or the error
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) > 1 {
		if code, ok := runMode(os.Args[1], os.Args[2:]); ok {
			os.Exit(code)
		}
	}
	defPort := os.Getenv("PORT")
	if defPort == "" {
		defPort = "8080"
	}
	port := flag.String("port", defPort, "port to listen on (default $PORT or 8080)")
	flag.Parse()

	podName := os.Getenv("POD_NAME")
	if podName == "" {
		podName, _ = os.Hostname()
	}

	var broken, notReady atomic.Bool
	mux := http.NewServeMux()
	greeting := os.Getenv("GREETING")
	if greeting == "" {
		greeting = "hello"
	}
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s from %s\n", greeting, podName)
	})
	mux.HandleFunc("GET /", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no page "+r.URL.Path+" on "+podName, http.StatusNotFound)
	})
	mux.HandleFunc("GET /remote", func(w http.ResponseWriter, r *http.Request) {
		// The caller's address as this pod sees it (pod-to-pod traffic
		// must arrive untranslated).
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		fmt.Fprintln(w, host)
	})
	mux.HandleFunc("GET /zero", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.ParseInt(r.URL.Query().Get("bytes"), 10, 64)
		if err != nil || n < 0 || n > 1e10 {
			http.Error(w, "usage: /zero?bytes=N (0 to 10^10)", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		buf := make([]byte, 64<<10)
		for n > 0 {
			k, err := w.Write(buf[:min(n, int64(len(buf)))])
			if err != nil {
				return
			}
			n -= int64(k)
		}
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if broken.Load() {
			http.Error(w, "liveness broken", http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /fail", func(w http.ResponseWriter, r *http.Request) {
		broken.Store(true)
		fmt.Fprintln(w, "liveness broken")
	})
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, r *http.Request) {
		if notReady.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.HandleFunc("GET /toggle-ready", func(w http.ResponseWriter, r *http.Request) {
		ready := notReady.Load() // the new value of "ready"
		notReady.Store(!ready)
		fmt.Fprintf(w, "ready=%t\n", ready)
	})
	mux.HandleFunc("GET /env", func(w http.ResponseWriter, r *http.Request) {
		env := os.Environ()
		slices.Sort(env)
		fmt.Fprintln(w, strings.Join(env, "\n"))
	})
	mux.HandleFunc("GET /lookup", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		addrs, err := net.DefaultResolver.LookupHost(ctx, r.URL.Query().Get("host"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		fmt.Fprintln(w, strings.Join(addrs, "\n"))
	})
	mux.HandleFunc("GET /get", func(w http.ResponseWriter, r *http.Request) {
		c := http.Client{Timeout: 5 * time.Second}
		resp, err := c.Get(r.URL.Query().Get("url"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		fmt.Fprintf(w, "%d ", resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	})
	mux.HandleFunc("GET /burn", func(w http.ResponseWriter, r *http.Request) {
		ms, err := strconv.Atoi(r.URL.Query().Get("ms"))
		if err != nil || ms < 1 || ms > 10000 {
			http.Error(w, "usage: /burn?ms=N (1 to 10000)", http.StatusBadRequest)
			return
		}
		// Spin on the CPU for ms of wall time, as the php-apache page of
		// Kubernetes' HPA walkthrough does.
		x := uint64(1)
		for end := time.Now().Add(time.Duration(ms) * time.Millisecond); time.Now().Before(end); {
			for range 10000 {
				x = x*6364136223846793005 + 1442695040888963407
			}
		}
		fmt.Fprintf(w, "burned %d ms on %s (%d)\n", ms, podName, x&1)
	})
	mux.HandleFunc("GET /exit", func(w http.ResponseWriter, r *http.Request) {
		code, err := strconv.Atoi(r.URL.Query().Get("code"))
		if err != nil {
			http.Error(w, "usage: /exit?code=N", http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "exiting with %d\n", code)
		w.(http.Flusher).Flush()
		fmt.Printf("exiting with %d\n", code)
		go func() {
			time.Sleep(100 * time.Millisecond) // let the response reach the client
			os.Exit(code)
		}()
	})

	if up := os.Getenv("UDP_PORT"); up != "" {
		pc, err := net.ListenPacket("udp", ":"+up)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Printf("udp echo on :%s\n", up)
		go func() {
			buf := make([]byte, 65535)
			for {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				pc.WriteTo(append([]byte(podName+":"), buf[:n]...), from)
			}
		}()
	}

	ln, err := net.Listen("tcp", ":"+*port)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("listening on :%s\n", *port)

	srv := &http.Server{Handler: logRequests(mux)}
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		s := <-sig
		fmt.Printf("got %v, shutting down\n", s)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}()
	if err := srv.Serve(ln); err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// statusWriter remembers the status code written to a response.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Flush() { w.ResponseWriter.(http.Flusher).Flush() }

// logRequests prints "METHOD URI STATUS" for each request to stdout.
func logRequests(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		h.ServeHTTP(sw, r)
		fmt.Printf("%s %s %d\n", r.Method, r.URL.RequestURI(), sw.status)
	})
}

// runMode runs one of the exec modes (see the package comment) and returns
// its exit code; ok is false when mode names none.
func runMode(mode string, args []string) (code int, ok bool) {
	switch mode {
	case "echo":
		fmt.Println(strings.Join(args, " "))
		return 0, true
	case "tty":
		ws, err := unix.IoctlGetWinsize(0, unix.TIOCGWINSZ)
		if err != nil {
			fmt.Println("tty=false")
			return 0, true
		}
		fmt.Printf("tty=true rows=%d cols=%d\n", ws.Row, ws.Col)
		return 0, true
	case "fail":
		if len(args) == 0 {
			fmt.Fprintln(os.Stderr, "usage: fail N [MESSAGE...]")
			return 2, true
		}
		n, err := strconv.Atoi(args[0])
		if err != nil {
			fmt.Fprintln(os.Stderr, "usage: fail N [MESSAGE...]")
			return 2, true
		}
		msg := strings.Join(args[1:], " ")
		if msg == "" {
			msg = fmt.Sprintf("failing with %d", n)
		}
		fmt.Fprintln(os.Stderr, msg)
		return n, true
	case "sleep": // sleep SECONDS [MESSAGE...]: waits, then prints MESSAGE
		if len(args) == 0 {
			fmt.Fprintln(os.Stderr, "usage: sleep SECONDS [MESSAGE...]")
			return 2, true
		}
		d, err := time.ParseDuration(args[0] + "s")
		if err != nil {
			fmt.Fprintln(os.Stderr, "usage: sleep SECONDS [MESSAGE...]")
			return 2, true
		}
		time.Sleep(d)
		fmt.Println(strings.Join(args[1:], " "))
		return 0, true
	case "hostname":
		h, err := os.Hostname()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1, true
		}
		fmt.Println(h)
		return 0, true
	case "security":
		securityReport()
		return 0, true
	case "userns-mount": // the child of security's userns test
		if err := syscall.Mount("tmpfs", "/tmp", "tmpfs", 0, "size=1m"); err != nil {
			fmt.Println("mount tmpfs in it:", err)
			return 1, true
		}
		fmt.Println("ok")
		return 0, true
	case "env":
		if len(args) != 1 {
			fmt.Fprintln(os.Stderr, "usage: env NAME")
			return 2, true
		}
		v, ok := os.LookupEnv(args[0])
		if !ok {
			fmt.Fprintln(os.Stderr, args[0]+" is not set")
			return 1, true
		}
		fmt.Println(v)
		return 0, true
	case "readfile":
		if len(args) != 1 {
			fmt.Fprintln(os.Stderr, "usage: readfile PATH")
			return 2, true
		}
		b, err := os.ReadFile(args[0])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1, true
		}
		os.Stdout.Write(b)
		return 0, true
	case "writefile":
		if len(args) != 2 {
			fmt.Fprintln(os.Stderr, "usage: writefile PATH CONTENT")
			return 2, true
		}
		if err := os.WriteFile(args[0], []byte(args[1]), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1, true
		}
		return 0, true
	case "appendfile":
		if len(args) != 2 {
			fmt.Fprintln(os.Stderr, "usage: appendfile PATH LINE")
			return 2, true
		}
		f, err := os.OpenFile(args[0], os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err == nil {
			_, err = fmt.Fprintln(f, args[1])
			err = errors.Join(err, f.Close())
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1, true
		}
		return 0, true
	case "fetch":
		if len(args) != 1 {
			fmt.Fprintln(os.Stderr, "usage: fetch URL")
			return 2, true
		}
		c := http.Client{Timeout: 5 * time.Second}
		resp, err := c.Get(args[0])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1, true
		}
		defer resp.Body.Close()
		io.Copy(os.Stdout, resp.Body)
		if resp.StatusCode != http.StatusOK {
			fmt.Fprintln(os.Stderr, resp.Status)
			return 1, true
		}
		return 0, true
	case "throughput":
		if len(args) != 1 {
			fmt.Fprintln(os.Stderr, "usage: throughput URL")
			return 2, true
		}
		start := time.Now()
		resp, err := http.Get(args[0])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1, true
		}
		defer resp.Body.Close()
		n, err := io.Copy(io.Discard, resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			fmt.Fprintln(os.Stderr, resp.Status, err)
			return 1, true
		}
		fmt.Printf("%d bytes %.1f MB/s\n", n, float64(n)/1e6/time.Since(start).Seconds())
		return 0, true
	case "cat":
		n, err := io.Copy(os.Stdout, os.Stdin)
		fmt.Fprintf(os.Stderr, "%d bytes\n", n)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1, true
		}
		return 0, true
	}
	return 0, false
}

// securityReport prints what the process may do; see the security mode.
func securityReport() {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		fmt.Println("status:", err)
	}
	for _, l := range strings.Split(string(status), "\n") {
		k, v, _ := strings.Cut(l, ":")
		switch k {
		case "Uid", "Gid", "Groups", "CapEff", "CapBnd", "NoNewPrivs", "Seccomp":
			fmt.Printf("%s: %s\n", k, strings.Join(strings.Fields(v), " "))
		}
	}
	if m, err := os.ReadFile("/proc/self/uid_map"); err == nil {
		fmt.Printf("uid_map: %s\n", strings.Join(strings.Fields(string(m)), " "))
	}
	result := func(err error) string {
		if err != nil {
			return err.Error()
		}
		return "ok"
	}
	err = os.WriteFile("/probe-write", []byte("x"), 0o644)
	if err == nil {
		os.Remove("/probe-write")
	}
	fmt.Println("write /:", result(err))
	err = syscall.Mount("tmpfs", "/tmp", "tmpfs", 0, "size=1m")
	if err == nil {
		syscall.Unmount("/tmp", 0)
	}
	fmt.Println("mount tmpfs:", result(err))
	self, err := os.Executable()
	if err != nil {
		fmt.Println("userns:", err)
		return
	}
	cmd := exec.Command(self, "userns-mount")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
	}
	out, err := cmd.CombinedOutput()
	if err != nil && len(out) == 0 {
		fmt.Println("userns:", err)
		return
	}
	fmt.Println("userns:", strings.TrimSpace(string(out)))
}
