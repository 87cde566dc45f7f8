package gossip

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
)

func frameBytes(kind byte, payload []byte) []byte {
	var b bytes.Buffer
	if err := writeFrame(&b, kind, payload); err != nil {
		panic(err)
	}
	return b.Bytes()
}

// FuzzReadFrame: the frame decoder of the sync and hello streams never
// panics, never returns more than its limit, and accepts exactly what
// writeFrame produces.
func FuzzReadFrame(f *testing.F) {
	f.Add(frameBytes(frameOK, []byte("hello")))
	f.Add(frameBytes(frameErr, []byte("no")))
	f.Add(frameBytes(frameOK, nil))
	f.Add([]byte{0, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0, 0, 0, 0, 10, 'a'})
	f.Add([]byte{7, 0, 0, 0, 0})
	f.Add([]byte{1, 0})
	const limit = 64
	f.Fuzz(func(t *testing.T, data []byte) {
		kind, payload, err := readFrame(bytes.NewReader(data), limit)
		if err != nil {
			if kind != 0 || payload != nil {
				t.Fatalf("error %v with kind %d payload %q", err, kind, payload)
			}
			if len(data) >= frameHeaderLen && (data[0] == frameOK || data[0] == frameErr) {
				n := int(data[1])<<24 | int(data[2])<<16 | int(data[3])<<8 | int(data[4])
				if n <= limit && len(data)-frameHeaderLen >= n {
					t.Fatalf("valid frame refused: %v", err)
				}
				if n > limit && !errors.Is(err, ErrTooLarge) {
					t.Fatalf("oversized frame: %v", err)
				}
			}
			return
		}
		if kind != frameOK && kind != frameErr {
			t.Fatalf("kind %d accepted", kind)
		}
		if len(payload) > limit {
			t.Fatalf("payload of %d bytes over limit", len(payload))
		}
		if enc := frameBytes(kind, payload); !bytes.Equal(enc, data[:len(enc)]) {
			t.Fatalf("round trip: %x vs %x", enc, data)
		}
	})
}

// FuzzReadFrameStream checks that readFrame consumes exactly one frame, so
// a truncated stream is an error and not a short payload.
func FuzzReadFrameStream(f *testing.F) {
	f.Add([]byte("abc"), 2)
	f.Fuzz(func(t *testing.T, payload []byte, cut int) {
		if len(payload) > 1024 {
			return
		}
		enc := frameBytes(frameOK, payload)
		if cut < 0 || cut > len(enc) {
			cut = len(enc)
		}
		_, got, err := readFrame(bytes.NewReader(enc[:cut]), 1024)
		if cut == len(enc) {
			if err != nil || !bytes.Equal(got, payload) {
				t.Fatalf("full frame: %q, %v", got, err)
			}
			return
		}
		if err == nil {
			t.Fatalf("truncated frame (%d of %d bytes) accepted", cut, len(enc))
		}
		if cut > 0 && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("truncated frame: %v", err)
		}
	})
}

// FuzzDecodeHelloAddr: the hello address decoder accepts only a literal
// unicast IP with a port, and its output is a fixed point.
func FuzzDecodeHelloAddr(f *testing.F) {
	for _, s := range []string{"127.0.0.1:7946", "[::1]:7946", "10.0.0.1:0", "host:7946",
		"0.0.0.0:1", "224.0.0.1:1", "1.2.3.4:65536", "1.2.3.4:+1", "1.2.3.4:07946", "[fe80::1%lo]:1", ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		addr, err := decodeHelloAddr(b)
		if err != nil {
			if addr != "" {
				t.Fatalf("address %q with error", addr)
			}
			return
		}
		if len(addr) > maxHelloSize || len(b) > maxHelloSize {
			t.Fatalf("accepted %d bytes", len(b))
		}
		again, err := decodeHelloAddr([]byte(addr))
		if err != nil || again != addr {
			t.Fatalf("not a fixed point: %q -> %q, %v", addr, again, err)
		}
	})
}

// FuzzCheckHelloFrame: a hello frame is accepted under a key only with the
// MAC that key makes of it, and never for another role or receiver.
func FuzzCheckHelloFrame(f *testing.F) {
	key := bytes.Repeat([]byte{7}, 32)
	from, to := peer.ID("peer-a"), peer.ID("peer-b")
	good := append([]byte("127.0.0.1:7946\x00"), helloMAC(key, helloRequest, from, to, "127.0.0.1:7946")...)
	f.Add(good)
	f.Add([]byte("127.0.0.1:7946"))
	f.Add([]byte("127.0.0.1:7946\x00"))
	f.Add(append([]byte("127.0.0.1:7946\x00\x00"), good[15:]...))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, err := checkHelloFrame(b, [][]byte{key}, helloRequest, from, to)
		if err != nil {
			return
		}
		raw, _, _ := bytes.Cut(b, []byte{0})
		want := append(append(bytes.Clone(raw), 0), helloMAC(key, helloRequest, from, to, string(raw))...)
		if !bytes.Equal(b, want) {
			t.Fatalf("accepted %q, not the frame %q", b, want)
		}
		if _, err := checkHelloFrame(b, [][]byte{key}, helloResponse, from, to); err == nil {
			t.Fatal("accepted for the other role")
		}
		if _, err := checkHelloFrame(b, [][]byte{key}, helloRequest, from, "peer-c"); err == nil {
			t.Fatal("accepted for another receiver")
		}
	})
}
