package agent

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"
)

// readAhead takes its source's input before anyone reads it (so that the
// stream server's connection, which hands out messages in order, is never
// held by input no one reads yet), keeps it in order, and ends as the
// source does.
func TestReadAhead(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	r := readAhead(ctx, pr)
	wrote := make(chan error, 1)
	go func() {
		if _, err := pw.Write([]byte("ab")); err != nil {
			wrote <- err
			return
		}
		_, err := pw.Write([]byte("c"))
		wrote <- err
	}()
	select {
	case err := <-wrote:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("writes to the source waited for a reader")
	}
	pw.CloseWithError(errors.New("session over"))
	got, err := io.ReadAll(r)
	if string(got) != "abc" || err == nil || err.Error() != "session over" {
		t.Fatalf("read %q, %v; want \"abc\", then the source's error", got, err)
	}

	// Its context ended, the reader ends with it.
	pr2, pw2 := io.Pipe()
	defer pw2.Close()
	ctx2, cancel2 := context.WithCancel(context.Background())
	r2 := readAhead(ctx2, pr2)
	go func() {
		for range 100 { // more than read ahead: the goroutine then waits on ctx
			if _, err := pw2.Write([]byte("x")); err != nil {
				return
			}
		}
	}()
	time.Sleep(50 * time.Millisecond)
	cancel2()
	if _, err := io.ReadAll(r2); !errors.Is(err, context.Canceled) {
		t.Fatalf("after cancel: %v, want context.Canceled", err)
	}
}
