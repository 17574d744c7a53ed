// Package window decides when a GitSync may apply: at the times of an
// optional cron schedule (spec.schedule) instead of every interval, and only
// while its sync windows (spec.windows) allow it, with the semantics Argo CD
// gives them:
//
//   - a window is active from each match of its cron schedule for its
//     duration, the interval [match, match+duration);
//   - inside any active deny window nothing is applied, and deny wins over
//     allow;
//   - when at least one allow window exists, nothing is applied outside
//     every allow window;
//   - a manual sync (the resync annotation) passes the windows that block it
//     when they all have manualSync set.
//
// Cron expressions are evaluated in spec.timeZone (UTC by default) by
// github.com/robfig/cron/v3; durations are elapsed time. On the day clocks
// spring forward a match inside the skipped hour does not happen, and on the
// day they fall back a match inside the repeated hour happens twice, as in
// robfig/cron; a window that starts before the change, such as a nightly
// deny window from 22:00 for 8h, simply lasts its 8 elapsed hours.
//
// It is pure logic over an injected clock: it never touches the cluster,
// never reads the wall clock and never sleeps.
package window
