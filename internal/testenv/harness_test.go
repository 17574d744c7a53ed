package testenv

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// fakeT records what the helpers report instead of failing the test;
// Fatalf ends the helper's goroutine as testing.T's does.
type fakeT struct {
	fatal    string
	cleanups []func()
}

func (f *fakeT) Helper()             {}
func (f *fakeT) Logf(string, ...any) {}
func (f *fakeT) Cleanup(fn func())   { f.cleanups = append(f.cleanups, fn) }
func (f *fakeT) Fatalf(format string, args ...any) {
	f.fatal = fmt.Sprintf(format, args...)
	panic(f)
}

// run calls fn with a fakeT and returns what it reported as fatal.
func run(fn func(*fakeT)) (fatal string) {
	f := &fakeT{}
	defer func() {
		if r := recover(); r != nil && r != any(f) {
			panic(r)
		}
		fatal = f.fatal
	}()
	fn(f)
	return ""
}

func TestEventually(t *testing.T) {
	for _, tc := range []struct {
		name      string
		failTimes int // cond fails this many times, then holds
		timeout   time.Duration
		wantFatal string
	}{
		{"holds at once", 0, time.Minute, ""},
		{"holds after a few polls", 3, time.Minute, ""},
		{"never holds", 1 << 30, 50 * time.Millisecond, "after 50ms: not yet (call"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			got := run(func(f *fakeT) {
				Eventually(f, tc.timeout, func() error {
					calls++
					if calls <= tc.failTimes {
						return fmt.Errorf("not yet (call %d)", calls)
					}
					return nil
				})
			})
			if tc.wantFatal == "" && got != "" || tc.wantFatal != "" && !strings.HasPrefix(got, tc.wantFatal) {
				t.Fatalf("fatal %q, want %q", got, tc.wantFatal)
			}
			if tc.wantFatal == "" && calls != tc.failTimes+1 {
				t.Errorf("cond called %d times, want %d", calls, tc.failTimes+1)
			}
		})
	}
}

func TestConsistently(t *testing.T) {
	calls := 0
	got := run(func(f *fakeT) {
		Consistently(f, time.Minute, func() error {
			if calls++; calls == 2 {
				return errors.New("broke")
			}
			return nil
		})
	})
	if got != "broke" || calls != 2 {
		t.Fatalf("fatal %q after %d calls, want broke after 2", got, calls)
	}
	if got := run(func(f *fakeT) { Consistently(f, 300*time.Millisecond, func() error { return nil }) }); got != "" {
		t.Fatalf("fatal %q for a state that holds", got)
	}
}

func TestContextEndsWithTheTest(t *testing.T) {
	f := &fakeT{}
	ctx := Context(f, time.Hour)
	if ctx.Err() != nil {
		t.Fatal("context ended at once")
	}
	for _, c := range f.cleanups {
		c()
	}
	if ctx.Err() == nil {
		t.Fatal("context still live after the test's clean-up")
	}
}
