package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// row is one line of the table. Cells are text; the helpers below make
// the common shapes.
type row struct {
	what, tether, kubectl, flux, ratio, target, note string
}

// compared is a row timed for tether, kubectl and Flux's ssa path, with
// tether/kubectl and the target ratio checked (maxRatio 0: no target).
func compared(what string, t, k, f []time.Duration, maxRatio float64, note string) row {
	r := row{what: what, tether: cell(t), kubectl: cell(k), flux: cell(f), note: note}
	ratio := 0.0
	if len(k) > 0 && median(k) > 0 {
		ratio = float64(median(t)) / float64(median(k))
		r.ratio = fmt.Sprintf("%.2f×", ratio)
	}
	if maxRatio > 0 {
		r.target = fmt.Sprintf("≤ %g× kubectl: %s", maxRatio, verdict(ratio > 0 && ratio <= maxRatio))
	}
	return r
}

// cell prints the median of ds, with the number of runs when more than one.
func cell(ds []time.Duration) string {
	if len(ds) == 0 {
		return ""
	}
	return round(median(ds))
}

func verdict(met bool) string {
	if met {
		return "met"
	}
	return "**missed**"
}

// targetAt checks a target only at the size the issue names it for; at
// other sizes (a -quick run, or the smaller fleet) it is shown, unchecked.
func targetAt(text string, size, at int, met bool) string {
	if size != at {
		return text + fmt.Sprintf(" (at %s)", thousands(at))
	}
	return text + ": " + verdict(met)
}

func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// printTable writes the rows as one markdown table, ready for
// docs/performance.md.
func printTable(w io.Writer, rows []row) {
	fmt.Fprintln(w, "| measurement | tether | kubectl apply --server-side (pinned) | flux ssa ApplyAllStaged | tether/kubectl | target | note |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	for _, r := range rows {
		cells := []string{r.what, r.tether, r.kubectl, r.flux, r.ratio, r.target, r.note}
		for i, c := range cells {
			if c == "" {
				c = "–"
			}
			cells[i] = strings.ReplaceAll(c, "|", `\|`)
		}
		fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
	}
}

func round(d time.Duration) string {
	switch {
	case d < 10*time.Millisecond:
		return d.Round(10 * time.Microsecond).String()
	case d < 10*time.Second:
		return d.Round(time.Millisecond).String()
	default:
		return d.Round(10 * time.Millisecond).String()
	}
}

func mib(b int64) string { return fmt.Sprintf("%d MiB", b>>20) }

type intList []int

func (l *intList) String() string { return fmt.Sprint(*l) }

func (l *intList) Set(s string) error {
	*l = nil
	for _, p := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil {
			return fmt.Errorf("%q is not a number", p)
		}
		*l = append(*l, n)
	}
	return nil
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}
