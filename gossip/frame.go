package gossip

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"unicode/utf8"
)

// Wire format of the "/chorus/sync/1" and "/chorus/hello/1" streams: each
// direction carries exactly one frame,
//
//	kind (1 byte) | length (4 bytes, big endian) | payload (length bytes)
//
// where kind is frameOK for a request or a successful response and frameErr
// for a response that carries an error message instead of a payload.
const (
	frameOK  byte = 0
	frameErr byte = 1

	frameHeaderLen = 5
	// maxErrorText bounds the error message sent back to a requester.
	maxErrorText = 1024
	// maxHelloSize bounds a hello frame: an "ip:port" string.
	maxHelloSize = 128
	// maxHelloFrame bounds a hello frame: the address, a zero byte and
	// its proof (an HMAC-SHA256).
	maxHelloFrame = maxHelloSize + 1 + 32
)

// ErrTooLarge is returned for a payload over MaxMessageSize (or a frame
// whose announced length is over the reader's limit).
var ErrTooLarge = errors.New("gossip: message too large")

// errBadFrame is returned for a frame of unknown kind.
var errBadFrame = errors.New("gossip: malformed frame")

func writeFrame(w io.Writer, kind byte, payload []byte) error {
	if len(payload) > MaxMessageSize {
		return ErrTooLarge
	}
	var hdr [frameHeaderLen]byte
	hdr[0] = kind
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(payload)))
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	if len(payload) == 0 {
		return nil
	}
	_, err := w.Write(payload)
	return err
}

// readFrame reads one frame whose payload is at most max bytes. Memory grows
// with the bytes actually received, not with the announced length.
func readFrame(r io.Reader, max int) (byte, []byte, error) {
	var hdr [frameHeaderLen]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	kind := hdr[0]
	if kind != frameOK && kind != frameErr {
		return 0, nil, errBadFrame
	}
	size := binary.BigEndian.Uint32(hdr[1:])
	if uint64(size) > uint64(max) {
		return 0, nil, fmt.Errorf("%w: frame of %d bytes, limit %d", ErrTooLarge, size, max)
	}
	var buf bytes.Buffer
	if size <= 64<<10 {
		buf.Grow(int(size))
	}
	if _, err := io.CopyN(&buf, r, int64(size)); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	return kind, buf.Bytes(), nil
}

// errorText is the message of a frameErr response, cut to maxErrorText
// bytes of valid UTF-8.
func errorText(err error) []byte {
	s := err.Error()
	if len(s) > maxErrorText {
		s = s[:maxErrorText]
		for len(s) > 0 && !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
	}
	return []byte(s)
}

// decodeHelloAddr validates a serf address received in a hello frame: a
// literal IP and a port in 1-65535. It returns the canonical "ip:port".
func decodeHelloAddr(b []byte) (string, error) {
	if len(b) == 0 || len(b) > maxHelloSize || !utf8.Valid(b) {
		return "", errors.New("gossip: bad hello address")
	}
	host, port, err := net.SplitHostPort(string(b))
	if err != nil {
		return "", fmt.Errorf("gossip: bad hello address: %w", err)
	}
	ip := net.ParseIP(host)
	if ip == nil || ip.IsUnspecified() || ip.IsMulticast() {
		return "", errors.New("gossip: bad hello address: not a unicast IP")
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 || strconv.FormatUint(p, 10) != port {
		return "", errors.New("gossip: bad hello address: bad port")
	}
	return net.JoinHostPort(ip.String(), port), nil
}
