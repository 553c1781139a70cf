// Command gotune fine-tunes large language models in Go.
//
// Usage:
//
//	gotune <command> [flags]
//
// Each command lives in its own file and registers itself in init with
// register, so adding one (generate, eval, merge, ...) touches nothing
// else. Run "gotune --help" for the list and "gotune <command> --help"
// for a command's flags.
//
// Exit status: 0 on success, 1 for any error in the input or the
// environment (one message on stderr), 2 for an internal error (a bug),
// 130 when an interrupted training run stopped early and saved.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"sort"
	"strings"
	"syscall"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/finetune"
)

// Exit statuses.
const (
	exitOK          = 0
	exitError       = 1
	exitInternal    = 2
	exitInterrupted = 130
)

// env is what a command may use of the outside world; tests substitute it.
type env struct {
	Stdout, Stderr io.Writer
}

// command is one subcommand.
type command struct {
	// Name is the word after "gotune".
	Name string
	// Summary is one line for "gotune --help".
	Summary string
	// Run executes the command with the arguments after its name. It
	// returns nil on success; errInterrupted, a *usageError or any other
	// error otherwise.
	Run func(ctx context.Context, e *env, args []string) error
	// OutOfMemoryHint, if set, follows an out-of-device-memory error:
	// which of the command's flags lower the memory it needs.
	OutOfMemoryHint string
}

var commands = map[string]*command{}

// register adds a command; each command file calls it from init.
func register(c *command) {
	if _, dup := commands[c.Name]; dup {
		panic("gotune: command " + c.Name + " registered twice")
	}
	commands[c.Name] = c
}

// usageError is a mistake on the command line: the message is followed
// by a hint to run --help.
type usageError struct {
	msg string
}

func (e *usageError) Error() string { return e.msg }

// errInterrupted reports a run stopped by a signal after saving its work.
var errInterrupted = errors.New("interrupted")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		// Restore the default behaviour so a second Ctrl-C kills at once.
		stop()
		fmt.Fprintln(os.Stderr, "gotune: interrupt: finishing the current step, then saving (press Ctrl-C again to abort)")
	}()
	os.Exit(run(ctx, os.Args[1:], &env{Stdout: os.Stdout, Stderr: os.Stderr}))
}

// run dispatches to a command and turns its result into an exit status,
// printing errors as one line on stderr. A panic is a bug: it becomes
// "internal error" with exit status 2 (the stack goes to stderr only when
// GOTUNE_DEBUG is set).
func run(ctx context.Context, args []string, e *env) (status int) {
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(e.Stderr, "gotune: internal error: %v\n", r)
			if os.Getenv("GOTUNE_DEBUG") != "" {
				e.Stderr.Write(debug.Stack())
			} else {
				fmt.Fprintln(e.Stderr, "This is a bug in gotune; please report it (set GOTUNE_DEBUG=1 for details).")
			}
			status = exitInternal
		}
	}()
	if len(args) == 0 {
		printUsage(e.Stderr)
		return exitError
	}
	name := args[0]
	switch name {
	case "-h", "-help", "--help", "help":
		if len(args) > 1 && name == "help" {
			if c, ok := commands[args[1]]; ok {
				return finish(e, c, c.Run(ctx, e, []string{"--help"}))
			}
		}
		printUsage(e.Stdout)
		return exitOK
	}
	c, ok := commands[name]
	if !ok {
		fmt.Fprintf(e.Stderr, "gotune: unknown command %q\n", name)
		fmt.Fprintf(e.Stderr, "Commands: %s. Run 'gotune --help' for usage.\n", strings.Join(commandNames(), ", "))
		return exitError
	}
	return finish(e, c, c.Run(ctx, e, args[1:]))
}

// finish prints a command's error and returns the exit status. Running
// out of device memory is printed as that alone (not the chain of
// operations that led to it), with the command's hint.
func finish(e *env, c *command, err error) int {
	name := c.Name
	var ue *usageError
	var oe *finetune.OptionError
	var oom *engine.OutOfMemoryError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errInterrupted):
		return exitInterrupted
	case errors.As(err, &ue):
		fmt.Fprintf(e.Stderr, "gotune %s: %s\nRun 'gotune %s --help' for usage.\n", name, ue.msg, name)
		return exitError
	case errors.As(err, &oe):
		fmt.Fprintf(e.Stderr, "gotune %s: %s\nRun 'gotune %s --help' for usage.\n", name, oe.Msg, name)
		return exitError
	case errors.As(err, &oom):
		msg := oom.Error()
		if c.OutOfMemoryHint != "" {
			msg += ": " + c.OutOfMemoryHint
		}
		fmt.Fprintf(e.Stderr, "gotune %s: %s\n", name, msg)
		return exitError
	default:
		fmt.Fprintf(e.Stderr, "gotune %s: %v\n", name, err)
		return exitError
	}
}

func commandNames() []string {
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "gotune fine-tunes language models (LLaMA-family and GPT-2 checkpoints in Hugging Face format).")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Usage:")
	fmt.Fprintln(w, "  gotune <command> [flags]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	for _, n := range commandNames() {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].Summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run 'gotune <command> --help' for a command's flags.")
}

// newFlagSet returns a flag set whose help text starts with usage lines
// and a description, followed by every flag with its default.
func newFlagSet(name, usage, description string) *flag.FlagSet {
	fs := flag.NewFlagSet("gotune "+name, flag.ContinueOnError)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage:\n  %s\n\n%s\n\nFlags:\n", usage, strings.TrimSpace(description))
		printFlags(w, fs)
	}
	return fs
}

// printFlags lists every flag as --name TYPE, its usage and its default
// (like flag.PrintDefaults, but with the double dashes the docs use, and
// defaults shown even when they are zero, since 0 often means something).
func printFlags(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		typ, usage := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if typ != "" {
			line += " " + typ
		}
		def := f.DefValue
		if g, ok := f.Value.(flag.Getter); ok {
			if _, isString := g.Get().(string); isString {
				def = fmt.Sprintf("%q", def)
			}
		}
		if f.DefValue != "" {
			usage += " (default " + def + ")"
		}
		fmt.Fprintf(w, "%s\n    \t%s\n", line, strings.ReplaceAll(usage, "\n", "\n    \t"))
	})
}

// parseFlags parses args, printing the full help to stdout for --help
// (reported as errHelp) and turning any other problem into a *usageError
// (the flag package's own printing is silenced so the error is one line).
func parseFlags(fs *flag.FlagSet, args []string, e *env) error {
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(e.Stdout)
		fs.Usage()
		return errHelp
	}
	if err != nil {
		// The flag package names flags with one dash; the docs use two.
		msg := strings.NewReplacer("flag -", "flag --", "defined: -", "defined: --").Replace(err.Error())
		return &usageError{msg: msg}
	}
	if fs.NArg() > 0 {
		return &usageError{msg: fmt.Sprintf("unexpected argument %q (flags start with --)", fs.Arg(0))}
	}
	return nil
}

// errHelp is returned by parseFlags after printing help; commands return
// nil for it so --help exits 0.
var errHelp = errors.New("help requested")
