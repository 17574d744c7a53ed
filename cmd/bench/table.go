package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

type row struct {
	what            string
	tether, kubectl time.Duration
	note            string
}

func printTable(rows []row, rss, hwm int64, watched int) {
	w := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(w, "measurement\ttether (median)\tkubectl v1.37.2 apply --server-side (pinned)\tratio\tnote")
	for _, r := range rows {
		k, ratio := "-", "-"
		if r.kubectl > 0 {
			k = r.kubectl.Round(time.Millisecond).String()
			ratio = fmt.Sprintf("%.2fx", float64(r.tether)/float64(r.kubectl))
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", r.what, round(r.tether), k, ratio, r.note)
	}
	fmt.Fprintf(w, "agent RSS, %d objects in the drift watch cache\t%d MiB (peak %d MiB)\t-\t-\tVmRSS/VmHWM of the tether agent process\n", watched, rss>>20, hwm>>20)
	_ = w.Flush()
}

func round(d time.Duration) string {
	if d < 10*time.Millisecond {
		return d.Round(10 * time.Microsecond).String()
	}
	return d.Round(time.Millisecond).String()
}

// memory reads a process's resident set size and its peak, in bytes.
func memory(pid int) (rss, hwm int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = kb << 10
		case "VmHWM:":
			hwm = kb << 10
		}
	}
	return rss, hwm, sc.Err()
}

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
