// Command grpchealth is a test container image: a gRPC server offering the
// standard health service (grpc.health.v1.Health), which Kubernetes' grpc
// probes ask.
//
// It listens on :$PORT (default 9090, or the -port flag). Check answers
// SERVING for the service "" and "app", NOT_SERVING for "sick", and
// NotFound for any other name. It prints "listening on :PORT" once the port
// is open and exits 0 on SIGTERM or SIGINT.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func main() {
	defPort := os.Getenv("PORT")
	if defPort == "" {
		defPort = "9090"
	}
	port := flag.String("port", defPort, "port to listen on (default $PORT or 9090)")
	flag.Parse()

	ln, err := net.Listen("tcp", ":"+*port)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus("app", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus("sick", healthpb.HealthCheckResponse_NOT_SERVING)
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, hs)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-sig
		srv.Stop()
	}()
	fmt.Println("listening on :" + *port)
	if err := srv.Serve(ln); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	<-done
}
