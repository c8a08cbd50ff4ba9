package integration

import (
	"fmt"
	"testing"
	"time"
)

// awaitMargin is how long before the test binary's -timeout the waits give
// up, so a condition that never holds fails its test with a message (and
// the daemon's goroutines) instead of the binary's timeout panic.
const awaitMargin = 2 * time.Minute

// giveUp fires awaitMargin before the test binary's deadline (go test
// -timeout); it never fires when the binary has none. It is the one bound
// on the tests' waits: how fast a shared machine runs is not what the tests
// assert.
func giveUp(t *testing.T) <-chan time.Time {
	deadline, bounded := t.Deadline()
	if !bounded {
		return nil
	}
	return time.After(time.Until(deadline) - awaitMargin)
}

// await polls cond every poll until it holds, and fails the test with
// msgAndArgs (a format and its arguments) when giveUp fires first.
func await(t *testing.T, poll time.Duration, cond func() bool, msgAndArgs ...any) {
	t.Helper()
	stop := giveUp(t)
	for !cond() {
		select {
		case <-stop:
			msg := "condition never held"
			if len(msgAndArgs) > 0 {
				msg = fmt.Sprintf(fmt.Sprint(msgAndArgs[0]), msgAndArgs[1:]...)
			}
			t.Fatalf("%s (gave up %s before the test binary's -timeout)", msg, awaitMargin)
		case <-time.After(poll):
		}
	}
}
