// Package halt answers, for the engine's and the daemon's loops, whether a
// graceful stop (a channel closed once) or a context's end has come, and
// waits (for a time, or a semaphore's slot) unless it does.
package halt

import (
	"context"
	"time"
)

// Requested reports whether stop is closed or ctx is done. A nil stop is
// never closed.
func Requested(ctx context.Context, stop <-chan struct{}) bool {
	return Stopped(stop) || ctx.Err() != nil
}

// Stopped reports whether stop is closed (a nil stop never is).
func Stopped(stop <-chan struct{}) bool {
	select {
	case <-stop:
		return true
	default:
		return false
	}
}

// Sleep waits for d; false when stop closed or ctx ended first.
func Sleep(ctx context.Context, stop <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-stop:
		return false
	case <-ctx.Done():
		return false
	}
}

// Acquire takes a slot of the semaphore sem (a send); false, with none
// taken, when stop closes or ctx ends first, or both came with the slot.
func Acquire(ctx context.Context, stop <-chan struct{}, sem chan struct{}) bool {
	if Requested(ctx, stop) {
		return false
	}
	select {
	case sem <- struct{}{}:
	case <-stop:
		return false
	case <-ctx.Done():
		return false
	}
	if Requested(ctx, stop) { // both were ready: the stop wins
		<-sem
		return false
	}
	return true
}
