package main

import (
	"strings"
	"testing"
	"time"
)

func TestSumMetric(t *testing.T) {
	text := `# HELP apiserver_flowcontrol_dispatched_requests_total [BETA] Number of requests executed
# TYPE apiserver_flowcontrol_dispatched_requests_total counter
apiserver_flowcontrol_dispatched_requests_total{flow_schema="exempt",priority_level="exempt"} 1234
apiserver_flowcontrol_dispatched_requests_total{flow_schema="tether-bench-agent",priority_level="exempt"} 187
apiserver_flowcontrol_dispatched_requests_total{flow_schema="tether-bench-agent",priority_level="workload-high"} 3
apiserver_flowcontrol_dispatched_requests_total_other{flow_schema="tether-bench-agent"} 99
apiserver_request_total{flow_schema="tether-bench-agent"} 1e+06
`
	for _, tc := range []struct {
		name, match string
		want        int64
	}{
		{"apiserver_flowcontrol_dispatched_requests_total", `flow_schema="tether-bench-agent"`, 190},
		{"apiserver_flowcontrol_dispatched_requests_total", `flow_schema="exempt"`, 1234},
		{"apiserver_flowcontrol_dispatched_requests_total", `flow_schema="none"`, 0},
		{"apiserver_request_total", `flow_schema="tether-bench-agent"`, 1000000},
	} {
		got, err := sumMetric(strings.NewReader(text), tc.name, tc.match)
		if err != nil || got != tc.want {
			t.Errorf("sumMetric(%s, %s) = %d, %v; want %d", tc.name, tc.match, got, err, tc.want)
		}
	}
	if _, err := sumMetric(strings.NewReader(`x{a="b"} notanumber`+"\n"), "x", `a="b"`); err == nil {
		t.Error("a sample that is not a number gave no error")
	}
}

func TestMixFiles(t *testing.T) {
	for _, n := range []int{1, 10, 150, 1000} {
		files := mixFiles("d", n, "ns", "", "1")
		kinds := map[string]int{}
		namespaces := map[string]bool{}
		for p, y := range files {
			if !strings.HasPrefix(p, "d/app-") {
				t.Errorf("n=%d: file %s outside d/", n, p)
			}
			if !strings.HasPrefix(y, "apiVersion: ") {
				t.Errorf("n=%d: file %s holds no object: %q", n, p, y)
			}
			for _, doc := range strings.Split(y, "---\n") {
				for _, line := range strings.Split(doc, "\n") {
					if k, ok := strings.CutPrefix(line, "kind: "); ok {
						kinds[k]++
					}
					if ns, ok := strings.CutPrefix(line, "  namespace: "); ok {
						namespaces[ns] = true
					}
				}
			}
		}
		total := kinds["ConfigMap"] + kinds["Deployment"] + kinds["Service"]
		if total != n || kinds["ConfigMap"] != (n+2)/3 {
			t.Errorf("n=%d: %v objects, want %d with %d ConfigMaps", n, kinds, n, (n+2)/3)
		}
		if want := len(mixNamespaceNames("ns", n)); len(namespaces) != want {
			t.Errorf("n=%d: objects in %d namespaces, mixNamespaceNames lists %d", n, len(namespaces), want)
		}
	}
	for p, y := range mixFiles("g", 10, "", "g0001-", "v") {
		if strings.Contains(y, "namespace:") {
			t.Errorf("%s names a namespace without a prefix:\n%s", p, y)
		}
	}
}

func TestPercentiles(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	for _, tc := range []struct {
		pct  int
		want time.Duration
	}{{50, 50 * time.Millisecond}, {95, 95 * time.Millisecond}, {99, 99 * time.Millisecond}, {100, 100 * time.Millisecond}} {
		if got := p(ds, tc.pct); got != tc.want {
			t.Errorf("p%d = %s, want %s", tc.pct, got, tc.want)
		}
	}
	if got := median(ds); got != 51*time.Millisecond {
		t.Errorf("median = %s, want 51ms (the upper middle of 100)", got)
	}
	if p(nil, 99) != 0 || median(nil) != 0 {
		t.Error("percentiles of nothing are not 0")
	}
}

func TestTableCells(t *testing.T) {
	for n, want := range map[int]string{0: "0", 999: "999", 1000: "1,000", 5000: "5,000", 1234567: "1,234,567"} {
		if got := thousands(n); got != want {
			t.Errorf("thousands(%d) = %q, want %q", n, got, want)
		}
	}
	if got := targetAt("< 60 s", 50, 1000, true); got != "< 60 s (at 1,000)" {
		t.Errorf("target off its size: %q", got)
	}
	if got := targetAt("< 60 s", 1000, 1000, false); got != "< 60 s: **missed**" {
		t.Errorf("missed target: %q", got)
	}
	r := compared("x", []time.Duration{time.Second}, []time.Duration{4 * time.Second}, nil, 0.6, "")
	if r.ratio != "0.25×" || r.target != "≤ 0.6× kubectl: met" {
		t.Errorf("compared: ratio %q, target %q", r.ratio, r.target)
	}
	var b strings.Builder
	printTable(&b, []row{{what: "a|b", tether: "1s"}})
	if !strings.Contains(b.String(), `| a\|b | 1s | – |`) {
		t.Errorf("table row not escaped or empty cells not dashed:\n%s", b.String())
	}
}
