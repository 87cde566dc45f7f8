package api

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func frame(stream byte, payload string) []byte {
	var b bytes.Buffer
	if err := WriteExecFrame(&b, stream, []byte(payload)); err != nil {
		panic(err)
	}
	return b.Bytes()
}

func TestExecFrameRoundTrip(t *testing.T) {
	var b bytes.Buffer
	big := bytes.Repeat([]byte("x"), 2*MaxExecFrame+7)
	for _, err := range []error{
		WriteExecFrame(&b, ExecStdout, []byte("hello\n")),
		WriteExecFrame(&b, ExecStdin, nil),
		WriteExecFrame(&b, ExecStderr, big),
		WriteExecExit(&b, -1),
		WriteExecExit(&b, 42),
		WriteExecFrame(&b, ExecError, []byte("boom")),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	type got struct {
		stream byte
		n      int
	}
	var frames []got
	var stderr []byte
	var codes []int
	for {
		s, p, err := ReadExecFrame(&b)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		frames = append(frames, got{s, len(p)})
		switch s {
		case ExecStderr:
			stderr = append(stderr, p...)
		case ExecExit:
			codes = append(codes, ExecExitCode(p))
		}
	}
	want := []got{{ExecStdout, 6}, {ExecStdin, 0}, {ExecStderr, MaxExecFrame}, {ExecStderr, MaxExecFrame}, {ExecStderr, 7},
		{ExecExit, 4}, {ExecExit, 4}, {ExecError, 4}}
	if len(frames) != len(want) {
		t.Fatalf("frames %v, want %v", frames, want)
	}
	for i := range want {
		if frames[i] != want[i] {
			t.Fatalf("frame %d is %v, want %v", i, frames[i], want[i])
		}
	}
	if !bytes.Equal(stderr, big) {
		t.Fatal("the split payload does not join back")
	}
	if codes[0] != -1 || codes[1] != 42 {
		t.Fatalf("exit codes %v", codes)
	}
}

func TestExecFrameErrors(t *testing.T) {
	for name, tc := range map[string]struct {
		in   []byte
		want error
	}{
		"empty":          {nil, io.EOF},
		"short header":   {[]byte{1, 0, 0}, io.ErrUnexpectedEOF},
		"short payload":  {[]byte{1, 0, 0, 0, 3, 'a'}, io.ErrUnexpectedEOF},
		"no payload":     {[]byte{1, 0, 0, 0, 3}, io.ErrUnexpectedEOF},
		"unknown stream": {[]byte{5, 0, 0, 0, 0}, ErrExecFrame},
		"too long":       {[]byte{1, 0, 1, 0, 1}, ErrExecFrame},
		"huge":           {[]byte{1, 0xff, 0xff, 0xff, 0xff}, ErrExecFrame},
		"short exit":     {[]byte{3, 0, 0, 0, 1, 0}, ErrExecFrame},
	} {
		if _, _, err := ReadExecFrame(bytes.NewReader(tc.in)); !errors.Is(err, tc.want) {
			t.Errorf("%s: error %v, want %v", name, err, tc.want)
		}
	}
	if err := WriteExecFrame(io.Discard, 9, nil); !errors.Is(err, ErrExecFrame) {
		t.Errorf("writing stream 9: %v", err)
	}
}

// FuzzReadExecFrame: the decoder never panics nor allocates past the frame
// bound, and what it accepts encodes back to the very bytes it consumed.
func FuzzReadExecFrame(f *testing.F) {
	for _, seed := range [][]byte{
		nil,
		frame(ExecStdin, ""),
		frame(ExecStdout, "hello\n"),
		append(frame(ExecStderr, "oops"), frame(ExecExit, "\x00\x00\x00\x02")...),
		frame(ExecError, "container not running"),
		{3, 0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff},
		{1, 0, 1, 0, 0},
		{1, 0xff, 0xff, 0xff, 0xff, 'a'},
		{7, 0, 0, 0, 0},
		{0, 0, 0},
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		for {
			before := len(data) - r.Len()
			s, p, err := ReadExecFrame(r)
			if err != nil {
				if err == io.EOF && before != len(data) {
					t.Fatalf("io.EOF with %d bytes left", len(data)-before)
				}
				if err != io.EOF && err != io.ErrUnexpectedEOF && !errors.Is(err, ErrExecFrame) {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if s > ExecError || len(p) > MaxExecFrame || (s == ExecExit && len(p) != 4) {
				t.Fatalf("accepted stream %d with %d bytes", s, len(p))
			}
			var b bytes.Buffer
			if err := WriteExecFrame(&b, s, p); err != nil {
				t.Fatal(err)
			}
			if consumed := data[before : len(data)-r.Len()]; !bytes.Equal(b.Bytes(), consumed) {
				t.Fatalf("re-encoded %x, consumed %x", b.Bytes(), consumed)
			}
		}
	})
}
