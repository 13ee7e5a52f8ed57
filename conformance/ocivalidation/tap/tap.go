// Package tap writes the Test Anything Protocol (version 13) output that runtime-tools'
// validation programs print. It stands in for github.com/mndrix/tap-go, which Debian does not
// package, with the part of its interface the validation programs call; the YAML blocks are
// written as indented JSON, as tap-go does when built without its yaml tag.
package tap

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
)

// T is one TAP stream.
type T struct {
	// Shared with the streams Todo returns, which number their tests in the same sequence.
	nextTestNumber *int
	todo           bool
	// Writer receives the output; standard output unless set.
	Writer io.Writer
}

// New starts a TAP stream on standard output.
func New() *T {
	next := 1
	return &T{nextTestNumber: &next, Writer: os.Stdout}
}

func (t *T) printf(format string, a ...interface{}) {
	fmt.Fprintf(t.Writer, format, a...)
}

// Header prints the version line and, for a known count, the plan.
func (t *T) Header(testCount int) {
	t.printf("TAP version 13\n")
	if testCount > 0 {
		t.printf("1..%d\n", testCount)
	}
}

// Ok reports one test.
func (t *T) Ok(test bool, description string) {
	ok := "ok"
	if !test {
		ok = "not ok"
	}
	directive := ""
	if t.todo {
		directive = " # TODO"
	}
	t.printf("%s %d - %s%s\n", ok, *t.nextTestNumber, escape(description), directive)
	*t.nextTestNumber++
}

// Fail reports one failed test.
func (t *T) Fail(description string) {
	t.Ok(false, description)
}

// Pass reports one passed test.
func (t *T) Pass(description string) {
	t.Ok(true, description)
}

// Skip reports count tests as skipped.
func (t *T) Skip(count int, description string) {
	for i := 0; i < count; i++ {
		t.printf("ok %d # SKIP %s\n", *t.nextTestNumber, escape(description))
		*t.nextTestNumber++
	}
}

// Todo returns the same stream, marking the tests reported through it as to do: expected to
// fail, and not counted as failures.
func (t *T) Todo() *T {
	todo := *t
	todo.todo = true
	return &todo
}

// Count is the number of tests reported so far.
func (t *T) Count() int {
	return *t.nextTestNumber - 1
}

// AutoPlan prints the plan for the tests reported so far.
func (t *T) AutoPlan() {
	t.printf("1..%d\n", t.Count())
}

// Diagnostic prints a comment, one line of output per line of message.
func (t *T) Diagnostic(message string) {
	t.printf("# %s\n", strings.ReplaceAll(message, "\n", "\n# "))
}

// Diagnosticf prints a formatted comment.
func (t *T) Diagnosticf(format string, a ...interface{}) {
	t.Diagnostic(fmt.Sprintf(format, a...))
}

// YAML prints a block of data about the previous test.
func (t *T) YAML(message interface{}) error {
	bytes, err := json.MarshalIndent(message, "  ", "  ")
	if err != nil {
		return err
	}
	t.printf("  ---\n  %s\n  ...\n", bytes)
	return nil
}

func escape(description string) string {
	return strings.ReplaceAll(description, "#", "\\#")
}
