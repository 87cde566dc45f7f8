package proxy

import (
	"io"
	"net"
)

// Splice copies a to b and b to a until both directions are done, then
// closes both; it returns when everything is closed. A direction that ends
// cleanly (EOF) is passed on as a half-close (CloseWrite) when the
// destination supports it, so that request/response protocols and
// HTTP/1.0 see the end of the request and still get the whole answer;
// without CloseWrite the destination is closed. A direction that fails
// (reset, write error) closes both connections at once. Between two
// *net.TCPConn (or types embedding one) io.Copy uses splice(2) on Linux.
// There is no idle timeout.
func Splice(a, b net.Conn) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		copyHalf(a, b)
	}()
	copyHalf(b, a)
	<-done
	a.Close()
	b.Close()
}

// copyHalf copies src to dst and then shuts the direction down.
func copyHalf(dst, src net.Conn) {
	_, err := io.Copy(dst, src)
	if err != nil {
		dst.Close()
		src.Close()
		return
	}
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		if cw.CloseWrite() == nil {
			return
		}
	}
	dst.Close()
}
