package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/chorus-sh/chorus/api"
	"github.com/spf13/cobra"
)

const execUsage = "chorus exec (POD | TYPE/NAME) [-c CONTAINER] [-i] -- COMMAND [ARGS...]"

type execOptions struct {
	*rootOptions
	container string
	stdin     bool
	tty       bool
}

// newExecCmd is `chorus exec`: kubectl exec without a TTY. The command runs
// in a container of a pod on whichever peer runs it (the peer the CLI talks
// to passes the request on), with the CLI's stdin when -i is given; its
// stdout and stderr are printed as they come and the CLI exits with its
// exit code.
func newExecCmd(root *rootOptions) *cobra.Command {
	e := &execOptions{rootOptions: root}
	cmd := &cobra.Command{
		Use:   strings.TrimPrefix(execUsage, "chorus "),
		Short: "Execute a command in a container",
		Long: "Execute a command in a container of a pod, on whichever peer runs it.\n" +
			"TYPE/NAME may name a pod, a deployment or a service: for the latter two the\n" +
			"command runs in one of its pods. The command comes after --. With -i the\n" +
			"command reads chorus' stdin. There is no TTY: the command's stdout and\n" +
			"stderr are printed to chorus' own, and chorus exits with its exit code.",
		Example: "  chorus exec web-6d4f-0 -- ls /\n" +
			"  chorus exec deployment/web -c sidecar -- env\n" +
			"  echo hello | chorus exec -i web-6d4f-0 -- cat",
		Args: func(cmd *cobra.Command, args []string) error {
			_, _, err := splitExecArgs(args, cmd.ArgsLenAtDash())
			if err != nil {
				return fmt.Errorf("%w\nSee '%s --help' for usage.", err, cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			target, command, _ := splitExecArgs(args, cmd.ArgsLenAtDash())
			return e.run(cmd.Context(), target, command)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&e.container, "container", "c", "", "container name; the pod's only container when not given")
	f.BoolVarP(&e.stdin, "stdin", "i", false, "pass stdin to the command")
	f.BoolVarP(&e.tty, "tty", "t", false, "not supported: chorus exec has no TTY")
	_ = f.MarkHidden("tty")
	return cmd
}

// splitExecArgs splits the arguments of exec into the pod and the command,
// which must follow "--" (dash is the number of arguments before it, -1
// without it).
func splitExecArgs(args []string, dash int) (string, []string, error) {
	switch {
	case len(args) == 0:
		return "", nil, fmt.Errorf("expected '%s': POD or TYPE/NAME is required", execUsage)
	case dash < 0 && len(args) == 1:
		return "", nil, fmt.Errorf("you must specify a command to run after --: %s", execUsage)
	case dash < 0:
		return "", nil, fmt.Errorf("the command must follow --, as in 'chorus exec %s -- %s'", args[0], strings.Join(args[1:], " "))
	case dash == 0:
		return "", nil, fmt.Errorf("expected '%s': POD or TYPE/NAME is required before --", execUsage)
	case dash > 1:
		return "", nil, fmt.Errorf("expected one POD or TYPE/NAME before --, got %q", strings.Join(args[:dash], " "))
	case dash == len(args):
		return "", nil, fmt.Errorf("you must specify a command to run after --: %s", execUsage)
	}
	return args[0], args[1:], nil
}

func (e *execOptions) run(ctx context.Context, target string, command []string) error {
	err := e.exec(ctx, target, command)
	if err != nil && ctx.Err() != nil {
		return &exitError{code: 130} // interrupted: the agent kills the command
	}
	return err
}

func (e *execOptions) exec(ctx context.Context, target string, command []string) error {
	if e.tty {
		return errors.New("chorus exec has no TTY (-t): run the command without -t, with -i to pass stdin")
	}
	c, err := e.client()
	if err != nil {
		return err
	}
	ns := e.namespace()
	pod, err := resolvePod(ctx, c, ns, target, "exec into", e.errOut)
	if err != nil {
		return err
	}
	q := url.Values{"command": command}
	if e.container != "" {
		q.Set("container", e.container)
	}
	var stdin io.Reader
	if e.stdin {
		q.Set("stdin", "true")
		stdin = e.in
	}
	conn, err := c.upgrade(ctx, request{method: http.MethodPost, query: q,
		path: apiPath("namespaces", url.PathEscape(ns), "pods", url.PathEscape(pod), "exec")}, api.ExecProtocol)
	if err != nil {
		return err
	}
	code, err := execStreams(ctx, conn, stdin, e.out, e.errOut)
	if err != nil {
		return err
	}
	if code != 0 {
		fmt.Fprintf(e.errOut, "command terminated with exit code %d\n", code)
		if code < 0 || code > 255 {
			code = 1 // an exit status holds 8 bits: never let it read 0
		}
		return &exitError{code: code}
	}
	return nil
}

// execStreams speaks the client's side of the exec protocol (see
// api.ExecProtocol) on conn, which it closes: stdin, when not nil, is sent
// until its end; stdout and stderr frames are written out. It returns the
// command's exit code, or the agent's error. The end of ctx closes conn,
// which makes the agent kill the command.
//
// The goroutine sending stdin is not waited for: it may be blocked in a
// Read of the user's terminal, which nothing interrupts; once the command
// has ended its next write fails on the closed connection and it returns.
func execStreams(ctx context.Context, conn io.ReadWriteCloser, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if stdin != nil {
		go sendStdin(conn, stdin)
	}
	for {
		stream, p, err := api.ReadExecFrame(conn)
		if err != nil {
			if ctx.Err() != nil {
				return -1, ctx.Err()
			}
			if errors.Is(err, api.ErrExecFrame) {
				return -1, fmt.Errorf("exec: the agent sent a %w", err)
			}
			return -1, fmt.Errorf("exec: the connection to the agent ended before the command did: %w", err)
		}
		switch stream {
		case api.ExecStdout:
			_, _ = stdout.Write(p)
		case api.ExecStderr:
			_, _ = stderr.Write(p)
		case api.ExecExit:
			return api.ExecExitCode(p), nil
		case api.ExecError:
			return -1, errors.New(string(p))
		default:
			return -1, fmt.Errorf("exec: the agent sent a %v: a frame on stream %d", api.ErrExecFrame, stream)
		}
	}
}

// sendStdin sends stdin as stdin frames, then an empty one at its end.
func sendStdin(w io.Writer, stdin io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := stdin.Read(buf)
		if n > 0 {
			if api.WriteExecFrame(w, api.ExecStdin, buf[:n]) != nil {
				return
			}
		}
		if err != nil {
			// At the end of stdin, or when it fails: the command reads
			// end of file either way.
			_ = api.WriteExecFrame(w, api.ExecStdin, nil)
			return
		}
	}
}
