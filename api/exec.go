package api

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// The exec protocol: `chorus exec` POSTs to
// /chorus/v1/namespaces/{ns}/pods/{name}/exec with the headers
// "Connection: Upgrade" and "Upgrade: chorus-exec"; the agent answers
// "101 Switching Protocols", and both sides then exchange frames over the raw
// connection. A frame is one byte naming its stream, a 4-byte big-endian
// payload length, and the payload. The client sends stdin frames (an empty
// one closes the command's stdin); the agent sends stdout and stderr frames,
// then ends with one exit frame (the exit code, 4 bytes big-endian) or one
// error frame (a message: the command could not be run, or was cut short).
const (
	// ExecProtocol is the value of the Upgrade header of an exec request.
	ExecProtocol = "chorus-exec"

	// Streams of exec frames.
	ExecStdin  byte = 0 // client to agent; an empty payload closes stdin
	ExecStdout byte = 1 // agent to client
	ExecStderr byte = 2 // agent to client
	ExecExit   byte = 3 // agent to client, last frame: 4-byte big-endian exit code
	ExecError  byte = 4 // agent to client, last frame: error text

	// MaxExecFrame bounds the payload of one exec frame; WriteExecFrame
	// splits longer payloads and ReadExecFrame rejects longer frames.
	MaxExecFrame = 64 << 10

	execHeader = 5
)

// ErrExecFrame is wrapped by the errors of ReadExecFrame for a malformed
// frame.
var ErrExecFrame = errors.New("malformed exec frame")

// WriteExecFrame writes payload on stream as one or more frames (several
// when it is longer than MaxExecFrame); an empty payload writes one empty
// frame. Each frame is written with a single Write call, so frames of
// writers that serialize their calls never interleave.
func WriteExecFrame(w io.Writer, stream byte, payload []byte) error {
	if stream > ExecError {
		return fmt.Errorf("%w: unknown stream %d", ErrExecFrame, stream)
	}
	for first := true; first || len(payload) > 0; first = false {
		n := min(len(payload), MaxExecFrame)
		buf := make([]byte, execHeader+n)
		buf[0] = stream
		binary.BigEndian.PutUint32(buf[1:execHeader], uint32(n))
		copy(buf[execHeader:], payload[:n])
		if _, err := w.Write(buf); err != nil {
			return err
		}
		payload = payload[n:]
	}
	return nil
}

// WriteExecExit writes the exit frame of code.
func WriteExecExit(w io.Writer, code int) error {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(int32(code)))
	return WriteExecFrame(w, ExecExit, b[:])
}

// ExecExitCode decodes the payload of an exit frame (ReadExecFrame has
// checked its length).
func ExecExitCode(payload []byte) int {
	return int(int32(binary.BigEndian.Uint32(payload)))
}

// ReadExecFrame reads one frame. It returns io.EOF when r ends before a
// frame starts, io.ErrUnexpectedEOF when it ends within one, and an error
// wrapping ErrExecFrame for an unknown stream, a payload longer than
// MaxExecFrame or an exit frame whose payload is not 4 bytes.
func ReadExecFrame(r io.Reader) (stream byte, payload []byte, err error) {
	var h [execHeader]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	stream = h[0]
	n := binary.BigEndian.Uint32(h[1:])
	switch {
	case stream > ExecError:
		return 0, nil, fmt.Errorf("%w: unknown stream %d", ErrExecFrame, stream)
	case n > MaxExecFrame:
		return 0, nil, fmt.Errorf("%w: %d bytes, more than %d", ErrExecFrame, n, MaxExecFrame)
	case stream == ExecExit && n != 4:
		return 0, nil, fmt.Errorf("%w: exit frame of %d bytes, want 4", ErrExecFrame, n)
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	return stream, payload, nil
}
